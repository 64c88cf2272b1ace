//! Enterprise SSO settings over HTTP (issue 18, parts 1 and 2): domains verified through a real
//! DNS server on loopback (dnsmasq), connections whose client secret is sealed at rest and never
//! returned, and an `idp.config_change` receipt for every change, in the same transaction.

use std::time::Duration;

use defendable_api::error::{ErrorCode, Problem};
use defendable_identity::view::{InvitePage, MeView, SessionView};
use defendable_ledger::view::ReceiptPage;
use defendable_sso::view::{ConnectionList, ConnectionView, DomainList, DomainView, SsoStarted};
use defendable_testkit::dns::DnsServer;
use defendable_testkit::free_port;
use defendable_testkit::oidc::OidcProvider;
use serde_json::{json, Value};

use crate::helpers::{config, eventually, read_as, TestApp};

/// A server whose DNS_RESOLVER is `port` on loopback (no server there until a test starts one).
async fn app_with_dns(port: u16) -> TestApp {
    TestApp::spawn_with(config(&[("DNS_RESOLVER", &format!("127.0.0.1:{port}"))])).await
}

#[actix_web::test]
async fn a_verified_domain_whose_record_stays_missing_is_unverified_after_three_days_owners_warned_first(
) {
    let port = free_port();
    let app = app_with_dns(port).await;
    let (token, slug, org) = app.sign_in_to_org("owner@keep.test").await;
    let path = format!("/orgs/{slug}/domains");
    let claim: DomainView = app
        .expect_as(
            201,
            "POST",
            &path,
            Some(&token),
            Some(json!({"domain": "keep.test"})),
        )
        .await;
    let challenge = claim.txt_value;
    let record = [("_defendable-challenge.keep.test", challenge.as_str())];
    let published = DnsServer::start(port, &record);
    app.expect(
        200,
        "POST",
        &format!("{path}/keep.test/verify"),
        Some(&token),
        None,
    )
    .await;

    // The rounds the server would run a day apart, driven here with a clock of their own
    // (starting a day ahead, so the server's own first round never makes one not due).
    let mailer = defendable_api::mail::Mailer::from_config(&config(&[(
        "DATA_DIR",
        app.data.path().to_str().expect("utf8"),
    )]))
    .expect("mailer");
    // Three name servers: the one serving the record, one answering "no such name" for it, and
    // an address where nothing answers. Each is started once (no port is given back and taken
    // again while the test runs).
    let empty = DnsServer::start(free_port(), &[]);
    let resolver = |port: u16| {
        defendable_sso::dns::TxtResolver::parse(&format!("127.0.0.1:{port}")).expect("dns")
    };
    let (present, missing, silent) = (
        resolver(published.port),
        resolver(empty.port),
        resolver(free_port()),
    );
    let rechecker = |dns| defendable_api::recheck::Rechecker {
        pool: &app.db.pool,
        dns,
        mailer: &mailer,
        api_base: app.base.clone(),
    };
    let day = time::Duration::days(1);
    let t0 = time::OffsetDateTime::now_utc() + day;
    let client = app.db.pool.get().await.expect("client");
    let state = || async {
        let r = client
            .query_one(
                "SELECT verified_at IS NOT NULL, misses, warned_at IS NOT NULL FROM org_domains WHERE domain = 'keep.test'",
                &[],
            )
            .await
            .expect("domain");
        (r.get::<_, bool>(0), r.get::<_, i32>(1), r.get::<_, bool>(2))
    };
    let warnings = || {
        std::fs::read_dir(app.data.path().join("outbox"))
            .map(|d| {
                d.filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
                    .filter(|m| {
                        m.contains("verification record is missing")
                            && m.contains("owner@keep.test")
                    })
                    .count()
            })
            .unwrap_or(0)
    };

    // Published: nothing changes; a second round the same day finds nothing due.
    assert_eq!(rechecker(&present).round(t0).await.expect("round"), 1);
    assert_eq!(rechecker(&present).round(t0).await.expect("round"), 0);
    assert_eq!(state().await, (true, 0, false));

    // Gone (the name server answers: no such name): the first miss warns the owners, by audit
    // event and mail, and the domain stays verified.
    rechecker(&missing).round(t0 + day).await.expect("round");
    assert_eq!(state().await, (true, 1, true));
    assert_eq!(warnings(), 1);
    // No answer at all (nothing listens): counts for nothing.
    rechecker(&silent).round(t0 + day * 2).await.expect("round");
    assert_eq!(state().await, (true, 1, true));
    // Published again: the misses are forgotten.
    rechecker(&present)
        .round(t0 + day * 3)
        .await
        .expect("round");
    assert_eq!(state().await, (true, 0, false));

    // Missing on four consecutive daily answers: warned on the first, still verified while the
    // misses span less than three days, unverified on the day they span three.
    for (n, verified) in [(4, true), (5, true), (6, true), (7, false)] {
        rechecker(&missing)
            .round(t0 + day * n)
            .await
            .expect("round");
        assert_eq!(state().await.0, verified, "day {n}");
    }
    assert_eq!(warnings(), 2, "one warning per spell of misses");
    let changes = app.receipts_of(&token, &slug, "idp.config_change").await;
    let last = changes.last().expect("receipt");
    assert_eq!(
        (
            last["change"].as_str(),
            last["by"].as_str(),
            last["domain"].as_str()
        ),
        (Some("domain.unverify"), Some("system"), Some("keep.test"))
    );
    let events: i64 = client
        .query_one(
            "SELECT count(*) FROM audit_events WHERE action IN ('sso.domain.recheck_warning', 'sso.domain.unverify') AND org_id = $1",
            &[&uuid::Uuid::parse_str(&org).expect("org")],
        )
        .await
        .expect("events")
        .get(0);
    assert_eq!(events, 3);
    let listed: DomainList = app.expect_as(200, "GET", &path, Some(&token), None).await;
    assert!(!listed.items[0].verified, "{listed:?}");
    assert!(app.verify(&token, &slug).await.valid);
}

