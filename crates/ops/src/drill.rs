//! `cargo xtask restore-drill`: restore a backup into a fresh isolated database (a new database
//! on a given server, or a throwaway cluster), apply migrations, verify it against the manifest —
//! counts, every chain link by link up to the manifest's head, the signed checkpoints, a sample
//! of objects re-hashed against the catalog — drop what was made, and record the result as a
//! `restore_drill` receipt in the operator organization's chain, pass or fail.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use defendable_datasets::ObjectKey;
use defendable_ledger::checkpoint::verify_checkpoint;
use defendable_store::cluster::{Cluster, Durability};
use futures_util::StreamExt;
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use crate::manifest::{self, Counts, Manifest};
use crate::postgres::{self, tool_error, Running};
use crate::record::{record_operation, Operation};
use crate::{now_compact, now_rfc3339, sha256_file, Deployment, OpsError, Result};

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

/// Restores the dump into `url`, migrates it and checks it against the manifest, step by step
/// (each step a check in `drill`; a failed restore ends the drill's checks there).
#[allow(clippy::too_many_arguments)]
async fn verify_restored(
    dep: &Deployment,
    manifest: &Manifest,
    dump: &Path,
    identity: &age::x25519::Identity,
    keys: &[defendable_ledger::PublicKey],
    url: &str,
    sample: usize,
    drill: &mut Drill,
) -> Result<()> {
    let t = Instant::now();
    let (dump, identity, target) = (dump.to_owned(), identity.clone(), url.to_owned());
    let restored = tokio::task::spawn_blocking(move || restore(&dump, &identity, &target))
        .await
        .map_err(|e| tool_error("pg_restore", e))?;
    drill.time("decrypt_and_restore", t);
    if let Err(e) = restored {
        drill.check("restore", false, e.to_string());
        return Ok(());
    }
    drill.check("restore", true, "decrypted and restored with pg_restore");

    let pool = defendable_store::pool(url, 4)?;
    let t = Instant::now();
    defendable_store::migrate(&pool).await?;
    let version = defendable_store::schema_version(&pool.get().await?).await?;
    drill.time("migrate", t);
    drill.check(
        "migrations",
        true,
        format!(
            "backup at schema {}, now at {}",
            manifest.schema_version,
            version.unwrap_or(0)
        ),
    );

    let verify_started = Instant::now();
    let client = pool.get().await?;
    let (counts, chains) = manifest::snapshot(&client).await?;
    check_counts(manifest, &counts, drill);
    drill.counts = counts;
    let slugs: HashMap<Uuid, String> = client
        .query("SELECT id, slug FROM orgs", &[])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let name_of = |org: &Uuid| match slugs.get(org) {
        Some(s) => format!("org {s} ({org})"),
        None => format!("org {org}"),
    };
    check_heads(manifest, &chains, &name_of, drill);
    verify_chains(&pool, manifest, &name_of, drill).await?;
    check_checkpoints(&client, manifest, keys, &name_of, drill).await?;
    tree_roots(dep, manifest, &client, &name_of, drill).await?;
    drill.time("verify", verify_started);
    check_objects(dep, &client, sample, drill).await
}

/// The restored table counts against the manifest's.
fn check_counts(manifest: &Manifest, counts: &manifest::Counts, drill: &mut Drill) {
    let want = &manifest.counts;
    let mut diffs = Vec::new();
    for (name, got, expected) in [
        ("users", counts.users, want.users),
        ("orgs", counts.orgs, want.orgs),
        ("memberships", counts.memberships, want.memberships),
        ("receipts", counts.receipts, want.receipts),
        (
            "dataset_versions",
            counts.dataset_versions,
            want.dataset_versions,
        ),
    ] {
        if got != expected {
            diffs.push(format!("{name}: {got}, manifest {expected}"));
        }
    }
    drill.check(
        "counts",
        diffs.is_empty(),
        if diffs.is_empty() {
            format!(
                "{} users, {} orgs, {} memberships, {} receipts, {} dataset versions",
                counts.users,
                counts.orgs,
                counts.memberships,
                counts.receipts,
                counts.dataset_versions
            )
        } else {
            diffs.join("; ")
        },
    );
}

