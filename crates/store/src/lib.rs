//! PostgreSQL plumbing shared by the Defendable cores: connection pools, the embedded
//! migrations (the only schema source), the private development cluster, and the audit log.
//!
//! This crate knows nothing of HTTP. Cores take a [`deadpool_postgres::GenericClient`] (a pooled
//! client or a transaction) so that a business write and its audit event commit together.

pub mod audit;
pub mod cluster;
pub mod conninfo;
pub mod loader;
mod migrate;
pub mod ratelimit;
pub mod slots;

use std::str::FromStr;

pub use deadpool_postgres::{GenericClient, Pool};

/// Makes ring the process's TLS crypto provider (rustls), once; later calls do nothing. HTTP
/// clients (reqwest, and object_store's S3 client through it) are built without a provider of
/// their own so that one provider, ring, serves the whole process: every binary calls this at
/// start, and so does the test kit.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
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
    /// A statement that served several callers at once failed; each caller gets this copy.
    #[error("{message}")]
    Shared {
        /// The failure, as the statement's error displayed it (its prefix included).
        message: String,
        /// Whether it was [`StoreError::is_unavailable`].
        unavailable: bool,
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

impl StoreError {
    /// Whether the failure is the database being away, overloaded or too slow rather than a bug:
    /// a pool wait or connect that timed out, a connection that broke or was refused, a server
    /// shutting down or starting up, too many connections, or a statement or lock timeout. The
    /// server answers these with 503 and `Retry-After`; a retry may well succeed.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Pool(deadpool_postgres::PoolError::Backend(e))
            | StoreError::Postgres(e) => pg_unavailable(e),
            StoreError::Pool(deadpool_postgres::PoolError::Timeout(_)) => true,
            StoreError::Pool(_) => false,
            StoreError::Shared { unavailable, .. } => *unavailable,
            _ => false,
        }
    }
}

fn pg_unavailable(e: &tokio_postgres::Error) -> bool {
    match e.as_db_error() {
        Some(db) => {
            let code = db.code().code();
            // Class 08: connection exception; 57P01-03: admin/crash shutdown, cannot connect
            // now; 53300: too many connections; 57014: statement timeout (query canceled);
            // 55P03: lock timeout; 40001/40P01: serialization failure and deadlock (retryable).
            code.starts_with("08")
                || matches!(
                    code,
                    "57P01" | "57P02" | "57P03" | "53300" | "57014" | "55P03" | "40001" | "40P01"
                )
        }
        // No server error: the socket closed, was refused or timed out.
        None => true,
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

/// How a pool waits and what its connections allow. Tools use [`PoolSettings::tools`]; the
/// server passes the bounds declared in `config::limits`.
#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    /// At most this many connections.
    pub max_size: usize,
    /// How long `get()` waits for a free connection before failing with a timeout.
    pub wait: std::time::Duration,
    /// How long opening a connection may take.
    pub connect: std::time::Duration,
    /// `statement_timeout` of every connection; `None` leaves the server default.
    pub statement_timeout: Option<std::time::Duration>,
    /// `lock_timeout` of every connection; `None` leaves the server default.
    pub lock_timeout: Option<std::time::Duration>,
    /// `plan_cache_mode = force_generic_plan` on every connection: a prepared statement is
    /// planned once per connection instead of at every execution. PostgreSQL's default keeps
    /// re-planning a statement whose custom plans look cheaper than its generic one, which is
    /// every statement given a NULL optional filter (`$3 IS NULL OR kind = $3` folds away) or an
    /// array (`= ANY($1)`); planning was a third of PostgreSQL's time on the server's hot reads
    /// (issue 14's profile). For the server, whose statements are keyed lookups and keyset
    /// pages; tools keep the default.
    pub generic_plans: bool,
}

impl PoolSettings {
    /// Patient settings for operator tools and tests: waits of ten seconds, no statement or
    /// lock timeout (a backup or a migration may legitimately run long).
    pub fn tools(max_size: usize) -> PoolSettings {
        PoolSettings {
            max_size,
            wait: std::time::Duration::from_secs(10),
            connect: std::time::Duration::from_secs(5),
            statement_timeout: None,
            lock_timeout: None,
            generic_plans: false,
        }
    }
}

/// Builds a connection pool for `url` with at most `max_size` connections and the patient
/// [`PoolSettings::tools`] waits. No connection is made until one is needed.
pub fn pool(url: &str, max_size: usize) -> Result<Pool, StoreError> {
    pool_with(url, PoolSettings::tools(max_size))
}

/// Builds a connection pool for `url` with `settings`. No connection is made until one is needed.
pub fn pool_with(url: &str, settings: PoolSettings) -> Result<Pool, StoreError> {
    // Never echo the URL: it may carry a password.
    let mut pg =
        tokio_postgres::Config::from_str(url).map_err(|e| StoreError::InvalidUrl(e.to_string()))?;
    pg.connect_timeout(settings.connect);
    // A server that vanishes without closing the socket (a cut network, a killed VM) is
    // noticed by keepalives instead of a request hanging on it.
    pg.keepalives(true)
        .keepalives_idle(std::time::Duration::from_secs(30));
    let mut options = pg.get_options().unwrap_or("").to_owned();
    for (name, value) in [
        ("statement_timeout", settings.statement_timeout),
        ("lock_timeout", settings.lock_timeout),
    ] {
        if let Some(v) = value {
            options.push_str(&format!(" -c {name}={}", v.as_millis()));
        }
    }
    if settings.generic_plans {
        options.push_str(" -c plan_cache_mode=force_generic_plan");
    }
    if !options.trim().is_empty() {
        pg.options(options.trim());
    }
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
        .max_size(settings.max_size)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        // The connection returned last is handed out next: a few hot backends serve a steady
        // load instead of every backend in turn (FIFO woke each of the ledger bench's 40 in
        // rotation, and its batch statements took about 40% longer).
        .queue_mode(deadpool_postgres::QueueMode::Lifo)
        .wait_timeout(Some(settings.wait))
        .create_timeout(Some(settings.connect))
        .recycle_timeout(Some(settings.connect))
        .build()
        .map_err(|e| StoreError::InvalidUrl(e.to_string()))
}
