//! Signed-note checkpoints (C2SP `signed-note` and `tlog-checkpoint`, DESIGN §2b), built on
//! `signed_note` and `tlog_tiles`.
//!
//! One Ed25519 key, under key name `LEDGER_NAME`, signs the checkpoints of every organization's
//! log; an organization's origin is `<LEDGER_NAME>/orgs/<org uuid>`. The verifier key (vkey) is
//! `<name>+<8 hex key id>+<base64(0x01 || public key)>` with key id
//! `SHA-256(name || 0x0A || 0x01 || public key)[0..4]`.

use std::fmt;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use signed_note::{Note, NoteError, Signer, StandardVerifier, Verifier, VerifierList};
use uuid::Uuid;

use crate::checkpoint::SigningKey;
use crate::merkle::TreeHash;
use crate::LedgerError;

/// The signature type byte of Ed25519 in signed notes.
const ED25519: u8 = 0x01;

/// The log operator's stable name (`LEDGER_NAME`): non-empty, no spaces, no `+`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LedgerName(String);

impl LedgerName {
    /// Parses a name such as `ledger.example.com`.
    pub fn parse(s: &str) -> Result<LedgerName, LedgerError> {
        if !signed_note::is_key_name_valid(s) || s.chars().any(char::is_control) {
            return Err(LedgerError::InvalidKey(format!(
                "LEDGER_NAME {s:?} must be non-empty with no spaces and no `+` (e.g. ledger.example.com)"
            )));
        }
        Ok(LedgerName(s.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The origin of `org`'s log: `<name>/orgs/<org uuid>`.
    pub fn origin(&self, org: Uuid) -> String {
        format!("{}/orgs/{org}", self.0)
    }
}

impl fmt::Display for LedgerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The key id of an Ed25519 public key under `name`.
pub fn key_id(name: &LedgerName, public: &[u8; 32]) -> u32 {
    signed_note::key_id(name.as_str(), &typed(public))
}

fn typed(public: &[u8; 32]) -> Vec<u8> {
    let mut v = Vec::with_capacity(33);
    v.push(ED25519);
    v.extend_from_slice(public);
    v
}

/// The C2SP verifier key of an Ed25519 public key under `name`.
pub fn vkey(name: &LedgerName, public: &[u8; 32]) -> String {
    format!(
        "{}+{:08x}+{}",
        name.as_str(),
        key_id(name, public),
        STANDARD.encode(typed(public))
    )
}

/// Signs note text with the ledger key under `LEDGER_NAME`.
struct NoteSigner<'a> {
    name: &'a LedgerName,
    id: u32,
    key: &'a SigningKey,
}

impl Signer for NoteSigner<'_> {
    fn name(&self) -> &str {
        self.name.as_str()
    }

    fn key_id(&self) -> u32 {
        self.id
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, signature::Error> {
        Ok(self.key.sign_bytes(msg))
    }
}

/// A checkpoint's statement: the log `origin` has `size` leaves with root `root`.
#[derive(Debug, Clone, PartialEq)]
pub struct TreeHead {
    /// The log's origin line.
    pub origin: String,
    /// Leaves in the tree.
    pub size: u64,
    /// The tree's root hash.
    pub root: TreeHash,
}

impl TreeHead {
    /// The checkpoint body: origin, size and base64 root, one per line, no extension lines.
    pub fn body(&self) -> Result<Vec<u8>, LedgerError> {
        let c = tlog_tiles::Checkpoint::new(&self.origin, self.size, self.root, "")
            .map_err(|_| LedgerError::InvalidKey(format!("invalid origin {:?}", self.origin)))?;
        Ok(c.to_bytes())
    }

    /// The signed checkpoint note (UTF-8 text ending in a newline).
    pub fn sign(&self, name: &LedgerName, key: &SigningKey) -> Result<String, LedgerError> {
        sign_note(&self.body()?, name, key)
    }
}

/// Signs note text (UTF-8, ending in a newline) with `key` under `name`.
pub fn sign_note(text: &[u8], name: &LedgerName, key: &SigningKey) -> Result<String, LedgerError> {
    let signer = NoteSigner {
        name,
        id: key_id(name, &key.raw_public()),
        key,
    };
    let mut note = Note::new(text, &[]).map_err(note_error)?;
    note.add_sigs(&[&signer]).map_err(note_error)?;
    String::from_utf8(note.to_bytes())
        .map_err(|_| LedgerError::InvalidKey("a note is UTF-8".into()))
}

fn note_error(e: NoteError) -> LedgerError {
    LedgerError::BadSignature(e.to_string())
}

/// The verifier keys a reader trusts (pinned or published).
pub struct Vkeys {
    list: VerifierList,
    vkeys: Vec<String>,
    names: Vec<String>,
}

impl fmt::Debug for Vkeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vkeys").field("vkeys", &self.vkeys).finish()
    }
}

