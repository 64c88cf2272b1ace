//! `cargo xtask release-drill`: rehearse a release on a restored copy of real data before it
//! ships (docs/protocols/release.md). Verifies the release (signature, checksums, its `release`
//! receipt's proof bundle) before touching anything; restores the backup into a throwaway
//! cluster; applies the new release's migrations with its own binary; starts the new server with
//! production rules on loopback (the drill exception: http URLs, `LEDGER_NAME=drill.invalid`, a
//! fresh ledger key, test secrets, SMTP to a capture server here, a local object store); runs a
//! smoke suite through the new CLI; then starts the previous release on the migrated database
//! and runs the read-only part (the way back); records a `release_drill` receipt, pass or fail,
//! and drops everything it made.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use defendable_ledger::{LedgerName, SigningKey};
use ring::rand::SecureRandom as _;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

mod process;
mod server;
mod smtp;

use process::{command, run};
use server::Server;
use smtp::SmtpCapture;

use crate::drill::{hostname, report_lines, restore, Check, Isolated, Target};
use crate::manifest::Manifest;
use crate::record::{record_operation, Operation};
use crate::release::{release_public, verify_release, VerifiedRelease, RECEIPT_BUNDLE};
use crate::{now_compact, now_rfc3339, sha256_file, Deployment, OpsError, Result};

/// The drill's log name: `.invalid` (RFC 2606), so its checkpoints never pass for production.
pub const DRILL_LEDGER_NAME: &str = "drill.invalid";
const SMOKE_EMAIL: &str = "release-drill@drill.invalid";
const SMOKE_DATASET: &str = "release-drill-smoke";
const WAIT: Duration = Duration::from_secs(60);

/// What to drill.
#[derive(Debug, Clone)]
pub struct ReleaseDrillOptions {
    /// The new release's directory.
    pub release: PathBuf,
    /// The backup to restore.
    pub backup: PathBuf,
    /// The release running today (its server and CLI run the read-only checks on the migrated
    /// database).
    pub previous: Option<PathBuf>,
    /// The release vkeys pinned (never a directory's own `release.vkey`; empty is refused).
    pub vkeys: Vec<String>,
    /// Tests only: SQL applied to the migrated database after the new release's smoke suite,
    /// standing in for a new release's migration that breaks the previous one.
    pub inject_migration: Option<PathBuf>,
    /// Where to write the JSON report (default: `BACKUP/release-drill-<time>.json`).
    pub report: Option<PathBuf>,
    /// The stager's upload prefix the drill's storage sweep lists (never deletes) against the
    /// restored catalog.
    pub sweep_prefix: String,
}

/// A release drill's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct ReleaseDrillReport {
    /// Whether every check held.
    pub ok: bool,
    /// When it ran.
    pub ran_at: String,
    /// The release drilled (as its directory says, when it verified).
    pub version: Option<String>,
    /// Its commit.
    pub commit: Option<String>,
    /// The previous release's version.
    pub previous_version: Option<String>,
    /// SHA-256 of the backup's encrypted dump.
    pub backup_sha256: String,
    /// Every check, in order.
    pub checks: Vec<Check>,
    /// The failed checks' findings.
    pub failures: Vec<String>,
    /// Step durations in milliseconds.
    pub durations_ms: BTreeMap<String, u64>,
    /// The `release_drill` receipt.
    pub receipt_id: Option<String>,
    /// Where this report was written.
    pub report_path: Option<String>,
}

impl ReleaseDrillReport {
    /// The report for people.
    pub fn human(&self) -> String {
        let mut out = vec![format!(
            "release drill of {} (previous {}): {}",
            self.version.as_deref().unwrap_or("an unverified release"),
            self.previous_version.as_deref().unwrap_or("none given"),
            if self.ok { "PASS" } else { "FAIL" }
        )];
        out.extend(report_lines(
            &self.checks,
            &self.durations_ms,
            self.receipt_id.as_deref(),
            self.report_path.as_deref(),
        ));
        out.join("\n")
    }
}

