//! Public share links: the redacted projection and the proof bundle.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use defendable_identity::{IdentityError, OneTimeToken};
use defendable_ledger::store as ledger;
use defendable_ledger::Checkpoint;
use defendable_store::audit::{record, Actor, AuditAction, AuditEvent};
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::auth::audit_context;
use crate::error::{ApiError, Problem};
use crate::AppState;

/// Resolves a share token to its receipt; unknown, revoked and malformed tokens are one 404,
/// recorded as `share.access_error`.
async fn shared(
    req: &HttpRequest,
    state: &AppState,
    token: &str,
) -> Result<ledger::StoredReceipt, ApiError> {
    let found = match OneTimeToken::parse(token) {
        Ok(t) => {
            let client = state.pool.get().await.map_err(IdentityError::from)?;
            ledger::shared_receipt(&client, t.hash().as_bytes()).await?
        }
        Err(_) => None,
    };
    match found {
        Some(r) => Ok(r),
        None => {
            let mut e = AuditEvent::new(
                AuditAction::parse("share.access_error").expect("valid"),
                Actor::Anonymous,
            );
            e.context = audit_context(req, state);
            e.details = json!({ "reason": "unknown_or_revoked" });
            let client = state.pool.get().await.map_err(IdentityError::from)?;
            record(&client, &e).await.map_err(ApiError::internal)?;
            Err(ApiError::not_found())
        }
    }
}

/// The redacted public projection `{receipt_id, hash, body}` of a shared receipt.
#[utoipa::path(get, path = "/share/{token}", tag = "share",
    params(("token" = String, Path, description = "Share token")),
    responses(
        (status = 200, description = "The projection; recompute its hash from the body alone", body = Object),
        (status = 404, description = "Unknown or revoked link", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_share(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<web::Json<Value>, ApiError> {
    let receipt = shared(&req, &state, &path).await?;
    Ok(web::Json(receipt.projection()))
}

/// The proof bundle of a shared receipt: `{receipt, chain, checkpoint}`, where `chain` runs from
/// the receipt to the head and `checkpoint` signs the head.
#[utoipa::path(get, path = "/share/{token}/download", tag = "share",
    params(("token" = String, Path, description = "Share token")),
    responses(
        (status = 200, description = "The proof bundle as a JSON attachment", body = Object),
        (status = 404, description = "Unknown or revoked link", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_share_download(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let receipt = shared(&req, &state, &path).await?;
    let client = state.pool.get().await.map_err(IdentityError::from)?;
    let (head_seq, head) = ledger::head(&client, receipt.org).await?;
    let mut chain = Vec::new();
    let mut after = receipt.seq;
    loop {
        let page = ledger::list(&client, receipt.org, Some(after), 1000, None).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        chain.extend(
            page.iter()
                .filter(|r| r.seq as i64 <= head_seq)
                .map(|r| r.projection()),
        );
        if after as i64 >= head_seq {
            break;
        }
    }
    let checkpoint = state.signing_key.sign(Checkpoint::new(
        receipt.org,
        head_seq,
        head,
        OffsetDateTime::now_utc(),
    ))?;
    let bundle = json!({
        "receipt": receipt.projection(),
        "chain": chain,
        "checkpoint": checkpoint,
    });
    Ok(HttpResponse::Ok()
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{}-proof.json\"", receipt.receipt_id),
        ))
        .json(bundle))
}
