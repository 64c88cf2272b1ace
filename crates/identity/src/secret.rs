//! Secrets handed to people: magic-link and invite tokens, API keys. Only their SHA-256 hashes
//! are stored; `Debug` and `Display` never show them.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::rand::{SecureRandom, SystemRandom};
use secrecy::{ExposeSecret, SecretString};

use crate::IdentityError;

/// The SHA-256 of a secret: what storage holds and lookups use.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SecretHash([u8; 32]);

impl SecretHash {
    /// Hashes a secret's text.
    pub fn of(secret: &str) -> SecretHash {
        let d = ring::digest::digest(&ring::digest::SHA256, secret.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        SecretHash(out)
    }

    /// The raw bytes, for a `BYTEA` column.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretHash(..)")
    }
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    SystemRandom::new()
        .fill(&mut buf)
        .expect("the operating system's CSPRNG is available");
    buf
}

/// A one-time token sent by mail (magic link or invite): 256 random bits, base64url.
pub struct OneTimeToken(SecretString);

impl OneTimeToken {
    /// Length of the encoded token.
    pub const LEN: usize = 43;

    /// A fresh token from the CSPRNG.
    pub fn generate() -> OneTimeToken {
        OneTimeToken(SecretString::from(
            URL_SAFE_NO_PAD.encode(random_bytes::<32>()),
        ))
    }

    /// Accepts text that has a token's shape; anything else is the same invalid-token error a
    /// wrong token gets.
    pub fn parse(raw: &str) -> Result<OneTimeToken, IdentityError> {
        let raw = raw.trim();
        let shaped = raw.len() == Self::LEN
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if shaped {
            Ok(OneTimeToken(SecretString::from(raw.to_owned())))
        } else {
            Err(IdentityError::InvalidToken)
        }
    }

    /// The hash stored and looked up.
    pub fn hash(&self) -> SecretHash {
        SecretHash::of(self.0.expose_secret())
    }

    /// The token text, for the one message that carries it.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for OneTimeToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OneTimeToken(redacted)")
    }
}

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// An organization API key: `dfd_` + 40 random base62 characters + a 6-character base62 CRC32
/// of everything before it. The prefix never changes once shipped, so secret scanners can find
/// leaked keys, and the checksum rejects a mistyped key before any database access.
pub struct ApiKeySecret(SecretString);

impl ApiKeySecret {
    /// The fixed prefix.
    pub const PREFIX: &'static str = "dfd_";
    const RANDOM_LEN: usize = 40;
    const CHECK_LEN: usize = 6;
    /// Total length of a key.
    pub const LEN: usize = 4 + 40 + 6;

    /// A fresh key.
    pub fn generate() -> ApiKeySecret {
        let mut body = String::with_capacity(Self::LEN);
        body.push_str(Self::PREFIX);
        while body.len() < Self::PREFIX.len() + Self::RANDOM_LEN {
            for b in random_bytes::<64>() {
                // Rejection sampling keeps every character equally likely.
                if b < 248 && body.len() < Self::PREFIX.len() + Self::RANDOM_LEN {
                    body.push(BASE62[(b % 62) as usize] as char);
                }
            }
        }
        let check = checksum(&body);
        body.push_str(&check);
        ApiKeySecret(SecretString::from(body))
    }

    /// Parses a presented key, checking prefix, length, alphabet and checksum.
    pub fn parse(raw: &str) -> Result<ApiKeySecret, IdentityError> {
        let well_formed = raw.len() == Self::LEN
            && raw.starts_with(Self::PREFIX)
            && raw[Self::PREFIX.len()..]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric());
        if !well_formed {
            return Err(IdentityError::InvalidCredentials);
        }
        let (body, check) = raw.split_at(Self::LEN - Self::CHECK_LEN);
        if checksum(body) != check {
            return Err(IdentityError::InvalidCredentials);
        }
        Ok(ApiKeySecret(SecretString::from(raw.to_owned())))
    }

    /// Whether `raw` looks like one of our keys (used to route a bearer credential).
    pub fn looks_like(raw: &str) -> bool {
        raw.starts_with(Self::PREFIX)
    }

    /// The hash stored and looked up.
    pub fn hash(&self) -> SecretHash {
        SecretHash::of(self.0.expose_secret())
    }

    /// The last four characters, shown in lists so owners can tell keys apart.
    pub fn last4(&self) -> String {
        let s = self.0.expose_secret();
        s[s.len() - 4..].to_owned()
    }

    /// The key text, returned exactly once, at creation.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for ApiKeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKeySecret(redacted)")
    }
}

fn checksum(body: &str) -> String {
    let mut n = crc32fast::hash(body.as_bytes());
    let mut out = [b'0'; ApiKeySecret::CHECK_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    String::from_utf8(out.to_vec()).expect("base62 is ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_and_altered_keys_do_not() {
        for _ in 0..200 {
            let key = ApiKeySecret::generate();
            let text = key.expose().to_owned();
            assert_eq!(text.len(), ApiKeySecret::LEN);
            assert!(ApiKeySecret::parse(&text).is_ok());
            // Change one random-part character: the checksum must catch it.
            let mut bytes = text.into_bytes();
            bytes[10] = if bytes[10] == b'a' { b'b' } else { b'a' };
            let altered = String::from_utf8(bytes).expect("ascii");
            assert!(ApiKeySecret::parse(&altered).is_err());
        }
    }

    #[test]
    fn malformed_keys_are_refused() {
        let good = ApiKeySecret::generate().expose().to_owned();
        let cases = [
            String::new(),
            "dfd_".into(),
            good.replacen("dfd_", "ghp_", 1),
            format!("{good}x"),
            good[..good.len() - 1].to_owned(),
            good.replacen(&good[5..6], "-", 1),
        ];
        for c in cases {
            assert!(ApiKeySecret::parse(&c).is_err(), "{c:?}");
        }
    }

    #[test]
    fn debug_never_shows_secrets() {
        let key = ApiKeySecret::generate();
        let tok = OneTimeToken::generate();
        assert!(!format!("{key:?}").contains(key.expose()));
        assert!(!format!("{tok:?}").contains(tok.expose()));
        assert!(!format!("{:?}", key.hash()).contains("dfd_"));
    }

    #[test]
    fn one_time_tokens_have_256_bits_and_a_fixed_shape() {
        let a = OneTimeToken::generate();
        let b = OneTimeToken::generate();
        assert_ne!(a.expose(), b.expose());
        assert_eq!(URL_SAFE_NO_PAD.decode(a.expose()).expect("b64").len(), 32);
        assert!(OneTimeToken::parse(a.expose()).is_ok());
        assert!(OneTimeToken::parse("short").is_err());
        assert!(OneTimeToken::parse(&"!".repeat(43)).is_err());
    }
}
