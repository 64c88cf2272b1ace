//! SCIM 2.0 provisioning over HTTP: the compliance suite from PyPI (scim2-tester, through
//! scim2-cli's `test` command, pinned and installed by `cargo xtask test` under `target/tools/`),
//! deprovisioning, the last-owner rule, filters and pages, and every SCIM route × principal.

use std::time::Duration;

use defendable_identity::{OrgId, UserId};
use defendable_store::audit::AuditContext;
use serde_json::{json, Value};

use crate::helpers::{eventually, TestApp, SSO_KEY};

/// Keep in step with `SCIM2_CLI` in xtask/src/main.rs, which installs it.
const SCIM2_CLI: &str = "0.6.0";

/// Checks the suite may skip, each with why (docs/scim.md says the same).
const EXPLAINED_SKIPS: &[&str] = &[
    // RFC 7644 §3.4.3 makes a root-level /.search optional; we answer 501 for it, which the
    // suite reports as "not supported" and skips.
    "search_with_attributes",
];

/// A connection of `org` for `domains` with a group mapping, made by its owner.
async fn connection(
    app: &TestApp,
    org: &str,
    owner: &str,
    domains: &[&str],
    default_member: bool,
) -> String {
    let pool = &app.db.pool;
    let org = OrgId::from_uuid(org.parse().expect("org id"));
    let owner = UserId::from_uuid(owner.parse().expect("user id"));
    let client = pool.get().await.expect("client");
    for d in domains {
        client
            .execute(
                "INSERT INTO org_domains (org_id, domain, challenge, verified_at) VALUES ($1, $2, 'c', now())",
                &[&org.as_uuid(), d],
            )
            .await
            .expect("verified domain");
    }
    let c = defendable_sso::store::create_connection(
        &mut pool.get().await.expect("client"),
        &defendable_sso::sealed::SecretKeys::new(SSO_KEY, None),
        defendable_sso::store::Change {
            org,
            actor: owner,
            ctx: &AuditContext::default(),
        },
        defendable_sso::store::NewConnection {
            provider: defendable_sso::Provider::Okta,
            issuer: defendable_sso::Issuer::parse("https://corp.okta.com", false).expect("issuer"),
            client_id: defendable_sso::ClientId::parse("scim-test").expect("client id"),
            client_secret: defendable_sso::ClientSecret::parse("scim-secret").expect("secret"),
            domains: domains
                .iter()
                .map(|d| defendable_sso::DomainName::parse(d).expect("domain"))
                .collect(),
            group_roles: defendable_sso::GroupRoles::from_json(
                &json!({"Admins": "owner", "Staff": "member"}),
            )
            .expect("mapping"),
            default_role: default_member.then_some(defendable_identity::Role::Member),
            enforced: false,
        },
    )
    .await
    .expect("connection");
    c.id.to_string()
}

/// Issues the connection's SCIM token through the owners' route.
async fn scim_token(app: &TestApp, owner_token: &str, slug: &str, connection: &str) -> String {
    let issued = app
        .expect(
            201,
            "POST",
            &format!("/orgs/{slug}/sso/connections/{connection}/scim-token"),
            Some(owner_token),
            None,
        )
        .await;
    assert!(issued["base_url"]
        .as_str()
        .expect("base url")
        .ends_with(&format!("/scim/v2/{slug}")));
    issued["token"].as_str().expect("token").to_owned()
}

/// A SCIM call: status, body and the stable error code header.
async fn scim(
    app: &TestApp,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value, Option<String>) {
    let mut req = app
        .http
        .request(method.parse().expect("method"), app.url(path))
        .header("content-type", "application/scim+json");
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.body(b.to_string());
    }
    let res = req.send().await.expect("response");
    let status = res.status().as_u16();
    if status != 204 {
        let ct = res
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(
            ct.starts_with("application/scim+json") || status == 429,
            "{method} {path}: {status} answered {ct}"
        );
    }
    let code = res
        .headers()
        .get("defendable-error-code")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = res.bytes().await.expect("body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        code,
    )
}

