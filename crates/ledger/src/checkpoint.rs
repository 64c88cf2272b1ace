//! The ledger's Ed25519 key and the v1 checkpoints: `{v, org, seq, head, issued_at}` signed over
//! their JCS bytes. v1 checkpoints are superseded by the signed notes of [`crate::note`]; they
//! stay verifiable so old exports and bundles still check.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{self, Ed25519KeyPair, KeyPair};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::canonical::canonicalize;
use crate::note::{vkey, LedgerName};
use crate::receipt::{format_created_at, Hash};
use crate::LedgerError;

/// What a checkpoint states: the chain of `org` has `seq + 1` receipts ending at `head`.
/// An empty chain has `seq` −1 and a head of 64 zeros.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Format version (1).
    pub v: u64,
    /// Organization.
    pub org: String,
    /// Sequence number of the head receipt.
    pub seq: i64,
    /// Hash of the head receipt.
    pub head: String,
    /// When the checkpoint was signed.
    pub issued_at: String,
}

impl Checkpoint {
    /// A checkpoint of `org` at `seq`/`head`, issued now.
    pub fn new(org: Uuid, seq: i64, head: Hash, issued_at: OffsetDateTime) -> Checkpoint {
        Checkpoint {
            v: 1,
            org: org.to_string(),
            seq,
            head: head.to_hex(),
            issued_at: format_created_at(issued_at),
        }
    }

    fn signing_bytes(&self) -> Result<Vec<u8>, LedgerError> {
        canonicalize(
            &serde_json::to_value(self).map_err(|e| LedgerError::InvalidJson(e.to_string()))?,
        )
    }
}

/// A checkpoint with its signature, as served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedCheckpoint {
    /// The statement.
    pub checkpoint: Checkpoint,
    /// Which key signed it (see `GET /ledger/keys`).
    pub kid: String,
    /// Ed25519 signature over JCS(checkpoint), base64url without padding.
    pub signature: String,
}

/// A published verification key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKey {
    /// Key id: the first 16 hex characters of SHA-256(public key).
    pub kid: String,
    /// Always `Ed25519`.
    pub alg: String,
    /// The 32 raw public key bytes, base64url without padding.
    pub public_key: String,
    /// The key name checkpoints are signed under (`LEDGER_NAME`); empty in v1 key lists.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The C2SP verifier key `<name>+<key id>+<base64(0x01 || key)>`; empty in v1 key lists.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub vkey: String,
}

impl PublicKey {
    /// A key from its base64url raw bytes.
    pub fn from_base64(public_key: &str) -> Result<PublicKey, LedgerError> {
        let raw = URL_SAFE_NO_PAD
            .decode(public_key.trim())
            .map_err(|_| LedgerError::InvalidKey("public key is not base64url".into()))?;
        if raw.len() != 32 {
            return Err(LedgerError::InvalidKey(
                "an Ed25519 public key has 32 bytes".into(),
            ));
        }
        Ok(PublicKey {
            kid: kid_of(&raw),
            alg: "Ed25519".into(),
            public_key: URL_SAFE_NO_PAD.encode(&raw),
            name: String::new(),
            vkey: String::new(),
        })
    }

    /// The same key as published under `name`, with its verifier key.
    pub fn named(mut self, name: &LedgerName) -> Result<PublicKey, LedgerError> {
        let raw: [u8; 32] = URL_SAFE_NO_PAD
            .decode(&self.public_key)
            .ok()
            .and_then(|r| r.try_into().ok())
            .ok_or_else(|| LedgerError::InvalidKey("an Ed25519 public key has 32 bytes".into()))?;
        self.name = name.as_str().to_owned();
        self.vkey = vkey(name, &raw);
        Ok(self)
    }
}

fn kid_of(public: &[u8]) -> String {
    Hash::of(public).to_hex()[..16].to_owned()
}

