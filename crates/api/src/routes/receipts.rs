//! Receipts of an organization: record, list, read, share.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use defendable_ledger::store as ledger;
use defendable_ledger::view::ReceiptPageOut;
use defendable_ledger::{ProofBundle, ReceiptKind, ReceiptView, ShareLink};
use serde::Deserialize;
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::bodies::split_page;
use crate::error::{ApiError, ErrorCode, Problem};
use crate::proofs::{bundle_response, ProofQuery};
use crate::recording::{parse_body, record_receipt};
use crate::AppState;
use defendable_ledger::view::ShareRequest;

/// `POST /orgs/{org}/receipts` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordReceipt {
    /// Dotted lowercase kind, e.g. `run` or `dataset.download`.
    pub kind: String,
    /// What anyone holding a share link may see (a JSON object).
    #[schema(value_type = Object)]
    pub public: Value,
    /// What only members see (a JSON object); committed to by a salted digest.
    #[schema(value_type = Option<Object>)]
    #[serde(default)]
    pub private: Option<Value>,
}

pub use defendable_ledger::ReceiptPage;

/// Receipt list filters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReceiptQuery {
    /// Only receipts with a greater seq (the previous page's `next_cursor`).
    #[param(maximum = 9_223_372_036_854_775_807_u64)]
    pub after: Option<u64>,
    /// Page size, 1–500 (default 100).
    pub limit: Option<i64>,
    /// Only this kind.
    pub kind: Option<String>,
}

/// The shortest and longest share link lifetimes accepted, in seconds.
const SHARE_TTL_RANGE: std::ops::RangeInclusive<u64> = 60..=31_622_400;

/// Parses an optional share request body.
fn share_request(body: &[u8]) -> Result<ShareRequest, ApiError> {
    let req: ShareRequest = crate::bodies::optional_body(body, "share request")?;
    if let Some(ttl) = req.expires_in {
        if !SHARE_TTL_RANGE.contains(&ttl) {
            return Err(ApiError::new(
                ErrorCode::InvalidExpiry,
                format!(
                    "expires_in must be between {} and {} seconds",
                    SHARE_TTL_RANGE.start(),
                    SHARE_TTL_RANGE.end()
                ),
            ));
        }
    }
    Ok(req)
}

/// Records a receipt in the organization's chain. Send `Idempotency-Key` to make retries safe.
#[utoipa::path(post, path = "/orgs/{org}/receipts", tag = "receipts", request_body = RecordReceipt, security(("bearer" = [])),
    params(("org" = String, Path, description = "Organization slug or id"),
           ("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key and body return the first receipt")),
    responses(
        (status = 201, description = "Recorded", body = ReceiptView),
        (status = 200, description = "A retry: the receipt the first call recorded", body = ReceiptView),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization, or not a member", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid kind, payload or number; or the key was used with another body", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn post_org_receipts(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let access = caller.member(&state, &path).await?;
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_json {
        return Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "send the body as application/json",
        ));
    }
    let record: RecordReceipt = parse_body(&body)?;
    record_receipt(
        &state,
        &req,
        access.org.id.as_uuid(),
        (record.kind, record.public, record.private),
        (caller.actor(), caller.ctx.clone()),
        "api",
    )
    .await
}

