//! The shapes the API answers and its clients read, typed once here for the server and the CLI:
//! a receipt's public projection, the member view, a page of receipts, an export line and the
//! v1 bundle. The JSON they write is the JSON the API has always written (a test pins it).

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use uuid::Uuid;

use crate::checkpoint::SignedCheckpoint;

/// A receipt's public projection `{body, hash, receipt_id}`: everything needed to recompute its
/// hash, nothing private. Fields in alphabetical order, as the API has always written them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Projection {
    /// The hashed body (docs/receipts.md).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub body: Value,
    /// SHA-256 of JCS(body), hex.
    pub hash: String,
    /// `DCR-{seq}-{hash8}`.
    pub receipt_id: String,
}

/// What a receipt's body says about itself, read without trusting it: the hash check is
/// [`crate::bundle::check_projection`]'s job.
pub trait BodyFields {
    /// The hashed body.
    fn body(&self) -> &Value;

    /// `body.seq`.
    fn seq(&self) -> Option<u64> {
        self.body()["seq"].as_u64()
    }

    /// `body.kind`.
    fn kind(&self) -> Option<&str> {
        self.body()["kind"].as_str()
    }

    /// `body.created_at` (RFC 3339, microseconds).
    fn created_at(&self) -> Option<&str> {
        self.body()["created_at"].as_str()
    }

    /// `body.org`.
    fn org(&self) -> Option<Uuid> {
        self.body()["org"].as_str().and_then(|o| o.parse().ok())
    }

    /// `body.parent`.
    fn parent(&self) -> Option<&str> {
        self.body()["parent"].as_str()
    }
}

impl BodyFields for Projection {
    fn body(&self) -> &Value {
        &self.body
    }
}

/// A receipt as members see it: the projection plus the private part and its salt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = ReceiptDto))]
pub struct ReceiptView {
    /// `DCR-{seq}-{hash8}`.
    pub receipt_id: String,
    /// SHA-256 of JCS(body), hex.
    pub hash: String,
    /// The hashed body (see docs/receipts.md).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub body: Value,
    /// The private part, if any (null once erased).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub private: Value,
    /// The private digest's salt (hex), if any.
    pub salt: Option<String>,
}

impl BodyFields for ReceiptView {
    fn body(&self) -> &Value {
        &self.body
    }
}

impl ReceiptView {
    /// The public part of the view.
    pub fn projection(&self) -> Projection {
        Projection {
            body: self.body.clone(),
            hash: self.hash.clone(),
            receipt_id: self.receipt_id.clone(),
        }
    }
}

/// [`Projection`] borrowed from a stored receipt, for writing only: the body is written as the
/// stored canonical bytes (JSON already), not parsed and serialized again. The same fields in
/// the same order as [`Projection`], and for a canonical body the same bytes (a test checks it).
#[derive(Debug, Serialize)]
pub struct ProjectionOut<'a> {
    /// The hashed body.
    pub body: &'a RawValue,
    /// SHA-256 of JCS(body), hex.
    pub hash: &'a str,
    /// `DCR-{seq}-{hash8}`.
    pub receipt_id: &'a str,
}

/// [`ReceiptView`] borrowed from a stored receipt, for writing only (see [`ProjectionOut`]).
#[derive(Debug, Serialize)]
pub struct ReceiptViewOut<'a> {
    /// `DCR-{seq}-{hash8}`.
    pub receipt_id: &'a str,
    /// SHA-256 of JCS(body), hex.
    pub hash: &'a str,
    /// The hashed body.
    pub body: &'a RawValue,
    /// The private part, if any (null once erased).
    pub private: Option<&'a Value>,
    /// The private digest's salt (hex), if any.
    pub salt: Option<String>,
}

/// [`ReceiptPage`] of borrowed views, for writing only.
#[derive(Debug, Serialize)]
pub struct ReceiptPageOut<'a> {
    /// Oldest first.
    pub items: Vec<ReceiptViewOut<'a>>,
    /// Pass as `after` for the next page; null on the last page.
    pub next_cursor: Option<u64>,
}

/// A page of receipts, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReceiptPage {
    /// Oldest first.
    pub items: Vec<ReceiptView>,
    /// Pass as `after` for the next page (the last item's seq); null on the last page.
    pub next_cursor: Option<u64>,
}

