//! What the CLI trusts between runs, like Go's checksum-database client: the verifier keys
//! pinned per API, and the newest checkpoint verified per log origin. Both live in the user's
//! state directory (`$XDG_STATE_HOME/defendable`, else `~/.local/state/defendable`; 0600 files
//! in a 0700 directory) and only ever grow: a newer checkpoint replaces an older one only after
//! a consistency proof between them verified.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use defendable_ledger::{OpenedCheckpoint, Vkeys};
use serde::{Deserialize, Serialize};

use crate::Exit;

/// The state directory's files.
#[derive(Debug, Clone)]
pub struct TrustStore {
    dir: PathBuf,
}

/// `keys.json`: vkeys pinned per API base URL.
#[derive(Debug, Default, Serialize, Deserialize)]
struct PinnedKeys {
    #[serde(default)]
    servers: BTreeMap<String, Vec<String>>,
}

impl TrustStore {
    /// The store in the user's state directory (`DEFENDABLE_STATE_DIR` overrides it).
    pub fn open() -> Result<TrustStore, Exit> {
        let dir = match std::env::var_os("DEFENDABLE_STATE_DIR") {
            Some(d) if !d.is_empty() => PathBuf::from(d),
            _ => dirs::state_dir()
                .or_else(dirs::data_local_dir)
                .map(|d| d.join("defendable"))
                .ok_or_else(|| {
                    Exit::usage(
                        "no state directory: set HOME, XDG_STATE_HOME or DEFENDABLE_STATE_DIR",
                    )
                })?,
        };
        Ok(TrustStore { dir })
    }

    /// Where it keeps its files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn keys_path(&self) -> PathBuf {
        self.dir.join("keys.json")
    }

    fn checkpoint_path(&self, origin: &str) -> PathBuf {
        let digest = defendable_ledger::Hash::of(origin.as_bytes()).to_hex();
        self.dir.join("checkpoints").join(digest)
    }

    /// The vkeys pinned for `api`.
    pub fn pinned(&self, api: &str) -> Result<Vec<String>, Exit> {
        Ok(self.load_keys()?.servers.remove(api).unwrap_or_default())
    }

    /// Pins `vkeys` for `api` (replacing what was pinned).
    pub fn pin(&self, api: &str, vkeys: &[String]) -> Result<(), Exit> {
        let mut all = self.load_keys()?;
        all.servers.insert(api.to_owned(), vkeys.to_vec());
        let text = serde_json::to_vec_pretty(&all).map_err(|e| Exit::usage(e.to_string()))?;
        write_private(&self.keys_path(), &text)
    }

    fn load_keys(&self) -> Result<PinnedKeys, Exit> {
        let path = self.keys_path();
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                Exit::usage(format!(
                    "{} is not a pinned-key file ({e}); delete it to pin again on next use",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(PinnedKeys::default()),
            Err(e) => Err(Exit::io(&path, e)),
        }
    }

    /// The newest checkpoint verified for `origin`, opened with `keys`.
    pub fn checkpoint(&self, origin: &str, keys: &Vkeys) -> Result<Option<OpenedCheckpoint>, Exit> {
        let path = self.checkpoint_path(origin);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Exit::io(&path, e)),
        };
        let opened = defendable_ledger::note::open_checkpoint(&text, keys).map_err(|e| {
            Exit::verify(format!(
                "the checkpoint saved for {origin} in {} does not open with the trusted keys: {e}",
                path.display()
            ))
        })?;
        if opened.head.origin != origin {
            return Err(Exit::verify(format!(
                "{} holds a checkpoint of {}, not {origin}",
                path.display(),
                opened.head.origin
            )));
        }
        Ok(Some(opened))
    }

    /// Saves `checkpoint` as the newest verified for its origin.
    pub fn save_checkpoint(&self, checkpoint: &OpenedCheckpoint) -> Result<(), Exit> {
        write_private(
            &self.checkpoint_path(&checkpoint.head.origin),
            checkpoint.text.as_bytes(),
        )
    }
}

/// Writes a file atomically: a 0600 temporary file in a 0700 directory, then a rename.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), Exit> {
    let dir = path
        .parent()
        .ok_or_else(|| Exit::usage("a state path has no directory"))?;
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|e| Exit::io(dir, e))?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp).map_err(|e| Exit::io(&tmp, e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| Exit::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Exit::io(path, e))
}

