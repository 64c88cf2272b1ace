//! The dependency check of `cargo xtask test`: every package in the lock file has a licence
//! from the allow-list (an SPDX expression, read by the `spdx` crate, that some choice of
//! alternatives satisfies) and comes
//! from crates.io or this workspace. Packages present in several versions are listed as warnings.

use std::collections::BTreeMap;
use std::process::Command;

use anyhow::{bail, Context as _, Result};
use serde_json::Value;

/// Licences we may ship: permissive, or weak copyleft on a file basis (MPL-2.0). No GPL.
const ALLOWED: &[&str] = &[
    "0BSD",
    "Apache-2.0",
    "Apache-2.0 WITH LLVM-exception",
    "BSD-1-Clause",
    "BSD-2-Clause",
    "BSD-3-Clause",
    "BSL-1.0",
    "CC0-1.0",
    "CDLA-Permissive-2.0",
    "ISC",
    "MIT",
    "MIT-0",
    "MPL-2.0",
    "Unicode-3.0",
    "Unlicense",
    "Zlib",
];

/// Whether an SPDX expression (crates.io's lax form too: `A/B`, imprecise names) can be
/// satisfied with allowed licences only; the `spdx` crate reads and evaluates it.
pub fn allowed(expression: &str) -> Result<bool> {
    let expr = spdx::Expression::parse_mode(expression, spdx::ParseMode::LAX)
        .map_err(|e| anyhow::anyhow!("cannot read licence expression {expression:?}: {e}"))?;
    let licensees = ALLOWED
        .iter()
        .map(|l| spdx::Licensee::parse(l).with_context(|| format!("allow-list entry {l}")))
        .collect::<Result<Vec<_>>>()?;
    Ok(expr.evaluate(|req| licensees.iter().any(|l| l.satisfies(req))))
}

/// Checks every package of `cargo metadata` in `root`; prints one summary line.
#[allow(clippy::print_stdout)]
pub fn check(root: &std::path::Path) -> Result<()> {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(root)
        .output()
        .context("running cargo metadata")?;
    if !out.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let metadata: Value = serde_json::from_slice(&out.stdout)?;
    let packages = metadata["packages"].as_array().context("packages")?;
    let mut problems = Vec::new();
    let mut versions: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for p in packages {
        let name = p["name"].as_str().unwrap_or("?");
        let version = p["version"].as_str().unwrap_or("?");
        versions.entry(name).or_default().push(version);
        match p["license"].as_str() {
            Some(l) if allowed(l)? => {}
            Some(l) => problems.push(format!("{name} {version}: licence {l:?} is not allowed")),
            None => problems.push(format!("{name} {version}: no SPDX licence declared")),
        }
        match p["source"].as_str() {
            None => {}
            Some(s) if s.starts_with("registry+https://github.com/rust-lang/crates.io-index") => {}
            Some(s) => problems.push(format!("{name} {version}: comes from {s}, not crates.io")),
        }
    }
    problems.extend(unused_dependencies(packages)?);
    if !problems.is_empty() {
        bail!("dependency check failed:\n{}", problems.join("\n"));
    }
    let duplicated: Vec<String> = versions
        .iter()
        .filter(|(_, v)| v.len() > 1)
        .map(|(n, v)| format!("{n} ({})", v.join(", ")))
        .collect();
    println!(
        "dependency check: {} packages, every licence allowed, every source crates.io or this workspace; {} in several versions (warning): {}",
        packages.len(),
        duplicated.len(),
        duplicated.join(", ")
    );
    Ok(())
}

/// Dependencies a workspace crate declares but never names in its Rust files (`src/`, `tests/`,
/// `examples/`, `benches/`, `build.rs`): each is a build cost and an audit surface for nothing.
/// A dependency declared only for the features it turns on in another (object_store's client
/// needs reqwest's TLS) is listed, with the reason beside it, under
/// `[package.metadata.deps] features-only` and is not reported.
fn unused_dependencies(packages: &[Value]) -> Result<Vec<String>> {
    let mut unused = Vec::new();
    for p in packages.iter().filter(|p| p["source"].is_null()) {
        let name = p["name"].as_str().unwrap_or("?");
        let manifest = p["manifest_path"].as_str().context("manifest_path")?;
        let dir = std::path::Path::new(manifest)
            .parent()
            .context("manifest dir")?;
        let mut text = String::new();
        rust_text(dir, &mut text)?;
        for dep in p["dependencies"].as_array().context("dependencies")? {
            let declared = dep["rename"]
                .as_str()
                .or(dep["name"].as_str())
                .unwrap_or("?");
            let features_only = p["metadata"]["deps"]["features-only"]
                .as_array()
                .is_some_and(|l| l.iter().any(|d| d.as_str() == Some(declared)));
            if !features_only && !names_crate(&text, &declared.replace('-', "_")) {
                let kind = dep["kind"].as_str().unwrap_or("normal");
                unused.push(format!(
                    "{name}: {kind} dependency {declared} is never used"
                ));
            }
        }
    }
    Ok(unused)
}

/// Whether `text` uses the crate `ident` as code does: a path starting with it (`ident::…`,
/// which covers `use`, derives and attributes) or `use ident;`. A word in a comment is not a use.
fn names_crate(text: &str, ident: &str) -> bool {
    text.match_indices(ident).any(|(at, _)| {
        let word = |c: char| c.is_alphanumeric() || c == '_';
        let starts_path = text[..at]
            .chars()
            .next_back()
            .is_none_or(|c| !word(c) && c != ':');
        let rest = &text[at + ident.len()..];
        let line_start = text[..at].rfind('\n').map_or(0, |n| n + 1);
        let commented = text[line_start..at].contains("//");
        starts_path
            && !commented
            && (rest.starts_with("::")
                || rest.starts_with(';') && text[line_start..at].trim_start().starts_with("use "))
    })
}

/// Appends every `.rs` file under `dir` except `target/` to `out`.
fn rust_text(dir: &std::path::Path, out: &mut String) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "target") {
                rust_text(&path, out)?;
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push_str(&std::fs::read_to_string(&path)?);
            out.push('\n');
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{allowed, names_crate};

    #[test]
    fn a_crate_is_named_as_a_whole_word() {
        let text = "use serde_json::Value;\nlet t = time::OffsetDateTime::now_utc();\n\
                    // 64 hex characters, see hex::encode\nuse tracing;\nlet x = a::ring::b;";
        assert!(names_crate(text, "serde_json"));
        assert!(names_crate(text, "time"));
        assert!(names_crate(text, "tracing"));
        assert!(!names_crate(text, "serde"), "serde_json is not serde");
        assert!(!names_crate(text, "json"));
        assert!(!names_crate(text, "hex"), "a comment is not a use");
        assert!(
            !names_crate(text, "ring"),
            "a path segment is not the crate"
        );
    }

    #[test]
    fn licence_expressions_are_read_as_spdx() {
        for ok in [
            "MIT",
            "MIT OR Apache-2.0",
            "MIT/Apache-2.0",
            "(MIT OR Apache-2.0) AND Unicode-3.0",
            "Apache-2.0 OR GPL-2.0-only",
            "Apache-2.0 WITH LLVM-exception OR MIT",
        ] {
            assert!(allowed(ok).expect("reads"), "{ok}");
        }
        for refused in [
            "GPL-3.0-only",
            "MIT AND GPL-2.0-only",
            "(GPL-2.0 OR LGPL-2.1) AND MIT",
        ] {
            assert!(!allowed(refused).expect("reads"), "{refused}");
        }
        assert!(allowed("MIT OR (").is_err());
    }
}