/// Each restored chain ends where the manifest says (receipts, head seq and hash), and no chain
/// is missing or extra.
fn check_heads(
    manifest: &Manifest,
    chains: &[manifest::Chain],
    name_of: &dyn Fn(&Uuid) -> String,
    drill: &mut Drill,
) {
    let restored: HashMap<Uuid, &manifest::Chain> = chains.iter().map(|c| (c.org, c)).collect();
    let mut head_diffs = Vec::new();
    for c in &manifest.chains {
        match restored.get(&c.org) {
            None => head_diffs.push(format!("{}: chain missing", name_of(&c.org))),
            Some(r)
                if r.receipts != c.receipts
                    || r.head_seq != c.head_seq
                    || r.head_hash != c.head_hash =>
            {
                head_diffs.push(format!(
                    "{}: {} receipts ending at seq {} {}, manifest {} ending at seq {} {}",
                    name_of(&c.org),
                    r.receipts,
                    r.head_seq,
                    r.head_hash,
                    c.receipts,
                    c.head_seq,
                    c.head_hash
                ))
            }
            Some(_) => {}
        }
    }
    if chains.len() != manifest.chains.len() {
        head_diffs.push(format!(
            "{} chains restored, manifest lists {}",
            chains.len(),
            manifest.chains.len()
        ));
    }
    drill.check(
        "chain heads",
        head_diffs.is_empty(),
        if head_diffs.is_empty() {
            format!(
                "{} chains end at the manifest's heads",
                manifest.chains.len()
            )
        } else {
            head_diffs.join("; ")
        },
    );
}

/// Every link of every chain, four connections at a time.
async fn verify_chains(
    pool: &deadpool_postgres::Pool,
    manifest: &Manifest,
    name_of: &dyn Fn(&Uuid) -> String,
    drill: &mut Drill,
) -> Result<()> {
    let t = Instant::now();
    let reports: Vec<Result<defendable_ledger::store::ChainReport>> =
        futures_util::stream::iter(manifest.chains.iter().map(|c| c.org))
            .map(|org| {
                let pool = pool.clone();
                async move {
                    let client = pool.get().await?;
                    Ok(defendable_ledger::store::verify_org(&client, org).await?)
                }
            })
            .buffer_unordered(4)
            .collect()
            .await;
    let mut broken = Vec::new();
    let mut links = 0u64;
    for r in reports {
        let r = r?;
        links += r.checked;
        if let Some(f) = &r.failure {
            broken.push((r.org, f.seq, f.reason.to_string()));
        }
    }
    broken.sort();
    drill.chains = manifest.chains.len();
    drill.time("verify_chains", t);
    drill.check(
        "chains",
        broken.is_empty(),
        if broken.is_empty() {
            format!(
                "{} chains, {links} receipts verified link by link",
                manifest.chains.len()
            )
        } else {
            broken
                .iter()
                .map(|(org, seq, reason)| format!("{}: receipt seq {seq}: {reason}", name_of(org)))
                .collect::<Vec<_>>()
                .join("; ")
        },
    );

    Ok(())
}

/// Each signed checkpoint of the manifest verifies with the published keys and names a restored
/// receipt with its hash.
async fn check_checkpoints(
    client: &impl defendable_store::GenericClient,
    manifest: &Manifest,
    keys: &[defendable_ledger::PublicKey],
    name_of: &dyn Fn(&Uuid) -> String,
    drill: &mut Drill,
) -> Result<()> {
    let mut bad = Vec::new();
    for signed in &manifest.checkpoints {
        let cp = &signed.checkpoint;
        let Ok(org_id) = cp.org.parse::<Uuid>() else {
            bad.push(format!(
                "a checkpoint names {:?}, not an organization id",
                cp.org
            ));
            continue;
        };
        let org = name_of(&org_id);
        if let Err(e) = verify_checkpoint(signed, keys) {
            bad.push(format!("{org}: {e}"));
            continue;
        }
        let row = client
            .query_opt(
                "SELECT hash FROM receipts WHERE org_id = $1 AND seq = $2",
                &[&org_id, &cp.seq],
            )
            .await?;
        match row.map(|r| r.get::<_, String>(0)) {
            Some(h) if h == cp.head => {}
            Some(h) => bad.push(format!(
                "{org}: checkpoint head at seq {} is {}, restored receipt hash is {h}",
                cp.seq, cp.head
            )),
            None => bad.push(format!("{org}: checkpoint seq {} is not restored", cp.seq)),
        }
    }
    drill.check(
        "checkpoints",
        bad.is_empty(),
        if bad.is_empty() {
            format!(
                "{} signed checkpoints verify with the published keys and match the restored heads",
                manifest.checkpoints.len()
            )
        } else {
            bad.join("; ")
        },
    );
    Ok(())
}

