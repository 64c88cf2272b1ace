//! `cargo xtask backup`: a `pg_dump` in custom format, taken in an exported snapshot and
//! encrypted to the age recipient as it streams (plaintext never touches disk), plus a manifest
//! computed inside the same snapshot: counts, every chain head, and a signed checkpoint of each.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use defendable_ledger::{Checkpoint, Hash};
use tokio_postgres::IsolationLevel;

use crate::manifest::{self, DumpFile, Manifest, DUMP};
use crate::postgres::{self, tool_error, Running};
use crate::{now_compact, now_rfc3339, Deployment, OpsError, Result};

/// A finished backup.
#[derive(Debug, Clone)]
pub struct Backup {
    /// Its directory (`OUT/defendable-<time>`), holding the encrypted dump and the manifest.
    pub dir: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
}

/// Backs the deployment's database up into a new directory under `out`.
pub async fn backup(dep: &Deployment, out: &Path) -> Result<Backup> {
    let recipient = dep.recipient()?;
    let backup_key = dep.backup_key()?;
    let key = dep.signing_key()?;
    let log = dep.log_signer()?;
    let started = Instant::now();
    let dir = new_dir(out)?;

    let mut client = dep.pool.get().await?;
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let snapshot_id: String = tx
        .query_one("SELECT pg_export_snapshot()", &[])
        .await?
        .get(0);
    let created_at = now_rfc3339();
    let now = time::OffsetDateTime::now_utc();
    let (counts, chains) = manifest::snapshot(&tx).await?;
    let schema_version = defendable_store::schema_version(&tx).await?.unwrap_or(0);
    let postgres_version: String = tx.query_one("SHOW server_version", &[]).await?.get(0);
    let mut checkpoints = Vec::new();
    for c in chains.iter().filter(|c| c.head_seq >= 0) {
        checkpoints.push(key.sign(Checkpoint::new(
            c.org,
            c.head_seq,
            Hash::parse(&c.head_hash)?,
            now,
        ))?);
    }
    let mut tree_checkpoints = Vec::new();
    for c in &chains {
        let edge = defendable_ledger::store::tree_edge(&tx, c.org).await?;
        tree_checkpoints.push(log.sign(c.org, edge.size(), edge.root())?);
    }
    let counted = started.elapsed();

    let dump_path = dir.join(DUMP);
    let url = dep.database_url().to_owned();
    let recipient_text = recipient.to_string();
    let target = dump_path.clone();
    let dumped = tokio::task::spawn_blocking(move || {
        dump_encrypted(&url, &snapshot_id, &recipient, &target)
    })
    .await
    .map_err(|e| tool_error("pg_dump", e))?;
    // The snapshot must stay exported until pg_dump has finished with it.
    tx.commit().await?;
    let (bytes, sha256) = match dumped {
        Ok(d) => d,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
    };
    let manifest = Manifest {
        format: 1,
        created_at,
        schema_version,
        postgres: postgres_version,
        counts,
        chains,
        checkpoints,
        tree_checkpoints,
        dump: DumpFile {
            file: DUMP.into(),
            bytes,
            sha256,
            encryption: "age-x25519".into(),
            recipient: recipient_text,
        },
        durations_ms: [
            ("snapshot_and_counts".to_owned(), counted.as_millis() as u64),
            ("total".to_owned(), started.elapsed().as_millis() as u64),
        ]
        .into_iter()
        .collect(),
    };
    manifest.store(&dir, &backup_key)?;
    Ok(Backup { dir, manifest })
}

fn new_dir(out: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(out).map_err(|e| OpsError::io(out, e))?;
    let stem = format!("defendable-{}", now_compact());
    for n in 0.. {
        let dir = if n == 0 {
            out.join(&stem)
        } else {
            out.join(format!("{stem}-{n}"))
        };
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        match builder.create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(OpsError::io(&dir, e)),
        }
    }
    unreachable!("some suffix is free")
}

/// A writer that counts and hashes what passes through.
struct Hashing<W> {
    inner: W,
    ctx: ring::digest::Context,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.ctx.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn dump_encrypted(
    url: &str,
    snapshot: &str,
    recipient: &age::x25519::Recipient,
    path: &Path,
) -> Result<(u64, String)> {
    let mut cmd = postgres::command("pg_dump", url)?;
    cmd.arg("--format=custom")
        .arg(format!("--snapshot={snapshot}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    let mut running = Running::spawn("pg_dump", cmd)?;
    let mut stdout = running
        .child
        .stdout
        .take()
        .ok_or_else(|| tool_error("pg_dump", "no stdout"))?;

    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file = options.open(path).map_err(|e| OpsError::io(path, e))?;
    let sink = Hashing {
        inner: std::io::BufWriter::with_capacity(1 << 20, file),
        ctx: ring::digest::Context::new(&ring::digest::SHA256),
        bytes: 0,
    };
    let encryptor =
        age::Encryptor::with_recipients(std::iter::once(recipient as &dyn age::Recipient))
            .map_err(|e| OpsError::Crypto(e.to_string()))?;
    let mut writer = encryptor
        .wrap_output(sink)
        .map_err(|e| OpsError::Crypto(e.to_string()))?;
    let copied = std::io::copy(&mut stdout, &mut writer);
    running.finish()?;
    copied.map_err(|e| OpsError::io(path, e))?;
    let mut sink = writer.finish().map_err(|e| OpsError::io(path, e))?;
    sink.flush().map_err(|e| OpsError::io(path, e))?;
    let file = sink
        .inner
        .into_inner()
        .map_err(|e| OpsError::io(path, e.into_error()))?;
    file.sync_all().map_err(|e| OpsError::io(path, e))?;
    Ok((sink.bytes, hex::encode(sink.ctx.finish())))
}
