//! Views generated from the declaration: `docs/env.md` and the redacted inventory.

use std::fmt::Write as _;

use crate::vars::{Kind, VARS};
use crate::{fingerprint, Env};

/// The full text of `docs/env.md`. A test fails when the committed file differs;
/// `cargo xtask env-docs` rewrites it.
pub fn env_markdown() -> String {
    let mut out = String::new();
    out.push_str("# Environment variables\n\n");
    out.push_str(
        "<!-- Generated from crates/config/src/vars.rs by `cargo xtask env-docs`; do not edit. -->\n\n",
    );
    out.push_str(
        "Every variable Defendable reads is declared once in `defendable-config`. Development needs none \
         of them. `APP_ENV=production` refuses to boot, listing every failed rule with its fix, until \
         each production rule below holds. `defendable-api check-config` prints the same report without \
         starting the server. Secrets are never logged or printed; the inventory shows only a fingerprint.\n\n",
    );
    out.push_str("Besides the per-variable rules, production refuses two critical secrets with the same value.\n\n");
    out.push_str("| Variable | Type | Default | Secret | Description | Production rule |\n");
    out.push_str("|---|---|---|---|---|---|\n");
    for v in VARS {
        let kind = match v.kind {
            Kind::OneOf(words) => format!("one of {}", words.join(", ")),
            other => other.describe().to_owned(),
        };
        let secret = match (v.is_secret(), v.critical) {
            (true, true) => "critical",
            (true, false) => "yes",
            _ => "no",
        };
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} | {} |",
            v.name,
            kind,
            v.default
                .map(|d| format!("`{d}`"))
                .unwrap_or_else(|| "—".into()),
            secret,
            v.description.replace('|', "\\|"),
            if v.production.is_empty() {
                "—"
            } else {
                v.production
            },
        );
    }
    out.push_str(
        "\nCritical secrets are rotated with an overlap window: set the new value, move the old one to \
         its `_PREVIOUS` twin (where one is declared), deploy, then remove the twin once nothing uses it.\n",
    );
    out
}

/// One line of the redacted inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryRow {
    /// Variable name.
    pub name: &'static str,
    /// Whether it is set (non-empty).
    pub set: bool,
    /// Whether it is a secret.
    pub secret: bool,
    /// The value, for non-secrets only.
    pub value: Option<String>,
    /// A fingerprint, for secrets only.
    pub fingerprint: Option<String>,
}

/// Every declared variable with set/unset and, for secrets, a fingerprint; never a secret value.
pub fn inventory(env: &Env) -> Vec<InventoryRow> {
    VARS.iter()
        .map(|v| {
            let raw = env.get(v.name);
            InventoryRow {
                name: v.name,
                set: raw.is_some(),
                secret: v.is_secret(),
                value: raw.filter(|_| !v.is_secret()).map(str::to_owned),
                fingerprint: raw.filter(|_| v.is_secret()).map(fingerprint),
            }
        })
        .collect()
}
