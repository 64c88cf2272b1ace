//! What sign-in and SCIM both do to a membership: role changes and deprovisioning, each an
//! audit event and a `member.role_change` receipt in the organization's chain, and the
//! break-glass rule (the last break-glass owner of an organization that enforces single sign-on
//! keeps their access, and keeping it is recorded).

use deadpool_postgres::{GenericClient, Transaction};
use defendable_identity::store as identity;
use defendable_identity::{OrgId, Role, UserId};
use defendable_ledger::{Draft, ReceiptKind};
use defendable_store::audit::{Actor, AuditAction, AuditContext, AuditEvent};
use serde_json::json;

use crate::identity_error;
use crate::store::{receipt_with_event, Connection};
use crate::Result;

/// Whether `user` is the only break-glass owner of `org` while one of its connections enforces
/// single sign-on (read under the organization's row lock, which enforcement also takes).
pub(crate) async fn last_break_glass(
    tx: &Transaction<'_>,
    org: OrgId,
    user: UserId,
) -> Result<bool> {
    Ok(tx
        .query_one(
            &tx.prepare_cached(
                "SELECT coalesce(bool_or(user_id = $2 AND break_glass), false)
                        AND count(*) FILTER (WHERE break_glass) <= 1
                        AND EXISTS (SELECT 1 FROM sso_connections WHERE org_id = $1 AND enforced)
                 FROM memberships WHERE org_id = $1 AND role = 'owner'",
            )
            .await?,
            &[&org.as_uuid(), &user.as_uuid()],
        )
        .await?
        .get(0))
}

static BREAK_GLASS_KEPT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many times this process kept the last break-glass owner's role against the identity
/// provider (for the `defendable_sso_break_glass_kept` counter).
pub fn break_glass_kept_total() -> u64 {
    BREAK_GLASS_KEPT.load(std::sync::atomic::Ordering::Relaxed)
}

/// Records that the identity provider's change (a sign-in's mapping or SCIM) would have taken
/// the owner role from the last break-glass owner of an organization that enforces single
/// sign-on, and was not applied: an `sso.break_glass_kept` audit event and the counter.
pub(crate) async fn keep_break_glass(
    tx: &Transaction<'_>,
    connection: &Connection,
    user: UserId,
    source: Source,
    ctx: &AuditContext,
) -> Result<()> {
    let mut e = AuditEvent::new(
        AuditAction::SsoBreakGlassKept,
        source.actor(connection, user),
    )
    .on(format!("user:{user}"))
    .with(json!({
        "source": match source { Source::SignIn => "sso", Source::Scim => "scim" },
        "connection": connection.id.to_string(),
        "kept": "owner role and break-glass status of the last break-glass owner",
    }));
    e.org_id = Some(connection.org.as_uuid());
    e.context = ctx.clone();
    defendable_store::audit::record(tx, &e).await?;
    BREAK_GLASS_KEPT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tracing::warn!(
        alert = "sso_break_glass_kept",
        org_id = %connection.org,
        user_id = %user,
        "the identity provider would have removed the last break-glass owner; the role was kept"
    );
    Ok(())
}

/// What set a role: a sign-in's ID token or the directory (SCIM).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// An OIDC sign-in (the user acts).
    SignIn,
    /// SCIM provisioning (the connection acts).
    Scim,
}

impl Source {
    /// Who acts in the audit log: the signing-in user, or the connection provisioning.
    fn actor(self, connection: &Connection, user: UserId) -> Actor {
        match self {
            Source::SignIn => Actor::User(user.as_uuid()),
            Source::Scim => Actor::Scim(connection.id.as_uuid()),
        }
    }
}

/// A role set by the identity provider: its audit event and `member.role_change` receipt.
pub(crate) async fn role_change(
    tx: &Transaction<'_>,
    connection: &Connection,
    user: UserId,
    (from, to): (Option<Role>, Option<Role>),
    source: Source,
    ctx: &AuditContext,
) -> Result<()> {
    let (source, actor) = match source {
        Source::SignIn => ("sso", Actor::User(user.as_uuid())),
        Source::Scim => ("scim", Actor::Scim(connection.id.as_uuid())),
    };
    let facts = json!({
        "from": from.map(Role::as_str),
        "to": to.map(Role::as_str),
        "source": source,
        "connection": connection.id.to_string(),
    });
    let draft = Draft::new(
        ReceiptKind::parse("member.role_change")?,
        facts.clone(),
        Some(json!({ "user": user.to_string() })),
    )?;
    let event = AuditEvent::new(AuditAction::MemberRoleChange, actor)
        .on(format!("user:{user}"))
        .with(facts);
    receipt_with_event(tx, connection.org, draft, event, ctx).await?;
    Ok(())
}

/// Removes the membership the identity provider no longer grants, revokes the user's sessions
/// that came through this organization's connections and the API keys they created in it, and
/// records `sso.deprovision` (a sign-in whose groups stopped mapping) or `scim.deprovision`.
/// Their other sessions stay (the account is theirs in other organizations too) and lose this
/// organization with the membership; every process sees both within the authentication cache
/// period.
pub(crate) async fn deprovision(
    tx: &Transaction<'_>,
    connection: &Connection,
    user: UserId,
    source: Source,
    ctx: &AuditContext,
) -> Result<()> {
    let org = connection.org.as_uuid();
    tx.execute(
        &tx.prepare_cached("DELETE FROM memberships WHERE org_id = $1 AND user_id = $2")
            .await?,
        &[&org, &user.as_uuid()],
    )
    .await?;
    let sessions = tx
        .execute(
            &tx.prepare_cached(
                "UPDATE sessions SET revoked_at = now()
                 WHERE user_id = $1 AND revoked_at IS NULL
                   AND sso_connection_id IN (SELECT id FROM sso_connections WHERE org_id = $2)",
            )
            .await?,
            &[&user.as_uuid(), &org],
        )
        .await?;
    let action = match source {
        Source::SignIn => AuditAction::SsoDeprovision,
        Source::Scim => AuditAction::ScimDeprovision,
    };
    let actor = source.actor(connection, user);
    let keys = identity::revoke_keys_created_by(tx, connection.org, user, actor, ctx)
        .await
        .map_err(identity_error)?;
    let mut e = AuditEvent::new(action, actor)
        .on(format!("user:{user}"))
        .with(json!({ "sessions_revoked": sessions, "api_keys_revoked": keys }));
    e.org_id = Some(org);
    e.context = ctx.clone();
    defendable_store::audit::record(tx, &e).await?;
    Ok(())
}
