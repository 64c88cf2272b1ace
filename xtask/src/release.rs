//! `cargo xtask release`: builds the three binaries from a clean tree, reproducibly, with their
//! dependency lists embedded (cargo auditable), writes a CycloneDX SBOM per binary crate, an
//! in-toto provenance statement and `release.json`, then has the release's own
//! `defendable-ops release-sign` write and sign SHA256SUMS (docs/protocols/release.md). No
//! database is involved, so a tag workflow runs it.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::{cargo_command, root};

/// Pinned release tools, installed with `cargo install --locked` when missing.
pub const AUDITABLE: (&str, &str) = ("cargo-auditable", "0.7.7");
pub const CYCLONEDX: (&str, &str) = ("cargo-cyclonedx", "0.5.9");

/// The packages a release builds, and the binary each ships.
const PACKAGES: [(&str, &str); 3] = [
    ("defendable-api", "defendable-api"),
    ("defendable-cli", "defendable"),
    ("defendable-ops", "defendable-ops"),
];

/// What `release` was asked for.
#[derive(Debug)]
pub struct Options {
    pub version: String,
    pub out: PathBuf,
    /// `release`, or `dev` for the test suite's quicker variant.
    pub profile: String,
    pub verify_reproducible: bool,
    /// Tests only: build a work tree with uncommitted changes (recorded as such).
    pub allow_dirty: bool,
}

