//! The backup manifest: what the dump holds, taken inside the same snapshot as the dump, with a
//! signed checkpoint of every chain head so the heads cannot be edited along with the data. The
//! manifest as a whole — the dump's digest, the counts, the heads — is signed with the backup
//! key (`manifest.json.note`, a C2SP signed note under `defendable-backup`), since encrypting to
//! a public age recipient proves nothing about who wrote the file; a drill pins that key's vkey
//! and refuses a manifest it did not sign.

use std::collections::BTreeMap;
use std::path::Path;

use defendable_config::Config;
use defendable_ledger::note::{open_note, sign_note};
use defendable_ledger::{LedgerName, SignedCheckpoint, SigningKey, Vkeys};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{OpsError, Result};

/// The manifest's file name inside a backup directory.
pub const MANIFEST: &str = "manifest.json";
/// The manifest's signed note inside a backup directory.
pub const MANIFEST_NOTE: &str = "manifest.json.note";
/// The backup key's name in signed notes and vkeys.
pub const KEY_NAME: &str = "defendable-backup";
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
    /// API keys (revoked ones included); absent in manifests written before it was counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_keys: Option<i64>,
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

/// How a drill came to trust a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provenance {
    /// Signed by a pinned backup key.
    Signed,
    /// No signature (a backup made before manifests were signed), drilled only because the
    /// operator said so; the drill receipt records it.
    UnsignedAllowed,
}

impl Provenance {
    /// How the drill receipt names it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Provenance::Signed => "signed",
            Provenance::UnsignedAllowed => "unsigned, allowed by --allow-unsigned-manifest",
        }
    }
}

fn key_name() -> LedgerName {
    LedgerName::parse(KEY_NAME).expect("a valid key name")
}

/// The vkey of a backup-signing key.
pub fn backup_vkey(key: &SigningKey) -> String {
    defendable_ledger::note::vkey(&key_name(), &key.raw_public())
}

fn backup_error(what: impl Into<String>) -> OpsError {
    OpsError::Backup(what.into())
}

/// The key that signs backup manifests: BACKUP_SIGNING_KEY, or in development one generated
/// once under `DATA_DIR/dev-secrets/`.
pub fn backup_key(config: &Config) -> Result<SigningKey> {
    use secrecy::ExposeSecret as _;
    let encoded = match &config.backup_signing_key {
        Some(k) => k.expose_secret().to_owned(),
        None if !config.app_env.is_production() => {
            defendable_boot::kept_secret(&config.data_dir, "backup_signing_key", || {
                Ok(SigningKey::generate()?.1)
            })
            .map_err(|e| OpsError::Setup(e.to_string()))?
        }
        None => {
            return Err(OpsError::Setup(
                "BACKUP_SIGNING_KEY is not set: generate one with `defendable-api generate-signing-key`, keep it on the backup host only, and pin its vkey (`defendable-ops backup-vkey`) as BACKUP_VKEY on the drill host".into(),
            ))
        }
    };
    Ok(SigningKey::from_pkcs8(encoded.trim())?)
}

/// The backup-signing vkeys a drill pins: BACKUP_VKEY, or in development the generated key's.
/// Never a key found beside the backup.
pub fn backup_vkeys(config: &Config) -> Result<Vkeys> {
    let vkeys = if !config.backup_vkeys.is_empty() {
        config.backup_vkeys.clone()
    } else if !config.app_env.is_production() {
        vec![backup_vkey(&backup_key(config)?)]
    } else {
        return Err(OpsError::Setup(
            "BACKUP_VKEY is not set: pin the vkey of the backup host's BACKUP_SIGNING_KEY (`defendable-ops backup-vkey` prints it) on the drill host".into(),
        ));
    };
    Ok(Vkeys::parse(&vkeys)?)
}

impl Manifest {
    /// Reads `dir/manifest.json` after checking its signature against the pinned `keys`: the
    /// note must open with one of them and sign exactly the file's bytes. A backup without a
    /// note is refused unless `allow_unsigned`.
    pub fn load(dir: &Path, keys: &Vkeys, allow_unsigned: bool) -> Result<(Manifest, Provenance)> {
        let path = dir.join(MANIFEST);
        let text = std::fs::read_to_string(&path).map_err(|e| OpsError::io(&path, e))?;
        let note_path = dir.join(MANIFEST_NOTE);
        let provenance = match std::fs::read_to_string(&note_path) {
            Ok(note) => {
                let opened = open_note(&note, keys).map_err(|e| {
                    backup_error(format!(
                        "{}: {e}: the manifest is not signed by a pinned backup key (BACKUP_VKEY)",
                        note_path.display()
                    ))
                })?;
                if opened.text != text {
                    return Err(backup_error(format!(
                        "{} is not the text {MANIFEST_NOTE} signs: the manifest changed after signing",
                        path.display()
                    )));
                }
                Provenance::Signed
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if !allow_unsigned {
                    return Err(backup_error(format!(
                        "{} has no {MANIFEST_NOTE}: an unsigned manifest (a backup made before manifests were signed) is drilled only with --allow-unsigned-manifest, which the drill receipt records",
                        dir.display()
                    )));
                }
                Provenance::UnsignedAllowed
            }
            Err(e) => return Err(OpsError::io(&note_path, e)),
        };
        let manifest = serde_json::from_str(&text)
            .map_err(|e| backup_error(format!("{} is not a manifest: {e}", path.display())))?;
        Ok((manifest, provenance))
    }

    /// Writes `dir/manifest.json` and its signed note with the backup key.
    pub fn store(&self, dir: &Path, key: &SigningKey) -> Result<()> {
        let mut text = serde_json::to_string_pretty(self)
            .map_err(|e| backup_error(format!("manifest: {e}")))?;
        text.push('\n');
        let note = sign_note(text.as_bytes(), &key_name(), key)?;
        for (name, bytes) in [(MANIFEST, &text), (MANIFEST_NOTE, &note)] {
            let path = dir.join(name);
            std::fs::write(&path, bytes).map_err(|e| OpsError::io(&path, e))?;
        }
        Ok(())
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
                    (SELECT count(*) FROM dataset_versions), (SELECT count(*) FROM api_keys)",
            &[],
        )
        .await?;
    let counts = Counts {
        users: row.get(0),
        orgs: row.get(1),
        memberships: row.get(2),
        receipts: row.get(3),
        dataset_versions: row.get(4),
        api_keys: Some(row.get(5)),
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
