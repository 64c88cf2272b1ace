//! The offline verifier: it checks a receipt's public projection, a proof bundle (v2 JSON, a
//! C2SP tlog-proof file, or a v1 bundle) or an exported log with the ledger crate's pure core,
//! trusting nothing the server says beyond the bytes it is given and the keys it is told to
//! trust.

use defendable_ledger::bundle::{self, ProofFailure};
use defendable_ledger::checkpoint::verify_checkpoint;
use defendable_ledger::note::open_checkpoint;
use defendable_ledger::{
    merkle, BodyFields, ChainVerifier, ExportLine, Hash, OpenedCheckpoint, Projection, ProofBundle,
    PublicKey, SignedCheckpoint, V1Bundle, Vkeys,
};
use serde_json::Value;

/// What was given to verify.
#[derive(Debug, Clone)]
pub enum Evidence {
    /// One public projection `{receipt_id, hash, body}`.
    Projection(Projection),
    /// A v2 proof bundle (from JSON or a tlog-proof file).
    Bundle(ProofBundle),
    /// A v1 proof bundle `{receipt, chain, checkpoint}` (every later projection).
    BundleV1(V1Bundle),
    /// An export: projections from seq 0, then the checkpoint line (a note in v2, a signed
    /// JSON checkpoint in v1).
    Export(Vec<ExportLine>),
}

impl Evidence {
    /// Whether checking it needs v2 verifier keys (signed notes) rather than v1 keys.
    pub fn is_v2(&self) -> bool {
        match self {
            Evidence::Bundle(_) => true,
            Evidence::Export(lines) => matches!(lines.last(), Some(ExportLine::Note { .. })),
            Evidence::Projection(_) | Evidence::BundleV1(_) => false,
        }
    }
}

/// Why verification failed (the process exits with [`crate::EXIT_VERIFY`]).
pub type Failure = ProofFailure;

/// Recognizes the shape of `text`: a tlog-proof file, JSON Lines (export) or one JSON object
/// (compact or pretty-printed).
pub fn parse_evidence(text: &str) -> Result<Evidence, Failure> {
    if text.starts_with(bundle::TLOG_PROOF_HEADER) {
        return ProofBundle::from_tlog_proof(text)
            .map(Evidence::Bundle)
            .map_err(|e| Failure::Shape(e.to_string()));
    }
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    // Several lines are an export, unless the whole text is one JSON document (a bundle or a
    // projection saved pretty-printed).
    let one_document = lines.len() > 1 && serde_json::from_str::<Value>(text).is_ok();
    if lines.len() > 1 && !one_document {
        let parsed = lines
            .iter()
            .enumerate()
            .map(|(i, l)| {
                serde_json::from_str(l).map_err(|e| {
                    Failure::Shape(format!(
                        "line {}: not a projection or a checkpoint line: {e}",
                        i + 1
                    ))
                })
            })
            .collect::<Result<Vec<ExportLine>, _>>()?;
        return Ok(Evidence::Export(parsed));
    }
    let value: Value = serde_json::from_str(text).map_err(|e| Failure::Shape(e.to_string()))?;
    let shaped = |what: &str, e: serde_json::Error| Failure::Shape(format!("not a {what}: {e}"));
    if value.get("receipt").is_some() && value.get("inclusion").is_some() {
        serde_json::from_value(value)
            .map(Evidence::Bundle)
            .map_err(|e| shaped("v2 proof bundle", e))
    } else if value.get("receipt").is_some() && value.get("checkpoint").is_some() {
        serde_json::from_value(value)
            .map(Evidence::BundleV1)
            .map_err(|e| shaped("v1 proof bundle", e))
    } else if value.get("receipt_id").is_some() && value.get("body").is_some() {
        serde_json::from_value(value)
            .map(Evidence::Projection)
            .map_err(|e| shaped("projection", e))
    } else if value.get("checkpoint").is_some() {
        serde_json::from_value(value)
            .map(|line| Evidence::Export(vec![line]))
            .map_err(|e| shaped("checkpoint line", e))
    } else {
        Err(Failure::Shape(
            "expected a projection, a proof bundle, a tlog-proof file or an export".into(),
        ))
    }
}

/// What a successful verification established.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    /// Receipts checked.
    pub receipts: u64,
    /// The last hash checked.
    pub head: String,
    /// Who signed the checkpoint: a v1 key id, or a v2 `name+keyid`.
    pub signed_by: Option<String>,
    /// The v2 checkpoint the evidence was checked against.
    pub checkpoint: Option<OpenedCheckpoint>,
}

/// Checks one projection on its own: hash of the canonical body and the self-checking id.
pub fn check_projection(p: &Projection) -> Result<(u64, Hash), Failure> {
    bundle::check_projection(p)
}

fn check_signed_v1(
    signed: &SignedCheckpoint,
    seq: i64,
    head: &Hash,
    keys: &[PublicKey],
) -> Result<String, Failure> {
    if signed.checkpoint.seq != seq || signed.checkpoint.head != head.to_hex() {
        return Err(Failure::Checkpoint(format!(
            "it states seq {} and head {}, the chain ends at seq {seq} with {}",
            signed.checkpoint.seq,
            signed.checkpoint.head,
            head.to_hex()
        )));
    }
    verify_checkpoint(signed, keys).map_err(|e| Failure::Checkpoint(e.to_string()))?;
    Ok(signed.kid.clone())
}

fn signer(c: &OpenedCheckpoint) -> String {
    format!("{}+{:08x}", c.signed_by, c.key_id)
}

