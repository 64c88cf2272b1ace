//! `cargo xtask restore-drill`: restore a backup into a fresh isolated database (a new database
//! on a given server, or a throwaway cluster), apply migrations, verify it against the manifest —
//! counts, every chain link by link up to the manifest's head, the signed checkpoints, a sample
//! of objects re-hashed against the catalog — drop what was made, and record the result as a
//! `restore_drill` receipt in the operator organization's chain, pass or fail.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use crate::manifest::{Counts, Manifest};
use crate::record::{record_operation, Operation};
use crate::{now_compact, now_rfc3339, sha256_file, Deployment, OpsError, Result};

mod isolated;
mod verify;

pub(crate) use isolated::{restore, Isolated};
use verify::verify_restored;

/// Where the backup is restored.
#[derive(Debug, Clone)]
pub enum Target {
    /// A new database on this server (the URL of any database there, e.g. `postgres`).
    Server(String),
    /// A throwaway cluster started under this directory and removed afterwards.
    Cluster(PathBuf),
}

/// What to drill.
#[derive(Debug, Clone)]
pub struct DrillOptions {
    /// The backup directory (holding `manifest.json` and the encrypted dump).
    pub backup: PathBuf,
    /// Where to restore it.
    pub target: Target,
    /// How many catalog objects to re-hash.
    pub sample: usize,
    /// Where to write the JSON report (default: `BACKUP/drill-<time>.json`).
    pub report: Option<PathBuf>,
    /// Drill a backup whose manifest is not signed (made before manifests were signed); the
    /// drill receipt records it.
    pub allow_unsigned_manifest: bool,
}

/// One verification and its outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// Whether it held.
    pub ok: bool,
    /// What was found.
    pub detail: String,
}

/// A drill's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct DrillReport {
    /// Whether every check held.
    pub ok: bool,
    /// When the drill ran.
    pub ran_at: String,
    /// The backup's directory name.
    pub backup: String,
    /// When the backup's snapshot was taken.
    pub backup_created_at: String,
    /// SHA-256 of the encrypted dump.
    pub backup_sha256: String,
    /// What the restored database holds (zero when it was not restored).
    pub counts: Counts,
    /// Chains verified.
    pub chains: usize,
    /// Objects re-hashed.
    pub objects_sampled: usize,
    /// Every check.
    pub checks: Vec<Check>,
    /// The failed checks' findings.
    pub failures: Vec<String>,
    /// Step durations in milliseconds.
    pub durations_ms: BTreeMap<String, u64>,
    /// The `restore_drill` receipt that records this drill.
    pub receipt_id: Option<String>,
    /// Where this report was written.
    pub report_path: Option<String>,
}

