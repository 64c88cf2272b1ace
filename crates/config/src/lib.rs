//! Defendable's configuration: every environment variable declared once, parsed into a typed
//! [`Config`], checked by the production boot rules, and rendered as docs and a redacted inventory.
//!
//! The declaration lives in [`vars::VARS`]. Parsing reads each variable through [`Env::get`],
//! which refuses names that are not declared, so a variable cannot be read without being
//! documented.

mod checks;
pub mod cloudflare;
mod docs;
pub mod limits;
pub mod vars;

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use secrecy::{ExposeSecret, SecretString};
pub use url::Url;

pub use checks::{production_problems, strong_secret_problem};
pub use docs::{env_markdown, inventory, InventoryRow};
pub use vars::{Kind, Var, VARS};

/// Development or production; production turns every warning into a refusal to boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppEnv {
    /// Zero configuration: embedded PostgreSQL, local objects, mail to the outbox.
    Development,
    /// Explicit configuration, checked at boot.
    Production,
}

impl AppEnv {
    /// Whether this is production.
    pub fn is_production(self) -> bool {
        self == AppEnv::Production
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable lines.
    Pretty,
}

/// Which forwarding header of a trusted proxy names the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientIpHeader {
    /// `X-Forwarded-For`, walked from the nearest hop outwards.
    XForwardedFor,
    /// `CF-Connecting-IP` (Cloudflare in front), with `X-Forwarded-For` as the fallback.
    CfConnectingIp,
}

/// A secret that is currently in force, with its optional predecessor during a rotation.
#[derive(Debug, Clone, Default)]
pub struct Rotating {
    /// The secret in force.
    pub current: Option<SecretString>,
    /// The previous secret, accepted during the overlap window.
    pub previous: Option<SecretString>,
}

/// The typed configuration. Production fields are `Option`s with no invented default:
/// the boot checks decide whether their absence is allowed.
#[derive(Debug, Clone)]
pub struct Config {
    /// Deployment mode.
    pub app_env: AppEnv,
    /// Listen address.
    pub bind_addr: SocketAddr,
    /// Development state directory.
    pub data_dir: PathBuf,
    /// PostgreSQL URL; `None` means "start the embedded development cluster".
    pub database_url: Option<SecretString>,
    /// Maximum pool connections.
    pub database_pool_size: usize,
    /// Object store URL; `None` means `DATA_DIR/objects`.
    pub object_store_url: Option<Url>,
    /// Web app base URL (magic links, invites); `None` means this API's own pages (development
    /// only).
    pub app_base_url: Option<Url>,
    /// Public API base URL; `None` means derived from `bind_addr` (development only).
    pub api_base_url: Option<Url>,
    /// Allowed CORS origins; `None` means "the origin of APP_BASE_URL" (development only).
    pub cors_origins: Option<Vec<String>>,
    /// Largest JSON body in bytes.
    pub json_body_limit: usize,
    /// Log format.
    pub log_format: LogFormat,
    /// Log filter.
    pub log_filter: String,
    /// Where request spans are exported (OTLP/HTTP); `None`: nowhere.
    pub otlp_endpoint: Option<Url>,
    /// Session token key.
    pub jwt_secret: Rotating,
    /// Session token lifetime.
    pub jwt_ttl: Duration,
    /// Magic link lifetime.
    pub magic_link_ttl: Duration,
    /// Invite lifetime.
    pub invite_ttl: Duration,
    /// SMTP relay URL.
    pub smtp_url: Option<SecretString>,
    /// Resend API key.
    pub resend_api_key: Option<SecretString>,
    /// Sender address.
    pub email_from: String,
    /// Whether development mail also logs its link (never in production).
    pub dev_log_mail_links: bool,
    /// Internal API key.
    pub internal_api_key: Rotating,
    /// Networks allowed on /internal.
    pub internal_allowed_cidrs: Vec<IpNet>,
    /// Runner bearer token.
    pub runner_token: Rotating,
    /// Organizations (slugs or ids, lowercase) the runner token may record into; empty: none.
    pub runner_orgs: Vec<String>,
    /// Stripe webhook secret.
    pub stripe_webhook_secret: Rotating,
    /// Proxies whose forwarding headers are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// The forwarding header believed from those proxies.
    pub client_ip_header: ClientIpHeader,
    /// Default daily dataset grants per org; `None` when unset in production.
    pub dataset_download_daily_limit: Option<u64>,
    /// Signed object URL lifetime.
    pub download_url_ttl: Duration,
    /// Key for the API's own signed object URLs.
    pub object_url_signing_key: Rotating,
    /// Key that seals SSO client secrets.
    pub sso_secret_key: Rotating,
    /// The longest session a single sign-on starts.
    pub sso_session_ttl: Duration,
    /// Non-public networks identity providers may be reached on (on-premises providers).
    pub sso_provider_allowed_cidrs: Vec<IpNet>,
    /// The name server for domain verification (`ip[:port]`); `None`: the system's.
    pub dns_resolver: Option<String>,
    /// Ledger checkpoint signing key.
    pub ledger_signing_key: Option<SecretString>,
    /// Public keys of earlier signing keys (base64url), still published.
    pub ledger_signing_keys_previous: Vec<String>,
    /// The log operator's name (`LEDGER_NAME`); `None` in production when unset.
    pub ledger_name: Option<String>,
    /// The rate limits in force (the declared table with overrides).
    pub rate_limits: Vec<limits::RateLimit>,
    /// The security contact published in `/.well-known/security.txt`.
    pub security_contact: String,
    /// age recipient that backups are encrypted to.
    pub backup_recipient: Option<String>,
    /// File with the age identity restore drills decrypt with.
    pub backup_identity_file: Option<PathBuf>,
    /// Slug or id of the organization whose chain records operations.
    pub operator_org: Option<String>,
    /// Ed25519 key (PKCS#8, base64url) that signs backup manifests.
    pub backup_signing_key: Option<SecretString>,
    /// The backup-signing vkeys a drill pins (`BACKUP_VKEY`).
    pub backup_vkeys: Vec<String>,
    /// Ed25519 key (PKCS#8, base64url) that signs releases' SHA256SUMS.
    pub release_signing_key: Option<SecretString>,
    /// A release drill's server: production rules with the drill exception.
    pub release_drill: bool,
    /// The release vkeys the release commands pin when given none (`RELEASE_VKEY`).
    pub release_vkeys: Vec<String>,
}

