//! Recording a receipt for a caller, shared by the receipt route and the runner route: the strict
//! body reader, the `Idempotency-Key` fingerprint, and the append with its audit event.

use actix_web::{HttpRequest, HttpResponse};
use defendable_ledger::store::{self as ledger, AppendOptions, Appended};
use defendable_ledger::{parse_strict, Draft, ReceiptKind};
use serde_json::Value;

use crate::error::{ApiError, ErrorCode};
use crate::AppState;

/// Parses a receipt request with the strict reader, which refuses numbers that JSON parsers
/// would silently round.
pub fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let value = parse_strict(body)?;
    serde_json::from_value(value).map_err(|e| ApiError::new(ErrorCode::InvalidBody, e.to_string()))
}

/// Records `(kind, public, private)` in `org`'s chain through the batching appender, honouring
/// `Idempotency-Key` and recording `receipt.create` (by `actor`, via `via`) in the same
/// transaction: 201 for a new receipt, 200 with `Idempotency-Replayed: true` for a retry.
pub async fn record_receipt(
    state: &AppState,
    req: &HttpRequest,
    org: uuid::Uuid,
    (kind, public, private): (String, Value, Option<Value>),
    (actor, context): (
        defendable_store::audit::Actor,
        defendable_store::audit::AuditContext,
    ),
    via: &str,
) -> Result<HttpResponse, ApiError> {
    let kind = ReceiptKind::parse_client(&kind)?;
    let idempotency = idempotency(req, &kind, &public, private.as_ref())?;
    let audit = ledger::receipt_created(org, &kind, via, actor, &context);
    let draft = Draft::new(kind, public, private)?;
    let appended = state
        .ledger
        .append(
            org,
            draft,
            AppendOptions {
                idempotency,
                audit: Some(audit),
            },
        )
        .await?;
    Ok(match appended {
        Appended::New(r) => HttpResponse::Created().json(r.member_view_out()),
        Appended::Existing(r) => HttpResponse::Ok()
            .insert_header(("Idempotency-Replayed", "true"))
            .json(r.member_view_out()),
    })
}

/// The request's `Idempotency-Key` with the fingerprint of what it asks to record, if it sent
/// one: a retry with the same key and body gets the first receipt, a different body is refused.
fn idempotency(
    req: &HttpRequest,
    kind: &ReceiptKind,
    public: &Value,
    private: Option<&Value>,
) -> Result<Option<(String, String)>, ApiError> {
    let Some(v) = req.headers().get("idempotency-key") else {
        return Ok(None);
    };
    let key = v
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= 255)
        .ok_or_else(|| {
            ApiError::bad_request("Idempotency-Key must be 1-255 visible ASCII characters")
        })?;
    let fp = ledger::request_fingerprint(kind.as_str(), public, private)?;
    Ok(Some((key.to_owned(), fp)))
}
