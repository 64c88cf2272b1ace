//! Datasets: the members-only catalog, daily download quota, download grants (each with a
//! `dataset.download` receipt) and short-lived signed object URLs. Plain Rust over PostgreSQL
//! and `object_store`; the HTTP shell maps [`DatasetsError`] to statuses.

#[cfg(feature = "postgres")]
pub mod billing;
pub mod domain;
#[cfg(feature = "postgres")]
pub mod objects;
pub mod quota;
pub mod signed_url;
#[cfg(feature = "postgres")]
pub mod store;
pub mod view;

pub use domain::{Blake3Digest, DatasetSlug, DatasetVersion, ObjectKey};

/// Everything the datasets core refuses or fails at.
#[derive(Debug, thiserror::Error)]
pub enum DatasetsError {
    /// Malformed input.
    #[error("invalid {what}: {why}")]
    Invalid {
        /// What was malformed.
        what: &'static str,
        /// Why.
        why: String,
    },
    /// The stager's digest disagrees with the object's bytes.
    #[error("the object's BLAKE3 is {actual}, not the {claimed} the publisher stated")]
    DigestMismatch {
        /// What the publisher said.
        claimed: String,
        /// What the bytes hash to.
        actual: String,
    },
    /// The object does not exist in storage.
    #[error("object {0} does not exist in storage")]
    ObjectMissing(String),
    /// Object storage failed or is unreachable.
    #[error("object storage failed: {0}")]
    Storage(String),
    /// No such dataset (or not verified).
    #[error("no such dataset")]
    NotFound,
    /// The daily quota is used up: the organization's, or the grantee's own across all of
    /// their organizations.
    #[error("{whose} daily dataset download quota ({limit}) is used up until {resets_at}")]
    QuotaExhausted {
        /// Whose quota: "the organization's" or "your".
        whose: &'static str,
        /// The limit.
        limit: i64,
        /// When it resets (RFC 3339).
        resets_at: String,
        /// Seconds until then.
        retry_after: u64,
    },
    /// The grant has expired.
    #[error("this download grant has expired")]
    GrantExpired,
    /// The ledger refused or failed.
    #[error(transparent)]
    Ledger(#[from] defendable_ledger::LedgerError),
    /// Storage failed.
    #[cfg(feature = "postgres")]
    #[error(transparent)]
    Store(#[from] defendable_store::StoreError),
}

#[cfg(feature = "postgres")]
impl From<tokio_postgres::Error> for DatasetsError {
    fn from(e: tokio_postgres::Error) -> Self {
        DatasetsError::Store(e.into())
    }
}

#[cfg(feature = "postgres")]
impl From<deadpool_postgres::PoolError> for DatasetsError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        DatasetsError::Store(e.into())
    }
}
