//! Operator routes: Prometheus metrics, runner receipts, the Stripe webhook, the audit log.

use actix_web::{web, HttpRequest, HttpResponse};
use defendable_datasets::billing::{self, Applied};
use defendable_identity::OrgRef;
use defendable_ledger::{ReceiptKind, ReceiptView};
use defendable_store::audit::{Actor, AuditAction, AuditEvent, StoredAuditEvent};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

use crate::auth::{audit_context, Caller};
use crate::bodies::split_page;
use crate::error::{ApiError, ErrorCode, Problem};
use crate::internal::{guard_with, same, Credential};
use crate::recording::{parse_body, record_receipt};
use crate::AppState;

/// Prometheus metrics of this process (allowed networks and the internal key, as `/internal`,
/// in `X-Internal-Key` or as `Authorization: Bearer`). Answers without the database.
#[utoipa::path(get, path = "/metrics", tag = "internal",
    params(("X-Internal-Key" = Option<String>, Header, description = "INTERNAL_API_KEY (or send it as a bearer token)")),
    responses(
        (status = 200, description = "OpenMetrics text format", content_type = "application/openmetrics-text"),
        (status = 401, description = "Wrong or missing internal key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not from an allowed network", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "INTERNAL_API_KEY not configured", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_metrics(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    crate::internal::guard_scrape(&req, &state).await?;
    let pool = state.db.pool().status();
    let figures = crate::metrics::PoolFigures {
        size: pool.size,
        available: pool.available,
        max_size: pool.max_size,
        waiting: pool.waiting,
    };
    Ok(HttpResponse::Ok()
        .content_type(crate::metrics::CONTENT_TYPE)
        .body(state.metrics.render(figures)))
}

/// `POST /internal/receipts` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunnerReceipt {
    /// Organization (slug or id) whose chain records the run.
    pub org: String,
    /// Kind, usually `run`.
    pub kind: String,
    /// Public part.
    #[schema(value_type = Object)]
    pub public: Value,
    /// Private part.
    #[schema(value_type = Option<Object>)]
    #[serde(default)]
    pub private: Option<Value>,
}

/// Records a runner's receipt in an organization's chain (`Authorization: Bearer RUNNER_TOKEN`).
#[utoipa::path(post, path = "/internal/receipts", tag = "internal", request_body = RunnerReceipt,
    params(("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key and body return the first receipt")),
    responses(
        (status = 201, description = "Recorded", body = ReceiptView),
        (status = 200, description = "A retry", body = ReceiptView),
        (status = 401, description = "Wrong or missing runner token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not from an allowed network, or an organization not in RUNNER_ORGS", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid or reserved receipt kind, or an invalid body", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "RUNNER_TOKEN not configured, or the database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn post_internal_receipts(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    guard_with(
        &req,
        &state,
        "POST /internal/receipts",
        Credential::RunnerToken,
    )
    .await?;
    let run: RunnerReceipt = parse_body(&body)?;
    ReceiptKind::parse_client(&run.kind)?;
    let org = runner_org(&state, &run.org).await?;
    record_receipt(
        &state,
        &req,
        org.id.as_uuid(),
        (run.kind, run.public, run.private),
        (Actor::Runner, audit_context(&req, &state)),
        "runner",
    )
    .await
}

/// The organization a runner names, if `RUNNER_ORGS` lists it. An unknown one is refused the
/// same way, so the token cannot probe which organizations exist.
async fn runner_org(
    state: &AppState,
    named: &str,
) -> Result<defendable_identity::store::Org, ApiError> {
    let org = {
        let client = state.db.get().await?;
        defendable_identity::store::find_org(&*client, &OrgRef::parse(named)?).await?
    };
    org.filter(|org| {
        let (id, slug) = (org.id.to_string(), org.slug.to_string());
        state
            .config
            .runner_orgs
            .iter()
            .any(|listed| *listed == id || *listed == slug)
    })
    .ok_or_else(|| {
        ApiError::new(
            ErrorCode::RunnerOrgNotAllowed,
            "the runner token may not record into this organization (RUNNER_ORGS)",
        )
    })
}

/// Stripe's signature tolerance.
const TOLERANCE_SECS: i64 = 300;

/// Verifies `Stripe-Signature` (`t=…,v1=…[,v1=…]`) over the raw body: HMAC-SHA256 of
/// `t.payload` with any configured secret, compared in constant time, within 300 s.
/// Returns whether the previous secret matched.
pub fn verify_stripe(
    header: &str,
    payload: &[u8],
    secrets: &[&[u8]],
    now: i64,
) -> Result<bool, &'static str> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => timestamp = v.parse::<i64>().ok(),
            Some(("v1", v)) => signatures.push(v.to_owned()),
            _ => {}
        }
    }
    let t = timestamp.ok_or("no timestamp")?;
    if signatures.is_empty() {
        return Err("no v1 signature");
    }
    if (now - t).abs() > TOLERANCE_SECS {
        return Err("timestamp outside the tolerance");
    }
    let mut signed = format!("{t}.").into_bytes();
    signed.extend_from_slice(payload);
    for (i, secret) in secrets.iter().enumerate() {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
        let expected = hex::encode(ring::hmac::sign(&key, &signed).as_ref());
        if signatures
            .iter()
            .any(|s| same(s.as_bytes(), expected.as_bytes()))
        {
            return Ok(i > 0);
        }
    }
    Err("no signature matches")
}

/// The acknowledgement of a webhook.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookAck {
    /// Always true.
    pub received: bool,
    /// True when this event id was already handled (a replay): nothing was done.
    pub duplicate: bool,
}

