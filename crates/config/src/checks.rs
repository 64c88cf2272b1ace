//! The production boot rules. Each rule adds a [`Problem`] with its fix; all are collected so an
//! operator sees every issue in one pass rather than one per failed boot.

use std::collections::BTreeSet;

use secrecy::ExposeSecret;

use crate::{Config, Problem};

/// Words that mark a value as a placeholder copied from an example file.
const PLACEHOLDERS: &[&str] = &[
    "changeme",
    "change-me",
    "change_me",
    "placeholder",
    "replace-me",
    "replace_me",
    "your-secret",
    "your_secret",
    "dev-secret",
    "insecure",
    "example",
    "secret123",
    "password",
    "xxxxxxxx",
];

/// The minimum length of a strong secret, in bytes.
pub const MIN_SECRET_BYTES: usize = 32;

/// Why `value` is not a strong secret, or `None` when it is.
///
/// Strong means: at least 32 bytes, not containing a known placeholder word, and not
/// low-entropy (at least 10 distinct characters and 3 bits of Shannon entropy per character,
/// which random hex, base64 and base62 all clear).
pub fn strong_secret_problem(value: &str) -> Option<String> {
    let lower = value.to_ascii_lowercase();
    if let Some(word) = PLACEHOLDERS.iter().find(|w| lower.contains(*w)) {
        return Some(format!("is a placeholder (contains {word:?})"));
    }
    if value.len() < MIN_SECRET_BYTES {
        return Some(format!(
            "is {} bytes; at least {MIN_SECRET_BYTES} are required",
            value.len()
        ));
    }
    let distinct: BTreeSet<u8> = value.bytes().collect();
    if distinct.len() < 10 || shannon_bits_per_byte(value.as_bytes()) < 3.0 {
        return Some("has low entropy (too few distinct characters)".to_owned());
    }
    None
}

