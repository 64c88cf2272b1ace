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
use defendable_ops::{backup::backup, Deployment, OpsError};

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

#[allow(clippy::print_stdout)]
async fn run(cli: Cli) -> Result<bool, OpsError> {
    let dep = Deployment::from_env().await?;
    match cli.command {
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