#[actix_web::test]
async fn the_scim_compliance_suite_passes_against_the_server() {
    let app = TestApp::spawn().await;
    let (owner_token, slug, org) = app.sign_in_to_org("owner@suite.test").await;
    let (_, me) = app.call("GET", "/me", Some(&owner_token), None).await;
    let owner = me["user"]["id"].as_str().expect("user id").to_owned();
    let id = connection(&app, &org, &owner, &["suite.test"], true).await;
    let token = scim_token(&app, &owner_token, &slug, &id).await;

    let cli = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/tools")
        .join(format!("scim2-cli-{SCIM2_CLI}/bin/scim2"));
    assert!(
        cli.is_file(),
        "{} is missing: `cargo xtask test` installs scim2-cli {SCIM2_CLI}",
        cli.display()
    );
    let out = tokio::process::Command::new(&cli)
        .arg("test")
        .env("SCIM_CLI_URL", app.url(&format!("/scim/v2/{slug}")))
        // The token goes through the environment, not the command line.
        .env("SCIM_CLI_HEADERS", format!("Authorization: Bearer {token}"))
        .env("NO_COLOR", "1")
        .output()
        .await
        .expect("scim2 runs");
    let report = String::from_utf8_lossy(&out.stdout).to_string();
    eprintln!("{report}{}", String::from_utf8_lossy(&out.stderr));
    let mut successes = 0;
    let mut problems = Vec::new();
    for line in report.lines() {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("SUCCESS"), _) => successes += 1,
            (Some("SKIPPED"), Some(title)) if EXPLAINED_SKIPS.contains(&title) => {}
            (Some(status @ ("ERROR" | "SKIPPED" | "CRITICAL")), title) => {
                problems.push(format!("{status} {}", title.unwrap_or_default()))
            }
            _ => {}
        }
    }
    assert!(
        problems.is_empty(),
        "the SCIM compliance suite found problems:\n{}\n\n{report}",
        problems.join("\n")
    );
    assert!(
        successes >= 30,
        "the suite ran too few checks ({successes}):\n{report}"
    );
}