/// One failed rule or unparsable value, with what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The variable concerned.
    pub var: &'static str,
    /// What is wrong. Never contains a secret value.
    pub message: String,
    /// How to fix it.
    pub fix: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} (fix: {})", self.var, self.message, self.fix)
    }
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Some values could not be parsed at all.
    #[error("invalid configuration:\n{}", list(.0))]
    Invalid(Vec<Problem>),
    /// Production rules failed; the server must not boot.
    #[error("refusing to boot in production; fix every item below:\n{}", list(.0))]
    ProductionRefused(Vec<Problem>),
}

impl ConfigError {
    /// Every problem the error carries.
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Invalid(p) | ConfigError::ProductionRefused(p) => p,
        }
    }
}

fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A source of environment values that only answers for declared names.
#[derive(Debug)]
pub struct Env {
    values: HashMap<String, String>,
    read: RefCell<BTreeSet<&'static str>>,
}

impl Env {
    /// The process environment.
    pub fn from_process() -> Self {
        Self::from_pairs(std::env::vars())
    }

    /// Any set of pairs (tests, inventories of another environment).
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Env {
            values: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            read: RefCell::new(BTreeSet::new()),
        }
    }

    /// The raw value of a declared variable; empty strings count as unset.
    ///
    /// # Panics
    /// When `name` is not declared in [`VARS`]: that is a programming error caught by tests.
    pub fn get(&self, name: &'static str) -> Option<&str> {
        assert!(vars::find(name).is_some(), "{name} is not declared in VARS");
        self.read.borrow_mut().insert(name);
        self.values
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// Names read so far (used by the test that every declared variable is parsed).
    pub fn names_read(&self) -> BTreeSet<&'static str> {
        self.read.borrow().clone()
    }
}

