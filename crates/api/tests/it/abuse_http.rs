//! Abuse limits (issue 13, part 3): invites, organization creation, the per-person dataset
//! quota, share reads per address and per token, aggregated refusals, and the normalization of
//! limit keys (email case, token spelling, IPv6 /64).

use defendable_api::error::{ErrorCode, Problem};
use defendable_api::ratelimit::normalize;
use defendable_config::limits::LimitKey;
use defendable_datasets::view::GrantView;
use defendable_identity::view::{InvitePage, InviteView, SessionView};
use defendable_ledger::ReceiptView;
use serde_json::{json, Value};

use crate::datasets_http::publish;
use crate::helpers::{config, read_as, TestApp};

async fn invite(app: &TestApp, owner: &str, org: &str, email: &str) -> (u16, Value) {
    let (s, body) = app
        .call(
            "POST",
            &format!("/orgs/{org}/invites"),
            Some(owner),
            Some(json!({"email": email, "role": "member"})),
        )
        .await;
    (s.as_u16(), body)
}

#[actix_web::test]
async fn invites_are_limited_per_organization_and_per_address_and_reused_while_pending() {
    let app = TestApp::spawn_with(config(&[(
        "RATE_LIMITS",
        "invite-create-org=5/1d,invite-create-email=2/1d",
    )]))
    .await;
    let (owner, slug, _) = app.sign_in_to_org("inviter@example.com").await;

    // One address, twice (in two spellings): one pending invite, reused.
    let (s, first) = invite(&app, &owner, &slug, "guest@example.com").await;
    assert_eq!(s, 201, "{first}");
    let (s, again) = invite(&app, &owner, &slug, "GUEST@example.com").await;
    assert_eq!(s, 201, "{again}");
    let (first, again): (InviteView, InviteView) = (read_as(&first), read_as(&again));
    assert_eq!(again.id, first.id, "the pending invite is reused");
    let pending: InvitePage = app
        .expect_as(
            200,
            "GET",
            &format!("/orgs/{slug}/invites"),
            Some(&owner),
            None,
        )
        .await;
    assert_eq!(pending.items.len(), 1);
    // A third invite to that address, however spelled, is refused.
    let (s, problem) = invite(&app, &owner, &slug, "Guest@Example.COM").await;
    assert_eq!(
        (s, read_as::<Problem>(&problem).code),
        (429, ErrorCode::RateLimited)
    );

    // The organization's own budget (five attempts, the refused one included): two more
    // addresses, then refused.
    for n in 0..2 {
        let (s, body) = invite(&app, &owner, &slug, &format!("g{n}@example.com")).await;
        assert_eq!(s, 201, "{body}");
    }
    let (s, problem) = invite(&app, &owner, &slug, "g9@example.com").await;
    assert_eq!(
        (s, read_as::<Problem>(&problem).code),
        (429, ErrorCode::RateLimited)
    );
}

#[actix_web::test]
async fn organizations_per_user_per_day_are_limited() {
    let app = TestApp::spawn_with(config(&[("RATE_LIMITS", "org-create-user=2/1d")])).await;
    let (token, _) = app.sign_in("founder@example.com").await;
    for n in 0..2 {
        let (s, body) = app
            .call(
                "POST",
                "/orgs",
                Some(&token),
                Some(json!({"slug": format!("venture-{n}"), "name": "V"})),
            )
            .await;
        assert_eq!(s, 201, "{body}");
    }
    let (s, problem) = app
        .problem(
            "POST",
            "/orgs",
            Some(&token),
            Some(json!({"slug": "venture-9", "name": "V"})),
        )
        .await;
    assert_eq!((s, problem.code), (429, ErrorCode::RateLimited));
    let (other, _) = app.sign_in("someone-else@example.com").await;
    let (s, _) = app
        .call(
            "POST",
            "/orgs",
            Some(&other),
            Some(json!({"slug": "venture-other", "name": "V"})),
        )
        .await;
    assert_eq!(s, 201, "the limit is per user");
}

#[actix_web::test]
async fn free_organizations_do_not_multiply_a_persons_daily_dataset_quota() {
    let app = TestApp::spawn_with(config(&[("DATASET_DOWNLOAD_DAILY_LIMIT", "2")])).await;
    publish(&app, "census", "raw/census.csv", b"a,b\n1,2\n").await;
    let (token, personal, _) = app.sign_in_to_org("hoarder@example.com").await;
    let (s, _) = app
        .call(
            "POST",
            "/orgs",
            Some(&token),
            Some(json!({"slug": "second-free", "name": "Second"})),
        )
        .await;
    assert_eq!(s, 201);
    let grant = |org: String, bearer: String| {
        let app = &app;
        async move {
            let (s, body) = app
                .call(
                    "POST",
                    "/datasets/catalog/census/download",
                    Some(&bearer),
                    Some(json!({ "org": org })),
                )
                .await;
            (s.as_u16(), body)
        }
    };
    for _ in 0..2 {
        let (s, body) = grant(personal.clone(), token.clone()).await;
        assert_eq!(s, 201, "{body}");
    }
    // The second organization has its whole quota, but the person has used theirs.
    let (s, problem) = grant("second-free".into(), token.clone()).await;
    assert_eq!(
        (s, read_as::<Problem>(&problem).code),
        (429, ErrorCode::QuotaExhausted)
    );
    assert!(
        problem["detail"]
            .as_str()
            .expect("detail")
            .starts_with("your daily"),
        "{problem}"
    );
    // An API key counts for the user who created it.
    let key = app.api_key(&token, "second-free").await;
    let (s, problem) = grant("second-free".into(), key).await;
    assert_eq!(
        (s, read_as::<Problem>(&problem).code),
        (429, ErrorCode::QuotaExhausted)
    );
    // The refusals took nothing from the organization: another member still gets a grant.
    let (s, _) = app
        .call(
            "POST",
            "/orgs/second-free/invites",
            Some(&token),
            Some(json!({"email": "colleague@example.com", "role": "member"})),
        )
        .await;
    assert_eq!(s, 201);
    let joined: SessionView = app
        .expect_as(
            200,
            "POST",
            "/auth/accept-invite",
            None,
            Some(json!({"token": app.outbox_token("colleague@example.com")})),
        )
        .await;
    let (s, granted) = grant("second-free".into(), joined.access_token).await;
    assert_eq!(s, 201, "{granted}");
    assert_eq!(read_as::<GrantView>(&granted).quota.used, 1);
}

