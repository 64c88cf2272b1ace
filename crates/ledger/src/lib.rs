//! Defendable receipts: a per-organization hash chain that outsiders can verify byte for byte.
//!
//! # The contract
//!
//! A receipt is a JSON object `body`:
//!
//! ```json
//! {"v":1,"org":"<uuid>","seq":42,"parent":"<64 hex>","kind":"dataset.download",
//!  "created_at":"2026-11-28T23:08:57.123456Z","public":{},"private_digest":"<64 hex>"}
//! ```
//!
//! - `hash = hex(SHA-256(JCS(body)))` with JCS = RFC 8785 ([`canonical`]);
//!   `receipt_id = "DCR-" + seq zero-padded to at least 6 digits + "-" + hash[0..8]`.
//! - `parent` is the previous receipt's hash (64 zeros for seq 0); per organization `seq` runs
//!   0, 1, 2, … with no gap and no fork.
//! - `private_digest = hex(HMAC-SHA256(salt, JCS(private)))` with a fresh 32-byte salt per
//!   receipt; absent when there is no private part.
//! - The public projection is `{receipt_id, hash, body}` ([`receipt::projection`]).
//! - Each organization's receipts also form an RFC 9162 Merkle tree ([`merkle`]); its
//!   checkpoints are C2SP signed notes ([`note`]) and one receipt is proved by a v2 bundle
//!   ([`bundle`]) carrying no other receipt's body. v1 JSON checkpoints ([`checkpoint`]) stay
//!   verifiable.
//!
//! Without default features the crate is the pure core (no database, no I/O). The `postgres`
//! feature adds [`store`]: an in-transaction append path and a batching appender with one chain
//! rule, and streaming verification from storage.

pub mod bundle;
pub mod canonical;
pub mod checkpoint;
pub mod merkle;
pub mod note;
pub mod receipt;
pub mod share_token;
#[cfg(feature = "postgres")]
pub mod store;
pub mod verify;
pub mod view;

pub use bundle::{ConsistencyProof, ProofBundle, ProofFailure};
pub use canonical::{canonicalize, parse_strict};
pub use checkpoint::{Checkpoint, PublicKey, SignedCheckpoint, SigningKey};
pub use merkle::{TreeEdge, TreeHash};
pub use note::{LedgerName, OpenedCheckpoint, TreeHead, Vkeys};
pub use receipt::{projection, receipt_id, seal, Draft, Hash, ReceiptKind, Sealed};
pub use share_token::ShareToken;
pub use verify::{ChainVerifier, Link, Reason, VerifyFailure};
pub use view::{
    BodyFields, ChainCheck, ChainFailure, ExportLine, Projection, PublishedKeys, ReceiptPage,
    ReceiptView, ShareLink, V1Bundle,
};

/// Everything the ledger refuses or fails at.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The kind is not a dotted lowercase name.
    #[error("invalid receipt kind {0:?}: use dotted lowercase names such as dataset.download")]
    InvalidKind(String),
    /// The kind is one the server and the operations tools record themselves.
    #[error("the kind {0:?} is recorded only by the server and its operations tools")]
    ReservedKind(String),
    /// `public` or `private` is not a JSON object.
    #[error("`{0}` must be a JSON object")]
    NotAnObject(&'static str),
    /// A number JCS cannot carry exactly.
    #[error("number {0} cannot be represented exactly: use integers within ±(2^53−1) or finite decimals (send larger values as strings)")]
    UnsafeNumber(String),
    /// Not valid JSON.
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    /// The canonical body exceeds the limit.
    #[error("the receipt body is {0} bytes; the limit is 65536")]
    BodyTooLarge(usize),
    /// Not a 64-hex hash.
    #[error("invalid hash {0:?}")]
    InvalidHash(String),
    /// A key cannot be used.
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// A signature does not verify.
    #[error("bad signature: {0}")]
    BadSignature(String),
    /// A tree size or leaf index outside the tree.
    #[error("{0}")]
    OutOfRange(String),
    /// The receipt is committed but the tree does not cover it yet (a receipt written by an
    /// older release during a deploy); the background integrator adds it within seconds.
    #[error("this receipt is not in the Merkle tree yet; retry in a few seconds")]
    NotIntegrated,
    /// A proof does not verify, or the tree cannot produce one.
    #[error("{0}")]
    InvalidProof(String),
    /// The same Idempotency-Key was used with a different request.
    #[error("this Idempotency-Key was already used with a different request")]
    IdempotencyConflict,
    /// A batch transaction failed; nothing in it was committed.
    #[error("the receipt batch could not be committed: {0}")]
    BatchFailed(String),
    /// A batch failed because the database was away, saturated or too slow (a pool or lock
    /// wait timed out, the connection broke); nothing was committed and a retry may succeed.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// The appender is shutting down.
    #[error("the ledger appender is not running")]
    AppenderStopped,
    /// Storage failed.
    #[cfg(feature = "postgres")]
    #[error(transparent)]
    Store(#[from] defendable_store::StoreError),
}

#[cfg(feature = "postgres")]
impl From<tokio_postgres::Error> for LedgerError {
    fn from(e: tokio_postgres::Error) -> Self {
        LedgerError::Store(e.into())
    }
}

#[cfg(feature = "postgres")]
impl From<deadpool_postgres::PoolError> for LedgerError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        LedgerError::Store(e.into())
    }
}
