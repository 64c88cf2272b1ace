//! `cargo xtask`: the project's automation, so CI and developers run the same steps.

mod deps;
mod release;
mod tools;

use tools::{
    ensure_npm_tool, ensure_python_tool, ensure_s3_server, ensure_system_packages, CHROMEDRIVER,
    CHROMIUM, DNS_SERVER, MOTO, NODE, NPM, OIDC_PROVIDER, POSTGRES, PROMTOOL, PYTHON_VENV,
    SCHEMATHESIS, SCIM2_CLI, SCIM2_PINS, SMTP_CAPTURE, WRK,
};

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "cargo xtask", about = "Defendable automation")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// What CI runs: fmt check, clippy with warnings denied, then the whole test suite.
    Ci,
    /// Install what the tests need (PostgreSQL server binaries), then run the whole test suite.
    Test,
    /// Install what the server needs, then run it with zero configuration (`cargo run -p defendable-api`).
    Dev {
        /// Arguments passed to `defendable-api`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Check every dependency's licence against the allow-list and its source (part of `test`).
    Deps,
    /// Run a benchmark in release mode and print its figures (`auth`, `ledger`, `datasets`,
    /// `drill`, `tree`, `http`).
    Bench {
        /// Which benchmark.
        name: String,
    },
    /// Regenerate deploy/cloudflare/ from the rate-limit table.
    Cloudflare,
    /// Back up the deployment the environment describes (`defendable-ops backup --out DIR`).
    Backup {
        /// Arguments passed to `defendable-ops backup`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Restore a backup into a fresh isolated database, verify it and record the drill
    /// (`defendable-ops restore-drill --backup DIR [--server URL] [--sample N]`).
    RestoreDrill {
        /// Arguments passed to `defendable-ops restore-drill`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Record the receipt that ends a secret rotation
    /// (`defendable-ops rotation-receipt --secret NAME --metrics URL…|--old-uses N`).
    RotationReceipt {
        /// Arguments passed to `defendable-ops rotation-receipt`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Build a signed release directory: the three binaries (cargo auditable, reproducible
    /// paths), CycloneDX SBOMs, in-toto provenance, release.json and SHA256SUMS signed with
    /// RELEASE_SIGNING_KEY (docs/protocols/release.md). Needs no database.
    Release {
        /// The version, X.Y.Z.
        #[arg(long)]
        version: String,
        /// A new or empty directory for the release.
        #[arg(long)]
        out: PathBuf,
        /// `release`, or `dev` (the test suite's quicker variant).
        #[arg(long, default_value = "release")]
        profile: String,
        /// Build again in a second target directory and compare digests (the tag workflow).
        #[arg(long)]
        verify_reproducible: bool,
        /// Tests only: build a work tree with uncommitted changes (the provenance says so).
        #[arg(long, hide = true)]
        allow_dirty: bool,
    },
    /// Record a release as a `release` receipt in OPERATOR_ORG's chain and add its proof
    /// bundle to the directory (`defendable-ops release-receipt --release DIR`).
    ReleaseReceipt {
        /// Arguments passed to `defendable-ops release-receipt`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Rehearse a release against a restored backup, with a rollback check, and record it
    /// (`defendable-ops release-drill --release DIR --backup DIR [--previous DIR]`).
    ReleaseDrill {
        /// Arguments passed to `defendable-ops release-drill`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Report the bucket's versioning and lifecycle rules; in production a missing one fails
    /// (`defendable-ops storage-check [--json]`).
    StorageCheck {
        /// Arguments passed to `defendable-ops storage-check`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// List (and with --apply delete) uploads under the dataset prefix that no catalog version
    /// references (`defendable-ops storage-sweep --prefix P [--older-than 7d] [--apply]`).
    StorageSweep {
        /// Arguments passed to `defendable-ops storage-sweep`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Build the enterprise evidence packet (`defendable-ops packet --out DIR [--api URL]`).
    Packet {
        /// Arguments passed to `defendable-ops packet`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Regenerate docs/env.md from the configuration declaration.
    EnvDocs {
        /// Fail instead of writing when the file is stale.
        #[arg(long)]
        check: bool,
    },
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Cmd::Ci => {
            cargo(&["fmt", "--all", "--", "--check"])?;
            cargo(&[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ])?;
            test()
        }
        Cmd::Test => test(),
        Cmd::Dev { args } => {
            ensure_system_packages(&[POSTGRES])?;
            let mut all = vec!["run", "--package", "defendable-api", "--"];
            all.extend(args.iter().map(String::as_str));
            cargo(&all)
        }
        Cmd::EnvDocs { check } => env_docs(check),
        Cmd::Cloudflare => {
            let dir = root().join("deploy/cloudflare");
            std::fs::create_dir_all(&dir)?;
            for (name, text) in defendable_config::cloudflare::files() {
                std::fs::write(dir.join(name), text)?;
                eprintln!("wrote deploy/cloudflare/{name}");
            }
            Ok(())
        }
        Cmd::Backup { args } => ops("backup", &args),
        Cmd::RestoreDrill { args } => ops("restore-drill", &args),
        Cmd::RotationReceipt { args } => ops("rotation-receipt", &args),
        Cmd::Packet { args } => ops("packet", &args),
        Cmd::Release {
            version,
            out,
            profile,
            verify_reproducible,
            allow_dirty,
        } => release::release(&release::Options {
            version,
            out,
            profile,
            verify_reproducible,
            allow_dirty,
        }),
        Cmd::ReleaseReceipt { args } => ops("release-receipt", &args),
        Cmd::StorageCheck { args } => ops("storage-check", &args),
        Cmd::StorageSweep { args } => ops("storage-sweep", &args),
        Cmd::ReleaseDrill { args } => ops("release-drill", &args),
        Cmd::Deps => deps::check(&root()),
        Cmd::Bench { name } if name == "http" => bench_http(),
        Cmd::Bench { name } => {
            let (package, example) = match name.as_str() {
                "auth" => ("defendable-api", "bench_auth"),
                "ledger" => ("defendable-ledger", "bench_ledger"),
                "datasets" => ("defendable-datasets", "bench_datasets"),
                "drill" => ("defendable-ops", "bench_drill"),
                "tree" => ("defendable-api", "bench_tree"),
                other => {
                    bail!("unknown benchmark {other:?}; known: auth, ledger, datasets, drill, tree, http")
                }
            };
            ensure_system_packages(&[POSTGRES])?;
            cargo(&[
                "run",
                "--release",
                "--package",
                package,
                "--example",
                example,
            ])
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace root")
        .to_path_buf()
}

/// `cargo ARGS` in the workspace root, with the cargo that runs xtask.
fn cargo_command(args: &[&str]) -> Command {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(args).current_dir(root());
    cmd
}

fn cargo(args: &[&str]) -> Result<()> {
    let status = cargo_command(args)
        .status()
        .with_context(|| format!("running cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("`cargo {}` failed with {status}", args.join(" "));
    }
    Ok(())
}

/// Runs `defendable-ops` (release build: drills verify millions of receipts).
fn ops(command: &str, args: &[String]) -> Result<()> {
    ensure_system_packages(&[POSTGRES])?;
    let mut all = vec![
        "run",
        "--quiet",
        "--release",
        "--package",
        "defendable-ops",
        "--",
        command,
    ];
    all.extend(args.iter().map(String::as_str));
    cargo(&all)
}

/// `bench http`: the release server binary under wrk, beside pgbench on the same database.
fn bench_http() -> Result<()> {
    ensure_system_packages(&[POSTGRES, WRK])?;
    cargo(&[
        "build",
        "--release",
        "--package",
        "defendable-api",
        "--bin",
        "defendable-api",
    ])?;
    let server = root().join("target/release/defendable-api");
    let status = cargo_command(&[
        "run",
        "--release",
        "--package",
        "defendable-api",
        "--example",
        "bench_http",
    ])
    .env("BENCH_SERVER_BIN", &server)
    .status()
    .context("running the HTTP benchmark")?;
    if !status.success() {
        bail!("the HTTP benchmark failed with {status}");
    }
    Ok(())
}

fn test() -> Result<()> {
    ensure_system_packages(&[
        POSTGRES,
        SMTP_CAPTURE,
        PROMTOOL,
        PYTHON_VENV,
        NODE,
        CHROMIUM,
        CHROMEDRIVER,
        DNS_SERVER,
        NPM,
    ])?;
    ensure_s3_server()?;
    ensure_python_tool(
        "schemathesis",
        "schemathesis",
        SCHEMATHESIS,
        "schemathesis",
        &[],
    )?;
    ensure_python_tool("moto", "moto[server]", MOTO, "moto_server", &[])?;
    ensure_python_tool("scim2-cli", "scim2-cli", SCIM2_CLI, "scim2", SCIM2_PINS)?;
    ensure_npm_tool("oidc-provider", OIDC_PROVIDER)?;
    // The release test makes a release from the work tree.
    release::ensure_tool(release::AUDITABLE)?;
    release::ensure_tool(release::CYCLONEDX)?;
    deps::check(&root())?;
    pure_cores_build()?;
    alert_rules()?;
    let started = std::time::SystemTime::now();
    let outcome = cargo_test_with_summary();
    write_ci_summary(started, &outcome)?;
    let totals = outcome?;
    if totals.failed > 0 {
        bail!("{} tests failed", totals.failed);
    }
    Ok(())
}

/// What the test run printed in its `test result:` lines, summed.
#[derive(Debug, Default)]
struct Totals {
    binaries: u64,
    passed: u64,
    failed: u64,
    ignored: u64,
}

/// Runs `cargo test --workspace`, passing its output through and summing its result lines.
#[allow(clippy::print_stdout)]
fn cargo_test_with_summary() -> Result<Totals> {
    use std::io::BufRead;
    let mut child = cargo_command(&["test", "--workspace"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("running cargo test")?;
    let stdout = child.stdout.take().context("cargo test stdout")?;
    let mut totals = Totals::default();
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            totals.binaries += 1;
            let count = |word: &str| {
                rest.split(';')
                    .find_map(|part| {
                        part.trim()
                            .trim_start_matches("ok. ")
                            .trim_start_matches("FAILED. ")
                            .strip_suffix(word)
                    })
                    .and_then(|n| n.trim().parse::<u64>().ok())
                    .unwrap_or(0)
            };
            totals.passed += count(" passed");
            totals.failed += count(" failed");
            totals.ignored += count(" ignored");
        }
    }
    let status = child.wait()?;
    if !status.success() && totals.failed == 0 {
        bail!("`cargo test --workspace` failed with {status}");
    }
    Ok(totals)
}

/// Writes target/ci-summary.json: the evidence packet's "latest CI run".
fn write_ci_summary(started: std::time::SystemTime, outcome: &Result<Totals>) -> Result<()> {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(root())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let secs = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    };
    let now = std::time::SystemTime::now();
    let (status, totals) = match outcome {
        Ok(t) if t.failed == 0 => ("passed", Some(t)),
        Ok(t) => ("failed", Some(t)),
        Err(_) => ("error", None),
    };
    let summary = serde_json::json!({
        "suite": "cargo xtask test (cargo test --workspace)",
        "status": status,
        "commit": git(&["rev-parse", "HEAD"]),
        "dirty": git(&["status", "--porcelain"]).is_some_and(|s| !s.is_empty()),
        "started_unix": secs(started),
        "finished_unix": secs(now),
        "test_binaries": totals.map_or(0, |t| t.binaries),
        "passed": totals.map_or(0, |t| t.passed),
        "failed": totals.map_or(0, |t| t.failed),
        "ignored": totals.map_or(0, |t| t.ignored),
        "ci": std::env::var("CI").is_ok_and(|v| v == "true"),
    });
    let dir = root().join("target");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("ci-summary.json"),
        serde_json::to_string_pretty(&summary)? + "\n",
    )?;
    Ok(())
}

/// The cores' pure parts build on their own (`--no-default-features`): the workspace's own build
/// never does, since the server turns the features on for every crate it shares with them, so a
/// server-only item that slips into a pure part would otherwise pass the tests and break the
/// CLI's and embedders' builds.
fn pure_cores_build() -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--offline", "--lib", "--no-default-features"])
        .args(["-p", "defendable-ledger", "-p", "defendable-identity"])
        .args(["-p", "defendable-datasets", "-p", "defendable-sso"])
        .current_dir(root())
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("a core's pure part (--no-default-features) does not build");
    }
    Ok(())
}

/// Checks and unit-tests the Prometheus alert rules with promtool.
fn alert_rules() -> Result<()> {
    let dir = root().join("deploy/prometheus");
    for args in [
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts_test.yml"],
    ] {
        let status = Command::new("promtool")
            .args(args)
            .current_dir(&dir)
            .status()
            .context("running promtool")?;
        if !status.success() {
            bail!("`promtool {}` failed", args.join(" "));
        }
    }
    Ok(())
}

fn env_docs(check: bool) -> Result<()> {
    let path = root().join("docs/env.md");
    let fresh = defendable_config::env_markdown();
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    if current == fresh {
        eprintln!("docs/env.md is current");
        return Ok(());
    }
    if check {
        bail!("docs/env.md is stale: run `cargo xtask env-docs`");
    }
    std::fs::write(&path, fresh).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}
