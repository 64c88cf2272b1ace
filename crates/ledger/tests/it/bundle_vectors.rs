//! Proof-bundle test vectors for verifiers outside Rust (the share page's browser verifier runs
//! them under node): genuine bundles and one bundle per failing step, each with the step that
//! must fail. The Rust verifier is checked against every case here, and the committed file
//! must be what this code computes (`UPDATE_VECTORS=1` rewrites it after a deliberate change).

use std::collections::HashMap;

use defendable_ledger::bundle::verify_bundle;
use defendable_ledger::merkle::{self, TreeEdge};
use defendable_ledger::note::LogSigner;
use defendable_ledger::receipt::seal_with_salt;
use defendable_ledger::{
    Draft, Hash, LedgerName, ProofBundle, ProofFailure, ReceiptKind, SigningKey, Vkeys,
};
use serde_json::{json, Value};
use time::macros::datetime;
use uuid::Uuid;

const ORG: Uuid = Uuid::from_u128(0x6f1c_0000_0000_4000_8000_0000_0000_0002);
const OTHER_ORG: Uuid = Uuid::from_u128(0x6f1c_0000_0000_4000_8000_0000_0000_0003);
const PATH: &str = "tests/it/vectors/bundles.json";

/// The step of DESIGN §2b "To verify" that a failure belongs to, as the share page names it.
fn step(f: &ProofFailure) -> &'static str {
    match f {
        ProofFailure::Shape(_) => "format",
        ProofFailure::Receipt { reason, .. } if reason.starts_with("hash") => "hash",
        ProofFailure::Receipt { reason, .. } if reason.starts_with("receipt id") => "id",
        ProofFailure::Receipt { .. } => "index",
        ProofFailure::Checkpoint(m) if m.starts_with("its origin") => "origin",
        ProofFailure::Checkpoint(_) => "signature",
        ProofFailure::Inclusion { .. } => "inclusion",
        ProofFailure::Inconsistent { .. } => "consistency",
    }
}

/// A log of `publics.len()` receipts of `org`; returns the bundle of each leaf against the
/// whole tree.
fn log_of(log: &LogSigner, org: Uuid, publics: &[Value]) -> Vec<ProofBundle> {
    let mut parent = Hash::GENESIS;
    let mut edge = TreeEdge::empty();
    let mut nodes = HashMap::new();
    let mut projections = Vec::new();
    for (seq, public) in publics.iter().enumerate() {
        let draft = Draft::new(
            ReceiptKind::parse("run.approved").expect("kind"),
            public.clone(),
            None,
        )
        .expect("draft");
        let at = datetime!(2026-12-02 09:30:00.123456 UTC) + time::Duration::seconds(seq as i64);
        let s = seal_with_salt(org, seq as u64, parent, at, draft, None).expect("seal");
        nodes.extend(edge.append(merkle::leaf_hash(&s.hash)));
        projections.push(defendable_ledger::projection(&s.id, &s.hash, &s.body));
        parent = s.hash;
    }
    let size = projections.len() as u64;
    let checkpoint = log.sign(org, size, edge.root()).expect("sign");
    projections
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let path = merkle::prove_inclusion(i as u64, size, &nodes).expect("path");
            ProofBundle::new(p, i as u64, &path, checkpoint.clone())
        })
        .collect()
}

/// Flips one base64 character of the checkpoint's signature line.
fn break_signature(note: &str) -> String {
    let at = note.rfind("— ").expect("a signature line");
    let sig_start = note[at..].rfind(' ').expect("name and signature") + at + 1;
    let mut bytes = note.as_bytes().to_vec();
    let i = sig_start + 10;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).expect("utf8")
}

