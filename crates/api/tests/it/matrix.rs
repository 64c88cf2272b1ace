//! Every route in the OpenAPI document × every kind of principal, with the exact status each
//! must get. A route without a row here fails the test.

use object_store::ObjectStoreExt as _;
use std::collections::BTreeSet;
use std::time::Duration;

use defendable_identity::jwt::SessionKeys;
use defendable_identity::store::{self, PageRequest};
use defendable_identity::{Email, OrgName, OrgSlug, Role};
use defendable_store::audit::AuditContext;
use serde_json::{json, Value};

use crate::helpers::{TestApp, JWT_SECRET, SSO_KEY};

const PRINCIPALS: [&str; 12] = [
    "anonymous",
    "member",
    "owner",
    "other_owner",
    "api_key",
    "other_api_key",
    "revoked_key",
    "expired_key",
    "revoked_session",
    "expired_session",
    // In an organization that enforces single sign-on: a member whose session did not come
    // through it (and who, like everyone SSO or SCIM creates, belongs to no other organization),
    // and a break-glass owner's session that did not either.
    "sso_outsider",
    "break_glass",
];

/// (method, path, expected statuses in PRINCIPALS order).
#[rustfmt::skip]
const MATRIX: &[(&str, &str, [u16; 12])] = &[
    //                                                anon mem  own  oth  key  okey rkey xkey rses xses sso  bglass
    ("GET",    "/healthz",                           [200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200]),
    ("GET",    "/.well-known/security.txt",          [200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200]),
    ("GET",    "/readyz",                            [200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200]),
    ("GET",    "/openapi.json",                      [200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200]),
    ("POST",   "/auth/request",                      [202, 202, 202, 202, 202, 202, 202, 202, 202, 202, 202, 202]),
    ("POST",   "/auth/verify",                       [401, 401, 401, 401, 401, 401, 401, 401, 401, 401, 401, 401]),
    ("POST",   "/auth/accept-invite",                [401, 401, 401, 401, 401, 401, 401, 401, 401, 401, 401, 401]),
    // The pages mailed links open: public, and a GET consumes nothing.
    ("GET",    "/auth/callback",                     [200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200]),
    ("GET",    "/auth/accept-invite",                [200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200]),
    // The pages' button with a token nobody was mailed.
    ("POST",   "/auth/callback",                     [401, 401, 401, 401, 401, 401, 401, 401, 401, 401, 401, 401]),
    ("GET",    "/assets/{name}",                     [200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200]),
    // Single sign-on is public; these name no connection and carry no state.
    ("POST",   "/auth/sso/start",                    [401, 401, 401, 401, 401, 401, 401, 401, 401, 401, 401, 401]),
    ("GET",    "/auth/sso/callback",                 [401, 401, 401, 401, 401, 401, 401, 401, 401, 401, 401, 401]),
    ("POST",   "/auth/logout",                       [401, 204, 204, 204, 403, 403, 401, 401, 401, 401, 204, 204]),
    ("GET",    "/me",                                [401, 200, 200, 200, 403, 403, 401, 401, 401, 401, 200, 200]),
    ("POST",   "/orgs",                              [401, 201, 201, 201, 403, 403, 401, 401, 401, 401, 201, 201]),
    ("GET",    "/orgs",                              [401, 200, 200, 200, 403, 403, 401, 401, 401, 401, 200, 200]),
    ("GET",    "/orgs/{org}",                        [401, 200, 200, 404, 200, 404, 401, 401, 401, 401, 403, 200]),
    ("GET",    "/orgs/{org}/members",                [401, 200, 200, 404, 200, 404, 401, 401, 401, 401, 403, 200]),
    ("PATCH",  "/orgs/{org}/members/{user}",         [401, 403, 200, 404, 403, 404, 401, 401, 401, 401, 403, 200]),
    // {user} is the member, so the member removing itself is allowed.
    ("DELETE", "/orgs/{org}/members/{user}",         [401, 204, 204, 404, 403, 404, 401, 401, 401, 401, 403, 204]),
    ("POST",   "/orgs/{org}/invites",                [401, 403, 201, 404, 403, 404, 401, 401, 401, 401, 403, 201]),
    ("GET",    "/orgs/{org}/invites",                [401, 403, 200, 404, 403, 404, 401, 401, 401, 401, 403, 200]),
    ("DELETE", "/orgs/{org}/invites/{id}",           [401, 403, 204, 404, 403, 404, 401, 401, 401, 401, 403, 204]),
    ("POST",   "/orgs/{org}/api-keys",               [401, 403, 201, 404, 403, 404, 401, 401, 401, 401, 403, 201]),
    ("GET",    "/orgs/{org}/api-keys",               [401, 403, 200, 404, 403, 404, 401, 401, 401, 401, 403, 200]),
    ("DELETE", "/orgs/{org}/api-keys/{id}",          [401, 403, 204, 404, 403, 404, 401, 401, 401, 401, 403, 204]),
    // SSO settings: owners, by session.
    ("POST",   "/orgs/{org}/domains",                [401, 403, 201, 404, 403, 404, 401, 401, 401, 401, 403, 201]),
    ("GET",    "/orgs/{org}/domains",                [401, 403, 200, 404, 403, 404, 401, 401, 401, 401, 403, 200]),
    ("DELETE", "/orgs/{org}/domains/{domain}",       [401, 403, 204, 404, 403, 404, 401, 401, 401, 401, 403, 204]),
    // The fixture's domain is verified already: no DNS lookup.
    ("POST",   "/orgs/{org}/domains/{domain}/verify", [401, 403, 200, 404, 403, 404, 401, 401, 401, 401, 403, 200]),
    ("POST",   "/orgs/{org}/sso/connections",        [401, 403, 201, 404, 403, 404, 401, 401, 401, 401, 403, 201]),
    ("GET",    "/orgs/{org}/sso/connections",        [401, 403, 200, 404, 403, 404, 401, 401, 401, 401, 403, 200]),
    ("GET",    "/orgs/{org}/sso/connections/{id}",   [401, 403, 200, 404, 403, 404, 401, 401, 401, 401, 403, 200]),
    ("PATCH",  "/orgs/{org}/sso/connections/{id}",   [401, 403, 200, 404, 403, 404, 401, 401, 401, 401, 403, 200]),
    ("DELETE", "/orgs/{org}/sso/connections/{id}",   [401, 403, 204, 404, 403, 404, 401, 401, 401, 401, 403, 204]),
    ("POST",   "/orgs/{org}/sso/connections/{id}/scim-token", [401, 403, 201, 404, 403, 404, 401, 401, 401, 401, 403, 201]),
    ("DELETE", "/orgs/{org}/sso/connections/{id}/scim-token", [401, 403, 204, 404, 403, 404, 401, 401, 401, 401, 403, 204]),
    // {user} is the owner here: an owner may be a break-glass owner.
    ("PUT",    "/orgs/{org}/sso/break-glass/{user}", [401, 403, 204, 404, 403, 404, 401, 401, 401, 401, 403, 204]),
    ("DELETE", "/orgs/{org}/sso/break-glass/{user}", [401, 403, 204, 404, 403, 404, 401, 401, 401, 401, 403, 409]),
    ("POST",   "/orgs/{org}/receipts",               [401, 201, 201, 404, 201, 404, 401, 401, 401, 401, 403, 201]),
    ("GET",    "/orgs/{org}/receipts",               [401, 200, 200, 404, 200, 404, 401, 401, 401, 401, 403, 200]),
    ("GET",    "/orgs/{org}/receipts/{id}",          [401, 200, 200, 404, 200, 404, 401, 401, 401, 401, 403, 200]),
    ("POST",   "/orgs/{org}/receipts/{id}/share",    [401, 201, 201, 404, 403, 404, 401, 401, 401, 401, 403, 201]),
    ("DELETE", "/orgs/{org}/receipts/{id}/share",    [401, 204, 204, 404, 403, 404, 401, 401, 401, 401, 403, 204]),
    ("GET",    "/orgs/{org}/receipts/{id}/proof",    [401, 200, 200, 404, 200, 404, 401, 401, 401, 401, 403, 200]),
    ("GET",    "/orgs/{org}/ledger/verify",          [401, 200, 200, 404, 200, 404, 401, 401, 401, 401, 403, 200]),
    ("GET",    "/orgs/{org}/ledger/checkpoint",      [401, 200, 200, 404, 200, 404, 401, 401, 401, 401, 403, 200]),
    ("GET",    "/orgs/{org}/ledger/export",          [401, 200, 200, 404, 200, 404, 401, 401, 401, 401, 403, 200]),
    ("GET",    "/orgs/{org}/ledger/consistency",     [401, 200, 200, 404, 200, 404, 401, 401, 401, 401, 403, 200]),
    ("GET",    "/orgs/{org}/ledger/tile/{tile}",     [401, 200, 200, 404, 200, 404, 401, 401, 401, 401, 403, 200]),
    ("GET",    "/ledger/keys",                       [200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200]),
    ("GET",    "/share/{token}",                     [200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200]),
    ("GET",    "/share/{token}/proof",               [200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200]),
    ("GET",    "/share/{token}/consistency",         [200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200]),
    ("GET",    "/share/{token}/download",            [200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200]),
    // Nobody here holds the internal key.
    ("POST",   "/internal/datasets",                 [401, 401, 401, 401, 401, 401, 401, 401, 401, 401, 401, 401]),
    ("GET",    "/datasets/catalog",                  [401, 200, 200, 200, 200, 200, 401, 401, 401, 401, 200, 200]),
    ("GET",    "/datasets/catalog/{slug}",           [401, 200, 200, 200, 200, 200, 401, 401, 401, 401, 200, 200]),
    // The body names the fixture's org, so outsiders get 404 for it.
    ("POST",   "/datasets/catalog/{slug}/download",  [401, 201, 201, 404, 201, 404, 401, 401, 401, 401, 403, 201]),
    ("GET",    "/orgs/{org}/datasets/quota",         [401, 200, 200, 404, 200, 404, 401, 401, 401, 401, 403, 200]),
    // Object links are authorized by their signature alone; these carry none.
    ("GET",    "/objects/{key}",                     [403, 403, 403, 403, 403, 403, 403, 403, 403, 403, 403, 403]),
    // Metrics take the internal key, runner receipts the runner token, the webhook a signature.
    ("GET",    "/metrics",                           [401, 401, 401, 401, 401, 401, 401, 401, 401, 401, 401, 401]),
    ("POST",   "/internal/receipts",                 [401, 401, 401, 401, 401, 401, 401, 401, 401, 401, 401, 401]),
    ("POST",   "/webhooks/stripe",                   [400, 400, 400, 400, 400, 400, 400, 400, 400, 400, 400, 400]),
    ("GET",    "/orgs/{org}/audit",                  [401, 403, 200, 404, 403, 404, 401, 401, 401, 401, 403, 200]),
];

