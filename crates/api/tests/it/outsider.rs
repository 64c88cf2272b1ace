//! An outsider's verifier, written from DESIGN §2b alone: no code of the ledger crate, only
//! SHA-256 and Ed25519 (ring), base64 and a JSON parser. It checks a share link's proof bundle
//! and a consistency proof the way an auditor with their own tooling would.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ring::digest::{digest, SHA256};
use ring::signature::{UnparsedPublicKey, ED25519};
use serde_json::{json, Value};

use crate::helpers::{path_of, TestApp};

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut all = Vec::new();
    for p in parts {
        all.extend_from_slice(p);
    }
    digest(&SHA256, &all).as_ref().try_into().expect("32 bytes")
}

/// RFC 8785 for the JSON our receipts contain (objects, arrays, strings, integers, booleans,
/// null): keys sorted, no whitespace, strings escaped as JSON requires.
fn jcs(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            // UTF-16 code unit order, as RFC 8785 §3.2.3 requires.
            keys.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16()));
            let items: Vec<String> = keys
                .iter()
                .map(|k| format!("{}:{}", Value::String((*k).clone()), jcs(&m[*k])))
                .collect();
            format!("{{{}}}", items.join(","))
        }
        Value::Array(a) => format!("[{}]", a.iter().map(jcs).collect::<Vec<_>>().join(",")),
        Value::Number(n) => {
            assert!(
                n.is_i64() || n.is_u64(),
                "this outsider only needs integers"
            );
            n.to_string()
        }
        other => other.to_string(),
    }
}

fn leaf(receipt_hash: &[u8; 32]) -> [u8; 32] {
    sha256(&[&[0], receipt_hash])
}

fn node(l: &[u8; 32], r: &[u8; 32]) -> [u8; 32] {
    sha256(&[&[1], l, r])
}

fn b64(s: &str) -> [u8; 32] {
    STANDARD
        .decode(s)
        .expect("base64")
        .try_into()
        .expect("32 bytes")
}