/// Checks and timings as the drill goes.
#[derive(Default)]
struct Steps {
    checks: Vec<Check>,
    durations: BTreeMap<String, u64>,
}

impl Steps {
    fn check(&mut self, name: &str, ok: bool, detail: impl Into<String>) -> bool {
        self.checks.push(Check {
            name: name.to_owned(),
            ok,
            detail: detail.into(),
        });
        ok
    }

    fn result<T>(&mut self, name: &str, r: std::result::Result<T, String>, ok: &str) -> Option<T> {
        match r {
            Ok(v) => {
                self.check(name, true, ok);
                Some(v)
            }
            Err(e) => {
                self.check(name, false, e);
                None
            }
        }
    }

    /// A check whose finding is its outcome's text, either way.
    fn outcome(&mut self, name: &str, r: std::result::Result<String, String>) -> bool {
        match r {
            Ok(detail) => self.check(name, true, detail),
            Err(e) => self.check(name, false, e),
        }
    }

    fn time(&mut self, step: &str, since: Instant) {
        self.durations
            .insert(step.to_owned(), since.elapsed().as_millis() as u64);
    }

    fn failed(&self) -> bool {
        self.checks.iter().any(|c| !c.ok)
    }
}

/// Runs a release drill and records it. Returns an error only when the drill could not run at
/// all (settings); every finding, a refused release included, is a failed report.
pub async fn release_drill(
    dep: &Deployment,
    opts: &ReleaseDrillOptions,
) -> Result<ReleaseDrillReport> {
    let (operator, _) = dep.operator_org().await?;
    let started = Instant::now();
    let mut steps = Steps::default();
    // A release drill takes only a backup whose manifest a pinned backup key signed.
    let (manifest, _) = Manifest::load(&opts.backup, &dep.backup_vkeys()?, false)?;

    let t = Instant::now();
    let release = check_release(dep, opts, &mut steps);
    let previous = opts.previous.as_ref().and_then(|dir| {
        steps.result(
            "previous release",
            verify_release(dir, &opts.vkeys).map_err(|e| e.to_string()),
            &format!("{} verifies", dir.display()),
        )
    });
    let dump = opts.backup.join(&manifest.dump.file);
    let digest = sha256_file(&dump)?;
    steps.check(
        "backup digest",
        digest == manifest.dump.sha256,
        format!("SHA-256 {digest}, manifest {}", manifest.dump.sha256),
    );
    steps.time("verify_release", t);

    // Nothing is restored unless everything above held.
    if let (Some(release), false) = (&release, steps.failed()) {
        let work = std::env::temp_dir().join(format!(
            "defendable-release-drill-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&work).map_err(|e| OpsError::io(&work, e))?;
        let outcome = rehearse(
            dep,
            opts,
            release,
            previous.as_ref(),
            &manifest,
            &work,
            &mut steps,
        )
        .await;
        let _ = std::fs::remove_dir_all(&work);
        outcome?;
    }
    steps
        .durations
        .insert("total".into(), started.elapsed().as_millis() as u64);

    let failures: Vec<String> = steps
        .checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| format!("{}: {}", c.name, c.detail))
        .collect();
    let mut report = ReleaseDrillReport {
        ok: failures.is_empty(),
        ran_at: now_rfc3339(),
        version: release.as_ref().map(|r| r.info.version.clone()),
        commit: release.as_ref().map(|r| r.info.commit.clone()),
        previous_version: previous.as_ref().map(|r| r.info.version.clone()),
        backup_sha256: manifest.dump.sha256.clone(),
        checks: steps.checks,
        failures,
        durations_ms: steps.durations,
        receipt_id: None,
        report_path: None,
    };
    let public = json!({
        "result": if report.ok { "pass" } else { "fail" },
        "version": report.version,
        "commit": report.commit,
        "previous_version": report.previous_version,
        "backup_sha256": report.backup_sha256,
        "checks": report.checks.iter().map(|c| json!({"name": c.name, "ok": c.ok})).collect::<Vec<_>>(),
        "failures": report.failures.iter().take(20).collect::<Vec<_>>(),
        "durations_ms": report.durations_ms,
    });
    let private = json!({
        "release_dir": opts.release.display().to_string(),
        "previous_dir": opts.previous.as_ref().map(|p| p.display().to_string()),
        "backup_dir": opts.backup.display().to_string(),
        "host": hostname(),
    });
    report.receipt_id = Some(
        record_operation(
            dep,
            operator,
            Operation {
                kind: "release_drill",
                action: defendable_store::audit::AuditAction::OpsReleaseDrill,
                public,
                private: Some(private),
            },
        )
        .await?,
    );
    let path = opts.report.clone().unwrap_or_else(|| {
        opts.backup
            .join(format!("release-drill-{}.json", now_compact()))
    });
    report.report_path = Some(path.display().to_string());
    let text = serde_json::to_vec_pretty(&report)
        .map_err(|e| OpsError::Release(format!("report: {e}")))?;
    std::fs::write(&path, text).map_err(|e| OpsError::io(&path, e))?;
    Ok(report)
}

/// The release's signature and checksums, and its `release` receipt's proof bundle under the
/// deployment's published keys, naming this very release.
fn check_release(
    dep: &Deployment,
    opts: &ReleaseDrillOptions,
    steps: &mut Steps,
) -> Option<VerifiedRelease> {
    let release = steps.result(
        "release signature and checksums",
        verify_release(&opts.release, &opts.vkeys).map_err(|e| e.to_string()),
        "SHA256SUMS is signed by the release key and every file matches it",
    )?;
    let bundle = (|| -> std::result::Result<String, String> {
        let path = opts.release.join(RECEIPT_BUNDLE);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            format!(
                "{}: {e} (run `cargo xtask release-receipt --release DIR` first)",
                path.display()
            )
        })?;
        let bundle: defendable_ledger::ProofBundle =
            serde_json::from_str(&text).map_err(|e| format!("{RECEIPT_BUNDLE}: {e}"))?;
        let keys = dep.vkeys().map_err(|e| e.to_string())?;
        let verified = defendable_ledger::bundle::verify_bundle(&bundle, &keys)
            .map_err(|e| format!("{RECEIPT_BUNDLE}: {e}"))?;
        let public = &bundle.receipt.body["public"];
        let kind = bundle.receipt.body["kind"].as_str().unwrap_or_default();
        if kind != "release" || *public != release_public(&release) {
            return Err(format!(
                "{RECEIPT_BUNDLE} records {} {}, not this release's digests",
                kind, public["version"]
            ));
        }
        Ok(format!(
            "{} is leaf {} of a log of {} under {}",
            bundle.receipt.receipt_id,
            verified.seq,
            verified.checkpoint.head.size,
            verified.checkpoint.signed_by
        ))
    })();
    match bundle {
        Ok(detail) => steps.check("release receipt", true, detail),
        Err(e) => steps.check("release receipt", false, e),
    };
    Some(release)
}

