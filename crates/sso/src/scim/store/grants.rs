//! What the directory grants: an entry's account link, its role from its groups through the
//! connection's mapping, and deprovisioning when that stops.

use deadpool_postgres::{GenericClient, Transaction};
use defendable_identity::{Email, Role, UserId};
use defendable_store::audit::AuditContext;
use serde_json::Value;
use uuid::Uuid;

use super::unique_violation;
use crate::membership::{deprovision, keep_break_glass, last_break_glass, role_change, Source};
use crate::scim::{fault, ScimFault, UserInput};
use crate::store::Connection;
use crate::{Result, SsoError};

/// The account an entry's address names, if the address is in one of the connection's
/// verified domains (created if new, without a sign-in).
async fn account_for(
    tx: &Transaction<'_>,
    connection: &Connection,
    address: Option<&str>,
) -> Result<Option<UserId>> {
    let Some(email) = address.and_then(|a| Email::parse(a).ok()) else {
        return Ok(None);
    };
    if crate::store::verified_domain(tx, connection, &email)
        .await?
        .is_none()
    {
        return Ok(None);
    }
    let row = tx
        .query_one(
            &tx.prepare_cached(
                "WITH ins AS (INSERT INTO users (id, email) VALUES ($1, $2) ON CONFLICT (email) DO NOTHING RETURNING id)
                 SELECT id FROM ins UNION ALL SELECT id FROM users WHERE email = $2 LIMIT 1",
            )
            .await?,
            &[&Uuid::now_v7(), &email.as_str()],
        )
        .await?;
    Ok(Some(UserId::from_uuid(row.get(0))))
}

/// Settles what a directory entry grants: its account link (by address, within verified
/// domains) and that account's role (from the entry's groups through the mapping, none when
/// inactive), deprovisioning an account it no longer names.
pub(super) async fn settle(
    tx: &Transaction<'_>,
    connection: &Connection,
    entry: Uuid,
    ctx: &AuditContext,
) -> Result<()> {
    let row = tx
        .query_one(
            &tx.prepare_cached(
                "SELECT u.user_name, u.emails, u.active, u.user_id,
                        coalesce(array_agg(g.display_name) FILTER (WHERE g.id IS NOT NULL), '{}')
                 FROM scim_users u
                 LEFT JOIN scim_group_members m ON m.user_id = u.id
                 LEFT JOIN scim_groups g ON g.id = m.group_id
                 WHERE u.id = $1 GROUP BY u.id",
            )
            .await?,
            &[&entry],
        )
        .await?;
    let input = UserInput {
        user_name: row.get(0),
        external_id: None,
        display_name: None,
        active: row.get(2),
        emails: row
            .get::<_, Value>(1)
            .as_array()
            .cloned()
            .unwrap_or_default(),
    };
    let linked: Option<UserId> = row.get::<_, Option<Uuid>>(3).map(UserId::from_uuid);
    let groups: Vec<String> = row.get(4);
    let account = account_for(tx, connection, input.address()).await?;
    if account != linked {
        if let Some(old) = linked {
            set_role(tx, connection, old, Grant::Revoked, ctx).await?;
        }
        tx.execute(
            &tx.prepare_cached("UPDATE scim_users SET user_id = $2 WHERE id = $1")
                .await?,
            &[&entry, &account.map(|u| u.as_uuid())],
        )
        .await
        .map_err(|e| {
            unique_violation(
                e,
                "another entry of this directory already names the account with this address",
            )
        })?;
    }
    let Some(user) = account else { return Ok(()) };
    let grant = if input.active == Some(false) {
        Grant::Revoked
    } else {
        connection
            .group_roles
            .role_for(groups.iter().map(String::as_str))
            .or(connection.default_role)
            .map_or(Grant::Unmapped, Grant::Role)
    };
    set_role(tx, connection, user, grant, ctx).await
}

/// What the directory says of an account's membership.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Grant {
    /// Its groups (or the default role) give this role: the identity provider now manages it.
    Role(Role),
    /// Its groups map to nothing: removes only a membership the identity provider gave.
    Unmapped,
    /// Deactivated, deleted, or moved to another account: removes any membership.
    Revoked,
}

/// Applies `grant` to `user`'s membership in the connection's organization. A change that would
/// leave the organization without an owner is refused.
async fn set_role(
    tx: &Transaction<'_>,
    connection: &Connection,
    user: UserId,
    grant: Grant,
    ctx: &AuditContext,
) -> Result<()> {
    let org = connection.org.as_uuid();
    let row = tx
        .query_opt(
            &tx.prepare_cached(
                "SELECT role, idp_managed, (SELECT count(*) FROM memberships WHERE org_id = $1 AND role = 'owner')
                 FROM memberships WHERE org_id = $1 AND user_id = $2",
            )
            .await?,
            &[&org, &user.as_uuid()],
        )
        .await?;
    let (from, managed, owners): (Option<Role>, bool, i64) = match row {
        Some(r) => (
            Some(Role::parse(r.get(0)).map_err(|e| SsoError::InvalidInput(e.to_string()))?),
            r.get(1),
            r.get(2),
        ),
        None => (None, false, 0),
    };
    let to = match grant {
        Grant::Role(role) => Some(role),
        Grant::Unmapped if !managed => return Ok(()),
        Grant::Unmapped | Grant::Revoked => None,
    };
    if from == to && (to.is_none() || managed) {
        return Ok(());
    }
    // The last break-glass owner of an organization that enforces single sign-on keeps the
    // owner role (and so the status): refusing would have the directory retry forever.
    if from == Some(Role::Owner) && to != from && last_break_glass(tx, connection.org, user).await?
    {
        return keep_break_glass(tx, connection, user, Source::Scim, ctx).await;
    }
    if from == Some(Role::Owner) && to != from && owners <= 1 {
        return Err(fault(
            ScimFault::LastOwner,
            "this change would leave the organization without an owner: make another owner first",
        ));
    }
    match to {
        Some(role) => {
            tx.execute(
                &tx.prepare_cached(
                    "INSERT INTO memberships (org_id, user_id, role, idp_managed) VALUES ($1, $2, $3, true)
                     ON CONFLICT (org_id, user_id) DO UPDATE
                     SET role = EXCLUDED.role, idp_managed = true,
                         break_glass = memberships.break_glass AND EXCLUDED.role = 'owner'",
                )
                .await?,
                &[&org, &user.as_uuid(), &role.as_str()],
            )
            .await?;
        }
        None => deprovision(tx, connection, user, Source::Scim, ctx).await?,
    }
    if from == to {
        return Ok(());
    }
    role_change(tx, connection, user, (from, to), Source::Scim, ctx).await
}

/// Revokes whatever the directory granted `user` (its entry was deleted).
pub(super) async fn revoke(
    tx: &Transaction<'_>,
    connection: &Connection,
    user: UserId,
    ctx: &AuditContext,
) -> Result<()> {
    set_role(tx, connection, user, Grant::Revoked, ctx).await
}
