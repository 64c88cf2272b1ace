//! The outermost middleware, applied to every response (errors and 404s included): request id,
//! security headers, `Cache-Control` for authenticated requests, problem+json for bare error
//! statuses, and one structured access-log line.

use std::time::Instant;

use tracing::Instrument as _;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage};

use crate::error::{code_for_status, problem_response, ErrorCode, PROBLEM_JSON};
use crate::AppState;

/// The request's id, available to handlers through request extensions.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// The header carrying the request id both ways.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Accepts a client-supplied request id only when it is short and plain, so it is safe to log
/// and echo; anything else is replaced by a fresh UUID.
fn sane_request_id(v: &HeaderValue) -> Option<String> {
    let s = v.to_str().ok()?;
    let ok = !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    ok.then(|| s.to_owned())
}

/// The trace id of a W3C `traceparent` header (`00-<32 hex>-<16 hex>-<2 hex>`), when it is
/// well-formed and not all zeros.
pub fn trace_id(v: &HeaderValue) -> Option<String> {
    let s = v.to_str().ok()?;
    let mut parts = s.split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |p: &str, n: usize| {
        p.len() == n
            && p.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let ok = version == "00"
        && parts.next().is_none()
        && hex(trace, 32)
        && hex(parent, 16)
        && hex(flags, 2)
        && trace.bytes().any(|b| b != b'0')
        && parent.bytes().any(|b| b != b'0');
    ok.then(|| trace.to_owned())
}

/// Whether the request carries credentials, so its response must never be cached.
fn is_authenticated(req: &ServiceRequest) -> bool {
    let h = req.headers();
    h.contains_key(header::AUTHORIZATION)
        || h.contains_key("x-internal-key")
        || h.contains_key(header::COOKIE)
        || req.path().starts_with("/share/")
        || req.path().starts_with("/auth/")
}

/// The middleware function; see the module docs.
pub async fn edge(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let request_id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(sane_request_id)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    req.extensions_mut().insert(RequestId(request_id.clone()));
    // Every line logged while the request is handled, the internal-error line a 500 points to
    // included, carries its request id.
    // A caller's W3C trace context is accepted: its trace id joins our lines to its trace.
    let trace = req
        .headers()
        .get(HeaderName::from_static("traceparent"))
        .and_then(trace_id);
    let span = match &trace {
        Some(trace_id) => {
            tracing::info_span!("request", request_id = %request_id, trace_id = %trace_id)
        }
        None => tracing::info_span!("request", request_id = %request_id),
    };
    if trace.is_some() {
        crate::telemetry::join_caller_trace(&span, req.headers());
    }
    respond(req, next, request_id).instrument(span).await
}

async fn respond(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
    request_id: String,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let started = Instant::now();
    let production = req
        .app_data::<web::Data<AppState>>()
        .is_some_and(|s| s.config.app_env.is_production());
    let no_store = is_authenticated(&req);
    let method = req.method().clone();

    // Handlers, extractors and CORS all answer errors as responses, so an `Err` here would be a
    // framework fault; it propagates and actix renders it.
    // The request runs in its own connection scope: at most one pooled connection at a time.
    let mut res = crate::db::scope(next.call(req))
        .await?
        .map_into_boxed_body();

    let status = res.status();
    let is_problem = res.headers().get(header::CONTENT_TYPE).is_some_and(|v| {
        v.as_bytes().starts_with(PROBLEM_JSON.as_bytes())
            || v.as_bytes().starts_with(b"text/html")
            // SCIM's routes answer RFC 7644 error bodies.
            || v.as_bytes().starts_with(b"application/scim+json")
    });
    // A page's error is a page (it was asked for by a browser), a SCIM error is SCIM's; every
    // other error is a problem.
    if status.as_u16() >= 400 && !is_problem {
        // A status produced by the framework itself (405, a CORS refusal, a bare 404) still
        // answers with a problem document, so clients parse one error shape.
        let detail = res.response().error().map(|e| e.to_string());
        let (req, old) = res.into_parts();
        let mut fresh = problem_response(status, code_for_status(status), detail, None);
        for (name, value) in old.headers() {
            if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
                fresh.headers_mut().insert(name.clone(), value.clone());
            }
        }
        res = ServiceResponse::new(req, fresh);
    }

    let route = res
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let headers = res.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if !headers.contains_key(header::REFERRER_POLICY) {
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("strict-origin-when-cross-origin"),
        );
    }
    headers.insert(
        HeaderName::from_static("permissions-policy"),
        HeaderValue::from_static("camera=(), microphone=(), geolocation=(), payment=()"),
    );
    if production {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
    }
    if no_store {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        headers.insert(REQUEST_ID, v);
    }
    let rate = res
        .request()
        .extensions()
        .get::<crate::ratelimit::RateLimitHeaders>()
        .cloned();
    if let Some(rate) = rate {
        let headers = res.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&rate.policy) {
            headers.insert(HeaderName::from_static("ratelimit-policy"), v);
        }
        if let Ok(v) = HeaderValue::from_str(&rate.limit) {
            headers.insert(HeaderName::from_static("ratelimit"), v);
        }
    }
    state_metrics(&res, &route, &method, status, started.elapsed());

    // Only the route pattern is logged, never the concrete path or query: both can carry tokens.
    tracing::info!(
        request_id = %request_id,
        method = %method,
        route = %route,
        status = status.as_u16(),
        latency_ms = started.elapsed().as_secs_f64() * 1000.0,
        "request"
    );
    Ok(res)
}

/// Maps a failure the framework raises outside handlers (path, query) to a problem.
pub fn path_error(err: actix_web::error::PathError) -> crate::error::ApiError {
    crate::error::ApiError::new(ErrorCode::NotFound, err.to_string())
}

/// Maps query-string parse failures to a 400 problem.
pub fn query_error(err: actix_web::error::QueryPayloadError) -> crate::error::ApiError {
    crate::error::ApiError::bad_request(format!("invalid query string: {err}"))
}

/// Counts the response in the process metrics (requests by route, method and status; latency).
fn state_metrics(
    res: &ServiceResponse<BoxBody>,
    route: &str,
    method: &actix_web::http::Method,
    status: actix_web::http::StatusCode,
    elapsed: std::time::Duration,
) {
    if let Some(state) = res.request().app_data::<web::Data<AppState>>() {
        state
            .metrics
            .response(route, method.as_str(), status.as_u16(), elapsed);
    }
}
