//! The guard of `/internal/*`: allowed networks (`INTERNAL_ALLOWED_CIDRS`) and the internal key
//! (`X-Internal-Key`, current or previous), compared in constant time. Every call is audited as
//! `internal.call`, refusals included.

use actix_web::HttpRequest;
use defendable_store::audit::{record, Actor, AuditEvent};
use secrecy::ExposeSecret;

use crate::auth::audit_context;
use crate::client_ip::client_ip;
use crate::error::{ApiError, ErrorCode};
use crate::AppState;

/// Compares in time that depends only on the lengths (the length of a key is not secret), with
/// `subtle`'s constant-time equality rather than a hand-written loop.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq as _;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Which credential an internal route takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// `X-Internal-Key: INTERNAL_API_KEY` (stagers, operators, `/metrics`).
    InternalKey,
    /// `Authorization: Bearer RUNNER_TOKEN` (runners).
    RunnerToken,
}

/// Checks network and key for a scrape of `/metrics`, which must answer while the database is
/// down: an allowed scrape touches no database and is not audited (Prometheus scrapes every
/// few seconds); a refused one is counted and audited, aggregated, when the database is up.
pub async fn guard_scrape(req: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    let outcome = check(req, state, Credential::InternalKey);
    if let Err(refused) = &outcome {
        let ctx = audit_context(req, state);
        let e = AuditEvent::internal_call(
            Actor::Internal,
            "GET /metrics",
            refused.code().as_str(),
            &ctx,
        );
        if let Err(e) = crate::ratelimit::record_refusal(state, &e).await {
            tracing::warn!(error = %e, "could not record a refused scrape");
        }
    }
    outcome
}

/// Checks network and key for an internal call to `route`; records the call either way.
pub async fn guard(req: &HttpRequest, state: &AppState, route: &str) -> Result<(), ApiError> {
    guard_with(req, state, route, Credential::InternalKey).await
}

/// [`guard`] for a given credential.
pub async fn guard_with(
    req: &HttpRequest,
    state: &AppState,
    route: &str,
    credential: Credential,
) -> Result<(), ApiError> {
    let outcome = check(req, state, credential);
    let actor = match credential {
        Credential::InternalKey => Actor::Internal,
        Credential::RunnerToken => Actor::Runner,
    };
    let said = outcome
        .as_ref()
        .map(|_| "allowed")
        .unwrap_or_else(|e| e.code().as_str());
    let e = AuditEvent::internal_call(actor, route, said, &audit_context(req, state));
    if outcome.is_ok() {
        let client = state.db.get().await?;
        record(&*client, &e).await.map_err(ApiError::store)?;
    } else {
        // Refusals come from anyone who can reach the port: aggregated, not one row each.
        crate::ratelimit::record_refusal(state, &e).await?;
    }
    outcome
}

fn check(req: &HttpRequest, state: &AppState, credential: Credential) -> Result<(), ApiError> {
    let (keys, var, previous_var) = match credential {
        Credential::InternalKey => (
            &state.config.internal_api_key,
            "INTERNAL_API_KEY",
            "INTERNAL_API_KEY_PREVIOUS",
        ),
        Credential::RunnerToken => (
            &state.config.runner_token,
            "RUNNER_TOKEN",
            "RUNNER_TOKEN_PREVIOUS",
        ),
    };
    let Some(current) = &keys.current else {
        return Err(ApiError::new(
            ErrorCode::InternalNotConfigured,
            format!("this internal route is disabled until {var} is set"),
        ));
    };
    let ip = client_ip(req, &state.config);
    if !ip.is_some_and(|ip| {
        state
            .config
            .internal_allowed_cidrs
            .iter()
            .any(|n| n.contains(&ip))
    }) {
        return Err(ApiError::new(
            ErrorCode::NetworkNotAllowed,
            "this network may not call internal routes",
        ));
    }
    let bearer = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
    let presented: &[u8] = match credential {
        // Stagers send X-Internal-Key; Prometheus sends `Authorization: Bearer`.
        Credential::InternalKey => req
            .headers()
            .get("x-internal-key")
            .map(|v| v.as_bytes())
            .or(bearer)
            .unwrap_or_default(),
        Credential::RunnerToken => bearer.unwrap_or_default(),
    };
    if same(presented, current.expose_secret().as_bytes()) {
        return Ok(());
    }
    if let Some(previous) = &keys.previous {
        if same(presented, previous.expose_secret().as_bytes()) {
            state.metrics.previous_secret_used(previous_var);
            return Ok(());
        }
    }
    Err(ApiError::new(
        ErrorCode::InvalidInternalKey,
        format!("missing or wrong {var}"),
    ))
}
