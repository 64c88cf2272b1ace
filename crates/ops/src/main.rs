//! `defendable-ops`: backups, restore drills, rotation receipts and the evidence packet, for
//! the deployment the environment describes (docs/env.md). `cargo xtask backup|restore-drill|
//! rotation-receipt|packet` runs it from a checkout; servers run the installed binary from the
//! systemd timers in deploy/systemd.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use defendable_config::Env;
use defendable_ops::drill::{restore_drill, DrillOptions, Target};
use defendable_ops::packet::{packet, PacketOptions};
use defendable_ops::rotation::{rotation_receipt, OldUses};
use defendable_ops::{backup::backup, release, release_drill, storage, Deployment, OpsError};

/// Operations on a Defendable deployment.
#[derive(Parser, Debug)]
#[command(name = "defendable-ops", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Dump the database in one snapshot, encrypted to BACKUP_RECIPIENT, with a manifest.
    Backup {
        /// Directory that receives a new `defendable-<time>/` backup directory.
        #[arg(long)]
        out: PathBuf,
    },
    /// Restore a backup into a fresh isolated database, verify it, drop it, record the drill.
    RestoreDrill {
        /// A backup directory written by `backup`.
        #[arg(long)]
        backup: PathBuf,
        /// Restore into a new database on this server (a URL of any database on it).
        /// Default: a throwaway cluster under the temp directory.
        #[arg(long)]
        server: Option<String>,
        /// How many catalog objects to re-hash against their BLAKE3.
        #[arg(long, default_value_t = 20)]
        sample: usize,
        /// Drill a backup whose manifest is not signed (one made before manifests were
        /// signed); the drill receipt records it.
        #[arg(long)]
        allow_unsigned_manifest: bool,
        /// Where to write the JSON report (default: inside the backup directory).
        #[arg(long)]
        report: Option<PathBuf>,
    },
    /// Record the `secret.rotation` receipt that ends a rotation (docs/protocols/secret-rotation.md).
    RotationReceipt {
        /// The rotated secret's variable name, e.g. JWT_SECRET.
        #[arg(long)]
        secret: String,
        /// Uses of the old secret at revocation, as counted by the operator.
        #[arg(long, conflicts_with = "metrics")]
        old_uses: Option<u64>,
        /// A server process's /metrics URL to read the old-secret counter from; repeat for each
        /// process (read with INTERNAL_API_KEY).
        #[arg(long)]
        metrics: Vec<String>,
    },
    /// Sign a release directory: SHA256SUMS over every file, its signed note with
    /// RELEASE_SIGNING_KEY, and the vkey (`cargo xtask release` runs it; no database).
    ReleaseSign {
        /// The release directory.
        #[arg(long)]
        release: PathBuf,
    },
    /// Print the vkey of RELEASE_SIGNING_KEY (to publish in docs/protocols/release.md).
    ReleaseVkey,
    /// Print the vkey of BACKUP_SIGNING_KEY (to pin as BACKUP_VKEY on the drill host).
    BackupVkey,
    /// Verify a release directory from its files alone (signature, checksums, contents).
    ReleaseVerify {
        /// The release directory.
        #[arg(long)]
        release: PathBuf,
        /// The release vkey to pin (repeat during a rotation); default RELEASE_VKEY. The
        /// directory's own `release.vkey` is never trusted.
        #[arg(long = "vkey")]
        vkeys: Vec<String>,
    },
    /// Record a verified release as a `release` receipt in OPERATOR_ORG's chain and write its
    /// proof bundle into the directory.
    ReleaseReceipt {
        /// The release directory.
        #[arg(long)]
        release: PathBuf,
        /// The release vkey to pin (repeat during a rotation); default RELEASE_VKEY. The
        /// directory's own `release.vkey` is never trusted.
        #[arg(long = "vkey")]
        vkeys: Vec<String>,
    },
    /// Rehearse a release on a restored backup: verify it, restore, migrate with the new
    /// binary, smoke-test the new server and CLI, check the previous release still runs on the
    /// migrated database, record a `release_drill` receipt (exit 1 on any failure).
    ReleaseDrill {
        /// The new release's directory.
        #[arg(long)]
        release: PathBuf,
        /// A backup directory written by `backup`.
        #[arg(long)]
        backup: PathBuf,
        /// The release running today, for the rollback check.
        #[arg(long)]
        previous: Option<PathBuf>,
        /// The release vkey to pin (repeat during a rotation); default RELEASE_VKEY. A
        /// directory's own `release.vkey` is never trusted.
        #[arg(long = "vkey")]
        vkeys: Vec<String>,
        /// Tests only: SQL applied after the new release's smoke suite, before the rollback
        /// check (a stand-in for a migration that breaks the previous release).
        #[arg(long, hide = true)]
        inject_migration: Option<PathBuf>,
        /// Where to write the JSON report (default: inside the backup directory).
        #[arg(long)]
        report: Option<PathBuf>,
        /// The stager's upload prefix the drill's storage sweep lists (it deletes nothing).
        #[arg(long, default_value = "raw/")]
        sweep_prefix: String,
    },
    /// Read the bucket's versioning and lifecycle rules (non-current versions, incomplete
    /// multipart uploads) and report what is missing; in production a missing one fails.
    StorageCheck {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List objects under the dataset prefix that no catalog version references and that are
    /// older than the grace period; with --apply delete them (one `storage.sweep` audit event).
    StorageSweep {
        /// The stager's upload prefix, e.g. `raw/` (required: a sweep never lists the whole store).
        #[arg(long)]
        prefix: String,
        /// Grace period: only objects last modified longer ago than this.
        #[arg(long, default_value = "7d", value_parser = humantime::parse_duration)]
        older_than: std::time::Duration,
        /// Delete them (default: only list).
        #[arg(long)]
        apply: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Build the enterprise evidence packet.
    Packet {
        /// Directory to write (new or empty).
        #[arg(long)]
        out: PathBuf,
        /// The live API (OpenAPI document and response headers come from it).
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        api: String,
        /// The repository checkout (documents, edge rules, CI summary).
        #[arg(long, default_value = ".")]
        repo: PathBuf,
    },
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    defendable_store::install_crypto_provider();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("defendable-ops: {e}");
            ExitCode::from(2)
        }
    }
}

