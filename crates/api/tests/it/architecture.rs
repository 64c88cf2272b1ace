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
        "defendable-sso",
        "defendable-boot",
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

/// The pure parts of the ledger, identity, datasets and SSO build with no database: outsiders
/// can embed the verifier alone, and the CLI reads the API's typed shapes without a PostgreSQL
/// client (nor SSO's identity-provider client).
#[test]
fn the_pure_cores_have_no_database_dependency_without_default_features() {
    for core in [
        "defendable-ledger",
        "defendable-identity",
        "defendable-datasets",
        "defendable-sso",
    ] {
        let tree = cargo_tree(core, &["--no-default-features", "-e", "normal"]);
        for forbidden in [
            "tokio-postgres",
            "deadpool",
            "defendable-store",
            "tokio ",
            "actix",
            "reqwest",
            "hickory",
        ] {
            assert!(
                !tree.lines().any(|l| l.starts_with(forbidden)),
                "{core} without default features pulls {forbidden}:\n{tree}"
            );
        }
    }
}

/// The shell only translates: no SQL in the api crate. Rules and statements live in the cores,
/// which the handlers call.
/// The lines of `text` that hold an SQL statement (a string literal or a continuation line
/// starting with a verb); comments are ignored.
fn sql_lines(text: &str) -> Vec<(usize, &str)> {
    let verbs = [
        "SELECT ",
        "INSERT INTO",
        "UPDATE ",
        "DELETE FROM",
        "CREATE ",
        "ALTER TABLE",
        "DROP ",
    ];
    text.lines()
        .enumerate()
        .filter(|(_, line)| {
            let code = line.split("//").next().unwrap_or_default();
            verbs
                .iter()
                .any(|v| code.contains(&format!("\"{v}")) || code.trim_start().starts_with(v))
        })
        .collect()
}

#[test]
fn the_api_crate_holds_no_sql() {
    // The detector bites on a statement and leaves prose alone.
    let handler =
        "let row = client.query_one(\"SELECT id FROM orgs WHERE slug = $1\", &[&slug]);\n\
                   \"UPDATE api_keys\n   SET revoked_at = now()\";\n\
                   // SELECT in a comment is fine\n\
                   let words = \"select a plan\";";
    assert_eq!(sql_lines(handler).len(), 2, "{:?}", sql_lines(handler));
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
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
            for (n, line) in sql_lines(&text) {
                found.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "SQL in the api crate:\n{}",
        found.join("\n")
    );
}

/// Every `.rs` file under the api crate's `src/`, with its text.
fn api_sources() -> Vec<(std::path::PathBuf, String)> {
    let mut out = Vec::new();
    let mut stack = vec![std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("src dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let text = std::fs::read_to_string(&path).expect("source");
                out.push((path, text));
            }
        }
    }
    out
}

