//! Edge and application controls: rate limits shared across processes, client addresses behind
//! proxies, the internal routes, the Stripe webhook, metrics and the audit log.

use defendable_api::error::{ErrorCode, Problem};
use defendable_api::routes::ops::AuditPage;
use serde_json::{json, Value};

use crate::helpers::{call, config, read_as, TestApp, RUNNER_TOKEN, STRIPE_SECRET};

#[actix_web::test]
async fn the_sixth_sign_in_request_for_one_email_is_refused_with_retry_after() {
    let app = TestApp::spawn().await;
    for i in 1..=5 {
        let res = app
            .http
            .post(app.url("/auth/request"))
            .json(&json!({"email": "limit@example.com"}))
            .send()
            .await
            .expect("r");
        assert_eq!(res.status(), 202, "request {i}");
        let rate = res.headers()["ratelimit"]
            .to_str()
            .expect("ascii")
            .to_owned();
        assert!(
            rate.contains(&format!("\"auth-request-email\";r={}", 5 - i)),
            "{rate}"
        );
        assert!(res.headers()["ratelimit-policy"]
            .to_str()
            .expect("ascii")
            .contains("\"auth-request-email\";q=5;w=600"));
    }
    let res = app
        .http
        .post(app.url("/auth/request"))
        .json(&json!({"email": "limit@example.com"}))
        .send()
        .await
        .expect("r");
    assert_eq!(res.status(), 429);
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("secs");
    assert!((1..=600).contains(&retry), "{retry}");
    assert!(
        res.headers().contains_key("ratelimit") && res.headers().contains_key("ratelimit-policy")
    );
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    assert_eq!(
        res.json::<Problem>().await.expect("a problem").code,
        ErrorCode::RateLimited
    );
    // Another address is not affected.
    let (s, _) = app
        .call(
            "POST",
            "/auth/request",
            None,
            Some(json!({"email": "other@example.com"})),
        )
        .await;
    assert_eq!(s, 202);
}

#[actix_web::test]
async fn two_server_processes_share_the_count() {
    let app = TestApp::spawn().await;
    let other = app.second_instance(config(&[]));
    let http = crate::helpers::http();
    for i in 0..5 {
        let base = if i % 2 == 0 {
            app.base.clone()
        } else {
            other.clone()
        };
        let res = http
            .post(format!("{base}/auth/request"))
            .json(&json!({"email": "shared@example.com"}))
            .send()
            .await
            .expect("r");
        assert_eq!(res.status(), 202, "request {i}");
    }
    for base in [&app.base, &other] {
        let res = http
            .post(format!("{base}/auth/request"))
            .json(&json!({"email": "shared@example.com"}))
            .send()
            .await
            .expect("r");
        assert_eq!(res.status(), 429);
    }
}

/// Sends 21 failing `/auth/verify` calls (the limit is 20 per address) from behind a trusted
/// proxy: a fixed `X-Forwarded-For` and a `CF-Connecting-IP` that changes on every call.
async fn last_status_with_a_rotating_cf_header(app: &TestApp) -> u16 {
    let mut last = 0;
    for i in 0..21 {
        let res = app
            .http
            .post(app.url("/auth/verify"))
            .header("x-forwarded-for", "198.51.100.7, 127.0.0.1")
            .header("cf-connecting-ip", format!("203.0.113.{i}"))
            .json(&json!({"token": "A".repeat(43)}))
            .send()
            .await
            .expect("r");
        last = res.status().as_u16();
    }
    last
}

#[actix_web::test]
async fn cf_connecting_ip_is_believed_only_when_configured() {
    // Default: behind a generic proxy a client-sent CF-Connecting-IP is ignored, so rotating it
    // does not escape the per-address limit.
    let generic = TestApp::spawn_with(config(&[("TRUSTED_PROXIES", "127.0.0.1/32")])).await;
    assert_eq!(last_status_with_a_rotating_cf_header(&generic).await, 429);
    // With Cloudflare in front (configured), its header names the client.
    let cloudflare = TestApp::spawn_with(config(&[
        ("TRUSTED_PROXIES", "127.0.0.1/32"),
        ("CLIENT_IP_HEADER", "cf-connecting-ip"),
    ]))
    .await;
    assert_eq!(
        last_status_with_a_rotating_cf_header(&cloudflare).await,
        401
    );
}

