//! Enterprise SSO (docs/sso-roadmap.md): verified domains and identity-provider connections.
//! Plain Rust over PostgreSQL; the HTTP shell maps [`SsoError`] to statuses.
//!
//! - [`domain`]: the values — domain names, issuers, client ids and secrets, provider presets,
//!   group→role mappings.
//! - [`sealed`]: client secrets sealed with AES-256-GCM under `SSO_SECRET_KEY` (the previous key
//!   still opens during a rotation); only sealed bytes reach storage.
//! - [`egress`]: where requests to identity providers may go (public addresses, unless
//!   allowed), checked in the HTTP client's resolver.
//! - [`recheck`]: the daily re-check that keeps a verified domain verified only while its record
//!   stays published.
//! - [`dns`]: the TXT lookup that verifies a domain, through `DNS_RESOLVER` or the system's.
//! - [`store`]: domains and connections; every change records its audit event and an
//!   `idp.config_change` receipt in the organization's chain in one transaction.
//! - [`scim`]: SCIM 2.0 provisioning — the directory's users and groups, what they grant, and
//!   deprovisioning.
//! - [`view`]: the API shapes.
//!
//! This crate composes identity (organizations, users, roles) and the ledger (receipts); neither
//! of those depends on it.

#[cfg(feature = "postgres")]
pub mod dns;
pub mod domain;
#[cfg(feature = "postgres")]
pub mod egress;
#[cfg(feature = "postgres")]
pub mod login;
#[cfg(feature = "postgres")]
pub mod membership;
#[cfg(feature = "postgres")]
pub mod oidc;
#[cfg(feature = "postgres")]
pub mod recheck;
pub mod scim;
pub mod sealed;
#[cfg(feature = "postgres")]
pub mod store;
pub mod view;

pub use domain::{ClientId, ClientSecret, ConnectionId, DomainName, GroupRoles, Issuer, Provider};

/// Everything SSO can refuse or fail at.
#[derive(Debug, thiserror::Error)]
pub enum SsoError {
    /// Some input is malformed; the message says which and why.
    #[error("{0}")]
    InvalidInput(String),
    /// The connection or domain does not exist in this organization.
    #[error("not found")]
    NotFound,
    /// The organization already claims this domain.
    #[error("the organization already claims this domain")]
    DomainExists,
    /// Another organization holds this domain verified.
    #[error("another organization has verified this domain")]
    DomainTaken,
    /// The TXT record was not found (the message says what the lookup saw).
    #[error("{0}")]
    DomainNotVerified(String),
    /// A connection names a domain another of the organization's connections already routes.
    #[error("{0}")]
    DomainRouted(String),
    /// Enforcement needs a break-glass owner (the message says which change was refused).
    #[error("{0}")]
    BreakGlassRequired(String),
    /// A change of issuer or client id came without the client secret to go with it.
    #[error("{0}")]
    SecretRequired(String),
    /// A declared limit (config::limits) would be exceeded.
    #[error("{0}")]
    LimitReached(String),
    /// SSO_SECRET_KEY is not configured: connections cannot be created or used.
    #[error("SSO_SECRET_KEY is not configured on this deployment")]
    Unconfigured,
    /// An identity rule refused (an invite, a token), as identity reports it.
    #[error(transparent)]
    Identity(defendable_identity::IdentityError),
    /// No SSO_SECRET_KEY opens a stored secret (the key was replaced without a rotation).
    #[error("no configured SSO_SECRET_KEY opens this connection's client secret")]
    SealedWithUnknownKey,
    /// Storage failed.
    #[cfg(feature = "postgres")]
    #[error(transparent)]
    Store(#[from] defendable_store::StoreError),
    /// The ledger refused or failed.
    #[error(transparent)]
    Ledger(#[from] defendable_ledger::LedgerError),
    /// A sign-in was refused: the message names the check that failed (state, browser, nonce,
    /// issuer, audience, signature, expiry, email, domain, role).
    #[error("single sign-on refused: {0}")]
    Refused(String),
    /// The identity provider could not be reached or answered nonsense.
    #[error("the identity provider is unavailable: {0}")]
    Provider(String),
    /// The DNS lookup itself failed (not "no such record").
    #[error("DNS lookup failed: {0}")]
    Dns(String),
    /// A SCIM request was refused (RFC 7644 §3.12's keyword and a message).
    #[error("{1}")]
    Scim(scim::ScimFault, String),
}

#[cfg(feature = "postgres")]
impl From<tokio_postgres::Error> for SsoError {
    fn from(e: tokio_postgres::Error) -> Self {
        SsoError::Store(e.into())
    }
}

#[cfg(feature = "postgres")]
impl From<deadpool_postgres::PoolError> for SsoError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        SsoError::Store(e.into())
    }
}

/// This crate's results.
pub type Result<T> = std::result::Result<T, SsoError>;
/// An identity error as this crate reports it.
#[cfg(feature = "postgres")]
pub(crate) fn identity_error(e: defendable_identity::IdentityError) -> SsoError {
    match e {
        defendable_identity::IdentityError::Store(s) => SsoError::Store(s),
        other => SsoError::InvalidInput(other.to_string()),
    }
}
