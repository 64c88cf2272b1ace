//! Dataset domain values, valid by construction.

use std::fmt;

use crate::DatasetsError;

fn invalid(what: &'static str, why: impl Into<String>) -> DatasetsError {
    DatasetsError::Invalid {
        what,
        why: why.into(),
    }
}

/// A dataset's URL name: 2–64 characters of `a-z`, `0-9`, `-`, `_` and `.`, starting alphanumeric.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DatasetSlug(String);

impl DatasetSlug {
    /// Parses a slug.
    pub fn parse(s: &str) -> Result<Self, DatasetsError> {
        let ok = (2..=64).contains(&s.len())
            && s.bytes()
                .next()
                .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            && s.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
            });
        if ok {
            Ok(DatasetSlug(s.to_owned()))
        } else {
            Err(invalid(
                "dataset slug",
                format!("{s:?} must be 2-64 characters of a-z, 0-9, -, _ and ."),
            ))
        }
    }

    /// The slug.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DatasetSlug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A version label: 1–64 characters of letters, digits, `.`, `-`, `_` and `+`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetVersion(String);

impl DatasetVersion {
    /// Parses a version label.
    pub fn parse(s: &str) -> Result<Self, DatasetsError> {
        let ok = (1..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'+'));
        if ok {
            Ok(DatasetVersion(s.to_owned()))
        } else {
            Err(invalid(
                "dataset version",
                format!("{s:?} must be 1-64 characters of letters, digits, . - _ +"),
            ))
        }
    }

    /// The label.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A key in object storage: relative, `/`-separated, no empty, `.` or `..` segments, at most
/// 1,024 bytes of unreserved URL characters, so it is safe in a path and in a signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectKey(String);

impl ObjectKey {
    /// Parses an object key.
    pub fn parse(s: &str) -> Result<Self, DatasetsError> {
        let chars_ok = s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'-' | b'_' | b'~'));
        let segments_ok = s
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..");
        if !s.is_empty() && s.len() <= 1024 && chars_ok && segments_ok {
            Ok(ObjectKey(s.to_owned()))
        } else {
            Err(invalid("object key", "must be a relative path of letters, digits, / . - _ ~ with no empty, . or .. segments"))
        }
    }

    /// The key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A BLAKE3 digest as 64 lowercase hex characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blake3Digest([u8; 32]);

impl Blake3Digest {
    /// Parses lowercase or uppercase hex (stored lowercase).
    pub fn parse(s: &str) -> Result<Self, DatasetsError> {
        let mut out = [0u8; 32];
        if s.len() != 64 || hex::decode_to_slice(s, &mut out).is_err() {
            return Err(invalid("blake3", "must be 64 hex characters"));
        }
        Ok(Blake3Digest(out))
    }

    /// From a finished hasher.
    pub fn from_hash(h: blake3::Hash) -> Self {
        Blake3Digest(*h.as_bytes())
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}