#[actix_web::test]
async fn scim_deprovisioning_revokes_sessions_and_api_keys_with_receipts() {
    let app = TestApp::spawn().await;
    let (owner_token, slug, org) = app.sign_in_to_org("alice@corp.test").await;
    let (_, me) = app.call("GET", "/me", Some(&owner_token), None).await;
    let alice = me["user"]["id"].as_str().expect("user id").to_owned();
    let id = connection(&app, &org, &alice, &["corp.test"], false).await;
    let token = scim_token(&app, &owner_token, &slug, &id).await;
    let base = format!("/scim/v2/{slug}");
    let t = Some(token.as_str());

    // Bob is provisioned; no group maps yet and there is no default role: no membership.
    let (status, bob, _) = scim(
        &app,
        "POST",
        &format!("{base}/Users"),
        t,
        Some(json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "bob", "externalId": "okta-bob", "displayName": "Bob",
            "emails": [{"value": "Bob@Corp.test", "type": "work", "primary": true}]
        })),
    )
    .await;
    assert_eq!(status, 201, "{bob}");
    let bob_id = bob["id"].as_str().expect("id").to_owned();
    assert_eq!(
        bob["meta"]["location"]
            .as_str()
            .map(|l| l.ends_with(&format!("{base}/Users/{bob_id}"))),
        Some(true)
    );
    let (bob_token, _) = app.sign_in("bob@corp.test").await;
    let (status, _) = app
        .call("GET", &format!("/orgs/{slug}"), Some(&bob_token), None)
        .await;
    assert_eq!(status, 404, "no mapped group, no membership");

    // The Admins group makes him an owner; he creates an API key.
    let (status, admins, _) = scim(
        &app,
        "POST",
        &format!("{base}/Groups"),
        t,
        Some(json!({
            "displayName": "Admins", "members": [{"value": bob_id}]
        })),
    )
    .await;
    assert_eq!(status, 201, "{admins}");
    let (_, bob_entry, _) = scim(&app, "GET", &format!("{base}/Users/{bob_id}"), t, None).await;
    assert_eq!(bob_entry["groups"][0]["display"], "Admins");
    let key = app.api_key(&bob_token, &slug).await;
    let (status, _) = app
        .call("GET", &format!("/orgs/{slug}/receipts"), Some(&key), None)
        .await;
    assert_eq!(status, 200);

    // Duplicates, bad filters and bad patches are refused with their keywords, writing nothing.
    let (status, body, code) = scim(
        &app,
        "POST",
        &format!("{base}/Users"),
        t,
        Some(json!({"userName": "BOB"})),
    )
    .await;
    assert_eq!(
        (status, body["scimType"].as_str(), code.as_deref()),
        (409, Some("uniqueness"), Some("scim_uniqueness")),
        "{body}"
    );
    let (status, body, _) = scim(
        &app,
        "GET",
        &format!("{base}/Users?filter=userName%20co%20%22b%22"),
        t,
        None,
    )
    .await;
    assert_eq!(
        (status, body["scimType"].as_str()),
        (400, Some("invalidFilter")),
        "{body}"
    );
    let (status, body, _) = scim(
        &app,
        "PATCH",
        &format!("{base}/Users/{bob_id}"),
        t,
        Some(json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "meta", "value": {}}]
        })),
    )
    .await;
    assert_eq!(
        (status, body["scimType"].as_str()),
        (400, Some("mutability")),
        "{body}"
    );

    // Bob is deactivated (Entra's string boolean).
    let (status, body, _) = scim(
        &app,
        "PATCH",
        &format!("{base}/Users/{bob_id}"),
        t,
        Some(json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "Replace", "path": "active", "value": "False"}]
        })),
    )
    .await;
    assert_eq!((status, &body["active"]), (200, &json!(false)), "{body}");

    // Within the revocation window every process refuses his session and his key.
    let slug2 = slug.clone();
    let gone = eventually(Duration::from_secs(5), || {
        let (app, bob_token, key, slug) = (&app, bob_token.clone(), key.clone(), slug2.clone());
        async move {
            let (s1, _) = app
                .call("GET", &format!("/orgs/{slug}"), Some(&bob_token), None)
                .await;
            let (s2, _) = app
                .call("GET", &format!("/orgs/{slug}/receipts"), Some(&key), None)
                .await;
            s1 == 404 && s2 == 401
        }
    })
    .await;
    assert!(
        gone,
        "deprovisioning did not reach the session and the key within 5 s"
    );

    let receipts = app
        .receipts_of(&owner_token, &slug, "member.role_change")
        .await;
    let scim_changes: Vec<(Value, Value)> = receipts
        .iter()
        .filter(|r| r["source"] == "scim")
        .map(|r| (r["from"].clone(), r["to"].clone()))
        .collect();
    assert_eq!(
        scim_changes,
        vec![(json!(null), json!("owner")), (json!("owner"), json!(null))],
        "{receipts:?}"
    );
    let client = app.db.pool.get().await.expect("client");
    let row = client
        .query_one(
            "SELECT count(*) FILTER (WHERE action = 'api_key.revoke' AND actor_kind = 'scim'),
                    count(*) FILTER (WHERE action = 'scim.deprovision')
             FROM audit_events WHERE org_id = $1",
            &[&org.parse::<uuid::Uuid>().expect("uuid")],
        )
        .await
        .expect("audit");
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (1, 1));
    let (_, verify) = app
        .call(
            "GET",
            &format!("/orgs/{slug}/ledger/verify"),
            Some(&owner_token),
            None,
        )
        .await;
    assert_eq!(verify["valid"], true, "{verify}");

    // Alice is now the only owner: an entry that deactivates her is refused, and nothing of
    // it is kept.
    let (status, body, code) = scim(
        &app,
        "POST",
        &format!("{base}/Users"),
        t,
        Some(json!({"userName": "alice@corp.test", "active": false})),
    )
    .await;
    assert_eq!(
        (status, code.as_deref()),
        (409, Some("last_owner")),
        "{body}"
    );
    let (_, list, _) = scim(
        &app,
        "GET",
        &format!("{base}/Users?filter=userName%20eq%20%22ALICE@corp.test%22"),
        t,
        None,
    )
    .await;
    assert_eq!(list["totalResults"], 0, "{list}");
    let (status, _) = app
        .call("GET", &format!("/orgs/{slug}"), Some(&owner_token), None)
        .await;
    assert_eq!(status, 200);
    // An active entry that names her in no mapped group leaves her role alone: it came from
    // her own sign-up, not from the identity provider.
    let (status, body, _) = scim(
        &app,
        "POST",
        &format!("{base}/Users"),
        t,
        Some(json!({"userName": "alice@corp.test"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        app.role_in(&owner_token, &slug).await.as_deref(),
        Some("owner")
    );

    // An address outside the verified domains is a directory entry that grants nothing.
    for name in ["carol@elsewhere.test", "dave", "erin"] {
        let (status, _, _) = scim(
            &app,
            "POST",
            &format!("{base}/Users"),
            t,
            Some(json!({"userName": name})),
        )
        .await;
        assert_eq!(status, 201);
    }
    let (_, page, _) = scim(
        &app,
        "GET",
        &format!("{base}/Users?startIndex=2&count=2&attributes=userName"),
        t,
        None,
    )
    .await;
    assert_eq!(
        (
            page["totalResults"].as_i64(),
            page["startIndex"].as_i64(),
            page["itemsPerPage"].as_i64()
        ),
        (Some(5), Some(2), Some(2)),
        "{page}"
    );
    assert_eq!(
        page["Resources"][1],
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "id": page["Resources"][1]["id"], "userName": "carol@elsewhere.test"})
    );
    let (_, by_external, _) = scim(
        &app,
        "GET",
        &format!("{base}/Users?filter=externalId%20eq%20%22okta-bob%22"),
        t,
        None,
    )
    .await;
    assert_eq!(by_external["Resources"][0]["id"], json!(bob_id));
    let (_, groups, _) = scim(
        &app,
        "GET",
        &format!("{base}/Groups?filter=displayName%20eq%20%22admins%22"),
        t,
        None,
    )
    .await;
    assert_eq!(groups["totalResults"], 1, "{groups}");

    // Rotating the token retires the old one; revoking it turns provisioning off.
    let rotated = scim_token(&app, &owner_token, &slug, &id).await;
    let (status, _, _) = scim(&app, "GET", &format!("{base}/Users"), t, None).await;
    assert_eq!(status, 401);
    let (status, _, _) = scim(&app, "GET", &format!("{base}/Users"), Some(&rotated), None).await;
    assert_eq!(status, 200);
    app.expect(
        204,
        "DELETE",
        &format!("/orgs/{slug}/sso/connections/{id}/scim-token"),
        Some(&owner_token),
        None,
    )
    .await;
    let (status, _, _) = scim(&app, "GET", &format!("{base}/Users"), Some(&rotated), None).await;
    assert_eq!(status, 401);
}