/// One line of a ledger export (`application/x-ndjson`): a projection per receipt from seq 0,
/// then the checkpoint the export ends at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ExportLine {
    /// The last line of a v2 export: `{"checkpoint": "<C2SP signed note>"}`.
    Note {
        /// The signed checkpoint note of the exported tree.
        checkpoint: String,
    },
    /// The last line of a v1 export: the signed JSON checkpoint of the chain's head.
    SignedV1(SignedCheckpoint),
    /// A receipt's projection.
    Receipt(Projection),
}

/// A v1 proof bundle: a receipt, every later projection up to the checkpoint, and the signed
/// v1 checkpoint of the chain's head. Still verifiable; the server no longer writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct V1Bundle {
    /// The receipt proved.
    pub receipt: Projection,
    /// The receipts after it, in order.
    #[serde(default)]
    pub chain: Vec<Projection>,
    /// The signed head checkpoint.
    pub checkpoint: SignedCheckpoint,
}

/// The published verification keys (`GET /ledger/keys`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = KeysDto))]
pub struct PublishedKeys {
    /// Current key first, then earlier ones still honoured. Each has `kid`, `alg`, `public_key`
    /// (base64url, v1), `name` (`LEDGER_NAME`) and `vkey` (the C2SP verifier key).
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub keys: Vec<crate::checkpoint::PublicKey>,
}

/// The first failure found by verification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = FailureDto))]
pub struct ChainFailure {
    /// The failing receipt's seq.
    pub seq: u64,
    /// What is wrong.
    pub reason: String,
}

/// The result of verifying a chain from storage (`GET /orgs/{org}/ledger/verify`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = VerifyDto))]
pub struct ChainCheck {
    /// Organization id.
    pub org: Uuid,
    /// Whether every link verified.
    pub valid: bool,
    /// Receipts checked before stopping.
    pub checked: u64,
    /// The last verified hash.
    pub head: String,
    /// Receipts in the Merkle tree, whose stored root was recomputed from the receipts.
    pub tree_size: u64,
    /// The first failure, if any.
    pub failure: Option<ChainFailure>,
}

/// A share link (`POST /orgs/{org}/receipts/{id}/share`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = ShareDto))]
pub struct ShareLink {
    /// The link: anyone holding it sees the redacted projection.
    pub url: String,
    /// The v2 proof bundle of the same receipt (JSON; `?format=tlog-proof` for the C2SP file).
    pub proof_url: String,
    /// The same bundle as an attachment (a dataset grant's link redirects to the object).
    pub download_url: String,
    /// The share token (shown once; stored only as a hash).
    pub token: String,
    /// When the link stops working (RFC 3339); null when it never expires.
    pub expires_at: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_json_is_what_the_api_always_wrote() {
        let p = Projection {
            body: json!({"seq": 3, "kind": "run", "org": Uuid::nil()}),
            hash: "ab".repeat(32),
            receipt_id: "DCR-000003-abababab".into(),
        };
        // Alphabetical keys, as `json!` (a sorted map) wrote the projection before.
        assert_eq!(
            serde_json::to_string(&p).expect("json"),
            serde_json::to_string(&json!({
                "receipt_id": p.receipt_id, "hash": p.hash, "body": p.body
            }))
            .expect("json")
        );
        assert_eq!(p.seq(), Some(3));
        assert_eq!(p.kind(), Some("run"));
        assert_eq!(p.org(), Some(Uuid::nil()));
        let line: ExportLine =
            serde_json::from_value(json!({"checkpoint": "note\n"})).expect("line");
        assert_eq!(
            line,
            ExportLine::Note {
                checkpoint: "note\n".into()
            }
        );
        let v1 = json!({"checkpoint": {"v": 1, "org": Uuid::nil(), "seq": -1, "head": "0".repeat(64),
                        "issued_at": "2026-01-01T00:00:00.000000Z"}, "kid": "k", "signature": "s"});
        assert!(matches!(
            serde_json::from_value::<ExportLine>(v1).expect("v1 line"),
            ExportLine::SignedV1(s) if s.checkpoint.seq == -1
        ));
        let line: ExportLine =
            serde_json::from_value(serde_json::to_value(&p).expect("v")).expect("line");
        assert_eq!(line, ExportLine::Receipt(p));
        assert!(serde_json::from_value::<ExportLine>(json!({"hash": "x"})).is_err());
    }
}

/// `POST /orgs/{org}/receipts/{id}/share` body; optional (no body: a link that never expires).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ShareRequest {
    /// Seconds until the link stops working, from 60 to 31,622,400 (366 days).
    pub expires_in: Option<u64>,
}
