//! Table-driven tests of the production boot rules, each alone and all together.

use std::collections::HashMap;

use defendable_config::{AppEnv, Config, ConfigError, Env};

const JWT: &str = "q8Zr4TnV1xYpLk2Wm7Hc0Ds9Ga3Fb6Ej5Ru8Io1Pw4Qs";
const INTERNAL: &str = "Zx9Cv8Bn7Mq6Wr5Ty4Ui3Op2As1Df0GhJkLzXcVbNm";

fn valid_production() -> HashMap<&'static str, &'static str> {
    HashMap::from([
        ("APP_ENV", "production"),
        (
            "DATABASE_URL",
            "postgres://app:pw@db.internal:5432/defendable?sslmode=verify-full",
        ),
        ("APP_BASE_URL", "https://app.example.com"),
        ("API_BASE_URL", "https://api.example.com"),
        ("CORS_ORIGINS", "https://app.example.com"),
        ("JWT_SECRET", JWT),
        ("INTERNAL_API_KEY", INTERNAL),
        ("SMTP_URL", "smtps://user:pw@smtp.example.com:465"),
        ("DATASET_DOWNLOAD_DAILY_LIMIT", "100"),
        (
            "OBJECT_URL_SIGNING_KEY",
            "Pq8Wn3Ez5Rt7Yu1Io4As6Df9Gh2Jk0LzXcVbNmQwEr",
        ),
        (
            "LEDGER_SIGNING_KEY",
            "MC4CAQAwBQYDK2VwBCIEIK3mWq8y7Jx0cR5b2vN9tLp4sD1fG6hU8eQ0aZ3xC7kM",
        ),
        ("LEDGER_NAME", "ledger.example.com"),
    ])
}

/// Applies `change` (a `None` value unsets the variable) and returns the failing variables, sorted.
fn failing(change: &[(&'static str, Option<&'static str>)]) -> Vec<&'static str> {
    let mut env = valid_production();
    for (k, v) in change {
        match v {
            Some(v) => env.insert(k, v),
            None => env.remove(k),
        };
    }
    match Config::load(&Env::from_pairs(env)) {
        Ok(_) => vec![],
        Err(ConfigError::ProductionRefused(p)) => {
            let mut vars: Vec<_> = p.iter().map(|p| p.var).collect();
            vars.sort();
            vars
        }
        Err(e) => panic!("unexpected parse failure: {e}"),
    }
}