/// The ledger's signing key.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    public: PublicKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.public.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A fresh key; returns it and its PKCS#8 document (base64url) to keep.
    pub fn generate() -> Result<(SigningKey, String), LedgerError> {
        let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| LedgerError::InvalidKey("key generation failed".into()))?;
        let encoded = URL_SAFE_NO_PAD.encode(doc.as_ref());
        Ok((SigningKey::from_pkcs8(&encoded)?, encoded))
    }

    /// A key from its PKCS#8 document, base64url (the `LEDGER_SIGNING_KEY` format).
    pub fn from_pkcs8(encoded: &str) -> Result<SigningKey, LedgerError> {
        let der = URL_SAFE_NO_PAD
            .decode(encoded.trim())
            .map_err(|_| LedgerError::InvalidKey("LEDGER_SIGNING_KEY is not base64url".into()))?;
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der).map_err(|_| {
            LedgerError::InvalidKey("LEDGER_SIGNING_KEY is not an Ed25519 PKCS#8 key".into())
        })?;
        Ok(SigningKey::of(pair))
    }

    /// A key from its 32-byte Ed25519 seed (as in Go's `PRIVATE+KEY+…` signer keys).
    pub fn from_seed(seed: &[u8]) -> Result<SigningKey, LedgerError> {
        let pair = Ed25519KeyPair::from_seed_unchecked(seed)
            .map_err(|_| LedgerError::InvalidKey("an Ed25519 seed has 32 bytes".into()))?;
        Ok(SigningKey::of(pair))
    }

    fn of(pair: Ed25519KeyPair) -> SigningKey {
        let raw = pair.public_key().as_ref().to_vec();
        SigningKey {
            public: PublicKey {
                kid: kid_of(&raw),
                alg: "Ed25519".into(),
                public_key: URL_SAFE_NO_PAD.encode(&raw),
                name: String::new(),
                vkey: String::new(),
            },
            pair,
        }
    }

    /// The public half.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// The 32 raw public key bytes.
    pub fn raw_public(&self) -> [u8; 32] {
        let mut raw = [0u8; 32];
        raw.copy_from_slice(self.pair.public_key().as_ref());
        raw
    }

    /// An Ed25519 signature of `msg`.
    pub fn sign_bytes(&self, msg: &[u8]) -> Vec<u8> {
        self.pair.sign(msg).as_ref().to_vec()
    }

    /// Signs a v1 checkpoint.
    pub fn sign(&self, checkpoint: Checkpoint) -> Result<SignedCheckpoint, LedgerError> {
        let bytes = checkpoint.signing_bytes()?;
        let sig = self.pair.sign(&bytes);
        Ok(SignedCheckpoint {
            checkpoint,
            kid: self.public.kid.clone(),
            signature: URL_SAFE_NO_PAD.encode(sig.as_ref()),
        })
    }
}

/// Verifies a signed checkpoint against the published keys.
pub fn verify_checkpoint(signed: &SignedCheckpoint, keys: &[PublicKey]) -> Result<(), LedgerError> {
    let key = keys
        .iter()
        .find(|k| k.kid == signed.kid)
        .ok_or_else(|| LedgerError::BadSignature(format!("unknown key id {}", signed.kid)))?;
    let raw = URL_SAFE_NO_PAD
        .decode(&key.public_key)
        .map_err(|_| LedgerError::InvalidKey("public key is not base64url".into()))?;
    let sig = URL_SAFE_NO_PAD
        .decode(&signed.signature)
        .map_err(|_| LedgerError::BadSignature("signature is not base64url".into()))?;
    let bytes = signed.checkpoint.signing_bytes()?;
    signature::UnparsedPublicKey::new(&signature::ED25519, raw)
        .verify(&bytes, &sig)
        .map_err(|_| LedgerError::BadSignature("signature does not verify".into()))
}

/// Parses a signed checkpoint from JSON.
pub fn parse_signed(value: &Value) -> Result<SignedCheckpoint, LedgerError> {
    serde_json::from_value(value.clone()).map_err(|e| LedgerError::InvalidJson(e.to_string()))
}
