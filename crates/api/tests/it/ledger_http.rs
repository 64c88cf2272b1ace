//! Receipts through HTTP: record, idempotent retry, list, share, export and verify offline.

use defendable_ledger::bundle::verify_bundle;
use defendable_ledger::merkle;
use defendable_ledger::note::open_checkpoint;
use defendable_ledger::{ChainVerifier, Hash, ProofBundle};
use serde_json::{json, Value};

use defendable_api::error::{ErrorCode, Problem};
use defendable_ledger::view::BodyFields as _;
use defendable_ledger::{ReceiptPage, ReceiptView};

use crate::helpers::{path_of, TestApp};

#[actix_web::test]
async fn record_list_read_and_retry_receipts() {
    let app = TestApp::spawn().await;
    let (token, slug, org_id) = app.sign_in_to_org("r@example.com").await;
    let path = format!("/orgs/{slug}/receipts");

    let first: ReceiptView = app
        .expect_as(201, "POST", &path, Some(&token), Some(json!({"kind": "run", "public": {"suite": "ci", "passed": 412}, "private": {"host": "10.0.0.7"}})))
        .await;
    assert_eq!(first.seq(), Some(0));
    assert_eq!(first.org().map(|o| o.to_string()), Some(org_id.clone()));
    assert_eq!(first.private["host"], "10.0.0.7");
    assert_eq!(first.salt.as_deref().map(str::len), Some(64));
    assert!(first.receipt_id.starts_with("DCR-000000-"));

    // An API key records too.
    let secret = app.api_key(&token, &slug).await;
    let second: ReceiptView = app
        .expect_as(
            201,
            "POST",
            &path,
            Some(&secret),
            Some(json!({"kind": "run", "public": {"n": 2}})),
        )
        .await;
    assert_eq!(second.parent(), Some(first.hash.as_str()));

    // Idempotent retry: the same key and body return the first receipt, not a new one.
    let http = crate::helpers::http();
    let send = |body: Value| {
        http.post(app.url(&path))
            .bearer_auth(&token)
            .header("idempotency-key", "deploy-77")
            .json(&body)
            .send()
    };
    let a = send(json!({"kind": "deploy", "public": {"v": "1.2.3"}}))
        .await
        .expect("a");
    assert_eq!(a.status(), 201);
    let a: ReceiptView = a.json().await.expect("json");
    let b = send(json!({"kind": "deploy", "public": {"v": "1.2.3"}}))
        .await
        .expect("b");
    assert_eq!(b.status(), 200);
    assert_eq!(b.headers()["idempotency-replayed"], "true");
    let b: ReceiptView = b.json().await.expect("json");
    assert_eq!(a.receipt_id, b.receipt_id);
    let c = send(json!({"kind": "deploy", "public": {"v": "9.9.9"}}))
        .await
        .expect("c");
    assert_eq!(c.status(), 422);

    // Bad payloads are clear 4xx and record nothing.
    for (body, code) in [
        (
            json!({"kind": "Not Valid", "public": {}}),
            ErrorCode::InvalidKind,
        ),
        (
            json!({"kind": "run", "public": [1]}),
            ErrorCode::NotAnObject,
        ),
        (
            json!({"kind": "run", "public": {}, "private": "x"}),
            ErrorCode::NotAnObject,
        ),
        (
            json!({"kind": "run", "public": {}, "extra": 1}),
            ErrorCode::InvalidBody,
        ),
    ] {
        let (s, p) = app.problem("POST", &path, Some(&token), Some(body)).await;
        assert_eq!((s, p.code), (422, code));
    }
    let raw = http
        .post(app.url(&path))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(r#"{"kind":"run","public":{"big":12345678901234567890}}"#)
        .send()
        .await
        .expect("raw");
    assert_eq!(raw.status(), 422);
    assert_eq!(
        raw.json::<Problem>().await.expect("a problem").code,
        ErrorCode::UnsafeNumber
    );

    let page = |query: &str| {
        let url = format!("{path}?{query}");
        let token = token.clone();
        let app = &app;
        async move {
            app.expect_as::<ReceiptPage>(200, "GET", &url, Some(&token), None)
                .await
        }
    };
    let list = page("limit=2").await;
    assert_eq!((list.items.len(), list.next_cursor), (2, Some(1)));
    let rest = page("after=1").await;
    assert_eq!(rest.items.len(), 1, "three receipts in all: {rest:?}");
    assert_eq!(page("kind=deploy").await.items.len(), 1);
    let id = &first.receipt_id;
    let one: ReceiptView = app
        .expect_as(200, "GET", &format!("{path}/{id}"), Some(&token), None)
        .await;
    assert_eq!(one.hash, first.hash);
    let (s, _) = app
        .call(
            "GET",
            &format!("{path}/DCR-000099-00000000"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(s, 404);

    let client = app.db.pool.get().await.expect("client");
    let audited: i64 = client
        .query_one(
            "SELECT count(*) FROM audit_events WHERE action = 'receipt.create'",
            &[],
        )
        .await
        .expect("n")
        .get(0);
    assert_eq!(audited, 3, "one audit event per created receipt");
}

#[actix_web::test]
async fn a_share_link_shows_the_redacted_projection_until_revoked() {
    let app = TestApp::spawn().await;
    let (token, slug, _) = app.sign_in_to_org("s@example.com").await;
    let receipt: ReceiptView = app
        .expect_as(201, "POST", &format!("/orgs/{slug}/receipts"), Some(&token), Some(json!({"kind": "run", "public": {"ok": true}, "private": {"email": "s@example.com", "key": "raw/x"}})))
        .await;
    let id = &receipt.receipt_id;
    let share = app.share(&token, &slug, id, None).await;
    let url = &share.url;
    let share_path = &path_of(url);

    let (s, projection) = app.call("GET", share_path, None, None).await;
    assert_eq!(s, 200);
    let text = projection.to_string();
    assert!(
        !text.contains("s@example.com") && !text.contains("raw/x") && !text.contains("salt"),
        "{text}"
    );
    assert_eq!(projection["hash"], receipt.hash.as_str());
    let mut v = ChainVerifier::new(receipt.org().expect("the receipt's organization"));
    v.push_projection(&serde_json::from_value(projection.clone()).expect("a projection"))
        .expect("the projection verifies on its own");

    let (s, bundle) = app
        .call("GET", &format!("{share_path}/download"), None, None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(bundle["receipt"], projection);
    let bundle: ProofBundle = serde_json::from_value(bundle).expect("a v2 bundle");
    verify_bundle(&bundle, &app.vkeys().await).expect("verifies against a published key");

    let (s, _) = app
        .call(
            "DELETE",
            &format!("/orgs/{slug}/receipts/{id}/share"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(s, 204);
    let (s, _) = app.call("GET", share_path, None, None).await;
    assert_eq!(s, 404);
    let (s, _) = app.call("GET", "/share/not-a-token", None, None).await;
    assert_eq!(s, 404);
    let client = app.db.pool.get().await.expect("client");
    let errors: i64 = client
        .query_one(
            "SELECT count(*) FROM audit_events WHERE action = 'share.access_error'",
            &[],
        )
        .await
        .expect("n")
        .get(0);
    // Two refusals from one address: aggregated per minute, each counted.
    assert!((1..=2).contains(&errors), "{errors}");
    let counted: i64 = client
        .query_one(
            "SELECT sum(hits)::bigint FROM refusal_counts WHERE source LIKE 'share.access_error:%'",
            &[],
        )
        .await
        .expect("n")
        .get(0);
    assert_eq!(counted, 2);
}

#[actix_web::test]
async fn an_export_verifies_offline_and_the_verify_route_reports_tampering() {
    let app = TestApp::spawn().await;
    let (token, slug, org_id) = app.sign_in_to_org("e@example.com").await;
    for n in 0..25 {
        let (s, _) = app
            .call(
                "POST",
                &format!("/orgs/{slug}/receipts"),
                Some(&token),
                Some(json!({"kind": "run", "public": {"n": n}})),
            )
            .await;
        assert_eq!(s, 201);
    }
    let res = app
        .http
        .get(app.url(&format!("/orgs/{slug}/ledger/export")))
        .bearer_auth(&token)
        .send()
        .await
        .expect("export");
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/x-ndjson");
    let text = res.text().await.expect("text");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines.len(), 26);
    let mut v = ChainVerifier::new(org_id.parse().expect("uuid"));
    for p in &lines[..25] {
        v.push_projection(&serde_json::from_value(p.clone()).expect("a projection"))
            .expect("link verifies");
    }
    let note = lines[25]["checkpoint"]
        .as_str()
        .expect("the last line is {checkpoint: <signed note>}");
    let checkpoint = open_checkpoint(note, &app.vkeys().await).expect("signed by a published key");
    let leaves = lines[..25]
        .iter()
        .map(|p| merkle::leaf_hash(&Hash::parse(p["hash"].as_str().expect("hash")).expect("hex")));
    assert_eq!(
        (checkpoint.head.size, checkpoint.head.root),
        merkle::root_of_leaves(leaves),
        "the note signs the tree of exactly the exported receipts"
    );
    assert_eq!(
        checkpoint.head.origin,
        format!("localhost-dev/orgs/{org_id}")
    );

    let ok = app.verify(&token, &slug).await;
    assert_eq!((ok.valid, ok.checked), (true, 25));

    let client = app.db.pool.get().await.expect("client");
    client
        .batch_execute("SET session_replication_role = replica")
        .await
        .expect("bypass");
    client
        .execute(
            "UPDATE receipts SET canonical = set_byte(canonical, 39, get_byte(canonical, 39) # 1) WHERE org_id = $1 AND seq = 11",
            &[&org_id.parse::<uuid::Uuid>().expect("uuid")],
        )
        .await
        .expect("tamper");
    let bad = app.verify(&token, &slug).await;
    assert!(!bad.valid);
    let failure = bad.failure.expect("the failure");
    assert_eq!(failure.seq, 11);
    assert!(failure.reason.contains("hash"), "{failure:?}");
}

/// The same Idempotency-Key from two clients at once, among other writers: one receipt, and
/// both clients get it.
#[actix_web::test]
async fn one_key_from_two_clients_at_once_yields_one_receipt() {
    let app = TestApp::spawn().await;
    let (token, slug, _) = app.sign_in_to_org("twice@example.com").await;
    let key = app.api_key(&token, &slug).await;
    let url = app.url(&format!("/orgs/{slug}/receipts"));
    let mut calls = Vec::new();
    for i in 0..34 {
        let (http, url, key) = (app.http.clone(), url.clone(), key.clone());
        calls.push(tokio::spawn(async move {
            // Clients 0 and 1 send the same key and body; the others their own.
            let idem = if i < 2 {
                "same".to_owned()
            } else {
                format!("own-{i}")
            };
            let n = if i < 2 { 0 } else { i };
            let res = http
                .post(url)
                .bearer_auth(key)
                .header("idempotency-key", idem)
                .json(&json!({"kind": "note", "public": {"n": n}}))
                .send()
                .await
                .expect("post");
            let status = res.status().as_u16();
            let body: Value = res.json().await.expect("json");
            (status, body["receipt_id"].as_str().map(str::to_owned))
        }));
    }
    let mut results = Vec::new();
    for c in calls {
        results.push(c.await.expect("join"));
    }
    let mut twins: Vec<(u16, Option<String>)> = results[..2].to_vec();
    twins.sort();
    assert_eq!(twins[0].1, twins[1].1, "both clients get the one receipt");
    assert_eq!(
        (twins[0].0, twins[1].0),
        (200, 201),
        "one created it, the other got it replayed"
    );
    assert!(results[2..].iter().all(|(s, _)| *s == 201));
    let report = app.verify(&token, &slug).await;
    assert_eq!((report.valid, report.checked), (true, 33));
}
