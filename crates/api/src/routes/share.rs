//! Public share links: the redacted projection, the v2 proof bundle and consistency proofs
//! (DESIGN §2b). Nothing here discloses any receipt but the shared one.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use defendable_config::limits::LimitKey;
use defendable_datasets::store::{self as datasets, GrantAccess};
use defendable_datasets::{objects, DatasetsError, ObjectKey};
use defendable_ledger::store as ledger;
use defendable_ledger::store::ProvenReceipt;
use defendable_ledger::{ConsistencyProof, ProofBundle, ShareToken};
use defendable_store::audit::{Actor, AuditAction, AuditContext, AuditEvent};
use defendable_store::loader::Loader;
use serde_json::json;
use time::OffsetDateTime;

use crate::auth::audit_context;
use crate::error::{ApiError, ErrorCode, Problem};
use crate::pages;
use crate::proofs::{bundle_response, ProofQuery, ShareConsistencyQuery};
use crate::AppState;

/// Counts a public share request against its declared limits (per token and per IP where the
/// table declares them), then resolves the token with `loader` (its receipt, or its receipt
/// with what proves it), concurrent reads in one statement. Unknown, revoked and malformed
/// tokens are one 404, recorded as `share.access_error` (aggregated).
async fn limit_and_resolve<V: Clone + Send + 'static>(
    req: &HttpRequest,
    state: &AppState,
    route: &str,
    token: &str,
    loader: &Loader<Vec<u8>, V>,
) -> Result<V, ApiError> {
    limit_and_load(req, state, route, token, loader, |hash| hash).await
}

/// [`limit_and_resolve`] with a loader keyed by the token's hash and more (`key` makes the key).
async fn limit_and_load<K, V>(
    req: &HttpRequest,
    state: &AppState,
    route: &str,
    token: &str,
    loader: &Loader<K, V>,
    key: impl FnOnce(Vec<u8>) -> K,
) -> Result<V, ApiError>
where
    K: Eq + std::hash::Hash + Clone + Send + 'static,
    V: Clone + Send + 'static,
{
    let ip = audit_context(req, state).ip.map(|ip| ip.to_string());
    crate::ratelimit::check(req, state, "GET", route, |k| match k {
        LimitKey::Token => Some(token.to_owned()),
        LimitKey::Ip => ip.clone(),
        _ => None,
    })
    .await?;
    let found = match ShareToken::parse(token) {
        Some(t) => {
            let _slot = state.db.slot()?;
            loader
                .load(key(t.hash().to_vec()))
                .await
                .map_err(ApiError::store)?
        }
        None => None,
    };
    if let Some(found) = found {
        return Ok(found);
    }
    let e = AuditEvent::refusal(
        AuditAction::ShareAccessError,
        Actor::Anonymous,
        &audit_context(req, state),
        json!({ "reason": "unknown_or_revoked" }),
    );
    state.metrics.public_projection_error();
    crate::ratelimit::record_refusal(state, &e).await?;
    Err(ApiError::not_found())
}

