//! Chain-level routes: verification, signed checkpoints, export, published keys.

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use defendable_identity::IdentityError;
use defendable_ledger::store as ledger;
use defendable_ledger::{Checkpoint, Hash, PublicKey, SignedCheckpoint};
use futures_util::stream;
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::{ApiError, Problem};
use crate::AppState;

/// The published verification keys.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeysDto {
    /// Current key first, then earlier ones still honoured.
    #[schema(value_type = Vec<Object>)]
    pub keys: Vec<PublicKey>,
}

/// The first failure found by verification.
#[derive(Debug, Serialize, ToSchema)]
pub struct FailureDto {
    /// The failing receipt's seq.
    pub seq: u64,
    /// What is wrong.
    pub reason: String,
}

/// The result of verifying a chain from storage.
#[derive(Debug, Serialize, ToSchema)]
pub struct VerifyDto {
    /// Organization id.
    pub org: Uuid,
    /// Whether every link verified.
    pub valid: bool,
    /// Receipts checked before stopping.
    pub checked: u64,
    /// The last verified hash.
    pub head: String,
    /// The first failure, if any.
    pub failure: Option<FailureDto>,
}

/// The keys that sign checkpoints (public).
#[utoipa::path(get, path = "/ledger/keys", tag = "ledger",
    responses((status = 200, description = "Ed25519 public keys", body = KeysDto)))]
pub async fn get_ledger_keys(state: web::Data<AppState>) -> web::Json<KeysDto> {
    web::Json(KeysDto {
        keys: state.published_keys.clone(),
    })
}

/// Verifies every link of the organization's chain in storage.
#[utoipa::path(get, path = "/orgs/{org}/ledger/verify", tag = "ledger", security(("bearer" = [])),
    params(("org" = String, Path, description = "Organization slug or id")),
    responses(
        (status = 200, description = "The verification result (see `valid`)", body = VerifyDto),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization, or not a member", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_ledger_verify(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<web::Json<VerifyDto>, ApiError> {
    let access = caller.member(&state, &path).await?;
    let client = state.pool.get().await.map_err(IdentityError::from)?;
    let report = ledger::verify_org(&client, access.org.id.as_uuid()).await?;
    if let Some(f) = &report.failure {
        state
            .metrics
            .receipt_hash_mismatch(access.org.id.as_uuid(), f);
    }
    Ok(web::Json(VerifyDto {
        org: report.org,
        valid: report.failure.is_none(),
        checked: report.checked,
        head: report.head.to_hex(),
        failure: report.failure.map(|f| FailureDto {
            seq: f.seq,
            reason: f.reason.to_string(),
        }),
    }))
}

async fn sign_head(
    state: &AppState,
    org: Uuid,
    seq: i64,
    head: Hash,
) -> Result<SignedCheckpoint, ApiError> {
    Ok(state
        .signing_key
        .sign(Checkpoint::new(org, seq, head, OffsetDateTime::now_utc()))?)
}

/// A signed checkpoint of the chain's current head.
#[utoipa::path(get, path = "/orgs/{org}/ledger/checkpoint", tag = "ledger", security(("bearer" = [])),
    params(("org" = String, Path, description = "Organization slug or id")),
    responses(
        (status = 200, description = "Signed checkpoint; an empty chain has seq -1 and a zero head", body = Object),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization, or not a member", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_ledger_checkpoint(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<web::Json<SignedCheckpoint>, ApiError> {
    let access = caller.member(&state, &path).await?;
    let client = state.pool.get().await.map_err(IdentityError::from)?;
    let (seq, head) = ledger::head(&client, access.org.id.as_uuid()).await?;
    Ok(web::Json(
        sign_head(&state, access.org.id.as_uuid(), seq, head).await?,
    ))
}

/// The whole chain as JSON Lines: one public projection per line in seq order, then a signed
/// checkpoint of the last exported receipt. Streamed; memory does not grow with the chain.
#[utoipa::path(get, path = "/orgs/{org}/ledger/export", tag = "ledger", security(("bearer" = [])),
    params(("org" = String, Path, description = "Organization slug or id")),
    responses(
        (status = 200, description = "JSON Lines", content_type = "application/x-ndjson"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization, or not a member", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_ledger_export(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let access = caller.member(&state, &path).await?;
    let org = access.org.id.as_uuid();
    let client = state.pool.get().await.map_err(IdentityError::from)?;
    // Fix the head first: the export ends exactly there, whatever is appended meanwhile.
    let (seq, head) = ledger::head(&client, org).await?;
    let checkpoint = serde_json::to_value(sign_head(&state, org, seq, head).await?)
        .map_err(ApiError::internal)?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Value>(256);
    actix_web::rt::spawn(async move {
        match ledger::send_projections(&client, org, seq, &tx).await {
            Ok(_) => {
                let _ = tx.send(checkpoint).await;
            }
            // The status is already sent; ending without the checkpoint line makes the export
            // fail verification rather than pass silently.
            Err(e) => tracing::error!(error = %e, org_id = %org, "ledger export failed mid-stream"),
        }
    });
    let body = stream::unfold(rx, |mut rx| async move {
        let line = rx.recv().await?;
        let mut bytes = serde_json::to_vec(&line).unwrap_or_default();
        bytes.push(b'\n');
        Some((Ok::<_, actix_web::Error>(web::Bytes::from(bytes)), rx))
    });
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "application/x-ndjson"))
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{}-ledger.jsonl\"", access.org.slug),
        ))
        .streaming(body))
}
