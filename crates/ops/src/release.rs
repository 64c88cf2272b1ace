//! Releases (docs/protocols/release.md): a release directory holds the binaries, their CycloneDX
//! SBOM, an in-toto provenance statement and `release.json`; `SHA256SUMS` lists every one of
//! them and is signed as a C2SP signed note by the release key (`RELEASE_SIGNING_KEY`, key name
//! [`KEY_NAME`]), whose vkey the directory carries in `release.vkey`. Signing needs no database
//! (a tag workflow runs it); [`verify_release`] checks a directory from its files alone, and
//! [`release_receipt`] records it in the operator organization's log and adds the receipt's
//! proof bundle to the directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use defendable_config::Config;
use defendable_ledger::note::{open_note, sign_note};
use defendable_ledger::{LedgerName, SigningKey, Vkeys};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::record::{record_operation, Operation};
use crate::{sha256_file, Deployment, OpsError, Result};

/// The key name release notes are signed under.
pub const KEY_NAME: &str = "defendable-release";
/// The checksum file.
pub const SUMS: &str = "SHA256SUMS";
/// Its signed note.
pub const SUMS_NOTE: &str = "SHA256SUMS.note";
/// The release key's vkey.
pub const VKEY: &str = "release.vkey";
/// What the release says of itself (listed in SHA256SUMS).
pub const RELEASE_JSON: &str = "release.json";
/// The `release` receipt's v2 proof bundle, added by [`release_receipt`].
pub const RECEIPT_BUNDLE: &str = "release-receipt.json";
/// The binaries a release ships.
pub const BINARIES: [&str; 3] = ["defendable-api", "defendable", "defendable-ops"];
/// The CycloneDX SBOM of each shipped package.
pub const SBOMS: [&str; 3] = [
    "defendable-api.cdx.json",
    "defendable-cli.cdx.json",
    "defendable-ops.cdx.json",
];
/// The in-toto statement.
pub const PROVENANCE: &str = "provenance.intoto.json";

/// Files a release directory holds that SHA256SUMS does not list (it cannot list itself, its
/// signature or the vkey that checks it; the receipt bundle is added after signing).
const UNLISTED: [&str; 4] = [SUMS, SUMS_NOTE, VKEY, RECEIPT_BUNDLE];

fn release_error(what: impl Into<String>) -> OpsError {
    OpsError::Release(what.into())
}

/// `release.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReleaseJson {
    /// `X.Y.Z`.
    pub version: String,
    /// The git commit it was built from.
    pub commit: String,
    /// `release` or `dev` (the test suite's variant).
    pub profile: String,
    /// `rustc -V`.
    pub toolchain: String,
    /// The commit time, which the build used as SOURCE_DATE_EPOCH.
    pub source_date_epoch: i64,
}

/// The release key: RELEASE_SIGNING_KEY, or in development one generated once and kept under
/// `DATA_DIR/dev-secrets/`.
pub fn release_key(config: &Config) -> Result<SigningKey> {
    let encoded = match &config.release_signing_key {
        Some(k) => k.expose_secret().to_owned(),
        None if !config.app_env.is_production() => defendable_boot::kept_secret(
            &config.data_dir,
            "release_signing_key",
            || Ok(SigningKey::generate()?.1),
        )
        .map_err(|e| OpsError::Setup(e.to_string()))?,
        None => {
            return Err(OpsError::Setup(
                "RELEASE_SIGNING_KEY is not set: generate one with `defendable-api generate-signing-key`, keep it in the release workflow's secrets, and publish its vkey".into(),
            ))
        }
    };
    SigningKey::from_pkcs8(&encoded)
        .map_err(|e| OpsError::Setup(format!("RELEASE_SIGNING_KEY: {e}")))
}

fn key_name() -> LedgerName {
    LedgerName::parse(KEY_NAME).expect("a valid key name")
}

/// The vkey of a release key.
pub fn release_vkey(key: &SigningKey) -> String {
    defendable_ledger::note::vkey(&key_name(), &key.raw_public())
}

/// The files of `dir` SHA256SUMS must list, sorted.
fn listed_files(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| OpsError::io(dir, e))? {
        let entry = entry.map_err(|e| OpsError::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if UNLISTED.contains(&name.as_str()) {
            continue;
        }
        if !entry.path().is_file() {
            return Err(release_error(format!(
                "{name} is not a file; a release directory holds files only"
            )));
        }
        names.push(name);
    }
    names.sort();
    Ok(names)
}

/// Writes SHA256SUMS over every file of `dir`, its signed note and the vkey; returns the vkey.
pub fn sign_release(dir: &Path, key: &SigningKey) -> Result<String> {
    let mut sums = String::new();
    for name in listed_files(dir)? {
        sums.push_str(&format!("{}  {name}\n", sha256_file(&dir.join(&name))?));
    }
    let note = sign_note(sums.as_bytes(), &key_name(), key)?;
    let vkey = release_vkey(key);
    for (name, text) in [
        (SUMS, &sums),
        (SUMS_NOTE, &note),
        (VKEY, &(vkey.clone() + "\n")),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| OpsError::io(&path, e))?;
    }
    Ok(vkey)
}

/// A release directory whose signature and checksums verified.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedRelease {
    /// Its directory.
    pub dir: PathBuf,
    /// What it says of itself.
    pub info: ReleaseJson,
    /// SHA-256 of every listed file.
    pub files: BTreeMap<String, String>,
    /// SHA-256 of SHA256SUMS.
    pub sums_sha256: String,
    /// The vkey that signed it.
    pub vkey: String,
}