fn shannon_bits_per_byte(bytes: &[u8]) -> f64 {
    let mut counts = [0usize; 256];
    for &b in bytes {
        counts[b as usize] += 1;
    }
    let n = bytes.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

const GEN_FIX: &str = "generate one with `openssl rand -base64 48`";

/// Why connecting to `url` could fall back to plaintext, or `None`: a database on another host
/// needs `sslmode` `require`, `verify-ca` or `verify-full` (`prefer`, `allow`, `disable` and an
/// unset mode all accept a connection without TLS). Loopback and Unix sockets never leave the
/// machine. A key=value connection string is judged by the same rule.
pub fn plaintext_database(url: &str) -> Option<String> {
    let (host, mode) = match url::Url::parse(url) {
        Ok(u) if u.scheme() == "postgres" || u.scheme() == "postgresql" => {
            let host = u.host_str().unwrap_or_default().to_owned();
            let host = u
                .query_pairs()
                .find(|(k, _)| k == "host")
                .map(|(_, v)| v.into_owned())
                .filter(|_| host.is_empty())
                .unwrap_or(host);
            let mode = u
                .query_pairs()
                .find(|(k, _)| k == "sslmode")
                .map(|(_, v)| v.into_owned());
            (host, mode)
        }
        _ => {
            let field = |name: &str| {
                url.split_whitespace()
                    .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
                    .map(|v| v.trim_matches('\'').to_owned())
            };
            (field("host").unwrap_or_default(), field("sslmode"))
        }
    };
    let local = host.is_empty()
        || host.starts_with('/')
        || host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match mode.as_deref() {
        _ if local => None,
        Some("require" | "verify-ca" | "verify-full") => None,
        Some(m) => Some(format!(
            "connects to {host} with sslmode={m}, which can fall back to plaintext"
        )),
        None => Some(format!(
            "connects to {host} without sslmode, which tries TLS but can fall back to plaintext"
        )),
    }
}

/// Every production rule that `config` fails. Development shows these as warnings.
pub fn production_problems(config: &Config) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut add = |var: &'static str, message: String, fix: &str| {
        out.push(Problem {
            var,
            message,
            fix: fix.to_owned(),
        })
    };

    match &config.jwt_secret.current {
        None => add("JWT_SECRET", "is missing".into(), GEN_FIX),
        Some(s) => {
            if let Some(why) = strong_secret_problem(s.expose_secret()) {
                add("JWT_SECRET", why, GEN_FIX);
            }
        }
    }
    match &config.internal_api_key.current {
        None => add("INTERNAL_API_KEY", "is missing".into(), GEN_FIX),
        Some(s) => {
            if let Some(why) = strong_secret_problem(s.expose_secret()) {
                add("INTERNAL_API_KEY", why, GEN_FIX);
            }
        }
    }
    match &config.object_url_signing_key.current {
        None => add("OBJECT_URL_SIGNING_KEY", "is missing".into(), GEN_FIX),
        Some(s) => {
            if let Some(why) = strong_secret_problem(s.expose_secret()) {
                add("OBJECT_URL_SIGNING_KEY", why, GEN_FIX);
            }
        }
    }
    // Optional secrets and every overlap twin: when set, as strong as the secrets they sit
    // beside (a weak previous value would stay accepted for the whole rotation window).
    let optional: [(&'static str, &Option<secrecy::SecretString>); 9] = [
        ("JWT_SECRET_PREVIOUS", &config.jwt_secret.previous),
        (
            "INTERNAL_API_KEY_PREVIOUS",
            &config.internal_api_key.previous,
        ),
        ("RUNNER_TOKEN", &config.runner_token.current),
        ("RUNNER_TOKEN_PREVIOUS", &config.runner_token.previous),
        (
            "STRIPE_WEBHOOK_SECRET",
            &config.stripe_webhook_secret.current,
        ),
        (
            "STRIPE_WEBHOOK_SECRET_PREVIOUS",
            &config.stripe_webhook_secret.previous,
        ),
        (
            "OBJECT_URL_SIGNING_KEY_PREVIOUS",
            &config.object_url_signing_key.previous,
        ),
        ("SSO_SECRET_KEY", &config.sso_secret_key.current),
        ("SSO_SECRET_KEY_PREVIOUS", &config.sso_secret_key.previous),
    ];
    for (var, value) in optional {
        if let Some(why) = value
            .as_ref()
            .and_then(|s| strong_secret_problem(s.expose_secret()))
        {
            add(var, why, GEN_FIX);
        }
    }
    if let Some(why) = config
        .database_url
        .as_ref()
        .and_then(|u| plaintext_database(u.expose_secret()))
    {
        add(
            "DATABASE_URL",
            why,
            "add ?sslmode=verify-full (or require) for a database on another host",
        );
    }
    match &config.cors_origins {
        None => add(
            "CORS_ORIGINS",
            "is empty".into(),
            "list the exact browser origins, e.g. https://app.example.com",
        ),
        Some(list) if list.is_empty() => add(
            "CORS_ORIGINS",
            "is empty".into(),
            "list the exact browser origins, e.g. https://app.example.com",
        ),
        Some(list) if list.iter().any(|o| o.contains('*')) => add(
            "CORS_ORIGINS",
            "contains `*`".into(),
            "replace the wildcard with the exact origins allowed",
        ),
        Some(_) => {}
    }
    // A release drill serves on loopback over http; its own LEDGER_NAME keeps its checkpoints
    // from ever passing for production ones.
    let drill = config.release_drill;
    if drill
        && !config
            .ledger_name
            .as_deref()
            .is_some_and(|n| n.ends_with(".invalid"))
    {
        add(
            "RELEASE_DRILL",
            "is true but LEDGER_NAME does not end in `.invalid`".into(),
            "only a release drill sets RELEASE_DRILL, with its own LEDGER_NAME such as drill.invalid",
        );
    }
    match &config.app_base_url {
        _ if drill => {}
        None => add(
            "APP_BASE_URL",
            "is missing".into(),
            "set the https:// URL where sign-in links land: your web app, or this API's own public URL for its built-in sign-in pages",
        ),
        Some(u) if u.scheme() != "https" => add(
            "APP_BASE_URL",
            format!("uses {}://, not https://", u.scheme()),
            "set the web app's https:// URL",
        ),
        Some(_) => {}
    }
    match &config.api_base_url {
        _ if drill => {}
        None => add(
            "API_BASE_URL",
            "is missing".into(),
            "set the API's public https:// URL",
        ),
        Some(u) if u.scheme() != "https" => add(
            "API_BASE_URL",
            format!("uses {}://, not https://", u.scheme()),
            "set the API's public https:// URL",
        ),
        Some(_) => {}
    }
    if !config.email_configured() {
        add(
            "SMTP_URL",
            "no email delivery is configured (neither SMTP_URL nor RESEND_API_KEY)".into(),
            "set SMTP_URL to your relay, or RESEND_API_KEY",
        );
    }
    match config.dataset_download_daily_limit {
        None => add(
            "DATASET_DOWNLOAD_DAILY_LIMIT",
            "is missing".into(),
            "set the daily grants per organization, e.g. 100",
        ),
        Some(0) => add(
            "DATASET_DOWNLOAD_DAILY_LIMIT",
            "is 0; at least 1 is required".into(),
            "set the daily grants per organization, e.g. 100",
        ),
        Some(_) => {}
    }
    if config.ledger_signing_key.is_none() {
        add(
            "LEDGER_SIGNING_KEY",
            "is missing".into(),
            "generate one with `defendable-api generate-signing-key` and keep it secret",
        );
    }
    if config.ledger_name.is_none() {
        add(
            "LEDGER_NAME",
            "is missing".into(),
            "set the log operator's stable name, e.g. ledger.example.com; never change it once checkpoints are published",
        );
    }
    if config.database_url.is_none() {
        add(
            "DATABASE_URL",
            "is missing; production never starts an embedded cluster".into(),
            "set postgres://user:password@host:5432/dbname",
        );
    }
    let secrets = config.critical_secrets();
    for (i, (a, va)) in secrets.iter().enumerate() {
        for (b, vb) in &secrets[i + 1..] {
            // Boot-time comparison of our own secrets: no attacker times this, so `==` is fine.
            if va == vb {
                add(
                    a,
                    format!("has the same value as {b}"),
                    "give every secret its own independently generated value",
                );
            }
        }
    }
    out
}
