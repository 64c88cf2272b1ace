//! The declaration of every environment variable Defendable reads: the one place a name is spelled.

/// What kind of value a variable holds; drives parsing and the generated docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Free text.
    Text,
    /// One of a fixed set of words.
    OneOf(&'static [&'static str]),
    /// An absolute URL.
    Url,
    /// A comma-separated list of absolute URLs (origins).
    UrlList,
    /// A non-negative integer.
    Integer,
    /// A duration such as `15m`, `12h`, `7d` or `900s`.
    Duration,
    /// `host:port`.
    SocketAddr,
    /// A filesystem path.
    Path,
    /// A comma-separated list of CIDR blocks or addresses.
    Cidrs,
    /// A secret string: never printed, only fingerprinted.
    Secret,
}

impl Kind {
    /// A short human name for docs.
    pub fn describe(self) -> &'static str {
        match self {
            Kind::Text => "text",
            Kind::OneOf(_) => "one of",
            Kind::Url => "URL",
            Kind::UrlList => "comma-separated URLs",
            Kind::Integer => "integer",
            Kind::Duration => "duration",
            Kind::SocketAddr => "host:port",
            Kind::Path => "path",
            Kind::Cidrs => "comma-separated CIDRs",
            Kind::Secret => "secret",
        }
    }
}

/// One declared environment variable.
#[derive(Debug, Clone, Copy)]
pub struct Var {
    /// The variable's name, exactly as operators set it.
    pub name: &'static str,
    /// Its type.
    pub kind: Kind,
    /// The value used when it is unset (in development, and in production unless the rule forbids it).
    pub default: Option<&'static str>,
    /// A critical secret is rotated with an overlap window and compared against the others.
    pub critical: bool,
    /// What it is for.
    pub description: &'static str,
    /// What production requires of it; empty when production has no extra rule.
    pub production: &'static str,
}

impl Var {
    /// Whether the value must never be printed.
    pub fn is_secret(&self) -> bool {
        matches!(self.kind, Kind::Secret)
    }
}

macro_rules! var {
    ($name:literal, $kind:expr, $default:expr, $critical:expr, $desc:literal, $prod:literal) => {
        Var {
            name: $name,
            kind: $kind,
            default: $default,
            critical: $critical,
            description: $desc,
            production: $prod,
        }
    };
}

