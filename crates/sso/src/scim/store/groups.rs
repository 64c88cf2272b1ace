//! The directory's groups and their members.

use std::collections::BTreeSet;

use deadpool_postgres::{GenericClient, Transaction};
use defendable_store::audit::{AuditAction, AuditContext};
use serde_json::{json, Value};
use tokio_postgres::Row;
use uuid::Uuid;

use super::{Actions, Stored};
use crate::scim::{fault, GroupInput, GroupRecord, ScimFault};
use crate::store::Connection;
use crate::{Result, SsoError};

const GROUP_COLUMNS: &str = "id, display_name, external_id, version, created_at, updated_at";

async fn groups_from_rows(client: &impl GenericClient, rows: &[Row]) -> Result<Vec<GroupRecord>> {
    let ids: Vec<Uuid> = rows.iter().map(|r| r.get("id")).collect();
    let members = client
        .query(
            &client
                .prepare_cached(
                    "SELECT m.group_id, m.user_id FROM scim_group_members m
                     JOIN scim_users u ON u.id = m.user_id
                     WHERE m.group_id = ANY($1) ORDER BY u.created_at, u.id",
                )
                .await?,
            &[&ids],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let id: Uuid = r.get("id");
            GroupRecord {
                id,
                display_name: r.get("display_name"),
                external_id: r.get("external_id"),
                members: members
                    .iter()
                    .filter(|m| m.get::<_, Uuid>(0) == id)
                    .map(|m| m.get(1))
                    .collect(),
                version: r.get("version"),
                created_at: r.get("created_at"),
                updated_at: r.get("updated_at"),
            }
        })
        .collect())
}

impl Stored for GroupRecord {
    const ACTIONS: Actions = Actions {
        create: AuditAction::ScimGroupCreate,
        replace: AuditAction::ScimGroupReplace,
        patch: AuditAction::ScimGroupPatch,
        delete: AuditAction::ScimGroupDelete,
    };
    const TARGET: &'static str = "scim_group";
    const TABLE: &'static str = "scim_groups";
    const COLUMNS: &'static str = GROUP_COLUMNS;
    const FILTERS: &'static [(&'static str, &'static str)] = &[
        ("displayName", "lower(display_name) = lower({})"),
        ("externalId", "external_id = {}"),
    ];

    async fn from_rows(client: &impl GenericClient, rows: &[Row]) -> Result<Vec<GroupRecord>> {
        groups_from_rows(client, rows).await
    }

    fn details(input: &GroupInput) -> Value {
        json!({"members": input.members.len()})
    }

    fn removal_details(members: &BTreeSet<Uuid>) -> Value {
        json!({"members": members.len()})
    }

    /// Writes the group and its members; answers the entries whose roles may have changed (all
    /// of its members when it was created or renamed, else those who joined or left).
    async fn write(
        tx: &Transaction<'_>,
        connection: &Connection,
        id: Uuid,
        input: &GroupInput,
        create: bool,
    ) -> Result<BTreeSet<Uuid>> {
        let known: Vec<Uuid> = tx
            .query(
                &tx.prepare_cached(
                    "SELECT id FROM scim_users WHERE connection_id = $1 AND id = ANY($2)",
                )
                .await?,
                &[&connection.id.as_uuid(), &input.members],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if let Some(missing) = input.members.iter().find(|m| !known.contains(m)) {
            return Err(fault(
                ScimFault::InvalidValue,
                format!("members: {missing} is not a user of this directory"),
            ));
        }
        let renamed = if create {
            tx.execute(
                &tx.prepare_cached(
                    "INSERT INTO scim_groups (id, connection_id, org_id, display_name, external_id)
                     SELECT $1, $2, org_id, $3, $4 FROM sso_connections WHERE id = $2",
                )
                .await?,
                &[
                    &id,
                    &connection.id.as_uuid(),
                    &input.display_name,
                    &input.external_id,
                ],
            )
            .await?;
            true
        } else {
            let row = tx
                .query_opt(
                    &tx.prepare_cached(
                        "UPDATE scim_groups g SET display_name = $3, external_id = $4, version = g.version + 1, updated_at = now()
                         FROM (SELECT display_name FROM scim_groups WHERE id = $1 FOR UPDATE) old
                         WHERE g.id = $1 AND g.connection_id = $2
                         RETURNING old.display_name <> $3",
                    )
                    .await?,
                    &[&id, &connection.id.as_uuid(), &input.display_name, &input.external_id],
                )
                .await?
                .ok_or(SsoError::NotFound)?;
            row.get(0)
        };
        let before: BTreeSet<Uuid> = tx
            .query(
                &tx.prepare_cached("SELECT user_id FROM scim_group_members WHERE group_id = $1")
                    .await?,
                &[&id],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        tx.execute(
            &tx.prepare_cached(
                "DELETE FROM scim_group_members WHERE group_id = $1 AND NOT (user_id = ANY($2))",
            )
            .await?,
            &[&id, &input.members],
        )
        .await?;
        tx.execute(
            &tx.prepare_cached(
                "INSERT INTO scim_group_members (group_id, user_id) SELECT $1, unnest($2::uuid[]) ON CONFLICT DO NOTHING",
            )
            .await?,
            &[&id, &input.members],
        )
        .await?;
        let after: BTreeSet<Uuid> = input.members.iter().copied().collect();
        Ok(if renamed {
            before.union(&after).copied().collect()
        } else {
            before.symmetric_difference(&after).copied().collect()
        })
    }

    /// Deletes the group; answers its former members.
    async fn remove(
        tx: &Transaction<'_>,
        connection: &Connection,
        id: Uuid,
        _: &AuditContext,
    ) -> Result<BTreeSet<Uuid>> {
        let members: BTreeSet<Uuid> = tx
            .query(
                &tx.prepare_cached(
                    "DELETE FROM scim_group_members WHERE group_id = (SELECT id FROM scim_groups WHERE connection_id = $1 AND id = $2) RETURNING user_id",
                )
                .await?,
                &[&connection.id.as_uuid(), &id],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let n = tx
            .execute(
                &tx.prepare_cached("DELETE FROM scim_groups WHERE connection_id = $1 AND id = $2")
                    .await?,
                &[&connection.id.as_uuid(), &id],
            )
            .await?;
        if n == 0 {
            return Err(SsoError::NotFound);
        }
        Ok(members)
    }
}
