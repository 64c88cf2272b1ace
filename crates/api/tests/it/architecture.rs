//! Architectural invariants that code review alone would miss.

use std::process::Command;

/// `cargo tree --offline` of `package` with `extra` arguments, one package per line (`{p}`).
fn cargo_tree(package: &str, extra: &[&str]) -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(&cargo)
        .args(["tree", "--offline", "-p", package])
        .args(extra)
        .args(["--prefix", "none", "--format", "{p}"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree -p {package}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// No core crate may depend on actix-web (or any HTTP server framework): cores know nothing of HTTP.
#[test]
fn core_crates_do_not_depend_on_actix_web() {
    for core in [
        "defendable-config",
        "defendable-store",
        "defendable-ledger",
        "defendable-identity",
        "defendable-datasets",
    ] {
        let tree = cargo_tree(core, &["-e", "normal,build"]);
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
    let tree = cargo_tree(
        "defendable-ledger",
        &["--no-default-features", "-e", "normal"],
    );
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
