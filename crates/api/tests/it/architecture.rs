//! Architectural invariants that code review alone would miss.

use std::process::Command;

/// No core crate may depend on actix-web (or any HTTP server framework): cores know nothing of HTTP.
#[test]
fn core_crates_do_not_depend_on_actix_web() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    for core in [
        "defendable-config",
        "defendable-store",
        "defendable-ledger",
        "defendable-identity",
        "defendable-datasets",
    ] {
        let out = Command::new(&cargo)
            .args([
                "tree",
                "--offline",
                "-p",
                core,
                "-e",
                "normal,build",
                "--prefix",
                "none",
                "--format",
                "{p}",
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("cargo tree runs");
        assert!(
            out.status.success(),
            "cargo tree -p {core}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let tree = String::from_utf8_lossy(&out.stdout);
        assert!(tree.lines().count() >= 1, "empty tree for {core}");
        for line in tree.lines() {
            assert!(
                !(line.starts_with("actix") || line.starts_with("defendable-api ")),
                "{core} depends on {line}"
            );
        }
    }
}

/// The ledger's pure core builds with no database: outsiders can embed the verifier alone.
#[test]
fn the_ledger_core_has_no_database_dependency_without_default_features() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(&cargo)
        .args([
            "tree",
            "--offline",
            "-p",
            "defendable-ledger",
            "--no-default-features",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8_lossy(&out.stdout);
    for forbidden in [
        "tokio-postgres",
        "deadpool",
        "defendable-store",
        "tokio ",
        "actix",
    ] {
        assert!(
            !tree.lines().any(|l| l.starts_with(forbidden)),
            "the pure ledger pulls {forbidden}:\n{tree}"
        );
    }
}
