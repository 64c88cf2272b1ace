//! Tool provisioning for `cargo xtask test` and the benchmarks: system packages from Debian
//! (installed when missing), pinned Python tools in virtual environments and npm packages under
//! `target/tools/`, and the S3-compatible server, each checked before it is installed.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::{cargo, root};

/// The S3-compatible server the dataset tests run on loopback: s3s-fs, from the Rust registry.
pub(crate) fn ensure_s3_server() -> Result<()> {
    if answers_version("s3s-fs") {
        return Ok(());
    }
    eprintln!(
        "installing s3s-fs (an S3-compatible server for the dataset tests) with cargo install"
    );
    cargo(&[
        "install",
        "--locked",
        "s3s-fs@0.14.1",
        "--features",
        "binary",
    ])
}

/// The pinned schemathesis for the contract-fuzzing test.
pub(crate) const SCHEMATHESIS: &str = "4.32.5";
/// The pinned moto, whose server implements the bucket versioning and lifecycle calls the
/// storage-check test reads (keep in step with `MOTO_VERSION` in crates/testkit/src/s3.rs).
pub(crate) const MOTO: &str = "5.2.5";
/// The SCIM compliance suite (scim2-tester, through scim2-cli's `test` command) the SCIM test
/// runs against the server; keep in step with `SCIM2_CLI` in crates/api/tests/it/scim_http.rs.
pub(crate) const SCIM2_CLI: &str = "0.6.0";
/// What scim2-cli 0.6.0 runs, pinned too, so the suite's checks do not change under us.
pub(crate) const SCIM2_PINS: &[&str] = &[
    "scim2-tester==0.5.2",
    "scim2-client==0.13.2",
    "scim2-models==0.12.3",
];

/// A pinned Python tool in its own virtual environment under `target/tools/NAME-VERSION` (never
/// in the work tree); the tests find it at the same path.
pub(crate) fn ensure_python_tool(
    name: &str,
    requirement: &str,
    version: &str,
    program: &str,
    pins: &[&str],
) -> Result<()> {
    let venv = root()
        .join("target/tools")
        .join(format!("{name}-{version}"));
    if venv.join("bin").join(program).is_file() {
        return Ok(());
    }
    eprintln!("installing {name} {version} under {}", venv.display());
    let venv_str = venv.to_str().context("target path is not UTF-8")?;
    run("/usr/bin/python3", &["-m", "venv", venv_str])?;
    let pip = venv.join("bin/pip");
    let top = format!("{requirement}=={version}");
    let mut args = vec!["install", "--quiet", "--disable-pip-version-check", &top];
    args.extend_from_slice(pins);
    run(pip.to_str().context("target path is not UTF-8")?, &args)
}

/// The pinned oidc-provider (npm) the SSO tests sign in through; keep in step with
/// `OIDC_PROVIDER_VERSION` in crates/testkit/src/oidc.rs.
pub(crate) const OIDC_PROVIDER: &str = "8.8.1";

/// An npm package, pinned, in its own directory under `target/tools/NAME-VERSION` (never in the
/// work tree); the tests find it at the same path.
pub(crate) fn ensure_npm_tool(name: &str, version: &str) -> Result<()> {
    let dir = root()
        .join("target/tools")
        .join(format!("{name}-{version}"));
    if dir.join("node_modules").join(name).is_dir() {
        return Ok(());
    }
    eprintln!("installing {name} {version} under {}", dir.display());
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("package.json"), "{\"private\": true}\n")?;
    run(
        "npm",
        &[
            "install",
            "--prefix",
            dir.to_str().context("target path is not UTF-8")?,
            "--no-audit",
            "--no-fund",
            "--save-exact",
            &format!("{name}@{version}"),
        ],
    )
}

/// A system requirement: how to tell it is there, and the Debian package that provides it.
pub(crate) struct Requirement {
    what: &'static str,
    present: fn() -> bool,
    debian_package: &'static str,
}

/// PostgreSQL's server binaries: the development cluster and the test harness run them.
pub(crate) const POSTGRES: Requirement = Requirement {
    what: "PostgreSQL server binaries (initdb, pg_ctl)",
    present: postgres_binaries_present,
    debian_package: "postgresql",
};