/// Verifies v1 evidence (projections, v1 bundles and exports) against v1 public keys.
pub fn verify_v1(evidence: &Evidence, keys: &[PublicKey]) -> Result<Verified, Failure> {
    match evidence {
        Evidence::Projection(p) => {
            let (_, hash) = check_projection(p)?;
            Ok(Verified {
                receipts: 1,
                head: hash.to_hex(),
                signed_by: None,
                checkpoint: None,
            })
        }
        Evidence::BundleV1(b) => {
            let (mut seq, mut prev) = check_projection(&b.receipt)?;
            for link in &b.chain {
                let (s, hash) = check_projection(link)?;
                if s != seq + 1 {
                    return Err(Failure::Receipt {
                        seq: s,
                        reason: format!("sequence gap: expected seq {}", seq + 1),
                    });
                }
                if link.parent() != Some(prev.to_hex().as_str()) {
                    return Err(Failure::Receipt {
                        seq: s,
                        reason: "parent does not match the previous receipt's hash".into(),
                    });
                }
                (seq, prev) = (s, hash);
            }
            let kid = check_signed_v1(&b.checkpoint, seq as i64, &prev, keys)?;
            Ok(Verified {
                receipts: b.chain.len() as u64 + 1,
                head: prev.to_hex(),
                signed_by: Some(kid),
                checkpoint: None,
            })
        }
        Evidence::Export(lines) => {
            let (last, lines) = lines
                .split_last()
                .ok_or_else(|| Failure::Shape("empty export".into()))?;
            let ExportLine::SignedV1(checkpoint) = last else {
                return Err(Failure::Shape(
                    "the last line is not a signed checkpoint".into(),
                ));
            };
            let org = checkpoint
                .checkpoint
                .org
                .parse()
                .map_err(|_| Failure::Shape("the checkpoint's org is not a UUID".into()))?;
            let verifier = chain_of(org, &projections_of(lines)?)?;
            let kid = check_signed_v1(
                checkpoint,
                verifier.count() as i64 - 1,
                &verifier.head(),
                keys,
            )?;
            Ok(Verified {
                receipts: verifier.count(),
                head: verifier.head().to_hex(),
                signed_by: Some(kid),
                checkpoint: None,
            })
        }
        Evidence::Bundle(_) => Err(Failure::Shape(
            "a v2 bundle is checked against verifier keys (vkeys)".into(),
        )),
    }
}

/// The projections of an export's lines before its checkpoint line.
fn projections_of(lines: &[ExportLine]) -> Result<Vec<&Projection>, Failure> {
    lines
        .iter()
        .enumerate()
        .map(|(i, line)| match line {
            ExportLine::Receipt(p) => Ok(p),
            _ => Err(Failure::Shape(format!(
                "line {}: a checkpoint before the end of the export",
                i + 1
            ))),
        })
        .collect()
}

fn chain_of(org: uuid::Uuid, projections: &[&Projection]) -> Result<ChainVerifier, Failure> {
    let mut verifier = ChainVerifier::new(org);
    for p in projections {
        verifier.push_projection(p).map_err(|f| Failure::Receipt {
            seq: f.seq,
            reason: f.reason.to_string(),
        })?;
    }
    Ok(verifier)
}

/// Verifies v2 evidence (bundles, tlog-proof files and exports ending in a signed note) against
/// trusted verifier keys.
pub fn verify_v2(evidence: &Evidence, keys: &Vkeys) -> Result<Verified, Failure> {
    match evidence {
        Evidence::Bundle(b) => {
            let v = bundle::verify_bundle(b, keys)?;
            Ok(Verified {
                receipts: 1,
                head: v.hash.to_hex(),
                signed_by: Some(signer(&v.checkpoint)),
                checkpoint: Some(v.checkpoint),
            })
        }
        Evidence::Export(lines) => {
            let (last, lines) = lines
                .split_last()
                .ok_or_else(|| Failure::Shape("empty export".into()))?;
            let ExportLine::Note { checkpoint: note } = last else {
                return Err(Failure::Shape(
                    "the last line is not {\"checkpoint\": note}".into(),
                ));
            };
            let projections = projections_of(lines)?;
            // The org is the one the note names; every body must agree (the chain checks it).
            let checkpoint =
                open_checkpoint(note, keys).map_err(|e| Failure::Checkpoint(e.to_string()))?;
            let org = checkpoint.org().ok_or_else(|| {
                Failure::Checkpoint("its origin does not name an organization".into())
            })?;
            let verifier = chain_of(org, &projections)?;
            let leaves = projections.iter().map(|p| {
                // Each hash was just checked against its body by the chain verifier.
                Hash::parse(&p.hash)
                    .map(|h| merkle::leaf_hash(&h))
                    .unwrap_or_default()
            });
            let (size, root) = merkle::root_of_leaves(leaves);
            if size != checkpoint.head.size || root != checkpoint.head.root {
                return Err(Failure::Checkpoint(format!(
                    "it signs a tree of size {} with root {}; the {size} exported receipts have root {root}",
                    checkpoint.head.size, checkpoint.head.root
                )));
            }
            Ok(Verified {
                receipts: verifier.count(),
                head: verifier.head().to_hex(),
                signed_by: Some(signer(&checkpoint)),
                checkpoint: Some(checkpoint),
            })
        }
        other => Err(Failure::Shape(format!(
            "{} is v1 material, checked with v1 keys",
            match other {
                Evidence::Projection(_) => "a projection",
                _ => "a v1 bundle",
            }
        ))),
    }
}