/// One organization with a member of each kind, plus an outsider organization.
struct Fixture {
    slug: String,
    receipt_id: String,
    share_token: String,
    member_id: String,
    owner_id: String,
    invite_id: String,
    spare_key_id: String,
    connection_id: String,
    domain: String,
    credentials: Vec<Option<String>>,
}

/// The columns whose organization enforces single sign-on.
const ENFORCING: [&str; 2] = ["sso_outsider", "break_glass"];

async fn fixture(app: &TestApp, n: usize, enforced: bool) -> Fixture {
    let pool = &app.db.pool;
    let ctx = AuditContext::default();
    let keys = SessionKeys::new(JWT_SECRET.as_bytes(), None, Duration::from_secs(3600));
    let keys = &keys;
    let session = |email: String| async move {
        let e = Email::parse(&email).expect("email");
        let link = store::request_magic_link(
            &mut pool.get().await.expect("client"),
            &e,
            Duration::from_secs(60),
            &AuditContext::default(),
        )
        .await
        .expect("link");
        let s = store::verify_magic_link(
            &mut pool.get().await.expect("client"),
            &link.token,
            Duration::from_secs(3600),
            &AuditContext::default(),
        )
        .await
        .expect("verify");
        (
            s.user.id,
            s.session,
            keys.issue(
                s.user.id,
                s.session,
                time::OffsetDateTime::now_utc().unix_timestamp(),
                s.expires_at.unix_timestamp(),
            ),
        )
    };
    let (owner, _, owner_token) = session(format!("owner{n}@example.com")).await;
    let (member, _, member_token) = session(format!("member{n}@example.com")).await;
    let (other, _, other_token) = session(format!("other{n}@example.com")).await;
    let (revoked_user, revoked_sid, revoked_token) =
        session(format!("revoked{n}@example.com")).await;
    let (_, expired_sid, expired_token) = session(format!("expired{n}@example.com")).await;
    let (outsider, _, outsider_token) = session(format!("outsider{n}@example.com")).await;

    let slug = format!(
        "org-{n}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..6]
    );
    let org = store::create_org(
        &mut pool.get().await.expect("client"),
        owner,
        &OrgSlug::parse(&slug).expect("slug"),
        &OrgName::parse("Org").expect("name"),
        &ctx,
    )
    .await
    .expect("org");
    let client = pool.get().await.expect("client");
    for (user, role) in [
        (member, Role::Member),
        (revoked_user, Role::Owner),
        (outsider, Role::Member),
    ] {
        client
            .execute(
                "INSERT INTO memberships (org_id, user_id, role) VALUES ($1, $2, $3)",
                &[&org.id.as_uuid(), &user.as_uuid(), &role.as_str()],
            )
            .await
            .expect("membership");
    }
    // Like a person SSO or SCIM created, the outsider belongs to this organization only.
    client
        .execute(
            "DELETE FROM memberships WHERE user_id = $1 AND org_id <> $2",
            &[&outsider.as_uuid(), &org.id.as_uuid()],
        )
        .await
        .expect("only one membership");
    if enforced {
        client
            .execute(
                "UPDATE memberships SET break_glass = true WHERE org_id = $1 AND user_id = $2",
                &[&org.id.as_uuid(), &owner.as_uuid()],
            )
            .await
            .expect("break-glass owner");
    }
    store::revoke_session(
        &mut pool.get().await.expect("client"),
        revoked_user,
        revoked_sid,
        &ctx,
    )
    .await
    .expect("revoke session");
    client
        .execute(
            "UPDATE sessions SET expires_at = now() - interval '1 second' WHERE id = $1",
            &[&expired_sid.as_uuid()],
        )
        .await
        .expect("expire session");

    let other_org = store::list_orgs(&client, other, PageRequest::new(None, None))
        .await
        .expect("orgs")
        .items[0]
        .org
        .id;
    let (_, key) = store::create_api_key(
        &mut pool.get().await.expect("client"),
        owner,
        org.id,
        &defendable_identity::ApiKeyName::parse("key").expect("name"),
        None,
        &ctx,
    )
    .await
    .expect("key");
    let (_, other_key) = store::create_api_key(
        &mut pool.get().await.expect("client"),
        other,
        other_org,
        &defendable_identity::ApiKeyName::parse("other").expect("name"),
        None,
        &ctx,
    )
    .await
    .expect("key");
    let (revoked, revoked_key) = store::create_api_key(
        &mut pool.get().await.expect("client"),
        owner,
        org.id,
        &defendable_identity::ApiKeyName::parse("revoked").expect("name"),
        None,
        &ctx,
    )
    .await
    .expect("key");
    store::revoke_api_key(
        &mut pool.get().await.expect("client"),
        owner,
        org.id,
        revoked.id,
        &ctx,
    )
    .await
    .expect("revoke key");
    let (expired, expired_key) = store::create_api_key(
        &mut pool.get().await.expect("client"),
        owner,
        org.id,
        &defendable_identity::ApiKeyName::parse("expired").expect("name"),
        None,
        &ctx,
    )
    .await
    .expect("key");
    client
        .execute(
            "UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE id = $1",
            &[&expired.id.as_uuid()],
        )
        .await
        .expect("expire key");
    let (spare, _) = store::create_api_key(
        &mut pool.get().await.expect("client"),
        owner,
        org.id,
        &defendable_identity::ApiKeyName::parse("spare").expect("name"),
        None,
        &ctx,
    )
    .await
    .expect("key");
    let (invite, _) = store::create_invite(
        &mut pool.get().await.expect("client"),
        owner,
        org.id,
        &Email::parse(&format!("invitee{n}@example.com")).expect("email"),
        Role::Member,
        Duration::from_secs(3600),
        &ctx,
    )
    .await
    .expect("invite");

    let domain = format!("d{n}.matrix.test");
    client
        .execute(
            "INSERT INTO org_domains (org_id, domain, challenge, verified_at) VALUES ($1, $2, 'c', now())",
            &[&org.id.as_uuid(), &domain],
        )
        .await
        .expect("domain");
    let connection = defendable_sso::store::create_connection(
        &mut pool.get().await.expect("client"),
        &defendable_sso::sealed::SecretKeys::new(SSO_KEY, None),
        defendable_sso::store::Change {
            org: org.id,
            actor: owner,
            ctx: &ctx,
        },
        defendable_sso::store::NewConnection {
            provider: defendable_sso::Provider::Generic,
            issuer: defendable_sso::Issuer::parse("https://idp.matrix.test", false)
                .expect("issuer"),
            client_id: defendable_sso::ClientId::parse("matrix").expect("client id"),
            client_secret: defendable_sso::ClientSecret::parse("matrix-secret").expect("secret"),
            domains: vec![
                defendable_sso::DomainName::parse(&format!("c{n}.matrix.test")).expect("domain"),
            ],
            group_roles: Default::default(),
            default_role: None,
            enforced,
        },
    )
    .await
    .expect("connection");

    let mut client = pool.get().await.expect("client");
    let tx = client.transaction().await.expect("tx");
    let draft = defendable_ledger::Draft::new(
        defendable_ledger::ReceiptKind::parse("run").expect("kind"),
        json!({"n": n}),
        None,
    )
    .expect("draft");
    let receipt = defendable_ledger::store::append_in(&tx, org.id.as_uuid(), draft)
        .await
        .expect("receipt");
    let share = defendable_identity::OneTimeToken::generate();
    defendable_ledger::store::create_share(
        &tx,
        org.id.as_uuid(),
        receipt.seq,
        share.hash().as_bytes(),
        None,
        None,
    )
    .await
    .expect("share");
    tx.commit().await.expect("commit");

    Fixture {
        slug,
        receipt_id: receipt.id.clone(),
        share_token: share.expose().to_owned(),
        member_id: member.to_string(),
        owner_id: owner.to_string(),
        invite_id: invite.id.to_string(),
        spare_key_id: spare.id.to_string(),
        connection_id: connection.id.to_string(),
        domain,
        credentials: vec![
            None,
            Some(member_token),
            Some(owner_token.clone()),
            Some(other_token),
            Some(key.expose().to_owned()),
            Some(other_key.expose().to_owned()),
            Some(revoked_key.expose().to_owned()),
            Some(expired_key.expose().to_owned()),
            Some(revoked_token),
            Some(expired_token),
            Some(outsider_token),
            Some(owner_token),
        ],
    }
}