/// How a set of keys came to be trusted, for the user to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `--vkey` or the `vkeys` file: pinned out of band (the independent check).
    OutOfBand,
    /// Keys pinned on an earlier run, still served.
    Pinned,
    /// First use: the server's keys, now pinned.
    FirstUse,
    /// The server added keys while still serving a pinned one, and the user trusted them
    /// (`--trust-new-keys` or a confirmation on the terminal); all are pinned now.
    Rotated,
    /// The server serves keys beside a pinned one that the user did not trust: only the
    /// pinned keys verify, and the user is told how to trust the others.
    NewKeysNotTrusted(Vec<String>),
    /// The user told us to trust a key set that dropped every pinned key.
    Replaced,
}

impl KeySource {
    /// A sentence for stderr, if the user should hear about it.
    pub fn notice(&self, api: &str, store: &TrustStore) -> Option<String> {
        match self {
            KeySource::OutOfBand | KeySource::Pinned => None,
            KeySource::FirstUse => Some(format!(
                "pinned the signing keys of {api} on first use (in {}); compare them with the vkeys published in docs/receipts.md and the release notes, or pass --vkey to pin them yourself",
                store.dir().display()
            )),
            KeySource::Rotated => Some(format!(
                "{api} added a signing key and still serves one you pinned; you trusted the new one, and it is pinned too"
            )),
            KeySource::NewKeysNotTrusted(added) => Some(format!(
                "{api} serves signing keys you have not pinned ({}); they are not trusted and verification used only your pinned keys: check them out of band (docs/receipts.md, release notes) and rerun with --trust-new-keys",
                added.join(", ")
            )),
            KeySource::Replaced => Some(format!(
                "replaced every key pinned for {api} with the keys it serves now (--trust-new-keys)"
            )),
        }
    }
}

/// Decides which vkeys to trust for `api`: out-of-band keys when given; otherwise the served
/// keys, pinned on first use. After that a served key that is not pinned is trusted only with
/// `trust_new` (`--trust-new-keys`) or when `confirm` says the user accepted it on a terminal,
/// never silently: without either, keys beside a pinned one are left out, and a key set that
/// drops every pinned key is refused.
pub fn decide(
    store: &TrustStore,
    api: &str,
    out_of_band: &[String],
    served: Option<&[String]>,
    trust_new: bool,
    confirm: &mut dyn FnMut(&str, &[String]) -> bool,
) -> Result<(Vec<String>, KeySource), Exit> {
    if !out_of_band.is_empty() {
        return Ok((out_of_band.to_vec(), KeySource::OutOfBand));
    }
    let pinned = store.pinned(api)?;
    let Some(served) = served else {
        if pinned.is_empty() {
            return Err(Exit::usage(format!(
                "no keys to verify with: pass --vkey, or go online once so the keys of {api} are pinned"
            )));
        }
        return Ok((pinned, KeySource::Pinned));
    };
    if pinned.is_empty() {
        store.pin(api, served)?;
        return Ok((served.to_vec(), KeySource::FirstUse));
    }
    let kept = served.iter().any(|k| pinned.contains(k));
    let added: Vec<String> = served
        .iter()
        .filter(|k| !pinned.contains(k))
        .cloned()
        .collect();
    if added.is_empty() {
        return Ok((pinned, KeySource::Pinned));
    }
    let trusted = trust_new || confirm(api, &added);
    if !kept && !trusted {
        return Err(Exit::verify(format!(
            "{api} now serves signing keys that drop every key pinned for it ({}); if its operator rotated keys, check the new vkey out of band (docs/receipts.md, release notes) and rerun with --vkey or --trust-new-keys",
            pinned.join(", ")
        )));
    }
    if !kept {
        store.pin(api, served)?;
        return Ok((served.to_vec(), KeySource::Replaced));
    }
    if !trusted {
        return Ok((pinned, KeySource::NewKeysNotTrusted(added)));
    }
    let mut all = pinned;
    all.extend(added);
    store.pin(api, &all)?;
    Ok((all, KeySource::Rotated))
}

