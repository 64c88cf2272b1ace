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

/// The shell only translates: no SQL in the api crate. Rules and statements live in the cores,
/// which the handlers call.
#[test]
fn the_api_crate_holds_no_sql() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let verbs = [
        "SELECT ",
        "INSERT INTO",
        "UPDATE ",
        "DELETE FROM",
        "CREATE ",
        "ALTER TABLE",
        "DROP ",
    ];
    let mut found = Vec::new();
    let mut stack = vec![src];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("src dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("source");
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or_default();
                if verbs
                    .iter()
                    .any(|v| code.contains(&format!("\"{v}")) || code.trim_start().starts_with(v))
                {
                    found.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "SQL in the api crate:\n{}",
        found.join("\n")
    );
}