/// The organization's receipts, oldest first.
#[utoipa::path(get, path = "/orgs/{org}/receipts", tag = "receipts", security(("bearer" = [])),
    params(("org" = String, Path, description = "Organization slug or id"), ReceiptQuery),
    responses(
        (status = 200, description = "A page of receipts", body = ReceiptPage),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization, or not a member", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid kind filter", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_org_receipts(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    query: web::Query<ReceiptQuery>,
) -> Result<HttpResponse, ApiError> {
    let access = caller.member(&state, &path).await?;
    let kind = query.kind.as_deref().map(ReceiptKind::parse).transpose()?;
    if query.after.is_some_and(|a| i64::try_from(a).is_err()) {
        return Err(ApiError::new(
            ErrorCode::InvalidCursor,
            "`after` is beyond any receipt sequence number",
        ));
    }
    let limit = query.limit.unwrap_or(100).clamp(1, 500);
    let client = state.db.reader().await?;
    let mut rows = ledger::list(
        &*client,
        access.org.id.as_uuid(),
        query.after,
        limit + 1,
        kind.as_ref().map(|k| k.as_str()),
    )
    .await?;
    let next_cursor = split_page(&mut rows, limit, |r| r.seq);
    // Written as `ReceiptPage`, each body as its stored canonical bytes (no parse per body).
    Ok(HttpResponse::Ok().json(ReceiptPageOut {
        items: rows.iter().map(|r| r.member_view_out()).collect(),
        next_cursor,
    }))
}

async fn find_receipt(
    state: &AppState,
    org: uuid::Uuid,
    id: &str,
) -> Result<ledger::StoredReceipt, ApiError> {
    let client = state.db.reader().await?;
    ledger::get(&*client, org, id)
        .await?
        .ok_or_else(ApiError::not_found)
}

/// One receipt, with its private part.
#[utoipa::path(get, path = "/orgs/{org}/receipts/{id}", tag = "receipts", security(("bearer" = [])),
    params(("org" = String, Path, description = "Organization slug or id"), ("id" = String, Path, description = "Receipt id, DCR-…")),
    responses(
        (status = 200, description = "The receipt", body = ReceiptView),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such receipt, organization, or membership", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_org_receipt(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (org, id) = path.into_inner();
    let access = caller.member(&state, &org).await?;
    let receipt = find_receipt(&state, access.org.id.as_uuid(), &id).await?;
    Ok(HttpResponse::Ok().json(receipt.member_view_out()))
}

/// Creates a share link: anyone holding it sees the redacted projection and can verify it with
/// a proof that discloses no other receipt. Optionally it expires.
#[utoipa::path(post, path = "/orgs/{org}/receipts/{id}/share", tag = "receipts", security(("bearer" = [])),
    request_body(content = Option<ShareRequest>, description = "Optional; `{}` or no body: never expires"),
    params(("org" = String, Path, description = "Organization slug or id"), ("id" = String, Path, description = "Receipt id, DCR-…")),
    responses(
        (status = 201, description = "Shared", body = ShareLink),
        (status = 400, description = "Malformed body", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`expires_in` out of range", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "API keys cannot share", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such receipt, organization, or membership", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn post_receipt_share(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let (org, id) = path.into_inner();
    let access = caller.member(&state, &org).await?;
    let (user, _) = caller.session()?;
    let request = share_request(&body)?;
    let expires_at = request
        .expires_in
        .map(|s| time::OffsetDateTime::now_utc() + std::time::Duration::from_secs(s));
    let receipt = find_receipt(&state, access.org.id.as_uuid(), &id).await?;
    let share = ledger::NewShare {
        org: receipt.org,
        seq: receipt.seq,
        created_by: Some(user.as_uuid()),
        expires_at,
        receipt_id: &receipt.receipt_id,
    };
    let by = (caller.actor(), &caller.ctx);
    let (_, token) = ledger::share_receipt(&mut *state.db.get().await?, &share, by).await?;
    let base = state.config.api_base_url();
    let base = base.as_str().trim_end_matches('/');
    Ok(HttpResponse::Created().json(ShareLink {
        url: format!("{base}/share/{}", token.expose()),
        proof_url: format!("{base}/share/{}/proof", token.expose()),
        download_url: format!("{base}/share/{}/download", token.expose()),
        token: token.expose().to_owned(),
        expires_at: expires_at.map(defendable_ledger::receipt::format_created_at),
    }))
}

/// The v2 proof bundle of one receipt (members and API keys): its projection, inclusion path
/// and the signed checkpoint of the current tree (or of `size` receipts).
#[utoipa::path(get, path = "/orgs/{org}/receipts/{id}/proof", tag = "receipts", security(("bearer" = [])),
    params(("org" = String, Path, description = "Organization slug or id"), ("id" = String, Path, description = "Receipt id, DCR-…"), ProofQuery),
    responses(
        (status = 200, description = "The proof bundle (JSON), or with `format=tlog-proof` a C2SP tlog-proof file (text/plain)", body = ProofBundle),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such receipt, organization, or membership", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`size` outside `seq < size ≤ current`, or an unknown format", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The receipt is not in the tree yet (Retry-After)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_receipt_proof(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
    query: web::Query<ProofQuery>,
) -> Result<HttpResponse, ApiError> {
    let (org, id) = path.into_inner();
    let access = caller.member(&state, &org).await?;
    let org = access.org.id.as_uuid();
    let bundle = if query.size.is_none() {
        // Against the current tree: the receipt and its proof in one statement, batched with
        // concurrent ones.
        let _slot = state.db.slot()?;
        let proven = state
            .receipt_proofs
            .load((org, id))
            .await
            .map_err(ApiError::store)?
            .ok_or_else(ApiError::not_found)?;
        ledger::bundle_of(&state.log, &proven.receipt, &proven.prove()?)?
    } else {
        let receipt = find_receipt(&state, org, &id).await?;
        let client = state.db.reader().await?;
        ledger::proof_bundle(&*client, &state.log, &receipt, query.size).await?
    };
    bundle_response(bundle, query.format.as_deref(), None)
}

/// Revokes every share link of a receipt.
#[utoipa::path(delete, path = "/orgs/{org}/receipts/{id}/share", tag = "receipts", security(("bearer" = [])),
    params(("org" = String, Path, description = "Organization slug or id"), ("id" = String, Path, description = "Receipt id, DCR-…")),
    responses(
        (status = 204, description = "Every link of the receipt now answers 404"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "API keys cannot manage shares", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such receipt, organization, or membership", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete_receipt_share(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (org, id) = path.into_inner();
    let access = caller.member(&state, &org).await?;
    caller.session()?;
    let receipt = find_receipt(&state, access.org.id.as_uuid(), &id).await?;
    let shared = (receipt.org, receipt.seq, receipt.receipt_id.as_str());
    let by = (caller.actor(), &caller.ctx);
    ledger::unshare_receipt(&mut *state.db.get().await?, shared, by).await?;
    Ok(HttpResponse::NoContent().finish())
}