fn body_for(method: &str, path: &str, n: usize, org: &str, principal: &str) -> Option<Value> {
    let unique = uuid::Uuid::new_v4().simple().to_string();
    match (method, path) {
        ("POST", "/auth/request") => Some(json!({"email": format!("req{n}@example.com")})),
        ("POST", "/auth/verify") | ("POST", "/auth/accept-invite") => {
            Some(json!({"token": "A".repeat(43)}))
        }
        ("POST", "/orgs") => Some(json!({"slug": format!("new-{}", &unique[..12]), "name": "New"})),
        ("PATCH", "/orgs/{org}/members/{user}") => Some(json!({"role": "owner"})),
        ("POST", "/orgs/{org}/invites") => {
            Some(json!({"email": format!("inv-{}@example.com", &unique[..12]), "role": "member"}))
        }
        ("POST", "/orgs/{org}/api-keys") => Some(json!({"name": "matrix"})),
        ("POST", "/auth/sso/start") => Some(json!({"email": "nobody@nowhere.test"})),
        ("POST", "/orgs/{org}/domains") => {
            Some(json!({"domain": format!("n{}.matrix.test", &unique[..12])}))
        }
        ("POST", "/orgs/{org}/sso/connections") => Some(json!({
            "provider": "generic", "issuer": "https://idp.matrix.test", "client_id": "c",
            "client_secret": "s", "domains": [format!("n{}.matrix.test", &unique[..12])],
        })),
        ("PATCH", "/orgs/{org}/sso/connections/{id}") => Some(json!({"default_role": "member"})),
        // The outsider names no organization: the server picks its only one, which must still
        // go through the organization boundary.
        ("POST", "/datasets/catalog/{slug}/download") if principal == "sso_outsider" => {
            Some(json!({}))
        }
        ("POST", "/datasets/catalog/{slug}/download") => Some(json!({"org": org})),
        ("POST", "/internal/receipts") => Some(json!({"org": org, "kind": "run", "public": {}})),
        ("POST", "/webhooks/stripe") => Some(json!({"id": "evt_1", "type": "ping"})),
        ("POST", "/internal/datasets") => Some(json!({
            "slug": "matrix-data", "title": "Matrix", "version": "1", "license": "CC0-1.0",
            "media_type": "text/plain", "object_key": "matrix/data.txt"
        })),
        ("POST", "/orgs/{org}/receipts") => Some(json!({"kind": "run", "public": {"n": n}})),
        _ => None,
    }
}

