//! The backup manifest: what the dump holds, taken inside the same snapshot as the dump, with a
//! signed checkpoint of every chain head so the heads cannot be edited along with the data.

use std::collections::BTreeMap;
use std::path::Path;

use defendable_ledger::SignedCheckpoint;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{OpsError, Result};

/// The manifest's file name inside a backup directory.
pub const MANIFEST: &str = "manifest.json";
/// The encrypted dump's file name inside a backup directory.
pub const DUMP: &str = "dump.pgc.age";

/// Row counts that a restore must reproduce.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Users.
    pub users: i64,
    /// Organizations.
    pub orgs: i64,
    /// Memberships.
    pub memberships: i64,
    /// Receipts in every chain.
    pub receipts: i64,
    /// Dataset versions in the catalog.
    pub dataset_versions: i64,
}

/// One organization's chain at the snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chain {
    /// The organization.
    pub org: Uuid,
    /// Its receipts.
    pub receipts: i64,
    /// The head's seq (−1 for an empty chain).
    pub head_seq: i64,
    /// The head's hash.
    pub head_hash: String,
}

/// The encrypted dump.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DumpFile {
    /// File name in the backup directory.
    pub file: String,
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256 of the encrypted file, hex.
    pub sha256: String,
    /// How it is encrypted.
    pub encryption: String,
    /// The recipient it is encrypted to.
    pub recipient: String,
}

/// A backup's manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Manifest format version.
    pub format: u32,
    /// When the snapshot was taken (RFC 3339).
    pub created_at: String,
    /// The last applied migration.
    pub schema_version: i64,
    /// The server's version string.
    pub postgres: String,
    /// Row counts.
    pub counts: Counts,
    /// Every chain's length and head.
    pub chains: Vec<Chain>,
    /// A signed checkpoint of every non-empty chain head (v1 JSON).
    pub checkpoints: Vec<SignedCheckpoint>,
    /// A signed-note checkpoint (DESIGN §2b) of every organization's Merkle tree in the snapshot;
    /// a restore drill recomputes each root from the restored receipts. Empty in backups taken
    /// before ledger v2.
    #[serde(default)]
    pub tree_checkpoints: Vec<String>,
    /// The dump.
    pub dump: DumpFile,
    /// How long each step took, in milliseconds.
    pub durations_ms: BTreeMap<String, u64>,
}

impl Manifest {
    /// Reads `dir/manifest.json`.
    pub fn load(dir: &Path) -> Result<Manifest> {
        let path = dir.join(MANIFEST);
        let bytes = std::fs::read(&path).map_err(|e| OpsError::io(&path, e))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| OpsError::Backup(format!("{} is not a manifest: {e}", path.display())))
    }

    /// Writes `dir/manifest.json`.
    pub fn store(&self, dir: &Path) -> Result<()> {
        let path = dir.join(MANIFEST);
        let text = serde_json::to_vec_pretty(self)
            .map_err(|e| OpsError::Backup(format!("manifest: {e}")))?;
        std::fs::write(&path, text).map_err(|e| OpsError::io(&path, e))
    }
}

/// Counts and chain heads as the client's current snapshot sees them.
pub async fn snapshot(
    client: &impl defendable_store::GenericClient,
) -> Result<(Counts, Vec<Chain>)> {
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM orgs),
                    (SELECT count(*) FROM memberships), (SELECT count(*) FROM receipts),
                    (SELECT count(*) FROM dataset_versions)",
            &[],
        )
        .await?;
    let counts = Counts {
        users: row.get(0),
        orgs: row.get(1),
        memberships: row.get(2),
        receipts: row.get(3),
        dataset_versions: row.get(4),
    };
    let chains = client
        .query(
            "SELECT h.org_id, coalesce(c.n, 0), h.seq, h.hash
               FROM ledger_heads h
               LEFT JOIN (SELECT org_id, count(*) AS n FROM receipts GROUP BY org_id) c
                 ON c.org_id = h.org_id
              ORDER BY h.org_id",
            &[],
        )
        .await?
        .iter()
        .map(|r| Chain {
            org: r.get(0),
            receipts: r.get(1),
            head_seq: r.get(2),
            head_hash: r.get(3),
        })
        .collect();
    Ok((counts, chains))
}