/// The organization's `idp.config_change` receipts' public parts, oldest first.
#[actix_web::test]
async fn a_domain_is_verified_by_its_txt_record_and_only_one_organization_holds_it() {
    let port = free_port();
    let app = app_with_dns(port).await;
    let (token, slug, _) = app.sign_in_to_org("owner@acme.test").await;
    let path = format!("/orgs/{slug}/domains");

    let claim: DomainView = app
        .expect_as(
            201,
            "POST",
            &path,
            Some(&token),
            Some(json!({"domain": "Acme.TEST."})),
        )
        .await;
    assert_eq!(claim.domain, "acme.test");
    assert!(!claim.verified);
    assert_eq!(claim.txt_name, "_defendable-challenge.acme.test");
    let challenge = claim.txt_value;
    assert!(challenge.starts_with("defendable-domain-verification="));
    let (s, again) = app
        .problem(
            "POST",
            &path,
            Some(&token),
            Some(json!({"domain": "acme.test"})),
        )
        .await;
    assert_eq!((s, again.code), (409, ErrorCode::DomainExists));
    for bad in ["localhost", "not a domain", "10.0.0.1"] {
        let (s, body) = app
            .problem("POST", &path, Some(&token), Some(json!({"domain": bad})))
            .await;
        assert_eq!((s, body.code), (422, ErrorCode::InvalidInput), "{bad}");
    }

    // A record that is not the challenge: refused, saying what was seen.
    let verify = format!("{path}/acme.test/verify");
    {
        let _dns = DnsServer::start(
            port,
            &[("_defendable-challenge.acme.test", "something-else")],
        );
        let (s, body) = app.problem("POST", &verify, Some(&token), None).await;
        assert_eq!(
            (s, body.code),
            (422, ErrorCode::DomainNotVerified),
            "{body:?}"
        );
        let detail = body.detail.unwrap_or_default();
        assert!(detail.contains("1 TXT record(s)"), "{detail}");
    }
    {
        let _dns = DnsServer::start(port, &[]);
        let (s, body) = app.problem("POST", &verify, Some(&token), None).await;
        assert_eq!(s, 422, "{body:?}");
        let detail = body.detail.unwrap_or_default();
        assert!(detail.contains("no TXT record"), "{detail}");
    }
    let _dns = DnsServer::start(
        port,
        &[
            ("_defendable-challenge.acme.test", "unrelated=1"),
            ("_defendable-challenge.acme.test", &challenge),
        ],
    );
    let verified: DomainView = app
        .expect_as(200, "POST", &verify, Some(&token), None)
        .await;
    assert!(verified.verified);
    assert!(verified.verified_at.is_some());
    app.expect(200, "POST", &verify, Some(&token), None).await;

    // Another organization may not claim or verify what acme verified.
    let (other, other_slug, _) = app.sign_in_to_org("owner@rival.test").await;
    let (s, body) = app
        .problem(
            "POST",
            &format!("/orgs/{other_slug}/domains"),
            Some(&other),
            Some(json!({"domain": "acme.test"})),
        )
        .await;
    assert_eq!((s, body.code), (409, ErrorCode::DomainTaken));

    let list: DomainList = app.expect_as(200, "GET", &path, Some(&token), None).await;
    assert_eq!(list.items.len(), 1);

    let receipts = app.receipts_of(&token, &slug, "idp.config_change").await;
    let changes: Vec<&str> = receipts
        .iter()
        .map(|r| r["change"].as_str().expect("change"))
        .collect();
    assert_eq!(
        changes,
        ["domain.add", "domain.verify"],
        "failed attempts record nothing"
    );
    assert_eq!(receipts[1]["domain"], "acme.test");
    assert_eq!(receipts[1]["by"], "owner");

    app.expect(
        204,
        "DELETE",
        &format!("{path}/acme.test"),
        Some(&token),
        None,
    )
    .await;
    app.expect(
        404,
        "DELETE",
        &format!("{path}/acme.test"),
        Some(&token),
        None,
    )
    .await;
    // Released: the rival may claim it now.
    app.expect(
        201,
        "POST",
        &format!("/orgs/{other_slug}/domains"),
        Some(&other),
        Some(json!({"domain": "acme.test"})),
    )
    .await;
    assert!(app.verify(&token, &slug).await.valid);
}