fn git(args: &[&str]) -> Result<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(root())
        .output()
        .context("running git")?;
    if !out.status.success() {
        bail!(
            "`git {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

pub fn ensure_tool((name, version): (&str, &str)) -> Result<()> {
    let found = cargo_command(&["install", "--list"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.starts_with(&format!("{name} v{version}:")))
        })
        .unwrap_or(false);
    if found {
        return Ok(());
    }
    eprintln!("installing {name} {version} with cargo install");
    crate::cargo(&["install", "--locked", &format!("{name}@{version}")])
}

fn sha256_hex(path: &Path) -> Result<String> {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .with_context(|| format!("sha256sum {}", path.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned())
}

/// Builds the binaries into `target_dir` with every path remapped, so two builds of one commit
/// in different target directories are byte for byte equal.
fn build(profile: &str, target_dir: &Path, epoch: i64) -> Result<PathBuf> {
    let home = std::env::var("CARGO_HOME").unwrap_or_else(|_| {
        format!(
            "{}/.cargo",
            std::env::var("HOME").unwrap_or_else(|_| "/root".into())
        )
    });
    let rustflags = [
        format!("--remap-path-prefix={}=/build/defendable", root().display()),
        format!("--remap-path-prefix={home}=/cargo"),
        format!("--remap-path-prefix={}=/build/target", target_dir.display()),
    ]
    .join(" ");
    let mut args = vec!["auditable", "build", "--locked", "--profile", profile];
    for (package, bin) in PACKAGES {
        args.extend(["--package", package, "--bin", bin]);
    }
    let status = cargo_command(&args)
        .env("CARGO_TARGET_DIR", target_dir)
        .env("RUSTFLAGS", rustflags)
        .env("SOURCE_DATE_EPOCH", epoch.to_string())
        .env("CARGO_INCREMENTAL", "0")
        .status()
        .context("running cargo auditable build")?;
    if !status.success() {
        bail!("the release build failed with {status}");
    }
    let dir = if profile == "dev" { "debug" } else { profile };
    Ok(target_dir.join(dir))
}

/// One CycloneDX SBOM per shipped package, written next to each manifest by cargo-cyclonedx
/// and moved into the release directory (nothing is left in the work tree).
fn sboms(out: &Path) -> Result<Vec<String>> {
    let name = "defendable-release-sbom";
    let status = cargo_command(&["cyclonedx", "--format", "json", "--override-filename", name])
        .status()
        .context("running cargo cyclonedx")?;
    let mut written = Vec::new();
    let crates = root().join("crates");
    let mut generated: Vec<PathBuf> = std::fs::read_dir(&crates)?
        .flatten()
        .map(|e| e.path().join(format!("{name}.json")))
        .collect();
    generated.push(root().join("xtask").join(format!("{name}.json")));
    for (package, _) in PACKAGES {
        let dir = package.trim_start_matches("defendable-");
        let from = crates.join(dir).join(format!("{name}.json"));
        if from.is_file() {
            let file = format!("{package}.cdx.json");
            std::fs::copy(&from, out.join(&file))?;
            written.push(file);
        }
    }
    for path in generated {
        let _ = std::fs::remove_file(path);
    }
    if !status.success() || written.len() != PACKAGES.len() {
        bail!("cargo cyclonedx did not write an SBOM for every shipped package ({status})");
    }
    Ok(written)
}

/// `cargo xtask release`.
pub fn release(opts: &Options) -> Result<()> {
    let parts: Vec<&str> = opts.version.split('.').collect();
    if parts.len() != 3
        || parts
            .iter()
            .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        bail!("--version {:?} is not X.Y.Z (e.g. 1.4.0)", opts.version);
    }
    if !matches!(opts.profile.as_str(), "release" | "dev") {
        bail!("--profile is release or dev");
    }
    let dirty = !git(&["status", "--porcelain"])?.is_empty();
    if dirty && !opts.allow_dirty {
        bail!("the work tree has uncommitted changes: commit or stash them; a release is built from a commit");
    }
    if opts.out.exists() && std::fs::read_dir(&opts.out)?.next().is_some() {
        bail!("{} is not empty", opts.out.display());
    }
    std::fs::create_dir_all(&opts.out)?;
    let out = opts.out.canonicalize()?;
    ensure_tool(AUDITABLE)?;
    ensure_tool(CYCLONEDX)?;
    let commit = git(&["rev-parse", "HEAD"])?;
    let epoch: i64 = git(&["log", "-1", "--format=%ct"])?
        .parse()
        .context("the commit time")?;
    let toolchain = String::from_utf8_lossy(
        &Command::new("rustc")
            .arg("-V")
            .output()
            .context("rustc -V")?
            .stdout,
    )
    .trim()
    .to_owned();

    let started = time_now();
    let timer = std::time::Instant::now();
    let target = root().join("target/release-build").join(&opts.profile);
    let built = build(&opts.profile, &target, epoch)?;
    let mut subjects = Vec::new();
    for (_, bin) in PACKAGES {
        let to = out.join(bin);
        std::fs::copy(built.join(bin), &to).with_context(|| format!("copying {bin}"))?;
        subjects.push(json!({"name": bin, "digest": {"sha256": sha256_hex(&to)?}}));
    }
    let build_secs = timer.elapsed().as_secs_f64();
    if opts.verify_reproducible {
        let again = build(
            &opts.profile,
            &root()
                .join("target/release-build")
                .join(format!("{}-again", opts.profile)),
            epoch,
        )?;
        for (_, bin) in PACKAGES {
            let (a, b) = (sha256_hex(&out.join(bin))?, sha256_hex(&again.join(bin))?);
            if a != b {
                bail!("{bin} is not reproducible: {a} in one target directory, {b} in another");
            }
        }
        eprintln!("reproducible: a second build in another target directory has the same digests");
    }
    let sbom_files = sboms(&out)?;

    let info = json!({
        "version": opts.version,
        "commit": commit,
        "profile": opts.profile,
        "toolchain": toolchain,
        "source_date_epoch": epoch,
    });
    std::fs::write(
        out.join("release.json"),
        serde_json::to_string_pretty(&info)? + "\n",
    )?;
    let builder = std::env::var("GITHUB_WORKFLOW_REF")
        .map(|r| format!("https://github.com/{r}"))
        .unwrap_or_else(|_| format!("local:{}", hostname()));
    let provenance = json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": subjects,
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {
            "buildDefinition": {
                "buildType": "https://github.com/defendable/defendable/blob/main/docs/protocols/release.md#build-type-v1",
                "externalParameters": {
                    "version": opts.version,
                    "profile": opts.profile,
                    "source": {"commit": commit, "dirty": dirty},
                },
                "internalParameters": {
                    "toolchain": toolchain,
                    "source_date_epoch": epoch,
                    "remapped_paths": ["/build/defendable", "/cargo", "/build/target"],
                    "tools": [format!("{}@{}", AUDITABLE.0, AUDITABLE.1), format!("{}@{}", CYCLONEDX.0, CYCLONEDX.1)],
                },
                "resolvedDependencies": [
                    {"uri": format!("git+file://defendable@{commit}"), "digest": {"gitCommit": commit}},
                    {"name": "Cargo.lock", "digest": {"sha256": sha256_hex(&root().join("Cargo.lock"))?}},
                ],
            },
            "runDetails": {
                "builder": {"id": builder},
                "metadata": {"startedOn": started, "finishedOn": time_now()},
            },
        },
    });
    std::fs::write(
        out.join("provenance.intoto.json"),
        serde_json::to_string_pretty(&provenance)? + "\n",
    )?;
    // The release's own operations binary signs it (RELEASE_SIGNING_KEY; development keeps a
    // generated key under DATA_DIR/dev-secrets/).
    let status = Command::new(out.join("defendable-ops"))
        .args(["release-sign", "--release"])
        .arg(&out)
        .current_dir(root())
        .status()
        .context("running the release's defendable-ops release-sign")?;
    if !status.success() {
        bail!("defendable-ops release-sign failed with {status}");
    }
    eprintln!(
        "release {} ({}) in {}: {} binaries built in {build_secs:.1} s, {} SBOMs, provenance, signed SHA256SUMS",
        opts.version,
        opts.profile,
        out.display(),
        PACKAGES.len(),
        sbom_files.len()
    );
    Ok(())
}

fn time_now() -> String {
    String::from_utf8_lossy(
        &Command::new("date")
            .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
            .output()
            .map(|o| o.stdout)
            .unwrap_or_default(),
    )
    .trim()
    .to_owned()
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}
