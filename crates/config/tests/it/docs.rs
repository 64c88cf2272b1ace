//! The generated docs and inventory stay true to the declaration.

use std::path::Path;

use defendable_config::{env_markdown, inventory, Config, Env, VARS};

#[test]
fn docs_env_md_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/env.md");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == env_markdown(),
        "docs/env.md is stale: run `cargo xtask env-docs` and commit the result"
    );
}

#[test]
fn every_declared_variable_is_read_by_the_parser() {
    let env = Env::from_pairs(Vec::<(String, String)>::new());
    Config::parse(&env).expect("empty env parses");
    let read = env.names_read();
    let unread: Vec<_> = VARS
        .iter()
        .map(|v| v.name)
        .filter(|n| !read.contains(n))
        .collect();
    assert!(unread.is_empty(), "declared but never parsed: {unread:?}");
}

#[test]
fn names_are_declared_once() {
    let mut names: Vec<_> = VARS.iter().map(|v| v.name).collect();
    names.sort();
    let before = names.len();
    names.dedup();
    assert_eq!(before, names.len());
}

#[test]
fn inventory_fingerprints_secrets_and_never_shows_them() {
    let env = Env::from_pairs([
        ("JWT_SECRET", "q8Zr4TnV1xYpLk2Wm7Hc0Ds9Ga3Fb6Ej5Ru8Io1Pw4Qs"),
        ("BIND_ADDR", "0.0.0.0:9000"),
    ]);
    let rows = inventory(&env);
    assert_eq!(rows.len(), VARS.len());
    let jwt = rows.iter().find(|r| r.name == "JWT_SECRET").expect("row");
    assert!(jwt.set && jwt.secret && jwt.value.is_none());
    let fp = jwt.fingerprint.as_deref().expect("fingerprint");
    assert_eq!(fp.len(), 12);
    assert!(!"q8Zr4TnV1xYpLk2Wm7Hc0Ds9Ga3Fb6Ej5Ru8Io1Pw4Qs".contains(fp));
    let bind = rows.iter().find(|r| r.name == "BIND_ADDR").expect("row");
    assert_eq!(bind.value.as_deref(), Some("0.0.0.0:9000"));
    let unset = rows.iter().find(|r| r.name == "SMTP_URL").expect("row");
    assert!(!unset.set && unset.fingerprint.is_none());
}

#[test]
fn deploy_cloudflare_is_current() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/cloudflare");
    for (name, fresh) in defendable_config::cloudflare::files() {
        let committed = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
        assert!(
            committed == fresh,
            "deploy/cloudflare/{name} is stale: run `cargo xtask cloudflare` and commit the result"
        );
    }
}

#[test]
fn the_cloudflare_rules_cover_every_declared_limit() {
    let files = defendable_config::cloudflare::files();
    let ratelimit: serde_json::Value = serde_json::from_str(&files[0].1).expect("json");
    let rules = ratelimit["rules"].as_array().expect("rules");
    assert_eq!(rules.len(), defendable_config::limits::RATE_LIMITS.len());
    for (rule, limit) in rules.iter().zip(defendable_config::limits::RATE_LIMITS) {
        assert_eq!(rule["ref"], limit.id);
        assert_eq!(rule["ratelimit"]["requests_per_period"], limit.limit);
        assert_eq!(rule["ratelimit"]["period"], limit.window.as_secs());
    }
    let grant = &rules
        .iter()
        .find(|r| r["ref"] == "dataset-grant-org")
        .expect("the grant rule")["expression"];
    assert_eq!(
        grant,
        r#"(http.request.method eq "POST" and http.request.uri.path matches "^/datasets/catalog/[^/]+/download$")"#
    );
}

/// An `EnvironmentFile=` overrides `Environment=` in systemd, so a unit that set `APP_ENV` with
/// `Environment=` could be flipped to development (no boot checks, dev secrets) by its
/// environment file. Every command our units run sets it on its own command line instead.
#[test]
fn systemd_units_pin_production_on_the_command_line() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/systemd");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("deploy/systemd") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("service") {
            continue;
        }
        let unit = std::fs::read_to_string(&path).expect("unit");
        for line in unit.lines().map(str::trim).filter(|l| !l.starts_with('#')) {
            assert!(
                !line.starts_with("Environment=APP_ENV"),
                "{}: {line}: set APP_ENV on the command line",
                path.display()
            );
            if line.starts_with("Exec") && line.contains("/usr/local/bin/defendable") {
                assert!(
                    line.contains("/usr/bin/env APP_ENV=production /usr/local/bin/defendable"),
                    "{}: {line}",
                    path.display()
                );
                checked += 1;
            }
        }
    }
    assert_eq!(
        checked, 6,
        "the API's check-config and serve, the backup, the drill, the storage check and sweep"
    );
}
