//! Every limit the service enforces, declared once. The rate limits are data: the application
//! enforces them (state in PostgreSQL, shared by every process) and `cargo xtask cloudflare`
//! exports the same table to the edge. The waits and caps below bound what one client or one
//! database outage can hold; each says why it is the number it is.

use std::time::Duration;

/// What a limit counts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKey {
    /// The email address in the request body.
    Email,
    /// The client address (after trusted-proxy resolution).
    Ip,
    /// The organization the request acts for.
    Org,
    /// The share token in the path (its digest once parsed, so spellings of one token count
    /// together).
    Token,
    /// The signed-in user making the request.
    User,
}

impl LimitKey {
    /// A short name for headers and docs.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitKey::Email => "email",
            LimitKey::Ip => "ip",
            LimitKey::Org => "org",
            LimitKey::Token => "token",
            LimitKey::User => "user",
        }
    }
}

/// One limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Stable id, also the name in `RateLimit-Policy` and in `RATE_LIMITS` overrides.
    pub id: &'static str,
    /// HTTP method (`*`: any).
    pub method: &'static str,
    /// Route pattern as the API declares it (a final `/*`: every route under the prefix).
    pub route: &'static str,
    /// What is counted.
    pub key: LimitKey,
    /// Requests allowed per window.
    pub limit: u32,
    /// Window length.
    pub window: Duration,
}

const TEN_MINUTES: Duration = Duration::from_secs(600);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

/// The seed's limits (DESIGN §4).
pub static RATE_LIMITS: &[RateLimit] = &[
    RateLimit {
        id: "auth-request-email",
        method: "POST",
        route: "/auth/request",
        key: LimitKey::Email,
        limit: 5,
        window: TEN_MINUTES,
    },
    RateLimit {
        id: "auth-request-ip",
        method: "POST",
        route: "/auth/request",
        key: LimitKey::Ip,
        limit: 20,
        window: TEN_MINUTES,
    },
    // The sign-in and invite pages' button (`POST /auth/callback`) uses the same code and counts
    // against these same buckets: a second door to a token guess, not a second allowance.
    RateLimit {
        id: "auth-verify-ip",
        method: "POST",
        route: "/auth/verify",
        key: LimitKey::Ip,
        limit: 20,
        window: TEN_MINUTES,
    },
    RateLimit {
        id: "auth-accept-invite-ip",
        method: "POST",
        route: "/auth/accept-invite",
        key: LimitKey::Ip,
        limit: 20,
        window: TEN_MINUTES,
    },
    // One free account must not be able to mint organizations (each with its own quota and
    // limits) or mail-bomb addresses through invites.
    RateLimit {
        id: "org-create-user",
        method: "POST",
        route: "/orgs",
        key: LimitKey::User,
        limit: 10,
        window: DAY,
    },
    RateLimit {
        id: "invite-create-org",
        method: "POST",
        route: "/orgs/{org}/invites",
        key: LimitKey::Org,
        limit: 100,
        window: DAY,
    },
    RateLimit {
        id: "invite-create-email",
        method: "POST",
        route: "/orgs/{org}/invites",
        key: LimitKey::Email,
        limit: 5,
        window: DAY,
    },
    // Single sign-on: each start and callback makes requests to an identity provider.
    RateLimit {
        id: "sso-start-ip",
        method: "POST",
        route: "/auth/sso/start",
        key: LimitKey::Ip,
        limit: 20,
        window: TEN_MINUTES,
    },
    RateLimit {
        id: "sso-callback-ip",
        method: "GET",
        route: "/auth/sso/callback",
        key: LimitKey::Ip,
        limit: 20,
        window: TEN_MINUTES,
    },
    // SCIM: every request, before its token is looked up (bounds what a caller without a
    // token can make us do), then per organization once authenticated. An identity provider's
    // first push of a large directory is thousands of requests; ten a second sustained is
    // more than Okta or Entra send.
    RateLimit {
        id: "scim-ip",
        method: "*",
        route: "/scim/v2/{org}/*",
        key: LimitKey::Ip,
        limit: 6000,
        window: TEN_MINUTES,
    },
    RateLimit {
        id: "scim-org",
        method: "*",
        route: "/scim/v2/{org}/*",
        key: LimitKey::Org,
        limit: 6000,
        window: TEN_MINUTES,
    },
    // Each verification is an outbound DNS lookup an owner can trigger; a domain needs a few.
    RateLimit {
        id: "domain-verify-org",
        method: "POST",
        route: "/orgs/{org}/domains/{domain}/verify",
        key: LimitKey::Org,
        limit: 30,
        window: HOUR,
    },
    RateLimit {
        id: "dataset-grant-org",
        method: "POST",
        route: "/datasets/catalog/{slug}/download",
        key: LimitKey::Org,
        limit: 60,
        window: HOUR,
    },
    RateLimit {
        id: "dataset-grant-ip",
        method: "POST",
        route: "/datasets/catalog/{slug}/download",
        key: LimitKey::Ip,
        limit: 60,
        window: HOUR,
    },
    RateLimit {
        id: "share-download-token",
        method: "GET",
        route: "/share/{token}/download",
        key: LimitKey::Token,
        limit: 120,
        window: HOUR,
    },
    RateLimit {
        id: "share-download-ip",
        method: "GET",
        route: "/share/{token}/download",
        key: LimitKey::Ip,
        limit: 120,
        window: HOUR,
    },
    // Proofs are small and cheap but public and signed on every request: an address that
    // walks many tokens or hammers one is slowed down; a verifier checks a few a day.
    RateLimit {
        id: "share-view-ip",
        method: "GET",
        route: "/share/{token}",
        key: LimitKey::Ip,
        limit: 600,
        window: HOUR,
    },
    RateLimit {
        id: "share-view-token",
        method: "GET",
        route: "/share/{token}",
        key: LimitKey::Token,
        limit: 600,
        window: HOUR,
    },
    RateLimit {
        id: "share-proof-ip",
        method: "GET",
        route: "/share/{token}/proof",
        key: LimitKey::Ip,
        limit: 600,
        window: HOUR,
    },
    RateLimit {
        id: "share-proof-token",
        method: "GET",
        route: "/share/{token}/proof",
        key: LimitKey::Token,
        limit: 600,
        window: HOUR,
    },
    RateLimit {
        id: "share-consistency-ip",
        method: "GET",
        route: "/share/{token}/consistency",
        key: LimitKey::Ip,
        limit: 600,
        window: HOUR,
    },
    RateLimit {
        id: "share-consistency-token",
        method: "GET",
        route: "/share/{token}/consistency",
        key: LimitKey::Token,
        limit: 600,
        window: HOUR,
    },
];