impl DrillReport {
    /// The report for people.
    pub fn human(&self) -> String {
        let mut out = vec![format!(
            "restore drill of {} (taken {}): {}",
            self.backup,
            self.backup_created_at,
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

/// A drill report's lines after its title: each check, the durations, the receipt, the file.
pub(crate) fn report_lines(
    checks: &[Check],
    durations_ms: &BTreeMap<String, u64>,
    receipt_id: Option<&str>,
    report_path: Option<&str>,
) -> Vec<String> {
    let mut out: Vec<String> = checks
        .iter()
        .map(|c| {
            let mark = if c.ok { "ok" } else { "FAIL" };
            format!("  [{mark}] {}: {}", c.name, c.detail)
        })
        .collect();
    let times: Vec<String> = durations_ms
        .iter()
        .map(|(k, v)| format!("{k} {:.2} s", *v as f64 / 1000.0))
        .collect();
    out.push(format!("  durations: {}", times.join(", ")));
    if let Some(id) = receipt_id {
        out.push(format!("  recorded as receipt {id}"));
    }
    if let Some(p) = report_path {
        out.push(format!("  report: {p}"));
    }
    out
}

struct Drill {
    checks: Vec<Check>,
    durations: BTreeMap<String, u64>,
    counts: Counts,
    chains: usize,
    objects: usize,
}

impl Drill {
    fn check(&mut self, name: &str, ok: bool, detail: impl Into<String>) {
        self.checks.push(Check {
            name: name.to_owned(),
            ok,
            detail: detail.into(),
        });
    }

    fn time(&mut self, step: &str, since: Instant) {
        self.durations
            .insert(step.to_owned(), since.elapsed().as_millis() as u64);
    }
}

/// Runs a restore drill and records it. Returns an error only when the drill could not run
/// (settings, tools); a drill that runs and finds a mismatch returns a failed report.
pub async fn restore_drill(dep: &Deployment, opts: &DrillOptions) -> Result<DrillReport> {
    let (operator, _) = dep.operator_org().await?;
    let identity = dep.identity()?;
    let keys = dep.published_keys()?;
    let (manifest, provenance) = Manifest::load(
        &opts.backup,
        &dep.backup_vkeys()?,
        opts.allow_unsigned_manifest,
    )?;
    let started = Instant::now();
    let mut drill = Drill {
        checks: Vec::new(),
        durations: BTreeMap::new(),
        counts: Counts::default(),
        chains: 0,
        objects: 0,
    };

    let dump = opts.backup.join(&manifest.dump.file);
    let t = Instant::now();
    let digest = sha256_file(&dump)?;
    drill.time("digest", t);
    let intact = digest == manifest.dump.sha256;
    drill.check(
        "backup digest",
        intact,
        if intact {
            format!("SHA-256 {digest} matches the manifest")
        } else {
            format!(
                "the encrypted dump hashes to {digest}, the manifest says {}",
                manifest.dump.sha256
            )
        },
    );
    let mut target_desc = String::new();
    if intact {
        let t = Instant::now();
        let isolated = Isolated::create(&opts.target).await?;
        target_desc = isolated.describe();
        drill.time("create_target", t);
        let outcome = verify_restored(
            dep,
            &manifest,
            &dump,
            &identity,
            &keys,
            &isolated.url,
            opts.sample,
            &mut drill,
        )
        .await;
        let t = Instant::now();
        let dropped = isolated.drop().await;
        drill.time("drop_target", t);
        outcome?;
        dropped?;
    }
    drill
        .durations
        .insert("total".into(), started.elapsed().as_millis() as u64);

    let failures: Vec<String> = drill
        .checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| format!("{}: {}", c.name, c.detail))
        .collect();
    let backup_name = opts
        .backup
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut report = DrillReport {
        ok: failures.is_empty(),
        ran_at: now_rfc3339(),
        backup: backup_name,
        backup_created_at: manifest.created_at.clone(),
        backup_sha256: manifest.dump.sha256.clone(),
        counts: drill.counts.clone(),
        chains: drill.chains,
        objects_sampled: drill.objects,
        checks: drill.checks,
        failures,
        durations_ms: drill.durations,
        receipt_id: None,
        report_path: None,
    };

    let public = json!({
        "result": if report.ok { "pass" } else { "fail" },
        "backup_created_at": report.backup_created_at,
        "backup_sha256": report.backup_sha256,
        "schema_version": manifest.schema_version,
        "manifest": provenance.as_str(),
        "counts": report.counts,
        "chains": report.chains,
        "objects_sampled": report.objects_sampled,
        "failures": report.failures.iter().take(20).collect::<Vec<_>>(),
        "durations_ms": report.durations_ms,
    });
    let private = json!({
        "backup_dir": opts.backup.display().to_string(),
        "target": target_desc,
        "host": hostname(),
    });
    let sealed = record_operation(
        dep,
        operator,
        Operation {
            kind: "restore_drill",
            action: defendable_store::audit::AuditAction::OpsRestoreDrill,
            public,
            private: Some(private),
        },
    )
    .await?;
    report.receipt_id = Some(sealed);

    let path = opts
        .report
        .clone()
        .unwrap_or_else(|| opts.backup.join(format!("drill-{}.json", now_compact())));
    report.report_path = Some(path.display().to_string());
    let text =
        serde_json::to_vec_pretty(&report).map_err(|e| OpsError::Backup(format!("report: {e}")))?;
    std::fs::write(&path, text).map_err(|e| OpsError::io(&path, e))?;
    Ok(report)
}

/// Recomputes every organization's Merkle root from the restored receipts alone (no stored node
/// trusted) and checks it against the backup's signed tree checkpoints.
async fn tree_roots(
    dep: &Deployment,
    manifest: &Manifest,
    client: &impl defendable_store::GenericClient,
    name_of: &dyn Fn(&Uuid) -> String,
    drill: &mut Drill,
) -> Result<()> {
    if manifest.tree_checkpoints.is_empty() {
        drill.check(
            "tree roots",
            true,
            "the backup predates ledger v2: no tree checkpoints to check",
        );
        return Ok(());
    }
    let t = Instant::now();
    let keys = dep.vkeys()?;
    let mut bad = Vec::new();
    let mut leaves_checked = 0u64;
    for note in &manifest.tree_checkpoints {
        let opened = match defendable_ledger::note::open_checkpoint(note, &keys) {
            Ok(o) => o,
            Err(e) => {
                bad.push(format!("a tree checkpoint does not verify: {e}"));
                continue;
            }
        };
        let head = &opened.head;
        let Some(org) = opened.org() else {
            bad.push(format!("{:?} is not an organization's log", head.origin));
            continue;
        };
        let mut edge = defendable_ledger::TreeEdge::empty();
        let mut after = -1i64;
        while edge.size() < head.size {
            let rows = client
                .query(
                    "SELECT seq, canonical FROM receipts WHERE org_id = $1 AND seq > $2 AND seq < $3 ORDER BY seq LIMIT 10000",
                    &[&org, &after, &(head.size as i64)],
                )
                .await?;
            let Some(last) = rows.last() else { break };
            after = last.get(0);
            // Leaves from the hash of each restored body, as an outsider computes them.
            for row in &rows {
                edge.append(defendable_ledger::merkle::leaf_hash(
                    &defendable_ledger::Hash::of(row.get(1)),
                ));
            }
        }
        leaves_checked += edge.size();
        if edge.size() != head.size {
            bad.push(format!(
                "{}: the checkpoint covers {} receipts, {} are restored",
                name_of(&org),
                head.size,
                edge.size()
            ));
        } else if edge.root() != head.root {
            bad.push(format!(
                "{}: the root of the {} restored receipts is {}, the signed checkpoint says {}",
                name_of(&org),
                head.size,
                edge.root(),
                head.root
            ));
        }
    }
    drill.time("verify_tree_roots", t);
    drill.check(
        "tree roots",
        bad.is_empty(),
        if bad.is_empty() {
            format!(
                "{} Merkle roots recomputed from {leaves_checked} restored receipts match the signed tree checkpoints",
                manifest.tree_checkpoints.len()
            )
        } else {
            bad.join("; ")
        },
    );
    Ok(())
}

/// The machine's name, for private records.
pub fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}
