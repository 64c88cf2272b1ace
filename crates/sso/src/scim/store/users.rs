//! The directory's users: their rows, their groups, and the entry a sign-in consults.

use std::collections::BTreeSet;

use deadpool_postgres::{GenericClient, Transaction};
use defendable_identity::UserId;
use defendable_store::audit::{AuditAction, AuditContext};
use serde_json::{json, Value};
use tokio_postgres::Row;
use uuid::Uuid;

use super::{grants, unique_violation, Actions, Stored};
use crate::scim::{UserInput, UserRecord};
use crate::store::Connection;
use crate::{ConnectionId, Result, SsoError};

const USER_COLUMNS: &str =
    "id, user_name, external_id, display_name, active, emails, version, created_at, updated_at";

async fn users_from_rows(client: &impl GenericClient, rows: &[Row]) -> Result<Vec<UserRecord>> {
    let ids: Vec<Uuid> = rows.iter().map(|r| r.get("id")).collect();
    let groups = client
        .query(
            &client
                .prepare_cached(
                    "SELECT m.user_id, g.id, g.display_name FROM scim_group_members m
                     JOIN scim_groups g ON g.id = m.group_id
                     WHERE m.user_id = ANY($1) ORDER BY g.display_name, g.id",
                )
                .await?,
            &[&ids],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let id: Uuid = r.get("id");
            UserRecord {
                id,
                user_name: r.get("user_name"),
                external_id: r.get("external_id"),
                display_name: r.get("display_name"),
                active: r.get("active"),
                emails: r.get("emails"),
                groups: groups
                    .iter()
                    .filter(|g| g.get::<_, Uuid>(0) == id)
                    .map(|g| (g.get(1), g.get(2)))
                    .collect(),
                version: r.get("version"),
                created_at: r.get("created_at"),
                updated_at: r.get("updated_at"),
            }
        })
        .collect())
}

/// A user's directory entry in a connection, for sign-in: whether it is active and its groups'
/// names.
#[derive(Debug)]
pub struct Entry {
    /// `active`.
    pub active: bool,
    /// The displayNames of its groups.
    pub groups: Vec<String>,
}

/// The directory entry linked to `user` in `connection`, if there is one.
pub async fn entry_of(
    tx: &Transaction<'_>,
    connection: ConnectionId,
    user: UserId,
) -> Result<Option<Entry>> {
    let row = tx
        .query_opt(
            &tx.prepare_cached(
                "SELECT u.active IS NOT FALSE, coalesce(array_agg(g.display_name) FILTER (WHERE g.id IS NOT NULL), '{}')
                 FROM scim_users u
                 LEFT JOIN scim_group_members m ON m.user_id = u.id
                 LEFT JOIN scim_groups g ON g.id = m.group_id
                 WHERE u.connection_id = $1 AND u.user_id = $2
                 GROUP BY u.id",
            )
            .await?,
            &[&connection.as_uuid(), &user.as_uuid()],
        )
        .await?;
    Ok(row.map(|r| Entry {
        active: r.get(0),
        groups: r.get(1),
    }))
}

impl Stored for UserRecord {
    const ACTIONS: Actions = Actions {
        create: AuditAction::ScimUserCreate,
        replace: AuditAction::ScimUserReplace,
        patch: AuditAction::ScimUserPatch,
        delete: AuditAction::ScimUserDelete,
    };
    const TARGET: &'static str = "scim_user";
    const TABLE: &'static str = "scim_users";
    const COLUMNS: &'static str = USER_COLUMNS;
    const FILTERS: &'static [(&'static str, &'static str)] = &[
        ("userName", "lower(user_name) = lower({})"),
        ("externalId", "external_id = {}"),
        ("displayName", "display_name = {}"),
    ];

    async fn from_rows(client: &impl GenericClient, rows: &[Row]) -> Result<Vec<UserRecord>> {
        users_from_rows(client, rows).await
    }

    fn details(_: &UserInput) -> Value {
        json!({})
    }

    fn removal_details(_: &BTreeSet<Uuid>) -> Value {
        json!({})
    }

    async fn write(
        tx: &Transaction<'_>,
        connection: &Connection,
        id: Uuid,
        input: &UserInput,
        create: bool,
    ) -> Result<BTreeSet<Uuid>> {
        let taken = || format!("userName {:?} is taken in this directory", input.user_name);
        let emails = Value::Array(input.emails.clone());
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 7] = [
            &id,
            &connection.id.as_uuid(),
            &input.user_name,
            &input.external_id,
            &input.display_name,
            &input.active,
            &emails,
        ];
        let n = if create {
            let stmt = tx
                .prepare_cached(
                    "INSERT INTO scim_users (id, connection_id, org_id, user_name, external_id, display_name, active, emails)
                     SELECT $1, $2, org_id, $3, $4, $5, $6, $7 FROM sso_connections WHERE id = $2",
                )
                .await?;
            tx.execute(&stmt, &params)
                .await
                .map_err(|e| unique_violation(e, taken()))?
        } else {
            let stmt = tx
                .prepare_cached(
                    "UPDATE scim_users SET user_name = $3, external_id = $4, display_name = $5, active = $6,
                            emails = $7, version = version + 1, updated_at = now()
                     WHERE id = $1 AND connection_id = $2",
                )
                .await?;
            tx.execute(&stmt, &params)
                .await
                .map_err(|e| unique_violation(e, taken()))?
        };
        if n == 0 {
            return Err(SsoError::NotFound);
        }
        Ok(BTreeSet::from([id]))
    }

    /// Deletes the entry after revoking what it granted the account it names; nothing is left
    /// to settle.
    async fn remove(
        tx: &Transaction<'_>,
        connection: &Connection,
        id: Uuid,
        ctx: &AuditContext,
    ) -> Result<BTreeSet<Uuid>> {
        let linked = tx
            .query_opt(
                &tx.prepare_cached(
                    "SELECT user_id FROM scim_users WHERE connection_id = $1 AND id = $2 FOR UPDATE",
                )
                .await?,
                &[&connection.id.as_uuid(), &id],
            )
            .await?
            .ok_or(SsoError::NotFound)?
            .get::<_, Option<Uuid>>(0);
        if let Some(user) = linked {
            grants::revoke(tx, connection, UserId::from_uuid(user), ctx).await?;
        }
        tx.execute(
            &tx.prepare_cached("DELETE FROM scim_users WHERE id = $1")
                .await?,
            &[&id],
        )
        .await?;
        Ok(BTreeSet::new())
    }
}
