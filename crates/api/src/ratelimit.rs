//! Enforcement of the declared rate limits (`defendable_config::limits`). Counts live in
//! PostgreSQL so every server process shares them; a process counts concurrent checks together,
//! one statement per batch. A refused request gets 429 with `Retry-After` and the IETF draft's
//! `RateLimit-Policy` / `RateLimit` headers; allowed requests carry `RateLimit` too (the edge
//! middleware adds it).

use actix_web::{HttpMessage, HttpRequest};
use defendable_config::limits::LimitKey;
use defendable_store::audit::{self, AuditEvent};
use defendable_store::ratelimit::{self, Bucket};

use crate::error::{ApiError, ErrorCode};
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

/// The value a limit counts by, in one spelling per client: an IPv6 client by its /64 (one
/// subscriber's allocation, which it can rotate addresses within), an email lowercased, a share
/// token by its digest once it parses (so padding or case tricks do not open new buckets; every
/// malformed token shares one bucket).
pub fn normalize(key: LimitKey, value: &str) -> String {
    match key {
        LimitKey::Ip => match value.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => v4.to_string(),
                None => {
                    let net = u128::from(v6) & (u128::MAX << 64);
                    format!("{}/64", std::net::Ipv6Addr::from(net))
                }
            },
            Ok(v4) => v4.to_string(),
            Err(_) => value.to_owned(),
        },
        LimitKey::Email => value.trim().to_ascii_lowercase(),
        LimitKey::Token => match defendable_ledger::ShareToken::parse(value) {
            Some(token) => hex::encode(token.hash()),
            None => "malformed".to_owned(),
        },
        LimitKey::Org | LimitKey::User => value.to_owned(),
    }
}

/// Counts this request against every limit of `method route` for which `key` yields a value,
/// refusing it when any is exceeded. The count goes through the process's batching counter
/// ([`AppState::rate_counter`]), so the request must not hold a connection meanwhile (it holds
/// its connection slot instead, see [`crate::db`]).
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
        .filter_map(|r| key(r.key).map(|v| (r, normalize(r.key, &v))))
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
        let _slot = state.db.slot()?;
        state
            .rate_counter
            .hit(buckets)
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
            ErrorCode::RateLimited,
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

/// Records a refusal of anonymous or machine traffic (an unknown share link, a bad webhook
/// signature, a refused internal call) aggregated per source and minute: counted in
/// `refusal_counts` and in `defendable_refusals_total`, audited once per source per minute.
pub async fn record_refusal(state: &AppState, event: &AuditEvent) -> Result<(), ApiError> {
    let client_key = event
        .context
        .ip
        .map(|ip| normalize(LimitKey::Ip, &ip.to_string()))
        .unwrap_or_else(|| "unknown".to_owned());
    let source = format!("{}:{client_key}", event.action.as_str());
    state.metrics.refused(event.action.as_str());
    let client = state.db.get().await?;
    audit::record_refusal(&*client, event, &source)
        .await
        .map_err(ApiError::store)?;
    Ok(())
}

/// Prunes old counters every few minutes, on every process (cheap and idempotent). Counters are
/// kept for twice the longest window in force; refusal counts for a day; expired single
/// sign-ons in progress for an hour.
pub fn spawn_pruner(pool: deadpool_postgres::Pool, longest_window: std::time::Duration) {
    let keep = (longest_window.as_secs() as i64).max(3600) * 2;
    actix_web::rt::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(300));
        loop {
            tick.tick().await;
            if let Ok(client) = pool.get().await {
                if let Err(e) = ratelimit::prune(&client, keep).await {
                    tracing::warn!(error = %e, "could not prune rate-limit counters");
                }
                if let Err(e) = audit::prune_refusals(&client, 86_400).await {
                    tracing::warn!(error = %e, "could not prune refusal counts");
                }
                if let Err(e) =
                    defendable_sso::login::prune(&client, defendable_config::limits::SSO_LOGIN_KEPT)
                        .await
                {
                    tracing::warn!(error = %e, "could not prune single sign-ons in progress");
                }
            }
        }
    });
}
