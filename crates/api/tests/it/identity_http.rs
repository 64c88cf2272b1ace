//! Identity through HTTP, as a client sees it: sign-in by mailed link, organizations, roles,
//! invites, API keys, logout, and revocation across server processes.

use defendable_api::error::ErrorCode;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{config, read_as, TestApp};
use defendable_identity::view::{
    ApiKeyPage, CreatedApiKeyView, InvitePage, MeView, MemberPage, MemberView, RoleView,
    SessionView,
};

#[actix_web::test]
async fn auth_request_answers_the_same_for_known_and_unknown_addresses() {
    let app = TestApp::spawn().await;
    app.sign_in("known@example.com").await;
    let (s1, b1) = app
        .call(
            "POST",
            "/auth/request",
            None,
            Some(json!({"email": "known@example.com"})),
        )
        .await;
    let (s2, b2) = app
        .call(
            "POST",
            "/auth/request",
            None,
            Some(json!({"email": "unknown@example.com"})),
        )
        .await;
    assert_eq!((s1.as_u16(), s2.as_u16()), (202, 202));
    assert_eq!(b1, b2);
    let (s, body) = app
        .problem(
            "POST",
            "/auth/request",
            None,
            Some(json!({"email": "not an email"})),
        )
        .await;
    assert_eq!((s, body.code), (422, ErrorCode::InvalidEmail));
}

#[actix_web::test]
async fn the_mailed_link_points_at_the_web_app_not_the_api() {
    let app =
        TestApp::spawn_with(config(&[("APP_BASE_URL", "https://app.example.com/base/")])).await;
    app.call(
        "POST",
        "/auth/request",
        None,
        Some(json!({"email": "a@example.com"})),
    )
    .await;
    let dir = app.data.path().join("outbox");
    let mail = std::fs::read_dir(&dir)
        .expect("outbox")
        .flatten()
        .next()
        .expect("one mail");
    let text = crate::helpers::decode_quoted_printable(
        &std::fs::read_to_string(mail.path()).expect("mail"),
    );
    assert!(
        text.contains("https://app.example.com/base/auth/callback?token="),
        "{text}"
    );
    assert!(!text.contains(&app.base));
}

#[actix_web::test]
async fn verify_with_bad_tokens_is_one_401() {
    let app = TestApp::spawn().await;
    app.sign_in("a@example.com").await;
    let used = app.outbox_token("a@example.com");
    for token in [used.as_str(), "short", &"A".repeat(43)] {
        let (s, body) = app
            .problem("POST", "/auth/verify", None, Some(json!({"token": token})))
            .await;
        assert_eq!((s, body.code), (401, ErrorCode::InvalidToken), "{token}");
    }
}

