//! What each core's errors are on the wire: every variant mapped to a stable code and status
//! (no catch-all: a new variant is a compile error here, not a silent 500).

use super::{ApiError, ErrorCode};

impl From<defendable_identity::IdentityError> for ApiError {
    fn from(e: defendable_identity::IdentityError) -> Self {
        use defendable_identity::IdentityError as E;
        let detail = e.to_string();
        match e {
            E::InvalidEmail(_) => Self::new(ErrorCode::InvalidEmail, detail),
            E::InvalidSlug(_) => Self::new(ErrorCode::InvalidSlug, detail),
            E::InvalidInput(_) => Self::new(ErrorCode::InvalidInput, detail),
            E::InvalidToken => Self::new(ErrorCode::InvalidToken, detail),
            E::InvalidCredentials => Self::new(ErrorCode::Unauthorized, detail),
            E::Forbidden(_) => Self::new(ErrorCode::Forbidden, detail),
            E::NotFound => Self::not_found(),
            E::LastOwner => Self::new(ErrorCode::LastOwner, detail),
            E::LastBreakGlass => Self::new(ErrorCode::BreakGlassRequired, detail),
            E::AlreadyMember => Self::new(ErrorCode::AlreadyMember, detail),
            E::SlugTaken => Self::new(ErrorCode::SlugTaken, detail),
            E::SsoRequired(_) => Self::new(ErrorCode::SsoRequired, detail),
            E::Store(inner) => Self::store(inner),
        }
    }
}

impl From<defendable_ledger::LedgerError> for ApiError {
    fn from(e: defendable_ledger::LedgerError) -> Self {
        use defendable_ledger::LedgerError;
        let detail = e.to_string();
        match e {
            LedgerError::InvalidKind(_) => ApiError::new(ErrorCode::InvalidKind, detail),
            LedgerError::ReservedKind(_) => ApiError::new(ErrorCode::ReservedKind, detail),
            LedgerError::NotAnObject(_) => ApiError::new(ErrorCode::NotAnObject, detail),
            LedgerError::UnsafeNumber(_) => ApiError::new(ErrorCode::UnsafeNumber, detail),
            LedgerError::InvalidJson(_) => ApiError::new(ErrorCode::MalformedJson, detail),
            LedgerError::BodyTooLarge(_) => ApiError::new(ErrorCode::BodyTooLarge, detail),
            LedgerError::IdempotencyConflict => {
                ApiError::new(ErrorCode::IdempotencyKeyReused, detail)
            }
            LedgerError::OutOfRange(_) => ApiError::new(ErrorCode::OutOfRange, detail),
            LedgerError::NotIntegrated => {
                ApiError::new(ErrorCode::NotYetIntegrated, detail).with_retry_after(2)
            }
            LedgerError::Store(inner) => ApiError::store(inner),
            LedgerError::Unavailable(cause) => ApiError::database_unavailable(cause),
            // The server's own data or keys failed a check, or the appender failed: nothing a
            // client sent can cause these, so each is a logged 500. Every variant is named
            // here: a new one cannot become a silent 500.
            LedgerError::InvalidHash(_)
            | LedgerError::InvalidKey(_)
            | LedgerError::BadSignature(_)
            | LedgerError::InvalidProof(_)
            | LedgerError::BatchFailed(_)
            | LedgerError::AppenderStopped => ApiError::internal(detail),
        }
    }
}

impl From<defendable_datasets::DatasetsError> for ApiError {
    fn from(e: defendable_datasets::DatasetsError) -> Self {
        use defendable_datasets::DatasetsError;
        let detail = e.to_string();
        match e {
            DatasetsError::Invalid { .. } => ApiError::new(ErrorCode::InvalidInput, detail),
            DatasetsError::DigestMismatch { .. } => {
                ApiError::new(ErrorCode::DigestMismatch, detail)
            }
            DatasetsError::ObjectMissing(_) => ApiError::new(ErrorCode::ObjectMissing, detail),
            DatasetsError::Storage(cause) => {
                tracing::error!(error = %cause, "object storage failure");
                ApiError::new(
                    ErrorCode::StorageUnavailable,
                    "object storage is unreachable; try again shortly",
                )
            }
            DatasetsError::NotFound => ApiError::not_found(),
            DatasetsError::QuotaExhausted { retry_after, .. } => {
                ApiError::new(ErrorCode::QuotaExhausted, detail).with_retry_after(retry_after)
            }
            DatasetsError::GrantExpired => ApiError::new(ErrorCode::GrantExpired, detail),
            DatasetsError::Ledger(inner) => inner.into(),
            DatasetsError::Store(inner) => ApiError::store(inner),
        }
    }
}

impl From<defendable_sso::SsoError> for ApiError {
    fn from(e: defendable_sso::SsoError) -> Self {
        use defendable_sso::SsoError as E;
        let detail = e.to_string();
        match e {
            E::InvalidInput(_) => ApiError::new(ErrorCode::InvalidInput, detail),
            E::NotFound => ApiError::not_found(),
            E::DomainExists => ApiError::new(ErrorCode::DomainExists, detail),
            E::DomainTaken => ApiError::new(ErrorCode::DomainTaken, detail),
            E::DomainRouted(_) => ApiError::new(ErrorCode::DomainRouted, detail),
            E::DomainNotVerified(_) => ApiError::new(ErrorCode::DomainNotVerified, detail),
            E::LimitReached(_) => ApiError::new(ErrorCode::LimitReached, detail),
            E::SecretRequired(_) => ApiError::new(ErrorCode::ClientSecretRequired, detail),
            E::Unconfigured => ApiError::new(ErrorCode::SsoUnavailable, detail),
            E::Identity(e) => e.into(),
            E::SealedWithUnknownKey => {
                tracing::error!(
                    "a stored SSO client secret opens under no configured SSO_SECRET_KEY"
                );
                ApiError::new(ErrorCode::SsoUnavailable, detail)
            }
            E::Dns(cause) => {
                tracing::warn!(error = %cause, "DNS lookup failed");
                ApiError::new(
                    ErrorCode::DnsUnavailable,
                    "the DNS lookup failed; try again shortly",
                )
                .with_retry_after(5)
            }
            E::Refused(_) => ApiError::new(ErrorCode::SsoRefused, detail),
            E::BreakGlassRequired(_) => ApiError::new(ErrorCode::BreakGlassRequired, detail),
            E::Provider(cause) => {
                tracing::warn!(error = %cause, "identity provider failure");
                ApiError::new(ErrorCode::SsoProviderUnavailable, detail)
            }
            E::Scim(fault, _) => {
                use defendable_sso::scim::ScimFault as F;
                let code = match fault {
                    F::Uniqueness => ErrorCode::ScimUniqueness,
                    F::LastOwner => ErrorCode::LastOwner,
                    F::NotImplemented => ErrorCode::NotImplemented,
                    _ => ErrorCode::ScimInvalid,
                };
                ApiError::new(code, detail)
            }
            E::Store(inner) => ApiError::store(inner),
            E::Ledger(inner) => inner.into(),
        }
    }
}