/// Stripe events: verified over the raw body, idempotent by event id. Subscription and checkout
/// events set the organization's plan (`metadata.org_id`, `metadata.plan`), which sets its dataset
/// daily limit; other types are acknowledged and ignored.
#[utoipa::path(post, path = "/webhooks/stripe", tag = "internal",
    params(("Stripe-Signature" = String, Header, description = "t=…,v1=…")),
    responses(
        (status = 200, description = "Acknowledged", body = WebhookAck),
        (status = 400, description = "Bad or missing signature", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "STRIPE_WEBHOOK_SECRET not configured", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn post_stripe_webhook(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    check_stripe_signature(&req, &state, &body).await?;
    let event: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("the event is not JSON: {e}")))?;
    let id = event["id"]
        .as_str()
        .ok_or_else(|| ApiError::bad_request("the event has no id"))?;
    let kind = event["type"].as_str().unwrap_or("unknown");
    let applied = billing::apply_stripe_event(&mut *state.db.get().await?, &event).await?;
    log_applied(id, kind, &applied);
    Ok(HttpResponse::Ok().json(WebhookAck {
        received: true,
        duplicate: applied == Applied::Duplicate,
    }))
}

/// The webhook secrets a signature may verify under: the current one, then the previous one
/// during a rotation.
fn stripe_keys(state: &AppState) -> Result<Vec<&[u8]>, ApiError> {
    let secrets = &state.config.stripe_webhook_secret;
    let Some(current) = &secrets.current else {
        return Err(ApiError::new(
            ErrorCode::WebhookNotConfigured,
            "STRIPE_WEBHOOK_SECRET is not set",
        ));
    };
    let mut keys: Vec<&[u8]> = vec![current.expose_secret().as_bytes()];
    if let Some(previous) = &secrets.previous {
        keys.push(previous.expose_secret().as_bytes());
    }
    Ok(keys)
}

/// Verifies `Stripe-Signature` against the current secret and the previous one during a
/// rotation; a failure is counted, logged, recorded as an aggregated refusal and answered 400.
async fn check_stripe_signature(
    req: &HttpRequest,
    state: &AppState,
    body: &[u8],
) -> Result<(), ApiError> {
    let keys = stripe_keys(state)?;
    let header = req
        .headers()
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    match verify_stripe(
        header,
        body,
        &keys,
        OffsetDateTime::now_utc().unix_timestamp(),
    ) {
        Ok(previous) => {
            if previous {
                state
                    .metrics
                    .previous_secret_used("STRIPE_WEBHOOK_SECRET_PREVIOUS");
            }
            Ok(())
        }
        Err(why) => {
            state.metrics.webhook_signature_failure();
            tracing::warn!(reason = why, "stripe webhook signature failure");
            let e = AuditEvent::refusal(
                AuditAction::WebhookSignatureFailure,
                Actor::Webhook,
                &audit_context(req, state),
                json!({ "provider": "stripe", "reason": why }),
            );
            crate::ratelimit::record_refusal(state, &e).await?;
            Err(ApiError::new(
                ErrorCode::InvalidSignature,
                "the Stripe-Signature header does not verify",
            ))
        }
    }
}

/// One log line for what an event did.
fn log_applied(id: &str, kind: &str, applied: &Applied) {
    match applied {
        Applied::Changed { org, plan, .. } => {
            tracing::info!(event = id, kind, org_id = %org, plan = plan.as_str(), "plan changed")
        }
        Applied::Ignored(why) => {
            tracing::info!(event = id, kind, reason = *why, "stripe event ignored")
        }
        Applied::Stale => tracing::info!(
            event = id,
            kind,
            "stripe event older than the last applied; ignored"
        ),
        Applied::Duplicate => {}
    }
}

/// Audit log filters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only events older than this id (the previous page's `next_cursor`).
    pub cursor: Option<i64>,
    /// Page size, 1–200 (default 50).
    pub limit: Option<i64>,
    /// Only this action, e.g. `member.role_change`.
    pub action: Option<String>,
    /// Only events at or after this time (RFC 3339).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub since: Option<OffsetDateTime>,
    /// Only events before this time (RFC 3339).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub until: Option<OffsetDateTime>,
}

/// A page of audit events.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    /// Newest first.
    pub items: Vec<StoredAuditEvent>,
    /// Pass as `cursor` for older events; null on the last page.
    pub next_cursor: Option<i64>,
}

/// The organization's audit log (owners).
#[utoipa::path(get, path = "/orgs/{org}/audit", tag = "orgs", security(("bearer" = [])),
    params(("org" = String, Path, description = "Organization slug or id"), AuditQuery),
    responses(
        (status = 200, description = "A page of events", body = AuditPage),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an owner, or an API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization, or not a member", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_org_audit(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    query: web::Query<AuditQuery>,
) -> Result<web::Json<AuditPage>, ApiError> {
    let (access, _) = caller.owner(&state, &path).await?;
    let limit = query.limit.unwrap_or(50).clamp(1, 200);
    let filter = defendable_store::audit::AuditFilter {
        org: access.org.id.as_uuid(),
        before: query.cursor,
        action: query.action.clone(),
        since: query.since,
        until: query.until,
        limit: limit + 1,
    };
    let mut items = defendable_store::audit::list(&*state.db.get().await?, &filter)
        .await
        .map_err(ApiError::store)?;
    let next_cursor = split_page(&mut items, limit, |e| e.id);
    Ok(web::Json(AuditPage { items, next_cursor }))
}