/// Every environment variable, in the order the docs list them.
pub static VARS: &[Var] = &[
    var!("APP_ENV", Kind::OneOf(&["development", "dev", "production", "prod"]), Some("development"), false,
        "Deployment mode. Production refuses to boot while any production rule fails; development only warns.",
        ""),
    var!("BIND_ADDR", Kind::SocketAddr, Some("127.0.0.1:8080"), false,
        "Address the HTTP server listens on, unless the process that starts it hands a listening socket down (`LISTEN_FDS=1`, the socket as descriptor 3: systemd socket activation; the release drill does it).", ""),
    var!("DATA_DIR", Kind::Path, Some("./.defendable"), false,
        "Development state: the private PostgreSQL cluster (`pg/`), local objects (`objects/`), generated development secrets and the mail outbox (`outbox/`, one `.eml` file per message).",
        ""),
    var!("DATABASE_URL", Kind::Secret, None, false,
        "PostgreSQL connection URL. `sslmode=prefer` (the default) tries TLS and falls back, `sslmode=require` insists; server certificates are checked against the system trust store. Unset in development: a private cluster is started under `DATA_DIR/pg` from the system's PostgreSQL binaries.",
        "Required: production never starts an embedded cluster. A database on another host needs `sslmode=require`, `verify-ca` or `verify-full` (an unset mode, `prefer`, `allow` and `disable` can fall back to plaintext)."),
    var!("DATABASE_POOL_SIZE", Kind::Integer, Some("16"), false,
        "Maximum connections in the server's PostgreSQL pool.", ""),
    var!("TEST_DATABASE_URL", Kind::Secret, None, false,
        "Tests only: a PostgreSQL server on which the test harness creates one fresh database per test. Unset: the harness starts its own cluster.",
        ""),
    var!("OBJECT_STORE_URL", Kind::Url, None, false,
        "Object storage: `file:///absolute/path` or `s3://bucket` (with the usual `AWS_*` variables and `AWS_ENDPOINT_URL`). Unset: `DATA_DIR/objects` on the local filesystem.",
        ""),
    var!("APP_BASE_URL", Kind::Url, None, false,
        "Base URL where mailed sign-in and invite links land (`/auth/callback`, `/auth/accept-invite`): a web app, or this API, which serves both pages. Unset in development: API_BASE_URL (the API's own pages).",
        "Must be set and https://."),
    var!("API_BASE_URL", Kind::Url, None, false,
        "Public base URL of this API, used in share and download links. Unset in development: `http://BIND_ADDR`.",
        "Must be set and https://."),
    var!("CORS_ORIGINS", Kind::UrlList, None, false,
        "Comma-separated origins allowed to call the API from a browser. Unset in development: the origin of APP_BASE_URL.",
        "Must be set, explicit, and must not contain `*`."),
    var!("JSON_BODY_LIMIT", Kind::Integer, Some("65536"), false,
        "Largest JSON request body in bytes; larger bodies get 413.", ""),
    var!("LOG_FORMAT", Kind::OneOf(&["json", "pretty"]), Some("json"), false,
        "Log line format on standard error.", ""),
    var!("RUST_LOG", Kind::Text, Some("info"), false,
        "Log filter in tracing's `EnvFilter` syntax.", ""),
    var!("OTEL_EXPORTER_OTLP_ENDPOINT", Kind::Url, None, false,
        "OpenTelemetry collector base URL (OTLP over HTTP with protobuf, e.g. `http://collector:4318`); request spans go to `/v1/traces`, joined to a caller's W3C `traceparent`. Unset: no export.",
        ""),
    var!("JWT_SECRET", Kind::Secret, None, true,
        "HMAC key for session access tokens (HS256). Unset in development: generated once and kept in `DATA_DIR/dev-secrets/`.",
        "Required: at least 32 bytes, not a placeholder, not low-entropy, not equal to another secret."),
    var!("JWT_SECRET_PREVIOUS", Kind::Secret, None, true,
        "The previous JWT_SECRET during a rotation: still accepted for verification, never used to sign.",
        "When set: at least 32 bytes, not a placeholder, not low-entropy."),
    var!("JWT_TTL", Kind::Duration, Some("12h"), false,
        "Lifetime of a session access token.", ""),
    var!("MAGIC_LINK_TTL", Kind::Duration, Some("15m"), false,
        "Lifetime of a magic sign-in link.", ""),
    var!("INVITE_TTL", Kind::Duration, Some("7d"), false,
        "Lifetime of an organization invite (1 to 30 days).", ""),
    var!("SMTP_URL", Kind::Secret, None, false,
        "SMTP relay, e.g. `smtps://user:pass@smtp.example.com:465`. Unset in development: mail goes to `DATA_DIR/outbox/` and the log.",
        "SMTP_URL or RESEND_API_KEY is required."),
    var!("RESEND_API_KEY", Kind::Secret, None, true,
        "Resend API key, used as the SMTP password for Resend's relay.",
        "SMTP_URL or RESEND_API_KEY is required."),
    var!("DEV_LOG_MAIL_LINKS", Kind::OneOf(&["true", "false"]), Some("true"), false,
        "Development only: also write each mailed sign-in or invite link to the log. Production never logs links, whatever this says.",
        ""),
    var!("EMAIL_FROM", Kind::Text, Some("Defendable <no-reply@localhost>"), false,
        "Sender of every message.", ""),
    var!("INTERNAL_API_KEY", Kind::Secret, None, true,
        "Key for `/internal/*` (header `X-Internal-Key`). Unset in development: the internal routes answer 503.",
        "Required: at least 32 bytes, not a placeholder, not low-entropy, not equal to another secret."),
    var!("INTERNAL_API_KEY_PREVIOUS", Kind::Secret, None, true,
        "The previous INTERNAL_API_KEY during a rotation.", "When set: at least 32 bytes, not a placeholder, not low-entropy."),
    var!("INTERNAL_ALLOWED_CIDRS", Kind::Cidrs, Some("127.0.0.0/8,::1/128"), false,
        "Networks allowed to reach `/internal/*` and `/metrics`.", ""),
    var!("RUNNER_TOKEN", Kind::Secret, None, true,
        "Bearer token for runner routes under `/internal/`.", "When set: at least 32 bytes, not a placeholder, not low-entropy."),
    var!("RUNNER_TOKEN_PREVIOUS", Kind::Secret, None, true,
        "The previous RUNNER_TOKEN during a rotation.", "When set: at least 32 bytes, not a placeholder, not low-entropy."),
    var!("RUNNER_ORGS", Kind::Text, None, false,
        "Organizations (comma-separated slugs or ids) the runner token may record receipts into. Unset: none; the runner route answers 403 `runner_org_not_allowed`.",
        ""),
    var!("STRIPE_WEBHOOK_SECRET", Kind::Secret, None, true,
        "Stripe webhook signing secret (`whsec_…`). Unset: the webhook answers 503.", "When set: at least 32 bytes, not a placeholder, not low-entropy."),
    var!("STRIPE_WEBHOOK_SECRET_PREVIOUS", Kind::Secret, None, true,
        "The previous STRIPE_WEBHOOK_SECRET during a rotation.", "When set: at least 32 bytes, not a placeholder, not low-entropy."),
    var!("RATE_LIMITS", Kind::Text, None, false,
        "Overrides of the declared rate limits, comma-separated `id=limit/window` (e.g. `auth-request-email=10/10m`). The ids and defaults are in docs/rate-limits.md.",
        ""),
    var!("TRUSTED_PROXIES", Kind::Cidrs, None, false,
        "Peers whose forwarding header (CLIENT_IP_HEADER) is believed. Unset: none; the peer address is the client.",
        ""),
    var!("CLIENT_IP_HEADER", Kind::OneOf(&["x-forwarded-for", "cf-connecting-ip"]), Some("x-forwarded-for"), false,
        "The header of a TRUSTED_PROXIES peer that names the client: `x-forwarded-for` (walked from the nearest hop; `CF-Connecting-IP` is ignored) or `cf-connecting-ip` (Cloudflare in front; `X-Forwarded-For` as the fallback). Any other client-supplied header is never believed.",
        ""),
    var!("DATASET_DOWNLOAD_DAILY_LIMIT", Kind::Integer, Some("100"), false,
        "Dataset download grants per organization per UTC day, unless the organization has its own limit.",
        "Must be set explicitly and at least 1."),
    var!("OBJECT_URL_SIGNING_KEY", Kind::Secret, None, true,
        "HMAC key that signs the API's own object URLs (`/objects/…`, local-filesystem storage). Unset in development: generated once and kept in `DATA_DIR/dev-secrets/`.",
        "Required: at least 32 bytes, not a placeholder, not low-entropy, not equal to another secret."),
    var!("OBJECT_URL_SIGNING_KEY_PREVIOUS", Kind::Secret, None, true,
        "The previous OBJECT_URL_SIGNING_KEY during a rotation: links it signed keep working until they expire.", "When set: at least 32 bytes, not a placeholder, not low-entropy."),
    var!("SSO_SECRET_KEY", Kind::Secret, None, true,
        "Seals SSO connections' client secrets at rest (AES-256-GCM, key derived with HKDF-SHA256). Unset in development: generated once and kept in `DATA_DIR/dev-secrets/`. Unset in production: creating or changing a connection answers 503 `sso_unavailable`.",
        "When set: at least 32 bytes, not a placeholder, not low-entropy, not equal to another secret."),
    var!("SSO_SECRET_KEY_PREVIOUS", Kind::Secret, None, true,
        "The previous SSO_SECRET_KEY during a rotation: secrets it sealed still open, and each connection change re-seals under the current key.", "When set: at least 32 bytes, not a placeholder, not low-entropy."),
    var!("SSO_SESSION_TTL", Kind::Duration, Some("8h"), false,
        "The longest session a single sign-on starts (at most JWT_TTL applies too): without SCIM, a user removed at the identity provider loses access at the next sign-in.", ""),
    var!("SSO_PROVIDER_ALLOWED_CIDRS", Kind::Cidrs, None, false,
        "Non-public networks the server may reach identity providers on (an on-premises provider's address), as comma-separated CIDRs. Unset: in production only public addresses; loopback, private, link-local, unique-local, CGNAT, IPv4-mapped and metadata addresses are refused, checked on the addresses the client connects to. Development reaches every address.",
        ""),
    var!("DNS_RESOLVER", Kind::Text, None, false,
        "The name server that domain verification asks for TXT records: `ip` or `ip:port`. Unset: the system's resolver (`/etc/resolv.conf`).",
        ""),
    var!("DOWNLOAD_URL_TTL", Kind::Duration, Some("15m"), false,
        "Lifetime of a signed object URL minted for a download.", ""),
    var!("LEDGER_SIGNING_KEY", Kind::Secret, None, true,
        "Ed25519 key (PKCS#8 document, base64url) that signs ledger checkpoints. Unset in development: generated once and kept in `DATA_DIR/dev-secrets/`.",
        "Required."),
    var!("LEDGER_SIGNING_KEYS_PREVIOUS", Kind::Text, None, false,
        "Comma-separated public keys (32 raw bytes, base64url) of earlier signing keys, still published at `/ledger/keys` after a rotation so old checkpoints keep verifying.",
        ""),
    var!("LEDGER_NAME", Kind::Text, Some("localhost-dev"), false,
        "The log operator's stable name, e.g. `ledger.example.com`: the key name of every signed checkpoint and the prefix of each organization's log origin `<LEDGER_NAME>/orgs/<org uuid>`. No spaces, no `+`; never changed once checkpoints are published (verifiers pin it).",
        "Must be set explicitly (the development default `localhost-dev` is refused)."),
    var!("SECURITY_CONTACT", Kind::Text, None, false,
        "The `Contact` of `/.well-known/security.txt` (RFC 9116): a `mailto:` or `https:` URI. Unset: `mailto:security@` and APP_BASE_URL's host.",
        ""),
    var!("BACKUP_RECIPIENT", Kind::Text, None, false,
        "age public key (`age1…`) that `cargo xtask backup` encrypts dumps to; the matching identity is never needed to back up. Unset in development: a key pair is generated once and kept in `DATA_DIR/dev-secrets/`.",
        ""),
    var!("BACKUP_IDENTITY_FILE", Kind::Path, None, false,
        "File holding the age identity (`AGE-SECRET-KEY-1…`) that `cargo xtask restore-drill` decrypts with. Keep it on the drill host only. Unset in development: the generated development identity.",
        ""),
    var!("BACKUP_SIGNING_KEY", Kind::Secret, None, true,
        "Ed25519 key (PKCS#8 document, base64url) that signs each backup's manifest (`manifest.json.note`, a C2SP signed note under the key name `defendable-backup`): the dump's digest, the counts and the chain heads. Its own key, never the ledger's. Unset in development: generated once and kept in `DATA_DIR/dev-secrets/`.",
        "Required by `cargo xtask backup` when APP_ENV=production."),
    var!("BACKUP_VKEY", Kind::Text, None, false,
        "The backup-signing vkey(s) a restore drill pins (comma-separated during a rotation: the old and the new); print one with `defendable-ops backup-vkey` where BACKUP_SIGNING_KEY is set. Unset in development: the generated key's. A drill refuses a manifest no pinned key signed.",
        "Required by `cargo xtask restore-drill` and `release-drill` when APP_ENV=production."),
    var!("OPERATOR_ORG", Kind::Text, None, false,
        "Slug or id of the organization whose chain records operations: `restore_drill`, `secret.rotation`, `release` and `release_drill` receipts. Required by `cargo xtask restore-drill`, `rotation-receipt`, `release-receipt` and `release-drill`.",
        ""),
    var!("RELEASE_SIGNING_KEY", Kind::Secret, None, true,
        "Ed25519 key (PKCS#8 document, base64url) that signs each release's SHA256SUMS as a C2SP signed note under the key name `defendable-release` (`cargo xtask release`); its vkey is published in docs/protocols/release.md and in every release directory. Never on a server. Unset in development: generated once and kept in `DATA_DIR/dev-secrets/`.",
        "Required by `cargo xtask release` when APP_ENV=production; the server never reads it."),
    var!("RELEASE_VKEY", Kind::Text, None, false,
        "The production release vkey(s) that `defendable-ops release-verify`, `release-receipt` and `release-drill` pin when no `--vkey` is given (comma-separated during a key rotation: the old and the new). Published in docs/protocols/release.md. A release directory's own `release.vkey` is never trusted: without a pinned key these commands refuse.",
        ""),
    var!("RELEASE_DRILL", Kind::OneOf(&["true", "false"]), Some("false"), false,
        "Set only by `cargo xtask release-drill` for the server it starts on loopback: waives the https:// rules of APP_BASE_URL and API_BASE_URL, and requires a LEDGER_NAME ending in `.invalid` so the drill's checkpoints can never pass for production ones.",
        "Refused unless LEDGER_NAME ends in `.invalid`."),
];

/// Looks a declared variable up by name.
pub fn find(name: &str) -> Option<&'static Var> {
    VARS.iter().find(|v| v.name == name)
}
