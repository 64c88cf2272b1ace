//! The directory in PostgreSQL. Every write takes the organization's row lock (as membership
//! changes do), writes the entry, settles what it grants — account link, role, deprovisioning —
//! and records its audit events and `member.role_change` receipts, all in one transaction.

use std::collections::BTreeSet;

use deadpool_postgres::{GenericClient, Transaction};
use defendable_identity::{Email, OrgRef, Role, UserId};
use defendable_store::audit::{self, Actor, AuditAction, AuditContext, AuditEvent};
use serde_json::{json, Value};
use tokio_postgres::error::SqlState;
use tokio_postgres::Row;
use uuid::Uuid;

use super::{
    fault, patch, Filter, GroupInput, GroupRecord, Kind, Page, ScimFault, ScimToken, UserInput,
    UserRecord,
};
use crate::membership::{deprovision, keep_break_glass, last_break_glass, role_change, Source};
use crate::store::{record_change, row_connection, Change, Connection, CONNECTION_COLUMNS};
use crate::{ConnectionId, Result, SsoError};

/// Issues a new SCIM token for a connection, replacing the one it had (which stops working at
/// once): an `idp.config_change` receipt whose private part holds the token's fingerprint.
pub async fn rotate_token(
    client: &mut impl GenericClient,
    change: Change<'_>,
    id: ConnectionId,
) -> Result<(ScimToken, time::OffsetDateTime)> {
    let token = ScimToken::generate();
    let tx = client.transaction().await?;
    let row = tx
        .query_opt(
            &tx.prepare_cached(
                "UPDATE sso_connections SET scim_token_hash = $3, scim_token_created_at = now()
                 WHERE org_id = $1 AND id = $2 RETURNING scim_token_created_at, provider",
            )
            .await?,
            &[&change.org.as_uuid(), &id.as_uuid(), &token.hash().to_vec()],
        )
        .await?
        .ok_or(SsoError::NotFound)?;
    let fingerprint: String = token.hash()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    record_change(
        &tx,
        change,
        AuditAction::SsoScimTokenRotate,
        format!("sso_connection:{id}"),
        json!({ "connection": id.to_string(), "provider": row.get::<_, String>(1), "fields": ["scim_token"] }),
        json!({ "scim_token_sha256_prefix": fingerprint }),
    )
    .await?;
    tx.commit().await?;
    Ok((token, row.get(0)))
}

