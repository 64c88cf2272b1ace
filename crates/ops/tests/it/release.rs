//! Releases end to end: a release made from this work tree (`cargo xtask release`, the dev
//! profile to keep CI quick), recorded as a `release` receipt, drilled against a backup of a
//! seeded deployment with the rollback check, and both receipts verified offline by the
//! release's own CLI; a migration that breaks the previous release fails the rollback check by
//! name; one changed byte makes the drill refuse before anything is restored.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use defendable_ops::backup::backup;
use defendable_ops::release::{release_receipt, sign_release, verify_release};
use defendable_ops::release_drill::{release_drill, ReleaseDrillOptions, ReleaseDrillReport};
use defendable_ops::Deployment;
use defendable_testkit::files::TempDir;
use defendable_testkit::TestDb;

use crate::ops::{open, seed};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// One release for the whole test binary, built by `cargo xtask release` (a work tree with
/// uncommitted changes is allowed here only, and the provenance records it).
fn built_release() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    static LOCK: Mutex<()> = Mutex::new(());
    let _once = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    DIR.get_or_init(|| {
        let out = repo().join("target/test-release");
        let _ = std::fs::remove_dir_all(&out);
        let dirty = Command::new("git")
            .args(["status", "--porcelain"])
            .current_dir(repo())
            .output()
            .map(|o| !o.stdout.is_empty())
            .unwrap_or(true);
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["run", "--quiet", "--package", "xtask", "--", "release"])
            .args(["--version", "0.1.0", "--profile", "dev", "--out"])
            .arg(&out)
            .current_dir(repo());
        if dirty {
            cmd.arg("--allow-dirty");
        }
        let started = std::time::Instant::now();
        let status = cmd.status().expect("cargo xtask release runs");
        assert!(status.success(), "cargo xtask release failed: {status}");
        eprintln!(
            "release build (dev profile): {:.1} s",
            started.elapsed().as_secs_f64()
        );
        out
    })
}

/// The vkey of the key the test release was signed with: the tests built it, so they know it
/// out of band (what a person takes from docs/protocols/release.md).
fn pinned() -> Vec<String> {
    let vkey = std::fs::read_to_string(built_release().join("release.vkey")).expect("release.vkey");
    vec![vkey.trim().to_owned()]
}

/// A copy of the release for one test (release-receipt writes into its directory).
fn copy_release(to: &Path) -> PathBuf {
    let dir = to.join("release");
    std::fs::create_dir_all(&dir).expect("mkdir");
    for entry in std::fs::read_dir(built_release()).expect("release dir") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), dir.join(entry.file_name())).expect("copy");
    }
    dir
}

/// A seeded deployment and a backup of it.
async fn deployment_with_backup(db: &TestDb, data: &TempDir) -> (Deployment, PathBuf) {
    let (dep, _) = open(db, data, &[]).await;
    seed(&dep).await;
    let b = backup(&dep, &data.path().join("backups"))
        .await
        .expect("backup");
    (dep, b.dir)
}

/// A seeded deployment, its backup, and a copy of the release recorded in its log.
struct Recorded {
    _db: TestDb,
    data: TempDir,
    dep: Deployment,
    backup: PathBuf,
    release: PathBuf,
}

async fn recorded_release() -> Recorded {
    let db = TestDb::new().await;
    let data = TempDir::new();
    let (dep, backup) = deployment_with_backup(&db, &data).await;
    let release = copy_release(data.path());
    release_receipt(&dep, &release, &pinned())
        .await
        .expect("release receipt");
    Recorded {
        _db: db,
        data,
        dep,
        backup,
        release,
    }
}

fn drill_options(release: &Path, backup: &Path, previous: Option<&Path>) -> ReleaseDrillOptions {
    ReleaseDrillOptions {
        release: release.to_owned(),
        backup: backup.to_owned(),
        previous: previous.map(Path::to_owned),
        vkeys: pinned(),
        inject_migration: None,
        report: None,
        sweep_prefix: "raw/".into(),
    }
}

fn failed(report: &ReleaseDrillReport) -> Vec<&str> {
    report
        .checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| c.name.as_str())
        .collect()
}

/// `defendable verify FILE --vkey …` with the release's own CLI, offline.
fn verify_offline(release: &Path, file: &Path, vkeys: &[String], home: &Path) -> String {
    let mut cmd = Command::new(release.join("defendable"));
    cmd.arg("verify")
        .arg(file)
        .env("XDG_CONFIG_HOME", home)
        .env("DEFENDABLE_API", "http://127.0.0.1:9");
    for v in vkeys {
        cmd.args(["--vkey", v]);
    }
    let out = cmd.output().expect("defendable verify runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}: {text}", file.display());
    text
}

