//! Chain verification: every link, first failure named by its sequence number and reason.
//! Works on stored rows (canonical bytes) and on public projections (bodies).

use std::fmt;

use uuid::Uuid;

use crate::canonical::{canonicalize, check_canonical};
use crate::receipt::Hash;
use crate::view::{BodyFields, Projection};

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
    /// The stored Merkle tree of `size` leaves does not match the tree recomputed from the
    /// receipts (a node or the edge was altered, or the tree lost a leaf).
    TreeMismatch {
        /// The stored tree's size.
        size: u64,
    },
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
            Reason::TreeMismatch { size } => write!(
                f,
                "the stored Merkle tree of size {size} does not match the tree recomputed from the receipts"
            ),
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
    org_quoted: Vec<u8>,
    next_seq: u64,
    prev: Hash,
    prev_hex: [u8; 64],
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn hex_into(bytes: &[u8], out: &mut [u8]) {
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = HEX[(b >> 4) as usize];
        out[2 * i + 1] = HEX[(b & 0xf) as usize];
    }
}

/// Writes `n` in decimal, left-padded with zeros to `width`, into `buf`; returns the digits.
fn decimal(mut n: u64, width: usize, buf: &mut [u8; 24]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 && buf.len() - i >= width {
            break;
        }
    }
    &buf[i..]
}

impl ChainVerifier {
    /// A verifier for `org`'s chain from seq 0.
    pub fn new(org: Uuid) -> ChainVerifier {
        ChainVerifier {
            org_quoted: format!("\"{org}\"").into_bytes(),
            next_seq: 0,
            prev: Hash::GENESIS,
            prev_hex: [b'0'; 64],
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
    /// parent link, body fields, id.
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
        let mut hash_hex = [0u8; 64];
        hex_into(&hash.0, &mut hash_hex);
        if link.hash.as_bytes() != hash_hex {
            return Err(fail(Reason::HashMismatch));
        }
        let Some(top) = check_canonical(link.canonical) else {
            let parses = serde_json::from_slice::<serde::de::IgnoredAny>(link.canonical).is_ok();
            return Err(fail(if parses {
                Reason::NotCanonical
            } else {
                Reason::Unparsable
            }));
        };
        if link.parent.as_bytes() != self.prev_hex {
            return Err(fail(Reason::ParentMismatch));
        }
        if top.v != Some(b"1") {
            return Err(fail(Reason::BodyField("v")));
        }
        if top.org != Some(self.org_quoted.as_slice()) {
            return Err(fail(Reason::BodyField("org")));
        }
        let mut buf = [0u8; 24];
        if top.seq != Some(decimal(link.seq, 1, &mut buf)) {
            return Err(fail(Reason::BodyField("seq")));
        }
        let parent_ok = top
            .parent
            .is_some_and(|p| p.len() == 66 && p[1..65] == self.prev_hex);
        if !parent_ok {
            return Err(fail(Reason::BodyField("parent")));
        }
        // DCR-{seq, at least 6 digits}-{hash[0..8]}
        let id = link.receipt_id.as_bytes();
        let padded = decimal(link.seq, 6, &mut buf);
        let id_ok = id.len() == 4 + padded.len() + 1 + 8
            && id.starts_with(b"DCR-")
            && &id[4..4 + padded.len()] == padded
            && id[4 + padded.len()] == b'-'
            && id[5 + padded.len()..] == hash_hex[..8];
        if !id_ok {
            return Err(fail(Reason::IdMismatch));
        }
        self.next_seq += 1;
        self.prev = hash;
        self.prev_hex = hash_hex;
        Ok(())
    }

    /// Checks the next public projection (`{receipt_id, hash, body}`): the hash is recomputed
    /// from the body alone, as an outsider would.
    pub fn push_projection(&mut self, projection: &Projection) -> Result<(), VerifyFailure> {
        let claimed_seq = projection.seq().unwrap_or(self.next_seq);
        let fail = |reason| VerifyFailure {
            seq: claimed_seq,
            reason,
        };
        let canonical = canonicalize(&projection.body).map_err(|_| fail(Reason::NotCanonical))?;
        self.push(Link {
            seq: claimed_seq,
            hash: &projection.hash,
            parent: projection.parent().unwrap_or_default(),
            receipt_id: &projection.receipt_id,
            canonical: &canonical,
        })
    }
}