/// The limits in force: the declared table with `RATE_LIMITS` overrides applied
/// (`id=limit/window`, comma-separated, e.g. `auth-request-email=10/10m`).
pub fn effective(overrides: &str) -> Result<Vec<RateLimit>, String> {
    let mut out = RATE_LIMITS.to_vec();
    for item in overrides
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let (id, spec) = item
            .split_once('=')
            .ok_or_else(|| format!("{item:?} is not id=limit/window"))?;
        let (limit, window) = spec
            .split_once('/')
            .ok_or_else(|| format!("{item:?} is not id=limit/window"))?;
        let rule = out
            .iter_mut()
            .find(|r| r.id == id.trim())
            .ok_or_else(|| format!("unknown rate limit {:?}", id.trim()))?;
        rule.limit = limit
            .trim()
            .parse()
            .map_err(|_| format!("{item:?}: the limit is not a whole number"))?;
        rule.window =
            humantime::parse_duration(window.trim()).map_err(|e| format!("{item:?}: {e}"))?;
        if rule.window.as_secs() == 0 {
            return Err(format!("{item:?}: the window must be at least one second"));
        }
    }
    Ok(out)
}

/// How long a request waits for a pooled database connection before it is answered
/// `503 database_unavailable` with `Retry-After`. A request needs a connection for a few
/// milliseconds; two seconds of queueing means the pool is saturated or PostgreSQL is away, and a
/// prompt 503 lets clients back off instead of piling up.
pub const DB_POOL_WAIT: Duration = Duration::from_secs(2);
/// Pool connections the server shares among concurrent read-only statements of hot routes
/// (`GET /me`, receipt lists and reads), which tokio-postgres pipelines; at most a
/// quarter of the pool.
pub const DB_SHARED_READERS: usize = 2;
/// Rate-limited requests one statement counts at most: the checks that arrive while a count is
/// in flight are counted together by the next (one write transaction per batch, not per
/// request; the counts stay exact and shared by every process).
pub const RATE_COUNT_BATCH: usize = 256;
/// Share-link reads one statement answers at most: the reads that arrive while one is in flight
/// are looked up together by the next (`token_hash = ANY($1)`, each distinct token once), so a
/// busy public link costs PostgreSQL one statement per batch rather than per request. Nothing is
/// cached: a revoked link is refused by the next statement. Members' proofs against the
/// current tree are batched the same way, by (organization, receipt id).
pub const SHARE_READ_BATCH: usize = 256;
/// Signed checkpoints the server keeps for reuse, by organization and tree size: every proof,
/// share page, consistency proof and checkpoint served against one tree reuses one Ed25519
/// signature. A kept note is reused only for the root it was signed over; the least used go
/// first. A few hundred bytes each, so this bounds the cache under 2 MiB.
pub const CHECKPOINT_CACHE: u64 = 4_096;
/// How long opening a new database connection (TCP, TLS, startup) may take. On loopback or a
/// LAN it takes milliseconds; three seconds covers a TLS handshake across regions.
pub const DB_CONNECT: Duration = Duration::from_secs(3);
/// `statement_timeout` of the server's connections: the longest statement a request runs is a
/// page of the export or a tree integration chunk (well under a second at our sizes); fifteen
/// seconds stops a runaway query without cutting legitimate work.
pub const DB_STATEMENT: Duration = Duration::from_secs(15);
/// `lock_timeout` of the server's connections: appends wait on an organization's head row,
/// held per batch for milliseconds; five seconds of waiting means something is wrong, and the
/// request is refused with 503 rather than queueing forever.
pub const DB_LOCK: Duration = Duration::from_secs(5);
/// The `Retry-After` (seconds) of a 503 caused by the database: a restart or failover takes a
/// few seconds.
pub const DB_RETRY_AFTER_SECS: u64 = 2;
/// Receipts per page of the ledger export: each page is one short transaction on a connection
/// that is returned before the page is written to the client.
pub const EXPORT_PAGE: i64 = 1_000;
/// How long the export waits for a slow reader to take the next line before it gives up (the
/// response then ends without its checkpoint line, which makes it fail verification).
pub const EXPORT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Exports one principal (a user or an API key) may run at once, across all processes: an
/// auditor needs one; a script that opens hundreds is refused with 429.
pub const EXPORTS_PER_PRINCIPAL: u32 = 2;
/// How long an export lease lives without a heartbeat: a process killed mid-export frees its
/// slots after this long.
pub const EXPORT_LEASE: Duration = Duration::from_secs(120);

