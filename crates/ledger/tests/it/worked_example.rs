//! The worked example of docs/receipts.md, recomputed: every value the page shows comes from
//! this test, and the test fails when the page and the code disagree. After a deliberate change,
//! `WORKED_EXAMPLE_DUMP=/tmp/example.json` writes the new values to copy into the page.

use defendable_ledger::bundle::{verify_bundle, ConsistencyProof, ProofBundle};
use defendable_ledger::merkle::{self, TreeEdge};
use defendable_ledger::note::{open_checkpoint, LogSigner};
use defendable_ledger::receipt::seal_with_salt;
use defendable_ledger::{
    canonicalize, projection, Draft, Hash, LedgerName, ReceiptKind, SigningKey, Vkeys,
};
use serde_json::json;
use time::macros::datetime;
use uuid::Uuid;

const ORG: Uuid = Uuid::from_u128(0x6f1c_0000_0000_4000_8000_0000_0000_0001);

/// Every value of the example, as the page prints it.
fn example() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let key = SigningKey::from_seed(&[7u8; 32]).expect("the example's key");
    let log = LogSigner::new(LedgerName::parse("ledger.example.com").expect("name"), key);
    out.push(("vkey".into(), log.vkey()));
    let mut parent = Hash::GENESIS;
    let mut edge = TreeEdge::empty();
    let mut leaves = Vec::new();
    let mut projections = Vec::new();
    for seq in 0..3u64 {
        let draft = Draft::new(
            ReceiptKind::parse("run").expect("kind"),
            json!({"n": seq}),
            None,
        )
        .expect("draft");
        let s = seal_with_salt(
            ORG,
            seq,
            parent,
            datetime!(2026-11-28 23:08:57 UTC),
            draft,
            None,
        )
        .expect("seal");
        out.push((
            format!("jcs {seq}"),
            String::from_utf8(s.canonical.clone()).expect("utf8"),
        ));
        out.push((format!("hash {seq}"), s.hash.to_hex()));
        out.push((format!("id {seq}"), s.id.clone()));
        let leaf = merkle::leaf_hash(&s.hash);
        out.push((format!("leaf {seq}"), leaf.to_string()));
        leaves.push(leaf);
        edge.append(leaf);
        projections.push(projection(&s.id, &s.hash, &s.body));
        parent = s.hash;
        if seq == 1 {
            out.push(("root 2".into(), edge.root().to_string()));
        }
    }
    out.push(("root 3".into(), edge.root().to_string()));
    let note = log.sign(ORG, 3, edge.root()).expect("sign");
    out.push(("checkpoint 3".into(), note.clone()));
    let mut nodes = std::collections::HashMap::new();
    let mut rebuild = TreeEdge::empty();
    for l in &leaves {
        nodes.extend(rebuild.append(*l));
    }
    let path = merkle::prove_inclusion(1, 3, &nodes).expect("path");
    let bundle = ProofBundle::new(projections[1].clone(), 1, &path, note.clone());
    out.push(("inclusion 1".into(), bundle.inclusion.join(" ")));
    out.push(("tlog-proof 1".into(), bundle.to_tlog_proof().expect("tlog")));
    let keys = Vkeys::parse(&[log.vkey()]).expect("vkeys");
    verify_bundle(&bundle, &keys).expect("the example verifies");
    let consistency = merkle::prove_consistency(2, 3, &nodes).expect("consistency");
    let proof = ConsistencyProof {
        from: 2,
        to: 3,
        consistency: merkle::to_base64(&consistency),
        checkpoint: note,
    };
    out.push(("consistency 2 3".into(), proof.consistency.join(" ")));
    let opened = open_checkpoint(&proof.checkpoint, &keys).expect("opens");
    merkle::verify_consistency(
        2,
        3,
        &merkle::root_of_leaves(leaves[..2].iter().copied()).1,
        &opened.head.root,
        &consistency,
    )
    .expect("consistent");
    assert_eq!(
        canonicalize(&projections[0].body).expect("jcs"),
        out[1].1.as_bytes()
    );
    out
}

#[test]
fn the_worked_example_in_docs_receipts_md_is_what_the_code_computes() {
    if let Ok(path) = std::env::var("WORKED_EXAMPLE_DUMP") {
        let map: std::collections::BTreeMap<String, String> = example().into_iter().collect();
        std::fs::write(path, serde_json::to_string(&map).expect("json")).expect("dump");
    }
    let page = include_str!("../../../../docs/receipts.md");
    let mut missing = Vec::new();
    for (name, value) in example() {
        // Multi-line values appear in the page's code blocks line by line.
        if !page.contains(value.trim_end()) {
            missing.push(format!("{name}:\n{value}"));
        }
    }
    assert!(
        missing.is_empty(),
        "docs/receipts.md does not show:\n\n{}",
        missing.join("\n\n")
    );
}