/// A random sample of the catalog's objects re-hash to their recorded BLAKE3.
async fn check_objects(
    dep: &Deployment,
    client: &impl defendable_store::GenericClient,
    sample: usize,
    drill: &mut Drill,
) -> Result<()> {
    let t = Instant::now();
    let rows = client
        .query(
            "SELECT slug, version, object_key, blake3 FROM dataset_versions ORDER BY random() LIMIT $1",
            &[&(sample as i64)],
        )
        .await?;
    let mut mismatched = Vec::new();
    for row in &rows {
        let (slug, version, key, want): (String, String, String, String) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        let got = match ObjectKey::parse(&key) {
            Ok(k) => defendable_datasets::objects::digest(dep.objects.as_ref(), &k)
                .await
                .map(|(_, d)| d.to_hex())
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match got {
            Ok(d) if d == want => {}
            Ok(d) => mismatched.push(format!("{slug} {version}: BLAKE3 {d}, catalog {want}")),
            Err(e) => mismatched.push(format!("{slug} {version}: {e}")),
        }
    }
    drill.objects = rows.len();
    drill.time("objects", t);
    drill.check(
        "objects",
        mismatched.is_empty(),
        if mismatched.is_empty() {
            format!(
                "{} of the catalog's objects re-hash to their BLAKE3",
                rows.len()
            )
        } else {
            mismatched.join("; ")
        },
    );
    Ok(())
}

/// Decrypts the dump as it streams into `pg_restore`.
pub(crate) fn restore(dump: &Path, identity: &age::x25519::Identity, url: &str) -> Result<()> {
    let crypto = |e: &dyn std::fmt::Display| OpsError::Crypto(e.to_string());
    let file = std::fs::File::open(dump).map_err(|e| OpsError::io(dump, e))?;
    let decryptor = age::Decryptor::new_buffered(std::io::BufReader::with_capacity(1 << 20, file))
        .map_err(|e| crypto(&e))?;
    let mut plain = decryptor
        .decrypt(std::iter::once(identity as &dyn age::Identity))
        .map_err(|e| crypto(&e))?;
    let mut cmd = postgres::command("pg_restore", url)?;
    cmd.args(["--no-owner", "--no-privileges", "--exit-on-error"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null());
    let mut running = Running::spawn("pg_restore", cmd)?;
    let mut stdin = running
        .child
        .stdin
        .take()
        .ok_or_else(|| tool_error("pg_restore", "no stdin"))?;
    let copied = std::io::copy(&mut plain, &mut stdin);
    drop(stdin);
    // pg_restore's own complaint explains a broken pipe better than the pipe does.
    running.finish()?;
    copied.map_err(|e| crypto(&e))?;
    Ok(())
}

/// The fresh database a drill restores into.
pub(crate) struct Isolated {
    pub(crate) url: String,
    kind: IsolatedKind,
}

enum IsolatedKind {
    Database { admin: String, name: String },
    Cluster { cluster: Cluster, root: PathBuf },
}

impl Isolated {
    pub(crate) async fn create(target: &Target) -> Result<Isolated> {
        let name = format!(
            "defendable_drill_{}",
            &Uuid::new_v4().simple().to_string()[..12]
        );
        match target {
            Target::Server(admin) => {
                let client = postgres::connect(admin).await?;
                client
                    .batch_execute(&format!("CREATE DATABASE {name}"))
                    .await?;
                Ok(Isolated {
                    url: postgres::with_database(admin, &name)?,
                    kind: IsolatedKind::Database {
                        admin: admin.clone(),
                        name,
                    },
                })
            }
            Target::Cluster(root) => {
                let dir = root.clone();
                let cluster = tokio::task::spawn_blocking(move || {
                    Cluster::ensure(&dir, Durability::Throwaway)
                })
                .await
                .map_err(|e| OpsError::Setup(e.to_string()))??;
                let client = postgres::connect(&cluster.url("postgres")).await?;
                client
                    .batch_execute(&format!("CREATE DATABASE {name}"))
                    .await?;
                Ok(Isolated {
                    url: cluster.url(&name),
                    kind: IsolatedKind::Cluster {
                        cluster,
                        root: root.clone(),
                    },
                })
            }
        }
    }

    fn describe(&self) -> String {
        match &self.kind {
            IsolatedKind::Database { .. } => format!("database {}", postgres::describe(&self.url)),
            IsolatedKind::Cluster { root, .. } => {
                format!("throwaway cluster under {}", root.display())
            }
        }
    }

    pub(crate) async fn drop(self) -> Result<()> {
        match self.kind {
            IsolatedKind::Database { admin, name } => {
                let client = postgres::connect(&admin).await?;
                client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await?;
                Ok(())
            }
            IsolatedKind::Cluster { cluster, root } => tokio::task::spawn_blocking(move || {
                cluster.stop()?;
                std::fs::remove_dir_all(&root).map_err(|e| OpsError::io(&root, e))
            })
            .await
            .map_err(|e| OpsError::Setup(e.to_string()))?,
        }
    }
}
