//! Client secrets sealed at rest: AES-256-GCM with a key derived (HKDF-SHA256) from
//! `SSO_SECRET_KEY`, a fresh 96-bit nonce per seal, and the connection's id as associated data,
//! so a sealed secret copied onto another row does not open. Each sealed value records the id of
//! the key that sealed it; during a rotation `SSO_SECRET_KEY_PREVIOUS` still opens old values,
//! and every change re-seals under the current key.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};

use crate::{Result, SsoError};

/// One derived key and its public id.
struct Key {
    id: String,
    key: LessSafeKey,
}

impl Key {
    fn derive(secret: &str) -> Key {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"defendable-sso-secret-v1")
            .extract(secret.as_bytes());
        let mut bytes = [0u8; 32];
        prk.expand(&[b"client-secret"], &AES_256_GCM)
            .and_then(|okm| okm.fill(&mut bytes))
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        let digest = ring::digest::digest(
            &ring::digest::SHA256,
            &[b"defendable-sso-key-id:".as_slice(), &bytes].concat(),
        );
        Key {
            id: hex_prefix(digest.as_ref()),
            key: LessSafeKey::new(
                UnboundKey::new(&AES_256_GCM, &bytes).expect("a 32-byte AES-256 key"),
            ),
        }
    }
}

fn hex_prefix(bytes: &[u8]) -> String {
    bytes[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The keys that seal and open client secrets.
pub struct SecretKeys {
    current: Key,
    previous: Option<Key>,
}

impl std::fmt::Debug for SecretKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretKeys")
            .field("current", &self.current.id)
            .field("previous", &self.previous.as_ref().map(|k| &k.id))
            .finish()
    }
}

/// A sealed value and the id of the key that sealed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// `nonce ‖ ciphertext ‖ tag`.
    pub bytes: Vec<u8>,
    /// The sealing key's id (not secret).
    pub key_id: String,
}

impl SecretKeys {
    /// From `SSO_SECRET_KEY` and, during a rotation, `SSO_SECRET_KEY_PREVIOUS`.
    pub fn new(current: &str, previous: Option<&str>) -> SecretKeys {
        SecretKeys {
            current: Key::derive(current),
            previous: previous.map(Key::derive),
        }
    }

    /// The current key's id.
    pub fn current_id(&self) -> &str {
        &self.current.id
    }

    /// Seals `plain` under the current key, bound to `context` (the connection id).
    pub fn seal(&self, context: &[u8], plain: &[u8]) -> Sealed {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .expect("the operating system's CSPRNG is available");
        let mut buf = plain.to_vec();
        self.current
            .key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context),
                &mut buf,
            )
            .expect("AES-GCM seals any length this crate accepts");
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&buf);
        Sealed {
            bytes,
            key_id: self.current.id.clone(),
        }
    }

    /// Opens a sealed value with the key it names.
    pub fn open(&self, context: &[u8], sealed: &Sealed) -> Result<Vec<u8>> {
        let key = [Some(&self.current), self.previous.as_ref()]
            .into_iter()
            .flatten()
            .find(|k| k.id == sealed.key_id)
            .ok_or(SsoError::SealedWithUnknownKey)?;
        if sealed.bytes.len() < NONCE_LEN {
            return Err(SsoError::SealedWithUnknownKey);
        }
        let (nonce, body) = sealed.bytes.split_at(NONCE_LEN);
        let nonce =
            Nonce::try_assume_unique_for_key(nonce).map_err(|_| SsoError::SealedWithUnknownKey)?;
        let mut buf = body.to_vec();
        let plain = key
            .key
            .open_in_place(nonce, Aad::from(context), &mut buf)
            .map_err(|_| SsoError::SealedWithUnknownKey)?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_opens_and_rotates() {
        let old = SecretKeys::new("old secret key material, at least 32 bytes", None);
        let sealed = old.seal(b"connection-1", b"client secret");
        assert_ne!(sealed.bytes, b"client secret");
        assert_eq!(
            old.open(b"connection-1", &sealed).expect("opens"),
            b"client secret"
        );
        assert!(
            old.open(b"connection-2", &sealed).is_err(),
            "bound to its connection"
        );
        let mut tampered = sealed.clone();
        let last = tampered.bytes.len() - 1;
        tampered.bytes[last] ^= 1;
        assert!(old.open(b"connection-1", &tampered).is_err());

        let rotated = SecretKeys::new(
            "new secret key material, at least 32 bytes",
            Some("old secret key material, at least 32 bytes"),
        );
        assert_eq!(
            rotated.open(b"connection-1", &sealed).expect("opens"),
            b"client secret"
        );
        assert_ne!(rotated.current_id(), sealed.key_id);
        let after = SecretKeys::new("new secret key material, at least 32 bytes", None);
        assert!(matches!(
            after.open(b"connection-1", &sealed),
            Err(SsoError::SealedWithUnknownKey)
        ));
        assert_ne!(
            old.seal(b"c", b"x").bytes,
            old.seal(b"c", b"x").bytes,
            "a fresh nonce each time"
        );
    }
}