#[actix_web::test]
async fn forwarding_headers_count_only_from_trusted_proxies() {
    let untrusted = TestApp::spawn().await;
    let mut last = 0;
    for i in 0..21 {
        let res = untrusted
            .http
            .post(untrusted.url("/auth/verify"))
            .header("x-forwarded-for", format!("198.51.100.{i}"))
            .header("cf-connecting-ip", format!("203.0.113.{i}"))
            .json(&json!({"token": "A".repeat(43)}))
            .send()
            .await
            .expect("r");
        last = res.status().as_u16();
    }
    assert_eq!(
        last, 429,
        "a spoofed header from an untrusted peer changes nothing"
    );

    let trusted = TestApp::spawn_with(config(&[("TRUSTED_PROXIES", "127.0.0.1/32")])).await;
    for i in 0..21 {
        let res = trusted
            .http
            .post(trusted.url("/auth/verify"))
            .header("x-forwarded-for", format!("198.51.100.{i}, 127.0.0.1"))
            .json(&json!({"token": "A".repeat(43)}))
            .send()
            .await
            .expect("r");
        assert_eq!(
            res.status(),
            401,
            "behind a trusted proxy each client has its own count"
        );
    }
    let client = trusted.db.pool.get().await.expect("client");
    let ips: Vec<String> = client
        .query(
            "SELECT DISTINCT host(ip) FROM audit_events WHERE action = 'auth.verify'",
            &[],
        )
        .await
        .expect("ips")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        ips.len(),
        21,
        "the audit log records the forwarded client address: {ips:?}"
    );
}

#[actix_web::test]
async fn runners_record_receipts_with_their_token_and_metrics_need_the_internal_key() {
    let app = TestApp::spawn().await;
    let (_, slug, _) = app.sign_in_to_org("runs@example.com").await;
    let (_, other_slug, other_id) = app.sign_in_to_org("bystander@example.com").await;
    let body = json!({"org": slug, "kind": "run", "public": {"suite": "nightly", "passed": 120}});
    // No RUNNER_ORGS: the token records nowhere.
    let (s, problem) = app
        .problem(
            "POST",
            "/internal/receipts",
            Some(RUNNER_TOKEN),
            Some(body.clone()),
        )
        .await;
    assert_eq!((s, problem.code), (403, ErrorCode::RunnerOrgNotAllowed));
    // Listed by slug: recorded; another organization (by slug or id) and an unknown one are
    // refused alike.
    let listed = app.second_instance(config(&[("RUNNER_ORGS", &slug)]));
    let (s, receipt) = call(
        &app.http,
        &format!("{listed}/internal/receipts"),
        "POST",
        Some(RUNNER_TOKEN),
        Some(body.clone()),
    )
    .await;
    assert_eq!(s, 201, "{receipt}");
    assert_eq!(receipt["body"]["kind"], "run");
    for org in [other_slug.as_str(), other_id.as_str(), "no-such-org"] {
        let (s, problem) = call(
            &app.http,
            &format!("{listed}/internal/receipts"),
            "POST",
            Some(RUNNER_TOKEN),
            Some(json!({"org": org, "kind": "run", "public": {}})),
        )
        .await;
        assert_eq!(
            (s.as_u16(), read_as::<Problem>(&problem).code),
            (403, ErrorCode::RunnerOrgNotAllowed),
            "{org}"
        );
    }
    let (s, _) = app
        .call(
            "POST",
            "/internal/receipts",
            Some("not-the-runner-token"),
            Some(body.clone()),
        )
        .await;
    assert_eq!(s, 401);

    let text = app.metrics().await;
    assert!(
        text.contains(
            "defendable_http_requests_total{route=\"/internal/receipts\",method=\"POST\",code=\"401\"} 1"
        ),
        "{text}"
    );
    assert!(text.contains("# TYPE defendable_receipt_hash_mismatches counter"));
    assert!(
        text.contains("defendable_http_request_duration_seconds_count{route=\"/internal/receipts\",method=\"POST\"} "),
        "{text}"
    );
    let res = app.http.get(app.url("/metrics")).send().await.expect("r");
    assert_eq!(res.status(), 401);
}