/// The release vkeys to pin: those given (`--vkey`), else `RELEASE_VKEY`. There is no third
/// source: a directory's own `release.vkey` proves integrity, not origin, and whoever altered a
/// release would sign it again with a key of their own and ship that key beside it.
pub fn pinned_vkeys(given: &[String], config: &Config) -> Result<Vec<String>> {
    let pinned = if given.is_empty() {
        config.release_vkeys.clone()
    } else {
        given.to_vec()
    };
    if pinned.is_empty() {
        return Err(release_error(
            "no release vkey is pinned: pass --vkey with the published release vkey (docs/protocols/release.md) or set RELEASE_VKEY; a release directory's own release.vkey is never trusted",
        ));
    }
    Ok(pinned)
}

/// Verifies a release from its directory alone: the signed note over SHA256SUMS under a
/// `pinned` vkey (never the directory's own `release.vkey`: an empty `pinned` is refused),
/// every listed file's SHA-256, no file unlisted, and `release.json`. Any mismatch is an error
/// naming the file.
pub fn verify_release(dir: &Path, pinned: &[String]) -> Result<VerifiedRelease> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path).map_err(|e| OpsError::io(&path, e))
    };
    if pinned.is_empty() {
        return Err(release_error(
            "no release vkey is pinned: a release directory's own release.vkey is never trusted",
        ));
    }
    let keys = Vkeys::parse(pinned)?;
    let sums = read(SUMS)?;
    let note = read(SUMS_NOTE)?;
    let opened = open_note(&note, &keys).map_err(|e| release_error(format!("{SUMS_NOTE}: {e}")))?;
    if opened.text != sums {
        return Err(release_error(format!(
            "{SUMS} is not the text its signed note signs"
        )));
    }
    let mut files = BTreeMap::new();
    for line in sums.lines() {
        let (digest, name) = line
            .split_once("  ")
            .ok_or_else(|| release_error(format!("{SUMS}: malformed line {line:?}")))?;
        if name.contains('/') || UNLISTED.contains(&name) {
            return Err(release_error(format!("{SUMS} lists {name:?}")));
        }
        let got = sha256_file(&dir.join(name))?;
        if got != digest {
            return Err(release_error(format!(
                "{name}: SHA-256 is {got}, {SUMS} says {digest}: the file changed after signing"
            )));
        }
        files.insert(name.to_owned(), digest.to_owned());
    }
    for name in listed_files(dir)? {
        if !files.contains_key(&name) {
            return Err(release_error(format!("{name} is not listed in {SUMS}")));
        }
    }
    for required in BINARIES
        .iter()
        .chain(&SBOMS)
        .chain(&[PROVENANCE, RELEASE_JSON])
    {
        if !files.contains_key(*required) {
            return Err(release_error(format!("the release has no {required}")));
        }
    }
    let info: ReleaseJson = serde_json::from_str(&read(RELEASE_JSON)?)
        .map_err(|e| release_error(format!("{RELEASE_JSON}: {e}")))?;
    Ok(VerifiedRelease {
        dir: dir.to_owned(),
        info,
        files,
        sums_sha256: sha256_file(&dir.join(SUMS))?,
        vkey: keys.vkeys()[0].clone(),
    })
}

/// The public fields of a `release` receipt.
pub fn release_public(r: &VerifiedRelease) -> serde_json::Value {
    let artifacts: BTreeMap<&str, &str> = BINARIES
        .iter()
        .filter_map(|b| r.files.get(*b).map(|d| (*b, d.as_str())))
        .collect();
    json!({
        "version": r.info.version,
        "commit": r.info.commit,
        "profile": r.info.profile,
        "toolchain": r.info.toolchain,
        "artifacts": artifacts,
        "sboms": SBOMS
            .iter()
            .filter_map(|b| r.files.get(*b).map(|d| (*b, d.as_str())))
            .collect::<BTreeMap<_, _>>(),
        "provenance_sha256": r.files.get(PROVENANCE),
        "sha256sums_sha256": r.sums_sha256,
        "release_vkey": r.vkey,
    })
}

/// What [`release_receipt`] recorded.
#[derive(Debug, Clone)]
pub struct RecordedRelease {
    /// The receipt.
    pub receipt_id: String,
    /// Where its proof bundle was written.
    pub bundle: PathBuf,
}

/// Verifies the release directory, records a `release` receipt in OPERATOR_ORG's chain (with
/// its audit event) and writes the receipt's v2 proof bundle into the directory, so
/// `defendable verify DIR/release-receipt.json` proves the release is in the log.
pub async fn release_receipt(
    dep: &Deployment,
    dir: &Path,
    pinned: &[String],
) -> Result<RecordedRelease> {
    let release = verify_release(dir, pinned)?;
    let (operator, _) = dep.operator_org().await?;
    let receipt_id = record_operation(
        dep,
        operator,
        Operation {
            kind: "release",
            action: defendable_store::audit::AuditAction::OpsRelease,
            public: release_public(&release),
            private: Some(
                json!({"dir": dir.display().to_string(), "host": crate::drill::hostname()}),
            ),
        },
    )
    .await?;
    let bundle = crate::packet::bundle_of(dep, operator, &receipt_id).await?;
    let path = dir.join(RECEIPT_BUNDLE);
    // One line, as the API serves bundles.
    let mut text =
        serde_json::to_vec(&bundle).map_err(|e| release_error(format!("the proof bundle: {e}")))?;
    text.push(b'\n');
    std::fs::write(&path, text).map_err(|e| OpsError::io(&path, e))?;
    Ok(RecordedRelease {
        receipt_id,
        bundle: path,
    })
}