#[allow(clippy::too_many_arguments)]
async fn rehearse(
    dep: &Deployment,
    opts: &ReleaseDrillOptions,
    release: &VerifiedRelease,
    previous: Option<&VerifiedRelease>,
    manifest: &Manifest,
    work: &Path,
    steps: &mut Steps,
) -> Result<()> {
    let t = Instant::now();
    let isolated = Isolated::create(&Target::Cluster(work.join("pg"))).await?;
    let (dump, identity, url) = (
        opts.backup.join(&manifest.dump.file),
        dep.identity()?,
        isolated.url.clone(),
    );
    let restored = tokio::task::spawn_blocking(move || restore(&dump, &identity, &url))
        .await
        .map_err(|e| OpsError::Setup(e.to_string()))?;
    steps.time("restore", t);
    let outcome = match restored {
        Ok(()) => {
            steps.check(
                "restore",
                true,
                "decrypted and restored into a throwaway cluster",
            );
            on_restored(dep, opts, release, previous, &isolated.url, work, steps).await
        }
        Err(e) => {
            steps.check("restore", false, e.to_string());
            Ok(())
        }
    };
    let t = Instant::now();
    let dropped = isolated.drop().await;
    steps.time("drop", t);
    outcome?;
    dropped
}

/// Everything that runs against the restored database.
async fn on_restored(
    dep: &Deployment,
    opts: &ReleaseDrillOptions,
    release: &VerifiedRelease,
    previous: Option<&VerifiedRelease>,
    db_url: &str,
    work: &Path,
    steps: &mut Steps,
) -> Result<()> {
    let env = DrillEnv::new(db_url, work).await?;
    let t = Instant::now();
    let migrated = run(
        &release.dir.join("defendable-api"),
        &["migrate"],
        &env.server_vars(),
        None,
    )
    .await;
    steps.time("migrate", t);
    if !steps.check(
        "migrations",
        migrated.is_ok(),
        match &migrated {
            Ok(_) => "the new release's defendable-api applied its migrations".to_owned(),
            Err(e) => e.clone(),
        },
    ) {
        return Ok(());
    }
    let t = Instant::now();
    let restored_ok = restored_ledgers(db_url, steps).await;
    steps.time("verify_restored_ledgers", t);
    if !restored_ok {
        return Ok(());
    }
    let t = Instant::now();
    storage(dep, opts, release, db_url, steps).await;
    steps.time("storage", t);

    let t = Instant::now();
    let smoke = {
        let server = Server::start(&release.dir, &env, work.join("new-server.log")).await;
        match steps.result(
            "new server",
            server,
            "started with production rules, /readyz is 200",
        ) {
            Some(server) => {
                let smoke = new_release_smoke(&release.dir, &env, steps).await;
                server.stop().await;
                smoke
            }
            None => None,
        }
    };
    steps.time("smoke_new", t);
    let Some(smoke) = smoke else {
        return Ok(());
    };

    if let Some(sql) = &opts.inject_migration {
        let text = std::fs::read_to_string(sql).map_err(|e| OpsError::io(sql, e))?;
        let client = crate::postgres::connect(db_url).await?;
        client.batch_execute(&text).await?;
    }
    let t = Instant::now();
    match previous {
        None => {
            steps.check("rollback", true, "skipped: no --previous release was given");
        }
        Some(prev) => {
            let server = Server::start(&prev.dir, &env, work.join("previous-server.log")).await;
            if let Some(server) = steps.result(
                "rollback: previous server",
                server,
                &format!("{} started on the migrated database", prev.info.version),
            ) {
                read_only_smoke(&prev.dir, &env, &smoke, "rollback: ", steps).await;
                server.stop().await;
            }
        }
    }
    steps.time("rollback", t);
    Ok(())
}

