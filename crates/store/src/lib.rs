//! PostgreSQL plumbing shared by the Defendable cores: connection pools, the embedded
//! migrations (the only schema source), the private development cluster, and the audit log.
//!
//! This crate knows nothing of HTTP. Cores take a [`deadpool_postgres::GenericClient`] (a pooled
//! client or a transaction) so that a business write and its audit event commit together.

pub mod audit;
pub mod cluster;
mod migrate;
pub mod ratelimit;

use std::str::FromStr;

pub use deadpool_postgres::{GenericClient, Pool};
pub use migrate::{latest_version, migrate, migrations_fingerprint, schema_version};

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database URL cannot be parsed.
    #[error("invalid database URL: {0}")]
    InvalidUrl(String),
    /// A query or connection failed.
    #[error("database error: {}", pg_message(.0))]
    Postgres(#[from] tokio_postgres::Error),
    /// No connection could be taken from the pool.
    #[error("database pool error: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// Applying migrations failed.
    #[error("migration failed: {0}")]
    Migration(#[from] refinery::Error),
    /// The private development cluster could not be prepared.
    #[error("embedded PostgreSQL: {0}")]
    Cluster(String),
    /// A value does not satisfy its domain rule.
    #[error("invalid {what}: {why}")]
    Invalid {
        /// The kind of value.
        what: &'static str,
        /// Why it was refused.
        why: String,
    },
}

/// The most specific message of a PostgreSQL error: the server's own words when there are any.
pub fn pg_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => match std::error::Error::source(e) {
            Some(src) => format!("{e}: {src}"),
            None => e.to_string(),
        },
    }
}

/// Builds a connection pool for `url` with at most `max_size` connections. No connection is made
/// until one is needed.
pub fn pool(url: &str, max_size: usize) -> Result<Pool, StoreError> {
    // Never echo the URL: it may carry a password.
    let pg =
        tokio_postgres::Config::from_str(url).map_err(|e| StoreError::InvalidUrl(e.to_string()))?;
    let manager = deadpool_postgres::Manager::from_config(
        pg,
        tokio_postgres::NoTls,
        deadpool_postgres::ManagerConfig {
            recycling_method: deadpool_postgres::RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(max_size)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .wait_timeout(Some(std::time::Duration::from_secs(10)))
        .create_timeout(Some(std::time::Duration::from_secs(5)))
        .build()
        .map_err(|e| StoreError::InvalidUrl(e.to_string()))
}
