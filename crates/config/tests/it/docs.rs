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
