//! Chain verification: every link, first failure named by its sequence number and reason.
//! Works on stored rows (canonical bytes) and on public projections (bodies).

use std::fmt;

use serde_json::Value;
use uuid::Uuid;

use crate::canonical::canonicalize;
use crate::receipt::{receipt_id, Hash, VERSION};

/// Why a receipt fails verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The sequence number is not the next one.
    SeqGap {
        /// The number expected.
        expected: u64,
    },
    /// The stored hash is not the SHA-256 of the canonical bytes.
    HashMismatch,
    /// The canonical bytes are not valid JSON.
    Unparsable,
    /// The bytes are valid JSON but not in canonical form.
    NotCanonical,
    /// A body field disagrees with the chain (`v`, `org`, `seq` or `parent`).
    BodyField(&'static str),
    /// `parent` is not the previous receipt's hash.
    ParentMismatch,
    /// The receipt id does not match the sequence number and hash.
    IdMismatch,
    /// The stored head does not match the last receipt of the chain.
    HeadMismatch,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::SeqGap { expected } => write!(f, "sequence gap: expected seq {expected}"),
            Reason::HashMismatch => f.write_str("hash does not match the canonical bytes"),
            Reason::Unparsable => f.write_str("body is not valid JSON"),
            Reason::NotCanonical => f.write_str("body bytes are not in canonical (JCS) form"),
            Reason::BodyField(field) => write!(f, "body field `{field}` does not match the chain"),
            Reason::ParentMismatch => {
                f.write_str("parent does not match the previous receipt's hash")
            }
            Reason::IdMismatch => f.write_str("receipt id does not match seq and hash"),
            Reason::HeadMismatch => f.write_str("the stored head does not match the last receipt"),
        }
    }
}

/// The first failure of a chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("receipt seq {seq}: {reason}")]
pub struct VerifyFailure {
    /// The failing receipt's position (as stored or as claimed).
    pub seq: u64,
    /// What is wrong.
    pub reason: Reason,
}

/// One stored receipt as verification sees it.
#[derive(Debug, Clone, Copy)]
pub struct Link<'a> {
    /// Stored sequence number.
    pub seq: u64,
    /// Stored hash (hex).
    pub hash: &'a str,
    /// Stored parent (hex).
    pub parent: &'a str,
    /// Stored id.
    pub receipt_id: &'a str,
    /// Stored canonical bytes.
    pub canonical: &'a [u8],
}

/// Verifies one organization's chain, one link at a time, in constant memory.
#[derive(Debug, Clone)]
pub struct ChainVerifier {
    org: String,
    next_seq: u64,
    prev: Hash,
}

impl ChainVerifier {
    /// A verifier for `org`'s chain from seq 0.
    pub fn new(org: Uuid) -> ChainVerifier {
        ChainVerifier {
            org: org.to_string(),
            next_seq: 0,
            prev: Hash::GENESIS,
        }
    }

    /// Receipts verified so far.
    pub fn count(&self) -> u64 {
        self.next_seq
    }

    /// The last verified hash (zeros before any receipt).
    pub fn head(&self) -> Hash {
        self.prev
    }

    /// Checks the next stored receipt: seq contiguity, hash of the stored bytes, canonical form,
    /// body fields, parent link, id.
    pub fn push(&mut self, link: Link<'_>) -> Result<(), VerifyFailure> {
        let fail = |reason| VerifyFailure {
            seq: link.seq,
            reason,
        };
        if link.seq != self.next_seq {
            return Err(fail(Reason::SeqGap {
                expected: self.next_seq,
            }));
        }
        let hash = Hash::of(link.canonical);
        if hash.to_hex() != link.hash {
            return Err(fail(Reason::HashMismatch));
        }
        let body: Value =
            serde_json::from_slice(link.canonical).map_err(|_| fail(Reason::Unparsable))?;
        match canonicalize(&body) {
            Ok(again) if again == link.canonical => {}
            _ => return Err(fail(Reason::NotCanonical)),
        }
        if link.parent != self.prev.to_hex() {
            return Err(fail(Reason::ParentMismatch));
        }
        self.check_body(&body, link.seq, link.parent)
            .map_err(|f| fail(Reason::BodyField(f)))?;
        if link.receipt_id != receipt_id(link.seq, &hash) {
            return Err(fail(Reason::IdMismatch));
        }
        self.next_seq += 1;
        self.prev = hash;
        Ok(())
    }

    /// Checks the next public projection (`{receipt_id, hash, body}`): the hash is recomputed
    /// from the body alone, as an outsider would.
    pub fn push_projection(&mut self, projection: &Value) -> Result<(), VerifyFailure> {
        let claimed_seq = projection["body"]["seq"].as_u64().unwrap_or(self.next_seq);
        let fail = |reason| VerifyFailure {
            seq: claimed_seq,
            reason,
        };
        let body = &projection["body"];
        let canonical = canonicalize(body).map_err(|_| fail(Reason::NotCanonical))?;
        let parent = body["parent"].as_str().unwrap_or_default().to_owned();
        let hash = projection["hash"].as_str().unwrap_or_default().to_owned();
        let id = projection["receipt_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        self.push(Link {
            seq: claimed_seq,
            hash: &hash,
            parent: &parent,
            receipt_id: &id,
            canonical: &canonical,
        })
    }

    fn check_body(&self, body: &Value, seq: u64, parent: &str) -> Result<(), &'static str> {
        if body["v"].as_u64() != Some(VERSION) {
            return Err("v");
        }
        if body["org"].as_str() != Some(self.org.as_str()) {
            return Err("org");
        }
        if body["seq"].as_u64() != Some(seq) {
            return Err("seq");
        }
        if body["parent"].as_str() != Some(parent) {
            return Err("parent");
        }
        Ok(())
    }
}
