//! `defendable verify` on files, offline: an export and a proof bundle built with the ledger's
//! own sealing, then a flipped byte that must be named by seq and reason.

use std::process::Command;

use defendable_ledger::receipt::seal_with_salt;
use defendable_ledger::{projection, Checkpoint, Draft, Hash, ReceiptKind, SigningKey};
use serde_json::{json, Value};
use time::macros::datetime;

struct Chain {
    projections: Vec<Value>,
    key: SigningKey,
    org: uuid::Uuid,
}

fn chain(n: u64) -> Chain {
    let org = uuid::Uuid::new_v4();
    let (key, _) = SigningKey::generate().expect("key");
    let mut parent = Hash::GENESIS;
    let mut projections = Vec::new();
    for seq in 0..n {
        let draft = Draft::new(
            ReceiptKind::parse("run").expect("kind"),
            json!({"n": seq}),
            None,
        )
        .expect("draft");
        let s = seal_with_salt(
            org,
            seq,
            parent,
            datetime!(2026-11-29 10:00 UTC),
            draft,
            None,
        )
        .expect("seal");
        parent = s.hash;
        projections.push(serde_json::to_value(projection(&s.id, &s.hash, &s.body)).expect("json"));
    }
    Chain {
        projections,
        key,
        org,
    }
}

fn head(c: &Chain) -> Hash {
    Hash::parse(
        c.projections.last().expect("one")["hash"]
            .as_str()
            .expect("hash"),
    )
    .expect("hex")
}

fn run(file: &std::path::Path, key: &str) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_defendable"))
        .args(["verify", file.to_str().expect("utf8"), "--key", key])
        .env("DEFENDABLE_API", "http://127.0.0.1:9")
        .output()
        .expect("runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn temp(name: &str, text: &str) -> std::path::PathBuf {
    let dir =
        std::env::temp_dir().join(format!("defendable-cli-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path
}

#[test]
fn an_export_verifies_offline_and_a_flipped_byte_is_named() {
    let c = chain(8);
    let checkpoint = c
        .key
        .sign(Checkpoint::new(
            c.org,
            7,
            head(&c),
            datetime!(2026-11-29 10:01 UTC),
        ))
        .expect("sign");
    let mut lines: Vec<String> = c.projections.iter().map(Value::to_string).collect();
    lines.push(serde_json::to_string(&checkpoint).expect("json"));
    let key = &c.key.public_key().public_key;

    let good = temp("export.jsonl", &(lines.join("\n") + "\n"));
    let (code, out, err) = run(&good, key);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("verified 8 receipts"), "{out}");

    // Flip one byte of receipt 5's body: "n":5 becomes "n":4.
    let tampered = lines.clone();
    let mut tampered = tampered;
    tampered[5] = tampered[5].replacen("\"n\":5", "\"n\":4", 1);
    assert_ne!(tampered[5], lines[5]);
    let bad = temp("export.jsonl", &tampered.join("\n"));
    let (code, _, err) = run(&bad, key);
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains("receipt seq 5") && err.contains("hash"),
        "{err}"
    );

    // The right chain with another key's checkpoint fails on the signature.
    let (other, _) = SigningKey::generate().expect("key");
    let (code, _, err) = run(&good, &other.public_key().public_key);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("checkpoint"), "{err}");

    // A base64url key may begin with `-`: it is a key, not an option (about 1 key in 64).
    let hyphenated = std::iter::repeat_with(|| SigningKey::generate().expect("key").0)
        .map(|k| k.public_key().public_key.clone())
        .find(|k| k.starts_with('-'))
        .expect("a key beginning with -");
    let (code, _, err) = run(&good, &hyphenated);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("checkpoint"), "{err}");
}

#[test]
fn a_proof_bundle_and_a_single_projection_verify() {
    let c = chain(5);
    let checkpoint = c
        .key
        .sign(Checkpoint::new(
            c.org,
            4,
            head(&c),
            datetime!(2026-11-29 10:01 UTC),
        ))
        .expect("sign");
    let bundle =
        json!({"receipt": c.projections[2], "chain": c.projections[3..], "checkpoint": checkpoint});
    let key = &c.key.public_key().public_key;
    let (code, out, err) = run(&temp("bundle.json", &bundle.to_string()), key);
    assert_eq!(code, 0, "{out}{err}");
    // Saved pretty-printed, it is still one document, not an export.
    let pretty = serde_json::to_string_pretty(&bundle).expect("json");
    let (code, out, err) = run(&temp("bundle.json", &pretty), key);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, _) = run(&temp("one.json", &c.projections[1].to_string()), key);
    assert_eq!(code, 0);
    assert!(out.contains("verified receipt"), "{out}");

    let mut broken = bundle.clone();
    broken["chain"][1]["body"]["parent"] = json!(Hash::GENESIS.to_hex());
    let (code, _, err) = run(&temp("bundle.json", &broken.to_string()), key);
    assert_eq!(code, 4);
    assert!(err.contains("receipt seq 4"), "{err}");
}

#[test]
fn bad_targets_are_usage_errors() {
    let out = Command::new(env!("CARGO_BIN_EXE_defendable"))
        .args(["verify", "not-a-file-or-token"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("neither a share URL"));
}
