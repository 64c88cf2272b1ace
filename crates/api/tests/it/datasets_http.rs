//! Datasets through HTTP: publishing, the catalog, grants under quota, the signed-URL download
//! on the local filesystem and on a real S3-compatible server, redaction, and the race for the
//! last units of quota.

use defendable_api::error::{ErrorCode, Problem};
use object_store::ObjectStoreExt as _;
use std::sync::Arc;

use defendable_datasets::signed_url::UrlSigner;
use defendable_datasets::view::{DatasetPage, DatasetView, GrantView};
use defendable_identity::view::OrgView;
use defendable_ledger::view::BodyFields as _;
use defendable_ledger::ChainVerifier;
use serde_json::{json, Value};

use crate::helpers::{config, path_of, read_as, TempDir, TestApp, OBJECT_URL_KEY};
use defendable_testkit::s3::S3Server;

const BYTES: &[u8] = b"year,region,count\n2026,north,41\n2026,south,58\n";

pub(crate) async fn publish(app: &TestApp, slug: &str, key: &str, bytes: &[u8]) -> DatasetView {
    app.objects
        .put(&object_store::path::Path::from(key), bytes.to_vec().into())
        .await
        .expect("put");
    let (s, body) = app
        .call_internal(
            "POST",
            "/internal/datasets",
            json!({"slug": slug, "title": "Census", "description": "Counts by region", "version": "2026.1",
                   "license": "CC-BY-4.0", "media_type": "text/csv", "object_key": key}),
        )
        .await;
    assert_eq!(s, 201, "{body}");
    read_as(&body)
}

/// A grant of `slug` to `token`'s holder: the grant and its share link's path.
pub(crate) async fn grant_share(app: &TestApp, token: &str, slug: &str) -> (GrantView, String) {
    let path = format!("/datasets/catalog/{slug}/download");
    let grant: GrantView = app.expect_as(201, "POST", &path, Some(token), None).await;
    let download = path_of(&grant.download_url);
    let share = download.strip_suffix("/download").expect("a grant link");
    (grant.clone(), share.to_owned())
}

