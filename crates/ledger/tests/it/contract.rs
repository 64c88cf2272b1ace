//! The public contract: body shape, hash, id, private digest, projection — and an outsider's
//! recomputation of a projection's hash from nothing but its JSON.

use defendable_ledger::receipt::{
    format_created_at, parse_receipt_id, private_digest, seal_with_salt,
};
use defendable_ledger::{projection, receipt_id, ChainVerifier, Draft, Hash, ReceiptKind};
use serde_json::{json, Map, Value};
use time::macros::datetime;
use uuid::Uuid;

const ORG: Uuid = Uuid::from_u128(0x6f1c_0000_0000_4000_8000_0000_0000_0001);

fn draft(public: Value, private: Option<Value>) -> Draft {
    Draft::new(
        ReceiptKind::parse("dataset.download").expect("kind"),
        public,
        private,
    )
    .expect("draft")
}

/// An outsider's canonicalizer for receipt bodies, written from the RFC's rules alone: sort
/// members (ASCII keys here, so byte order is UTF-16 order), no whitespace, serde_json's string
/// escaping (which matches JCS for these inputs), integers as digits.
fn outsider_jcs(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let members: Vec<String> = keys
                .into_iter()
                .map(|k| {
                    format!(
                        "{}:{}",
                        serde_json::to_string(k).expect("key"),
                        outsider_jcs(&m[k])
                    )
                })
                .collect();
            format!("{{{}}}", members.join(","))
        }
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(outsider_jcs).collect::<Vec<_>>().join(",")
        ),
        other => serde_json::to_string(other).expect("scalar"),
    }
}

#[test]
fn a_share_projection_recomputes_from_its_json_alone() {
    let sealed = seal_with_salt(
        ORG,
        41,
        Hash::of(b"previous"),
        datetime!(2026-11-28 23:08:57.123456789 UTC),
        draft(
            json!({"slug": "census", "version": "2026.1", "size": 1048576}),
            Some(json!({"object_key": "raw/census.parquet", "email": "a@example.com"})),
        ),
        Some([7u8; 32]),
    )
    .expect("seal");
    let text =
        serde_json::to_string(&projection(&sealed.id, &sealed.hash, &sealed.body)).expect("json");

    // From here on, only the text and the contract.
    let p: Value = serde_json::from_str(&text).expect("json");
    let body = &p["body"];
    let digest = ring::digest::digest(&ring::digest::SHA256, outsider_jcs(body).as_bytes());
    let hash: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(p["hash"], hash.as_str());
    let seq = body["seq"].as_u64().expect("seq");
    assert_eq!(
        p["receipt_id"],
        format!("DCR-{seq:06}-{}", &hash[..8]).as_str()
    );
    assert_eq!(body["created_at"], "2026-11-28T23:08:57.123456Z");
    assert!(
        !text.contains("raw/census.parquet") && !text.contains("a@example.com"),
        "nothing private: {text}"
    );
    assert_eq!(body.as_object().expect("object").len(), 8);
}

#[test]
fn the_private_digest_is_an_hmac_members_can_check() {
    let private: Map<String, Value> = json!({"object_key": "k", "ip": "203.0.113.9"})
        .as_object()
        .expect("obj")
        .clone();
    let salt = [9u8; 32];
    let sealed = seal_with_salt(
        ORG,
        0,
        Hash::GENESIS,
        datetime!(2026-01-01 00:00 UTC),
        draft(json!({}), Some(Value::Object(private.clone()))),
        Some(salt),
    )
    .expect("seal");
    let expected = private_digest(&salt, &private).expect("digest");
    assert_eq!(sealed.body["private_digest"], expected.to_hex().as_str());
    // Independently: HMAC-SHA256(salt, JCS(private)).
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &salt);
    let tag = ring::hmac::sign(&key, outsider_jcs(&Value::Object(private)).as_bytes());
    assert_eq!(hex::encode(tag.as_ref()), expected.to_hex());
    // No private part, no digest.
    let plain = seal_with_salt(
        ORG,
        0,
        Hash::GENESIS,
        datetime!(2026-01-01 00:00 UTC),
        draft(json!({}), None),
        None,
    )
    .expect("seal");
    assert!(plain.body.get("private_digest").is_none());
}

