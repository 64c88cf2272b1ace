//! Public share links: the redacted projection and the proof bundle.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use defendable_config::limits::LimitKey;
use defendable_datasets::store as datasets;
use defendable_datasets::{objects, DatasetsError, ObjectKey};
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

/// Records a download outcome as an audit event (anonymous: the link is the credential).
async fn record_outcome(
    req: &HttpRequest,
    state: &AppState,
    org: uuid::Uuid,
    action: &str,
    target: &str,
    details: Value,
) -> Result<(), ApiError> {
    let mut e = AuditEvent::new(AuditAction::parse(action).expect("valid"), Actor::Anonymous);
    e.org_id = Some(org);
    e.context = audit_context(req, state);
    e.target = Some(target.to_owned());
    e.details = details;
    let client = state.pool.get().await.map_err(IdentityError::from)?;
    record(&client, &e).await.map_err(ApiError::internal)?;
    Ok(())
}

/// A grant's download: a fresh short-lived object URL on every access, until the grant expires.
async fn grant_redirect(
    req: &HttpRequest,
    state: &AppState,
    receipt: &ledger::StoredReceipt,
    grant: datasets::GrantRow,
) -> Result<HttpResponse, ApiError> {
    let now = OffsetDateTime::now_utc();
    let grant_id = grant.id.to_string();
    if grant.expires_at <= now {
        record_outcome(
            req,
            state,
            grant.org,
            "share.access_error",
            &receipt.receipt_id,
            json!({"reason": "grant_expired", "grant_id": grant_id}),
        )
        .await?;
        return Err(DatasetsError::GrantExpired.into());
    }
    let key = ObjectKey::parse(&grant.object_key)?;
    if let Err(e) = objects::head(state.objects.as_ref(), &key).await {
        state.metrics.storage_failure();
        tracing::error!(error = %e, grant_id = %grant_id, "object storage failure on a signed grant");
        record_outcome(
            req,
            state,
            grant.org,
            "storage.failure",
            &receipt.receipt_id,
            json!({"grant_id": grant_id}),
        )
        .await?;
        return Err(ApiError::new(
            actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
            "storage_unavailable",
            "object storage is unreachable; try again shortly",
        ));
    }
    let ttl = state.config.download_url_ttl;
    let url = match &state.presigner {
        Some(signer) => signer
            .signed_url(
                reqwest::Method::GET,
                &object_store::path::Path::from(key.as_str()),
                ttl,
            )
            .await
            .map_err(|e| {
                state.metrics.storage_failure();
                ApiError::internal(e)
            })?
            .to_string(),
        None => {
            let expires = now.unix_timestamp() + ttl.as_secs() as i64;
            let base = state.config.api_base_url();
            format!(
                "{}/objects/{}?{}",
                base.as_str().trim_end_matches('/'),
                key.as_str(),
                state.url_signer.sign(key.as_str(), expires)
            )
        }
    };
    record_outcome(req, state, grant.org, "dataset.download", &receipt.receipt_id, json!({"outcome": "redirect", "grant_id": grant_id, "slug": grant.slug, "version": grant.version})).await?;
    Ok(HttpResponse::Found()
        .insert_header((header::LOCATION, url))
        .finish())
}

/// For a dataset grant: a 302 to a fresh short-lived object URL. For any other receipt: its
/// proof bundle `{receipt, chain, checkpoint}`, where `chain` runs from the receipt to the head
/// and `checkpoint` signs the head.
#[utoipa::path(get, path = "/share/{token}/download", tag = "share",
    params(("token" = String, Path, description = "Share token")),
    responses(
        (status = 200, description = "The proof bundle as a JSON attachment", body = Object),
        (status = 302, description = "A grant: Location is a signed object URL valid DOWNLOAD_URL_TTL"),
        (status = 404, description = "Unknown or revoked link", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "The grant has expired", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Object storage unreachable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_share_download(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let ip = audit_context(&req, &state).ip.map(|ip| ip.to_string());
    crate::ratelimit::check(
        &req,
        &state,
        "GET",
        "/share/{token}/download",
        |k| match k {
            LimitKey::Token => Some(path.as_str().to_owned()),
            LimitKey::Ip => ip.clone(),
            _ => None,
        },
    )
    .await?;
    let receipt = shared(&req, &state, &path).await?;
    let client = state.pool.get().await.map_err(IdentityError::from)?;
    if let Some(grant) = datasets::grant_for_receipt(&client, receipt.org, receipt.seq).await? {
        return grant_redirect(&req, &state, &receipt, grant).await;
    }
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
