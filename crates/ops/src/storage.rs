//! Object storage hygiene (docs/protocols/backup-restore.md):
//!
//! - `storage-check` reads the bucket's own settings — versioning, and lifecycle rules that
//!   expire non-current versions and incomplete multipart uploads — and reports what is missing
//!   (in production a missing setting fails the command).
//! - `storage-sweep` finds objects under the dataset prefix that no catalog version references —
//!   uploads the stager never published — older than a grace period, and with `--apply` deletes
//!   them, recording what it removed as one `storage.sweep` audit event.

use std::collections::HashSet;
use std::time::Duration;

use defendable_boot::ObjectStoreTarget;
use futures_util::TryStreamExt;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey, AwsAuthorizer};
use object_store::client::HttpRequestBody;
use object_store::path::Path as ObjectPath;
use object_store::ObjectStoreExt as _;
use serde::{Deserialize, Serialize};
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
            defendable_store::audit::AuditAction::StorageSweep,
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

/// One bucket setting the check looked for.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// What was looked for.
    pub name: &'static str,
    /// Whether the bucket has it.
    pub ok: bool,
    /// What the bucket said.
    pub detail: String,
}

/// A storage check's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct StorageCheckReport {
    /// The store: `s3://bucket` or the directory.
    pub store: String,
    /// Whether the backend has versioning and lifecycle rules at all (a directory has not).
    pub supported: bool,
    /// Each setting, in order.
    pub findings: Vec<Finding>,
    /// Whether every setting is there (a backend without them has none to miss).
    pub ok: bool,
}

impl StorageCheckReport {
    /// The report for people.
    pub fn human(&self) -> String {
        let mut lines = vec![format!("object store {}", self.store)];
        if !self.supported {
            lines.push(
                "  a local directory has no versioning or lifecycle rules: back up DATA_DIR/objects with the filesystem's snapshots".into(),
            );
        }
        for f in &self.findings {
            let mark = if f.ok { "ok     " } else { "MISSING" };
            lines.push(format!("  {mark} {}: {}", f.name, f.detail));
        }
        lines.join("\n")
    }
}

/// `<VersioningConfiguration>` (GetBucketVersioning).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct VersioningConfiguration {
    status: Option<String>,
}

