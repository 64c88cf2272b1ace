//! `cargo xtask`: the project's automation, so CI and developers run the same steps.

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
            ensure_postgres()?;
            let mut all = vec!["run", "--package", "defendable-api", "--"];
            all.extend(args.iter().map(String::as_str));
            cargo(&all)
        }
        Cmd::EnvDocs { check } => env_docs(check),
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace root")
        .to_path_buf()
}

fn cargo(args: &[&str]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .args(args)
        .current_dir(root())
        .status()
        .with_context(|| format!("running {cargo} {}", args.join(" ")))?;
    if !status.success() {
        bail!("`cargo {}` failed with {status}", args.join(" "));
    }
    Ok(())
}

fn test() -> Result<()> {
    ensure_postgres()?;
    cargo(&["test", "--workspace"])
}

/// Makes sure PostgreSQL's server binaries (initdb, pg_ctl) exist, installing Debian's package
/// when running as root on a machine with apt-get; the embedded development cluster and the
/// test harness start PostgreSQL from them.
fn ensure_postgres() -> Result<()> {
    if postgres_binaries_present() {
        return Ok(());
    }
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let has_apt = Path::new("/usr/bin/apt-get").exists();
    if !(is_root && has_apt) {
        bail!(
            "PostgreSQL server binaries (initdb, pg_ctl) are missing: install them \
             (Debian/Ubuntu: `sudo apt-get install postgresql`) or set TEST_DATABASE_URL/DATABASE_URL"
        );
    }
    eprintln!("installing PostgreSQL server binaries with apt-get");
    run("apt-get", &["update", "-q"])?;
    run(
        "apt-get",
        &[
            "install",
            "-y",
            "-q",
            "--no-install-recommends",
            "postgresql",
        ],
    )?;
    if !postgres_binaries_present() {
        bail!("apt-get installed postgresql but initdb/pg_ctl are still not found");
    }
    Ok(())
}

fn postgres_binaries_present() -> bool {
    let has_both = |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| has_both(&d)))
        .unwrap_or(false);
    on_path
        || std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| has_both(&e.path().join("bin")))
}

fn run(program: &str, args: &[&str]) -> Result<()> {
    let status = Command::new(program)
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .with_context(|| format!("running {program}"))?;
    if !status.success() {
        bail!("`{program} {}` failed with {status}", args.join(" "));
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