/// The redacted public projection `{receipt_id, hash, body}` of a shared receipt; for a browser
/// (`Accept: text/html`), a page that shows the receipt and verifies its v2 proof bundle with
/// WebCrypto.
#[utoipa::path(get, path = "/share/{token}", tag = "share",
    params(("token" = String, Path, description = "Share token")),
    responses(
        (status = 200, description = "The projection (recompute its hash from the body alone), or with `Accept: text/html` the share page", content(
            (Object = "application/json"),
            (String = "text/html"),
        )),
        (status = 404, description = "Unknown or revoked link (a page for browsers)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited (per address and per token)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_share(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let route = "/share/{token}";
    if !pages::wants_html(&req) {
        let receipt = limit_and_resolve(&req, &state, route, &path, &state.share_reads).await?;
        return Ok(HttpResponse::Ok()
            .insert_header((header::VARY, "Accept"))
            .json(receipt.projection_out()));
    }
    let shared = match limit_and_resolve(&req, &state, route, &path, &state.share_proofs).await {
        Ok(r) => r,
        Err(e) => return Ok(pages::error_page(state.config.api_base_url().as_str(), &e)),
    };
    let mut res = share_page(&state, &path, &shared)?;
    res.headers_mut()
        .insert(header::VARY, header::HeaderValue::from_static("Accept"));
    Ok(res)
}

/// The share page: the receipt as a person reads it, its bundle (read with the link) and the
/// published keys for the script, and the offline command.
fn share_page(
    state: &AppState,
    token: &str,
    shared: &ProvenReceipt,
) -> Result<HttpResponse, ApiError> {
    let receipt = &shared.receipt;
    let api = state.config.api_base_url().to_string();
    let projection = receipt.projection();
    let (bundle_json, bundle_error, log) = bundle_facts(state, shared)?;
    let vkeys: Vec<&str> = state
        .published_keys
        .iter()
        .map(|k| k.vkey.as_str())
        .filter(|v| !v.is_empty())
        .collect();
    let share_url = format!("{}/share/{token}", api.trim_end_matches('/'));
    let pin = vkeys
        .first()
        .map(|v| format!(" --vkey {v}"))
        .unwrap_or_default();
    let page = pages::SharePage {
        api: &api,
        token,
        receipt: pages::ReceiptFacts::of(&projection),
        log,
        grant: pages::GrantFacts::of(&projection),
        bundle_json,
        bundle_error,
        vkeys_json: pages::script_json(&vkeys)?,
        command: format!("defendable verify {share_url}{pin}"),
    };
    pages::render(StatusCode::OK, &page)
}

/// The share page's bundle (as the script reads it) and the log it is in; a receipt not yet in
/// the log's tree, or a database that is away, shows why instead of the bundle.
fn bundle_facts(
    state: &AppState,
    shared: &ProvenReceipt,
) -> Result<(Option<String>, String, pages::LogFacts), ApiError> {
    let receipt = &shared.receipt;
    let bundle = shared
        .prove()
        .and_then(|proof| ledger::bundle_of(&state.log, receipt, &proof));
    match bundle {
        Ok(b) => {
            let mut lines = b.checkpoint.lines();
            let log = pages::LogFacts {
                origin: lines.next().unwrap_or_default().to_owned(),
                size: lines.next().unwrap_or_default().to_owned(),
            };
            Ok((Some(pages::script_json(&b)?), String::new(), log))
        }
        Err(e) => {
            let e = ApiError::from(e);
            if e.status().is_server_error() && e.status() != StatusCode::SERVICE_UNAVAILABLE {
                return Err(e);
            }
            let log = pages::LogFacts {
                origin: state.log.name().origin(receipt.org),
                size: "not yet known".to_owned(),
            };
            let why = "the receipt is not in the log's tree yet; reload in a moment.".to_owned();
            Ok((None, why, log))
        }
    }
}

/// Records what became of a grant's download.
async fn record_access(
    state: &AppState,
    grant: &datasets::GrantRow,
    receipt: &ledger::StoredReceipt,
    access: GrantAccess,
    ctx: &AuditContext,
) -> Result<(), ApiError> {
    let client = state.db.get().await?;
    datasets::record_grant_access(&*client, grant, &receipt.receipt_id, access, ctx).await?;
    Ok(())
}

/// A grant's download: a fresh short-lived object URL on every access, until the grant expires.
async fn grant_redirect(
    req: &HttpRequest,
    state: &AppState,
    receipt: &ledger::StoredReceipt,
    grant: datasets::GrantRow,
) -> Result<HttpResponse, ApiError> {
    let ctx = audit_context(req, state);
    let now = OffsetDateTime::now_utc();
    if grant.expires_at <= now {
        state.metrics.public_projection_error();
        record_access(state, &grant, receipt, GrantAccess::Expired, &ctx).await?;
        return Err(DatasetsError::GrantExpired.into());
    }
    let key = ObjectKey::parse(&grant.object_key)?;
    if let Err(e) = objects::head(state.objects.as_ref(), &key).await {
        state.metrics.storage_failure();
        tracing::error!(error = %e, grant_id = %grant.id, "object storage failure on a signed grant");
        record_access(state, &grant, receipt, GrantAccess::StorageFailure, &ctx).await?;
        return Err(ApiError::new(
            ErrorCode::StorageUnavailable,
            "object storage is unreachable; try again shortly",
        ));
    }
    let url = download_url(state, &key, now).await?;
    record_access(state, &grant, receipt, GrantAccess::Redirect, &ctx).await?;
    Ok(HttpResponse::Found()
        .insert_header((header::LOCATION, url))
        .finish())
}

/// A short-lived URL for the object: presigned by the object store where it signs, else this
/// server's own signed `/objects/…` URL.
async fn download_url(
    state: &AppState,
    key: &ObjectKey,
    now: OffsetDateTime,
) -> Result<String, ApiError> {
    let ttl = state.config.download_url_ttl;
    Ok(match &state.presigner {
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
    })
}

/// The v2 proof bundle of a shared receipt: its projection, its inclusion path and a signed
/// checkpoint. No other receipt's body is included.
#[utoipa::path(get, path = "/share/{token}/proof", tag = "share",
    params(("token" = String, Path, description = "Share token"), ProofQuery),
    responses(
        (status = 200, description = "The proof bundle (JSON), or with `format=tlog-proof` a C2SP tlog-proof file (text/plain)", body = ProofBundle),
        (status = 404, description = "Unknown, revoked or expired link", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`size` outside `seq < size ≤ current`, or an unknown format", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The receipt is not in the tree yet (Retry-After)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_share_proof(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<ProofQuery>,
) -> Result<HttpResponse, ApiError> {
    let route = "/share/{token}/proof";
    let bundle = if query.size.is_none() {
        // Against the current tree: read with the link, in the loader's one statement.
        let shared = limit_and_resolve(&req, &state, route, &path, &state.share_proofs).await?;
        ledger::bundle_of(&state.log, &shared.receipt, &shared.prove()?)?
    } else {
        let receipt = limit_and_resolve(&req, &state, route, &path, &state.share_reads).await?;
        let client = state.db.reader().await?;
        ledger::proof_bundle(&*client, &state.log, &receipt, query.size).await?
    };
    bundle_response(bundle, query.format.as_deref(), None)
}

/// A consistency proof from an earlier tree size of the shared receipt's log to the current one:
/// a holder who saved a checkpoint proves that history was not rewritten since.
#[utoipa::path(get, path = "/share/{token}/consistency", tag = "share",
    params(("token" = String, Path, description = "Share token"), ShareConsistencyQuery),
    responses(
        (status = 200, description = "The consistency proof and the current signed checkpoint", body = ConsistencyProof),
        (status = 404, description = "Unknown, revoked or expired link", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`from` outside `1 ≤ from ≤ current`", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_share_consistency(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<ShareConsistencyQuery>,
) -> Result<web::Json<ConsistencyProof>, ApiError> {
    let route = "/share/{token}/consistency";
    let from = query.from;
    if !ledger::consistency_from_ok(from) {
        // Outside every tree: refused by the general path, which names the tree's size.
        let receipt = limit_and_resolve(&req, &state, route, &path, &state.share_reads).await?;
        let client = state.db.reader().await?;
        let proof = ledger::consistency_proof(&*client, &state.log, receipt.org, from, None);
        return Ok(web::Json(proof.await?));
    }
    let shared = limit_and_load(
        &req,
        &state,
        route,
        &path,
        &state.share_consistency,
        |hash| (hash, from),
    )
    .await?;
    Ok(web::Json(shared.prove(&state.log)?))
}

/// For a dataset grant: a 302 to a fresh short-lived object URL. For any other receipt: its v2
/// proof bundle as an attachment (the same bundle as `/share/{token}/proof`).
#[utoipa::path(get, path = "/share/{token}/download", tag = "share",
    params(("token" = String, Path, description = "Share token"), ProofQuery),
    responses(
        (status = 200, description = "The proof bundle as an attachment (JSON, or a tlog-proof file)", body = ProofBundle),
        (status = 302, description = "A grant: Location is a signed object URL valid DOWNLOAD_URL_TTL"),
        (status = 404, description = "Unknown, revoked or expired link", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "The grant has expired", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`size` outside `seq < size ≤ current`, or an unknown format", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Object storage unreachable, or the receipt is not in the tree yet", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_share_download(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<ProofQuery>,
) -> Result<HttpResponse, ApiError> {
    let receipt = limit_and_resolve(
        &req,
        &state,
        "/share/{token}/download",
        &path,
        &state.share_reads,
    )
    .await?;
    let grant = {
        let client = state.db.get().await?;
        datasets::grant_for_receipt(&*client, receipt.org, receipt.seq).await?
    };
    if let Some(grant) = grant {
        return grant_redirect(&req, &state, &receipt, grant).await;
    }
    let client = state.db.reader().await?;
    let bundle = ledger::proof_bundle(&*client, &state.log, &receipt, query.size).await?;
    bundle_response(bundle, query.format.as_deref(), Some(&receipt.receipt_id))
}