/// RFC 9162 §2.1.3.2.
fn inclusion_ok(index: u64, size: u64, leaf: [u8; 32], path: &[[u8; 32]], root: &[u8; 32]) -> bool {
    if index >= size {
        return false;
    }
    let (mut fnn, mut sn, mut r) = (index, size - 1, leaf);
    for p in path {
        if sn == 0 {
            return false;
        }
        if fnn & 1 == 1 || fnn == sn {
            r = node(p, &r);
            if fnn & 1 == 0 {
                while fnn & 1 == 0 && fnn != 0 {
                    fnn >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = node(&r, p);
        }
        fnn >>= 1;
        sn >>= 1;
    }
    sn == 0 && &r == root
}

/// RFC 9162 §2.1.4.2, for 0 < m < n.
fn consistency_ok(
    m: u64,
    n: u64,
    root_m: &[u8; 32],
    root_n: &[u8; 32],
    proof: &[[u8; 32]],
) -> bool {
    if m == 0 || m >= n || proof.is_empty() {
        return false;
    }
    let mut proof = proof.to_vec();
    if m.is_power_of_two() {
        proof.insert(0, *root_m);
    }
    let (mut fnn, mut sn) = (m - 1, n - 1);
    while fnn & 1 == 1 {
        fnn >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (proof[0], proof[0]);
    for c in &proof[1..] {
        if sn == 0 {
            return false;
        }
        if fnn & 1 == 1 || fnn == sn {
            fr = node(c, &fr);
            sr = node(c, &sr);
            if fnn & 1 == 0 {
                while fnn & 1 == 0 && fnn != 0 {
                    fnn >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            sr = node(&sr, c);
        }
        fnn >>= 1;
        sn >>= 1;
    }
    sn == 0 && &fr == root_m && &sr == root_n
}

/// A vkey `<name>+<8 hex id>+<base64(0x01 || key)>`.
struct Vkey {
    name: String,
    id: [u8; 4],
    key: Vec<u8>,
}

fn parse_vkey(v: &str) -> Vkey {
    let mut parts = v.splitn(3, '+');
    let (name, id, key) = (
        parts.next().expect("name"),
        parts.next().expect("id"),
        parts.next().expect("key"),
    );
    let key = STANDARD.decode(key).expect("base64");
    assert_eq!(key[0], 1, "Ed25519");
    let expected = sha256(&[name.as_bytes(), b"\n", &key]);
    let id: [u8; 4] = hex::decode(id).expect("hex").try_into().expect("4 bytes");
    assert_eq!(
        id,
        expected[..4],
        "key id = SHA-256(name || 0x0A || 0x01 || key)[0..4]"
    );
    Vkey {
        name: name.to_owned(),
        id,
        key: key[1..].to_vec(),
    }
}

/// Opens a checkpoint note: returns (origin, size, root) if a trusted key signed it.
fn open(note: &str, vkey: &Vkey) -> Option<(String, u64, [u8; 32])> {
    let (text, sigs) = note.rsplit_once("\n\n")?;
    let text = format!("{text}\n");
    let mut trusted = false;
    for line in sigs.strip_suffix('\n')?.split('\n') {
        let rest = line.strip_prefix("\u{2014} ")?;
        let (name, blob) = rest.split_once(' ')?;
        let blob = STANDARD.decode(blob).ok()?;
        if name != vkey.name || blob.len() < 4 || blob[..4] != vkey.id {
            continue; // unknown signer: ignored
        }
        UnparsedPublicKey::new(&ED25519, &vkey.key)
            .verify(text.as_bytes(), &blob[4..])
            .ok()?;
        trusted = true;
    }
    if !trusted {
        return None;
    }
    let mut lines = text.lines();
    let origin = lines.next()?.to_owned();
    let size = lines.next()?.parse().ok()?;
    let root = b64(lines.next()?);
    Some((origin, size, root))
}

/// Everything §2b's "To verify" lists; returns the checkpoint's (size, root).
fn verify_bundle(bundle: &Value, vkey: &Vkey) -> Option<(u64, [u8; 32])> {
    let projection = &bundle["receipt"];
    let body = &projection["body"];
    let hash = sha256(&[jcs(body).as_bytes()]);
    if projection["hash"].as_str()? != hex::encode(hash) {
        return None;
    }
    let seq = body["seq"].as_u64()?;
    let id = format!("DCR-{seq:06}-{}", &hex::encode(hash)[..8]);
    if projection["receipt_id"].as_str()? != id || bundle["index"].as_u64()? != seq {
        return None;
    }
    let (origin, size, root) = open(bundle["checkpoint"].as_str()?, vkey)?;
    if origin != format!("{}/orgs/{}", vkey.name, body["org"].as_str()?) {
        return None;
    }
    let path: Vec<[u8; 32]> = bundle["inclusion"]
        .as_array()?
        .iter()
        .map(|h| b64(h.as_str().expect("string")))
        .collect();
    inclusion_ok(seq, size, leaf(&hash), &path, &root).then_some((size, root))
}

#[actix_web::test]
async fn an_outsider_verifies_a_bundle_and_a_consistency_proof_from_the_design_alone() {
    let app = TestApp::spawn().await;
    let (token, slug, _) = app.sign_in_to_org("o@example.com").await;
    let mut ids = Vec::new();
    for n in 0..13 {
        let (s, r) = app
            .call("POST", &format!("/orgs/{slug}/receipts"), Some(&token), Some(json!({"kind": "run", "public": {"n": n, "name": "ünïcode ✓", "nested": {"b": 1, "a": [true, null]}}})))
            .await;
        assert_eq!(s, 201);
        ids.push(r["receipt_id"].as_str().expect("id").to_owned());
    }
    let (_, keys) = app.call("GET", "/ledger/keys", None, None).await;
    let vkey = parse_vkey(keys["keys"][0]["vkey"].as_str().expect("vkey"));

    let share = app.share(&token, &slug, &ids[4], None).await;
    let share = path_of(&share.url);
    let (_, old) = app
        .call("GET", &format!("{share}/proof?size=6"), None, None)
        .await;
    let (m, root_m) = verify_bundle(&old, &vkey).expect("the size-6 bundle verifies");
    assert_eq!(m, 6);
    let (_, bundle) = app.call("GET", &format!("{share}/proof"), None, None).await;
    let (n, root_n) = verify_bundle(&bundle, &vkey).expect("the current bundle verifies");
    assert_eq!(n, 13);

    let (_, proof) = app
        .call("GET", &format!("{share}/consistency?from=6"), None, None)
        .await;
    let (size, root) = open(proof["checkpoint"].as_str().expect("note"), &vkey)
        .map(|(_, s, r)| (s, r))
        .expect("opens");
    assert_eq!((size, root), (n, root_n));
    let hashes: Vec<[u8; 32]> = proof["consistency"]
        .as_array()
        .expect("proof")
        .iter()
        .map(|h| b64(h.as_str().expect("string")))
        .collect();
    assert!(
        consistency_ok(m, n, &root_m, &root_n, &hashes),
        "6 → 13 is consistent"
    );

    // The outsider's checks can fail: a flipped bit anywhere is caught.
    let mut bad = hashes.clone();
    bad[0][0] ^= 1;
    assert!(!consistency_ok(m, n, &root_m, &root_n, &bad));
    let mut tampered = bundle.clone();
    tampered["inclusion"][0] = json!(STANDARD.encode([0u8; 32]));
    assert!(verify_bundle(&tampered, &vkey).is_none());
    let mut other_body = bundle.clone();
    other_body["receipt"]["body"]["public"]["n"] = json!(5);
    assert!(verify_bundle(&other_body, &vkey).is_none());
    let note = bundle["checkpoint"].as_str().expect("note");
    let mut forged = bundle.clone();
    forged["checkpoint"] = json!(note.replacen("\n13\n", "\n14\n", 1));
    assert!(verify_bundle(&forged, &vkey).is_none());
}