fn blake3_hex(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

#[actix_web::test]
async fn publishing_checks_the_bytes_and_the_catalog_never_shows_the_object_key() {
    let app = TestApp::spawn().await;
    let listed = publish(&app, "census", "raw/census-2026.csv", BYTES).await;
    assert_eq!(listed.blake3, blake3_hex(BYTES));
    assert_eq!(listed.size, BYTES.len() as i64);

    let wrong = json!({"slug": "census", "title": "Census", "version": "2026.2", "license": "CC0", "media_type": "text/csv",
                       "object_key": "raw/census-2026.csv", "blake3": blake3_hex(b"other bytes")});
    let (s, body) = app.call_internal("POST", "/internal/datasets", wrong).await;
    assert_eq!(
        (s.as_u16(), read_as::<Problem>(&body).code),
        (422, ErrorCode::DigestMismatch)
    );
    let missing = json!({"slug": "ghost", "title": "Ghost", "version": "1", "license": "CC0", "media_type": "text/csv", "object_key": "raw/none.csv"});
    let (s, body) = app
        .call_internal("POST", "/internal/datasets", missing)
        .await;
    assert_eq!(
        (s.as_u16(), read_as::<Problem>(&body).code),
        (422, ErrorCode::ObjectMissing)
    );

    let (token, _, _) = app.sign_in_to_org("reader@example.com").await;
    let (s, page) = app
        .call("GET", "/datasets/catalog?q=counts", Some(&token), None)
        .await;
    assert_eq!(s, 200);
    // The raw body, so that no field anywhere carries the object key.
    assert!(!page.to_string().contains("raw/census"), "{page}");
    let page: DatasetPage = read_as(&page);
    assert_eq!(page.items.len(), 1);
    assert_eq!(
        page.items[0].version, "2026.1",
        "the refused version was not listed"
    );
    let (s, one) = app
        .call("GET", "/datasets/catalog/census", Some(&token), None)
        .await;
    assert_eq!(s, 200);
    assert!(!one.to_string().contains("raw/census"));
    let (s, _) = app
        .call("GET", "/datasets/catalog/nothing-here", Some(&token), None)
        .await;
    assert_eq!(s, 404);

    let client = app.db.pool.get().await.expect("client");
    let internal: i64 = client
        .query_one(
            "SELECT count(*) FROM audit_events WHERE action = 'internal.call'",
            &[],
        )
        .await
        .expect("n")
        .get(0);
    assert_eq!(
        internal, 3,
        "every internal call is audited, refused ones too"
    );
    // Listing twice within a minute records one catalog event.
    app.call("GET", "/datasets/catalog", Some(&token), None)
        .await;
    let catalog: i64 = client
        .query_one(
            "SELECT count(*) FROM audit_events WHERE action = 'dataset.catalog'",
            &[],
        )
        .await
        .expect("n")
        .get(0);
    assert_eq!(catalog, 1);
}

#[actix_web::test]
async fn internal_routes_need_the_key_the_network_and_the_configuration() {
    let app = TestApp::spawn().await;
    let body = json!({"slug": "x1", "title": "X", "version": "1", "license": "CC0", "media_type": "text/plain", "object_key": "x"});
    let res = app
        .http
        .post(app.url("/internal/datasets"))
        .header("x-internal-key", "wrong")
        .json(&body)
        .send()
        .await
        .expect("r");
    assert_eq!(res.status(), 401);
    let off = TestApp::spawn_with(config(&[("INTERNAL_API_KEY", "")])).await;
    let (s, _) = off
        .call_internal("POST", "/internal/datasets", body.clone())
        .await;
    assert_eq!(s, 503);
    let far = TestApp::spawn_with(config(&[("INTERNAL_ALLOWED_CIDRS", "10.0.0.0/8")])).await;
    let (s, _) = far.call_internal("POST", "/internal/datasets", body).await;
    assert_eq!(s, 403);
}

#[actix_web::test]
async fn a_grant_mints_a_receipt_and_its_link_redirects_to_a_fresh_signed_url() {
    let app = TestApp::spawn().await;
    publish(&app, "census", "raw/census-2026.csv", BYTES).await;
    let (token, slug, _) = app.sign_in_to_org("m@example.com").await;

    let grant: GrantView = app
        .expect_as(
            201,
            "POST",
            "/datasets/catalog/census/download",
            Some(&token),
            Some(json!({})),
        )
        .await;
    assert_eq!(grant.receipt.kind(), Some("dataset.download"));
    // The receipt's public and private parts are what its kind records: they stay JSON.
    assert_eq!(grant.receipt.body["public"]["blake3"], blake3_hex(BYTES));
    assert_eq!(grant.receipt.private["object_key"], "raw/census-2026.csv");
    assert_eq!((grant.quota.used, grant.quota.limit), (1, 100));
    let download = grant.download_url.clone();
    let share_path = path_of(&download);

    // Every access mints a fresh short-lived URL.
    let first = app.http.get(app.url(&share_path)).send().await.expect("r");
    assert_eq!(first.status(), 302);
    let location = first.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(
        location.contains("/objects/raw/census-2026.csv?expires="),
        "{location}"
    );
    let object_path = &path_of(&location);
    let got = app.http.get(app.url(object_path)).send().await.expect("r");
    assert_eq!(got.status(), 200);
    assert_eq!(
        got.headers()["content-length"],
        BYTES.len().to_string().as_str()
    );
    assert!(got.headers().contains_key("etag"));
    let bytes = got.bytes().await.expect("bytes");
    assert_eq!(blake3_hex(&bytes), blake3_hex(BYTES));

    // Range requests resume a download.
    let part = app
        .http
        .get(app.url(object_path))
        .header("range", "bytes=5-9")
        .send()
        .await
        .expect("r");
    assert_eq!(part.status(), 206);
    assert_eq!(
        part.headers()["content-range"],
        format!("bytes 5-9/{}", BYTES.len()).as_str()
    );
    assert_eq!(&part.bytes().await.expect("b")[..], &BYTES[5..10]);
    let tail = app
        .http
        .get(app.url(object_path))
        .header("range", "bytes=9999-")
        .send()
        .await
        .expect("r");
    assert_eq!(tail.status(), 416);

    // The quota route agrees; an API key grants too.
    assert_eq!(app.quota(&token, &slug).await.used, 1);
    let secret = app.api_key(&token, &slug).await;
    let by_key: GrantView = app
        .expect_as(
            201,
            "POST",
            "/datasets/catalog/census/download",
            Some(&secret),
            None,
        )
        .await;
    assert_eq!(by_key.quota.used, 2);
    assert!(by_key.receipt.private["user_id"].is_null());

    // Several memberships: the org must be named.
    let org: OrgView = app
        .expect_as(
            201,
            "POST",
            "/orgs",
            Some(&token),
            Some(json!({"slug": "second-org", "name": "Second"})),
        )
        .await;
    assert_eq!(org.slug, "second-org");
    let (s, body) = app
        .problem(
            "POST",
            "/datasets/catalog/census/download",
            Some(&token),
            Some(json!({})),
        )
        .await;
    assert_eq!((s, body.code), (422, ErrorCode::OrgRequired));
    let (s, _) = app
        .call(
            "POST",
            "/datasets/catalog/census/download",
            Some(&token),
            Some(json!({"org": "second-org"})),
        )
        .await;
    assert_eq!(s, 201);
    let (s, _) = app
        .call(
            "POST",
            "/datasets/catalog/census/download",
            Some(&token),
            Some(json!({"org": slug, "expires_in": 10})),
        )
        .await;
    assert_eq!(s, 422, "expires_in below a minute");

    let client = app.db.pool.get().await.expect("client");
    let events: Vec<(String, Value)> = client
        .query("SELECT action, details FROM audit_events WHERE action IN ('dataset.download') ORDER BY id", &[])
        .await
        .expect("events")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        events
            .iter()
            .filter(|(_, d)| d["outcome"] == "granted")
            .count(),
        3
    );
    assert_eq!(
        events
            .iter()
            .filter(|(_, d)| d["outcome"] == "redirect")
            .count(),
        1
    );
}