#[actix_web::test]
async fn share_reads_are_limited_per_token_in_any_spelling_and_per_address() {
    let app = TestApp::spawn_with(config(&[(
        "RATE_LIMITS",
        "share-view-token=3/1h,share-view-ip=6/1h",
    )]))
    .await;
    let (token, slug, _) = app.sign_in_to_org("sharer@example.com").await;
    let receipt: ReceiptView = app
        .expect_as(
            201,
            "POST",
            &format!("/orgs/{slug}/receipts"),
            Some(&token),
            Some(json!({"kind": "note", "public": {"n": 1}})),
        )
        .await;
    let share = app.share(&token, &slug, &receipt.receipt_id, None).await;
    let link = share.token.as_str();
    let mut statuses = Vec::new();
    // The same token three ways: as is, and with blanks the handler trims.
    for path in [
        format!("/share/{link}"),
        format!("/share/%20{link}"),
        format!("/share/{link}%20"),
        format!("/share/{link}"),
    ] {
        let (s, _) = app.call("GET", &path, None, None).await;
        statuses.push(s.as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 429], "one token, one bucket");
    // The address has two requests left, whatever the tokens.
    let mut statuses = Vec::new();
    for n in 0..3 {
        let (s, _) = app
            .call("GET", &format!("/share/not-a-token-{n}"), None, None)
            .await;
        statuses.push(s.as_u16());
    }
    assert_eq!(statuses, [404, 404, 429]);
}

#[actix_web::test]
async fn refusals_of_anonymous_traffic_are_counted_and_audited_once_per_source_per_minute() {
    let app = TestApp::spawn().await;
    for n in 0..15 {
        let (s, _) = app
            .call("GET", &format!("/share/unknown-{n}"), None, None)
            .await;
        assert_eq!(s, 404);
        let res = app
            .http
            .post(app.url("/webhooks/stripe"))
            .header("stripe-signature", "t=1,v1=00")
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .expect("webhook");
        assert_eq!(res.status(), 400);
        let res = app
            .http
            .get(app.url("/metrics"))
            .header("x-internal-key", "not-the-internal-key")
            .send()
            .await
            .expect("metrics");
        assert_eq!(res.status(), 401);
    }
    let client = app.db.pool.get().await.expect("client");
    let audited: Vec<(String, i64)> = client
        .query(
            "SELECT action, count(*) FROM audit_events
             WHERE action IN ('share.access_error', 'webhook.signature_failure', 'internal.call')
             GROUP BY action ORDER BY action",
            &[],
        )
        .await
        .expect("audit")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    // A minute boundary may fall inside the loop: then a source has two rows, never more.
    for (action, n) in &audited {
        assert!(
            (1..=2).contains(n),
            "{action}: {n} audit rows for 15 refusals"
        );
    }
    assert_eq!(audited.len(), 3, "{audited:?}");
    let counted: i64 = client
        .query_one("SELECT sum(hits)::bigint FROM refusal_counts", &[])
        .await
        .expect("counts")
        .get(0);
    assert_eq!(counted, 45, "every refusal is counted");
    let text = app.metrics().await;
    assert!(
        text.contains("defendable_refusals_total{action=\"share.access_error\"} 15"),
        "{text}"
    );
}

#[actix_web::test]
async fn emails_compare_case_insensitively_in_sign_up_and_in_limits() {
    let app = TestApp::spawn_with(config(&[("RATE_LIMITS", "auth-request-email=2/10m")])).await;
    let (_, first) = app.sign_in("Casey@Example.com").await;
    let (_, again) = app.sign_in("casey@example.COM").await;
    assert_eq!(first, again, "one person, one account");
    let (s, problem) = app
        .problem(
            "POST",
            "/auth/request",
            None,
            Some(json!({"email": "CASEY@EXAMPLE.COM"})),
        )
        .await;
    assert_eq!(
        (s, problem.code),
        (429, ErrorCode::RateLimited),
        "every spelling counts against one address"
    );
}

#[test]
fn limit_keys_have_one_spelling_per_client() {
    let ip = |s: &str| normalize(LimitKey::Ip, s);
    assert_eq!(
        ip("2001:db8:1:2::1"),
        ip("2001:db8:1:2:ffff:ffff:ffff:ffff")
    );
    assert_ne!(ip("2001:db8:1:2::1"), ip("2001:db8:1:3::1"));
    assert_eq!(ip("2001:db8:1:2::1"), "2001:db8:1:2::/64");
    assert_eq!(ip("::ffff:192.0.2.7"), "192.0.2.7");
    assert_ne!(ip("192.0.2.7"), ip("192.0.2.8"));
    assert_eq!(
        normalize(LimitKey::Email, "A@Example.COM"),
        normalize(LimitKey::Email, "a@example.com")
    );
    let token = "a".repeat(43);
    assert_eq!(
        normalize(LimitKey::Token, &format!(" {token} ")),
        normalize(LimitKey::Token, &token)
    );
    assert_eq!(
        normalize(LimitKey::Token, "short"),
        normalize(LimitKey::Token, "other-malformed")
    );
}