fn stripe_signature(secret: &str, t: i64, payload: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    hex::encode(ring::hmac::sign(&key, format!("{t}.{payload}").as_bytes()).as_ref())
}

async fn post_event(app: &TestApp, header: &str, payload: &str) -> (u16, Value) {
    let res = app
        .http
        .post(app.url("/webhooks/stripe"))
        .header("stripe-signature", header)
        .header("content-type", "application/json")
        .body(payload.to_owned())
        .send()
        .await
        .expect("r");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[actix_web::test]
async fn stripe_webhooks_verify_the_raw_body_and_are_idempotent() {
    let app = TestApp::spawn().await;
    let (token, slug, org_id) = app.sign_in_to_org("billing@example.com").await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    // Key order and spacing matter: the signature covers the raw bytes.
    let payload = format!(
        r#"{{"id": "evt_plan_1", "type": "customer.subscription.updated", "data": {{"object": {{"status": "active", "metadata": {{"org_id": "{org_id}", "plan": "pro"}}}}}}}}"#
    );

    let (s, body) = post_event(
        &app,
        &format!(
            "t={now},v1={}",
            stripe_signature("whsec_wrong", now, &payload)
        ),
        &payload,
    )
    .await;
    assert_eq!(
        (s, read_as::<Problem>(&body).code),
        (400, ErrorCode::InvalidSignature),
        "wrong secret"
    );
    let old = now - 301;
    let (s, _) = post_event(
        &app,
        &format!(
            "t={old},v1={}",
            stripe_signature(STRIPE_SECRET, old, &payload)
        ),
        &payload,
    )
    .await;
    assert_eq!(s, 400, "old timestamp");
    let (s, _) = post_event(
        &app,
        &format!(
            "t={now},v1={}",
            stripe_signature(STRIPE_SECRET, now, &payload)
        ),
        &format!("{payload} "),
    )
    .await;
    assert_eq!(s, 400, "a body changed after signing");

    // Two v1 values (Stripe sends one per active secret during a rotation): either may match.
    let header = format!(
        "t={now},v1={},v1={}",
        stripe_signature("whsec_other", now, &payload),
        stripe_signature(STRIPE_SECRET, now, &payload)
    );
    let (s, body) = post_event(&app, &header, &payload).await;
    assert_eq!(
        (s, body["duplicate"].as_bool()),
        (200, Some(false)),
        "{body}"
    );
    let quota = app.quota(&token, &slug).await;
    assert_eq!(quota.limit, 1000, "the pro plan sets the dataset limit");

    // A replay is acknowledged and does nothing.
    let (s, body) = post_event(&app, &header, &payload).await;
    assert_eq!((s, body["duplicate"].as_bool()), (200, Some(true)));
    let client = app.db.pool.get().await.expect("client");
    let changes: i64 = client
        .query_one(
            "SELECT count(*) FROM audit_events WHERE action = 'billing.plan_change'",
            &[],
        )
        .await
        .expect("n")
        .get(0);
    let failures: i64 = client
        .query_one(
            "SELECT count(*) FROM audit_events WHERE action = 'webhook.signature_failure'",
            &[],
        )
        .await
        .expect("n")
        .get(0);
    assert_eq!(changes, 1);
    // Three signature failures from one address: audited once per minute (twice if a minute
    // boundary fell between them), each counted.
    assert!((1..=2).contains(&failures), "{failures}");
    let counted: i64 = client
        .query_one(
            "SELECT sum(hits)::bigint FROM refusal_counts WHERE source LIKE 'webhook.signature_failure:%'",
            &[],
        )
        .await
        .expect("n")
        .get(0);
    assert_eq!(counted, 3);

    // Unknown types are acknowledged and ignored; cancelling returns to the default limit.
    let ping = r#"{"id": "evt_ping", "type": "invoice.created", "data": {"object": {}}}"#;
    let (s, _) = post_event(
        &app,
        &format!("t={now},v1={}", stripe_signature(STRIPE_SECRET, now, ping)),
        ping,
    )
    .await;
    assert_eq!(s, 200);
    let cancel = format!(
        r#"{{"id": "evt_plan_2", "type": "customer.subscription.deleted", "data": {{"object": {{"metadata": {{"org_id": "{org_id}"}}}}}}}}"#
    );
    let (s, _) = post_event(
        &app,
        &format!(
            "t={now},v1={}",
            stripe_signature(STRIPE_SECRET, now, &cancel)
        ),
        &cancel,
    )
    .await;
    assert_eq!(s, 200);
    let quota = app.quota(&token, &slug).await;
    assert_eq!(quota.limit, 100);
}

#[actix_web::test]
async fn a_rotated_stripe_secret_still_verifies_through_its_previous_twin() {
    let app = TestApp::spawn_with(config(&[
        ("STRIPE_WEBHOOK_SECRET", "whsec_new_Qa1Ws2Ed3Rf4Tg5Yh6"),
        ("STRIPE_WEBHOOK_SECRET_PREVIOUS", STRIPE_SECRET),
    ]))
    .await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let payload = r#"{"id": "evt_old_secret", "type": "invoice.paid", "data": {"object": {}}}"#;
    let (s, _) = post_event(
        &app,
        &format!(
            "t={now},v1={}",
            stripe_signature(STRIPE_SECRET, now, payload)
        ),
        payload,
    )
    .await;
    assert_eq!(s, 200);
    let text = app.metrics().await;
    assert!(
        text.contains(
            "defendable_previous_secret_uses_total{secret=\"STRIPE_WEBHOOK_SECRET_PREVIOUS\"} 1"
        ),
        "{text}"
    );
}

#[actix_web::test]
async fn owners_page_through_their_audit_log() {
    let app = TestApp::spawn().await;
    let (token, slug, _) = app.sign_in_to_org("auditor@example.com").await;
    for i in 0..3 {
        app.call(
            "POST",
            &format!("/orgs/{slug}/api-keys"),
            Some(&token),
            Some(json!({"name": format!("k{i}")})),
        )
        .await;
    }
    let audit = |query: String| {
        let (app, token, slug) = (&app, token.clone(), slug.clone());
        async move {
            let path = format!("/orgs/{slug}/audit?{query}");
            app.expect_as::<AuditPage>(200, "GET", &path, Some(&token), None)
                .await
        }
    };
    let page = audit("action=api_key.create&limit=2".into()).await;
    assert_eq!(page.items.len(), 2);
    assert!(page.items.iter().all(|e| e.action == "api_key.create"));
    let cursor = page.next_cursor.expect("more");
    let rest = audit(format!("action=api_key.create&cursor={cursor}")).await;
    assert_eq!((rest.items.len(), rest.next_cursor), (1, None));
    let all = audit("since=2000-01-01T00:00:00Z".into()).await;
    assert!(all.items.len() >= 4, "{all:?}");
}

/// Kinds the server and the operations tools write are refused from every API route, so no
/// member, API key or runner can forge a grant, a drill, a rotation or a release.
#[actix_web::test]
async fn reserved_kinds_are_refused_from_every_route() {
    let app = TestApp::spawn().await;
    let (token, slug, _) = app.sign_in_to_org("reserved@example.com").await;
    let api_key = app.api_key(&token, &slug).await;
    for kind in defendable_ledger::receipt::RESERVED_KINDS {
        for bearer in [token.as_str(), api_key.as_str()] {
            let (s, problem) = app
                .problem(
                    "POST",
                    &format!("/orgs/{slug}/receipts"),
                    Some(bearer),
                    Some(json!({"kind": kind, "public": {}})),
                )
                .await;
            assert_eq!((s, problem.code), (422, ErrorCode::ReservedKind), "{kind}");
        }
        let (s, problem) = app
            .problem(
                "POST",
                "/internal/receipts",
                Some(RUNNER_TOKEN),
                Some(json!({"org": slug, "kind": kind, "public": {}})),
            )
            .await;
        assert_eq!(
            (s, problem.code),
            (422, ErrorCode::ReservedKind),
            "runner {kind}"
        );
    }
    let (_, page) = app
        .call("GET", &format!("/orgs/{slug}/receipts"), Some(&token), None)
        .await;
    assert_eq!(
        page["items"].as_array().map(Vec::len),
        Some(0),
        "nothing was recorded"
    );
}

/// A subscription that stops being paid falls back to the free limit, and an event created
/// before the last one applied to its subscription (Stripe delivers out of order) changes
/// nothing.
#[actix_web::test]
async fn lapsed_subscriptions_fall_back_and_late_events_are_ignored() {
    let app = TestApp::spawn_with(config(&[("DATASET_DOWNLOAD_DAILY_LIMIT", "100")])).await;
    let (token, slug, org_id) = app.sign_in_to_org("lapse@example.com").await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let send = |id: &str, created: i64, status: &str| {
        let payload = format!(
            r#"{{"id": "{id}", "created": {created}, "type": "customer.subscription.updated", "data": {{"object": {{"id": "sub_1", "status": "{status}", "metadata": {{"org_id": "{org_id}", "plan": "pro"}}}}}}}}"#
        );
        let header = format!(
            "t={now},v1={}",
            stripe_signature(STRIPE_SECRET, now, &payload)
        );
        let app = &app;
        async move { post_event(app, &header, &payload).await }
    };
    let limit = || async { app.quota(&token, &slug).await.limit };
    assert_eq!(send("evt_a", 1_000, "active").await.0, 200);
    assert_eq!(limit().await, 1000, "pro");
    assert_eq!(send("evt_b", 2_000, "past_due").await.0, 200);
    assert_eq!(limit().await, 100, "past due: back to the free limit");
    // Delivered late: created before evt_b.
    let (s, body) = send("evt_late", 1_500, "active").await;
    assert_eq!((s, body["duplicate"].as_bool()), (200, Some(false)));
    assert_eq!(limit().await, 100, "a stale event changes nothing");
    assert_eq!(send("evt_c", 3_000, "active").await.0, 200);
    assert_eq!(limit().await, 1000, "paid again");
    assert_eq!(send("evt_d", 4_000, "unpaid").await.0, 200);
    assert_eq!(limit().await, 100, "unpaid: back to the free limit");
}

#[actix_web::test]
async fn metrics_report_append_batches_pool_waits_and_the_build() {
    let app = TestApp::spawn_with(config(&[("DATABASE_POOL_SIZE", "7")])).await;
    let (token, slug, _) = app.sign_in_to_org("batches@example.com").await;
    for i in 0..3 {
        let (s, _) = app
            .call(
                "POST",
                &format!("/orgs/{slug}/receipts"),
                Some(&token),
                Some(json!({"kind": "run", "public": {"i": i}})),
            )
            .await;
        assert_eq!(s, 201);
    }
    let text = app.metrics().await;
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse::<f64>().ok())
    };
    // Three receipts went through the appender, in one to three batches.
    assert_eq!(
        value("defendable_ledger_append_batch_size_sum"),
        Some(3.0),
        "{text}"
    );
    assert!(value("defendable_ledger_append_batch_size_count")
        .is_some_and(|n| (1.0..=3.0).contains(&n)));
    // Every request that touched the database waited for its connection, and the pool is read
    // at scrape time.
    assert!(
        value("defendable_db_pool_wait_seconds_count").is_some_and(|n| n >= 3.0),
        "{text}"
    );
    assert_eq!(value("defendable_db_pool_max_connections"), Some(7.0));
    assert!(text.contains(&format!(
        "defendable_build_info{{version=\"{}\",commit=\"",
        env!("CARGO_PKG_VERSION")
    )));
    assert!(text.contains(
        "defendable_http_requests_total{route=\"/orgs/{org}/receipts\",method=\"POST\",code=\"201\"} 3"
    ));
}
