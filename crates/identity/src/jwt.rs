//! Session access tokens: HS256 JWTs carrying a session id. The token only names the session;
//! whether it is still valid is decided by the session row in PostgreSQL.

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{IdentityError, SessionId, UserId};

/// The claims we sign.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// The user.
    pub sub: Uuid,
    /// The session.
    pub sid: Uuid,
    /// Issued at (Unix seconds).
    pub iat: i64,
    /// Expires at (Unix seconds).
    pub exp: i64,
    /// Always `defendable`.
    pub iss: String,
}

/// Which key verified a token, so rotations can watch the old one fall out of use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyUsed {
    /// JWT_SECRET.
    Current,
    /// JWT_SECRET_PREVIOUS.
    Previous,
}

/// Signing and verification keys.
pub struct SessionKeys {
    encoding: EncodingKey,
    current: DecodingKey,
    previous: Option<DecodingKey>,
    ttl: Duration,
    validation: Validation,
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionKeys")
            .field("previous", &self.previous.is_some())
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

const ISSUER: &str = "defendable";

impl SessionKeys {
    /// Keys from the current secret and, during a rotation, the previous one.
    pub fn new(current: &[u8], previous: Option<&[u8]>, ttl: Duration) -> SessionKeys {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "sub", "iss"]);
        SessionKeys {
            encoding: EncodingKey::from_secret(current),
            current: DecodingKey::from_secret(current),
            previous: previous.map(DecodingKey::from_secret),
            ttl,
            validation,
        }
    }

    /// Session lifetime.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Signs an access token for a session that expires at `exp` (Unix seconds).
    pub fn issue(&self, user: UserId, session: SessionId, now: i64, exp: i64) -> String {
        let claims = Claims {
            sub: user.as_uuid(),
            sid: session.as_uuid(),
            iat: now,
            exp,
            iss: ISSUER.to_owned(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing cannot fail")
    }

    /// Verifies the signature (current key, then previous), issuer and expiry.
    pub fn verify(&self, token: &str) -> Result<(Claims, KeyUsed), IdentityError> {
        match jsonwebtoken::decode::<Claims>(token, &self.current, &self.validation) {
            Ok(data) => return Ok((data.claims, KeyUsed::Current)),
            Err(e) if !matches!(e.kind(), jsonwebtoken::errors::ErrorKind::InvalidSignature) => {
                return Err(IdentityError::InvalidCredentials)
            }
            Err(_) => {}
        }
        let previous = self
            .previous
            .as_ref()
            .ok_or(IdentityError::InvalidCredentials)?;
        jsonwebtoken::decode::<Claims>(token, previous, &self.validation)
            .map(|d| (d.claims, KeyUsed::Previous))
            .map_err(|_| IdentityError::InvalidCredentials)
    }
}
