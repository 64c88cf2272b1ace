//! Signed checkpoints: sign, verify, tamper, rotate.

use defendable_ledger::checkpoint::verify_checkpoint;
use defendable_ledger::{Checkpoint, Hash, PublicKey, SigningKey};
use time::macros::datetime;
use uuid::Uuid;

const ORG: Uuid = Uuid::from_u128(0x6f1c_0000_0000_4000_8000_0000_0000_0001);

#[test]
fn a_signed_checkpoint_verifies_with_the_published_key_only() {
    let (key, pkcs8) = SigningKey::generate().expect("key");
    let again = SigningKey::from_pkcs8(&pkcs8).expect("reload");
    assert_eq!(key.public_key(), again.public_key());
    let signed = key
        .sign(Checkpoint::new(
            ORG,
            41,
            Hash::of(b"head"),
            datetime!(2026-11-28 23:08:57 UTC),
        ))
        .expect("sign");
    verify_checkpoint(&signed, std::slice::from_ref(key.public_key())).expect("verifies");

    let mut tampered = signed.clone();
    tampered.checkpoint.seq = 42;
    assert!(verify_checkpoint(&tampered, std::slice::from_ref(key.public_key())).is_err());
    let (other, _) = SigningKey::generate().expect("key");
    assert!(
        verify_checkpoint(&signed, std::slice::from_ref(other.public_key())).is_err(),
        "unknown kid"
    );
    let mut forged = signed.clone();
    forged.kid = other.public_key().kid.clone();
    assert!(
        verify_checkpoint(&forged, std::slice::from_ref(other.public_key())).is_err(),
        "wrong key"
    );

    // After a rotation the old public key stays published and old checkpoints still verify.
    let published = [
        other.public_key().clone(),
        PublicKey::from_base64(&key.public_key().public_key).expect("old"),
    ];
    verify_checkpoint(&signed, &published).expect("old checkpoint still verifies");
}

#[test]
fn checkpoint_snapshot() {
    let (key, _) = SigningKey::generate().expect("key");
    let signed = key
        .sign(Checkpoint::new(
            ORG,
            41,
            Hash::of(b"head"),
            datetime!(2026-11-28 23:08:57.5 UTC),
        ))
        .expect("sign");
    insta::assert_json_snapshot!("checkpoint", signed, { ".kid" => "[kid]", ".signature" => "[signature]" });
}

#[test]
fn keys_are_refused_when_malformed() {
    assert!(SigningKey::from_pkcs8("not base64!").is_err());
    assert!(SigningKey::from_pkcs8("AAAA").is_err());
    assert!(PublicKey::from_base64("AAAA").is_err());
}
