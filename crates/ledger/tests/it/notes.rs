//! Signed notes and checkpoints: Go's sumdb note test cases, Tessera's published checkpoints,
//! and the ledger's own signed checkpoints byte for byte.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use defendable_ledger::merkle::{
    self, prove_consistency, root_of_leaves, verify_consistency, TreeEdge, TreeHash,
};
use defendable_ledger::note::{
    key_id, open_checkpoint, open_note, sign_note, vkey, LedgerName, TreeHead, Vkeys,
};
use defendable_ledger::SigningKey;
use serde_json::Value;
use uuid::Uuid;

// golang.org/x/mod sumdb/note/note_test.go
const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const PETER_SKEY_DATA: &str = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const ENOCH_VKEY: &str = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";
const TEXT: &str = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
const PETER_SIG: &str = "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
const ENOCH_SIG: &str = "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

fn peter() -> SigningKey {
    let data = STANDARD.decode(PETER_SKEY_DATA).expect("base64");
    assert_eq!(data[0], 1, "Ed25519");
    SigningKey::from_seed(&data[1..]).expect("seed")
}

#[test]
fn signing_reproduces_gos_note_byte_for_byte() {
    let key = peter();
    let name = LedgerName::parse("PeterNeumann").expect("name");
    assert_eq!(vkey(&name, &key.raw_public()), PETER_VKEY);
    assert_eq!(key_id(&name, &key.raw_public()), 0xc74f20a3);
    let signed = sign_note(TEXT.as_bytes(), &name, &key).expect("sign");
    assert_eq!(signed, format!("{TEXT}\n{PETER_SIG}"));
}

#[test]
fn opening_follows_the_go_rules() {
    let peter = Vkeys::parse(&[PETER_VKEY]).expect("vkey");
    let both = Vkeys::parse(&[PETER_VKEY, ENOCH_VKEY]).expect("vkeys");
    let none = Vkeys::parse::<&str>(&[]).expect("empty");

    // One known signature verified, the unknown one ignored.
    let opened = open_note(&format!("{TEXT}\n{PETER_SIG}{ENOCH_SIG}"), &peter).expect("open");
    assert_eq!(opened.text, TEXT);
    assert_eq!(opened.signed_by, "PeterNeumann");
    open_note(&format!("{TEXT}\n{PETER_SIG}{ENOCH_SIG}"), &both).expect("both known");
    assert!(
        open_note(&format!("{TEXT}\n{PETER_SIG}{ENOCH_SIG}"), &none).is_err(),
        "no known key"
    );
    assert!(
        open_note(&format!("{TEXT}\n{ENOCH_SIG}"), &peter).is_err(),
        "only unknown keys"
    );

    // A known signature that fails rejects the note.
    let bad = format!("{TEXT}\n{}ABCD{}", &PETER_SIG[..60], &PETER_SIG[60..]);
    assert!(open_note(&bad, &peter).is_err());
    let bad_enoch = format!(
        "{TEXT}\n{PETER_SIG}{}ABCD{}",
        &ENOCH_SIG[..60],
        &ENOCH_SIG[60..]
    );
    assert!(
        open_note(&bad_enoch, &both).is_err(),
        "a known key that fails rejects"
    );
    open_note(&bad_enoch, &peter).expect("the same failing signature is ignored when unknown");

    // Too many signatures, and Go's malformed messages.
    assert!(open_note(&format!("{TEXT}\n{}", PETER_SIG.repeat(101)), &peter).is_err());
    let malformed = [
        TEXT.to_owned(),
        format!("{TEXT}\n"),
        format!("{TEXT}\n{}", &PETER_SIG[..PETER_SIG.len() - 1]),
        format!("\u{1}{TEXT}\n{PETER_SIG}"),
        format!("{TEXT}\n— Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="),
        format!("{TEXT}\n{PETER_SIG}Unexpected line.\n"),
    ];
    for m in malformed {
        assert!(open_note(&m, &peter).is_err(), "{m:?}");
    }
}

