//! Proof bundles v2, tlog-proof files and consistency proofs (DESIGN §2b): built in one place and
//! verified in one place, with the receipt's own body as the only receipt data they carry.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::canonical::canonicalize;
use crate::merkle::{self, TreeHash};
use crate::note::{open_checkpoint, OpenedCheckpoint, Vkeys};
use crate::receipt::{receipt_id, Hash};
use crate::view::{BodyFields, Projection};
use crate::LedgerError;

/// The first line of a C2SP tlog-proof file.
pub const TLOG_PROOF_HEADER: &str = "c2sp.org/tlog-proof@v1";

/// A v2 proof bundle (DESIGN §2b): one receipt's projection, its inclusion path and a signed
/// checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = ProofBundleDto))]
pub struct ProofBundle {
    /// Always 2.
    pub v: u64,
    /// The receipt's public projection `{receipt_id, hash, body}`.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub receipt: Projection,
    /// The leaf index, equal to `body.seq`.
    pub index: u64,
    /// RFC 9162 inclusion path, leaf's sibling first, standard base64.
    pub inclusion: Vec<String>,
    /// The signed checkpoint note (C2SP tlog-checkpoint) the path leads to.
    pub checkpoint: String,
}

impl ProofBundle {
    /// A bundle for the receipt at `index`.
    pub fn new(
        receipt: Projection,
        index: u64,
        inclusion: &[TreeHash],
        checkpoint: String,
    ) -> Self {
        ProofBundle {
            v: 2,
            receipt,
            index,
            inclusion: merkle::to_base64(inclusion),
            checkpoint,
        }
    }

    /// The same proof as a C2SP tlog-proof file, with the projection's JCS bytes as `extra`.
    pub fn to_tlog_proof(&self) -> Result<String, LedgerError> {
        let projection = serde_json::to_value(&self.receipt)
            .map_err(|e| LedgerError::InvalidJson(e.to_string()))?;
        let extra = STANDARD.encode(canonicalize(&projection)?);
        let mut out = format!("{TLOG_PROOF_HEADER}\nextra {extra}\nindex {}\n", self.index);
        for h in &self.inclusion {
            out.push_str(h);
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&self.checkpoint);
        Ok(out)
    }

    /// Parses a tlog-proof file whose `extra` carries the projection (the projection is then
    /// checked like any other: `extra` is never trusted).
    pub fn from_tlog_proof(text: &str) -> Result<ProofBundle, LedgerError> {
        let bad = |why: &str| LedgerError::InvalidProof(format!("not a tlog-proof file: {why}"));
        let (head, checkpoint) = text
            .split_once("\n\n")
            .ok_or_else(|| bad("no empty line before the checkpoint"))?;
        let mut lines = head.split('\n');
        if lines.next() != Some(TLOG_PROOF_HEADER) {
            return Err(bad("the first line is not c2sp.org/tlog-proof@v1"));
        }
        let mut line = lines.next();
        let mut receipt = None;
        if let Some(extra) = line.and_then(|l| l.strip_prefix("extra ")) {
            let bytes = STANDARD
                .decode(extra)
                .map_err(|_| bad("extra is not base64"))?;
            receipt = Some(
                serde_json::from_slice::<Projection>(&bytes)
                    .map_err(|_| bad("extra is not a JSON projection"))?,
            );
            line = lines.next();
        }
        let index = line
            .and_then(|l| l.strip_prefix("index "))
            .and_then(|i| i.parse::<u64>().ok())
            .ok_or_else(|| bad("no index line"))?;
        let inclusion: Vec<String> = lines.map(str::to_owned).collect();
        merkle::from_base64(&inclusion)?;
        Ok(ProofBundle {
            v: 2,
            receipt: receipt.ok_or_else(|| {
                bad("no extra line: this verifier needs the receipt's projection there")
            })?,
            index,
            inclusion,
            checkpoint: checkpoint.to_owned(),
        })
    }
}

/// A consistency proof with the signed checkpoint of its larger size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = ConsistencyDto))]
pub struct ConsistencyProof {
    /// The older size.
    pub from: u64,
    /// The newer size (the checkpoint's).
    pub to: u64,
    /// RFC 9162 §2.1.4 proof, standard base64; empty when `from == to`.
    pub consistency: Vec<String>,
    /// The signed checkpoint note of size `to`.
    pub checkpoint: String,
}

/// Why a bundle, a proof or a checkpoint fails verification (the CLI exits 4).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofFailure {
    /// Not the expected shape.
    #[error("{0}")]
    Shape(String),
    /// The receipt's projection does not check.
    #[error("receipt seq {seq}: {reason}")]
    Receipt {
        /// The receipt's seq (as claimed by its body).
        seq: u64,
        /// What is wrong.
        reason: String,
    },
    /// The checkpoint's signature or form does not check.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// The inclusion path does not lead to the checkpoint's root.
    #[error("receipt seq {index}: inclusion in the tree of size {size} does not verify (hash or inclusion path altered)")]
    Inclusion {
        /// The leaf.
        index: u64,
        /// The checkpoint's size.
        size: u64,
    },
    /// Two checkpoints of one log are not consistent: history was rewritten or forked.
    #[error("the checkpoint of size {from} is not consistent with the checkpoint of size {to}: the log's history was rewritten or forked")]
    Inconsistent {
        /// The older size.
        from: u64,
        /// The newer size.
        to: u64,
    },
}