#[actix_web::test]
async fn the_public_view_of_a_grant_is_redacted_and_still_verifies() {
    let app = TestApp::spawn().await;
    publish(&app, "census", "raw/census-2026.csv", BYTES).await;
    let (token, _, _) = app.sign_in_to_org("private.person@example.com").await;
    let (grant, share_path) = grant_share(&app, &token, "census").await;
    let (s, projection) = app.call("GET", &share_path, None, None).await;
    assert_eq!(s, 200);
    let text = projection.to_string();
    let user_id = grant.receipt.private["user_id"].as_str().expect("user id");
    for secret in [
        "raw/census-2026.csv",
        "private.person@example.com",
        user_id,
        "127.0.0.1",
        "salt",
    ] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    let org: uuid::Uuid = projection["body"]["org"]
        .as_str()
        .expect("org")
        .parse()
        .expect("uuid");
    let mut v = ChainVerifier::new(org);
    v.push_projection(&serde_json::from_value(projection).expect("a projection"))
        .expect("the hash recomputes from the projection alone");
}

#[actix_web::test]
async fn signed_urls_refuse_expiry_tampering_and_unknown_keys_and_survive_rotation() {
    let app = TestApp::spawn().await;
    publish(&app, "census", "raw/census-2026.csv", BYTES).await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let signer = UrlSigner::new(OBJECT_URL_KEY.as_bytes(), None);
    let good = format!(
        "/objects/raw/census-2026.csv?{}",
        signer.sign("raw/census-2026.csv", now + 600)
    );
    assert_eq!(
        app.http
            .get(app.url(&good))
            .send()
            .await
            .expect("r")
            .status(),
        200
    );

    let expired = format!(
        "/objects/raw/census-2026.csv?{}",
        signer.sign("raw/census-2026.csv", now - 1)
    );
    let moved = good.replace("census-2026", "census-2025");
    let sig_at = good.find("sig=").expect("sig") + 4;
    let mut forged = good.clone().into_bytes();
    forged[sig_at + 2] = if forged[sig_at + 2] == b'A' {
        b'B'
    } else {
        b'A'
    };
    let forged = String::from_utf8(forged).expect("ascii");
    let other_key = UrlSigner::new(b"some-other-key-some-other-key-xx", None);
    let foreign = format!(
        "/objects/raw/census-2026.csv?{}",
        other_key.sign("raw/census-2026.csv", now + 600)
    );
    for (what, url) in [
        ("expired", &expired),
        ("altered path", &moved),
        ("altered signature", &forged),
        ("unknown key", &foreign),
        ("unsigned", &"/objects/raw/census-2026.csv".to_owned()),
    ] {
        let res = app.http.get(app.url(url)).send().await.expect("r");
        assert_eq!(res.status(), 403, "{what}");
        assert_eq!(
            res.json::<Problem>().await.expect("a problem").code,
            ErrorCode::InvalidSignature,
            "{what}"
        );
    }

    // After a rotation, links signed with the old key keep working until they expire.
    let rotated = app.second_instance(config(&[
        (
            "OBJECT_URL_SIGNING_KEY",
            "rotated-url-key-Q1w2E3r4T5y6U7i8O9p0",
        ),
        ("OBJECT_URL_SIGNING_KEY_PREVIOUS", OBJECT_URL_KEY),
    ]));
    assert_eq!(
        app.http
            .get(format!("{rotated}{good}"))
            .send()
            .await
            .expect("r")
            .status(),
        200
    );
    let metrics = app
        .http
        .get(format!("{rotated}/metrics"))
        .header("x-internal-key", crate::helpers::INTERNAL_KEY)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains(
            "defendable_previous_secret_uses_total{secret=\"OBJECT_URL_SIGNING_KEY_PREVIOUS\"} 1"
        ),
        "{metrics}"
    );
    let dropped = app.second_instance(config(&[(
        "OBJECT_URL_SIGNING_KEY",
        "rotated-url-key-Q1w2E3r4T5y6U7i8O9p0",
    )]));
    assert_eq!(
        app.http
            .get(format!("{dropped}{good}"))
            .send()
            .await
            .expect("r")
            .status(),
        403
    );
}

