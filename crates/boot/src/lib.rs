//! Start-up wiring the server (`defendable-api`) and the operations tool (`defendable-ops`)
//! share, so that neither links the other: the database (an explicit `DATABASE_URL` or the
//! private development cluster), the server's pool settings, development secrets kept under
//! `DATA_DIR`, and the object store `OBJECT_STORE_URL` names ([`ObjectStoreTarget`], one
//! description for both).

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use defendable_config::Config;
use defendable_store::cluster::{Cluster, Durability};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::signer::Signer;
use object_store::ObjectStore;
use secrecy::ExposeSecret;

/// The database the development cluster serves.
const DEV_DATABASE: &str = "defendable";

/// The database the server uses: DATABASE_URL, or the private development cluster (started or
/// reused under `DATA_DIR/pg`, which the caller stops when it is done). Applies no migration.
pub async fn database(config: &Config) -> Result<(String, Option<Cluster>)> {
    match &config.database_url {
        Some(url) => Ok((url.expose_secret().to_owned(), None)),
        None => {
            let root = config.data_dir.join("pg");
            tracing::info!(path = %root.display(), "starting the private development PostgreSQL cluster");
            let cluster =
                tokio::task::spawn_blocking(move || Cluster::ensure(&root, Durability::Durable))
                    .await
                    .context("cluster start task")??;
            cluster
                .ensure_database(DEV_DATABASE)
                .await
                .context("creating the development database")?;
            Ok((cluster.url(DEV_DATABASE), Some(cluster)))
        }
    }
}

/// The server's pool: every wait bounded by `config::limits`; statements planned once per
/// connection (generic plans, see [`defendable_store::PoolSettings::generic_plans`]).
pub fn server_pool_settings(max_size: usize) -> defendable_store::PoolSettings {
    use defendable_config::limits;
    defendable_store::PoolSettings {
        max_size,
        wait: limits::DB_POOL_WAIT,
        connect: limits::DB_CONNECT,
        statement_timeout: Some(limits::DB_STATEMENT),
        lock_timeout: Some(limits::DB_LOCK),
        generic_plans: true,
    }
}

/// Development only: fills unset JWT_SECRET, OBJECT_URL_SIGNING_KEY, SSO_SECRET_KEY and
/// LEDGER_SIGNING_KEY with
/// values generated once
/// and kept (mode 0600) under `DATA_DIR/dev-secrets/`, so sessions survive restarts.
pub fn dev_secrets(config: &mut Config) -> Result<()> {
    if config.app_env.is_production() {
        return Ok(());
    }
    let data_dir = config.data_dir.clone();
    for (name, secret) in [
        ("jwt_secret", &mut config.jwt_secret),
        ("object_url_signing_key", &mut config.object_url_signing_key),
        ("sso_secret_key", &mut config.sso_secret_key),
    ] {
        if secret.current.is_none() {
            let value = kept_secret(&data_dir, name, || {
                Ok(format!(
                    "{}{}",
                    uuid::Uuid::new_v4().simple(),
                    uuid::Uuid::new_v4().simple()
                ))
            })?;
            secret.current = Some(value.into());
        }
    }
    if config.ledger_signing_key.is_none() {
        let value = kept_secret(&data_dir, "ledger_signing_key", || {
            Ok(defendable_ledger::SigningKey::generate()?.1)
        })?;
        config.ledger_signing_key = Some(value.into());
    }
    Ok(())
}

/// A development secret kept (mode 0600) under `DATA_DIR/dev-secrets/NAME`, generated on first use.
pub fn kept_secret(
    data_dir: &Path,
    name: &str,
    generate: impl FnOnce() -> Result<String>,
) -> Result<String> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let dir = data_dir.join("dev-secrets");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(name);
    if let Ok(existing) = std::fs::read_to_string(&path) {
        if !existing.trim().is_empty() {
            return Ok(existing.trim().to_owned());
        }
    }
    let value = generate()?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(value.as_bytes())?;
    Ok(value)
}

/// Presigns object URLs (S3).
pub type Presigner = Arc<dyn Signer>;

/// Where `OBJECT_STORE_URL` points: a directory (`file:///absolute/path`, or `DATA_DIR/objects`
/// when unset) or an S3 bucket with the settings of [`s3_builder`]. The server opens it
/// ([`ObjectStoreTarget::open`]); `defendable-ops storage-check` inspects the same target.
#[derive(Debug)]
pub enum ObjectStoreTarget {
    /// A local directory: no versioning or lifecycle API.
    Local(std::path::PathBuf),
    /// An S3 bucket.
    S3(Box<AmazonS3Builder>),
}

impl ObjectStoreTarget {
    /// The target `config` names.
    pub fn from_config(config: &Config) -> Result<ObjectStoreTarget> {
        match &config.object_store_url {
            None => Ok(ObjectStoreTarget::Local(config.data_dir.join("objects"))),
            Some(url) if url.scheme() == "file" => url
                .to_file_path()
                .map(ObjectStoreTarget::Local)
                .map_err(|_| anyhow::anyhow!("OBJECT_STORE_URL: {url} is not an absolute file path")),
            Some(url) if url.scheme() == "s3" => {
                Ok(ObjectStoreTarget::S3(Box::new(s3_builder(url)?)))
            }
            Some(url) => bail!(
                "OBJECT_STORE_URL: the {}:// scheme is not supported; use file:///absolute/path or s3://bucket",
                url.scheme()
            ),
        }
    }

    /// The store, and for S3 the signer that presigns its download URLs (the local backend
    /// has the API sign its own instead).
    pub fn open(&self) -> Result<(Arc<dyn ObjectStore>, Option<Presigner>)> {
        match self {
            ObjectStoreTarget::Local(path) => Ok((local(path)?, None)),
            ObjectStoreTarget::S3(builder) => {
                let s3 = Arc::new(
                    builder
                        .as_ref()
                        .clone()
                        .build()
                        .context("configuring S3 object storage")?,
                );
                Ok((s3.clone(), Some(s3)))
            }
        }
    }
}

/// The object store `config` names ([`ObjectStoreTarget`]), opened.
pub fn object_store(config: &Config) -> Result<(Arc<dyn ObjectStore>, Option<Presigner>)> {
    ObjectStoreTarget::from_config(config)?.open()
}

/// The S3 client settings for an `s3://bucket` OBJECT_STORE_URL: credentials, region and
/// `AWS_ENDPOINT_URL` from the usual `AWS_*` variables.
pub fn s3_builder(url: &defendable_config::Url) -> Result<AmazonS3Builder> {
    let bucket = url
        .host_str()
        .context("OBJECT_STORE_URL: s3:// needs a bucket name")?;
    let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
    if let Ok(endpoint) = std::env::var("AWS_ENDPOINT_URL") {
        builder = builder
            .with_endpoint(&endpoint)
            .with_allow_http(endpoint.starts_with("http://"));
    }
    Ok(builder)
}

fn local(path: &Path) -> Result<Arc<dyn ObjectStore>> {
    std::fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
    Ok(Arc::new(
        LocalFileSystem::new_with_prefix(path)
            .with_context(|| format!("opening {}", path.display()))?,
    ))
}
