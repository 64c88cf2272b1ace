//! The receipt body, its hash and id, the salted private digest, and the public projection —
//! exactly as fixed by the public contract (docs/receipts.md).

use std::fmt;

use ring::digest;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::{json, Map, Value};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::canonical::canonicalize;
use crate::LedgerError;

/// The body format version.
pub const VERSION: u64 = 1;

/// The largest canonical body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A SHA-256 digest, shown as 64 lowercase hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// The parent of receipt 0: 64 zeros.
    pub const GENESIS: Hash = Hash([0; 32]);

    /// SHA-256 of `bytes`.
    pub fn of(bytes: &[u8]) -> Hash {
        let d = digest::digest(&digest::SHA256, bytes);
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        Hash(out)
    }

    /// Parses 64 lowercase hex characters.
    pub fn parse(s: &str) -> Result<Hash, LedgerError> {
        if s.len() != 64
            || !s
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(LedgerError::InvalidHash(s.chars().take(80).collect()));
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| LedgerError::InvalidHash(s.to_owned()))?;
        Ok(Hash(out))
    }

    /// Lowercase hex, written straight into a buffer (`hex::encode` collects a char iterator,
    /// and every append formats several hashes).
    pub fn to_hex(&self) -> String {
        let mut out = [0u8; 64];
        hex::encode_to_slice(self.0, &mut out).expect("64 bytes hold 32 in hex");
        String::from_utf8(out.to_vec()).expect("hex digits are ASCII")
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

/// Kinds only the server and the operations tools record (grants, drills, rotations, releases,
/// identity-provider and role changes, break-glass uses); refused from every API route.
pub const RESERVED_KINDS: &[&str] = &[
    "dataset.download",
    "restore_drill",
    "secret.rotation",
    "release",
    "release_drill",
    "idp.config_change",
    "member.role_change",
    "sso.break_glass",
];

/// Reserved kinds whose private part holds settings only owners may read (an identity
/// provider's issuer, client id, domains, mapping, a secret's fingerprint): the member view
/// (every member and API key reads it) omits their private part and salt, for past receipts as
/// for new ones. The private digest in the hashed body still commits to them.
pub const OWNER_ONLY_PRIVATE_KINDS: &[&str] = &["idp.config_change"];

/// A receipt kind: dotted lowercase segments of `[a-z][a-z0-9_]*`, at most 64 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReceiptKind(String);

impl ReceiptKind {
    /// Parses a kind such as `dataset.download` or `restore_drill`.
    pub fn parse(s: &str) -> Result<ReceiptKind, LedgerError> {
        let segment_ok = |seg: &str| {
            let mut c = seg.chars();
            c.next().is_some_and(|c| c.is_ascii_lowercase())
                && c.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        };
        if s.len() <= 64 && s.split('.').all(segment_ok) {
            Ok(ReceiptKind(s.to_owned()))
        } else {
            Err(LedgerError::InvalidKind(s.chars().take(80).collect()))
        }
    }

    /// Parses a kind a client asks to record: a kind the server and the operations tools write
    /// themselves ([`RESERVED_KINDS`]) is refused, so no API caller can forge one.
    pub fn parse_client(s: &str) -> Result<ReceiptKind, LedgerError> {
        let kind = ReceiptKind::parse(s)?;
        if RESERVED_KINDS.contains(&kind.as_str()) {
            return Err(LedgerError::ReservedKind(kind.0));
        }
        Ok(kind)
    }

    /// The kind.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A receipt's id: `DCR-` + the sequence number zero-padded to at least 6 digits + `-` + the
/// first 8 hex characters of its hash, so an id checks itself against its body.
pub fn receipt_id(seq: u64, hash: &Hash) -> String {
    format!("DCR-{seq:06}-{}", &hash.to_hex()[..8])
}

/// Splits a receipt id into its sequence number and hash prefix.
pub fn parse_receipt_id(id: &str) -> Option<(u64, &str)> {
    let rest = id.strip_prefix("DCR-")?;
    let (seq, prefix) = rest.split_once('-')?;
    let valid = seq.len() >= 6
        && seq.bytes().all(|b| b.is_ascii_digit())
        && prefix.len() == 8
        && prefix
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !valid {
        return None;
    }
    let n: u64 = seq.parse().ok()?;
    // Exactly the canonical padding: no extra leading zeros beyond 6 digits.
    (format!("{n:06}") == seq).then_some((n, prefix))
}

/// `created_at` as the contract fixes it: UTC, RFC 3339, exactly 6 fractional digits, `Z`.
pub fn format_created_at(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

/// Truncates a time to the microsecond, the precision receipts (and PostgreSQL) carry.
pub fn truncate_to_micros(t: OffsetDateTime) -> OffsetDateTime {
    let micros = t.microsecond();
    t.replace_microsecond(micros).unwrap_or(t)
}

/// What a caller asks to record.
#[derive(Debug, Clone, PartialEq)]
pub struct Draft {
    kind: ReceiptKind,
    public: Map<String, Value>,
    private: Option<Map<String, Value>>,
}

impl Draft {
    /// A draft; `public` and `private` must be JSON objects.
    pub fn new(
        kind: ReceiptKind,
        public: Value,
        private: Option<Value>,
    ) -> Result<Draft, LedgerError> {
        let Value::Object(public) = public else {
            return Err(LedgerError::NotAnObject("public"));
        };
        let private = match private {
            None | Some(Value::Null) => None,
            Some(Value::Object(p)) => Some(p),
            Some(_) => return Err(LedgerError::NotAnObject("private")),
        };
        Ok(Draft {
            kind,
            public,
            private,
        })
    }

    /// The kind.
    pub fn kind(&self) -> &ReceiptKind {
        &self.kind
    }
}

/// The salted digest of a private part: HMAC-SHA256 keyed by the salt over JCS(private).
pub fn private_digest(salt: &[u8; 32], private: &Map<String, Value>) -> Result<Hash, LedgerError> {
    let bytes = canonicalize(&Value::Object(private.clone()))?;
    let key = hmac::Key::new(hmac::HMAC_SHA256, salt);
    let tag = hmac::sign(&key, &bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    Ok(Hash(out))
}

/// A fresh 32-byte salt from the CSPRNG.
pub fn fresh_salt() -> [u8; 32] {
    let mut salt = [0u8; 32];
    SystemRandom::new()
        .fill(&mut salt)
        .expect("the operating system's CSPRNG is available");
    salt
}

/// A receipt with its place in the chain, ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct Sealed {
    /// Organization.
    pub org: Uuid,
    /// Position in the org's chain.
    pub seq: u64,
    /// Hash of receipt `seq - 1` (zeros for 0).
    pub parent: Hash,
    /// SHA-256 of `canonical`.
    pub hash: Hash,
    /// `DCR-…` id.
    pub id: String,
    /// Kind.
    pub kind: ReceiptKind,
    /// Creation time (µs precision).
    pub created_at: OffsetDateTime,
    /// JCS bytes of the body: what the hash covers.
    pub canonical: Vec<u8>,
    /// The body.
    pub body: Value,
    /// The private part, for members.
    pub private: Option<Map<String, Value>>,
    /// The salt of the private digest.
    pub salt: Option<[u8; 32]>,
}

/// Places a draft at `seq` after `parent`, with a fresh salt for its private part.
pub fn seal(
    org: Uuid,
    seq: u64,
    parent: Hash,
    created_at: OffsetDateTime,
    draft: Draft,
) -> Result<Sealed, LedgerError> {
    let salt = draft.private.as_ref().map(|_| fresh_salt());
    seal_with_salt(org, seq, parent, created_at, draft, salt)
}

/// [`seal`] with a given salt (tests and reproducible examples).
pub fn seal_with_salt(
    org: Uuid,
    seq: u64,
    parent: Hash,
    created_at: OffsetDateTime,
    draft: Draft,
    salt: Option<[u8; 32]>,
) -> Result<Sealed, LedgerError> {
    let created_at = truncate_to_micros(created_at);
    let mut body = json!({
        "v": VERSION,
        "org": org.to_string(),
        "seq": seq,
        "parent": parent.to_hex(),
        "kind": draft.kind.as_str(),
        "created_at": format_created_at(created_at),
        "public": Value::Object(draft.public),
    });
    let salt = match (&draft.private, salt) {
        (Some(private), Some(salt)) => {
            let digest = private_digest(&salt, private)?;
            body["private_digest"] = Value::String(digest.to_hex());
            Some(salt)
        }
        (Some(_), None) => return Err(LedgerError::NotAnObject("salt")),
        (None, _) => None,
    };
    let canonical = canonicalize(&body)?;
    if canonical.len() > MAX_BODY_BYTES {
        return Err(LedgerError::BodyTooLarge(canonical.len()));
    }
    let hash = Hash::of(&canonical);
    Ok(Sealed {
        org,
        seq,
        parent,
        hash,
        id: receipt_id(seq, &hash),
        kind: draft.kind,
        created_at,
        canonical,
        body,
        private: draft.private,
        salt,
    })
}

/// The public projection: everything needed to recompute the hash, nothing private.
pub fn projection(receipt_id: &str, hash: &Hash, body: &Value) -> crate::view::Projection {
    crate::view::Projection {
        body: body.clone(),
        hash: hash.to_hex(),
        receipt_id: receipt_id.to_owned(),
    }
}
