//! What the proof routes share: their query parameters and how a bundle, a consistency proof or
//! a checkpoint is rendered (DESIGN §2b).

use actix_web::http::header;
use actix_web::HttpResponse;
use defendable_ledger::{ConsistencyProof, ProofBundle};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, ErrorCode};

/// The media type of signed notes and tlog-proof files.
pub const TEXT_PLAIN: &str = "text/plain; charset=utf-8";

/// Proof bundle options.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ProofQuery {
    /// Prove against the tree of this many receipts (`seq < size ≤ current`) instead of the
    /// current one.
    pub size: Option<u64>,
    /// `json` (default) or `tlog-proof` (C2SP `c2sp.org/tlog-proof@v1` text).
    pub format: Option<String>,
}

/// Consistency proof sizes.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyQuery {
    /// The older tree size (a checkpoint you trust), at least 1.
    pub from: u64,
    /// The newer tree size; default the current one.
    pub to: Option<u64>,
}

/// Consistency proof size for share holders (always to the current tree).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ShareConsistencyQuery {
    /// The older tree size (a checkpoint you trust), at least 1.
    pub from: u64,
}

/// A v2 proof bundle (DESIGN §2b).
#[derive(Debug, Serialize, ToSchema)]
pub struct ProofBundleDto {
    /// Always 2.
    pub v: u64,
    /// The receipt's public projection `{receipt_id, hash, body}`.
    #[schema(value_type = Object)]
    pub receipt: serde_json::Value,
    /// The leaf index, equal to `body.seq`.
    pub index: u64,
    /// RFC 9162 inclusion path, leaf's sibling first, standard base64.
    pub inclusion: Vec<String>,
    /// The signed checkpoint note (C2SP tlog-checkpoint) the path leads to.
    pub checkpoint: String,
}

/// A consistency proof with the signed checkpoint of its larger size.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsistencyDto {
    /// The older size.
    pub from: u64,
    /// The newer size (the checkpoint's).
    pub to: u64,
    /// RFC 9162 §2.1.4 proof, standard base64; empty when `from == to`.
    pub consistency: Vec<String>,
    /// The signed checkpoint note of size `to`.
    pub checkpoint: String,
}

impl From<ConsistencyProof> for ConsistencyDto {
    fn from(p: ConsistencyProof) -> Self {
        ConsistencyDto {
            from: p.from,
            to: p.to,
            consistency: p.consistency,
            checkpoint: p.checkpoint,
        }
    }
}

/// Whether `format` asks for the tlog-proof text; anything but `json` or `tlog-proof` is a 422.
fn wants_tlog_proof(format: Option<&str>) -> Result<bool, ApiError> {
    match format {
        None | Some("json") => Ok(false),
        Some("tlog-proof") => Ok(true),
        Some(other) => Err(ApiError::new(
            ErrorCode::InvalidFormat,
            format!("format {other:?} is not json or tlog-proof"),
        )),
    }
}

/// Renders a bundle as JSON or as a tlog-proof file, optionally as an attachment.
pub fn bundle_response(
    bundle: ProofBundle,
    format: Option<&str>,
    attachment: Option<&str>,
) -> Result<HttpResponse, ApiError> {
    let tlog = wants_tlog_proof(format)?;
    let mut res = HttpResponse::Ok();
    if let Some(name) = attachment {
        let ext = if tlog { "tlog-proof" } else { "json" };
        res.insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{name}-proof.{ext}\""),
        ));
    }
    if tlog {
        Ok(res.content_type(TEXT_PLAIN).body(bundle.to_tlog_proof()?))
    } else {
        Ok(res.json(ProofBundleDto {
            v: bundle.v,
            receipt: bundle.receipt,
            index: bundle.index,
            inclusion: bundle.inclusion,
            checkpoint: bundle.checkpoint,
        }))
    }
}

/// A signed note as `text/plain`.
pub fn note_response(note: String) -> HttpResponse {
    HttpResponse::Ok().content_type(TEXT_PLAIN).body(note)
}
