//! The datasets' PostgreSQL operations. A grant is one transaction: quota unit, grant row,
//! `dataset.download` receipt (through the ledger's in-transaction path), its share link and the
//! audit event — all or nothing.

use std::net::IpAddr;
use std::time::Duration;

use deadpool_postgres::{Client, GenericClient};
use defendable_ledger::store::{self as ledger, StoredReceipt};
use defendable_ledger::ShareToken;
use defendable_ledger::{Draft, ReceiptKind};
use defendable_store::audit::{record, Actor, AuditAction, AuditContext, AuditEvent};
use object_store::ObjectStore;
use serde::Serialize;
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::quota::{resets_at, retry_after, utc_day};
use crate::{objects, Blake3Digest, DatasetSlug, DatasetVersion, DatasetsError, ObjectKey};

type Result<T> = std::result::Result<T, DatasetsError>;

/// A catalog entry: public fields of the current verified version, never the object key (the
/// API's shape itself).
pub type CatalogEntry = crate::view::DatasetView;

/// What a stager publishes.
#[derive(Debug, Clone)]
pub struct Publication {
    /// Slug.
    pub slug: DatasetSlug,
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Version.
    pub version: DatasetVersion,
    /// License.
    pub license: String,
    /// Media type.
    pub media_type: String,
    /// Where the bytes are.
    pub object_key: ObjectKey,
    /// The digest the stager computed, if it sent one.
    pub blake3: Option<Blake3Digest>,
}

fn text(what: &'static str, value: &str, min: usize, max: usize) -> Result<()> {
    let n = value.chars().count();
    if n < min || n > max || value.chars().any(|c| c.is_control() && c != '\n') {
        return Err(DatasetsError::Invalid {
            what,
            why: format!("must be {min}-{max} characters without control characters"),
        });
    }
    Ok(())
}