#[actix_web::test]
async fn me_orgs_members_roles_invites_and_keys_work_end_to_end() {
    let app = TestApp::spawn().await;
    let (owner, owner_id) = app.sign_in("owner@example.com").await;

    let me: MeView = app.expect_as(200, "GET", "/me", Some(&owner), None).await;
    assert_eq!(me.user.email, "owner@example.com");
    assert_eq!(me.memberships[0].role, RoleView::Owner);
    assert!(me.memberships[0].org.personal);

    let (s, org) = app
        .call(
            "POST",
            "/orgs",
            Some(&owner),
            Some(json!({"slug": "acme", "name": "Acme"})),
        )
        .await;
    assert_eq!(s, 201, "{org}");
    let (s, _) = app
        .call(
            "POST",
            "/orgs",
            Some(&owner),
            Some(json!({"slug": "acme", "name": "Again"})),
        )
        .await;
    assert_eq!(s, 409);
    let (s, body) = app
        .problem(
            "POST",
            "/orgs",
            Some(&owner),
            Some(json!({"slug": "No Good", "name": "x"})),
        )
        .await;
    assert_eq!((s, body.code), (422, ErrorCode::InvalidSlug));

    // Invite a member and accept through the mailed link.
    let (s, invite) = app
        .call(
            "POST",
            "/orgs/acme/invites",
            Some(&owner),
            Some(json!({"email": "mem@example.com", "role": "member"})),
        )
        .await;
    assert_eq!(s, 201, "{invite}");
    let pending: InvitePage = app
        .expect_as(200, "GET", "/orgs/acme/invites", Some(&owner), None)
        .await;
    assert_eq!(pending.items.len(), 1);
    let invite_token = app.outbox_token("mem@example.com");
    let joined: SessionView = app
        .expect_as(
            200,
            "POST",
            "/auth/accept-invite",
            None,
            Some(json!({"token": invite_token})),
        )
        .await;
    let member = joined.access_token;
    let member_id = joined.user.id.to_string();
    let (s, _) = app
        .call(
            "POST",
            "/auth/accept-invite",
            None,
            Some(json!({"token": invite_token})),
        )
        .await;
    assert_eq!(s, 401, "an invite works once");

    let members: MemberPage = app
        .expect_as(200, "GET", "/orgs/acme/members", Some(&member), None)
        .await;
    assert_eq!(members.items.len(), 2);

    // Members cannot change roles; owners can; the last owner cannot step down.
    let path = format!("/orgs/acme/members/{owner_id}");
    let (s, _) = app
        .call(
            "PATCH",
            &path,
            Some(&member),
            Some(json!({"role": "member"})),
        )
        .await;
    assert_eq!(s, 403);
    let (s, _) = app
        .call(
            "PATCH",
            &path,
            Some(&owner),
            Some(json!({"role": "member"})),
        )
        .await;
    assert_eq!(s, 409, "last owner");
    let changed: MemberView = app
        .expect_as(
            200,
            "PATCH",
            &format!("/orgs/acme/members/{member_id}"),
            Some(&owner),
            Some(json!({"role": "owner"})),
        )
        .await;
    assert_eq!(changed.role, RoleView::Owner);

    // API keys: created by session, secret once, act as members of their org only.
    let created: CreatedApiKeyView = app
        .expect_as(
            201,
            "POST",
            "/orgs/acme/api-keys",
            Some(&owner),
            Some(json!({"name": "ci"})),
        )
        .await;
    let secret = created.secret.clone();
    assert!(secret.starts_with("dfd_") && secret.len() == 50);
    let (s, listed) = app
        .call("GET", "/orgs/acme/api-keys", Some(&owner), None)
        .await;
    assert_eq!(s, 200);
    // The raw body, so that no field anywhere carries the secret.
    assert!(!listed.to_string().contains(&secret));
    let listed: ApiKeyPage = read_as(&listed);
    assert_eq!(listed.items[0].last4, &secret[46..]);
    let (s, _) = app.call("GET", "/orgs/acme", Some(&secret), None).await;
    assert_eq!(s, 200);
    let (s, _) = app.call("GET", "/me", Some(&secret), None).await;
    assert_eq!(s, 403);
    let (s, _) = app
        .call(
            "POST",
            "/orgs/acme/api-keys",
            Some(&secret),
            Some(json!({"name": "minted by a key"})),
        )
        .await;
    assert_eq!(s, 403, "a key never mints keys");
    let key_id = created.key.id;
    let (s, _) = app
        .call(
            "DELETE",
            &format!("/orgs/acme/api-keys/{key_id}"),
            Some(&owner),
            None,
        )
        .await;
    assert_eq!(s, 204);
    let (s, _) = app.call("GET", "/orgs/acme", Some(&secret), None).await;
    assert_eq!(s, 401, "revoked at once on the process that revoked it");

    // A member removes itself; then it is outside the org.
    let (s, _) = app
        .call(
            "POST",
            "/orgs/acme/api-keys",
            Some(&member),
            Some(json!({"name": "while owner"})),
        )
        .await;
    assert_eq!(s, 201, "an owner may create keys");
    let (s, _) = app
        .call(
            "PATCH",
            &format!("/orgs/acme/members/{member_id}"),
            Some(&owner),
            Some(json!({"role": "member"})),
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = app
        .call(
            "POST",
            "/orgs/acme/api-keys",
            Some(&member),
            Some(json!({"name": "after demotion"})),
        )
        .await;
    assert_eq!(
        s, 403,
        "a demotion applies at once on the process that made it"
    );
    let (s, _) = app
        .call(
            "DELETE",
            &format!("/orgs/acme/members/{member_id}"),
            Some(&member),
            None,
        )
        .await;
    assert_eq!(s, 204);
    let (s, _) = app.call("GET", "/orgs/acme", Some(&member), None).await;
    assert_eq!(s, 404);

    // Logout ends the session.
    let (s, _) = app.call("POST", "/auth/logout", Some(&owner), None).await;
    assert_eq!(s, 204);
    let (s, _) = app.call("GET", "/me", Some(&owner), None).await;
    assert_eq!(s, 401);
}

#[actix_web::test]
async fn a_second_invite_replaces_the_first_link_and_inviting_a_member_is_409() {
    let app = TestApp::spawn().await;
    let (owner, _) = app.sign_in("owner@example.com").await;
    app.call(
        "POST",
        "/orgs",
        Some(&owner),
        Some(json!({"slug": "acme", "name": "Acme"})),
    )
    .await;
    for _ in 0..2 {
        let (s, _) = app
            .call(
                "POST",
                "/orgs/acme/invites",
                Some(&owner),
                Some(json!({"email": "m@example.com", "role": "member"})),
            )
            .await;
        assert_eq!(s, 201);
    }
    let tokens = app.outbox_tokens("m@example.com");
    assert_eq!(tokens.len(), 2, "each invite mails a link");
    let (s, body) = app
        .problem(
            "POST",
            "/auth/accept-invite",
            None,
            Some(json!({"token": tokens[0]})),
        )
        .await;
    assert_eq!(
        (s, body.code),
        (401, ErrorCode::InvalidToken),
        "the pending invite was reused with a fresh link"
    );
    let (s, _) = app
        .call(
            "POST",
            "/auth/accept-invite",
            None,
            Some(json!({"token": tokens[1]})),
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = app
        .call(
            "POST",
            "/orgs/acme/invites",
            Some(&owner),
            Some(json!({"email": "m@example.com", "role": "member"})),
        )
        .await;
    assert_eq!(s, 409, "inviting a member is a conflict");
}

#[actix_web::test]
async fn logout_and_key_revocation_reach_another_server_process_within_five_seconds() {
    let app = TestApp::spawn().await;
    let other = app.second_instance(config(&[]));
    let http = crate::helpers::http();
    let (token, slug, _) = app.sign_in_to_org("a@example.com").await;
    let key: CreatedApiKeyView = app
        .expect_as(
            201,
            "POST",
            &format!("/orgs/{slug}/api-keys"),
            Some(&token),
            Some(json!({"name": "k"})),
        )
        .await;
    let (secret, key_id) = (key.secret, key.key.id);

    // Warm the other process's caches.
    let (s, _) =
        crate::helpers::call(&http, &format!("{other}/me"), "GET", Some(&token), None).await;
    assert_eq!(s, 200);
    let (s, _) = crate::helpers::call(
        &http,
        &format!("{other}/orgs/{slug}"),
        "GET",
        Some(&secret),
        None,
    )
    .await;
    assert_eq!(s, 200);

    app.call(
        "DELETE",
        &format!("/orgs/{slug}/api-keys/{key_id}"),
        Some(&token),
        None,
    )
    .await;
    app.call("POST", "/auth/logout", Some(&token), None).await;

    let deadline = Instant::now() + Duration::from_secs(5);
    let (mut session_refused, mut key_refused) = (false, false);
    while Instant::now() < deadline && !(session_refused && key_refused) {
        session_refused |=
            crate::helpers::call(&http, &format!("{other}/me"), "GET", Some(&token), None)
                .await
                .0
                == 401;
        key_refused |= crate::helpers::call(
            &http,
            &format!("{other}/orgs/{slug}"),
            "GET",
            Some(&secret),
            None,
        )
        .await
        .0 == 401;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        session_refused,
        "the other process still accepts the logged-out session"
    );
    assert!(
        key_refused,
        "the other process still accepts the revoked key"
    );
}

#[actix_web::test]
async fn tokens_signed_with_the_previous_jwt_secret_are_accepted_and_counted() {
    let old = TestApp::spawn().await;
    let (token, _) = old.sign_in("a@example.com").await;
    let rotated = old.second_instance(config(&[
        ("JWT_SECRET", "rotated-jwt-Q1w2E3r4T5y6U7i8O9p0Asdfgh"),
        ("JWT_SECRET_PREVIOUS", crate::helpers::JWT_SECRET),
    ]));
    let http = crate::helpers::http();
    let (s, _) =
        crate::helpers::call(&http, &format!("{rotated}/me"), "GET", Some(&token), None).await;
    assert_eq!(s, 200);
    let unrotated = old.second_instance(config(&[(
        "JWT_SECRET",
        "rotated-jwt-Q1w2E3r4T5y6U7i8O9p0Asdfgh",
    )]));
    let (s, _) =
        crate::helpers::call(&http, &format!("{unrotated}/me"), "GET", Some(&token), None).await;
    assert_eq!(s, 401);
    assert!(crate::helpers::captured_logs().contains("JWT_SECRET_PREVIOUS"));
}

/// Invites `email` to `org` as `role` and accepts through the mailed link; returns the new
/// member's access token and user id.
async fn join(app: &TestApp, owner: &str, org: &str, email: &str, role: &str) -> (String, String) {
    let (s, invite) = app
        .call(
            "POST",
            &format!("/orgs/{org}/invites"),
            Some(owner),
            Some(json!({"email": email, "role": role})),
        )
        .await;
    assert_eq!(s, 201, "{invite}");
    let joined: SessionView = app
        .expect_as(
            200,
            "POST",
            "/auth/accept-invite",
            None,
            Some(json!({"token": app.outbox_token(email)})),
        )
        .await;
    (joined.access_token, joined.user.id.to_string())
}

#[actix_web::test]
async fn the_api_keys_of_a_member_who_leaves_or_is_removed_are_revoked() {
    let app = TestApp::spawn().await;
    let (owner, _) = app.sign_in("founder@example.com").await;
    let (s, _) = app
        .call(
            "POST",
            "/orgs",
            Some(&owner),
            Some(json!({"slug": "keys-co", "name": "Keys"})),
        )
        .await;
    assert_eq!(s, 201);
    let (removed, removed_id) = join(&app, &owner, "keys-co", "removed@example.com", "owner").await;
    let (leaver, leaver_id) = join(&app, &owner, "keys-co", "leaver@example.com", "owner").await;
    let founders_key = app.api_key(&owner, "keys-co").await;
    let removed_key = app.api_key(&removed, "keys-co").await;
    let leavers_key = app.api_key(&leaver, "keys-co").await;
    for key in [&founders_key, &removed_key, &leavers_key] {
        let (s, _) = app.call("GET", "/orgs/keys-co", Some(key), None).await;
        assert_eq!(s, 200);
    }

    let (s, _) = app
        .call(
            "DELETE",
            &format!("/orgs/keys-co/members/{removed_id}"),
            Some(&owner),
            None,
        )
        .await;
    assert_eq!(s, 204);
    let (s, _) = app
        .call("GET", "/orgs/keys-co", Some(&removed_key), None)
        .await;
    assert_eq!(
        s, 401,
        "a removed member's key is revoked with the membership"
    );
    let (s, _) = app
        .call("GET", "/orgs/keys-co", Some(&leavers_key), None)
        .await;
    assert_eq!(s, 200, "other members' keys are untouched");

    let (s, _) = app
        .call(
            "DELETE",
            &format!("/orgs/keys-co/members/{leaver_id}"),
            Some(&leaver),
            None,
        )
        .await;
    assert_eq!(s, 204);
    let (s, _) = app
        .call("GET", "/orgs/keys-co", Some(&leavers_key), None)
        .await;
    assert_eq!(s, 401, "a member who leaves takes its keys along");
    let (s, _) = app
        .call("GET", "/orgs/keys-co", Some(&founders_key), None)
        .await;
    assert_eq!(s, 200);

    let client = app.db.pool.get().await.expect("client");
    let rows = client
        .query(
            "SELECT details->>'creator' FROM audit_events
             WHERE action = 'api_key.revoke' AND details->>'reason' = 'creator_left' ORDER BY id",
            &[],
        )
        .await
        .expect("audit");
    let creators: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(
        creators,
        [format!("user:{removed_id}"), format!("user:{leaver_id}")]
    );
}