#[test]
fn ids_check_themselves() {
    let h = Hash::of(b"x");
    assert_eq!(
        receipt_id(42, &h),
        format!("DCR-000042-{}", &h.to_hex()[..8])
    );
    assert_eq!(
        receipt_id(1_234_567, &h),
        format!("DCR-1234567-{}", &h.to_hex()[..8])
    );
    assert_eq!(
        parse_receipt_id(&receipt_id(42, &h)),
        Some((42, &h.to_hex()[..8]))
    );
    for bad in [
        "DCR-42-abcdef01",
        "DCR-0000042-abcdef01",
        "DCR-000042-ABCDEF01",
        "XCR-000042-abcdef01",
        "DCR-000042-abc",
    ] {
        assert_eq!(parse_receipt_id(bad), None, "{bad}");
    }
}

#[test]
fn created_at_has_exactly_six_fractional_digits() {
    assert_eq!(
        format_created_at(datetime!(2026-11-28 23:08:57 UTC)),
        "2026-11-28T23:08:57.000000Z"
    );
    assert_eq!(
        format_created_at(datetime!(2026-11-28 23:08:57.000000999 +02:00)),
        "2026-11-28T21:08:57.000000Z"
    );
}

#[test]
fn drafts_refuse_what_the_contract_cannot_carry() {
    let kind = || ReceiptKind::parse("run").expect("kind");
    assert!(Draft::new(kind(), json!([1, 2]), None).is_err());
    assert!(Draft::new(kind(), json!({}), Some(json!("secret"))).is_err());
    for bad in [
        "",
        "Run",
        "run.",
        ".run",
        "run..x",
        "run-x",
        &"x".repeat(65),
    ] {
        assert!(ReceiptKind::parse(bad).is_err(), "{bad:?}");
    }
    let huge = json!({"blob": "x".repeat(70_000)});
    let sealed = seal_with_salt(
        ORG,
        0,
        Hash::GENESIS,
        datetime!(2026-01-01 00:00 UTC),
        Draft::new(kind(), huge, None).expect("draft"),
        None,
    );
    assert!(sealed.is_err());
}

#[test]
fn an_offline_chain_of_projections_verifies_and_a_flipped_byte_does_not() {
    let mut parent = Hash::GENESIS;
    let mut projections = Vec::new();
    for seq in 0..10u64 {
        let s = seal_with_salt(
            ORG,
            seq,
            parent,
            datetime!(2026-01-01 00:00 UTC),
            draft(json!({"n": seq}), None),
            None,
        )
        .expect("seal");
        parent = s.hash;
        projections.push(projection(&s.id, &s.hash, &s.body));
    }
    let mut v = ChainVerifier::new(ORG);
    for p in &projections {
        v.push_projection(p).expect("valid");
    }
    assert_eq!(v.count(), 10);
    projections[6].body["public"]["n"] = json!(60);
    let mut v = ChainVerifier::new(ORG);
    let failure = projections
        .iter()
        .try_for_each(|p| v.push_projection(p))
        .expect_err("tampered");
    assert_eq!(failure.seq, 6);
}

#[test]
fn snapshots_of_a_receipt_and_its_projection() {
    let s = seal_with_salt(
        ORG,
        3,
        Hash::of(b"parent"),
        datetime!(2026-11-28 23:08:57.123456 UTC),
        draft(
            json!({"slug": "census", "expires_at": "2026-11-29T23:08:57Z"}),
            Some(json!({"object_key": "raw/census.parquet"})),
        ),
        Some([1u8; 32]),
    )
    .expect("seal");
    insta::assert_snapshot!(
        "canonical_body",
        String::from_utf8(s.canonical.clone()).expect("utf8")
    );
    insta::assert_json_snapshot!("projection", projection(&s.id, &s.hash, &s.body));
    // A fresh salt makes the digest random; redact it, and the hash and id that depend on it.
    let fresh = defendable_ledger::seal(
        ORG,
        3,
        Hash::of(b"parent"),
        datetime!(2026-11-28 23:08:57.123456 UTC),
        draft(json!({"slug": "census"}), Some(json!({"k": 1}))),
    )
    .expect("seal");
    insta::assert_json_snapshot!("projection_fresh_salt", projection(&fresh.id, &fresh.hash, &fresh.body), {
        ".hash" => "[hash]",
        ".receipt_id" => "[id]",
        ".body.private_digest" => "[digest]",
    });
}
