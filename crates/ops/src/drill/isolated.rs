//! The isolated database a drill restores into (a new database on a server, or a throwaway
//! cluster), and the restore itself: the dump decrypted as it streams into `pg_restore`.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use defendable_store::cluster::{Cluster, Durability};
use uuid::Uuid;

use super::Target;
use crate::postgres::{self, tool_error, Running};
use crate::{OpsError, Result};

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

    pub(crate) fn describe(&self) -> String {
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
