//! The pool cannot be starved (issue 13, part 1): a request never holds a connection while it
//! waits for another, a slow export reader holds none, and every database wait is bounded and
//! answered 503 with `Retry-After`.

use defendable_api::error::{ErrorCode, Problem};
use std::time::Duration;

use defendable_ledger::store::{AppendOptions, BatchAppender};
use defendable_ledger::{Draft, ReceiptKind};
use defendable_store::PoolSettings;
use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::datasets_http::publish;
use crate::helpers::{config, path_of, TestApp};

/// A pool of `size` whose waits are long: a request that deadlocks the pool shows up as a hang
/// and then a 503, never as a slow success.
fn patient_pool(size: usize) -> PoolSettings {
    PoolSettings {
        wait: Duration::from_secs(30),
        ..defendable_boot::server_pool_settings(size)
    }
}

#[actix_web::test]
async fn catalog_grants_and_share_downloads_run_with_a_pool_of_two_and_64_callers() {
    let app = TestApp::spawn_with_pool(
        config(&[
            ("DATASET_DOWNLOAD_DAILY_LIMIT", "1000"),
            (
                "RATE_LIMITS",
                "dataset-grant-org=1000/1h,dataset-grant-ip=1000/1h,share-download-ip=1000/1h",
            ),
        ]),
        patient_pool(2),
    )
    .await;
    publish(&app, "census", "raw/census-2026.csv", b"a,b\n1,2\n").await;
    let (token, _, _) = app.sign_in_to_org("crowd@example.com").await;

    let mut callers = Vec::new();
    for _ in 0..64 {
        let http = app.http.clone();
        let base = app.base.clone();
        let token = token.clone();
        callers.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            let res = http
                .get(format!("{base}/datasets/catalog"))
                .bearer_auth(&token)
                .send()
                .await
                .expect("catalog");
            statuses.push(res.status().as_u16());
            let res = http
                .post(format!("{base}/datasets/catalog/census/download"))
                .bearer_auth(&token)
                .json(&json!({}))
                .send()
                .await
                .expect("grant");
            statuses.push(res.status().as_u16());
            let grant: Value = res.json().await.unwrap_or(Value::Null);
            if let Some(url) = grant["download_url"].as_str() {
                let res = http
                    .get(format!("{base}{}", path_of(url)))
                    .send()
                    .await
                    .expect("download");
                statuses.push(res.status().as_u16());
            }
            statuses
        }));
    }
    let mut all = Vec::new();
    for caller in callers {
        all.push(caller.await.expect("join"));
    }
    for statuses in &all {
        assert_eq!(
            statuses.as_slice(),
            &[200, 201, 302],
            "catalog, grant and share download each succeed: {all:?}"
        );
    }
}

/// Appends `n` receipts of about 8 KiB each to `org` through the library.
async fn fill(app: &TestApp, org: uuid::Uuid, n: usize) {
    let appender = BatchAppender::start(app.db.another_pool(4), 2, 512);
    let padding = "x".repeat(8 * 1024);
    let mut pending = Vec::new();
    for i in 0..n {
        let draft = Draft::new(
            ReceiptKind::parse("bulk.row").expect("kind"),
            json!({ "i": i, "padding": padding }),
            None,
        )
        .expect("draft");
        pending.push(appender.append(org, draft, AppendOptions::default()));
        if pending.len() == 256 {
            for p in pending.drain(..) {
                p.await.expect("append");
            }
        }
    }
    for p in pending {
        p.await.expect("append");
    }
}

/// Starts an export as `bearer` (the body not read yet).
async fn start_export(app: &TestApp, url: &str, bearer: &str) -> reqwest::Response {
    app.http
        .get(url)
        .bearer_auth(bearer)
        .send()
        .await
        .expect("export")
}

#[actix_web::test]
async fn slow_export_readers_hold_no_connection_and_exports_are_capped_per_principal() {
    let app = TestApp::spawn_with_pool(config(&[]), patient_pool(2)).await;
    let (token, slug, org) = app.sign_in_to_org("auditor@example.com").await;
    let org: uuid::Uuid = org.parse().expect("uuid");
    // About 16 MiB: far more than the socket buffers, so a reader that stops stalls the export.
    let receipts = 2_000;
    fill(&app, org, receipts).await;
    let export = format!("{}/orgs/{slug}/ledger/export", app.base);

    // Two exports whose readers take one chunk and then stop reading.
    let mut stalled = Vec::new();
    for _ in 0..2 {
        let res = start_export(&app, &export, &token).await;
        assert_eq!(res.status(), 200);
        let mut body = res.bytes_stream();
        body.next().await.expect("a first chunk").expect("bytes");
        stalled.push(body);
    }

    // The pool is free: reads go through at once (they would wait for a connection the
    // stalled exports held, until the wait timeout, if exports held connections).
    for _ in 0..20 {
        let (s, _) = app
            .call(
                "GET",
                &format!("/orgs/{slug}/receipts?limit=1"),
                Some(&token),
                None,
            )
            .await;
        assert_eq!(s, 200);
    }

    // A third export by the same principal is refused; another principal still exports.
    let res = start_export(&app, &export, &token).await;
    assert_eq!(res.status(), 429);
    assert!(res.headers().contains_key("retry-after"));
    let problem: Problem = res.json().await.expect("problem");
    assert_eq!(problem.code, ErrorCode::TooManyExports);
    let key = app.api_key(&token, &slug).await;
    let res = start_export(&app, &export, &key).await;
    assert_eq!(res.status(), 200);
    let text = res.text().await.expect("body");
    assert_eq!(
        text.lines().count(),
        receipts + 1,
        "every receipt, then the checkpoint"
    );
    assert!(text
        .lines()
        .last()
        .expect("last")
        .starts_with("{\"checkpoint\""));

    // Readers that go away free their slots: the principal exports again.
    drop(stalled);
    let mut freed = false;
    for _ in 0..100 {
        let res = start_export(&app, &export, &token).await;
        if res.status() == 200 {
            let text = res.text().await.expect("body");
            assert_eq!(text.lines().count(), receipts + 1);
            freed = true;
            break;
        }
        assert_eq!(res.status(), 429);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        freed,
        "the stalled exports' slots were freed when their readers left"
    );
}