#[test]
fn mangled_verifier_keys_are_refused() {
    Vkeys::parse(&[PETER_VKEY]).expect("the real one");
    let b = PETER_VKEY.as_bytes();
    for i in 0..=b.len() {
        for j in i + 1..=b.len() {
            if i != 0 || j != b.len() {
                let part = std::str::from_utf8(&b[i..j]).expect("ascii");
                assert!(Vkeys::parse(&[part]).is_err(), "{part:?}");
            }
        }
    }
    for i in 0..b.len() {
        let mut m = b.to_vec();
        m[i] = m[i].wrapping_add(1);
        if let Ok(s) = std::str::from_utf8(&m) {
            assert!(Vkeys::parse(&[s]).is_err(), "{s:?}");
        }
    }
}

fn tessera() -> Value {
    serde_json::from_str(include_str!("vectors/tessera.json")).expect("vectors")
}

fn leaf(data: &str) -> TreeHash {
    let mut c = ring::digest::Context::new(&ring::digest::SHA256);
    c.update(&[0]);
    c.update(data.as_bytes());
    TreeHash(c.finish().as_ref().try_into().expect("32 bytes"))
}

#[test]
fn tesseras_published_checkpoints_open_and_match_their_leaves_and_tiles() {
    let t = tessera();
    let keys = Vkeys::parse(&[t["vkey"].as_str().expect("vkey")]).expect("tessera vkey");
    let leaves: Vec<TreeHash> = t["leaves"]
        .as_array()
        .expect("leaves")
        .iter()
        .map(|l| leaf(l.as_str().expect("leaf")))
        .collect();
    let checkpoints: Vec<_> = t["checkpoints"]
        .as_array()
        .expect("checkpoints")
        .iter()
        .map(|c| open_checkpoint(c.as_str().expect("text"), &keys).expect("opens"))
        .collect();
    let mut nodes = std::collections::HashMap::new();
    let mut edge = TreeEdge::empty();
    for (size, c) in checkpoints.iter().enumerate() {
        assert_eq!(c.head.origin, "example.com/log/testdata");
        assert_eq!(c.head.size, size as u64);
        assert_eq!(
            root_of_leaves(leaves[..size].iter().copied()).1,
            c.head.root,
            "size {size}"
        );
        if size > 0 {
            nodes.extend(edge.append(leaves[size - 1]));
            let tile = STANDARD
                .decode(t["tiles"][size.to_string()].as_str().expect("tile"))
                .expect("base64");
            let expected: Vec<u8> = leaves[..size].iter().flat_map(|h| h.0).collect();
            assert_eq!(tile, expected, "tile/0/000.p/{size}");
        }
        // Each checkpoint is consistent with every earlier non-empty one.
        for older in checkpoints.iter().take(size).skip(1) {
            let proof = prove_consistency(older.head.size, size as u64, &nodes).expect("prove");
            verify_consistency(
                older.head.size,
                size as u64,
                &older.head.root,
                &c.head.root,
                &proof,
            )
            .expect("consistent");
        }
    }
    // A flipped byte in a signature rejects the note.
    let text = t["checkpoints"][5].as_str().expect("text");
    let broken = text.replacen("M9e0lmn5", "M9e0lmn6", 1);
    assert!(open_checkpoint(&broken, &keys).is_err());
}