/// A vector: what it is, the bundle, and the step it must fail at (`None`: it verifies).
type Case = (String, ProofBundle, Option<&'static str>);

fn cases() -> (Vec<String>, Vec<Case>) {
    let name = LedgerName::parse("ledger.example.com").expect("name");
    let log = LogSigner::new(
        name.clone(),
        SigningKey::from_seed(&[11u8; 32]).expect("key"),
    );
    let stranger = LogSigner::new(name, SigningKey::from_seed(&[12u8; 32]).expect("key"));
    // Public fields a canonicalizer must get exactly right: key order by UTF-16 code units
    // (the emoji sorts before U+FFFD), escapes, number forms, and markup a page must escape.
    let publics = vec![
        json!({"step": "build", "n": 0}),
        json!({
            "title": "<script>alert(1)</script> & \"quotes\"",
            "\u{fffd}": "replacement",
            "😀": "emoji key",
            "control": "tab\tnewline\nnul\u{0}",
            "numbers": [0, -1, 1.5, 1e21, 1e-7, 0.1, 9007199254740991_i64, -0.0],
            "nested": {"b": [true, false, null], "a": {}},
            "é": "accent",
        }),
        json!({"step": "deploy", "approved_by": "alice@example.com"}),
        json!({}),
        json!({"last": "fifth"}),
    ];
    let bundles = log_of(&log, ORG, &publics);
    let genuine = bundles[1].clone();
    let mut out = vec![
        (
            "a genuine receipt with tricky public fields".to_owned(),
            genuine.clone(),
            None,
        ),
        ("the first leaf".to_owned(), bundles[0].clone(), None),
        (
            "the last leaf of an odd-sized tree".to_owned(),
            bundles[4].clone(),
            None,
        ),
        (
            "a one-receipt log (empty inclusion path)".to_owned(),
            log_of(&log, ORG, &[json!({"only": true})]).remove(0),
            None,
        ),
    ];
    let mut b = genuine.clone();
    b.receipt.body["public"]["title"] = json!("changed behind the API's back");
    out.push(("a public field altered".into(), b, Some("hash")));
    let mut b = genuine.clone();
    b.receipt.body["seq"] = json!(2);
    out.push(("the body's seq altered".into(), b, Some("hash")));
    let mut b = genuine.clone();
    b.receipt.hash = bundles[2].receipt.hash.clone();
    out.push(("another receipt's hash".into(), b, Some("hash")));
    let mut b = genuine.clone();
    b.receipt.receipt_id = bundles[2].receipt.receipt_id.clone();
    out.push(("another receipt's id".into(), b, Some("id")));
    let mut b = genuine.clone();
    b.index = 2;
    out.push(("an index that is not body.seq".into(), b, Some("index")));
    let mut b = genuine.clone();
    b.checkpoint = break_signature(&b.checkpoint);
    out.push((
        "one byte of the signature changed".into(),
        b,
        Some("signature"),
    ));
    let mut b = genuine.clone();
    b.checkpoint = b.checkpoint.replacen("\n5\n", "\n6\n", 1);
    out.push((
        "the checkpoint's size changed after signing".into(),
        b,
        Some("signature"),
    ));
    let mut b = genuine.clone();
    b.checkpoint = log_of(&stranger, ORG, &publics)[1].checkpoint.clone();
    out.push(("signed by a key nobody trusts".into(), b, Some("signature")));
    let mut b = genuine.clone();
    b.checkpoint = log_of(&log, OTHER_ORG, &publics)[1].checkpoint.clone();
    out.push((
        "a checkpoint of another organization's log".into(),
        b,
        Some("origin"),
    ));
    let mut b = genuine.clone();
    b.inclusion[0] = bundles[2].inclusion[0].clone();
    out.push(("an inclusion hash altered".into(), b, Some("inclusion")));
    let mut b = genuine.clone();
    b.inclusion.pop();
    out.push(("an inclusion hash missing".into(), b, Some("inclusion")));
    let mut b = genuine.clone();
    b.checkpoint = log_of(&log, ORG, &publics[..3])[1].checkpoint.clone();
    out.push((
        "the checkpoint of an older tree".into(),
        b,
        Some("inclusion"),
    ));
    let mut b = genuine;
    b.v = 1;
    out.push(("bundle version 1".into(), b, Some("format")));
    (vec![log.vkey()], out)
}

fn document() -> String {
    let (vkeys, cases) = cases();
    let cases: Vec<Value> = cases
        .into_iter()
        .map(|(desc, bundle, fails)| json!({"desc": desc, "bundle": bundle, "fails": fails}))
        .collect();
    let doc = json!({
        "source": "crates/ledger/tests/it/bundle_vectors.rs: proof bundles v2 (DESIGN §2b) and the verification step each must fail at (null: it verifies)",
        "vkeys": vkeys,
        "cases": cases,
    });
    serde_json::to_string_pretty(&doc).expect("json") + "\n"
}

#[test]
fn the_rust_verifier_fails_each_vector_at_its_step() {
    let (vkeys, cases) = cases();
    let keys = Vkeys::parse(&vkeys).expect("vkeys");
    for (desc, bundle, fails) in cases {
        let got = verify_bundle(&bundle, &keys).err();
        assert_eq!(got.as_ref().map(step), fails, "{desc}: {got:?}");
    }
}

#[test]
fn the_committed_bundle_vectors_are_what_the_code_computes() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(PATH);
    let want = document();
    if std::env::var_os("UPDATE_VECTORS").is_some() {
        std::fs::write(&path, &want).expect("write the vectors");
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "{PATH} is stale; rerun with UPDATE_VECTORS=1 and commit it"
    );
}