#[actix_web::test]
async fn a_connection_keeps_its_secret_sealed_and_every_change_is_a_receipt() {
    let app = TestApp::spawn().await;
    let (token, slug, _) = app.sign_in_to_org("owner@corp.test").await;
    let path = format!("/orgs/{slug}/sso/connections");
    let secret = "client-secret-Qw8Er5Ty2Ui9Op6As3Df";
    let created = app
        .expect(
            201,
            "POST",
            &path,
            Some(&token),
            Some(json!({
                "provider": "okta",
                "issuer": "https://corp.okta.test/oauth2/default",
                "client_id": "0oa1corp",
                "client_secret": secret,
                "domains": ["corp.test", "Corp.TEST"],
                "group_roles": {"defendable-admins": "owner", "engineering": "member"},
            })),
        )
        .await;
    // The raw body never carries the secret (a typed read would drop what it does not know).
    assert!(!created.to_string().contains(secret));
    let view: ConnectionView = read_as(&created);
    assert_eq!(view.domains, ["corp.test"]);
    assert!(view.client_secret_set);
    assert!(!view.enforced);
    assert_eq!(view.default_role, None);
    let id = view.id.to_string();
    let one = app
        .expect(200, "GET", &format!("{path}/{id}"), Some(&token), None)
        .await;
    assert_eq!(one, created);
    let list: ConnectionList = app.expect_as(200, "GET", &path, Some(&token), None).await;
    assert_eq!(list.items.len(), 1);
    assert_eq!(serde_json::to_value(&list.items[0]).expect("json"), created);

    // At rest: sealed bytes, not the secret.
    let client = app.db.pool.get().await.expect("client");
    let row = client
        .query_one(
            "SELECT client_secret, secret_key_id FROM sso_connections",
            &[],
        )
        .await
        .expect("row");
    let sealed: Vec<u8> = row.get(0);
    assert!(!sealed.windows(secret.len()).any(|w| w == secret.as_bytes()));
    assert_eq!(
        sealed.len(),
        12 + secret.len() + 16,
        "nonce, ciphertext, tag"
    );

    // A patch that changes nothing records nothing; one that does names exactly what changed.
    let patch = |body: Value| {
        let app = &app;
        let path = format!("{path}/{id}");
        let token = token.clone();
        async move { app.call("PATCH", &path, Some(&token), Some(body)).await }
    };
    let (s, same) = patch(json!({"client_id": "0oa1corp", "enforced": false})).await;
    assert_eq!(s.as_u16(), 200);
    assert_eq!(read_as::<ConnectionView>(&same).updated_at, view.updated_at);
    // Enforcing needs a break-glass owner first.
    let (s, refused) = patch(json!({"enforced": true})).await;
    assert_eq!(
        (s.as_u16(), read_as::<Problem>(&refused).code),
        (409, ErrorCode::BreakGlassRequired)
    );
    let me: MeView = app.expect_as(200, "GET", "/me", Some(&token), None).await;
    let owner_id = me.user.id.to_string();
    app.expect(
        204,
        "PUT",
        &format!("/orgs/{slug}/sso/break-glass/{owner_id}"),
        Some(&token),
        None,
    )
    .await;
    let (s, changed) = patch(json!({"client_secret": "rotated-secret-Zx7Cv4Bn1Mq8", "enforced": true, "default_role": "member"})).await;
    assert_eq!(s.as_u16(), 200, "{changed}");
    let changed: ConnectionView = read_as(&changed);
    assert_eq!(
        (changed.enforced, changed.default_role.as_deref()),
        (true, Some("member"))
    );
    let (s, cleared) = patch(json!({"default_role": null})).await;
    assert_eq!(
        (s.as_u16(), read_as::<ConnectionView>(&cleared).default_role),
        (200, None)
    );
    // The stored secret never follows a new issuer or client id: each needs its secret.
    for body in [
        json!({"issuer": "https://attacker.okta.test/oauth2/default"}),
        json!({"client_id": "0oa1other", "default_role": "owner"}),
    ] {
        let (s, refused) = patch(body.clone()).await;
        assert_eq!(
            (s.as_u16(), read_as::<Problem>(&refused).code),
            (422, ErrorCode::ClientSecretRequired),
            "{body}: {refused}"
        );
    }
    let (s, moved) =
        patch(json!({"client_id": "0oa1other", "client_secret": "third-secret-Hj5Kl2Pq9Ws3"}))
            .await;
    assert_eq!(s.as_u16(), 200, "{moved}");
    assert_eq!(read_as::<ConnectionView>(&moved).client_id, "0oa1other");
    let (s, bad) = patch(json!({"issuer": "http://corp.okta.test", "unknown": 1})).await;
    assert_eq!(s.as_u16(), 422, "{bad}");

    // Invalid settings are refused before anything is written.
    for (body, code) in [
        (
            json!({"provider": "google", "issuer": "https://accounts.google.com.evil", "client_id": "x", "client_secret": "y", "domains": ["g.test"]}),
            "invalid_input",
        ),
        (
            json!({"provider": "generic", "issuer": "https://idp.test", "client_id": "x", "client_secret": "y", "domains": []}),
            "invalid_input",
        ),
        (
            json!({"provider": "generic", "issuer": "https://idp.test", "client_id": "x", "client_secret": "y", "domains": ["g.test"], "group_roles": {"a": "admin"}}),
            "invalid_input",
        ),
        (
            json!({"provider": "saml", "issuer": "https://idp.test", "client_id": "x", "client_secret": "y", "domains": ["g.test"]}),
            "invalid_body",
        ),
        (
            json!({"provider": "generic", "issuer": "https://idp.test", "client_id": "x", "client_secret": "y", "domains": ["corp.test"]}),
            "domain_routed",
        ),
    ] {
        let (s, problem) = app
            .problem("POST", &path, Some(&token), Some(body.clone()))
            .await;
        assert_eq!(problem.code.as_str(), code, "{body}: {s} {problem:?}");
    }

    app.expect(204, "DELETE", &format!("{path}/{id}"), Some(&token), None)
        .await;
    app.expect(404, "GET", &format!("{path}/{id}"), Some(&token), None)
        .await;

    // Receipts are read by every member and API key, settings by owners on their own routes:
    // the private part of idp.config_change (issuer, client id, domains, a secret's
    // fingerprint) is in no receipt view, though its digest still commits to it.
    let (_, list) = app
        .call(
            "GET",
            &format!("/orgs/{slug}/receipts?kind=idp.config_change&limit=100"),
            Some(&token),
            None,
        )
        .await;
    // The raw body, so that no field anywhere carries the client id.
    assert!(!list.to_string().contains("0oa1corp"), "{list}");
    let list: ReceiptPage = read_as(&list);
    assert_eq!(list.items.len(), 6, "{list:?}");
    for item in &list.items {
        assert!(item.body["private_digest"].is_string(), "{item:?}");
        assert!(item.private.is_null() && item.salt.is_none(), "{item:?}");
    }

    let receipts = app.receipts_of(&token, &slug, "idp.config_change").await;
    let summary: Vec<(String, Value)> = receipts
        .iter()
        .map(|r| {
            (
                r["change"].as_str().expect("change").to_owned(),
                r["fields"].clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                "connection.create".to_owned(),
                json!([
                    "issuer",
                    "client_id",
                    "client_secret",
                    "domains",
                    "group_roles",
                    "default_role",
                    "enforced"
                ])
            ),
            ("break_glass.grant".to_owned(), json!(["break_glass"])),
            (
                "connection.update".to_owned(),
                json!(["default_role", "enforced", "client_secret"])
            ),
            ("connection.update".to_owned(), json!(["default_role"])),
            (
                "connection.update".to_owned(),
                json!(["client_id", "client_secret"])
            ),
            ("connection.delete".to_owned(), json!([])),
        ]
    );
    assert_eq!(receipts[2]["enforced"], true);
    assert_eq!(receipts[5]["was_enforced"], true);
    let everything = serde_json::to_string(&receipts).expect("json");
    assert!(!everything.contains("rotated-secret") && !everything.contains(secret));
    assert!(!everything.contains("third-secret"));
    // Each change's audit event sits beside its receipt.
    let events: i64 = client
        .query_one(
            "SELECT count(*) FROM audit_events WHERE action LIKE 'sso.connection.%'",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(events, 5);
    assert!(app.verify(&token, &slug).await.valid);
}

#[actix_web::test]
async fn members_and_api_keys_cannot_change_sso_settings() {
    let app = TestApp::spawn().await;
    let (owner, slug, _) = app.sign_in_to_org("owner@team.test").await;
    let key = app.api_key(&owner, &slug).await;
    let body = json!({"provider": "generic", "issuer": "https://idp.team.test", "client_id": "c", "client_secret": "s", "domains": ["team.test"]});
    let path = format!("/orgs/{slug}/sso/connections");
    let (s, problem) = app.problem("POST", &path, Some(&key), Some(body)).await;
    assert_eq!((s, problem.code), (403, ErrorCode::SessionRequired));
    let (s, _) = app
        .call("GET", &format!("/orgs/{slug}/domains"), Some(&key), None)
        .await;
    assert_eq!(s.as_u16(), 403);
}

/// What the browser sees at the end of a single sign-on: the callback's status, its `Location`
/// and its body.
struct Outcome {
    status: u16,
    location: Option<String>,
    body: Value,
    callback: String,
}

/// Starts a single sign-on for `email`, signs in at the provider as `account`, and returns to
/// the callback with the browser cookie (`cookie: false` plays another browser).
async fn sso(
    app: &TestApp,
    provider: &OidcProvider,
    email: &str,
    account: &str,
    cookie: bool,
) -> Outcome {
    sso_with(app, provider, json!({"email": email}), account, cookie).await
}

/// [`sso`] from any `POST /auth/sso/start` body.
async fn sso_with(
    app: &TestApp,
    provider: &OidcProvider,
    body: Value,
    account: &str,
    cookie: bool,
) -> Outcome {
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let start = no_redirects
        .post(app.url("/auth/sso/start"))
        .json(&body)
        .send()
        .await
        .expect("start");
    assert_eq!(start.status(), 200);
    let set_cookie = start
        .headers()
        .get("set-cookie")
        .expect("the start sets its cookie")
        .to_str()
        .expect("cookie")
        .to_owned();
    assert!(
        set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Lax"),
        "{set_cookie}"
    );
    let pair = set_cookie.split(';').next().expect("pair").to_owned();
    let started: SsoStarted = start.json().await.expect("json");
    let callback = provider.sign_in(&started.authorization_url, account).await;
    finish(&callback, cookie.then_some(pair.as_str())).await
}

async fn finish(callback: &str, cookie: Option<&str>) -> Outcome {
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let mut request = no_redirects.get(callback);
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    let res = request.send().await.expect("callback");
    let status = res.status().as_u16();
    let location = res
        .headers()
        .get("location")
        .map(|l| l.to_str().expect("location").to_owned());
    let body = res.json().await.unwrap_or(Value::Null);
    Outcome {
        status,
        location,
        body,
        callback: callback.to_owned(),
    }
}

/// Follows a successful sign-on's redirect as the sign-in page would: the one-time token to a
/// session. Returns the session's access token.
async fn session_from(app: &TestApp, outcome: &Outcome) -> String {
    assert_eq!(outcome.status, 303, "{}", outcome.body);
    let location =
        defendable_config::Url::parse(outcome.location.as_deref().expect("location")).expect("url");
    assert_eq!(location.path(), "/auth/callback");
    let token = location
        .query_pairs()
        .find(|(k, _)| k == "token")
        .expect("token")
        .1
        .into_owned();
    let signed_in: SessionView = app
        .expect_as(
            200,
            "POST",
            "/auth/verify",
            None,
            Some(json!({"token": token})),
        )
        .await;
    signed_in.access_token
}

fn refusal(outcome: &Outcome) -> String {
    assert_eq!(outcome.status, 401, "{}", outcome.body);
    let problem: Problem = read_as(&outcome.body);
    assert_eq!(problem.code, ErrorCode::SsoRefused, "{problem:?}");
    problem.detail.expect("detail")
}

/// A single sign-on scene: a server on a known port, a real provider with `accounts` whose one
/// client redirects to it, and an organization (its owner's session and slug) that verified
/// corp.test and has a connection to the provider for `domains` with `group_roles`.
struct Scene {
    app: TestApp,
    provider: OidcProvider,
    owner: String,
    slug: String,
}

async fn scene(accounts: &Value, domains: &[&str], group_roles: Value) -> Scene {
    let (socket, port) = defendable_testkit::listener();
    let provider = OidcProvider::start(
        accounts,
        &json!([{
            "client_id": "defendable",
            "client_secret": "provider-secret-Hj4Kl7Zx1Cv9",
            "redirect_uris": [format!("http://127.0.0.1:{port}/auth/sso/callback")],
        }]),
    );
    let app = TestApp::spawn_listening(config(&[]), socket).await;
    let (owner, slug, _) = app.sign_in_to_org("admin@corp.test").await;
    app.db
        .pool
        .get()
        .await
        .expect("client")
        .execute(
            "INSERT INTO org_domains (org_id, domain, challenge, verified_at)
             SELECT id, 'corp.test', 'c', now() FROM orgs WHERE slug = $1",
            &[&slug],
        )
        .await
        .expect("verified domain");
    app.expect(
        201,
        "POST",
        &format!("/orgs/{slug}/sso/connections"),
        Some(&owner),
        Some(json!({
            "provider": "generic",
            "issuer": provider.issuer,
            "client_id": "defendable",
            "client_secret": "provider-secret-Hj4Kl7Zx1Cv9",
            "domains": domains,
            "group_roles": group_roles,
        })),
    )
    .await;
    Scene {
        app,
        provider,
        owner,
        slug,
    }
}

#[actix_web::test]
async fn oidc_sign_in_provisions_users_with_mapped_roles_and_refuses_every_bad_callback() {
    let mut accounts = json!({
        "ann": {"email": "ann@corp.test", "email_verified": true, "groups": ["defendable-admins"]},
        "bob": {"email": "bob@corp.test", "email_verified": true, "groups": ["engineering", "sales"]},
        "eve": {"email": "eve@corp.test", "email_verified": false, "groups": ["engineering"]},
        "out": {"email": "out@elsewhere.test", "email_verified": true, "groups": ["engineering"]},
        "nog": {"email": "nog@corp.test", "email_verified": true, "groups": ["sales"]},
        // A provider that mixes up its clients, one whose clock is slow, and one that names
        // another issuer in its tokens: each token is signed with its published key.
        "mal": {"email": "mal@corp.test", "email_verified": true, "groups": ["engineering"],
                "_id_token": {"claims": {"aud": "another-client"}}},
        "old": {"email": "old@corp.test", "email_verified": true, "groups": ["engineering"],
                "_id_token": {"expired_secs_ago": 600}},
        "iss": {"email": "iss@corp.test", "email_verified": true, "groups": ["engineering"],
                "_id_token": {"claims": {"iss": "https://idp.elsewhere.test"}}},
    });
    let Scene {
        app,
        provider,
        owner,
        slug,
    } = scene(
        &accounts,
        &["corp.test", "elsewhere.test"],
        json!({"defendable-admins": "owner", "engineering": "member"}),
    )
    .await;
    let client = app.db.pool.get().await.expect("client");

    // Just-in-time users, their roles from their groups.
    let ann = sso(&app, &provider, "ann@corp.test", "ann", true).await;
    let ann_token = session_from(&app, &ann).await;
    assert_eq!(
        app.role_in(&ann_token, &slug).await.as_deref(),
        Some("owner")
    );
    let bob = session_from(
        &app,
        &sso(&app, &provider, "bob@corp.test", "bob", true).await,
    )
    .await;
    assert_eq!(app.role_in(&bob, &slug).await.as_deref(), Some("member"));

    // Each refusal names its check.
    let replay = finish(&ann.callback, None).await;
    assert!(refusal(&replay).contains("unknown, used or expired state"));
    let other_browser = sso(&app, &provider, "bob@corp.test", "bob", false).await;
    assert!(refusal(&other_browser).contains("another browser"));
    assert!(
        refusal(&sso(&app, &provider, "eve@corp.test", "eve", true).await)
            .contains("did not verify")
    );
    assert!(
        refusal(&sso(&app, &provider, "ann@corp.test", "out", true).await)
            .contains("elsewhere.test is not a verified domain")
    );
    assert!(
        refusal(&sso(&app, &provider, "nog@corp.test", "nog", true).await).contains("no group")
    );
    for (account, check) in [
        ("mal", "ID token: wrong audience"),
        ("old", "ID token: expired"),
        ("iss", "ID token: wrong issuer"),
    ] {
        let outcome = sso(
            &app,
            &provider,
            &format!("{account}@corp.test"),
            account,
            true,
        )
        .await;
        assert!(
            refusal(&outcome).contains(check),
            "{account}: {}",
            outcome.body
        );
    }
    let (s, body) = app
        .problem(
            "POST",
            "/auth/sso/start",
            None,
            Some(json!({"email": "x@elsewhere.test"})),
        )
        .await;
    assert_eq!(
        (s, body.code),
        (401, ErrorCode::SsoRefused),
        "an unverified domain routes nowhere"
    );

    // A forged state, and a nonce that is not the one the sign-in started with.
    let mut forged = defendable_config::Url::parse(&ann.callback).expect("url");
    let pairs: Vec<(String, String)> = forged
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "state" {
                "forged".to_owned()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    forged.query_pairs_mut().clear().extend_pairs(pairs);
    assert!(refusal(&finish(forged.as_str(), None).await).contains("state"));
    let tampered = {
        let no_redirects = reqwest::Client::new();
        let start = no_redirects
            .post(app.url("/auth/sso/start"))
            .json(&json!({"email": "bob@corp.test"}))
            .send()
            .await
            .expect("start");
        let pair = start.headers()["set-cookie"]
            .to_str()
            .expect("cookie")
            .split(';')
            .next()
            .expect("pair")
            .to_owned();
        let started: SsoStarted = start.json().await.expect("json");
        client
            .execute(
                "UPDATE sso_logins SET nonce = 'not-the-nonce' WHERE consumed_at IS NULL",
                &[],
            )
            .await
            .expect("tamper");
        let back = provider.sign_in(&started.authorization_url, "bob").await;
        finish(&back, Some(&pair)).await
    };
    assert!(refusal(&tampered).contains("wrong nonce"));

    // Sessions remember their connection; an SSO session lives at most SSO_SESSION_TTL (8 h),
    // a magic-link one JWT_TTL (12 h).
    let lifetimes: Vec<(bool, f64)> = client
        .query(
            "SELECT sso_connection_id IS NOT NULL, extract(epoch FROM expires_at - created_at)::float8 FROM sessions",
            &[],
        )
        .await
        .expect("sessions")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(
        lifetimes.iter().filter(|(sso, _)| *sso).count() >= 2,
        "{lifetimes:?}"
    );
    for (sso, secs) in &lifetimes {
        let bound = if *sso { 8.0 * 3600.0 } else { 12.0 * 3600.0 };
        assert!(
            (bound - 60.0..=bound + 60.0).contains(secs),
            "{lifetimes:?}"
        );
    }

    // Enforcement: only sessions from the connection, break-glass owners and API keys get in.
    let conn_list: ConnectionList = app
        .expect_as(
            200,
            "GET",
            &format!("/orgs/{slug}/sso/connections"),
            Some(&owner),
            None,
        )
        .await;
    let conn_id = conn_list.items[0].id;
    let connection = format!("/orgs/{slug}/sso/connections/{conn_id}");
    let key = app.api_key(&owner, &slug).await;
    let (s, body) = app
        .problem(
            "PATCH",
            &connection,
            Some(&owner),
            Some(json!({"enforced": true})),
        )
        .await;
    assert_eq!(
        (s, body.code),
        (409, ErrorCode::BreakGlassRequired),
        "{body:?}"
    );
    let me: MeView = app.expect_as(200, "GET", "/me", Some(&owner), None).await;
    let admin_id = me.user.id.to_string();
    let break_glass = |user: &str| format!("/orgs/{slug}/sso/break-glass/{user}");
    app.expect(204, "PUT", &break_glass(&admin_id), Some(&owner), None)
        .await;
    app.expect(
        200,
        "PATCH",
        &connection,
        Some(&owner),
        Some(json!({"enforced": true})),
    )
    .await;
    let (carl, _) = app.sign_in("carl@corp.test").await;
    let carl_me: MeView = app.expect_as(200, "GET", "/me", Some(&carl), None).await;
    let carl_id = carl_me.user.id.to_string();
    client
        .execute(
            "INSERT INTO memberships (org_id, user_id, role) SELECT id, $2, 'member' FROM orgs WHERE slug = $1",
            &[&slug, &uuid::Uuid::parse_str(&carl_id).expect("uuid")],
        )
        .await
        .expect("membership");
    let receipts = format!("/orgs/{slug}/receipts");
    let (s, body) = app.problem("GET", &receipts, Some(&carl), None).await;
    assert_eq!(
        (s, body.code),
        (403, ErrorCode::SsoRequired),
        "a magic-link member: {body:?}"
    );
    app.expect(200, "GET", &receipts, Some(&bob), None).await;
    app.expect(200, "GET", &receipts, Some(&key), None).await;
    app.expect(200, "GET", &receipts, Some(&owner), None).await;
    app.expect(200, "GET", &format!("/orgs/{slug}"), Some(&owner), None)
        .await;
    let uses: ReceiptPage = app
        .expect_as(
            200,
            "GET",
            &format!("{receipts}?kind=sso.break_glass"),
            Some(&owner),
            None,
        )
        .await;
    assert_eq!(uses.items.len(), 1, "one receipt per session: {uses:?}");
    assert!(app
        .metrics()
        .await
        .contains("defendable_sso_break_glass_uses_total 1"));
    let (s, body) = app
        .problem("DELETE", &break_glass(&admin_id), Some(&owner), None)
        .await;
    assert_eq!(
        (s, body.code),
        (409, ErrorCode::BreakGlassRequired),
        "{body:?}"
    );
    let (s, body) = app
        .problem("PUT", &break_glass(&carl_id), Some(&owner), None)
        .await;
    assert_eq!(
        (s, body.code),
        (422, ErrorCode::InvalidInput),
        "a member: {body:?}"
    );
    app.expect(
        200,
        "PATCH",
        &connection,
        Some(&owner),
        Some(json!({"enforced": false})),
    )
    .await;
    app.expect(200, "GET", &receipts, Some(&carl), None).await;

    // The provider is the authority on roles it gave: a group removed there demotes or removes
    // the member at their next sign-in, each a receipt; the removal stands though the sign-in
    // is refused, and takes the API keys the member created with it.
    let ann_key = app.api_key(&ann_token, &slug).await;
    app.expect(200, "GET", &receipts, Some(&ann_key), None)
        .await;
    let sign_in_as = |who: &'static str| {
        let (app, provider) = (&app, &provider);
        async move { sso(app, provider, &format!("{who}@corp.test"), who, true).await }
    };
    accounts["bob"]["groups"] = json!(["defendable-admins"]);
    accounts["ann"]["groups"] = json!([]);
    provider.set_accounts(&accounts);
    let bob_owner = session_from(&app, &sign_in_as("bob").await).await;
    assert_eq!(
        app.role_in(&bob_owner, &slug).await.as_deref(),
        Some("owner")
    );
    let removed = refusal(&sign_in_as("ann").await);
    assert!(removed.contains("your membership was removed"), "{removed}");
    let gone = eventually(Duration::from_secs(5), || {
        let (app, ann_token, ann_key, receipts) = (&app, &ann_token, &ann_key, &receipts);
        async move {
            let (s1, _) = app.call("GET", "/me", Some(ann_token), None).await;
            let (s2, _) = app.call("GET", receipts, Some(ann_key), None).await;
            s1 == 401 && s2 == 401
        }
    })
    .await;
    assert!(
        gone,
        "the removed member's SSO session and API key were not refused within 5 s"
    );
    accounts["bob"]["groups"] = json!(["engineering"]);
    provider.set_accounts(&accounts);
    let bob_member = session_from(&app, &sign_in_as("bob").await).await;
    assert_eq!(
        app.role_in(&bob_member, &slug).await.as_deref(),
        Some("member")
    );
    // A role an owner sets by hand is the owner's: Bob's groups no longer mapping leaves it.
    let bob_me: MeView = app
        .expect_as(200, "GET", "/me", Some(&bob_member), None)
        .await;
    let bob_id = bob_me.user.id.to_string();
    app.expect(
        200,
        "PATCH",
        &format!("/orgs/{slug}/members/{bob_id}"),
        Some(&owner),
        Some(json!({"role": "owner"})),
    )
    .await;
    accounts["bob"]["groups"] = json!([]);
    provider.set_accounts(&accounts);
    let bob_kept = session_from(&app, &sign_in_as("bob").await).await;
    assert_eq!(
        app.role_in(&bob_kept, &slug).await.as_deref(),
        Some("owner")
    );
    // Carl's membership came from an owner, not the provider: his unmapped groups keep it.
    // (He is in no group the mapping names, and no default role is set.)
    accounts["carl"] =
        json!({"email": "carl@corp.test", "email_verified": true, "groups": ["sales"]});
    provider.set_accounts(&accounts);
    let carl_sso = session_from(&app, &sign_in_as("carl").await).await;
    assert_eq!(
        app.role_in(&carl_sso, &slug).await.as_deref(),
        Some("member")
    );

    // An issuer that is not the provider's exactly is refused before the browser leaves.
    app.expect(
        200,
        "PATCH",
        &connection,
        Some(&owner),
        Some(json!({"issuer": format!("{}/", provider.issuer), "client_secret": "another-secret-Rt5Yu8Io1Pa4"})),
    )
    .await;
    let (s, body) = app
        .problem(
            "POST",
            "/auth/sso/start",
            None,
            Some(json!({"email": "ann@corp.test"})),
        )
        .await;
    assert_eq!(s, 401, "{body:?}");
    assert!(
        body.detail
            .as_deref()
            .unwrap_or_default()
            .contains("discovery document names another issuer"),
        "{body:?}"
    );

    // Every role the provider set is a member.role_change receipt; the chain verifies.
    let changes: ReceiptPage = app
        .expect_as(
            200,
            "GET",
            &format!("/orgs/{slug}/receipts?kind=member.role_change"),
            Some(&owner),
            None,
        )
        .await;
    // A receipt's public body is whatever its kind records: it stays JSON.
    let roles: Vec<(Value, Value)> = changes
        .items
        .iter()
        .map(|r| {
            let public = &r.body["public"];
            (public["from"].clone(), public["to"].clone())
        })
        .collect();
    assert_eq!(
        roles,
        [
            (Value::Null, json!("owner")),
            (Value::Null, json!("member")),
            (json!("member"), json!("owner")),
            (json!("owner"), Value::Null),
            (json!("owner"), json!("member")),
        ]
    );
    let deprovisions: i64 = client
        .query_one(
            "SELECT count(*) FROM audit_events WHERE action = 'sso.deprovision'",
            &[],
        )
        .await
        .expect("events")
        .get(0);
    assert_eq!(deprovisions, 1);
    assert!(app.verify(&owner, &slug).await.valid);
}

#[actix_web::test]
async fn invites_to_an_enforced_domain_are_accepted_through_sso_and_cli_links_need_their_verifier()
{
    // Only admins are mapped, and there is no default role: contractors come in by invite.
    let Scene {
        app,
        provider,
        owner,
        slug,
    } = scene(
        &json!({
            "dan": {"email": "dan@corp.test", "email_verified": true, "groups": ["contractors"]},
            "fay": {"email": "fay@corp.test", "email_verified": true, "groups": []},
            "eve": {"email": "eve@corp.test", "email_verified": true, "groups": ["contractors"]},
            "ann": {"email": "ann@corp.test", "email_verified": true, "groups": ["defendable-admins"]},
        }),
        &["corp.test"],
        json!({"defendable-admins": "owner"}),
    )
    .await;
    let invite = |email: &'static str| {
        let (app, owner, slug) = (&app, &owner, &slug);
        async move {
            app.expect(
                201,
                "POST",
                &format!("/orgs/{slug}/invites"),
                Some(owner),
                Some(json!({"email": email, "role": "member"})),
            )
            .await;
            app.outbox_token(email)
        }
    };

    // Without enforcement an invite is accepted with its link, as always.
    let early = invite("early@corp.test").await;
    app.expect(
        200,
        "POST",
        "/auth/accept-invite",
        None,
        Some(json!({"token": early})),
    )
    .await;

    let me: MeView = app.expect_as(200, "GET", "/me", Some(&owner), None).await;
    let admin_id = me.user.id.to_string();
    app.expect(
        204,
        "PUT",
        &format!("/orgs/{slug}/sso/break-glass/{admin_id}"),
        Some(&owner),
        None,
    )
    .await;
    let list: ConnectionList = app
        .expect_as(
            200,
            "GET",
            &format!("/orgs/{slug}/sso/connections"),
            Some(&owner),
            None,
        )
        .await;
    let conn_id = list.items[0].id;
    app.expect(
        200,
        "PATCH",
        &format!("/orgs/{slug}/sso/connections/{conn_id}"),
        Some(&owner),
        Some(json!({"enforced": true})),
    )
    .await;

    // With enforcement the link alone is refused and the invite stays pending; an address
    // outside the connection's domains still accepts with its link.
    let dans = invite("dan@corp.test").await;
    let (s, body) = app
        .problem(
            "POST",
            "/auth/accept-invite",
            None,
            Some(json!({"token": dans})),
        )
        .await;
    assert_eq!((s, body.code), (403, ErrorCode::SsoRequired), "{body:?}");
    let pending: InvitePage = app
        .expect_as(
            200,
            "GET",
            &format!("/orgs/{slug}/invites"),
            Some(&owner),
            None,
        )
        .await;
    assert_eq!(pending.items.len(), 1, "{pending:?}");
    let outside = invite("pat@outside.test").await;
    app.expect(
        200,
        "POST",
        "/auth/accept-invite",
        None,
        Some(json!({"token": outside})),
    )
    .await;

    // Someone else cannot use Dan's invite through SSO, and an unmapped person without one
    // is refused; neither uses the invite.
    let stolen = sso_with(&app, &provider, json!({"invite": dans}), "eve", true).await;
    assert!(
        refusal(&stolen).contains("the invite is for another address"),
        "{}",
        stolen.body
    );
    assert!(
        refusal(&sso(&app, &provider, "eve@corp.test", "eve", true).await).contains("no group")
    );

    // Dan accepts by signing in: the invite's role, an SSO session the enforcing organization
    // admits, the invite used, a receipt.
    let dan = session_from(
        &app,
        &sso_with(&app, &provider, json!({"invite": dans}), "dan", true).await,
    )
    .await;
    assert_eq!(app.role_in(&dan, &slug).await.as_deref(), Some("member"));
    app.expect(
        200,
        "GET",
        &format!("/orgs/{slug}/receipts"),
        Some(&dan),
        None,
    )
    .await;
    let (s, _) = app
        .call(
            "POST",
            "/auth/accept-invite",
            None,
            Some(json!({"token": dans})),
        )
        .await;
    assert_eq!(s.as_u16(), 401, "the invite is used");
    let (s, body) = app
        .problem(
            "POST",
            "/auth/sso/start",
            None,
            Some(json!({"invite": dans})),
        )
        .await;
    assert_eq!((s, body.code), (401, ErrorCode::SsoRefused));
    // His groups still map nothing, but the membership came from the invite: it stays.
    let again = session_from(
        &app,
        &sso(&app, &provider, "dan@corp.test", "dan", true).await,
    )
    .await;
    assert_eq!(app.role_in(&again, &slug).await.as_deref(), Some("member"));
    let changes = app.receipts_of(&owner, &slug, "member.role_change").await;
    assert!(
        changes
            .iter()
            .any(|r| r["from"].is_null() && r["to"] == "member" && r["source"] == "sso"),
        "{changes:?}"
    );

    // The invite page's button leads to the identity provider (a link, which the pages'
    // `form-action 'self'` allows), with the cookie binding the sign-in to this browser.
    let fays = invite("fay@corp.test").await;
    let pressed = crate::helpers::press_link(&app, &fays, "invite", None).await;
    assert_eq!(pressed.status(), 200);
    let cookie = pressed.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .split(';')
        .next()
        .expect("pair")
        .to_owned();
    let page = pressed.text().await.expect("page");
    let to_provider = page
        .split("id=\"continue-sso\" href=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no link to the provider: {page}"))
        .replace("&#38;", "&")
        .replace("&amp;", "&");
    assert!(to_provider.starts_with(&provider.issuer), "{to_provider}");
    let back = provider.sign_in(&to_provider, "fay").await;
    let fay = session_from(&app, &finish(&back, Some(&cookie)).await).await;
    assert_eq!(app.role_in(&fay, &slug).await.as_deref(), Some("member"));

    // A CLI's sign-in: no cookie, the browser sent to its loopback port, the link redeemed only
    // with its verifier.
    let verifier = "cli-verifier-Qw3Er5Ty7Ui9Op1As3Df5Gh7Jk9Lz";
    let challenge = defendable_sso::oidc::pkce_challenge(verifier);
    let cli_state = "cli-state-Mn4Bv6Cx8Za1Sd3Fg5Hj7Kl";
    let (s, body) = app
        .problem(
            "POST",
            "/auth/sso/start",
            None,
            Some(
                json!({"email": "ann@corp.test", "cli": {"port": 0, "code_challenge": challenge, "state": cli_state}}),
            ),
        )
        .await;
    assert_eq!((s, body.code), (422, ErrorCode::InvalidInput), "{body:?}");
    let (s, body) = app
        .problem(
            "POST",
            "/auth/sso/start",
            None,
            Some(json!({"email": "ann@corp.test", "cli": {"port": 45678, "code_challenge": "short", "state": cli_state}})),
        )
        .await;
    assert_eq!((s, body.code), (422, ErrorCode::InvalidInput), "{body:?}");
    for (cli, code) in [
        (
            json!({"port": 45678, "code_challenge": challenge}),
            ErrorCode::InvalidBody,
        ),
        (
            json!({"port": 45678, "code_challenge": challenge, "state": "short"}),
            ErrorCode::InvalidInput,
        ),
        (
            json!({"port": 45678, "code_challenge": challenge, "state": format!("{cli_state}&x=1")}),
            ErrorCode::InvalidInput,
        ),
    ] {
        let (s, body) = app
            .problem(
                "POST",
                "/auth/sso/start",
                None,
                Some(json!({"email": "ann@corp.test", "cli": cli})),
            )
            .await;
        assert_eq!((s, body.code), (422, code), "{cli}: {body:?}");
    }
    let start = reqwest::Client::new()
        .post(app.url("/auth/sso/start"))
        .json(
            &json!({"email": "ann@corp.test", "cli": {"port": 45678, "code_challenge": challenge, "state": cli_state}}),
        )
        .send()
        .await
        .expect("start");
    assert_eq!(start.status(), 200);
    assert!(
        start.headers().get("set-cookie").is_none(),
        "no browser cookie for a CLI"
    );
    let started: SsoStarted = start.json().await.expect("json");
    let back = provider.sign_in(&started.authorization_url, "ann").await;
    let outcome = finish(&back, None).await;
    assert_eq!(outcome.status, 303, "{}", outcome.body);
    let location =
        defendable_config::Url::parse(outcome.location.as_deref().expect("location")).expect("url");
    assert_eq!(
        (location.host_str(), location.port()),
        (Some("127.0.0.1"), Some(45678))
    );
    let param = |name: &str| {
        location
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    let token = param("token").expect("token");
    assert_eq!(
        param("state").as_deref(),
        Some(cli_state),
        "the CLI's state goes back to it"
    );
    for wrong in [
        json!({"token": token}),
        json!({"token": token, "code_verifier": "not-it"}),
    ] {
        let (s, body) = app.problem("POST", "/auth/verify", None, Some(wrong)).await;
        assert_eq!((s, body.code), (401, ErrorCode::InvalidToken), "{body:?}");
    }
    let signed_in: SessionView = app
        .expect_as(
            200,
            "POST",
            "/auth/verify",
            None,
            Some(json!({"token": token, "code_verifier": verifier})),
        )
        .await;
    let ann = signed_in.access_token.as_str();
    assert_eq!(app.role_in(ann, &slug).await.as_deref(), Some("owner"));
    let (s, _) = app
        .call(
            "POST",
            "/auth/verify",
            None,
            Some(json!({"token": token, "code_verifier": verifier})),
        )
        .await;
    assert_eq!(s.as_u16(), 401, "the link works once");

    // A plain sign-in link (someone's mailed link, handed to the CLI's port by a local process)
    // never redeems with a verifier; without one it still works.
    app.expect(
        202,
        "POST",
        "/auth/request",
        None,
        Some(json!({"email": "mallory@outside.test"})),
    )
    .await;
    let plain = app.outbox_token("mallory@outside.test");
    let (s, body) = app
        .problem(
            "POST",
            "/auth/verify",
            None,
            Some(json!({"token": plain, "code_verifier": verifier})),
        )
        .await;
    assert_eq!((s, body.code), (401, ErrorCode::InvalidToken), "{body:?}");
    app.expect(
        200,
        "POST",
        "/auth/verify",
        None,
        Some(json!({"token": plain})),
    )
    .await;
    assert!(app.verify(&owner, &slug).await.valid);
}
