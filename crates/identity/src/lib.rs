//! Identity: users, organizations, owner/member roles, magic links, invites, sessions and API
//! keys. Plain Rust over PostgreSQL; the HTTP shell maps [`IdentityError`] to statuses.
//!
//! Every change records its audit event in the same transaction. Secrets (one-time tokens, API
//! keys) exist in clear only in the value returned to the caller that must deliver them; storage
//! holds SHA-256 hashes.

#[cfg(feature = "postgres")]
pub mod authn;
pub mod domain;
pub mod jwt;
pub mod policy;
pub mod secret;
#[cfg(feature = "postgres")]
pub mod store;
pub mod view;

pub use domain::{
    ApiKeyId, Email, InviteId, OrgId, OrgName, OrgRef, OrgSlug, Role, SessionId, UserId,
};
pub use policy::ApiKeyName;
pub use secret::{ApiKeySecret, OneTimeToken, SecretHash};

/// Everything identity can refuse or fail at.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The email address is malformed.
    #[error("invalid email address: {0}")]
    InvalidEmail(String),
    /// The organization slug is malformed.
    #[error("invalid organization slug: {0}")]
    InvalidSlug(String),
    /// Some other input is malformed.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A one-time token is unknown, used, expired, superseded or revoked (indistinguishably).
    #[error("the link is invalid or has expired; request a new one")]
    InvalidToken,
    /// No valid credentials: missing, malformed, unknown, expired or revoked.
    #[error("missing or invalid credentials")]
    InvalidCredentials,
    /// The principal may not do this (but may see the resource).
    #[error("{0}")]
    Forbidden(&'static str),
    /// The resource does not exist or the principal may not know it does.
    #[error("not found")]
    NotFound,
    /// The change would leave an organization without an owner.
    #[error("an organization must keep at least one owner")]
    LastOwner,
    /// The change would leave an organization that enforces single sign-on without a
    /// break-glass owner.
    #[error("the last break-glass owner stays an owner while single sign-on is enforced: make another owner a break-glass owner first")]
    LastBreakGlass,
    /// The user is already a member.
    #[error("already a member of this organization")]
    AlreadyMember,
    /// The slug is taken.
    #[error("that organization slug is taken")]
    SlugTaken,
    /// The organization requires single sign-on for this (an invite to an address in a domain
    /// whose connection enforces it is accepted by signing in through the connection).
    #[error("{0}")]
    SsoRequired(String),
    /// Storage failed.
    #[cfg(feature = "postgres")]
    #[error(transparent)]
    Store(#[from] defendable_store::StoreError),
}

#[cfg(feature = "postgres")]
impl From<tokio_postgres::Error> for IdentityError {
    fn from(e: tokio_postgres::Error) -> Self {
        IdentityError::Store(e.into())
    }
}

#[cfg(feature = "postgres")]
impl From<deadpool_postgres::PoolError> for IdentityError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        IdentityError::Store(e.into())
    }
}
