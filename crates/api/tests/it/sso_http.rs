//! Enterprise SSO settings over HTTP (issue 18, parts 1 and 2): domains verified through a real
//! DNS server on loopback (dnsmasq), connections whose client secret is sealed at rest and never
//! returned, and an `idp.config_change` receipt for every change, in the same transaction.

use defendable_testkit::dns::{free_port, DnsServer};
use serde_json::{json, Value};

use crate::helpers::{config, TestApp};

/// A server whose DNS_RESOLVER is `port` on loopback (no server there until a test starts one).
async fn app_with_dns(port: u16) -> TestApp {
    TestApp::spawn_with(config(&[("DNS_RESOLVER", &format!("127.0.0.1:{port}"))])).await
}

/// The organization's `idp.config_change` receipts' public parts, oldest first.
async fn idp_receipts(app: &TestApp, token: &str, slug: &str) -> Vec<Value> {
    let (_, list) = app
        .call(
            "GET",
            &format!("/orgs/{slug}/receipts?kind=idp.config_change&limit=100"),
            Some(token),
            None,
        )
        .await;
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|r| r["body"]["public"].clone())
        .collect()
}

#[actix_web::test]
async fn a_domain_is_verified_by_its_txt_record_and_only_one_organization_holds_it() {
    let port = free_port();
    let app = app_with_dns(port).await;
    let (token, slug, _) = app.sign_in_to_org("owner@acme.test").await;
    let path = format!("/orgs/{slug}/domains");

    let claim = app
        .expect(
            201,
            "POST",
            &path,
            Some(&token),
            Some(json!({"domain": "Acme.TEST."})),
        )
        .await;
    assert_eq!(claim["domain"], "acme.test");
    assert_eq!(claim["verified"], false);
    assert_eq!(claim["txt_name"], "_defendable-challenge.acme.test");
    let challenge = claim["txt_value"].as_str().expect("value").to_owned();
    assert!(challenge.starts_with("defendable-domain-verification="));
    let (s, again) = app
        .call(
            "POST",
            &path,
            Some(&token),
            Some(json!({"domain": "acme.test"})),
        )
        .await;
    assert_eq!(
        (s.as_u16(), again["code"].as_str()),
        (409, Some("domain_exists"))
    );
    for bad in ["localhost", "not a domain", "10.0.0.1"] {
        let (s, body) = app
            .call("POST", &path, Some(&token), Some(json!({"domain": bad})))
            .await;
        assert_eq!(
            (s.as_u16(), body["code"].as_str()),
            (422, Some("invalid_input")),
            "{bad}"
        );
    }

    // A record that is not the challenge: refused, saying what was seen.
    let verify = format!("{path}/acme.test/verify");
    {
        let _dns = DnsServer::start(
            port,
            &[("_defendable-challenge.acme.test", "something-else")],
        );
        let (s, body) = app.call("POST", &verify, Some(&token), None).await;
        assert_eq!(
            (s.as_u16(), body["code"].as_str()),
            (422, Some("domain_not_verified")),
            "{body}"
        );
        assert!(
            body["detail"]
                .as_str()
                .expect("detail")
                .contains("1 TXT record(s)"),
            "{body}"
        );
    }
    {
        let _dns = DnsServer::start(port, &[]);
        let (s, body) = app.call("POST", &verify, Some(&token), None).await;
        assert_eq!(s.as_u16(), 422, "{body}");
        assert!(
            body["detail"]
                .as_str()
                .expect("detail")
                .contains("no TXT record"),
            "{body}"
        );
    }
    let _dns = DnsServer::start(
        port,
        &[
            ("_defendable-challenge.acme.test", "unrelated=1"),
            ("_defendable-challenge.acme.test", &challenge),
        ],
    );
    let verified = app.expect(200, "POST", &verify, Some(&token), None).await;
    assert_eq!(verified["verified"], true);
    assert!(verified["verified_at"].is_string());
    app.expect(200, "POST", &verify, Some(&token), None).await;

    // Another organization may not claim or verify what acme verified.
    let (other, other_slug, _) = app.sign_in_to_org("owner@rival.test").await;
    let (s, body) = app
        .call(
            "POST",
            &format!("/orgs/{other_slug}/domains"),
            Some(&other),
            Some(json!({"domain": "acme.test"})),
        )
        .await;
    assert_eq!(
        (s.as_u16(), body["code"].as_str()),
        (409, Some("domain_taken"))
    );

    let list = app.expect(200, "GET", &path, Some(&token), None).await;
    assert_eq!(list["items"].as_array().expect("items").len(), 1);

    let receipts = idp_receipts(&app, &token, &slug).await;
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
    assert_eq!(app.verify(&token, &slug).await["valid"], true);
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
    assert_eq!(created["domains"], json!(["corp.test"]));
    assert_eq!(created["client_secret_set"], true);
    assert_eq!(created["enforced"], false);
    assert!(created["default_role"].is_null());
    assert!(!created.to_string().contains(secret));
    let id = created["id"].as_str().expect("id").to_owned();
    let one = app
        .expect(200, "GET", &format!("{path}/{id}"), Some(&token), None)
        .await;
    assert_eq!(one, created);
    let list = app.expect(200, "GET", &path, Some(&token), None).await;
    assert_eq!(list["items"], json!([created]));

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
    assert_eq!(same["updated_at"], created["updated_at"]);
    let (s, changed) = patch(json!({"client_secret": "rotated-secret-Zx7Cv4Bn1Mq8", "enforced": true, "default_role": "member"})).await;
    assert_eq!(s.as_u16(), 200, "{changed}");
    assert_eq!(
        (
            changed["enforced"].as_bool(),
            changed["default_role"].as_str()
        ),
        (Some(true), Some("member"))
    );
    let (s, cleared) = patch(json!({"default_role": null})).await;
    assert_eq!((s.as_u16(), cleared["default_role"].is_null()), (200, true));
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
            .call("POST", &path, Some(&token), Some(body.clone()))
            .await;
        assert_eq!(problem["code"], code, "{body}: {s} {problem}");
    }

    app.expect(204, "DELETE", &format!("{path}/{id}"), Some(&token), None)
        .await;
    app.expect(404, "GET", &format!("{path}/{id}"), Some(&token), None)
        .await;

    let receipts = idp_receipts(&app, &token, &slug).await;
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
            (
                "connection.update".to_owned(),
                json!(["default_role", "enforced", "client_secret"])
            ),
            ("connection.update".to_owned(), json!(["default_role"])),
            ("connection.delete".to_owned(), json!([])),
        ]
    );
    assert_eq!(receipts[1]["enforced"], true);
    assert_eq!(receipts[3]["was_enforced"], true);
    let everything = serde_json::to_string(&receipts).expect("json");
    assert!(!everything.contains("rotated-secret") && !everything.contains(secret));
    // Each change's audit event sits beside its receipt.
    let events: i64 = client
        .query_one(
            "SELECT count(*) FROM audit_events WHERE action LIKE 'sso.connection.%'",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(events, 4);
    assert_eq!(app.verify(&token, &slug).await["valid"], true);
}

#[actix_web::test]
async fn members_and_api_keys_cannot_change_sso_settings() {
    let app = TestApp::spawn().await;
    let (owner, slug, _) = app.sign_in_to_org("owner@team.test").await;
    let key = app.api_key(&owner, &slug).await;
    let body = json!({"provider": "generic", "issuer": "https://idp.team.test", "client_id": "c", "client_secret": "s", "domains": ["team.test"]});
    let path = format!("/orgs/{slug}/sso/connections");
    let (s, problem) = app.call("POST", &path, Some(&key), Some(body)).await;
    assert_eq!(
        (s.as_u16(), problem["code"].as_str()),
        (403, Some("session_required"))
    );
    let (s, _) = app
        .call("GET", &format!("/orgs/{slug}/domains"), Some(&key), None)
        .await;
    assert_eq!(s.as_u16(), 403);
}