/// The commands that need no deployment (a tag workflow has no database): `Some` when `command`
/// is one of them.
#[allow(clippy::print_stdout)]
fn offline(command: &Command) -> Option<Result<bool, OpsError>> {
    let config = || {
        defendable_config::Config::parse(&Env::from_process())
            .map_err(|e| OpsError::Setup(e.to_string()))
    };
    let run = || -> Result<bool, OpsError> {
        match command {
            Command::ReleaseSign { release: dir } => {
                let vkey = release::sign_release(dir, &release::release_key(&config()?)?)?;
                println!("signed {} with {vkey}", dir.join(release::SUMS).display());
            }
            Command::BackupVkey => {
                println!(
                    "{}",
                    defendable_ops::manifest::backup_vkey(&defendable_ops::manifest::backup_key(
                        &config()?
                    )?)
                );
            }
            Command::ReleaseVkey => {
                println!(
                    "{}",
                    release::release_vkey(&release::release_key(&config()?)?)
                );
            }
            Command::ReleaseVerify {
                release: dir,
                vkeys,
            } => {
                let r = release::verify_release(dir, &release::pinned_vkeys(vkeys, &config()?)?)?;
                println!(
                    "release {} ({}, commit {}): signature by {} and {} files verify",
                    r.info.version,
                    r.info.profile,
                    r.info.commit,
                    r.vkey,
                    r.files.len()
                );
            }
            _ => unreachable!("offline() matched it"),
        }
        Ok(true)
    };
    matches!(
        command,
        Command::ReleaseSign { .. }
            | Command::ReleaseVkey
            | Command::ReleaseVerify { .. }
            | Command::BackupVkey
    )
    .then(run)
}