#[test]
fn the_ledgers_checkpoint_is_the_c2sp_format_under_ledger_name() {
    let (key, _) = SigningKey::generate().expect("key");
    let name = LedgerName::parse("ledger.example.com").expect("name");
    let org = Uuid::from_u128(0x6f1c_0000_0000_4000_8000_0000_0000_0001);
    let root = root_of_leaves([leaf("a"), leaf("b"), leaf("c")]).1;
    let head = TreeHead {
        origin: name.origin(org),
        size: 3,
        root,
    };
    let note = head.sign(&name, &key).expect("sign");

    // Key id and vkey computed here from §2b alone.
    let mut c = ring::digest::Context::new(&ring::digest::SHA256);
    c.update(b"ledger.example.com\n\x01");
    c.update(&key.raw_public());
    let id: [u8; 4] = c.finish().as_ref()[..4].try_into().expect("4");
    let mut typed = vec![1u8];
    typed.extend_from_slice(&key.raw_public());
    let expected_vkey = format!(
        "ledger.example.com+{}+{}",
        hex::encode(id),
        STANDARD.encode(&typed)
    );
    assert_eq!(vkey(&name, &key.raw_public()), expected_vkey);

    let body = format!("ledger.example.com/orgs/{org}\n3\n{}\n", root);
    let (text, sig_line) = note.split_once("\n\n").expect("separator");
    assert_eq!(format!("{text}\n"), body);
    let blob = sig_line
        .strip_prefix("— ledger.example.com ")
        .and_then(|s| s.strip_suffix('\n'))
        .expect("one signature line");
    let blob = STANDARD.decode(blob).expect("base64");
    assert_eq!(blob.len(), 68);
    assert_eq!(blob[..4], id);
    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, key.raw_public())
        .verify(body.as_bytes(), &blob[4..])
        .expect("Ed25519 over the body");

    let keys = Vkeys::parse(&[expected_vkey]).expect("vkey");
    let opened = open_checkpoint(&note, &keys).expect("opens");
    assert_eq!(opened.head, head);
    assert_eq!(opened.org(), Some(org));
    for origin in [
        format!("other.example/orgs/{org}"),
        format!("ledger.example.com/orgs/{}", org.to_string().to_uppercase()),
        format!("ledger.example.com/orgs/{org}/2"),
        "ledger.example.com/log".to_owned(),
    ] {
        let elsewhere = TreeHead {
            origin: origin.clone(),
            size: 3,
            root,
        };
        let opened =
            open_checkpoint(&elsewhere.sign(&name, &key).expect("sign"), &keys).expect("opens");
        assert_eq!(opened.org(), None, "{origin}");
    }
    assert!(
        open_checkpoint(&note.replacen("\n3\n", "\n4\n", 1), &keys).is_err(),
        "size altered"
    );
    let (other, _) = SigningKey::generate().expect("key");
    let others = Vkeys::parse(&[vkey(&name, &other.raw_public())]).expect("vkey");
    assert!(open_checkpoint(&note, &others).is_err(), "another key");
    let extra = format!("{note}— witness.example AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n");
    open_checkpoint(&extra, &keys).expect("an unknown signer is ignored");
    assert!(merkle::parse_tree_hash("not base64").is_err());
}

#[test]
fn ledger_names_follow_the_key_name_rules() {
    for good in [
        "localhost-dev",
        "ledger.example.com",
        "ledger.example.com/eu",
    ] {
        LedgerName::parse(good).expect(good);
    }
    for bad in ["", "a b", "a+b", "tab\there"] {
        assert!(LedgerName::parse(bad).is_err(), "{bad:?}");
    }
}

mod properties {
    use defendable_ledger::note::{open_checkpoint, open_note, sign_note, LedgerName, Vkeys};
    use defendable_ledger::SigningKey;
    use proptest::prelude::*;

    fn signed(text: &str) -> (String, Vkeys) {
        let (key, _) = SigningKey::generate().expect("key");
        let name = LedgerName::parse("example.com/log").expect("name");
        let note = sign_note(text.as_bytes(), &name, &key).expect("signs");
        let vkey = defendable_ledger::note::vkey(&name, &key.raw_public());
        (note, Vkeys::parse(&[vkey]).expect("vkeys"))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any outside text is refused or opened without panicking, as a note and as a
        /// checkpoint.
        #[test]
        fn outside_text_never_panics_the_note_readers(text in any::<String>()) {
            let (_, keys) = signed("x\n");
            let _ = open_note(&text, &keys);
            let _ = open_checkpoint(&text, &keys);
        }

        /// A signed note opens to its text, and no one-byte change makes it open to another.
        #[test]
        fn no_one_byte_change_opens_to_another_text(
            lines in prop::collection::vec("[ -~]{1,40}", 1..5),
            pos in any::<prop::sample::Index>(),
            byte in 0x20u8..0x7f,
        ) {
            let text = lines.join("\n") + "\n";
            let (note, keys) = signed(&text);
            prop_assert_eq!(open_note(&note, &keys).expect("opens").text, text.clone());
            let mut bytes = note.into_bytes();
            let i = pos.index(bytes.len());
            prop_assume!(bytes[i] != byte && bytes[i].is_ascii());
            bytes[i] = byte;
            if let Ok(mutated) = String::from_utf8(bytes) {
                if let Ok(opened) = open_note(&mutated, &keys) {
                    prop_assert_eq!(opened.text, text);
                }
            }
        }
    }
}