/// Hashes the object once (bounded memory), refuses a disagreeing stager digest, and registers
/// or updates the version as the dataset's current one.
pub async fn publish(
    client: &mut Client,
    objects_store: &dyn ObjectStore,
    p: &Publication,
) -> Result<CatalogEntry> {
    text("title", &p.title, 1, 200)?;
    text("description", &p.description, 0, 4000)?;
    text("license", &p.license, 1, 200)?;
    text("media_type", &p.media_type, 1, 200)?;
    let (size, digest) = objects::digest(objects_store, &p.object_key).await?;
    if let Some(claimed) = p.blake3 {
        if claimed != digest {
            return Err(DatasetsError::DigestMismatch {
                claimed: claimed.to_hex(),
                actual: digest.to_hex(),
            });
        }
    }
    let tx = client.transaction().await?;
    tx.execute(
        &tx.prepare_cached("INSERT INTO datasets (slug, title, description, license, media_type, current_version)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (slug) DO UPDATE SET title = $2, description = $3, license = $4, media_type = $5,
             current_version = $6, updated_at = now()").await?,
        &[&p.slug.as_str(), &p.title, &p.description, &p.license, &p.media_type, &p.version.as_str()],
    )
    .await?;
    tx.execute(
        &tx.prepare_cached("INSERT INTO dataset_versions (slug, version, object_key, size, blake3) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (slug, version) DO UPDATE SET object_key = $3, size = $4, blake3 = $5, verified_at = now()").await?,
        &[&p.slug.as_str(), &p.version.as_str(), &p.object_key.as_str(), &(size as i64), &digest.to_hex()],
    )
    .await?;
    tx.commit().await?;
    entry(&*client, &p.slug)
        .await?
        .ok_or(DatasetsError::NotFound)
}

const ENTRY: &str = "SELECT d.slug, d.title, d.description, v.version, d.license, d.media_type, v.size, v.blake3, v.verified_at
                     FROM datasets d JOIN dataset_versions v ON v.slug = d.slug AND v.version = d.current_version";

fn row_entry(r: &tokio_postgres::Row) -> CatalogEntry {
    CatalogEntry {
        slug: r.get(0),
        title: r.get(1),
        description: r.get(2),
        version: r.get(3),
        license: r.get(4),
        media_type: r.get(5),
        size: r.get(6),
        blake3: r.get(7),
        verified_at: r.get(8),
    }
}

/// One catalog entry.
pub async fn entry(
    client: &impl GenericClient,
    slug: &DatasetSlug,
) -> Result<Option<CatalogEntry>> {
    let statement = client
        .prepare_cached(&format!("{ENTRY} WHERE d.slug = $1"))
        .await?;
    let row = client.query_opt(&statement, &[&slug.as_str()]).await?;
    Ok(row.as_ref().map(row_entry))
}

/// Catalog entries after `cursor` (a slug), optionally matching `q` in slug, title or
/// description; at most `limit` + 1 rows (the extra one tells the caller there is a next page).
pub async fn catalog(
    client: &impl GenericClient,
    cursor: Option<&str>,
    q: Option<&str>,
    limit: i64,
) -> Result<Vec<CatalogEntry>> {
    let pattern = q.map(|q| {
        format!(
            "%{}%",
            q.replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        )
    });
    let statement = client
        .prepare_cached(&format!(
            "{ENTRY} WHERE d.slug > $1
               AND ($2::text IS NULL OR d.slug ILIKE $2 OR d.title ILIKE $2 OR d.description ILIKE $2)
             ORDER BY d.slug LIMIT $3"
        ))
        .await?;
    let rows = client
        .query(&statement, &[&cursor.unwrap_or(""), &pattern, &limit])
        .await?;
    Ok(rows.iter().map(row_entry).collect())
}

/// Records that `principal` viewed the catalog, at most once per minute across all processes.
/// Returns whether this call recorded the event.
pub async fn record_catalog_view(
    client: &mut Client,
    principal: &str,
    actor: Actor,
    org: Option<Uuid>,
    ctx: &AuditContext,
) -> Result<bool> {
    let tx = client.transaction().await?;
    let fresh = tx
        .execute(
            &tx.prepare_cached("INSERT INTO dataset_catalog_views (principal, minute) VALUES ($1, date_trunc('minute', now()))
             ON CONFLICT DO NOTHING").await?,
            &[&principal],
        )
        .await?
        == 1;
    if fresh {
        let mut e = AuditEvent::new(AuditAction::DatasetCatalog, actor);
        e.org_id = org;
        e.context = ctx.clone();
        record(&tx, &e).await?;
        // Keep the throttle table small: rows older than an hour have done their job.
        tx.execute(
            &tx.prepare_cached(
                "DELETE FROM dataset_catalog_views WHERE minute < now() - interval '1 hour'",
            )
            .await?,
            &[],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(fresh)
}

/// The quota of one organization today.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct QuotaStatus {
    /// Grants made today (UTC).
    pub used: i64,
    /// Grants allowed per UTC day.
    pub limit: i64,
    /// The next UTC midnight.
    #[serde(with = "time::serde::rfc3339")]
    pub resets_at: OffsetDateTime,
}

/// The organization's daily limit: its own, or `default_limit`.
pub async fn daily_limit(
    client: &impl GenericClient,
    org: Uuid,
    default_limit: i64,
) -> Result<i64> {
    let row = client
        .query_opt(
            &client
                .prepare_cached("SELECT daily_limit FROM dataset_quota_limits WHERE org_id = $1")
                .await?,
            &[&org],
        )
        .await?;
    Ok(row
        .map(|r| i64::from(r.get::<_, i32>(0)))
        .unwrap_or(default_limit))
}

/// Sets an organization's own daily limit (plans, operators).
pub async fn set_daily_limit(
    client: &impl GenericClient,
    org: Uuid,
    limit: i32,
    plan: Option<&str>,
) -> Result<()> {
    client
        .execute(
            &client.prepare_cached("INSERT INTO dataset_quota_limits (org_id, daily_limit, plan) VALUES ($1, $2, $3)
             ON CONFLICT (org_id) DO UPDATE SET daily_limit = $2, plan = $3, updated_at = now()").await?,
            &[&org, &limit, &plan],
        )
        .await?;
    Ok(())
}

/// Today's quota of `org`.
pub async fn quota(
    client: &impl GenericClient,
    org: Uuid,
    default_limit: i64,
    now: OffsetDateTime,
) -> Result<QuotaStatus> {
    let limit = daily_limit(client, org, default_limit).await?;
    let used: i64 = client
        .query_opt(
            &client
                .prepare_cached(
                    "SELECT used FROM dataset_quota_usage WHERE org_id = $1 AND day = $2",
                )
                .await?,
            &[&org, &utc_day(now)],
        )
        .await?
        .map(|r| i64::from(r.get::<_, i32>(0)))
        .unwrap_or(0);
    Ok(QuotaStatus {
        used,
        limit,
        resets_at: resets_at(now),
    })
}

/// Who asked for a grant.
#[derive(Debug, Clone)]
pub enum Grantee {
    /// A member, by session.
    User {
        /// User id.
        id: Uuid,
        /// Email.
        email: String,
    },
    /// An API key of the organization.
    ApiKey {
        /// Key id.
        id: Uuid,
    },
}

/// A grant request, already authorized by the caller.
#[derive(Debug, Clone)]
pub struct GrantRequest {
    /// Organization.
    pub org: Uuid,
    /// Dataset.
    pub slug: DatasetSlug,
    /// Grant lifetime.
    pub expires_in: Duration,
    /// Who.
    pub grantee: Grantee,
    /// The client address, for the receipt's private part.
    pub client_ip: Option<IpAddr>,
    /// DATASET_DOWNLOAD_DAILY_LIMIT, unless the org has its own.
    pub default_limit: i64,
    /// Request facts for the audit event.
    pub context: AuditContext,
}

/// A grant just made.
#[derive(Debug, Clone)]
pub struct Grant {
    /// Grant id.
    pub id: Uuid,
    /// The share link's token for its download (`/share/{token}/download`), minted with it.
    pub share_token: ShareToken,
    /// Its receipt.
    pub receipt: StoredReceipt,
    /// When the grant ends.
    pub expires_at: OffsetDateTime,
    /// The quota after this grant.
    pub quota: QuotaStatus,
}

/// Takes one unit of today's quota in `table` for `who` (its `column`) while fewer than `limit`
/// are used, in one statement; concurrent grants queue on the row, so exactly `limit` succeed
/// however many race. Returns the units used after this one, or `None` when none was left.
async fn take_unit(
    tx: &deadpool_postgres::Transaction<'_>,
    table: &str,
    column: &str,
    who: Uuid,
    now: OffsetDateTime,
    limit: i64,
) -> Result<Option<i64>> {
    let statement = tx
        .prepare_cached(&format!(
            "INSERT INTO {table} ({column}, day, used) VALUES ($1, $2, 1)
             ON CONFLICT ({column}, day) DO UPDATE SET used = {table}.used + 1
                 WHERE {table}.used < $3
             RETURNING used"
        ))
        .await?;
    let row = tx
        .query_opt(&statement, &[&who, &utc_day(now), &(limit as i32)])
        .await?;
    Ok(row.map(|r| i64::from(r.get::<_, i32>(0))))
}

/// Makes a grant: in one transaction, take one unit of today's quota (refusing when none is
/// left, with nothing written), record the grant, append its `dataset.download` receipt, create
/// its share link and record the audit event.
pub async fn grant(client: &mut Client, req: &GrantRequest) -> Result<Grant> {
    let now = OffsetDateTime::now_utc();
    let tx = client.transaction().await?;
    let version = tx
        .query_opt(
            &tx.prepare_cached("SELECT v.version, v.object_key, v.size, v.blake3 FROM datasets d
             JOIN dataset_versions v ON v.slug = d.slug AND v.version = d.current_version WHERE d.slug = $1").await?,
            &[&req.slug.as_str()],
        )
        .await?
        .ok_or(DatasetsError::NotFound)?;
    let (version, object_key, size, blake3): (String, String, i64, String) = (
        version.get(0),
        version.get(1),
        version.get(2),
        version.get(3),
    );
    let limit = daily_limit(&tx, req.org, req.default_limit).await?;
    let exhausted = |whose| DatasetsError::QuotaExhausted {
        whose,
        limit,
        resets_at: defendable_ledger::receipt::format_created_at(resets_at(now)),
        retry_after: retry_after(now),
    };
    if limit < 1 {
        return Err(exhausted("the organization's"));
    }
    let used = match take_unit(&tx, "dataset_quota_usage", "org_id", req.org, now, limit).await? {
        Some(used) => used,
        None => return Err(exhausted("the organization's")),
    };
    // The same limit also caps the person behind the grant across all of their organizations
    // (an API key counts for the user who created it), so free organizations do not multiply a
    // quota. A refusal here rolls back the organization's unit too.
    let person: Option<Uuid> = match &req.grantee {
        Grantee::User { id, .. } => Some(*id),
        Grantee::ApiKey { id } => tx
            .query_opt(
                &tx.prepare_cached("SELECT created_by FROM api_keys WHERE id = $1")
                    .await?,
                &[id],
            )
            .await?
            .map(|r| r.get(0)),
    };
    if let Some(person) = person {
        let taken = take_unit(&tx, "dataset_user_usage", "user_id", person, now, limit).await?;
        if taken.is_none() {
            return Err(exhausted("your"));
        }
    }
    let expires_at = now + time::Duration::try_from(req.expires_in).unwrap_or(time::Duration::DAY);
    let expires_text = defendable_ledger::receipt::format_created_at(expires_at);
    let (user_id, email, api_key_id) = match &req.grantee {
        Grantee::User { id, email } => (Some(*id), Some(email.clone()), None),
        Grantee::ApiKey { id } => (None, None, Some(*id)),
    };
    let draft = Draft::new(
        ReceiptKind::parse("dataset.download").expect("valid kind"),
        json!({
            "slug": req.slug.as_str(),
            "version": version,
            "size": size,
            "blake3": blake3,
            "grant_expires_at": expires_text,
        }),
        Some(json!({
            "object_key": object_key,
            "user_id": user_id.map(|u| u.to_string()),
            "api_key_id": api_key_id.map(|k| k.to_string()),
            "email": email,
            "client_ip": req.client_ip.map(|ip| ip.to_string()),
        })),
    )?;
    let sealed = ledger::append_in(&tx, req.org, draft).await?;
    let id = Uuid::now_v7();
    tx.execute(
        &tx.prepare_cached("INSERT INTO dataset_grants (id, org_id, seq, slug, version, object_key, user_id, api_key_id, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)").await?,
        &[&id, &req.org, &(sealed.seq as i64), &req.slug.as_str(), &version, &object_key, &user_id, &api_key_id, &expires_at],
    )
    .await?;
    let share_token = ShareToken::generate();
    ledger::create_share(&tx, req.org, sealed.seq, &share_token.hash(), user_id, None).await?;
    let actor = match req.grantee {
        Grantee::User { id, .. } => Actor::User(id),
        Grantee::ApiKey { id } => Actor::ApiKey(id),
    };
    let mut e = AuditEvent::new(AuditAction::DatasetDownload, actor);
    e.org_id = Some(req.org);
    e.context = req.context.clone();
    e.target = Some(sealed.id.clone());
    e.details = json!({ "outcome": "granted", "slug": req.slug.as_str(), "version": version, "grant_id": id, "quota_used": used, "quota_limit": limit });
    record(&tx, &e).await?;
    tx.commit().await?;
    Ok(Grant {
        id,
        share_token,
        receipt: StoredReceipt::from(&sealed),
        expires_at,
        quota: QuotaStatus {
            used,
            limit,
            resets_at: resets_at(now),
        },
    })
}

/// What became of a download through a grant's share link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantAccess {
    /// The grant had expired: refused.
    Expired,
    /// Object storage failed while the object was checked.
    StorageFailure,
    /// The browser was sent to a fresh short-lived object URL.
    Redirect,
}

/// Records what became of a download through `grant`'s share link (anonymous: the link is the
/// credential), on the grant's receipt `receipt_id`.
pub async fn record_grant_access(
    client: &impl GenericClient,
    grant: &GrantRow,
    receipt_id: &str,
    access: GrantAccess,
    ctx: &AuditContext,
) -> Result<()> {
    let grant_id = grant.id.to_string();
    let (action, details) = match access {
        GrantAccess::Expired => (
            AuditAction::ShareAccessError,
            json!({"reason": "grant_expired", "grant_id": grant_id}),
        ),
        GrantAccess::StorageFailure => (AuditAction::StorageFailure, json!({"grant_id": grant_id})),
        GrantAccess::Redirect => (
            AuditAction::DatasetDownload,
            json!({"outcome": "redirect", "grant_id": grant_id, "slug": grant.slug, "version": grant.version}),
        ),
    };
    let mut e = AuditEvent::new(action, Actor::Anonymous);
    e.org_id = Some(grant.org);
    e.context = ctx.clone();
    e.target = Some(receipt_id.to_owned());
    e.details = details;
    record(client, &e).await?;
    Ok(())
}

/// A grant as stored, found through its receipt.
#[derive(Debug, Clone)]
pub struct GrantRow {
    /// Grant id.
    pub id: Uuid,
    /// Organization.
    pub org: Uuid,
    /// Dataset.
    pub slug: String,
    /// Version.
    pub version: String,
    /// Where the bytes are.
    pub object_key: String,
    /// End of the grant.
    pub expires_at: OffsetDateTime,
}

/// The grant a receipt records, if the receipt is a grant.
pub async fn grant_for_receipt(
    client: &impl GenericClient,
    org: Uuid,
    seq: u64,
) -> Result<Option<GrantRow>> {
    let row = client
        .query_opt(
            &client.prepare_cached("SELECT id, org_id, slug, version, object_key, expires_at FROM dataset_grants WHERE org_id = $1 AND seq = $2").await?,
            &[&org, &(seq as i64)],
        )
        .await?;
    Ok(row.map(|r| GrantRow {
        id: r.get(0),
        org: r.get(1),
        slug: r.get(2),
        version: r.get(3),
        object_key: r.get(4),
        expires_at: r.get(5),
    }))
}
