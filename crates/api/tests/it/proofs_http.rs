//! Ledger v2 over HTTP (DESIGN §2b): share bundles that disclose one receipt, consistency
//! proofs, member proofs, tiles, signed-note checkpoints, keys and expiring links.

use defendable_ledger::bundle::{check_consistent, verify_bundle, verify_consistency_proof};
use defendable_ledger::merkle;
use defendable_ledger::note::open_checkpoint;
use defendable_ledger::{ConsistencyProof, Hash, ProofBundle};
use serde_json::{json, Value};

use defendable_ledger::ShareLink;

use crate::helpers::{path_of, TestApp};

/// Records `kind: run` receipts whose public and private parts carry unique markers.
async fn record(app: &TestApp, token: &str, slug: &str, range: std::ops::Range<u64>) -> Vec<Value> {
    let mut out = Vec::new();
    for n in range {
        let (s, r) = app
            .call(
                "POST",
                &format!("/orgs/{slug}/receipts"),
                Some(token),
                Some(json!({"kind": "run", "public": {"marker": format!("public-marker-{n:03}")}, "private": {"secret": format!("private-marker-{n:03}")}})),
            )
            .await;
        assert_eq!(s, 201, "{r}");
        out.push(r);
    }
    out
}

async fn text(app: &TestApp, path: &str, bearer: Option<&str>) -> (u16, String, String) {
    let mut req = app.http.get(app.url(path));
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    let res = req.send().await.expect("response");
    let status = res.status().as_u16();
    let ctype = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().expect("ascii").to_owned())
        .unwrap_or_default();
    (status, ctype, res.text().await.expect("text"))
}