impl Vkeys {
    /// Parses C2SP verifier keys; an unparsable one is an error (naming it).
    pub fn parse<S: AsRef<str>>(vkeys: &[S]) -> Result<Vkeys, LedgerError> {
        let mut list: Vec<Box<dyn Verifier>> = Vec::with_capacity(vkeys.len());
        let mut kept = Vec::new();
        let mut names = Vec::new();
        for v in vkeys {
            let v = v.as_ref().trim();
            if kept.iter().any(|k: &String| k == v) {
                continue;
            }
            let verifier = StandardVerifier::new(v)
                .map_err(|e| LedgerError::InvalidKey(format!("verifier key {v:?}: {e}")))?;
            names.push(verifier.name().to_owned());
            list.push(Box::new(verifier));
            kept.push(v.to_owned());
        }
        Ok(Vkeys {
            list: VerifierList::new(list),
            vkeys: kept,
            names,
        })
    }

    /// The keys, as given (duplicates removed).
    pub fn vkeys(&self) -> &[String] {
        &self.vkeys
    }

    /// Whether no key is trusted.
    pub fn is_empty(&self) -> bool {
        self.vkeys.is_empty()
    }

    /// The names the keys sign under.
    pub fn names(&self) -> &[String] {
        &self.names
    }
}

/// A checkpoint whose signature verified.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenedCheckpoint {
    /// What it states.
    pub head: TreeHead,
    /// The name of the trusted key that signed it (the ledger's name).
    pub signed_by: String,
    /// The verifier key that signed it.
    pub key_id: u32,
    /// The note, verbatim.
    pub text: String,
}

/// A note whose signature verified.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenedNote {
    /// The signed text, including its final newline.
    pub text: String,
    /// The name of the trusted key that signed it.
    pub signed_by: String,
    /// Its key id.
    pub key_id: u32,
}

impl OpenedCheckpoint {
    /// The organization whose log this is: the origin must be exactly
    /// `<name of the key that signed it>/orgs/<org uuid>` (as [`LedgerName::origin`] writes it).
    pub fn org(&self) -> Option<Uuid> {
        let org: Uuid = self
            .head
            .origin
            .strip_prefix(self.signed_by.as_str())?
            .strip_prefix("/orgs/")?
            .parse()
            .ok()?;
        (self.head.origin == format!("{}/orgs/{org}", self.signed_by)).then_some(org)
    }
}

/// Opens a signed note: signatures with unknown names or key ids are ignored; a known one that
/// fails rejects the note; at least one trusted signature is required.
pub fn open_note(text: &str, keys: &Vkeys) -> Result<OpenedNote, LedgerError> {
    let note = Note::from_bytes(text.as_bytes())
        .map_err(|e| LedgerError::BadSignature(format!("not a signed note: {e}")))?;
    let (verified, _) = note.verify(&keys.list).map_err(|e| match e {
        NoteError::UnverifiedNote => {
            LedgerError::BadSignature("no trusted key signed this note".into())
        }
        other => LedgerError::BadSignature(other.to_string()),
    })?;
    Ok(OpenedNote {
        text: String::from_utf8_lossy(note.text()).into_owned(),
        signed_by: verified[0].name().to_owned(),
        key_id: verified[0].id(),
    })
}

/// Opens a signed checkpoint: a trusted signature (see [`open_note`]), then the checkpoint body
/// (origin, size, base64 root; this log writes no extension lines).
pub fn open_checkpoint(text: &str, keys: &Vkeys) -> Result<OpenedCheckpoint, LedgerError> {
    let note = open_note(text, keys)?;
    let c = tlog_tiles::Checkpoint::from_bytes(note.text.as_bytes())
        .map_err(|_| LedgerError::BadSignature("the note is not a checkpoint".into()))?;
    if !c.extension().is_empty() {
        return Err(LedgerError::BadSignature(
            "the checkpoint has extension lines; this log never writes any".into(),
        ));
    }
    Ok(OpenedCheckpoint {
        head: TreeHead {
            origin: c.origin().to_owned(),
            size: c.size(),
            root: *c.hash(),
        },
        signed_by: note.signed_by,
        key_id: note.key_id,
        text: text.to_owned(),
    })
}

/// The log operator's signer: the ledger key under `LEDGER_NAME`, signing every organization's
/// checkpoints with that organization's origin.
///
/// With [`LogSigner::with_checkpoint_cache`] it keeps the notes it signed, by organization and
/// tree size, so that the many proofs served against one tree cost one signature. A kept note
/// is reused only for the exact root it was signed over: asked for another root at the same
/// size, the signer signs that root and keeps the new note instead (a cache can never put a
/// root in a checkpoint that the caller did not read from the tree). Ed25519 signatures are
/// deterministic, so a reused note is byte for byte the note a fresh signature makes.
pub struct LogSigner {
    name: LedgerName,
    key: SigningKey,
    signed: Option<KeptCheckpoints>,
}

