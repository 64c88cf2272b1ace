//! API keys: only hashes are stored; a key acts as a member of its organization.

use super::*;
use crate::ApiKeyName;

/// An API key from `id, name, prefix, last4, created_by, created_at, last_used_at, expires_at,
/// revoked_at`.
fn row_api_key(r: &tokio_postgres::Row) -> ApiKey {
    ApiKey {
        id: ApiKeyId::from_uuid(r.get(0)),
        name: r.get(1),
        prefix: r.get(2),
        last4: r.get(3),
        created_by: UserId::from_uuid(r.get(4)),
        created_at: r.get(5),
        last_used_at: r.get(6),
        expires_at: r.get(7),
        revoked_at: r.get(8),
    }
}

/// Creates an API key and returns it with its secret, shown exactly once.
pub async fn create_api_key(
    client: &mut Client,
    actor: UserId,
    org: OrgId,
    name: &ApiKeyName,
    expires_at: Option<OffsetDateTime>,
    ctx: &AuditContext,
) -> Result<(ApiKey, ApiKeySecret)> {
    let expires_at = crate::policy::key_expiry(expires_at, OffsetDateTime::now_utc())?;
    let name = name.as_str();
    let secret = ApiKeySecret::generate();
    let id = ApiKeyId::generate();
    let tx = client.transaction().await?;
    let created_at: OffsetDateTime = tx
        .query_one(
            &tx.prepare_cached("INSERT INTO api_keys (id, org_id, name, prefix, last4, secret_hash, created_by, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING created_at").await?,
            &[
                &id.as_uuid(),
                &org.as_uuid(),
                &name,
                &ApiKeySecret::PREFIX,
                &secret.last4(),
                &secret.hash().as_bytes(),
                &actor.as_uuid(),
                &expires_at,
            ],
        )
        .await?
        .get(0);
    let e = event(AuditAction::ApiKeyCreate, actor, Some(org), ctx)
        .on(format!("api_key:{id}"))
        .with(json!({"name": name, "last4": secret.last4()}));
    record(&tx, &e).await?;
    tx.commit().await?;
    Ok((
        ApiKey {
            id,
            name: name.to_owned(),
            prefix: ApiKeySecret::PREFIX.to_owned(),
            last4: secret.last4(),
            created_by: actor,
            created_at,
            last_used_at: None,
            expires_at,
            revoked_at: None,
        },
        secret,
    ))
}

/// An organization's API keys, revoked ones included, by id.
pub async fn list_api_keys(
    client: &impl GenericClient,
    org: OrgId,
    page: PageRequest,
) -> Result<Page<ApiKey>> {
    let rows = client
        .query(
            &client.prepare_cached("SELECT id, name, prefix, last4, created_by, created_at, last_used_at, expires_at, revoked_at
             FROM api_keys WHERE org_id = $1 AND id > $2 ORDER BY id LIMIT $3").await?,
            &[&org.as_uuid(), &page.after(), &page.fetch()],
        )
        .await?;
    let items = rows.iter().map(row_api_key).collect();
    Ok(page.finish(items, |k: &ApiKey| k.id.as_uuid()))
}

/// Revokes an API key of `org`.
pub async fn revoke_api_key(
    client: &mut Client,
    actor: UserId,
    org: OrgId,
    key: ApiKeyId,
    ctx: &AuditContext,
) -> Result<()> {
    revoke(
        client,
        "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND org_id = $2 AND revoked_at IS NULL",
        key.as_uuid(),
        org,
        (AuditAction::ApiKeyRevoke, format!("api_key:{key}")),
        actor,
        ctx,
    )
    .await
}

/// An API key's state as stored, looked up by the hash of the presented secret.
#[derive(Debug, Clone, Copy)]
pub struct ApiKeyRow {
    /// The key.
    pub id: ApiKeyId,
    /// Its organization.
    pub org: OrgId,
    /// Expiry.
    pub expires_at: Option<OffsetDateTime>,
    /// Whether it was revoked.
    pub revoked: bool,
}

/// Looks a key up by hash.
pub async fn api_key_by_hash(
    client: &impl GenericClient,
    hash: &SecretHash,
) -> Result<Option<ApiKeyRow>> {
    let row = client
        .query_opt(
            &client.prepare_cached("SELECT id, org_id, expires_at, revoked_at IS NOT NULL FROM api_keys WHERE secret_hash = $1").await?,
            &[&hash.as_bytes()],
        )
        .await?;
    Ok(row.map(|r| ApiKeyRow {
        id: ApiKeyId::from_uuid(r.get(0)),
        org: OrgId::from_uuid(r.get(1)),
        expires_at: r.get(2),
        revoked: r.get(3),
    }))
}

/// Records a key's use, at most once a minute.
pub async fn touch_api_key(client: &impl GenericClient, key: ApiKeyId) -> Result<()> {
    client
        .execute(
            &client.prepare_cached("UPDATE api_keys SET last_used_at = now()
             WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')").await?,
            &[&key.as_uuid()],
        )
        .await?;
    Ok(())
}
