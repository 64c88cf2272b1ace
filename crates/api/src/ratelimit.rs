//! Enforcement of the declared rate limits (`defendable_config::limits`). Counts live in
//! PostgreSQL so every server process shares them; one statement per checked request. A refused
//! request gets 429 with `Retry-After` and the IETF draft's `RateLimit-Policy` / `RateLimit`
//! headers; allowed requests carry `RateLimit` too (the edge middleware adds it).

use actix_web::http::StatusCode;
use actix_web::{HttpMessage, HttpRequest};
use defendable_config::limits::LimitKey;
use defendable_store::ratelimit::{self, Bucket};

use crate::error::ApiError;
use crate::AppState;

/// Header values for the response, kept in request extensions for the edge middleware.
#[derive(Debug, Clone)]
pub struct RateLimitHeaders {
    /// `RateLimit-Policy`.
    pub policy: String,
    /// `RateLimit`.
    pub limit: String,
}

/// A digest of a key value: buckets never hold an email, an address or a token in clear.
fn digest(value: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, value.as_bytes());
    hex::encode(&d.as_ref()[..16])
}

/// Counts this request against every limit of `method route` for which `key` yields a value,
/// refusing it when any is exceeded.
pub async fn check(
    req: &HttpRequest,
    state: &AppState,
    method: &str,
    route: &str,
    key: impl Fn(LimitKey) -> Option<String>,
) -> Result<(), ApiError> {
    let rules: Vec<_> = state
        .config
        .rate_limits
        .iter()
        .filter(|r| r.method == method && r.route == route)
        .filter_map(|r| key(r.key).map(|v| (r, v)))
        .collect();
    if rules.is_empty() {
        return Ok(());
    }
    let buckets: Vec<Bucket> = rules
        .iter()
        .map(|(r, v)| Bucket {
            name: format!("{}:{}", r.id, digest(v)),
            window_secs: r.window.as_secs() as i64,
        })
        .collect();
    let counts = {
        let client = state.db.get().await?;
        ratelimit::hit(&*client, &buckets)
            .await
            .map_err(ApiError::store)?
    };
    let policy = rules
        .iter()
        .map(|(r, _)| format!("\"{}\";q={};w={}", r.id, r.limit, r.window.as_secs()))
        .collect::<Vec<_>>()
        .join(", ");
    let limit = rules
        .iter()
        .zip(&counts)
        .map(|((r, _), c)| {
            format!(
                "\"{}\";r={};t={}",
                r.id,
                (i64::from(r.limit) - c.hits).max(0),
                c.reset_secs
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let exceeded: Vec<_> = rules
        .iter()
        .zip(&counts)
        .filter(|((r, _), c)| c.hits > i64::from(r.limit))
        .collect();
    if let Some(retry) = exceeded.iter().map(|(_, c)| c.reset_secs).max() {
        for ((r, _), _) in &exceeded {
            state.metrics.rate_limited(r.id);
        }
        let ids: Vec<&str> = exceeded.iter().map(|((r, _), _)| r.id).collect();
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "too many requests ({}); retry after {retry} s",
                ids.join(", ")
            ),
        )
        .with_retry_after(retry as u64)
        .with_headers(vec![("ratelimit-policy", policy), ("ratelimit", limit)]));
    }
    req.extensions_mut()
        .insert(RateLimitHeaders { policy, limit });
    Ok(())
}

/// Prunes old counters every few minutes, on every process (cheap and idempotent).
pub fn spawn_pruner(pool: deadpool_postgres::Pool) {
    actix_web::rt::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(300));
        loop {
            tick.tick().await;
            if let Ok(client) = pool.get().await {
                // The longest declared window is an hour; keep two.
                if let Err(e) = ratelimit::prune(&client, 7200).await {
                    tracing::warn!(error = %e, "could not prune rate-limit counters");
                }
            }
        }
    });
}