/// Collects parse problems while building a [`Config`].
struct Parser<'a> {
    env: &'a Env,
    problems: Vec<Problem>,
}

impl<'a> Parser<'a> {
    fn raw(&self, name: &'static str) -> Option<&'a str> {
        self.env.get(name)
    }

    fn or_default(&self, name: &'static str) -> Option<&'a str> {
        self.raw(name)
            .or_else(|| vars::find(name).and_then(|v| v.default))
    }

    fn fail(&mut self, var: &'static str, message: impl Into<String>, fix: impl Into<String>) {
        self.problems.push(Problem {
            var,
            message: message.into(),
            fix: fix.into(),
        });
    }

    fn parsed<T, E: fmt::Display>(
        &mut self,
        name: &'static str,
        parse: impl FnOnce(&str) -> Result<T, E>,
        fix: &str,
    ) -> Option<T> {
        let raw = self.or_default(name)?;
        match parse(raw) {
            Ok(v) => Some(v),
            Err(e) => {
                self.fail(name, format!("cannot parse {raw:?}: {e}"), fix);
                None
            }
        }
    }

    fn url(&mut self, name: &'static str) -> Option<Url> {
        self.parsed(
            name,
            |s| match Url::parse(s) {
                Ok(u) if u.cannot_be_a_base() => Err("not an absolute URL".to_string()),
                Ok(u) => Ok(u),
                Err(e) => Err(e.to_string()),
            },
            "give an absolute URL such as https://example.com",
        )
    }

    fn duration(&mut self, name: &'static str) -> Option<Duration> {
        self.parsed(
            name,
            |s| match s.parse::<u64>() {
                Ok(secs) => Ok(Duration::from_secs(secs)),
                Err(_) => humantime::parse_duration(s).map_err(|e| e.to_string()),
            },
            "give a duration such as 900s, 15m, 12h or 7d",
        )
    }

    fn integer(&mut self, name: &'static str) -> Option<u64> {
        self.parsed(
            name,
            |s| s.parse::<u64>(),
            "give a non-negative whole number",
        )
    }

    fn cidrs(&mut self, name: &'static str) -> Vec<IpNet> {
        self.parsed(
            name,
            |s| {
                s.split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(|p| {
                        p.parse::<IpNet>()
                            .or_else(|_| p.parse::<std::net::IpAddr>().map(IpNet::from))
                            .map_err(|_| format!("{p:?} is not a CIDR block or address"))
                    })
                    .collect::<Result<Vec<_>, _>>()
            },
            "give comma-separated CIDRs such as 10.0.0.0/8,::1/128",
        )
        .unwrap_or_default()
    }

    /// Comma-separated vkeys (several during a key rotation); unset: none.
    fn vkeys(&mut self, name: &'static str) -> Vec<String> {
        self.raw(name)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|k| !k.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    fn org_list(&mut self, name: &'static str) -> Vec<String> {
        self.parsed(
            name,
            |s| {
                s.split(',')
                    .map(|p| p.trim().to_ascii_lowercase())
                    .filter(|p| !p.is_empty())
                    .map(|p| {
                        if p.len() <= 64 && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                        {
                            Ok(p)
                        } else {
                            Err(format!("{p:?} is not an organization slug or id"))
                        }
                    })
                    .collect::<Result<Vec<_>, _>>()
            },
            "give comma-separated organization slugs or ids such as acme,3f0c…",
        )
        .unwrap_or_default()
    }

    fn secret(&mut self, name: &'static str) -> Option<SecretString> {
        // Secrets are never echoed, so they cannot fail to parse: any non-empty string is a value.
        self.raw(name).map(|s| SecretString::from(s.to_owned()))
    }

    fn rotating(&mut self, name: &'static str, previous: &'static str) -> Rotating {
        Rotating {
            current: self.secret(name),
            previous: self.secret(previous),
        }
    }
}

impl Config {
    /// Parses and checks the configuration. In production every failed rule refuses the boot;
    /// in development the same findings come back as warnings beside the config.
    pub fn load(env: &Env) -> Result<(Config, Vec<Problem>), ConfigError> {
        let config = Config::parse(env)?;
        let findings = production_problems(&config);
        if config.app_env.is_production() && !findings.is_empty() {
            return Err(ConfigError::ProductionRefused(findings));
        }
        Ok((config, findings))
    }

    /// Parses every declared variable, collecting every unparsable value at once.
    pub fn parse(env: &Env) -> Result<Config, ConfigError> {
        let mut p = Parser {
            env,
            problems: Vec::new(),
        };
        let app_env = match p.or_default("APP_ENV") {
            Some("production" | "prod") => AppEnv::Production,
            Some("development" | "dev") | None => AppEnv::Development,
            Some(other) => {
                p.fail(
                    "APP_ENV",
                    format!("unknown mode {other:?}"),
                    "set development or production",
                );
                AppEnv::Development
            }
        };
        let log_format = match p.or_default("LOG_FORMAT") {
            Some("pretty") => LogFormat::Pretty,
            Some("json") | None => LogFormat::Json,
            Some(other) => {
                p.fail(
                    "LOG_FORMAT",
                    format!("unknown format {other:?}"),
                    "set json or pretty",
                );
                LogFormat::Json
            }
        };
        let fallback_addr = SocketAddr::from(([127, 0, 0, 1], 8080));
        let bind_addr = p
            .parsed(
                "BIND_ADDR",
                |s| s.parse::<SocketAddr>(),
                "give host:port such as 127.0.0.1:8080",
            )
            .unwrap_or(fallback_addr);
        let cors_origins = p.raw("CORS_ORIGINS").map(|s| {
            s.split(',')
                .map(|o| o.trim().trim_end_matches('/').to_owned())
                .filter(|o| !o.is_empty())
                .collect::<Vec<_>>()
        });
        let mut cfg = Config {
            app_env,
            bind_addr,
            data_dir: PathBuf::from(p.or_default("DATA_DIR").unwrap_or("./.defendable")),
            database_url: p.secret("DATABASE_URL"),
            database_pool_size: p.integer("DATABASE_POOL_SIZE").unwrap_or(16).max(1) as usize,
            object_store_url: p.raw("OBJECT_STORE_URL").and(p.url("OBJECT_STORE_URL")),
            app_base_url: p.raw("APP_BASE_URL").and(p.url("APP_BASE_URL")),
            api_base_url: p.raw("API_BASE_URL").and(p.url("API_BASE_URL")),
            cors_origins,
            json_body_limit: p.integer("JSON_BODY_LIMIT").unwrap_or(65536) as usize,
            log_format,
            log_filter: p.or_default("RUST_LOG").unwrap_or("info").to_owned(),
            otlp_endpoint: p
                .raw("OTEL_EXPORTER_OTLP_ENDPOINT")
                .and(p.url("OTEL_EXPORTER_OTLP_ENDPOINT")),
            jwt_secret: p.rotating("JWT_SECRET", "JWT_SECRET_PREVIOUS"),
            jwt_ttl: p
                .duration("JWT_TTL")
                .unwrap_or(Duration::from_secs(12 * 3600)),
            magic_link_ttl: p
                .duration("MAGIC_LINK_TTL")
                .unwrap_or(Duration::from_secs(900)),
            invite_ttl: p
                .duration("INVITE_TTL")
                .unwrap_or(Duration::from_secs(7 * 86400)),
            smtp_url: p.secret("SMTP_URL"),
            resend_api_key: p.secret("RESEND_API_KEY"),
            email_from: p
                .or_default("EMAIL_FROM")
                .unwrap_or("Defendable <no-reply@localhost>")
                .to_owned(),
            dev_log_mail_links: match p.or_default("DEV_LOG_MAIL_LINKS") {
                Some("false") => false,
                Some("true") | None => !app_env.is_production(),
                Some(other) => {
                    p.fail(
                        "DEV_LOG_MAIL_LINKS",
                        format!("{other:?} is not true or false"),
                        "set true or false",
                    );
                    false
                }
            },
            internal_api_key: p.rotating("INTERNAL_API_KEY", "INTERNAL_API_KEY_PREVIOUS"),
            internal_allowed_cidrs: p.cidrs("INTERNAL_ALLOWED_CIDRS"),
            runner_token: p.rotating("RUNNER_TOKEN", "RUNNER_TOKEN_PREVIOUS"),
            runner_orgs: p.org_list("RUNNER_ORGS"),
            stripe_webhook_secret: p
                .rotating("STRIPE_WEBHOOK_SECRET", "STRIPE_WEBHOOK_SECRET_PREVIOUS"),
            trusted_proxies: p.cidrs("TRUSTED_PROXIES"),
            client_ip_header: match p.or_default("CLIENT_IP_HEADER") {
                Some("cf-connecting-ip") => ClientIpHeader::CfConnectingIp,
                Some("x-forwarded-for") | None => ClientIpHeader::XForwardedFor,
                Some(other) => {
                    p.fail(
                        "CLIENT_IP_HEADER",
                        format!("unknown header {other:?}"),
                        "set x-forwarded-for or cf-connecting-ip",
                    );
                    ClientIpHeader::XForwardedFor
                }
            },
            dataset_download_daily_limit: if app_env.is_production() {
                // Production takes no invented default: the rule demands an explicit value.
                p.raw("DATASET_DOWNLOAD_DAILY_LIMIT")
                    .and(p.integer("DATASET_DOWNLOAD_DAILY_LIMIT"))
            } else {
                p.integer("DATASET_DOWNLOAD_DAILY_LIMIT")
            },
            download_url_ttl: p
                .duration("DOWNLOAD_URL_TTL")
                .unwrap_or(Duration::from_secs(900)),
            object_url_signing_key: p
                .rotating("OBJECT_URL_SIGNING_KEY", "OBJECT_URL_SIGNING_KEY_PREVIOUS"),
            sso_secret_key: p.rotating("SSO_SECRET_KEY", "SSO_SECRET_KEY_PREVIOUS"),
            dns_resolver: p.raw("DNS_RESOLVER").map(str::to_owned),
            sso_provider_allowed_cidrs: p.cidrs("SSO_PROVIDER_ALLOWED_CIDRS"),
            sso_session_ttl: p
                .duration("SSO_SESSION_TTL")
                .unwrap_or(Duration::from_secs(8 * 3600)),
            ledger_signing_key: p.secret("LEDGER_SIGNING_KEY"),
            ledger_signing_keys_previous: p
                .raw("LEDGER_SIGNING_KEYS_PREVIOUS")
                .map(|s| {
                    s.split(',')
                        .map(|k| k.trim().to_owned())
                        .filter(|k| !k.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
            ledger_name: {
                let name = if app_env.is_production() {
                    p.raw("LEDGER_NAME")
                } else {
                    p.or_default("LEDGER_NAME")
                };
                match name {
                    Some(n)
                        if n.is_empty()
                            || n.contains('+')
                            || n.chars().any(|c| c.is_whitespace() || c.is_control()) =>
                    {
                        p.fail(
                            "LEDGER_NAME",
                            format!("{n:?} has spaces, `+` or control characters"),
                            "use a host-like name such as ledger.example.com",
                        );
                        None
                    }
                    other => other.map(str::to_owned),
                }
            },
            rate_limits: match limits::effective(p.raw("RATE_LIMITS").unwrap_or("")) {
                Ok(l) => l,
                Err(why) => {
                    p.fail(
                        "RATE_LIMITS",
                        why,
                        "use id=limit/window items such as auth-request-email=10/10m",
                    );
                    limits::RATE_LIMITS.to_vec()
                }
            },
            security_contact: p
                .raw("SECURITY_CONTACT")
                .map(str::to_owned)
                .unwrap_or_default(),
            backup_recipient: p.raw("BACKUP_RECIPIENT").map(str::to_owned),
            backup_identity_file: p.raw("BACKUP_IDENTITY_FILE").map(PathBuf::from),
            operator_org: p.raw("OPERATOR_ORG").map(str::to_owned),
            backup_signing_key: p.secret("BACKUP_SIGNING_KEY"),
            backup_vkeys: p.vkeys("BACKUP_VKEY"),
            release_signing_key: p.secret("RELEASE_SIGNING_KEY"),
            release_vkeys: p.vkeys("RELEASE_VKEY"),
            release_drill: match p.or_default("RELEASE_DRILL") {
                Some("true") => true,
                Some("false") | None => false,
                Some(other) => {
                    p.fail(
                        "RELEASE_DRILL",
                        format!("{other:?} is not true or false"),
                        "set true or false (only a release drill's server sets it)",
                    );
                    false
                }
            },
        };
        if cfg.security_contact.is_empty() {
            cfg.security_contact = format!(
                "mailto:security@{}",
                cfg.app_base_url().host_str().unwrap_or("localhost")
            );
        }
        // Read for the docs' sake: the test harness consumes it, the server does not.
        let _ = p.raw("TEST_DATABASE_URL");
        let days = cfg.invite_ttl.as_secs() / 86400;
        if !cfg.invite_ttl.as_secs().is_multiple_of(86400) || !(1..=30).contains(&days) {
            p.fail(
                "INVITE_TTL",
                "must be a whole number of days from 1 to 30",
                "set e.g. 7d",
            );
        }
        if p.problems.is_empty() {
            Ok(cfg)
        } else {
            Err(ConfigError::Invalid(p.problems))
        }
    }

    /// The public API base URL, derived from the listen address in development.
    pub fn api_base_url(&self) -> Url {
        self.api_base_url.clone().unwrap_or_else(|| {
            Url::parse(&format!("http://{}", self.bind_addr)).expect("socket address forms a URL")
        })
    }

    /// Where mailed sign-in and invite links point: `APP_BASE_URL`, or in development this API's
    /// own sign-in pages.
    pub fn app_base_url(&self) -> Url {
        self.app_base_url
            .clone()
            .unwrap_or_else(|| self.api_base_url())
    }

    /// The CORS allow-list, defaulting to APP_BASE_URL's origin.
    pub fn cors_origins(&self) -> Vec<String> {
        self.cors_origins
            .clone()
            .unwrap_or_else(|| vec![self.app_base_url().origin().ascii_serialization()])
    }

    /// Whether some form of real email delivery is configured.
    pub fn email_configured(&self) -> bool {
        self.smtp_url.is_some() || self.resend_api_key.is_some()
    }

    /// Every critical secret that is set, with its variable name (for the equality rule).
    pub fn critical_secrets(&self) -> Vec<(&'static str, &str)> {
        let all: [(&'static str, &Option<SecretString>); 16] = [
            ("JWT_SECRET", &self.jwt_secret.current),
            ("JWT_SECRET_PREVIOUS", &self.jwt_secret.previous),
            ("INTERNAL_API_KEY", &self.internal_api_key.current),
            ("INTERNAL_API_KEY_PREVIOUS", &self.internal_api_key.previous),
            ("RUNNER_TOKEN", &self.runner_token.current),
            ("RUNNER_TOKEN_PREVIOUS", &self.runner_token.previous),
            ("STRIPE_WEBHOOK_SECRET", &self.stripe_webhook_secret.current),
            (
                "STRIPE_WEBHOOK_SECRET_PREVIOUS",
                &self.stripe_webhook_secret.previous,
            ),
            ("RESEND_API_KEY", &self.resend_api_key),
            ("LEDGER_SIGNING_KEY", &self.ledger_signing_key),
            ("RELEASE_SIGNING_KEY", &self.release_signing_key),
            ("BACKUP_SIGNING_KEY", &self.backup_signing_key),
            (
                "OBJECT_URL_SIGNING_KEY",
                &self.object_url_signing_key.current,
            ),
            (
                "OBJECT_URL_SIGNING_KEY_PREVIOUS",
                &self.object_url_signing_key.previous,
            ),
            ("SSO_SECRET_KEY", &self.sso_secret_key.current),
            ("SSO_SECRET_KEY_PREVIOUS", &self.sso_secret_key.previous),
        ];
        all.into_iter()
            .filter_map(|(name, s)| s.as_ref().map(|s| (name, s.expose_secret())))
            .collect()
    }
}

/// A short, non-reversible fingerprint of a secret for inventories and rotation receipts.
pub fn fingerprint(secret: &str) -> String {
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        format!("defendable-fingerprint-v1:{secret}").as_bytes(),
    );
    digest.as_ref()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