fn check(change: &[(&'static str, Option<&'static str>)], expected: &[&'static str]) {
    assert_eq!(failing(change), expected, "change {change:?}");
}

#[test]
fn a_complete_valid_environment_boots() {
    let (cfg, warnings) = Config::load(&Env::from_pairs(valid_production())).expect("boots");
    assert_eq!(cfg.app_env, AppEnv::Production);
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[test]
fn a_release_drill_waives_only_the_https_rules_and_only_under_an_invalid_ledger_name() {
    let loopback = [
        ("RELEASE_DRILL", Some("true")),
        ("APP_BASE_URL", Some("http://127.0.0.1:8080")),
        ("API_BASE_URL", Some("http://127.0.0.1:8080")),
    ];
    // Under a real ledger name the drill exception is refused, and waives nothing else.
    check(&loopback, &["RELEASE_DRILL"]);
    let mut drill = loopback.to_vec();
    drill.push(("LEDGER_NAME", Some("drill.invalid")));
    check(&drill, &[]);
    drill.push(("JWT_SECRET", None));
    check(&drill, &["JWT_SECRET"]);
}

#[test]
fn prod_is_an_alias_of_production() {
    check(&[("APP_ENV", Some("prod"))], &[]);
    check(
        &[("APP_ENV", Some("prod")), ("JWT_SECRET", None)],
        &["JWT_SECRET"],
    );
}

#[test]
fn each_rule_alone() {
    check(&[("JWT_SECRET", None)], &["JWT_SECRET"]);
    check(
        &[(
            "JWT_SECRET",
            Some("changeme-changeme-changeme-changeme-123"),
        )],
        &["JWT_SECRET"],
    );
    check(
        &[("JWT_SECRET", Some("short-but-random-Xy7"))],
        &["JWT_SECRET"],
    );
    check(
        &[("JWT_SECRET", Some("abababababababababababababababababab"))],
        &["JWT_SECRET"],
    );
    check(&[("CORS_ORIGINS", None)], &["CORS_ORIGINS"]);
    check(&[("CORS_ORIGINS", Some(" , "))], &["CORS_ORIGINS"]);
    check(
        &[("CORS_ORIGINS", Some("https://app.example.com,*"))],
        &["CORS_ORIGINS"],
    );
    check(
        &[("APP_BASE_URL", Some("http://app.example.com"))],
        &["APP_BASE_URL"],
    );
    check(&[("APP_BASE_URL", None)], &["APP_BASE_URL"]);
    check(
        &[("API_BASE_URL", Some("http://api.example.com"))],
        &["API_BASE_URL"],
    );
    check(&[("API_BASE_URL", None)], &["API_BASE_URL"]);
    check(&[("SMTP_URL", None)], &["SMTP_URL"]);
    check(
        &[
            ("SMTP_URL", None),
            (
                "RESEND_API_KEY",
                Some("re_Kq3Lm8Np2Rs7Tv1Wx5Yz9Ab4Cd6Ef0Gh"),
            ),
        ],
        &[],
    );
    check(
        &[("DATASET_DOWNLOAD_DAILY_LIMIT", None)],
        &["DATASET_DOWNLOAD_DAILY_LIMIT"],
    );
    check(
        &[("DATASET_DOWNLOAD_DAILY_LIMIT", Some("0"))],
        &["DATASET_DOWNLOAD_DAILY_LIMIT"],
    );
    check(&[("INTERNAL_API_KEY", None)], &["INTERNAL_API_KEY"]);
    check(
        &[("INTERNAL_API_KEY", Some("internal"))],
        &["INTERNAL_API_KEY"],
    );
    check(&[("DATABASE_URL", None)], &["DATABASE_URL"]);
    // A database on another host must not accept a plaintext fallback.
    for url in [
        "postgres://app:pw@db.internal:5432/defendable",
        "postgres://app:pw@db.internal:5432/defendable?sslmode=prefer",
        "postgres://app:pw@10.0.0.5/defendable?sslmode=disable",
        "postgresql://app:pw@db.internal/defendable?sslmode=allow",
        "host=db.internal user=app dbname=defendable",
    ] {
        assert_eq!(
            failing(&[("DATABASE_URL", Some(url))]),
            ["DATABASE_URL"],
            "{url}"
        );
    }
    for url in [
        "postgres://app:pw@db.internal/defendable?sslmode=require",
        "postgres://app:pw@127.0.0.1:5432/defendable",
        "postgres://app:pw@localhost/defendable?sslmode=disable",
        "postgres://app:pw@[::1]:5432/defendable",
        "postgres://app@/defendable?host=/var/run/postgresql",
        "host=db.internal sslmode=verify-full user=app",
    ] {
        assert!(failing(&[("DATABASE_URL", Some(url))]).is_empty(), "{url}");
    }
    // Optional secrets and every overlap twin are as strong as the rest when set.
    for var in [
        "RUNNER_TOKEN",
        "RUNNER_TOKEN_PREVIOUS",
        "STRIPE_WEBHOOK_SECRET",
        "STRIPE_WEBHOOK_SECRET_PREVIOUS",
        "JWT_SECRET_PREVIOUS",
        "INTERNAL_API_KEY_PREVIOUS",
        "OBJECT_URL_SIGNING_KEY_PREVIOUS",
    ] {
        assert_eq!(failing(&[(var, Some("short-runner"))]), [var], "{var}");
    }
    assert!(failing(&[("RUNNER_TOKEN", Some("Rn7Tq2Wz9Lx4Kp1Vb8Hc3Md6Fg0Js5YeAu"))]).is_empty());
    check(&[("LEDGER_SIGNING_KEY", None)], &["LEDGER_SIGNING_KEY"]);
    check(&[("LEDGER_NAME", None)], &["LEDGER_NAME"]);
    // A malformed name is refused in every environment, not only in production.
    for bad in ["ledger example", "ledger+example"] {
        let err = Config::load(&Env::from_pairs([("LEDGER_NAME", bad)])).unwrap_err();
        assert!(err.to_string().contains("LEDGER_NAME"), "{err}");
    }
    check(
        &[("OBJECT_URL_SIGNING_KEY", None)],
        &["OBJECT_URL_SIGNING_KEY"],
    );
    check(
        &[("OBJECT_URL_SIGNING_KEY", Some("short"))],
        &["OBJECT_URL_SIGNING_KEY"],
    );
}

#[test]
fn equal_critical_secrets_are_refused() {
    check(&[("INTERNAL_API_KEY", Some(JWT))], &["JWT_SECRET"]);
    check(&[("RUNNER_TOKEN", Some(INTERNAL))], &["INTERNAL_API_KEY"]);
    check(&[("JWT_SECRET_PREVIOUS", Some(JWT))], &["JWT_SECRET"]);
}

#[test]
fn an_empty_production_environment_lists_every_rule_at_once() {
    let err = Config::load(&Env::from_pairs([("APP_ENV", "production")])).unwrap_err();
    let mut vars: Vec<_> = err.problems().iter().map(|p| p.var).collect();
    vars.sort();
    assert_eq!(
        vars,
        [
            "API_BASE_URL",
            "APP_BASE_URL",
            "CORS_ORIGINS",
            "DATABASE_URL",
            "DATASET_DOWNLOAD_DAILY_LIMIT",
            "INTERNAL_API_KEY",
            "JWT_SECRET",
            "LEDGER_NAME",
            "LEDGER_SIGNING_KEY",
            "OBJECT_URL_SIGNING_KEY",
            "SMTP_URL",
        ]
    );
    let message = err.to_string();
    assert!(
        message.starts_with("refusing to boot in production"),
        "{message}"
    );
    for p in err.problems() {
        assert!(
            message.contains(p.var) && message.contains(&p.fix),
            "{message}"
        );
    }
}

#[test]
fn development_boots_with_nothing_and_warns() {
    let (cfg, warnings) =
        Config::load(&Env::from_pairs(Vec::<(String, String)>::new())).expect("dev boots");
    assert_eq!(cfg.app_env, AppEnv::Development);
    assert_eq!(cfg.bind_addr.to_string(), "127.0.0.1:8080");
    assert_eq!(cfg.dataset_download_daily_limit, Some(100));
    assert_eq!(cfg.api_base_url().as_str(), "http://127.0.0.1:8080/");
    assert_eq!(cfg.app_base_url().as_str(), "http://127.0.0.1:8080/");
    assert_eq!(cfg.cors_origins(), ["http://127.0.0.1:8080"]);
    assert!(!warnings.is_empty());
}

#[test]
fn unparsable_values_are_all_reported_without_echoing_secrets() {
    let env = Env::from_pairs([
        ("BIND_ADDR", "not-an-address"),
        ("JWT_TTL", "forever"),
        ("TRUSTED_PROXIES", "10.0.0.0/8,bogus"),
        ("INVITE_TTL", "90d"),
        ("APP_ENV", "staging"),
    ]);
    let err = Config::parse(&env).unwrap_err();
    let mut vars: Vec<_> = err.problems().iter().map(|p| p.var).collect();
    vars.sort();
    assert_eq!(
        vars,
        [
            "APP_ENV",
            "BIND_ADDR",
            "INVITE_TTL",
            "JWT_TTL",
            "TRUSTED_PROXIES"
        ]
    );
}

#[test]
fn secret_values_never_appear_in_problems() {
    let env = Env::from_pairs([
        ("APP_ENV", "production"),
        ("JWT_SECRET", "hunter2-is-my-jwt"),
    ]);
    let err = Config::load(&env).unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[test]
fn durations_and_lists_parse() {
    let env = Env::from_pairs([
        ("JWT_TTL", "3600"),
        ("MAGIC_LINK_TTL", "10m"),
        ("TRUSTED_PROXIES", "10.0.0.0/8, 192.0.2.7"),
        (
            "CORS_ORIGINS",
            "https://a.example.com/, https://b.example.com",
        ),
    ]);
    let cfg = Config::parse(&env).expect("parses");
    assert_eq!(cfg.jwt_ttl.as_secs(), 3600);
    assert_eq!(cfg.magic_link_ttl.as_secs(), 600);
    assert_eq!(cfg.trusted_proxies.len(), 2);
    assert_eq!(
        cfg.cors_origins(),
        ["https://a.example.com", "https://b.example.com"]
    );
}
