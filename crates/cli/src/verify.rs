//! The offline verifier: it checks a receipt's public projection, a proof bundle or an exported
//! chain with the ledger crate's pure core, trusting nothing the server says beyond the bytes it
//! is given and the published keys.

use defendable_ledger::checkpoint::{parse_signed, verify_checkpoint};
use defendable_ledger::{canonicalize, receipt_id, ChainVerifier, Hash, PublicKey};
use serde_json::Value;

/// What was given to verify.
#[derive(Debug, Clone)]
pub enum Evidence {
    /// One public projection `{receipt_id, hash, body}`.
    Projection(Value),
    /// A proof bundle `{receipt, chain, checkpoint}`.
    Bundle(Value),
    /// An export: projections from seq 0, then a signed checkpoint.
    Export(Vec<Value>),
}

/// Why verification failed (the process exits with [`crate::EXIT_VERIFY`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// The input is not any of the accepted shapes.
    #[error("not a projection, proof bundle or export: {0}")]
    Shape(String),
    /// A receipt fails.
    #[error("receipt seq {seq}: {reason}")]
    Receipt {
        /// The failing receipt.
        seq: u64,
        /// What is wrong.
        reason: String,
    },
    /// The checkpoint does not match the chain or its signature does not verify.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
}

/// Recognizes the shape of `text`: JSON Lines (export) or one JSON object.
pub fn parse_evidence(text: &str) -> Result<Evidence, Failure> {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.len() > 1 {
        let values = lines
            .iter()
            .enumerate()
            .map(|(i, l)| {
                serde_json::from_str(l).map_err(|e| Failure::Shape(format!("line {}: {e}", i + 1)))
            })
            .collect::<Result<Vec<Value>, _>>()?;
        return Ok(Evidence::Export(values));
    }
    let value: Value = serde_json::from_str(text).map_err(|e| Failure::Shape(e.to_string()))?;
    if value.get("receipt").is_some() && value.get("checkpoint").is_some() {
        Ok(Evidence::Bundle(value))
    } else if value.get("receipt_id").is_some() && value.get("body").is_some() {
        Ok(Evidence::Projection(value))
    } else if value.get("checkpoint").is_some() {
        Ok(Evidence::Export(vec![value]))
    } else {
        Err(Failure::Shape(
            "expected receipt_id/hash/body, receipt/chain/checkpoint, or JSON Lines".into(),
        ))
    }
}

/// What a successful verification established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Receipts checked.
    pub receipts: u64,
    /// The last hash checked.
    pub head: String,
    /// The checkpoint's key id, when a checkpoint was checked.
    pub signed_by: Option<String>,
}

/// Checks one projection on its own: hash of the canonical body and the self-checking id.
pub fn check_projection(p: &Value) -> Result<(u64, Hash), Failure> {
    let seq = p["body"]["seq"]
        .as_u64()
        .ok_or_else(|| Failure::Shape("body.seq is missing".into()))?;
    let fail = |reason: &str| Failure::Receipt {
        seq,
        reason: reason.to_owned(),
    };
    let canonical = canonicalize(&p["body"]).map_err(|e| fail(&e.to_string()))?;
    let hash = Hash::of(&canonical);
    if p["hash"].as_str() != Some(hash.to_hex().as_str()) {
        return Err(fail("hash does not match the canonical body"));
    }
    if p["receipt_id"].as_str() != Some(receipt_id(seq, &hash).as_str()) {
        return Err(fail("receipt id does not match seq and hash"));
    }
    Ok((seq, hash))
}

fn check_signed(
    value: &Value,
    seq: i64,
    head: &Hash,
    keys: &[PublicKey],
) -> Result<String, Failure> {
    let signed = parse_signed(value).map_err(|e| Failure::Checkpoint(e.to_string()))?;
    if signed.checkpoint.seq != seq || signed.checkpoint.head != head.to_hex() {
        return Err(Failure::Checkpoint(format!(
            "it states seq {} and head {}, the chain ends at seq {seq} with {}",
            signed.checkpoint.seq,
            signed.checkpoint.head,
            head.to_hex()
        )));
    }
    verify_checkpoint(&signed, keys).map_err(|e| Failure::Checkpoint(e.to_string()))?;
    Ok(signed.kid)
}

/// Verifies evidence against the published keys.
pub fn verify(evidence: &Evidence, keys: &[PublicKey]) -> Result<Verified, Failure> {
    match evidence {
        Evidence::Projection(p) => {
            let (_, hash) = check_projection(p)?;
            Ok(Verified {
                receipts: 1,
                head: hash.to_hex(),
                signed_by: None,
            })
        }
        Evidence::Bundle(b) => {
            let (mut seq, mut prev) = check_projection(&b["receipt"])?;
            let chain = b["chain"].as_array().cloned().unwrap_or_default();
            for link in &chain {
                let (s, hash) = check_projection(link)?;
                if s != seq + 1 {
                    return Err(Failure::Receipt {
                        seq: s,
                        reason: format!("sequence gap: expected seq {}", seq + 1),
                    });
                }
                if link["body"]["parent"].as_str() != Some(prev.to_hex().as_str()) {
                    return Err(Failure::Receipt {
                        seq: s,
                        reason: "parent does not match the previous receipt's hash".into(),
                    });
                }
                (seq, prev) = (s, hash);
            }
            let kid = check_signed(&b["checkpoint"], seq as i64, &prev, keys)?;
            Ok(Verified {
                receipts: chain.len() as u64 + 1,
                head: prev.to_hex(),
                signed_by: Some(kid),
            })
        }
        Evidence::Export(lines) => {
            let (checkpoint, projections) = lines
                .split_last()
                .ok_or_else(|| Failure::Shape("empty export".into()))?;
            let org = checkpoint["checkpoint"]["org"]
                .as_str()
                .and_then(|o| o.parse().ok())
                .ok_or_else(|| Failure::Shape("the last line is not a signed checkpoint".into()))?;
            let mut verifier = ChainVerifier::new(org);
            for p in projections {
                verifier.push_projection(p).map_err(|f| Failure::Receipt {
                    seq: f.seq,
                    reason: f.reason.to_string(),
                })?;
            }
            let kid = check_signed(
                checkpoint,
                verifier.count() as i64 - 1,
                &verifier.head(),
                keys,
            )?;
            Ok(Verified {
                receipts: verifier.count(),
                head: verifier.head().to_hex(),
                signed_by: Some(kid),
            })
        }
    }
}