/// Turns provisioning off: the token stops working. The directory's entries stay (turning it
/// back on resumes them).
pub async fn revoke_token(
    client: &mut impl GenericClient,
    change: Change<'_>,
    id: ConnectionId,
) -> Result<()> {
    let tx = client.transaction().await?;
    let row = tx
        .query_opt(
            &tx.prepare_cached(
                "UPDATE sso_connections SET scim_token_hash = NULL, scim_token_created_at = NULL
                 WHERE org_id = $1 AND id = $2 RETURNING provider",
            )
            .await?,
            &[&change.org.as_uuid(), &id.as_uuid()],
        )
        .await?
        .ok_or(SsoError::NotFound)?;
    record_change(
        &tx,
        change,
        AuditAction::SsoScimTokenRevoke,
        format!("sso_connection:{id}"),
        json!({ "connection": id.to_string(), "provider": row.get::<_, String>(0), "fields": ["scim_token"] }),
        json!({}),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The connection a SCIM token belongs to, if it belongs to the organization `org` names. A
/// token of another organization's connection is as unknown as a wrong one.
pub async fn authenticate(
    client: &impl GenericClient,
    token: &ScimToken,
    org: &OrgRef,
) -> Result<Option<Connection>> {
    let row = client
        .query_opt(
            &client
                .prepare_cached(&format!(
                    "SELECT {CONNECTION_COLUMNS}, (SELECT slug FROM orgs WHERE orgs.id = sso_connections.org_id) AS org_slug
                     FROM sso_connections WHERE scim_token_hash = $1"
                ))
                .await?,
            &[&token.hash().to_vec()],
        )
        .await?;
    let Some(row) = row else { return Ok(None) };
    let connection = row_connection(&row)?;
    let slug: String = row.get("org_slug");
    let ours = match org {
        OrgRef::Id(id) => *id == connection.org,
        OrgRef::Slug(s) => s.as_str() == slug,
    };
    Ok(ours.then_some(connection))
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

fn unique_violation(e: tokio_postgres::Error, what: impl Into<String>) -> SsoError {
    if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
        fault(ScimFault::Uniqueness, what)
    } else {
        e.into()
    }
}

async fn lock_org(tx: &Transaction<'_>, connection: &Connection) -> Result<()> {
    tx.execute(
        &tx.prepare_cached("SELECT 1 FROM orgs WHERE id = $1 FOR UPDATE")
            .await?,
        &[&connection.org.as_uuid()],
    )
    .await?;
    Ok(())
}

async fn event(
    tx: &Transaction<'_>,
    connection: &Connection,
    action: AuditAction,
    target: String,
    details: Value,
    ctx: &AuditContext,
) -> Result<()> {
    let mut e = AuditEvent::new(action, Actor::Scim(connection.id.as_uuid()))
        .on(target)
        .with(details);
    e.org_id = Some(connection.org.as_uuid());
    e.context = ctx.clone();
    audit::record(tx, &e).await?;
    Ok(())
}

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

/// One user of the connection's directory.
pub async fn get_user(
    client: &impl GenericClient,
    connection: &Connection,
    id: Uuid,
) -> Result<UserRecord> {
    let rows = client
        .query(
            &client
                .prepare_cached(&format!(
                    "SELECT {USER_COLUMNS} FROM scim_users WHERE connection_id = $1 AND id = $2"
                ))
                .await?,
            &[&connection.id.as_uuid(), &id],
        )
        .await?;
    users_from_rows(client, &rows)
        .await?
        .pop()
        .ok_or(SsoError::NotFound)
}

/// A page of the directory's users (oldest first) and how many match in all.
pub async fn list_users(
    client: &impl GenericClient,
    connection: &Connection,
    filter: Option<&Filter>,
    page: Page,
) -> Result<(i64, Vec<UserRecord>)> {
    let value = |a: &str| {
        filter
            .filter(|f| f.attribute == a)
            .map(|f| f.value.as_str())
    };
    let (name, external, display) = (value("userName"), value("externalId"), value("displayName"));
    let condition = "connection_id = $1
        AND ($2::text IS NULL OR lower(user_name) = lower($2))
        AND ($3::text IS NULL OR external_id = $3)
        AND ($4::text IS NULL OR display_name = $4)";
    let total: i64 = client
        .query_one(
            &client
                .prepare_cached(&format!(
                    "SELECT count(*) FROM scim_users WHERE {condition}"
                ))
                .await?,
            &[&connection.id.as_uuid(), &name, &external, &display],
        )
        .await?
        .get(0);
    let rows = client
        .query(
            &client
                .prepare_cached(&format!(
                    "SELECT {USER_COLUMNS} FROM scim_users WHERE {condition}
                     ORDER BY created_at, id OFFSET $5 LIMIT $6"
                ))
                .await?,
            &[
                &connection.id.as_uuid(),
                &name,
                &external,
                &display,
                &(page.start - 1),
                &page.count,
            ],
        )
        .await?;
    Ok((total, users_from_rows(client, &rows).await?))
}

async fn write_user(
    tx: &Transaction<'_>,
    connection: &Connection,
    id: Uuid,
    input: &UserInput,
    create: bool,
) -> Result<()> {
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
    Ok(())
}

/// Creates a directory user and settles what it grants.
pub async fn create_user(
    client: &mut impl GenericClient,
    connection: &Connection,
    input: &UserInput,
    ctx: &AuditContext,
) -> Result<UserRecord> {
    let id = Uuid::now_v7();
    let tx = client.transaction().await?;
    lock_org(&tx, connection).await?;
    write_user(&tx, connection, id, input, true).await?;
    event(
        &tx,
        connection,
        AuditAction::ScimUserCreate,
        format!("scim_user:{id}"),
        json!({}),
        ctx,
    )
    .await?;
    settle(&tx, connection, id, ctx).await?;
    let record = get_user(&tx, connection, id).await?;
    tx.commit().await?;
    Ok(record)
}

/// Replaces a directory user (PUT) and settles what it grants.
pub async fn replace_user(
    client: &mut impl GenericClient,
    connection: &Connection,
    id: Uuid,
    input: &UserInput,
    ctx: &AuditContext,
) -> Result<UserRecord> {
    let tx = client.transaction().await?;
    lock_org(&tx, connection).await?;
    write_user(&tx, connection, id, input, false).await?;
    event(
        &tx,
        connection,
        AuditAction::ScimUserReplace,
        format!("scim_user:{id}"),
        json!({}),
        ctx,
    )
    .await?;
    settle(&tx, connection, id, ctx).await?;
    let record = get_user(&tx, connection, id).await?;
    tx.commit().await?;
    Ok(record)
}

/// Applies a PatchOp to a directory user and settles what it grants.
pub async fn patch_user(
    client: &mut impl GenericClient,
    connection: &Connection,
    id: Uuid,
    body: &Value,
    ctx: &AuditContext,
) -> Result<UserRecord> {
    let tx = client.transaction().await?;
    lock_org(&tx, connection).await?;
    let mut doc = get_user(&tx, connection, id).await?.document();
    patch::apply(Kind::User, &mut doc, body)?;
    let input = super::parse_user(&Value::Object(doc))?;
    write_user(&tx, connection, id, &input, false).await?;
    event(
        &tx,
        connection,
        AuditAction::ScimUserPatch,
        format!("scim_user:{id}"),
        json!({}),
        ctx,
    )
    .await?;
    settle(&tx, connection, id, ctx).await?;
    let record = get_user(&tx, connection, id).await?;
    tx.commit().await?;
    Ok(record)
}

/// Deletes a directory user, deprovisioning the account it named.
pub async fn delete_user(
    client: &mut impl GenericClient,
    connection: &Connection,
    id: Uuid,
    ctx: &AuditContext,
) -> Result<()> {
    let tx = client.transaction().await?;
    lock_org(&tx, connection).await?;
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
        set_role(
            &tx,
            connection,
            UserId::from_uuid(user),
            Grant::Revoked,
            ctx,
        )
        .await?;
    }
    tx.execute(
        &tx.prepare_cached("DELETE FROM scim_users WHERE id = $1")
            .await?,
        &[&id],
    )
    .await?;
    event(
        &tx,
        connection,
        AuditAction::ScimUserDelete,
        format!("scim_user:{id}"),
        json!({}),
        ctx,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

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

/// One group of the connection's directory.
pub async fn get_group(
    client: &impl GenericClient,
    connection: &Connection,
    id: Uuid,
) -> Result<GroupRecord> {
    let rows = client
        .query(
            &client
                .prepare_cached(&format!(
                    "SELECT {GROUP_COLUMNS} FROM scim_groups WHERE connection_id = $1 AND id = $2"
                ))
                .await?,
            &[&connection.id.as_uuid(), &id],
        )
        .await?;
    groups_from_rows(client, &rows)
        .await?
        .pop()
        .ok_or(SsoError::NotFound)
}

/// A page of the directory's groups (oldest first) and how many match in all.
pub async fn list_groups(
    client: &impl GenericClient,
    connection: &Connection,
    filter: Option<&Filter>,
    page: Page,
) -> Result<(i64, Vec<GroupRecord>)> {
    let value = |a: &str| {
        filter
            .filter(|f| f.attribute == a)
            .map(|f| f.value.as_str())
    };
    let (display, external) = (value("displayName"), value("externalId"));
    let condition = "connection_id = $1
        AND ($2::text IS NULL OR lower(display_name) = lower($2))
        AND ($3::text IS NULL OR external_id = $3)";
    let total: i64 = client
        .query_one(
            &client
                .prepare_cached(&format!(
                    "SELECT count(*) FROM scim_groups WHERE {condition}"
                ))
                .await?,
            &[&connection.id.as_uuid(), &display, &external],
        )
        .await?
        .get(0);
    let rows = client
        .query(
            &client
                .prepare_cached(&format!(
                    "SELECT {GROUP_COLUMNS} FROM scim_groups WHERE {condition}
                     ORDER BY created_at, id OFFSET $4 LIMIT $5"
                ))
                .await?,
            &[
                &connection.id.as_uuid(),
                &display,
                &external,
                &(page.start - 1),
                &page.count,
            ],
        )
        .await?;
    Ok((total, groups_from_rows(client, &rows).await?))
}

/// Writes a group and its members; returns the entries whose roles may have changed.
async fn write_group(
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

async fn settle_all(
    tx: &Transaction<'_>,
    connection: &Connection,
    entries: BTreeSet<Uuid>,
    ctx: &AuditContext,
) -> Result<()> {
    for entry in entries {
        settle(tx, connection, entry, ctx).await?;
    }
    Ok(())
}

/// Creates a group and settles its members' roles.
pub async fn create_group(
    client: &mut impl GenericClient,
    connection: &Connection,
    input: &GroupInput,
    ctx: &AuditContext,
) -> Result<GroupRecord> {
    let id = Uuid::now_v7();
    let tx = client.transaction().await?;
    lock_org(&tx, connection).await?;
    let affected = write_group(&tx, connection, id, input, true).await?;
    event(
        &tx,
        connection,
        AuditAction::ScimGroupCreate,
        format!("scim_group:{id}"),
        json!({"members": input.members.len()}),
        ctx,
    )
    .await?;
    settle_all(&tx, connection, affected, ctx).await?;
    let record = get_group(&tx, connection, id).await?;
    tx.commit().await?;
    Ok(record)
}

/// Replaces a group (PUT) and settles the roles of members who joined or left.
pub async fn replace_group(
    client: &mut impl GenericClient,
    connection: &Connection,
    id: Uuid,
    input: &GroupInput,
    ctx: &AuditContext,
) -> Result<GroupRecord> {
    let tx = client.transaction().await?;
    lock_org(&tx, connection).await?;
    let affected = write_group(&tx, connection, id, input, false).await?;
    event(
        &tx,
        connection,
        AuditAction::ScimGroupReplace,
        format!("scim_group:{id}"),
        json!({"members": input.members.len()}),
        ctx,
    )
    .await?;
    settle_all(&tx, connection, affected, ctx).await?;
    let record = get_group(&tx, connection, id).await?;
    tx.commit().await?;
    Ok(record)
}

/// Applies a PatchOp to a group and settles the roles of members who joined or left.
pub async fn patch_group(
    client: &mut impl GenericClient,
    connection: &Connection,
    id: Uuid,
    body: &Value,
    ctx: &AuditContext,
) -> Result<GroupRecord> {
    let tx = client.transaction().await?;
    lock_org(&tx, connection).await?;
    let mut doc = get_group(&tx, connection, id).await?.document();
    patch::apply(Kind::Group, &mut doc, body)?;
    let input = super::parse_group(&Value::Object(doc))?;
    let affected = write_group(&tx, connection, id, &input, false).await?;
    event(
        &tx,
        connection,
        AuditAction::ScimGroupPatch,
        format!("scim_group:{id}"),
        json!({"members": input.members.len()}),
        ctx,
    )
    .await?;
    settle_all(&tx, connection, affected, ctx).await?;
    let record = get_group(&tx, connection, id).await?;
    tx.commit().await?;
    Ok(record)
}

/// Deletes a group and settles its former members' roles.
pub async fn delete_group(
    client: &mut impl GenericClient,
    connection: &Connection,
    id: Uuid,
    ctx: &AuditContext,
) -> Result<()> {
    let tx = client.transaction().await?;
    lock_org(&tx, connection).await?;
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
    event(
        &tx,
        connection,
        AuditAction::ScimGroupDelete,
        format!("scim_group:{id}"),
        json!({"members": members.len()}),
        ctx,
    )
    .await?;
    settle_all(&tx, connection, members, ctx).await?;
    tx.commit().await?;
    Ok(())
}

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
async fn settle(
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
