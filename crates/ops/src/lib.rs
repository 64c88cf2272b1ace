//! Operations on a Defendable deployment — any `DATABASE_URL` and object store, or the
//! zero-configuration development stack — run through `cargo xtask`:
//!
//! - [`backup`]: a consistent `pg_dump` encrypted to an age recipient before it touches disk,
//!   with a manifest of counts, chain heads and signed checkpoints taken from the same snapshot.
//! - [`drill`]: restores a backup into a fresh isolated database, verifies it against the
//!   manifest link by link, re-hashes sampled objects, drops what it made, and records the
//!   result as a `restore_drill` receipt.
//! - [`rotation`]: the `secret.rotation` receipt that ends a secret rotation.
//! - [`packet`]: the enterprise evidence packet.
//! - [`storage`]: the bucket's versioning and lifecycle rules, read from the bucket, and the
//!   sweep of uploads no catalog version references.
//! - [`release`]: signed release directories, verified from their files alone, recorded as
//!   `release` receipts.

pub mod backup;
pub mod deployment;
pub mod drill;
pub mod manifest;
pub mod packet;
pub mod postgres;
pub mod record;
pub mod release;
pub mod release_drill;
pub mod rotation;
pub mod storage;

pub use deployment::Deployment;

use std::path::PathBuf;

/// What can stop an operation. A drill that runs and finds a mismatch is not an error: it is a
/// failed [`drill::DrillReport`].
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// A setting is missing or wrong; the message says which and what to do.
    #[error("{0}")]
    Setup(String),
    /// A PostgreSQL program failed.
    #[error("{program} failed: {detail}")]
    Tool {
        /// The program.
        program: String,
        /// What it printed or why it could not run.
        detail: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The database refused or failed.
    #[error("database: {0}")]
    Database(String),
    /// Encryption or decryption failed.
    #[error("encryption: {0}")]
    Crypto(String),
    /// A backup does not match its manifest before anything is restored.
    #[error("backup: {0}")]
    Backup(String),
    /// An HTTP request to the deployment failed.
    #[error("http: {0}")]
    Http(String),
    /// A release directory does not verify (signature, checksums, contents).
    #[error("release: {0}")]
    Release(String),
}

/// Result alias.
pub type Result<T, E = OpsError> = std::result::Result<T, E>;

impl OpsError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> OpsError {
        OpsError::Io {
            path: path.into(),
            source,
        }
    }
}

impl From<tokio_postgres::Error> for OpsError {
    fn from(e: tokio_postgres::Error) -> Self {
        OpsError::Database(defendable_store::pg_message(&e))
    }
}

impl From<deadpool_postgres::PoolError> for OpsError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        OpsError::Database(e.to_string())
    }
}

impl From<defendable_store::StoreError> for OpsError {
    fn from(e: defendable_store::StoreError) -> Self {
        OpsError::Database(e.to_string())
    }
}

impl From<defendable_ledger::LedgerError> for OpsError {
    fn from(e: defendable_ledger::LedgerError) -> Self {
        OpsError::Database(format!("ledger: {e}"))
    }
}

/// SHA-256 of a file, hex, read in bounded memory.
pub fn sha256_file(path: &std::path::Path) -> Result<String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).map_err(|e| OpsError::io(path, e))?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| OpsError::io(path, e))?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    Ok(hex::encode(ctx.finish()))
}

/// Now, as RFC 3339 UTC.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Now, compact for file names: `20261129T120000Z`.
pub fn now_compact() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    )
}