fn shape(e: impl std::fmt::Display) -> ProofFailure {
    ProofFailure::Shape(e.to_string())
}

/// What a verified bundle established.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedBundle {
    /// The receipt's organization.
    pub org: Uuid,
    /// The receipt's seq (its leaf index).
    pub seq: u64,
    /// The receipt's hash.
    pub hash: Hash,
    /// The checkpoint the inclusion was checked against.
    pub checkpoint: OpenedCheckpoint,
}

/// Checks a public projection on its own: the hash recomputed from the body, and the id from
/// seq and hash. Returns `(seq, hash)`.
pub fn check_projection(p: &Projection) -> Result<(u64, Hash), ProofFailure> {
    let seq = p.seq().ok_or_else(|| shape("body.seq is missing"))?;
    let fail = |reason: &str| ProofFailure::Receipt {
        seq,
        reason: reason.to_owned(),
    };
    let canonical = canonicalize(&p.body).map_err(|e| fail(&e.to_string()))?;
    let hash = Hash::of(&canonical);
    if p.hash != hash.to_hex() {
        return Err(fail("hash does not match the canonical body"));
    }
    if p.receipt_id != receipt_id(seq, &hash) {
        return Err(fail("receipt id does not match seq and hash"));
    }
    Ok((seq, hash))
}

/// Opens a checkpoint and checks it is the log of `org` under the name of the key that signed it.
pub fn open_org_checkpoint(
    text: &str,
    org: Uuid,
    keys: &Vkeys,
) -> Result<OpenedCheckpoint, ProofFailure> {
    let opened =
        open_checkpoint(text, keys).map_err(|e| ProofFailure::Checkpoint(e.to_string()))?;
    if opened.org() != Some(org) {
        return Err(ProofFailure::Checkpoint(format!(
            "its origin is {:?}, expected {:?}",
            opened.head.origin,
            format!("{}/orgs/{org}", opened.signed_by)
        )));
    }
    Ok(opened)
}

/// Verifies a v2 bundle (DESIGN §2b "To verify"): the hash and id from the body, `index ==
/// body.seq`, the checkpoint's origin and trusted signature, `index < size`, and the inclusion
/// path from the leaf hash to the checkpoint's root.
pub fn verify_bundle(bundle: &ProofBundle, keys: &Vkeys) -> Result<VerifiedBundle, ProofFailure> {
    if bundle.v != 2 {
        return Err(shape(format!("bundle version {} is not 2", bundle.v)));
    }
    let (seq, hash) = check_projection(&bundle.receipt)?;
    if bundle.index != seq {
        return Err(ProofFailure::Receipt {
            seq,
            reason: format!("the bundle's index {} is not body.seq", bundle.index),
        });
    }
    let org: Uuid = bundle
        .receipt
        .org()
        .ok_or_else(|| shape("body.org is not a UUID"))?;
    let checkpoint = open_org_checkpoint(&bundle.checkpoint, org, keys)?;
    let size = checkpoint.head.size;
    let path = merkle::from_base64(&bundle.inclusion).map_err(shape)?;
    merkle::verify_inclusion(
        seq,
        size,
        &checkpoint.head.root,
        &merkle::leaf_hash(&hash),
        &path,
    )
    .map_err(|_| ProofFailure::Inclusion { index: seq, size })?;
    Ok(VerifiedBundle {
        org,
        seq,
        hash,
        checkpoint,
    })
}

/// Verifies that `proof` extends the trusted checkpoint `older` (same origin) to its own signed
/// checkpoint; returns the newer checkpoint.
pub fn verify_consistency_proof(
    proof: &ConsistencyProof,
    older: &OpenedCheckpoint,
    keys: &Vkeys,
) -> Result<OpenedCheckpoint, ProofFailure> {
    let newer = open_checkpoint(&proof.checkpoint, keys)
        .map_err(|e| ProofFailure::Checkpoint(e.to_string()))?;
    check_consistent(older, &newer, proof.from, &proof.consistency)?;
    Ok(newer)
}

/// Checks that `newer` extends `older`: same origin, sizes as stated, and the proof verifies.
pub fn check_consistent(
    older: &OpenedCheckpoint,
    newer: &OpenedCheckpoint,
    from: u64,
    consistency: &[String],
) -> Result<(), ProofFailure> {
    if newer.head.origin != older.head.origin {
        return Err(ProofFailure::Checkpoint(format!(
            "origin {:?} is not {:?}",
            newer.head.origin, older.head.origin
        )));
    }
    let (m, n) = (older.head.size, newer.head.size);
    if from != m {
        return Err(shape(format!("the proof starts at size {from}, not {m}")));
    }
    if m > n {
        return Err(ProofFailure::Inconsistent { from: m, to: n });
    }
    if m == 0 {
        // Every tree extends the empty one.
        return Ok(());
    }
    let path = merkle::from_base64(consistency).map_err(shape)?;
    merkle::verify_consistency(m, n, &older.head.root, &newer.head.root, &path)
        .map_err(|_| ProofFailure::Inconsistent { from: m, to: n })
}