/// The route modules `text` (a file under `src/routes/`) names: `crate::routes::x` or, outside
/// a file's own test module, `super::x`. Comments are ignored.
fn route_imports(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or_default();
        for prefix in ["crate::routes::", "super::"] {
            for (at, _) in code.match_indices(prefix) {
                let rest = &code[at + prefix.len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    found.push(name);
                }
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

/// Route modules do not import each other: what several routes share lives outside `routes/`
/// (`proofs`, `bodies`, `recording`, `signin`, `auth`, …).
#[test]
fn route_modules_do_not_import_each_other() {
    assert_eq!(
        route_imports("use crate::routes::receipts::{parse_body};\n// crate::routes::x\n"),
        ["receipts"]
    );
    let mut edges = Vec::new();
    for (path, text) in api_sources() {
        if path.parent().and_then(|d| d.file_name()) != Some("routes".as_ref())
            || path.file_name() == Some("mod.rs".as_ref())
        {
            continue;
        }
        let file = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        for module in route_imports(&text) {
            edges.push((file.clone(), module));
        }
    }
    edges.sort();
    assert_eq!(
        edges,
        Vec::<(String, String)>::new(),
        "route modules import each other: move what they share out of routes/"
    );
}

/// The shell builds no audit event: which action a write records, and what its event says, is
/// decided in the core that makes the write (the shell passes who and the request's context).
/// It may name a refusal it answers (`AuditEvent::refusal`, `AuditEvent::internal_call`).
#[test]
fn the_shell_builds_no_audit_event() {
    let builds = |line: &str| {
        let code = line.split("//").next().unwrap_or_default();
        code.contains("AuditEvent::new(") || code.contains("AuditEvent {")
    };
    assert!(builds(
        "let e = AuditEvent::new(AuditAction::MailFailure, Actor::System);"
    ));
    assert!(!builds("// AuditEvent::new( in a comment"));
    let found: Vec<String> = api_sources()
        .into_iter()
        .flat_map(|(path, text)| {
            text.lines()
                .enumerate()
                .filter(|(_, l)| builds(l))
                .map(|(n, l)| format!("{}:{}: {}", path.display(), n + 1, l.trim()))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        found.is_empty(),
        "audit events built in the api crate: {found:#?}"
    );
}

/// The shell mints no token: sessions, links, share tokens and keys come from the cores that
/// store their hashes.
#[test]
fn the_shell_mints_no_token() {
    let mints = |line: &str| {
        let code = line.split("//").next().unwrap_or_default();
        [
            "Token::generate(",
            "Secret::generate(",
            "session_keys().issue(",
        ]
        .iter()
        .any(|m| code.contains(m))
    };
    assert!(mints("let token = OneTimeToken::generate();"));
    assert!(mints(
        "let t = state.auth.session_keys().issue(user, s, now, exp);"
    ));
    assert!(!mints("let token = grant.share_token.expose();"));
    let found: Vec<String> = api_sources()
        .into_iter()
        .flat_map(|(path, text)| {
            text.lines()
                .enumerate()
                .filter(|(_, l)| mints(l))
                .map(|(n, l)| format!("{}:{}: {}", path.display(), n + 1, l.trim()))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        found.is_empty(),
        "tokens minted in the api crate: {found:#?}"
    );
}

/// Whether a line of code opens a transaction (comments ignored).
fn opens_transaction(line: &str) -> bool {
    let code = line.split("//").next().unwrap_or_default();
    code.contains(".transaction()") || code.contains("build_transaction()")
}

/// The shell opens no transaction: a use case that writes is one call into its core, which
/// opens the transaction (the SSO callback's went into `sso::login::finish`).
#[test]
fn the_shell_opens_no_transaction() {
    assert!(opens_transaction("let tx = client.transaction().await?;"));
    assert!(!opens_transaction("// client.transaction() in a comment"));
    let found: Vec<String> = api_sources()
        .into_iter()
        .flat_map(|(path, text)| {
            text.lines()
                .enumerate()
                .filter(|(_, l)| opens_transaction(l))
                .map(|(n, l)| format!("{}:{}: {}", path.display(), n + 1, l.trim()))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        found.is_empty(),
        "transactions opened in the api crate: {found:#?}"
    );
}

/// The workspace crates `package` depends on directly (normal and build edges), by name.
fn workspace_deps(package: &str) -> Vec<String> {
    cargo_tree(package, &["-e", "normal,build", "--depth", "1"])
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| name.starts_with("defendable-") && *name != package)
        .map(str::to_owned)
        .collect()
}

/// Which core (or crate below the shell) may use which, as ARCHITECTURE.md's "Cross-cutting
/// invariants" states it.
const ALLOWED_CORE_DEPS: &[(&str, &[&str])] = &[
    ("defendable-config", &[]),
    ("defendable-store", &[]),
    ("defendable-ledger", &["defendable-store"]),
    (
        "defendable-identity",
        &["defendable-store", "defendable-config"],
    ),
    (
        "defendable-datasets",
        &["defendable-store", "defendable-ledger", "defendable-config"],
    ),
    // SSO composes identity and the ledger (IdP changes are receipts); neither depends on it.
    (
        "defendable-sso",
        &[
            "defendable-store",
            "defendable-ledger",
            "defendable-identity",
            "defendable-config",
        ],
    ),
    // Start-up wiring below the shell, shared by the server and the operations tool.
    (
        "defendable-boot",
        &["defendable-store", "defendable-ledger", "defendable-config"],
    ),
    // The operations tool runs the server as a process and never links the shell.
    (
        "defendable-ops",
        &[
            "defendable-store",
            "defendable-ledger",
            "defendable-datasets",
            "defendable-config",
            "defendable-boot",
        ],
    ),
];

/// The rule [`cores_depend_only_on_the_cores_architecture_allows`] applies, kept apart so a
/// test can show it refuses a forbidden edge.
fn forbidden_core_deps(core: &str, deps: &[String]) -> Vec<String> {
    let allowed = ALLOWED_CORE_DEPS
        .iter()
        .find(|(c, _)| *c == core)
        .map(|(_, a)| *a)
        .unwrap_or_else(|| panic!("{core} is not a core named in ARCHITECTURE.md"));
    deps.iter()
        .filter(|d| !allowed.contains(&d.as_str()))
        .cloned()
        .collect()
}

/// Cores never depend on each other unless ARCHITECTURE.md allows it (datasets may use the
/// ledger; identity and datasets may use config types; `store` is shared infrastructure).
#[test]
fn cores_depend_only_on_the_cores_architecture_allows() {
    for (core, _) in ALLOWED_CORE_DEPS {
        let deps = workspace_deps(core);
        let forbidden = forbidden_core_deps(core, &deps);
        assert!(
            forbidden.is_empty(),
            "{core} depends on {forbidden:?}, which ARCHITECTURE.md does not allow"
        );
    }
    // The rule bites: identity reaching for the ledger, or the ledger for identity, is refused.
    assert_eq!(
        forbidden_core_deps("defendable-identity", &["defendable-ledger".to_owned()]),
        ["defendable-ledger"]
    );
    assert_eq!(
        forbidden_core_deps(
            "defendable-ledger",
            &[
                "defendable-store".to_owned(),
                "defendable-identity".to_owned()
            ]
        ),
        ["defendable-identity"]
    );
    // The operations tool reaching for the web shell is refused.
    assert_eq!(
        forbidden_core_deps("defendable-ops", &["defendable-api".to_owned()]),
        ["defendable-api"]
    );
    // And the tree is read for real: datasets' dependency on the ledger shows up.
    assert!(workspace_deps("defendable-datasets").contains(&"defendable-ledger".to_owned()));
}