/// Asks on the terminal whether to trust `keys` (stdin and stderr both terminals); anything
/// but yes, or no terminal, is no.
pub fn confirm_on_terminal(api: &str, keys: &[String]) -> bool {
    use std::io::IsTerminal as _;
    if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
        return false;
    }
    eprint!(
        "{api} serves signing keys you have not pinned:\n  {}\nCheck them out of band (docs/receipts.md, release notes). Trust them? [y/N] ",
        keys.join("\n  ")
    );
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).is_ok()
        && matches!(line.trim(), "y" | "Y" | "yes" | "Yes")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> TrustStore {
        let dir = std::env::temp_dir().join(format!(
            "defendable-trust-{}",
            uuid::Uuid::new_v4().simple()
        ));
        TrustStore { dir }
    }

    const API: &str = "https://api.example.com";

    fn no(_: &str, _: &[String]) -> bool {
        false
    }

    fn yes(_: &str, _: &[String]) -> bool {
        true
    }

    #[test]
    fn keys_are_pinned_on_first_use_and_a_new_key_is_never_trusted_silently() {
        let s = store();
        let (a, b, c) = ("a+1".to_owned(), "b+2".to_owned(), "c+3".to_owned());
        let (keys, src) = decide(&s, API, &[], Some(std::slice::from_ref(&a)), false, &mut no)
            .expect("first use");
        assert_eq!((keys, src), (vec![a.clone()], KeySource::FirstUse));
        let (_, src) =
            decide(&s, API, &[], Some(std::slice::from_ref(&a)), false, &mut no).expect("again");
        assert_eq!(src, KeySource::Pinned);
        // A key added beside the pinned one is left out without --trust-new-keys or a yes on
        // the terminal: only the pinned key verifies, and nothing new is pinned.
        let (keys, src) = decide(&s, API, &[], Some(&[b.clone(), a.clone()]), false, &mut no)
            .expect("not trusted");
        assert_eq!(
            (keys, src),
            (
                vec![a.clone()],
                KeySource::NewKeysNotTrusted(vec![b.clone()])
            )
        );
        assert_eq!(s.pinned(API).expect("pinned"), vec![a.clone()]);
        let mut asked = Vec::new();
        let (keys, src) = decide(
            &s,
            API,
            &[],
            Some(&[b.clone(), a.clone()]),
            false,
            &mut |_: &str, keys: &[String]| {
                asked.extend_from_slice(keys);
                true
            },
        )
        .expect("confirmed");
        assert_eq!(
            asked,
            vec![b.clone()],
            "the terminal was asked about the new key only"
        );
        assert_eq!(
            (keys, src),
            (vec![a.clone(), b.clone()], KeySource::Rotated)
        );
        // A key set that drops every pinned key is refused, unless the user says otherwise.
        let refused = decide(&s, API, &[], Some(std::slice::from_ref(&c)), false, &mut no)
            .expect_err("refused");
        assert_eq!(refused.code, crate::EXIT_VERIFY);
        assert!(
            refused.message.contains("--trust-new-keys"),
            "{}",
            refused.message
        );
        assert_eq!(
            s.pinned(API).expect("pinned"),
            vec![a.clone(), b.clone()],
            "nothing changed"
        );
        let (keys, src) =
            decide(&s, API, &[], Some(std::slice::from_ref(&c)), true, &mut no).expect("trusted");
        assert_eq!((keys, src), (vec![c.clone()], KeySource::Replaced));
        let (keys, src) = decide(&s, API, &[], Some(&[c.clone(), a.clone()]), false, &mut yes)
            .expect("confirmed again");
        assert_eq!(
            (keys, src),
            (vec![c.clone(), a.clone()], KeySource::Rotated)
        );
        // Out-of-band keys win and pin nothing; offline uses what is pinned.
        let (keys, src) = decide(
            &s,
            API,
            std::slice::from_ref(&a),
            Some(std::slice::from_ref(&c)),
            false,
            &mut no,
        )
        .expect("oob");
        assert_eq!((keys, src), (vec![a.clone()], KeySource::OutOfBand));
        let (keys, _) = decide(&s, API, &[], None, false, &mut no).expect("offline");
        assert_eq!(keys, vec![c, a]);
        assert!(
            decide(&s, "https://other.example", &[], None, false, &mut no).is_err(),
            "nothing pinned, offline"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(s.dir().join("keys.json"))
                .expect("file")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let _ = std::fs::remove_dir_all(s.dir());
    }
}