#[actix_web::test]
async fn a_lock_wait_and_a_pool_wait_end_in_503_with_retry_after() {
    let app = TestApp::spawn_with_pool(
        config(&[]),
        PoolSettings {
            wait: Duration::from_millis(500),
            ..defendable_boot::server_pool_settings(1)
        },
    )
    .await;
    let (token, slug, org) = app.sign_in_to_org("waiter@example.com").await;
    let org: uuid::Uuid = org.parse().expect("uuid");
    let (s, _) = app
        .call(
            "POST",
            &format!("/orgs/{slug}/receipts"),
            Some(&token),
            Some(json!({"kind": "test.first", "public": {}})),
        )
        .await;
    assert_eq!(s, 201);

    // Someone else holds the organization's head row: the append waits on the lock, bounded by
    // the lock timeout, while holding the only connection.
    let mut holder = app.db.another_pool(1).get().await.expect("client");
    let tx = holder.transaction().await.expect("tx");
    tx.execute(
        "SELECT 1 FROM ledger_heads WHERE org_id = $1 FOR UPDATE",
        &[&org],
    )
    .await
    .expect("lock");
    let append = {
        let http = app.http.clone();
        let url = app.url(&format!("/orgs/{slug}/receipts"));
        let token = token.clone();
        tokio::spawn(async move {
            http.post(url)
                .bearer_auth(token)
                .json(&json!({"kind": "test.blocked", "public": {}}))
                .send()
                .await
                .expect("append")
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Meanwhile the pool's only connection is taken: a read waits its bounded time for it.
    let res = app
        .http
        .get(app.url(&format!("/orgs/{slug}/receipts")))
        .bearer_auth(&token)
        .send()
        .await
        .expect("read");
    assert_eq!(res.status(), 503);
    assert!(res.headers().contains_key("retry-after"));
    let problem: Problem = res.json().await.expect("problem");
    assert_eq!(problem.code, ErrorCode::DatabaseUnavailable);

    let res = append.await.expect("join");
    assert_eq!(res.status(), 503, "the lock wait ended in the lock timeout");
    assert!(res.headers().contains_key("retry-after"));
    let problem: Problem = res.json().await.expect("problem");
    assert_eq!(problem.code, ErrorCode::DatabaseUnavailable);
    tx.rollback().await.expect("rollback");

    let verify = app.verify(&token, &slug).await;
    assert_eq!(
        (verify.valid, verify.checked),
        (true, 1),
        "the refused append wrote nothing"
    );
}

/// Hot reads (`GET /me`, receipt lists and reads, share reads) share a few connections, their
/// statements pipelined: concurrent readers each get their own answer, and a shared connection
/// whose backend ends is replaced instead of failing every later read.
#[actix_web::test]
async fn shared_read_connections_answer_each_reader_and_are_replaced_when_they_close() {
    let app = TestApp::spawn().await;
    let (alice, _) = app.sign_in("alice@example.com").await;
    let (bob, _) = app.sign_in("bob@example.com").await;
    let calls = (0..64).map(|i| {
        let (app, token) = (&app, if i % 2 == 0 { &alice } else { &bob });
        async move { (i, app.call("GET", "/me", Some(token), None).await) }
    });
    for (i, (status, body)) in futures_util::future::join_all(calls).await {
        let who = if i % 2 == 0 { "alice" } else { "bob" };
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["user"]["email"], format!("{who}@example.com"));
    }

    // Every backend of the server ends (a failover, an administrator's pg_terminate_backend).
    let client = app.db.pool.get().await.expect("client");
    let ended: i64 = client
        .query_one(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()) t",
            &[],
        )
        .await
        .expect("terminate")
        .get(0);
    assert!(ended >= 1, "the server had connections");
    let back = crate::helpers::eventually(Duration::from_secs(5), || {
        let (app, alice) = (&app, &alice);
        async move { app.call("GET", "/me", Some(alice), None).await.0 == 200 }
    })
    .await;
    assert!(back, "reads did not recover within 5 s");
    for _ in 0..10 {
        let (status, body) = app.call("GET", "/me", Some(&bob), None).await;
        assert_eq!(status, 200, "{body}");
    }
}
