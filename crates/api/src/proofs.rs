//! What the proof routes share: their query parameters and how a bundle, a consistency proof or
//! a checkpoint is rendered (DESIGN §2b).

use actix_web::http::header;
use actix_web::HttpResponse;
use defendable_ledger::ProofBundle;
use serde::Deserialize;
use utoipa::IntoParams;

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
        Ok(res.json(bundle))
    }
}

/// A signed note as `text/plain`.
pub fn note_response(note: String) -> HttpResponse {
    HttpResponse::Ok().content_type(TEXT_PLAIN).body(note)
}
