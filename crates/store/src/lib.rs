//! PostgreSQL plumbing shared by the Defendable cores: connection pools, the embedded
//! migrations (the only schema source), the private development cluster, and the audit log.
//!
//! This crate knows nothing of HTTP. Cores take a [`deadpool_postgres::GenericClient`] (a pooled
//! client or a transaction) so that a business write and its audit event commit together.

pub mod audit;
pub mod cluster;
pub mod conninfo;
mod migrate;
pub mod ratelimit;

use std::str::FromStr;

pub use deadpool_postgres::{GenericClient, Pool};
pub use migrate::{
    embedded_migrations, latest_version, migrate, migrate_to, migrations_fingerprint,
    schema_version,
};

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

/// A TLS connector trusting the system's root certificates.
fn tls_connector() -> Result<tokio_postgres_rustls::MakeRustlsConnect, StoreError> {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for cert in found.certs {
        // A certificate the store cannot parse is skipped, as browsers do.
        let _ = roots.add(cert);
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::InvalidUrl(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// Builds a connection pool for `url` with at most `max_size` connections. No connection is made
/// until one is needed.
pub fn pool(url: &str, max_size: usize) -> Result<Pool, StoreError> {
    // Never echo the URL: it may carry a password.
    let pg =
        tokio_postgres::Config::from_str(url).map_err(|e| StoreError::InvalidUrl(e.to_string()))?;
    let manager_config = deadpool_postgres::ManagerConfig {
        recycling_method: deadpool_postgres::RecyclingMethod::Fast,
    };
    let manager = if pg.get_ssl_mode() == tokio_postgres::config::SslMode::Disable {
        deadpool_postgres::Manager::from_config(pg, tokio_postgres::NoTls, manager_config)
    } else {
        // `sslmode=prefer` (the default) tries TLS and falls back; `require` insists. The
        // server certificate is checked against the system's trust store, where operators put
        // their database CA.
        deadpool_postgres::Manager::from_config(pg, tls_connector()?, manager_config)
    };
    Pool::builder(manager)
        .max_size(max_size)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .wait_timeout(Some(std::time::Duration::from_secs(10)))
        .create_timeout(Some(std::time::Duration::from_secs(5)))
        .build()
        .map_err(|e| StoreError::InvalidUrl(e.to_string()))
}