/// promtool, to check and unit-test the alert rules.
pub(crate) const PROMTOOL: Requirement = Requirement {
    what: "promtool (Prometheus rule checker)",
    present: || answers_version("promtool"),
    debian_package: "prometheus",
};

/// wrk, the HTTP load generator of `bench http`.
pub(crate) const WRK: Requirement = Requirement {
    what: "wrk (HTTP load generator)",
    present: || {
        Command::new("wrk")
            .arg("--version")
            .output()
            .map(|_| true)
            .unwrap_or(false)
    },
    debian_package: "wrk",
};

pub(crate) fn answers_version(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// node runs the share page's verifier module against the Rust test vectors.
pub(crate) const NODE: Requirement = Requirement {
    what: "node (runs the share page's verifier against the test vectors)",
    present: || answers_version("node"),
    debian_package: "nodejs",
};

/// npm, which installs the pinned oidc-provider the SSO tests sign in through.
pub(crate) const NPM: Requirement = Requirement {
    what: "npm (installs the OpenID Provider the SSO tests run)",
    present: || answers_version("npm"),
    debian_package: "npm",
};

/// Headless Chromium for the page tests.
pub(crate) const CHROMIUM: Requirement = Requirement {
    what: "chromium (the page tests' browser)",
    present: || Path::new("/usr/bin/chromium").is_file(),
    debian_package: "chromium",
};

/// ChromeDriver, the WebDriver server the page tests drive Chromium through.
pub(crate) const CHROMEDRIVER: Requirement = Requirement {
    what: "chromedriver (WebDriver for the page tests)",
    present: || answers_version("chromedriver"),
    debian_package: "chromium-driver",
};

/// A real SMTP server for the mail delivery test.
pub(crate) const SMTP_CAPTURE: Requirement = Requirement {
    what: "the aiosmtpd SMTP capture server for /usr/bin/python3",
    present: aiosmtpd_present,
    debian_package: "python3-aiosmtpd",
};

/// A DNS server the domain-verification tests start on loopback with the TXT records they
/// publish: dnsmasq (from dnsmasq-base, which starts no system service).
pub(crate) const DNS_SERVER: Requirement = Requirement {
    what: "dnsmasq (a DNS server for the domain-verification tests)",
    present: || Path::new("/usr/sbin/dnsmasq").is_file(),
    debian_package: "dnsmasq-base",
};

/// Python's venv (with ensurepip) for /usr/bin/python3: schemathesis is installed into a
/// virtual environment under target/.
pub(crate) const PYTHON_VENV: Requirement = Requirement {
    what: "the venv module of /usr/bin/python3",
    present: || {
        Command::new("/usr/bin/python3")
            .args(["-c", "import venv, ensurepip"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    },
    debian_package: "python3-venv",
};

pub(crate) fn aiosmtpd_present() -> bool {
    Command::new("/usr/bin/python3")
        .args(["-c", "import aiosmtpd"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Installs the missing requirements with apt-get when running as root on a Debian-like
/// machine; otherwise names the packages to install.
pub(crate) fn ensure_system_packages(reqs: &[Requirement]) -> Result<()> {
    let missing: Vec<&Requirement> = reqs.iter().filter(|r| !(r.present)()).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let packages: Vec<&str> = missing.iter().map(|r| r.debian_package).collect();
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if !(is_root && Path::new("/usr/bin/apt-get").exists()) {
        let what: Vec<&str> = missing.iter().map(|r| r.what).collect();
        bail!(
            "missing: {}. Install them (Debian/Ubuntu: `sudo apt-get install {}`)",
            what.join("; "),
            packages.join(" ")
        );
    }
    eprintln!("installing {} with apt-get", packages.join(" "));
    run("apt-get", &["update", "-q"])?;
    let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
    args.extend(&packages);
    run("apt-get", &args)?;
    for r in missing {
        if !(r.present)() {
            bail!(
                "apt-get installed {} but {} is still missing",
                r.debian_package,
                r.what
            );
        }
    }
    Ok(())
}

pub(crate) fn postgres_binaries_present() -> bool {
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

pub(crate) fn run(program: &str, args: &[&str]) -> Result<()> {
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