/// Domains one organization may claim (verified or not): enough for every brand and subsidiary
/// of an enterprise, few enough that no one squats a registry's worth of names.
pub const SSO_DOMAINS_PER_ORG: i64 = 50;
/// Identity-provider connections per organization: one per IdP an enterprise runs, with room for
/// a migration between two.
pub const SSO_CONNECTIONS_PER_ORG: i64 = 10;
/// IdP groups one connection maps to roles.
pub const SSO_GROUP_MAPPINGS: usize = 100;
/// One DNS lookup for a domain verification, all attempts included.
pub const DNS_LOOKUP: Duration = Duration::from_secs(5);
/// One request to an identity provider (discovery, keys, token exchange).
pub const SSO_PROVIDER_REQUEST: Duration = Duration::from_secs(10);
/// The most one answer of an identity provider (discovery, keys, token response) may hold; read
/// as a stream and refused at the chunk that crosses it, or on its `Content-Length`.
pub const SSO_PROVIDER_BODY: usize = 512 * 1024;
/// How often a verified domain's TXT challenge is looked up again.
pub const SSO_DOMAIN_RECHECK_EVERY: Duration = Duration::from_secs(24 * 3600);
/// How long the challenge must have been missing, in consecutive authoritative answers with the
/// owners warned, before the domain is unverified.
pub const SSO_DOMAIN_UNVERIFY_AFTER: Duration = Duration::from_secs(3 * 24 * 3600);
/// Domains one re-check round claims at most (the next round, an hour later, takes the rest).
pub const SSO_DOMAIN_RECHECK_ROUND: i64 = 500;
/// How often each process tries to claim a re-check round.
pub const SSO_DOMAIN_RECHECK_TICK: Duration = Duration::from_secs(3600);
/// How long a started single sign-on may take before its callback is refused.
pub const SSO_LOGIN_TTL: Duration = Duration::from_secs(600);
/// How long an expired single sign-on in progress is kept before the pruner deletes it.
pub const SSO_LOGIN_KEPT: Duration = Duration::from_secs(3600);
/// Break-glass owners per organization: enough to survive one owner's absence, few enough that
/// bypassing single sign-on stays an exception.
pub const SSO_BREAK_GLASS_OWNERS: i64 = 2;
/// SCIM list pages: resources per page unless `count` asks otherwise, and the most a page holds.
/// A hundred answers an identity provider's reconciliation in few requests; a thousand bounds
/// what one request reads.
pub const SCIM_PAGE_DEFAULT: i64 = 100;
/// The most resources one SCIM list page holds (also `filter.maxResults`).
pub const SCIM_PAGE_MAX: i64 = 1_000;
/// Members one SCIM group may list in one request; larger directories send PATCH operations.
pub const SCIM_GROUP_MEMBERS: usize = 10_000;
/// Email addresses one SCIM user may carry.
pub const SCIM_EMAILS: usize = 10;
/// Operations in one SCIM PATCH.
pub const SCIM_PATCH_OPERATIONS: usize = 100;