#[tokio::test]
async fn a_release_is_recorded_drilled_with_its_rollback_and_both_receipts_verify_offline() {
    let db = TestDb::new().await;
    let data = TempDir::new();
    let (dep, backup_dir) = deployment_with_backup(&db, &data).await;
    let release = copy_release(data.path());

    let recorded = release_receipt(&dep, &release, &pinned())
        .await
        .expect("release receipt");
    let vkeys: Vec<String> = dep.vkeys().expect("vkeys").vkeys().to_vec();
    let home = data.path().join("verifier");
    let text = verify_offline(&release, &recorded.bundle, &vkeys, &home);
    assert!(text.contains("verified 1 receipt"), "{text}");

    let started = std::time::Instant::now();
    let report = release_drill(&dep, &drill_options(&release, &backup_dir, Some(&release)))
        .await
        .expect("the drill runs");
    eprintln!(
        "{}\ndrill: {:.1} s",
        report.human(),
        started.elapsed().as_secs_f64()
    );
    assert!(report.ok, "{}", report.human());
    let names: Vec<&str> = report.checks.iter().map(|c| c.name.as_str()).collect();
    for step in [
        "release signature and checksums",
        "release receipt",
        "restore",
        "migrations",
        "restored ledgers",
        "storage check",
        "storage sweep",
        "new server",
        "sign-in",
        "record a receipt",
        "share it",
        "verify the share offline",
        "dataset grant",
        "rollback: previous server",
        "rollback: receipts list",
        "rollback: verify the share offline",
    ] {
        assert!(names.contains(&step), "no {step:?} in {names:?}");
    }
    let sweep = report
        .checks
        .iter()
        .find(|c| c.name == "storage sweep")
        .expect("sweep");
    assert_eq!(
        sweep.detail,
        "1 objects under raw/, 0 referenced by no restored catalog version (listed, not deleted)",
        "the seeded dataset's object, referenced by the restored catalog"
    );

    // The release_drill receipt, as a bundle, verifies offline too.
    let (operator, _) = dep.operator_org().await.expect("operator");
    let id = report.receipt_id.as_deref().expect("recorded");
    let bundle = defendable_ops::packet::bundle_of(&dep, operator, id)
        .await
        .expect("bundle");
    let path = data.path().join("release-drill-receipt.json");
    std::fs::write(&path, serde_json::to_vec(&bundle).expect("json")).expect("write");
    verify_offline(&release, &path, &vkeys, &home);
    assert_eq!(bundle.receipt.body["kind"], "release_drill");
    assert_eq!(bundle.receipt.body["public"]["result"], "pass");
    assert_eq!(bundle.receipt.body["public"]["version"], "0.1.0");
}

#[tokio::test]
async fn a_migration_that_breaks_the_previous_release_fails_the_rollback_check() {
    let r = recorded_release().await;
    // A contract migration the previous release is not ready for: it still reads `kind`.
    let sql = r.data.path().join("breaking.sql");
    std::fs::write(&sql, "ALTER TABLE receipts DROP COLUMN kind;").expect("sql");
    let mut opts = drill_options(&r.release, &r.backup, Some(&r.release));
    opts.inject_migration = Some(sql);
    let report = release_drill(&r.dep, &opts).await.expect("the drill runs");
    assert!(!report.ok, "{}", report.human());
    let failed = failed(&report);
    assert!(
        !failed.is_empty() && failed.iter().all(|n| n.starts_with("rollback: ")),
        "only the rollback check fails, by name: {}",
        report.human()
    );
}

#[tokio::test]
async fn one_changed_byte_makes_the_drill_refuse_before_restoring_anything() {
    let r = recorded_release().await;
    let binary = r.release.join("defendable-api");
    let mut bytes = std::fs::read(&binary).expect("read");
    bytes[4096] ^= 1;
    std::fs::write(&binary, bytes).expect("write");

    let report = release_drill(&r.dep, &drill_options(&r.release, &r.backup, None))
        .await
        .expect("the drill runs");
    assert!(!report.ok);
    assert_eq!(
        failed(&report),
        ["release signature and checksums"],
        "{}",
        report.human()
    );
    assert!(
        report.checks[0].detail.contains("defendable-api"),
        "{}",
        report.human()
    );
    let names: Vec<&str> = report.checks.iter().map(|c| c.name.as_str()).collect();
    assert!(!names.contains(&"restore"), "nothing restored: {names:?}");
    assert!(!report.durations_ms.contains_key("restore"));
    assert_eq!(
        report
            .receipt_id
            .as_deref()
            .map(|id| id.starts_with("DCR-")),
        Some(true)
    );
}

#[test]
fn a_release_altered_and_signed_again_with_another_key_is_refused() {
    let data = TempDir::new();
    let release = copy_release(data.path());
    verify_release(&release, &pinned()).expect("the release as built verifies");
    // Whoever alters a binary signs the directory again with a key of their own, and ships that
    // key's vkey beside it as release.vkey.
    let binary = release.join("defendable-ops");
    let mut bytes = std::fs::read(&binary).expect("read");
    bytes[4096] ^= 1;
    std::fs::write(&binary, bytes).expect("write");
    let (_, other) = defendable_ledger::SigningKey::generate().expect("key");
    let other = defendable_ledger::SigningKey::from_pkcs8(&other).expect("key");
    sign_release(&release, &other).expect("signed again");
    let refused = verify_release(&release, &pinned()).expect_err("another key");
    assert!(refused.to_string().contains("SHA256SUMS.note"), "{refused}");
    let unpinned = verify_release(&release, &[]).expect_err("no pinned key");
    assert!(unpinned.to_string().contains("never trusted"), "{unpinned}");
    // The command refuses too without --vkey or RELEASE_VKEY.
    let out = Command::new(built_release().join("defendable-ops"))
        .args(["release-verify", "--release"])
        .arg(&release)
        .env_remove("RELEASE_VKEY")
        .env("DATA_DIR", data.path())
        .output()
        .expect("release-verify runs");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && text.contains("no release vkey is pinned"),
        "{text}"
    );
}