#[actix_web::test]
async fn expired_grants_are_410_and_missing_objects_503_and_both_are_recorded() {
    let app = TestApp::spawn().await;
    publish(&app, "census", "raw/census-2026.csv", BYTES).await;
    let (token, _, _) = app.sign_in_to_org("m@example.com").await;
    let (_, a) = app
        .call(
            "POST",
            "/datasets/catalog/census/download",
            Some(&token),
            None,
        )
        .await;
    let (_, b) = app
        .call(
            "POST",
            "/datasets/catalog/census/download",
            Some(&token),
            None,
        )
        .await;
    let path = |g: &Value| path_of(g["download_url"].as_str().expect("url"));
    let client = app.db.pool.get().await.expect("client");
    let seq = a["receipt"]["body"]["seq"].as_i64().expect("seq");
    client
        .execute(
            "UPDATE dataset_grants SET expires_at = now() - interval '1 second' WHERE seq = $1",
            &[&seq],
        )
        .await
        .expect("expire");
    let res = app.http.get(app.url(&path(&a))).send().await.expect("r");
    assert_eq!(res.status(), 410);

    app.objects
        .delete(&object_store::path::Path::from("raw/census-2026.csv"))
        .await
        .expect("delete");
    let res = app.http.get(app.url(&path(&b))).send().await.expect("r");
    assert_eq!(res.status(), 503);
    let actions: Vec<String> = client
        .query("SELECT action FROM audit_events WHERE action IN ('share.access_error', 'storage.failure') ORDER BY id", &[])
        .await
        .expect("events")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(actions, ["share.access_error", "storage.failure"]);
}