/// `<LifecycleConfiguration>` (GetBucketLifecycleConfiguration).
#[derive(Debug, Deserialize)]
struct LifecycleConfiguration {
    #[serde(rename = "Rule", default)]
    rules: Vec<LifecycleRule>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct LifecycleRule {
    #[serde(rename = "ID")]
    id: Option<String>,
    status: String,
    filter: Option<RuleFilter>,
    /// The pre-2018 form, still returned by some servers.
    prefix: Option<String>,
    noncurrent_version_expiration: Option<NoncurrentVersionExpiration>,
    abort_incomplete_multipart_upload: Option<AbortIncompleteMultipartUpload>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RuleFilter {
    prefix: Option<String>,
    and: Option<RuleAnd>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RuleAnd {
    prefix: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct NoncurrentVersionExpiration {
    noncurrent_days: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AbortIncompleteMultipartUpload {
    days_after_initiation: Option<u32>,
}

impl LifecycleRule {
    fn scope(&self) -> String {
        let prefix = self
            .filter
            .as_ref()
            .and_then(|f| {
                f.prefix
                    .clone()
                    .or(f.and.as_ref().and_then(|a| a.prefix.clone()))
            })
            .or(self.prefix.clone())
            .filter(|p| !p.is_empty());
        let id = self.id.as_deref().unwrap_or("unnamed");
        match prefix {
            Some(p) => format!("rule {id} (objects under {p})"),
            None => format!("rule {id} (the whole bucket)"),
        }
    }
}

/// Reads the bucket's versioning and lifecycle settings. The request is signed like the
/// object store's own (SigV4, the same credentials, region and endpoint); an error is a setting
/// that does not work (no credentials, access denied), not a missing bucket setting.
pub async fn storage_check(target: &ObjectStoreTarget) -> Result<StorageCheckReport> {
    let builder = match target {
        ObjectStoreTarget::Local(dir) => {
            return Ok(StorageCheckReport {
                store: dir.display().to_string(),
                supported: false,
                findings: Vec::new(),
                ok: true,
            })
        }
        ObjectStoreTarget::S3(builder) => builder,
    };
    let s3 = S3Bucket::new(builder).await?;
    let mut findings = Vec::new();

    let (status, body) = s3.get("versioning").await?;
    findings.push(match status {
        200 => {
            let v: VersioningConfiguration = quick_xml::de::from_str(&body)
                .map_err(|e| OpsError::Http(format!("GetBucketVersioning: {e}")))?;
            match v.status.as_deref() {
                Some("Enabled") => finding("versioning", true, "enabled"),
                Some(other) => finding("versioning", false, format!("{other}: turn it on")),
                None => finding("versioning", false, "never enabled: turn it on"),
            }
        }
        _ => unanswered("versioning", "GetBucketVersioning", status, &body),
    });

    let (status, body) = s3.get("lifecycle").await?;
    let rules = match status {
        200 => {
            let l: LifecycleConfiguration = quick_xml::de::from_str(&body)
                .map_err(|e| OpsError::Http(format!("GetBucketLifecycleConfiguration: {e}")))?;
            Ok(l.rules
                .into_iter()
                .filter(|r| r.status == "Enabled")
                .collect::<Vec<_>>())
        }
        404 if body.contains("NoSuchLifecycleConfiguration") => Ok(Vec::new()),
        _ => Err((status, body)),
    };
    match rules {
        Ok(rules) => {
            let noncurrent: Vec<String> = rules
                .iter()
                .filter_map(|r| {
                    let days = r.noncurrent_version_expiration.as_ref()?.noncurrent_days?;
                    Some(format!("{} after {days} days", r.scope()))
                })
                .collect();
            let incomplete: Vec<String> = rules
                .iter()
                .filter_map(|r| {
                    let days = r
                        .abort_incomplete_multipart_upload
                        .as_ref()?
                        .days_after_initiation?;
                    Some(format!("{} after {days} days", r.scope()))
                })
                .collect();
            findings.push(lifecycle_finding(
                "lifecycle: non-current versions expire",
                noncurrent,
                "no enabled rule with NoncurrentVersionExpiration (suggested: 90 days)",
            ));
            findings.push(lifecycle_finding(
                "lifecycle: incomplete multipart uploads are aborted",
                incomplete,
                "no enabled rule with AbortIncompleteMultipartUpload (suggested: 7 days)",
            ));
        }
        Err((status, body)) => {
            for name in [
                "lifecycle: non-current versions expire",
                "lifecycle: incomplete multipart uploads are aborted",
            ] {
                findings.push(unanswered(
                    name,
                    "GetBucketLifecycleConfiguration",
                    status,
                    &body,
                ));
            }
        }
    }
    Ok(StorageCheckReport {
        store: format!("s3://{}", s3.bucket),
        supported: true,
        ok: findings.iter().all(|f| f.ok),
        findings,
    })
}

fn finding(name: &'static str, ok: bool, detail: impl Into<String>) -> Finding {
    Finding {
        name,
        ok,
        detail: detail.into(),
    }
}

fn lifecycle_finding(name: &'static str, found: Vec<String>, missing: &str) -> Finding {
    if found.is_empty() {
        finding(name, false, missing)
    } else {
        finding(name, true, found.join("; "))
    }
}

/// A bucket that does not answer a settings call (a server that does not implement it).
fn unanswered(name: &'static str, call: &str, status: u16, body: &str) -> Finding {
    let code = xml_code(body).unwrap_or_default();
    finding(
        name,
        false,
        format!("{call} answered {status} {code}: the server cannot report it"),
    )
}

/// The `<Code>` of an S3 error document.
fn xml_code(body: &str) -> Option<&str> {
    let start = body.find("<Code>")? + "<Code>".len();
    let end = body[start..].find("</Code>")? + start;
    Some(&body[start..end])
}

/// Signed GETs of a bucket's subresources.
struct S3Bucket {
    bucket: String,
    endpoint: String,
    region: String,
    credential: std::sync::Arc<object_store::aws::AwsCredential>,
    http: reqwest::Client,
}

impl S3Bucket {
    async fn new(builder: &AmazonS3Builder) -> Result<S3Bucket> {
        let setup = |e: object_store::Error| OpsError::Setup(format!("S3 settings: {e}"));
        let s3 = builder.clone().build().map_err(setup)?;
        let credential = s3.credentials().get_credential().await.map_err(setup)?;
        let value = |key| builder.get_config_value(&key);
        let bucket = value(AmazonS3ConfigKey::Bucket).unwrap_or_default();
        let region = value(AmazonS3ConfigKey::Region).unwrap_or_else(|| "us-east-1".into());
        let virtual_hosted =
            value(AmazonS3ConfigKey::VirtualHostedStyleRequest).is_some_and(|v| v == "true");
        // The same bucket URL the object store's client uses.
        let endpoint = match (value(AmazonS3ConfigKey::Endpoint), virtual_hosted) {
            (Some(e), true) => e,
            (Some(e), false) => format!("{}/{bucket}", e.trim_end_matches('/')),
            (None, true) => format!("https://{bucket}.s3.{region}.amazonaws.com"),
            (None, false) => format!("https://s3.{region}.amazonaws.com/{bucket}"),
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| OpsError::Http(e.to_string()))?;
        Ok(S3Bucket {
            bucket,
            endpoint,
            region,
            credential,
            http,
        })
    }

    /// `GET <bucket>?<subresource>`: its status and body. Access refused is an error.
    async fn get(&self, subresource: &str) -> Result<(u16, String)> {
        let url = format!("{}?{subresource}", self.endpoint);
        let mut request = http::Request::builder()
            .method(http::Method::GET)
            .uri(&url)
            .body(HttpRequestBody::empty())
            .map_err(|e| OpsError::Setup(format!("{url}: {e}")))?;
        AwsAuthorizer::new(&self.credential, "s3", &self.region)
            .try_authorize(&mut request, None)
            .map_err(|e| OpsError::Setup(format!("signing {url}: {e}")))?;
        let mut send = self.http.get(&url);
        for (name, value) in request.headers() {
            send = send.header(name, value);
        }
        let response = send
            .send()
            .await
            .map_err(|e| OpsError::Http(format!("GET {url}: {e}")))?;
        let status = response.status().as_u16();
        let body = response
            .text()
            .await
            .map_err(|e| OpsError::Http(format!("GET {url}: {e}")))?;
        if status == 401 || status == 403 {
            return Err(OpsError::Http(format!(
                "GET {url} was refused ({status} {}): the credentials need s3:GetBucketVersioning and s3:GetLifecycleConfiguration",
                xml_code(&body).unwrap_or_default()
            )));
        }
        Ok((status, body))
    }
}