#[allow(clippy::print_stdout)]
async fn run(cli: Cli) -> Result<bool, OpsError> {
    if let Some(outcome) = offline(&cli.command) {
        return outcome;
    }
    if let Command::StorageCheck { json } = cli.command {
        // Reads the bucket only: no database.
        let config = defendable_config::Config::parse(&Env::from_process())
            .map_err(|e| OpsError::Setup(e.to_string()))?;
        let r = storage::storage_check(
            &defendable_boot::ObjectStoreTarget::from_config(&config)
                .map_err(|e| OpsError::Setup(e.to_string()))?,
        )
        .await?;
        if json {
            println!(
                "{}",
                serde_json::to_string_pretty(&r).map_err(|e| OpsError::Setup(e.to_string()))?
            );
        } else {
            println!("{}", r.human());
        }
        let production = config.app_env.is_production();
        if !r.ok && !production {
            eprintln!("defendable-ops: a production deployment would fail this check");
        }
        return Ok(r.ok || !production);
    }
    let dep = Deployment::from_env().await?;
    match cli.command {
        Command::ReleaseSign { .. }
        | Command::ReleaseVerify { .. }
        | Command::ReleaseVkey
        | Command::BackupVkey
        | Command::StorageCheck { .. } => {
            unreachable!("ran above without a deployment")
        }
        Command::ReleaseDrill {
            release,
            backup,
            previous,
            vkeys,
            inject_migration,
            report,
            sweep_prefix,
        } => {
            let vkeys = release::pinned_vkeys(&vkeys, &dep.config)?;
            let r = release_drill::release_drill(
                &dep,
                &release_drill::ReleaseDrillOptions {
                    release,
                    backup,
                    previous,
                    vkeys,
                    inject_migration,
                    report,
                    sweep_prefix,
                },
            )
            .await?;
            println!("{}", r.human());
            Ok(r.ok)
        }
        Command::StorageSweep {
            prefix,
            older_than,
            apply,
            json,
        } => {
            let r = storage::storage_sweep(
                &dep,
                &storage::SweepOptions {
                    prefix,
                    older_than,
                    apply,
                },
            )
            .await?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&r).map_err(|e| OpsError::Setup(e.to_string()))?
                );
                return Ok(true);
            }
            for o in &r.orphans {
                println!("{}  {} bytes  {}", o.key, o.size, o.last_modified);
            }
            println!(
                "{} objects listed, {} referenced by no catalog version: {}",
                r.listed,
                r.orphans.len(),
                if r.applied {
                    "deleted (audit event storage.sweep)"
                } else {
                    "not deleted (pass --apply)"
                }
            );
            Ok(true)
        }
        Command::ReleaseReceipt {
            release: dir,
            vkeys,
        } => {
            let vkeys = release::pinned_vkeys(&vkeys, &dep.config)?;
            let r = release::release_receipt(&dep, &dir, &vkeys).await?;
            println!(
                "recorded {}; its proof bundle is {} (check it with `defendable verify {}`)",
                r.receipt_id,
                r.bundle.display(),
                r.bundle.display()
            );
            Ok(true)
        }
        Command::Backup { out } => {
            let b = backup(&dep, &out).await?;
            let m = &b.manifest;
            println!(
                "backup {} ({} bytes encrypted, SHA-256 {}): {} users, {} orgs, {} memberships, {} receipts in {} chains; {:.2} s",
                b.dir.display(),
                m.dump.bytes,
                m.dump.sha256,
                m.counts.users,
                m.counts.orgs,
                m.counts.memberships,
                m.counts.receipts,
                m.chains.len(),
                m.durations_ms.get("total").copied().unwrap_or(0) as f64 / 1000.0
            );
            Ok(true)
        }
        Command::RestoreDrill {
            backup,
            server,
            sample,
            allow_unsigned_manifest,
            report,
        } => {
            let target = match server {
                Some(url) => Target::Server(url),
                None => Target::Cluster(std::env::temp_dir().join(format!(
                    "defendable-drill-{}",
                    uuid::Uuid::new_v4().simple()
                ))),
            };
            let r = restore_drill(
                &dep,
                &DrillOptions {
                    backup,
                    target,
                    sample,
                    report,
                    allow_unsigned_manifest,
                },
            )
            .await?;
            println!("{}", r.human());
            Ok(r.ok)
        }
        Command::RotationReceipt {
            secret,
            old_uses,
            metrics,
        } => {
            let old = match (old_uses, metrics.is_empty()) {
                (Some(n), _) => OldUses::Given(n),
                (None, false) => OldUses::Metrics(metrics),
                (None, true) => {
                    return Err(OpsError::Setup(
                        "say how often the old secret was used at revocation: --metrics URL (each process) or --old-uses N".into(),
                    ))
                }
            };
            let r = rotation_receipt(&dep, &secret, &old).await?;
            println!(
                "recorded {} for {}: new fingerprint {}, old secret used {} times at revocation",
                r.receipt_id, r.secret, r.fingerprint, r.old_uses
            );
            Ok(true)
        }
        Command::Packet { out, api, repo } => {
            let p = packet(
                &dep,
                &Env::from_process(),
                &PacketOptions { out, api, repo },
            )
            .await?;
            println!(
                "evidence packet in {} ({} files)",
                p.dir.display(),
                p.files.len() + 1
            );
            for n in &p.notes {
                println!("note: {n}");
            }
            Ok(true)
        }
    }
}