#[actix_web::test]
async fn exactly_the_limit_of_200_racing_grants_succeed_and_the_chain_verifies() {
    // Rate limits raised so that the quota, not the per-hour limit, is what refuses.
    let app = TestApp::spawn_with(config(&[
        ("DATASET_DOWNLOAD_DAILY_LIMIT", "50"),
        (
            "RATE_LIMITS",
            "dataset-grant-org=1000/1h,dataset-grant-ip=1000/1h",
        ),
    ]))
    .await;
    publish(&app, "census", "raw/census-2026.csv", BYTES).await;
    let (token, slug, _) = app.sign_in_to_org("racer@example.com").await;
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let http = app.http.clone();
        let url = app.url("/datasets/catalog/census/download");
        let token = token.clone();
        tasks.push(tokio::spawn(async move {
            let res = http
                .post(url)
                .bearer_auth(token)
                .json(&json!({}))
                .send()
                .await
                .expect("r");
            let retry = res
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().expect("ascii").parse::<u64>().expect("secs"));
            (res.status().as_u16(), retry)
        }));
    }
    let mut granted = 0;
    let mut refused = 0;
    for t in tasks {
        match t.await.expect("join") {
            (201, _) => granted += 1,
            (429, Some(secs)) => {
                assert!((1..=86_400).contains(&secs));
                refused += 1
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((granted, refused), (50, 150));
    let client = app.db.pool.get().await.expect("client");
    let grants: i64 = client
        .query_one("SELECT count(*) FROM dataset_grants", &[])
        .await
        .expect("n")
        .get(0);
    let receipts: i64 = client
        .query_one(
            "SELECT count(*) FROM receipts WHERE kind = 'dataset.download'",
            &[],
        )
        .await
        .expect("n")
        .get(0);
    assert_eq!((grants, receipts), (50, 50), "refusals wrote nothing");
    let verify = app.verify(&token, &slug).await;
    assert_eq!((verify.valid, verify.checked), (true, 50));
}

// ---------------------------------------------------------------------------------------------
// A real S3-compatible server: s3s-fs on loopback (cargo xtask test installs it).

#[actix_web::test]
async fn grants_on_s3_redirect_to_a_presigned_url_that_serves_the_bytes() {
    let s3 = S3Server::start("datasets");
    let store = Arc::new(s3.store("datasets"));
    let db = defendable_testkit::TestDb::new().await;
    let app =
        TestApp::spawn_full(db, config(&[]), TempDir::new(), store.clone(), Some(store)).await;
    publish(&app, "census", "raw/census-2026.csv", BYTES).await;
    let (token, _, _) = app.sign_in_to_org("s3@example.com").await;
    let (s, grant) = app
        .call(
            "POST",
            "/datasets/catalog/census/download",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(s, 201, "{grant}");
    let download = grant["download_url"].as_str().expect("url");
    let share_path = &path_of(download);
    let res = app.http.get(app.url(share_path)).send().await.expect("r");
    assert_eq!(res.status(), 302);
    let location = res.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(
        location.starts_with(&format!(
            "http://127.0.0.1:{}/datasets/raw/census-2026.csv?",
            s3.port
        )),
        "{location}"
    );
    assert!(location.contains("X-Amz-Signature="), "{location}");
    let bytes = reqwest::get(&location)
        .await
        .expect("get")
        .bytes()
        .await
        .expect("bytes");
    assert_eq!(
        blake3_hex(&bytes),
        grant["receipt"]["body"]["public"]["blake3"]
            .as_str()
            .expect("digest")
    );
    let tampered = location.replace("census-2026", "census-2025");
    assert!(!reqwest::get(&tampered)
        .await
        .expect("get")
        .status()
        .is_success());
}