#[actix_web::test]
async fn every_scim_route_answers_only_its_organizations_token() {
    let app = TestApp::spawn().await;
    let (owner_token, slug, org) = app.sign_in_to_org("owner@routes.test").await;
    let (_, me) = app.call("GET", "/me", Some(&owner_token), None).await;
    let owner = me["user"]["id"].as_str().expect("user id").to_owned();
    let id = connection(&app, &org, &owner, &["routes.test"], true).await;
    let token = scim_token(&app, &owner_token, &slug, &id).await;
    let key = app.api_key(&owner_token, &slug).await;
    let (other_owner, other_slug, other_org) = app.sign_in_to_org("owner@other.test").await;
    let (_, other_me) = app.call("GET", "/me", Some(&other_owner), None).await;
    let other_id = connection(
        &app,
        &other_org,
        other_me["user"]["id"].as_str().expect("id"),
        &["other.test"],
        true,
    )
    .await;
    let other_token = scim_token(&app, &other_owner, &other_slug, &other_id).await;
    // Rotating retires the first token.
    let revoked = token;
    let token = scim_token(&app, &owner_token, &slug, &id).await;

    // The routes the server registers are the routes this table covers.
    assert_eq!(defendable_api::routes::scim::ROUTES.len(), 18);
    let principals: [(&str, Option<&str>); 6] = [
        ("anonymous", None),
        ("owner session", Some(&owner_token)),
        ("api key", Some(&key)),
        ("other org's scim token", Some(&other_token)),
        ("retired scim token", Some(&revoked)),
        ("scim token", Some(&token)),
    ];
    let mut failures = Vec::new();
    for (method, template) in defendable_api::routes::scim::ROUTES {
        for (name, credential) in principals {
            // A fresh user and group per cell, so destructive calls never affect another cell.
            let (_, user, _) = scim(
                &app,
                "POST",
                &format!("/scim/v2/{slug}/Users"),
                Some(&token),
                Some(json!({"userName": uuid::Uuid::new_v4().to_string()})),
            )
            .await;
            let (_, group, _) = scim(
                &app,
                "POST",
                &format!("/scim/v2/{slug}/Groups"),
                Some(&token),
                Some(json!({"displayName": "G"})),
            )
            .await;
            let resource = if template.contains("/Users/") {
                &user["id"]
            } else {
                &group["id"]
            };
            let path = template
                .replace("{org}", &slug)
                .replace("{id}", resource.as_str().unwrap_or("User"));
            let path = if template.contains("/Schemas/") {
                template
                    .replace("{org}", &slug)
                    .replace("{id}", "urn:ietf:params:scim:schemas:core:2.0:User")
            } else if template.contains("/ResourceTypes/") {
                template.replace("{org}", &slug).replace("{id}", "User")
            } else {
                path
            };
            let body = match (
                *method,
                template.contains("/Users"),
                template.contains("/Groups"),
            ) {
                ("POST" | "PUT", true, _) => {
                    Some(json!({"userName": uuid::Uuid::new_v4().to_string()}))
                }
                ("POST" | "PUT", _, true) => Some(json!({"displayName": "H"})),
                ("PATCH", _, _) => Some(
                    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "replace", "path": "displayName", "value": "X"}]}),
                ),
                _ => Some(json!({})),
            };
            let (status, body, _) = scim(&app, method, &path, credential, body).await;
            let want = match (name, *method) {
                ("scim token", _) if template.ends_with("/.search") => 501,
                ("scim token", "POST") => 201,
                ("scim token", "DELETE") => 204,
                ("scim token", _) => 200,
                _ => 401,
            };
            if status != want {
                failures.push(format!(
                    "{method} {template} as {name}: got {status}, want {want} ({body})"
                ));
            }
        }
    }
    // The scheme is case-insensitive (RFC 6750): SCIM clients that send `bearer` get in.
    for scheme in ["bearer", "BEARER"] {
        let res = app
            .http
            .get(app.url(&format!("/scim/v2/{slug}/Users")))
            .header("authorization", format!("{scheme} {token}"))
            .send()
            .await
            .expect("response");
        assert_eq!(res.status().as_u16(), 200, "scheme {scheme}");
    }
    // Discovery takes GET only; an unknown endpoint is a SCIM 404.
    let (status, _, _) = scim(
        &app,
        "POST",
        &format!("/scim/v2/{slug}/ServiceProviderConfig"),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(status, 405);
    let (status, body, _) = scim(
        &app,
        "GET",
        &format!("/scim/v2/{slug}/Nope"),
        Some(&token),
        None,
    )
    .await;
    assert_eq!((status, body["status"].as_str()), (404, Some("404")));
    assert!(
        failures.is_empty(),
        "{} cells wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[actix_web::test]
async fn the_last_break_glass_owner_stays_while_single_sign_on_is_enforced() {
    let app = TestApp::spawn().await;
    let (alice_token, slug, org) = app.sign_in_to_org("alice@corp.test").await;
    let (_, me) = app.call("GET", "/me", Some(&alice_token), None).await;
    let alice = me["user"]["id"].as_str().expect("user id").to_owned();
    let id = connection(&app, &org, &alice, &["corp.test"], false).await;
    let token = scim_token(&app, &alice_token, &slug, &id).await;
    let base = format!("/scim/v2/{slug}");
    let t = Some(token.as_str());

    // Alice and Bob are owners through the directory's Admins group; Alice is the only
    // break-glass owner, and the connection enforces single sign-on.
    let mut entries = Vec::new();
    for name in ["alice@corp.test", "bob@corp.test"] {
        let (status, user, _) = scim(
            &app,
            "POST",
            &format!("{base}/Users"),
            t,
            Some(json!({"userName": name})),
        )
        .await;
        assert_eq!(status, 201, "{user}");
        entries.push(json!({"value": user["id"]}));
    }
    let (status, group, _) = scim(
        &app,
        "POST",
        &format!("{base}/Groups"),
        t,
        Some(json!({"displayName": "Admins", "members": entries})),
    )
    .await;
    assert_eq!(status, 201, "{group}");
    app.expect(
        204,
        "PUT",
        &format!("/orgs/{slug}/sso/break-glass/{alice}"),
        Some(&alice_token),
        None,
    )
    .await;
    app.expect(
        200,
        "PATCH",
        &format!("/orgs/{slug}/sso/connections/{id}"),
        Some(&alice_token),
        Some(json!({"enforced": true})),
    )
    .await;

    // By hand, nobody demotes or removes her (herself included): 409, nothing written.
    for (method, body) in [("PATCH", Some(json!({"role": "member"}))), ("DELETE", None)] {
        let (status, problem) = app
            .call(
                method,
                &format!("/orgs/{slug}/members/{alice}"),
                Some(&alice_token),
                body,
            )
            .await;
        assert_eq!(
            (status.as_u16(), problem["code"].as_str()),
            (409, Some("break_glass_required")),
            "{method}: {problem}"
        );
    }
    assert_eq!(
        app.role_in(&alice_token, &slug).await.as_deref(),
        Some("owner")
    );

    // The directory deactivating her is accepted (a refusal would be retried forever), but
    // her owner role and break-glass status stay, with an audit event and the metric.
    let alice_entry = entries[0]["value"].as_str().expect("id").to_owned();
    let (status, body, _) = scim(
        &app,
        "PATCH",
        &format!("{base}/Users/{alice_entry}"),
        t,
        Some(json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "active", "value": false}]
        })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let client = app.db.pool.get().await.expect("client");
    let row = client
        .query_one(
            "SELECT role, break_glass FROM memberships m JOIN users u ON u.id = m.user_id
             WHERE u.email = 'alice@corp.test' AND m.org_id = $1",
            &[&uuid::Uuid::parse_str(&org).expect("org")],
        )
        .await
        .expect("alice is still a member");
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, bool>(1)),
        ("owner".to_owned(), true)
    );
    let kept: i64 = client
        .query_one(
            "SELECT count(*) FROM audit_events WHERE action = 'sso.break_glass_kept'",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(kept, 1);
    let metrics = app.metrics().await;
    let counted = metrics
        .lines()
        .find_map(|l| l.strip_prefix("defendable_sso_break_glass_kept_total "))
        .and_then(|v| v.trim().parse::<u64>().ok());
    assert!(counted.is_some_and(|n| n >= 1), "{metrics}");

    // Bob, not break-glass, is deprovisioned by the same rule as before.
    let bob_entry = entries[1]["value"].as_str().expect("id").to_owned();
    let (status, _, _) = scim(
        &app,
        "DELETE",
        &format!("{base}/Users/{bob_entry}"),
        t,
        None,
    )
    .await;
    assert_eq!(status, 204);
    let bob_memberships: i64 = client
        .query_one(
            "SELECT count(*) FROM memberships m JOIN users u ON u.id = m.user_id
             WHERE u.email = 'bob@corp.test' AND m.org_id = $1",
            &[&uuid::Uuid::parse_str(&org).expect("org")],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(bob_memberships, 0);
}
