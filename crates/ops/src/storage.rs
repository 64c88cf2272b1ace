//! Object storage hygiene (docs/protocols/backup-restore.md): `storage-sweep` finds objects under
//! the dataset prefix that no catalog version references — uploads the stager never published —
//! older than a grace period, and with `--apply` deletes them, recording what it removed as one
//! `storage.sweep` audit event.

use std::collections::HashSet;
use std::time::Duration;

use futures_util::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::ObjectStoreExt as _;
use serde::Serialize;
use serde_json::json;

use crate::{Deployment, OpsError, Result};

/// What to sweep.
#[derive(Debug, Clone)]
pub struct SweepOptions {
    /// Only objects under this prefix (the stager's upload prefix); required, so a sweep never
    /// reaches objects that are not datasets.
    pub prefix: String,
    /// Only objects last modified longer ago than this (an upload in progress is left alone).
    pub older_than: Duration,
    /// Delete them (otherwise only list).
    pub apply: bool,
}

/// An object no catalog version references.
#[derive(Debug, Clone, Serialize)]
pub struct Orphan {
    /// Its key.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// When it was last modified (RFC 3339).
    pub last_modified: String,
}

/// A sweep's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct SweepReport {
    /// Objects listed under the prefix.
    pub listed: usize,
    /// Unreferenced objects older than the grace period.
    pub orphans: Vec<Orphan>,
    /// Whether they were deleted.
    pub applied: bool,
}

/// Lists (and with `apply` deletes) the unreferenced objects under the prefix.
pub async fn storage_sweep(dep: &Deployment, opts: &SweepOptions) -> Result<SweepReport> {
    let prefix = opts.prefix.trim_matches('/');
    if prefix.is_empty() {
        return Err(OpsError::Setup(
            "--prefix is required: the stager's upload prefix, e.g. raw/ (a sweep never lists the whole store)".into(),
        ));
    }
    let referenced: HashSet<String> = {
        let client = dep.pool.get().await?;
        client
            .query(
                "SELECT object_key FROM dataset_versions UNION SELECT object_key FROM dataset_grants",
                &[],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    let cutoff = cutoff_secs(opts.older_than);
    let listed: Vec<object_store::ObjectMeta> = dep
        .objects
        .list(Some(&ObjectPath::from(prefix)))
        .try_collect()
        .await
        .map_err(|e| OpsError::Setup(format!("listing {prefix}/: {e}")))?;
    let mut orphans: Vec<Orphan> = listed
        .iter()
        .filter(|m| !referenced.contains(m.location.as_ref()))
        .filter(|m| m.last_modified.timestamp() <= cutoff)
        .map(|m| Orphan {
            key: m.location.to_string(),
            size: m.size,
            last_modified: m.last_modified.to_rfc3339(),
        })
        .collect();
    orphans.sort_by(|a, b| a.key.cmp(&b.key));
    if opts.apply && !orphans.is_empty() {
        for o in &orphans {
            dep.objects
                .delete(&ObjectPath::from(o.key.as_str()))
                .await
                .map_err(|e| OpsError::Setup(format!("deleting {}: {e}", o.key)))?;
        }
        let mut event = defendable_store::audit::AuditEvent::new(
            defendable_store::audit::AuditAction::parse("storage.sweep")?,
            defendable_store::audit::Actor::System,
        );
        event.target = Some(format!("{prefix}/"));
        event.details = json!({
            "removed": orphans.len(),
            "bytes": orphans.iter().map(|o| o.size).sum::<u64>(),
            "older_than_secs": opts.older_than.as_secs(),
            "keys": orphans.iter().take(100).map(|o| o.key.as_str()).collect::<Vec<_>>(),
        });
        let client = dep.pool.get().await?;
        defendable_store::audit::record(&client, &event).await?;
    }
    Ok(SweepReport {
        listed: listed.len(),
        orphans,
        applied: opts.apply,
    })
}

/// Unix seconds `older_than` ago.
fn cutoff_secs(older_than: Duration) -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp() - older_than.as_secs() as i64
}
