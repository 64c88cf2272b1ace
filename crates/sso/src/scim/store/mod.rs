//! The directory in PostgreSQL. Every write takes the organization's row lock (as membership
//! changes do), writes the entry, settles what it grants — account link, role, deprovisioning —
//! and records its audit events and `member.role_change` receipts, all in one transaction.
//!
//! Users and groups are kept through one set of operations ([`create`], [`replace`],
//! [`patch`], [`delete`], [`get`], [`list`]) over what differs between them ([`Stored`]).

mod grants;
mod groups;
mod tokens;
mod users;

pub use tokens::{authenticate, revoke_token, rotate_token};
pub use users::{entry_of, Entry};

use std::collections::BTreeSet;

use deadpool_postgres::{GenericClient, Transaction};
use defendable_store::audit::{self, Actor, AuditAction, AuditContext, AuditEvent};
use serde_json::Value;
use tokio_postgres::error::SqlState;
use tokio_postgres::Row;
use uuid::Uuid;

use super::{fault, patch as patch_op, Filter, Page, Resource, ScimFault};
use crate::store::Connection;
use crate::{Result, SsoError};

/// The audit actions of a resource type's writes.
#[derive(Debug, Clone, Copy)]
pub struct Actions {
    /// Created (POST).
    pub create: AuditAction,
    /// Replaced (PUT).
    pub replace: AuditAction,
    /// Patched (PATCH).
    pub patch: AuditAction,
    /// Deleted.
    pub delete: AuditAction,
}

/// How a resource type is kept: what the operations below need of users and groups.
// The futures need not be `Send`: the server runs each request on one worker thread.
#[allow(async_fn_in_trait)]
pub trait Stored: Resource {
    /// Its writes' audit actions.
    const ACTIONS: Actions;
    /// Its audit targets' prefix (`scim_user:{id}`).
    const TARGET: &'static str;
    /// What a write's audit event says of `input`.
    fn details(input: &Self::Input) -> Value;
    /// What a deletion's audit event says of the entries it affected.
    fn removal_details(affected: &BTreeSet<Uuid>) -> Value;
    /// Its table.
    const TABLE: &'static str;
    /// The columns [`Stored::from_rows`] reads.
    const COLUMNS: &'static str;
    /// The attributes a list filters on, each with its SQL condition (`{}` stands for the
    /// value's parameter).
    const FILTERS: &'static [(&'static str, &'static str)];
    /// The resources `rows` (of [`Stored::COLUMNS`]) hold, with what they link to.
    async fn from_rows(client: &impl GenericClient, rows: &[Row]) -> Result<Vec<Self>>;
    /// Writes it (`create`: a new one with `id`); answers the entries whose grants may have
    /// changed.
    async fn write(
        tx: &Transaction<'_>,
        connection: &Connection,
        id: Uuid,
        input: &Self::Input,
        create: bool,
    ) -> Result<BTreeSet<Uuid>>;
    /// Removes it; answers the entries whose grants may have changed.
    async fn remove(
        tx: &Transaction<'_>,
        connection: &Connection,
        id: Uuid,
        ctx: &AuditContext,
    ) -> Result<BTreeSet<Uuid>>;
}

/// One resource of the connection's directory.
pub async fn get<R: Stored>(
    client: &impl GenericClient,
    connection: &Connection,
    id: Uuid,
) -> Result<R> {
    let statement = format!(
        "SELECT {} FROM {} WHERE connection_id = $1 AND id = $2",
        R::COLUMNS,
        R::TABLE
    );
    let rows = client
        .query(
            &client.prepare_cached(&statement).await?,
            &[&connection.id.as_uuid(), &id],
        )
        .await?;
    R::from_rows(client, &rows)
        .await?
        .pop()
        .ok_or(SsoError::NotFound)
}