/// Signed checkpoint notes by `(org, size)`, each with the root it was signed over.
type KeptCheckpoints = moka::sync::Cache<(Uuid, u64), Arc<(TreeHash, String)>>;

impl fmt::Debug for LogSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogSigner")
            .field("name", &self.name)
            .field("cached", &self.signed.as_ref().map(|c| c.entry_count()))
            .finish_non_exhaustive()
    }
}

impl LogSigner {
    /// The signer for `key` under `name` (no checkpoint cache).
    pub fn new(name: LedgerName, key: SigningKey) -> LogSigner {
        LogSigner {
            name,
            key,
            signed: None,
        }
    }

    /// The same signer keeping up to `entries` signed checkpoints for reuse (least recently and
    /// least frequently used go first); 0 keeps none.
    pub fn with_checkpoint_cache(mut self, entries: u64) -> LogSigner {
        self.signed = (entries > 0).then(|| moka::sync::Cache::new(entries));
        self
    }

    /// `LEDGER_NAME`.
    pub fn name(&self) -> &LedgerName {
        &self.name
    }

    /// The key (also signs v1 checkpoints).
    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    /// This key's C2SP verifier key.
    pub fn vkey(&self) -> String {
        vkey(&self.name, &self.key.raw_public())
    }

    /// The signed checkpoint of `org`'s tree of `size` leaves with root `root`: the kept note
    /// for `(org, size)` if it was signed over `root`, otherwise a new signature (then kept).
    pub fn sign(&self, org: Uuid, size: u64, root: TreeHash) -> Result<String, LedgerError> {
        let Some(signed) = &self.signed else {
            return self.sign_now(org, size, root);
        };
        if let Some(kept) = signed.get(&(org, size)) {
            if kept.0 == root {
                return Ok(kept.1.clone());
            }
        }
        let note = self.sign_now(org, size, root)?;
        signed.insert((org, size), Arc::new((root, note.clone())));
        Ok(note)
    }

    fn sign_now(&self, org: Uuid, size: u64, root: TreeHash) -> Result<String, LedgerError> {
        TreeHead {
            origin: self.name.origin(org),
            size,
            root,
        }
        .sign(&self.name, &self.key)
    }

    /// How many signed checkpoints are kept (after pending evictions).
    pub fn cached_checkpoints(&self) -> u64 {
        self.signed.as_ref().map_or(0, |c| {
            c.run_pending_tasks();
            c.entry_count()
        })
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::{open_checkpoint, LedgerName, LogSigner, Vkeys};
    use crate::checkpoint::SigningKey;
    use crate::merkle::TreeHash;

    fn signers() -> (LogSigner, LogSigner) {
        let (_, pkcs8) = SigningKey::generate().expect("key");
        let name = LedgerName::parse("ledger.test").expect("name");
        let key = || SigningKey::from_pkcs8(&pkcs8).expect("key");
        (
            LogSigner::new(name.clone(), key()),
            LogSigner::new(name, key()).with_checkpoint_cache(4),
        )
    }

    /// A kept note is the note a fresh signature makes; asked for another root at a size it
    /// keeps, the signer signs that root (never the kept one); the cache stays bounded.
    #[test]
    fn a_kept_checkpoint_is_reused_only_for_its_own_root() {
        let (fresh, kept) = signers();
        let keys = Vkeys::parse(&[kept.vkey()]).expect("vkeys");
        let org = Uuid::new_v4();
        let (a, b) = (TreeHash([1; 32]), TreeHash([2; 32]));
        let first = kept.sign(org, 7, a).expect("sign");
        assert_eq!(first, fresh.sign(org, 7, a).expect("sign"));
        assert_eq!(kept.sign(org, 7, a).expect("again"), first);
        let other = kept.sign(org, 7, b).expect("another root");
        assert_eq!(open_checkpoint(&other, &keys).expect("opens").head.root, b);
        assert_eq!(other, fresh.sign(org, 7, b).expect("sign"));
        assert_eq!(
            open_checkpoint(&kept.sign(org, 7, a).expect("back"), &keys)
                .expect("opens")
                .head
                .root,
            a
        );
        for size in 0..100 {
            kept.sign(Uuid::new_v4(), size, a).expect("sign");
        }
        assert!(kept.cached_checkpoints() <= 4, "bounded");
        assert_eq!(fresh.cached_checkpoints(), 0);
    }
}
