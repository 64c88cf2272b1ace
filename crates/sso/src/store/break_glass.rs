//! Break-glass owners: who keeps access where single sign-on is enforced, and each such
//! session's first use.

use deadpool_postgres::{GenericClient, Transaction};
use defendable_identity::{OrgId, Role, UserId};
use defendable_ledger::{Draft, ReceiptKind};
use defendable_store::audit::{Actor, AuditAction, AuditContext, AuditEvent};
use serde_json::json;

use super::{receipt_with_event, record_change, Change};
use crate::{Result, SsoError};

/// The organization's break-glass owners (owners whose flag is set).
pub(crate) async fn break_glass_owners(tx: &Transaction<'_>, org: OrgId) -> Result<i64> {
    Ok(tx
        .query_one(
            &tx.prepare_cached(
                "SELECT count(*) FROM memberships WHERE org_id = $1 AND role = 'owner' AND break_glass",
            )
            .await?,
            &[&org.as_uuid()],
        )
        .await?
        .get(0))
}

/// Enforcing single sign-on needs a break-glass owner, so a broken identity provider never
/// locks an organization out.
/// Takes the organization's row lock first: membership changes judge the last break-glass
/// owner under it, so enforcement and a demotion never both pass unseen by each other.
pub(crate) async fn check_enforceable(tx: &Transaction<'_>, org: OrgId) -> Result<()> {
    tx.execute(
        &tx.prepare_cached("SELECT 1 FROM orgs WHERE id = $1 FOR UPDATE")
            .await?,
        &[&org.as_uuid()],
    )
    .await?;
    if break_glass_owners(tx, org).await? == 0 {
        return Err(SsoError::BreakGlassRequired(
            "enforcing single sign-on needs a break-glass owner first (PUT /orgs/{org}/sso/break-glass/{user})".into(),
        ));
    }
    Ok(())
}

/// Grants or withdraws break-glass status: an owner who keeps access without single sign-on
/// where it is enforced. At most [`MAX_BREAK_GLASS`] per organization; the last one cannot be
/// withdrawn while a connection enforces sign-on. Each change is an `idp.config_change` receipt.
pub async fn set_break_glass(
    client: &mut impl GenericClient,
    change: Change<'_>,
    user: UserId,
    on: bool,
) -> Result<()> {
    let tx = client.transaction().await?;
    tx.execute(
        &tx.prepare_cached("SELECT 1 FROM orgs WHERE id = $1 FOR UPDATE")
            .await?,
        &[&change.org.as_uuid()],
    )
    .await?;
    let row = tx
        .query_opt(
            &tx.prepare_cached(
                "SELECT role, break_glass FROM memberships WHERE org_id = $1 AND user_id = $2",
            )
            .await?,
            &[&change.org.as_uuid(), &user.as_uuid()],
        )
        .await?
        .ok_or(SsoError::NotFound)?;
    let (role, already): (String, bool) = (row.get(0), row.get(1));
    if on && role != Role::Owner.as_str() {
        return Err(SsoError::InvalidInput(
            "break-glass status is for owners only".into(),
        ));
    }
    if already == on {
        return Ok(());
    }
    let current = break_glass_owners(&tx, change.org).await?;
    if on && current >= MAX_BREAK_GLASS {
        return Err(SsoError::LimitReached(format!(
            "an organization has at most {MAX_BREAK_GLASS} break-glass owners"
        )));
    }
    if !on && current <= 1 {
        let enforced = tx
            .query_opt(
                &tx.prepare_cached(
                    "SELECT 1 FROM sso_connections WHERE org_id = $1 AND enforced LIMIT 1",
                )
                .await?,
                &[&change.org.as_uuid()],
            )
            .await?;
        if enforced.is_some() {
            return Err(SsoError::BreakGlassRequired(
                "the last break-glass owner stays while single sign-on is enforced".into(),
            ));
        }
    }
    tx.execute(
        &tx.prepare_cached(
            "UPDATE memberships SET break_glass = $3 WHERE org_id = $1 AND user_id = $2",
        )
        .await?,
        &[&change.org.as_uuid(), &user.as_uuid(), &on],
    )
    .await?;
    record_change(
        &tx,
        change,
        if on {
            AuditAction::SsoBreakGlassGrant
        } else {
            AuditAction::SsoBreakGlassRevoke
        },
        format!("user:{user}"),
        json!({ "fields": ["break_glass"] }),
        json!({ "user": user.to_string() }),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Break-glass owners per organization (config::limits).
pub const MAX_BREAK_GLASS: i64 = defendable_config::limits::SSO_BREAK_GLASS_OWNERS;

/// Records a break-glass session's use in an organization that enforces single sign-on, once
/// per session and organization: an `sso.break_glass_use` audit event and an `sso.break_glass`
/// receipt, in one transaction. True when this was the first use (the caller alerts).
pub async fn record_break_glass_use(
    client: &mut impl GenericClient,
    org: OrgId,
    user: UserId,
    session: uuid::Uuid,
    ctx: &AuditContext,
) -> Result<bool> {
    let tx = client.transaction().await?;
    let first = tx
        .execute(
            &tx.prepare_cached(
                "INSERT INTO break_glass_uses (session_id, org_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .await?,
            &[&session, &org.as_uuid()],
        )
        .await?
        == 1;
    if first {
        let draft = Draft::new(
            ReceiptKind::parse("sso.break_glass")?,
            json!({ "by": Role::Owner.as_str(), "use": "first in this session" }),
            Some(json!({ "user": user.to_string(), "session": session.to_string() })),
        )?;
        let event = AuditEvent::new(AuditAction::SsoBreakGlassUse, Actor::User(user.as_uuid()))
            .on(format!("session:{session}"));
        receipt_with_event(&tx, org, draft, event, ctx).await?;
    }
    tx.commit().await?;
    Ok(first)
}