#[actix_web::test]
async fn a_shared_receipt_proves_itself_without_disclosing_any_other_receipt() {
    let app = TestApp::spawn().await;
    let (token, slug, _) = app.sign_in_to_org("k@example.com").await;
    let keys = app.vkeys().await;
    let first = record(&app, &token, &slug, 0..5).await;
    let k = &first[2];
    let id = k["receipt_id"].as_str().expect("id");
    let share = app.share(&token, &slug, id, None).await;
    assert_eq!(share.expires_at, None);
    let share_path = path_of(&share.url);
    assert_eq!(path_of(&share.proof_url), format!("{share_path}/proof"));
    // Receipts recorded after the link was made.
    record(&app, &token, &slug, 5..10).await;

    let (s, ctype, body) = text(&app, &format!("{share_path}/proof"), None).await;
    assert_eq!((s, ctype.as_str()), (200, "application/json"));
    for n in (0..10).filter(|n| *n != 2) {
        assert!(
            !body.contains(&format!("public-marker-{n:03}")),
            "receipt {n} leaked: {body}"
        );
    }
    assert!(
        !body.contains("private-marker"),
        "a private part leaked: {body}"
    );
    assert!(body.contains("public-marker-002"));
    let bundle: ProofBundle = serde_json::from_str(&body).expect("v2 bundle");
    assert_eq!((bundle.v, bundle.index), (2, 2));
    let own_body = serde_json::to_string(&bundle.receipt.body).expect("body");
    assert!(
        body.len() - own_body.len() <= 2048,
        "{} bytes beyond the body",
        body.len() - own_body.len()
    );
    // It verifies against a checkpoint taken after the new receipts: the current one.
    let verified = verify_bundle(&bundle, &keys).expect("verifies");
    assert_eq!(verified.checkpoint.head.size, 10);
    let (_, _, current) = text(
        &app,
        &format!("/orgs/{slug}/ledger/checkpoint"),
        Some(&token),
    )
    .await;
    assert_eq!(
        open_checkpoint(&current, &keys).expect("opens").head,
        verified.checkpoint.head
    );

    // Another receipt's hash in place of this one's fails; so does another index.
    let mut forged = bundle.clone();
    forged.receipt.body["public"]["marker"] = json!("public-marker-999");
    assert!(verify_bundle(&forged, &keys).is_err());
    let mut moved = bundle.clone();
    moved.index = 3;
    assert!(verify_bundle(&moved, &keys).is_err());

    // An earlier tree, and the bounds of `size`.
    let (s, at3) = app
        .call("GET", &format!("{share_path}/proof?size=3"), None, None)
        .await;
    assert_eq!(s, 200, "{at3}");
    let at3: ProofBundle = serde_json::from_value(at3).expect("bundle");
    let at3 = verify_bundle(&at3, &keys)
        .expect("verifies at size 3")
        .checkpoint;
    assert_eq!(at3.head.size, 3);
    for bad in ["size=2", "size=11", "size=0", "format=xml"] {
        let (s, problem) = app
            .call("GET", &format!("{share_path}/proof?{bad}"), None, None)
            .await;
        assert_eq!(s, 422, "{bad}: {problem}");
        assert!(problem["code"].is_string(), "{problem}");
    }

    // The same proof as a C2SP tlog-proof file.
    let (s, ctype, tlog) = text(&app, &format!("{share_path}/proof?format=tlog-proof"), None).await;
    assert_eq!((s, ctype.as_str()), (200, "text/plain; charset=utf-8"));
    assert!(tlog.starts_with("c2sp.org/tlog-proof@v1\nextra "), "{tlog}");
    assert!(tlog.contains("\nindex 2\n"), "{tlog}");
    let parsed = ProofBundle::from_tlog_proof(&tlog).expect("parses");
    assert_eq!(
        verify_bundle(&parsed, &keys)
            .expect("verifies")
            .checkpoint
            .head
            .size,
        10
    );

    // The download is the same bundle, as an attachment.
    let res = app
        .http
        .get(app.url(&format!("{share_path}/download")))
        .send()
        .await
        .expect("r");
    assert_eq!(res.status(), 200);
    let disposition = res.headers()["content-disposition"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert_eq!(
        disposition,
        format!("attachment; filename=\"{id}-proof.json\"")
    );
    let downloaded: ProofBundle = res.json().await.expect("json");
    assert_eq!(verify_bundle(&downloaded, &keys).expect("verifies").seq, 2);

    // A holder who kept the size-3 checkpoint proves nothing was rewritten since.
    let (s, proof) = app
        .call(
            "GET",
            &format!("{share_path}/consistency?from=3"),
            None,
            None,
        )
        .await;
    assert_eq!(s, 200, "{proof}");
    let proof: ConsistencyProof = serde_json::from_value(proof).expect("proof");
    assert_eq!((proof.from, proof.to), (3, 10));
    let newer = verify_consistency_proof(&proof, &at3, &keys).expect("consistent");
    assert_eq!(newer.head.size, 10);
    // Beyond the tree (read with the link) and beyond every tree (the general path) alike.
    for bad in [
        "from=0",
        "from=11",
        "from=4611686018427387905",
        "from=18446744073709551615",
    ] {
        let (s, _) = app
            .call(
                "GET",
                &format!("{share_path}/consistency?{bad}"),
                None,
                None,
            )
            .await;
        assert_eq!(s, 422, "{bad}");
    }
    let (s, _) = app
        .call("GET", &format!("{share_path}/consistency"), None, None)
        .await;
    assert_eq!(s, 400, "from is required");
}

#[actix_web::test]
async fn members_read_proofs_checkpoints_consistency_tiles_and_keys() {
    let app = TestApp::spawn().await;
    let (token, slug, org_id) = app.sign_in_to_org("m@example.com").await;
    let keys = app.vkeys().await;

    // An empty log has a signed checkpoint too.
    let (s, ctype, empty) = text(
        &app,
        &format!("/orgs/{slug}/ledger/checkpoint"),
        Some(&token),
    )
    .await;
    assert_eq!((s, ctype.as_str()), (200, "text/plain; charset=utf-8"));
    let origin = format!("localhost-dev/orgs/{org_id}");
    assert!(
        empty.starts_with(&format!(
            "{origin}\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n\n— localhost-dev "
        )),
        "{empty}"
    );

    let receipts = record(&app, &token, &slug, 0..260).await;
    let leaves: Vec<_> = receipts
        .iter()
        .map(|r| merkle::leaf_hash(&Hash::parse(r["hash"].as_str().expect("hash")).expect("hex")))
        .collect();

    let (_, _, note) = text(
        &app,
        &format!("/orgs/{slug}/ledger/checkpoint"),
        Some(&token),
    )
    .await;
    let current = open_checkpoint(&note, &keys).expect("opens");
    assert_eq!(current.head.origin, origin);
    assert_eq!(
        (current.head.size, current.head.root),
        merkle::root_of_leaves(leaves.iter().copied())
    );

    // The member proof route, with an API key too.
    let api_key = app.api_key(&token, &slug).await;
    let id = receipts[7]["receipt_id"].as_str().expect("id");
    let (s, bundle) = app
        .call(
            "GET",
            &format!("/orgs/{slug}/receipts/{id}/proof"),
            Some(&api_key),
            None,
        )
        .await;
    assert_eq!(s, 200, "{bundle}");
    let bundle: ProofBundle = serde_json::from_value(bundle).expect("bundle");
    assert_eq!(verify_bundle(&bundle, &keys).expect("verifies").seq, 7);

    // Consistency between any two sizes, and its bounds.
    let (_, older) = app
        .call(
            "GET",
            &format!("/orgs/{slug}/receipts/{id}/proof?size=100"),
            Some(&token),
            None,
        )
        .await;
    let older: ProofBundle = serde_json::from_value(older).expect("bundle");
    let older = verify_bundle(&older, &keys).expect("verifies").checkpoint;
    let (s, proof) = app
        .call(
            "GET",
            &format!("/orgs/{slug}/ledger/consistency?from=100&to=200"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(s, 200, "{proof}");
    let proof: ConsistencyProof = serde_json::from_value(proof).expect("proof");
    let at200 = open_checkpoint(&proof.checkpoint, &keys).expect("opens");
    assert_eq!(
        at200.head.root,
        merkle::root_of_leaves(leaves[..200].iter().copied()).1
    );
    check_consistent(&older, &at200, proof.from, &proof.consistency).expect("consistent");
    let (_, same) = app
        .call(
            "GET",
            &format!("/orgs/{slug}/ledger/consistency?from=260"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(
        (
            same["to"].as_u64(),
            same["consistency"].as_array().map(Vec::len)
        ),
        (Some(260), Some(0))
    );
    for bad in ["from=0", "from=201&to=200", "from=1&to=261"] {
        let (s, _) = app
            .call(
                "GET",
                &format!("/orgs/{slug}/ledger/consistency?{bad}"),
                Some(&token),
                None,
            )
            .await;
        assert_eq!(s, 422, "{bad}");
    }

    // Tiles: level 0 holds leaf hashes, level 1 the roots of 256-leaf subtrees.
    let tile = |path: String| {
        let (app, token) = (&app, &token);
        async move {
            let res = app
                .http
                .get(app.url(&path))
                .bearer_auth(token)
                .send()
                .await
                .expect("tile");
            (
                res.status().as_u16(),
                res.bytes().await.expect("bytes").to_vec(),
            )
        }
    };
    let flat = |hs: &[merkle::TreeHash]| hs.iter().flat_map(|h| h.0).collect::<Vec<u8>>();
    let (s, full) = tile(format!("/orgs/{slug}/ledger/tile/0/000")).await;
    assert_eq!((s, full.len()), (200, 8192));
    assert_eq!(full, flat(&leaves[..256]));
    let (s, partial) = tile(format!("/orgs/{slug}/ledger/tile/0/001.p/4")).await;
    assert_eq!((s, partial), (200, flat(&leaves[256..260])));
    let (s, upper) = tile(format!("/orgs/{slug}/ledger/tile/1/000.p/1")).await;
    assert_eq!(
        (s, upper),
        (
            200,
            merkle::root_of_leaves(leaves[..256].iter().copied())
                .1
                 .0
                .to_vec()
        )
    );
    let (s, _) = tile(format!("/orgs/{slug}/ledger/tile/0/001")).await;
    assert_eq!(s, 404, "a full tile the tree does not have yet");
    let (s, _) = tile(format!("/orgs/{slug}/ledger/tile/0/001.p/5")).await;
    assert_eq!(s, 404);
    let (s, _) = tile(format!("/orgs/{slug}/ledger/tile/0/1")).await;
    assert_eq!(s, 422, "N must be three digits");

    // Keys carry their name and vkey; the vkey's id is the key id of §2b.
    let (_, published) = app.call("GET", "/ledger/keys", None, None).await;
    let k = &published["keys"][0];
    assert_eq!(k["name"], "localhost-dev");
    assert!(
        k["vkey"]
            .as_str()
            .expect("vkey")
            .starts_with("localhost-dev+"),
        "{k}"
    );
    assert_eq!(k["alg"], "Ed25519");
}

#[actix_web::test]
async fn share_links_can_expire() {
    let app = TestApp::spawn().await;
    let (token, slug, _) = app.sign_in_to_org("x@example.com").await;
    let r = &record(&app, &token, &slug, 0..1).await[0];
    let share = format!(
        "/orgs/{slug}/receipts/{}/share",
        r["receipt_id"].as_str().expect("id")
    );
    let link: ShareLink = app
        .expect_as(
            201,
            "POST",
            &share,
            Some(&token),
            Some(json!({"expires_in": 3600})),
        )
        .await;
    assert!(link.expires_at.as_deref().is_some_and(|e| e.ends_with('Z')));
    let path = path_of(&link.url);
    let (s, _) = app.call("GET", &format!("{path}/proof"), None, None).await;
    assert_eq!(s, 200);

    let client = app.db.pool.get().await.expect("client");
    client
        .execute("UPDATE receipt_shares SET expires_at = now() - interval '1 second' WHERE expires_at IS NOT NULL", &[])
        .await
        .expect("expire");
    for suffix in ["", "/proof", "/download", "/consistency?from=1"] {
        let (s, _) = app
            .call("GET", &format!("{path}{suffix}"), None, None)
            .await;
        assert_eq!(s, 404, "{suffix}");
    }

    for (body, status) in [
        (json!({"expires_in": 5}), 422),
        (json!({"expires_in": 40_000_000}), 422),
        (json!({"expires": 60}), 422),
        (json!([60]), 422),
    ] {
        let (s, problem) = app
            .call("POST", &share, Some(&token), Some(body.clone()))
            .await;
        assert_eq!(s, status, "{body}: {problem}");
    }
}
