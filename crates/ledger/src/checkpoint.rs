//! Signed checkpoints: `{v, org, seq, head, issued_at}` signed with Ed25519 over its JCS bytes.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{self, Ed25519KeyPair, KeyPair};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::canonical::canonicalize;
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
        })
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
        let raw = pair.public_key().as_ref().to_vec();
        Ok(SigningKey {
            public: PublicKey {
                kid: kid_of(&raw),
                alg: "Ed25519".into(),
                public_key: URL_SAFE_NO_PAD.encode(&raw),
            },
            pair,
        })
    }

    /// The public half.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// Signs a checkpoint.
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