/// A page of the directory's resources (oldest first) and how many match in all.
pub async fn list<R: Stored>(
    client: &impl GenericClient,
    connection: &Connection,
    filter: Option<&Filter>,
    page: Page,
) -> Result<(i64, Vec<R>)> {
    // One parameter per filterable attribute, NULL unless the filter names it: one statement
    // per resource type whatever the filter.
    let mut condition = "connection_id = $1".to_owned();
    let mut values: Vec<Option<&str>> = Vec::new();
    for (n, (attribute, sql)) in R::FILTERS.iter().enumerate() {
        let param = format!("${}", n + 2);
        condition += &format!(
            " AND ({param}::text IS NULL OR {})",
            sql.replace("{}", &param)
        );
        values.push(
            filter
                .filter(|f| f.attribute == *attribute)
                .map(|f| f.value.as_str()),
        );
    }
    let connection_id = connection.id.as_uuid();
    let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&connection_id];
    params.extend(
        values
            .iter()
            .map(|v| v as &(dyn tokio_postgres::types::ToSql + Sync)),
    );
    let count = format!("SELECT count(*) FROM {} WHERE {condition}", R::TABLE);
    let total: i64 = client
        .query_one(&client.prepare_cached(&count).await?, &params)
        .await?
        .get(0);
    let (offset, limit) = (page.start - 1, page.count);
    let n = params.len();
    params.push(&offset);
    params.push(&limit);
    let select = format!(
        "SELECT {} FROM {} WHERE {condition} ORDER BY created_at, id OFFSET ${} LIMIT ${}",
        R::COLUMNS,
        R::TABLE,
        n + 1,
        n + 2
    );
    let rows = client
        .query(&client.prepare_cached(&select).await?, &params)
        .await?;
    Ok((total, R::from_rows(client, &rows).await?))
}

/// Creates a resource and settles what it grants.
pub async fn create<R: Stored>(
    client: &mut impl GenericClient,
    connection: &Connection,
    input: &R::Input,
    ctx: &AuditContext,
) -> Result<R> {
    let id = Uuid::now_v7();
    let tx = client.transaction().await?;
    lock_org(&tx, connection).await?;
    let record = save(&tx, connection, id, input, true, R::ACTIONS.create, ctx).await?;
    tx.commit().await?;
    Ok(record)
}

/// Replaces a resource (PUT) and settles what changed.
pub async fn replace<R: Stored>(
    client: &mut impl GenericClient,
    connection: &Connection,
    id: Uuid,
    input: &R::Input,
    ctx: &AuditContext,
) -> Result<R> {
    let tx = client.transaction().await?;
    lock_org(&tx, connection).await?;
    let record = save(&tx, connection, id, input, false, R::ACTIONS.replace, ctx).await?;
    tx.commit().await?;
    Ok(record)
}

/// Applies a PatchOp to a resource's document, re-validates it as a PUT body, and settles
/// what changed.
pub async fn patch<R: Stored>(
    client: &mut impl GenericClient,
    connection: &Connection,
    id: Uuid,
    body: &Value,
    ctx: &AuditContext,
) -> Result<R> {
    let tx = client.transaction().await?;
    lock_org(&tx, connection).await?;
    let mut doc = get::<R>(&tx, connection, id).await?.document();
    patch_op::apply(R::KIND, &mut doc, body)?;
    let input = R::parse(&Value::Object(doc))?;
    let record = save(&tx, connection, id, &input, false, R::ACTIONS.patch, ctx).await?;
    tx.commit().await?;
    Ok(record)
}

/// Deletes a resource and settles what it granted.
pub async fn delete<R: Stored>(
    client: &mut impl GenericClient,
    connection: &Connection,
    id: Uuid,
    ctx: &AuditContext,
) -> Result<()> {
    let tx = client.transaction().await?;
    lock_org(&tx, connection).await?;
    let affected = R::remove(&tx, connection, id, ctx).await?;
    let target = format!("{}:{id}", R::TARGET);
    let details = R::removal_details(&affected);
    event(&tx, connection, R::ACTIONS.delete, target, details, ctx).await?;
    settle_all(&tx, connection, affected, ctx).await?;
    tx.commit().await?;
    Ok(())
}

/// Writes a resource, records `action`, settles what may have changed and reads it back.
async fn save<R: Stored>(
    tx: &Transaction<'_>,
    connection: &Connection,
    id: Uuid,
    input: &R::Input,
    create: bool,
    action: AuditAction,
    ctx: &AuditContext,
) -> Result<R> {
    let affected = R::write(tx, connection, id, input, create).await?;
    let target = format!("{}:{id}", R::TARGET);
    event(tx, connection, action, target, R::details(input), ctx).await?;
    settle_all(tx, connection, affected, ctx).await?;
    get::<R>(tx, connection, id).await
}

pub(super) fn unique_violation(e: tokio_postgres::Error, what: impl Into<String>) -> SsoError {
    if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
        fault(ScimFault::Uniqueness, what)
    } else {
        e.into()
    }
}

pub(super) async fn lock_org(tx: &Transaction<'_>, connection: &Connection) -> Result<()> {
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

async fn settle_all(
    tx: &Transaction<'_>,
    connection: &Connection,
    entries: BTreeSet<Uuid>,
    ctx: &AuditContext,
) -> Result<()> {
    for entry in entries {
        grants::settle(tx, connection, entry, ctx).await?;
    }
    Ok(())
}