/// Every restored organization's chain, link by link, and its tree.
async fn restored_ledgers(db_url: &str, steps: &mut Steps) -> bool {
    let outcome = async {
        let client = crate::postgres::connect(db_url).await?;
        let reports = defendable_ledger::store::verify_all(&client).await?;
        Ok::<_, OpsError>(reports)
    }
    .await;
    match outcome {
        Ok(reports) => {
            let bad: Vec<String> = reports
                .iter()
                .filter_map(|r| {
                    r.failure
                        .as_ref()
                        .map(|f| format!("org {}: receipt seq {}: {}", r.org, f.seq, f.reason))
                })
                .collect();
            let receipts: u64 = reports.iter().map(|r| r.checked).sum();
            steps.check(
                "restored ledgers",
                bad.is_empty(),
                if bad.is_empty() {
                    format!(
                        "{} organizations' chains and trees verify after the migrations ({receipts} receipts)",
                        reports.len()
                    )
                } else {
                    bad.join("; ")
                },
            )
        }
        Err(e) => steps.check("restored ledgers", false, e.to_string()),
    }
}

/// The new release's storage commands against the deployment's object store: `storage-check`
/// (its bucket settings; in production a missing one fails the drill) and `storage-sweep`
/// without `--apply` against the restored catalog (a listing: the drill deletes nothing).
async fn storage(
    dep: &Deployment,
    opts: &ReleaseDrillOptions,
    release: &VerifiedRelease,
    db_url: &str,
    steps: &mut Steps,
) {
    let ops = release.dir.join("defendable-ops");
    let mut vars = object_store_vars(dep);
    steps.outcome(
        "storage check",
        run(&ops, &["storage-check"], &vars, None)
            .await
            .map(|out| out.lines().map(str::trim).collect::<Vec<_>>().join("; ")),
    );
    vars.push(("DATABASE_URL".into(), db_url.to_owned()));
    let swept = run(
        &ops,
        &["storage-sweep", "--prefix", &opts.sweep_prefix, "--json"],
        &vars,
        None,
    )
    .await
    .and_then(|out| {
        let r: Value = serde_json::from_str(&out).map_err(|e| format!("its report: {e}"))?;
        Ok(format!(
            "{} objects under {}, {} referenced by no restored catalog version (listed, not deleted)",
            r["listed"],
            opts.sweep_prefix,
            r["orphans"].as_array().map_or(0, Vec::len)
        ))
    });
    steps.outcome("storage sweep", swept);
}

