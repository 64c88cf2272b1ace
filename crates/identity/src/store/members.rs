//! Memberships: roles, listing, role changes and removals. Every change runs under the
//! organization's row lock and asks [`crate::policy`] whether it may happen, with the roles and
//! owner count read under that lock.

use super::*;
use crate::policy;

/// A member from `u.id, u.email, m.role, m.created_at`.
fn row_member(row: &tokio_postgres::Row) -> Member {
    Member {
        user_id: UserId::from_uuid(row.get(0)),
        email: row.get(1),
        role: row_role(row, 2),
        joined_at: row.get(3),
    }
}

/// A user's role in an organization, if they are a member.
pub async fn role_of(
    client: &impl GenericClient,
    org: OrgId,
    user: UserId,
) -> Result<Option<Role>> {
    let row = client
        .query_opt(
            &client
                .prepare_cached("SELECT role FROM memberships WHERE org_id = $1 AND user_id = $2")
                .await?,
            &[&org.as_uuid(), &user.as_uuid()],
        )
        .await?;
    Ok(row.map(|r| row_role(&r, 0)))
}

/// Members of an organization, by user id.
pub async fn list_members(
    client: &impl GenericClient,
    org: OrgId,
    page: PageRequest,
) -> Result<Page<Member>> {
    let rows = client
        .query(
            &client
                .prepare_cached(
                    "SELECT u.id, u.email, m.role, m.created_at
             FROM memberships m JOIN users u ON u.id = m.user_id
             WHERE m.org_id = $1 AND u.id > $2 ORDER BY u.id LIMIT $3",
                )
                .await?,
            &[&org.as_uuid(), &page.after(), &page.fetch()],
        )
        .await?;
    let items = rows.iter().map(row_member).collect();
    Ok(page.finish(items, |m: &Member| m.user_id.as_uuid()))
}

/// Locks the organization row: every membership change of one org runs one at a time, so the
/// at-least-one-owner rule cannot be broken by two concurrent changes.
async fn lock_org(tx: &Transaction<'_>, org: OrgId) -> Result<()> {
    tx.query_opt(
        &tx.prepare_cached("SELECT 1 FROM orgs WHERE id = $1 FOR UPDATE")
            .await?,
        &[&org.as_uuid()],
    )
    .await?
    .ok_or(IdentityError::NotFound)?;
    Ok(())
}

/// Locks `org` and reads what [`crate::policy`] judges a membership change by: both roles, the
/// owner and break-glass owner counts, the target's break-glass flag and whether single sign-on
/// is enforced, as they stand under the lock (enforcement is switched on under the same lock).
async fn roster(
    tx: &Transaction<'_>,
    org: OrgId,
    actor: UserId,
    target: UserId,
) -> Result<policy::Roster> {
    lock_org(tx, org).await?;
    let row = tx
        .query_one(
            &tx.prepare_cached(
                "SELECT count(*) FILTER (WHERE role = 'owner'),
                        count(*) FILTER (WHERE role = 'owner' AND break_glass),
                        coalesce(bool_or(user_id = $2 AND break_glass), false),
                        EXISTS (SELECT 1 FROM sso_connections WHERE org_id = $1 AND enforced)
                 FROM memberships WHERE org_id = $1",
            )
            .await?,
            &[&org.as_uuid(), &target.as_uuid()],
        )
        .await?;
    Ok(policy::Roster {
        actor_role: role_of(tx, org, actor).await?,
        target_role: role_of(tx, org, target).await?,
        owners: row.get(0),
        break_glass_owners: row.get(1),
        target_break_glass: row.get(2),
        sso_enforced: row.get(3),
    })
}

/// Changes a member's role. `actor` must still be an owner when the change runs.
pub async fn set_role(
    client: &mut Client,
    actor: UserId,
    org: OrgId,
    target: UserId,
    role: Role,
    ctx: &AuditContext,
) -> Result<Member> {
    let tx = client.transaction().await?;
    let from = policy::change_role(roster(&tx, org, actor, target).await?, role)?;
    let row = tx
        .query_one(
            &tx.prepare_cached(
                // A demoted owner stops being a break-glass owner; a role an owner sets is not
                // the identity provider's to take away when the person's groups stop mapping.
                "UPDATE memberships m SET role = $3, break_glass = m.break_glass AND $3 = 'owner', idp_managed = false FROM users u
             WHERE m.org_id = $1 AND m.user_id = $2 AND u.id = m.user_id
             RETURNING u.id, u.email, m.role, m.created_at",
            )
            .await?,
            &[&org.as_uuid(), &target.as_uuid(), &role.as_str()],
        )
        .await?;
    let e = event(AuditAction::MemberRoleChange, actor, Some(org), ctx)
        .on(format!("user:{target}"))
        .with(json!({"from": from.as_str(), "to": role.as_str()}));
    record(&tx, &e).await?;
    tx.commit().await?;
    Ok(row_member(&row))
}

/// Removes a member. Owners may remove anyone; a member may remove itself. The API keys the
/// member created in the organization are revoked in the same transaction, each with an
/// `api_key.revoke` event (`reason: creator_left`).
pub async fn remove_member(
    client: &mut Client,
    actor: UserId,
    org: OrgId,
    target: UserId,
    ctx: &AuditContext,
) -> Result<()> {
    let tx = client.transaction().await?;
    let target_role = policy::remove_member(actor, target, roster(&tx, org, actor, target).await?)?;
    tx.execute(
        &tx.prepare_cached("DELETE FROM memberships WHERE org_id = $1 AND user_id = $2")
            .await?,
        &[&org.as_uuid(), &target.as_uuid()],
    )
    .await?;
    let e = event(AuditAction::MemberRemove, actor, Some(org), ctx)
        .on(format!("user:{target}"))
        .with(json!({"role": target_role.as_str(), "self": actor == target}));
    record(&tx, &e).await?;
    revoke_keys_created_by(&tx, org, target, actor.into(), ctx).await?;
    tx.commit().await?;
    Ok(())
}

/// Revokes the API keys `creator` created in `org`, each with an `api_key.revoke` event
/// (`reason: creator_left`) by `actor`: the keys leave with the member, as personal tokens do on
/// a code host. Runs in the caller's transaction; returns how many were revoked.
pub async fn revoke_keys_created_by(
    tx: &Transaction<'_>,
    org: OrgId,
    creator: UserId,
    actor: Actor,
    ctx: &AuditContext,
) -> Result<usize> {
    let revoked = tx
        .query(
            &tx.prepare_cached(
                "UPDATE api_keys SET revoked_at = now()
             WHERE org_id = $1 AND created_by = $2 AND revoked_at IS NULL RETURNING id",
            )
            .await?,
            &[&org.as_uuid(), &creator.as_uuid()],
        )
        .await?;
    for row in &revoked {
        let key: Uuid = row.get(0);
        let e = event(AuditAction::ApiKeyRevoke, actor, Some(org), ctx)
            .on(format!("api_key:{key}"))
            .with(json!({"reason": "creator_left", "creator": format!("user:{creator}")}));
        record(tx, &e).await?;
    }
    Ok(revoked.len())
}

pub(super) async fn add_member(
    client: &impl GenericClient,
    org: OrgId,
    user: UserId,
    role: Role,
) -> Result<bool> {
    let n = client
        .execute(
            &client
                .prepare_cached(
                    "INSERT INTO memberships (org_id, user_id, role) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
                )
                .await?,
            &[&org.as_uuid(), &user.as_uuid(), &role.as_str()],
        )
        .await?;
    Ok(n == 1)
}
