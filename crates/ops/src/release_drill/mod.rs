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
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{json, Value};

mod env;
mod process;
mod server;
mod smoke;
mod smtp;

use env::DrillEnv;
use process::run;
use server::Server;
use smoke::{new_release_smoke, read_only_smoke};

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