/// The deployment's object store settings, for the drilled release's storage commands: its
/// `APP_ENV`, `DATA_DIR` (the default store), `OBJECT_STORE_URL` and the `AWS_*` variables.
fn object_store_vars(dep: &Deployment) -> Vec<(String, String)> {
    let data_dir =
        std::fs::canonicalize(&dep.config.data_dir).unwrap_or_else(|_| dep.config.data_dir.clone());
    let mut vars = vec![
        (
            "APP_ENV".to_owned(),
            if dep.config.app_env.is_production() {
                "production"
            } else {
                "development"
            }
            .to_owned(),
        ),
        ("DATA_DIR".to_owned(), data_dir.display().to_string()),
    ];
    if let Some(url) = &dep.config.object_store_url {
        vars.push(("OBJECT_STORE_URL".to_owned(), url.to_string()));
    }
    // The S3 client reads these from the environment, in the deployment as in the release.
    vars.extend(std::env::vars().filter(|(k, _)| k.starts_with("AWS_")));
    vars
}

/// What the new release's smoke suite left for the read-only checks.
struct Smoke {
    receipt_id: String,
    share_url: String,
}

async fn new_release_smoke(dir: &Path, env: &DrillEnv, steps: &mut Steps) -> Option<Smoke> {
    let cli = dir.join("defendable");
    let signed_in = sign_in(&cli, env).await;
    steps.result(
        "sign-in",
        signed_in,
        &format!("{SMOKE_EMAIL} signed in through the captured mail with `defendable login`"),
    )?;
    let recorded = run(
        &cli,
        &[
            "--json",
            "receipts",
            "record",
            "--kind",
            "release_drill.smoke",
            "--public",
            "-",
        ],
        &env.cli_vars(),
        Some(r#"{"smoke": "release drill"}"#),
    )
    .await
    .and_then(|out| field(&out, "receipt_id"));
    let receipt_id = steps.result(
        "record a receipt",
        recorded,
        "`defendable receipts record` answered with a receipt",
    )?;
    let shared = run(
        &cli,
        &["--json", "receipts", "share", &receipt_id],
        &env.cli_vars(),
        None,
    )
    .await
    .and_then(|out| field(&out, "url"));
    let share_url = steps.result(
        "share it",
        shared,
        "`defendable receipts share` made a link",
    )?;
    let smoke = Smoke {
        receipt_id,
        share_url,
    };
    read_only_smoke(dir, env, &smoke, "", steps).await;
    let grant = dataset_grant(&cli, env).await;
    steps.result(
        "dataset grant",
        grant,
        "a dataset published for the drill downloaded under quota and matched its BLAKE3",
    );
    Some(smoke)
}

/// The checks that change nothing: what the previous release must still pass after the new
/// release's migrations.
async fn read_only_smoke(
    dir: &Path,
    env: &DrillEnv,
    smoke: &Smoke,
    prefix: &str,
    steps: &mut Steps,
) {
    let cli = dir.join("defendable");
    let ready = env.http.get(format!("{}/readyz", env.base)).send().await;
    steps.check(
        &format!("{prefix}readyz"),
        ready.as_ref().is_ok_and(|r| r.status() == 200),
        match &ready {
            Ok(r) => format!("/readyz answered {}", r.status()),
            Err(e) => e.to_string(),
        },
    );
    let listed = run(&cli, &["--json", "receipts", "list"], &env.cli_vars(), None)
        .await
        .and_then(|out| {
            out.contains(&smoke.receipt_id)
                .then_some(())
                .ok_or_else(|| format!("the list does not hold {}", smoke.receipt_id))
        });
    steps.result(
        &format!("{prefix}receipts list"),
        listed,
        "the smoke receipt is listed",
    );
    let verified = run(
        &cli,
        &["verify", &smoke.share_url, "--vkey", &env.ledger_vkey],
        &env.cli_vars(),
        None,
    )
    .await;
    steps.result(
        &format!("{prefix}verify the share offline"),
        verified.map(drop),
        "`defendable verify` checked the bundle against the drill's pinned key",
    );
}

/// `defendable login` with the link from the captured mail pasted at its prompt.
async fn sign_in(cli: &Path, env: &DrillEnv) -> std::result::Result<(), String> {
    let mut child = command(cli, &["login", "--email", SMOKE_EMAIL], &env.cli_vars())
        .stdin(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{}: {e}", cli.display()))?;
    let deadline = Instant::now() + WAIT;
    let link = loop {
        if let Some(link) = env.smtp.link_to(SMOKE_EMAIL) {
            break link;
        }
        if Instant::now() > deadline {
            let _ = child.kill().await;
            return Err("no sign-in mail reached the capture server".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(format!("{link}\n").as_bytes())
            .await
            .map_err(|e| e.to_string())?;
    }
    let out = tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .map_err(|_| "defendable login did not finish".to_owned())?
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "defendable login exited {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Publishes a small dataset for the drill and downloads it through the CLI (a grant under the
/// daily quota, a signed object URL, the BLAKE3 check).
async fn dataset_grant(cli: &Path, env: &DrillEnv) -> std::result::Result<(), String> {
    let bytes = b"release drill,ok\n".repeat(64);
    let object = env.objects.join("drill/smoke.csv");
    std::fs::create_dir_all(object.parent().unwrap_or(&env.objects)).map_err(|e| e.to_string())?;
    std::fs::write(&object, &bytes).map_err(|e| e.to_string())?;
    let res = env
        .http
        .post(format!("{}/internal/datasets", env.base))
        .header("x-internal-key", &env.internal_key)
        .json(&json!({
            "slug": SMOKE_DATASET, "title": "Release drill", "description": "Published by a release drill",
            "version": "1", "license": "CC0-1.0", "media_type": "text/csv", "object_key": "drill/smoke.csv"
        }))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if res.status() != 201 {
        return Err(format!(
            "publishing the drill dataset answered {}",
            res.status()
        ));
    }
    let out = env.work.join("smoke-download.csv");
    let out_str = out.to_string_lossy().into_owned();
    run(
        cli,
        &["datasets", "download", SMOKE_DATASET, "--out", &out_str],
        &env.cli_vars(),
        None,
    )
    .await?;
    let got = std::fs::read(&out).map_err(|e| e.to_string())?;
    if got != bytes {
        return Err("the downloaded bytes differ from the published ones".into());
    }
    Ok(())
}

/// The value of `name` in the CLI's one-line JSON output.
fn field(out: &str, name: &str) -> std::result::Result<String, String> {
    let v: Value = serde_json::from_str(out.trim()).map_err(|e| format!("{e}: {out}"))?;
    v[name]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("no {name} in {out}"))
}

/// The drill's settings: loopback addresses, fresh secrets, a fresh ledger key under
/// `drill.invalid`, the capture server, a local object store and a throwaway CLI state.
struct DrillEnv {
    base: String,
    port: u16,
    /// The server's socket, bound by the drill and handed to each server it starts
    /// (`LISTEN_FDS`): no other process can take the port, so the drill only ever talks to the
    /// server it started. Given up only for a release that cannot take a socket (see
    /// `server::Server::start`).
    listener: std::sync::Mutex<Option<std::net::TcpListener>>,
    db_url: String,
    work: PathBuf,
    objects: PathBuf,
    secrets: BTreeMap<&'static str, String>,
    ledger_key: String,
    ledger_vkey: String,
    internal_key: String,
    smtp: SmtpCapture,
    http: reqwest::Client,
}

fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("the operating system's CSPRNG");
    hex::encode(bytes)
}

impl DrillEnv {
    async fn new(db_url: &str, work: &Path) -> Result<DrillEnv> {
        // The library may run outside the ops binary (benchmarks, tests): reqwest needs a TLS
        // provider installed either way.
        defendable_store::install_crypto_provider();
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .map_err(|e| OpsError::Setup(format!("binding the drill's server socket: {e}")))?;
        let port = listener
            .local_addr()
            .map_err(|e| OpsError::Setup(e.to_string()))?
            .port();
        let (key, encoded) = SigningKey::generate()?;
        let name = LedgerName::parse(DRILL_LEDGER_NAME)?;
        let internal_key = random_secret();
        let secrets = BTreeMap::from([
            ("JWT_SECRET", random_secret()),
            ("OBJECT_URL_SIGNING_KEY", random_secret()),
            ("INTERNAL_API_KEY", internal_key.clone()),
            ("RUNNER_TOKEN", random_secret()),
            ("STRIPE_WEBHOOK_SECRET", random_secret()),
        ]);
        let objects = work.join("objects");
        std::fs::create_dir_all(&objects).map_err(|e| OpsError::io(&objects, e))?;
        Ok(DrillEnv {
            base: format!("http://127.0.0.1:{port}"),
            port,
            listener: std::sync::Mutex::new(Some(listener)),
            db_url: db_url.to_owned(),
            work: work.to_owned(),
            objects,
            secrets,
            ledger_vkey: defendable_ledger::note::vkey(&name, &key.raw_public()),
            ledger_key: encoded,
            internal_key,
            smtp: SmtpCapture::start().await?,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .map_err(|e| OpsError::Http(e.to_string()))?,
        })
    }

    fn server_vars(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = vec![
            ("APP_ENV", "production".to_owned()),
            ("RELEASE_DRILL", "true".to_owned()),
            ("LEDGER_NAME", DRILL_LEDGER_NAME.to_owned()),
            ("LEDGER_SIGNING_KEY", self.ledger_key.clone()),
            ("DATABASE_URL", self.db_url.clone()),
            ("BIND_ADDR", format!("127.0.0.1:{}", self.port)),
            ("API_BASE_URL", self.base.clone()),
            ("APP_BASE_URL", self.base.clone()),
            ("CORS_ORIGINS", self.base.clone()),
            ("SMTP_URL", format!("smtp://127.0.0.1:{}", self.smtp.port)),
            (
                "EMAIL_FROM",
                "Defendable drill <drill@drill.invalid>".to_owned(),
            ),
            (
                "OBJECT_STORE_URL",
                format!("file://{}", self.objects.display()),
            ),
            ("DATA_DIR", self.work.join("data").display().to_string()),
            ("LOG_FORMAT", "json".to_owned()),
            ("DATASET_DOWNLOAD_DAILY_LIMIT", "100".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        v.extend(self.secrets.iter().map(|(k, s)| (k.to_string(), s.clone())));
        v
    }

    fn cli_vars(&self) -> Vec<(String, String)> {
        vec![
            ("DEFENDABLE_API".into(), self.base.clone()),
            (
                "XDG_CONFIG_HOME".into(),
                self.work.join("cli-config").display().to_string(),
            ),
            ("HOME".into(), self.work.display().to_string()),
        ]
    }
}