#[actix_web::test]
async fn every_route_answers_every_principal_with_the_exact_status() {
    // Every cell guesses a sign-in token from one address: the table is about who may do
    // what, so the per-address guessing limits (tested on their own) are lifted here.
    let app = TestApp::spawn_with(crate::helpers::config(&[(
        "RATE_LIMITS",
        "auth-verify-ip=1000/10m,auth-accept-invite-ip=1000/10m",
    )]))
    .await;
    publish_fixture_dataset(&app).await;

    // The table covers exactly the routes the OpenAPI document declares.
    let (_, doc) = app.call("GET", "/openapi.json", None, None).await;
    let mut declared = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("item").keys() {
            declared.insert((method.to_uppercase(), path.clone()));
        }
    }
    let tabled: BTreeSet<_> = MATRIX
        .iter()
        .map(|(m, p, _)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(
        declared, tabled,
        "routes in the OpenAPI document without a matrix row, or rows without a route"
    );

    let mut failures = Vec::new();
    let mut n = 0;
    for (method, template, expected) in MATRIX {
        for (i, principal) in PRINCIPALS.iter().enumerate() {
            n += 1;
            // A fresh fixture per cell, so destructive calls never affect another cell.
            let fx = fixture(&app, n, ENFORCING.contains(principal)).await;
            let id = if template.contains("/invites/") {
                &fx.invite_id
            } else if template.contains("/sso/connections/") {
                &fx.connection_id
            } else if template.contains("/receipts/") {
                &fx.receipt_id
            } else {
                &fx.spare_key_id
            };
            let path = template
                .replace("{org}", &fx.slug)
                .replace(
                    "{user}",
                    if template.contains("/break-glass/") {
                        &fx.owner_id
                    } else {
                        &fx.member_id
                    },
                )
                .replace("{domain}", &fx.domain)
                .replace("{id}", id)
                .replace("{token}", &fx.share_token)
                .replace("{slug}", "matrix-data")
                .replace("{key}", "matrix/data.txt")
                .replace("{tile}", "0/000.p/1")
                .replace("{name}", "verify.mjs");
            // The fixture's log holds one receipt: the smallest consistency proof.
            let path = if template.ends_with("/consistency") {
                format!("{path}?from=1")
            } else if method == &"GET" && template.starts_with("/auth/") {
                format!("{path}?token={}", "A".repeat(43))
            } else {
                path
            };
            let credential = fx.credentials[i].as_deref();
            let (status, body) = if (*method, *template) == ("POST", "/auth/callback") {
                form(&app, &path, credential).await
            } else {
                app.call(
                    method,
                    &path,
                    credential,
                    body_for(method, template, n, &fx.slug, principal),
                )
                .await
            };
            if status.as_u16() != expected[i] {
                failures.push(format!(
                    "{method} {template} as {principal}: got {status}, want {} ({body})",
                    expected[i]
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} cells wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Posts the sign-in pages' form with a token nobody was mailed.
async fn form(app: &TestApp, _path: &str, bearer: Option<&str>) -> (reqwest::StatusCode, Value) {
    let res = crate::helpers::press_link(app, &"A".repeat(43), "sign-in", bearer).await;
    (res.status(), Value::Null)
}

/// One published dataset every cell can see and download.
async fn publish_fixture_dataset(app: &TestApp) {
    let path = object_store::path::Path::from("matrix/data.txt");
    app.objects
        .put(&path, b"matrix bytes".to_vec().into())
        .await
        .expect("put");
    let (s, body) = app
        .call_internal(
            "POST",
            "/internal/datasets",
            json!({"slug": "matrix-data", "title": "Matrix", "version": "1", "license": "CC0-1.0",
                   "media_type": "text/plain", "object_key": "matrix/data.txt"}),
        )
        .await;
    assert_eq!(s, 201, "{body}");
}
