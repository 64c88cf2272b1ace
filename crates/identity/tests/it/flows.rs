//! Identity operations against a real PostgreSQL, including the concurrency rules.

use std::time::Duration;

use defendable_identity::authn::{Authenticator, Principal};
use defendable_identity::jwt::{KeyUsed, SessionKeys};
use defendable_identity::store::{self, PageRequest};
use defendable_identity::{
    Email, IdentityError, OneTimeToken, OrgId, OrgName, OrgSlug, Role, UserId,
};
use defendable_store::audit::AuditContext;
use defendable_testkit::TestDb;

const TTL: Duration = Duration::from_secs(900);
const SESSION: Duration = Duration::from_secs(3600);

fn ctx() -> AuditContext {
    AuditContext::default()
}

fn email(s: &str) -> Email {
    Email::parse(s).expect("valid email")
}

async fn sign_in(db: &TestDb, address: &str) -> store::NewSession {
    let link = store::request_magic_link(
        &mut db.pool.get().await.expect("client"),
        &email(address),
        TTL,
        &ctx(),
    )
    .await
    .expect("link");
    store::verify_magic_link(
        &mut db.pool.get().await.expect("client"),
        &link.token,
        SESSION,
        &ctx(),
    )
    .await
    .expect("verify")
}

/// Signs in a new user and returns them with the personal organization they own.
async fn owner_of_personal_org(db: &TestDb, address: &str) -> (UserId, OrgId) {
    let owner = sign_in(db, address).await.user.id;
    let client = db.pool.get().await.expect("client");
    let orgs = store::list_orgs(&client, owner, PageRequest::new(None, None))
        .await
        .expect("orgs");
    (owner, orgs.items[0].org.id)
}

async fn audit_count(db: &TestDb, action: &str) -> i64 {
    let client = db.pool.get().await.expect("client");
    client
        .query_one(
            "SELECT count(*) FROM audit_events WHERE action = $1",
            &[&action],
        )
        .await
        .expect("count")
        .get(0)
}

#[tokio::test]
async fn first_sign_in_creates_the_user_and_a_personal_org_they_own() {
    let db = TestDb::new().await;
    let s = sign_in(&db, "Alice@Example.com").await;
    assert_eq!(s.user.email, "alice@example.com", "stored lowercase");
    let client = db.pool.get().await.expect("client");
    let orgs = store::list_orgs(&client, s.user.id, PageRequest::new(None, None))
        .await
        .expect("orgs");
    assert_eq!(orgs.items.len(), 1);
    assert!(orgs.items[0].org.personal);
    assert_eq!(orgs.items[0].role, Role::Owner);
    // A second sign-in reuses the user and creates no second org.
    let again = sign_in(&db, "alice@EXAMPLE.com").await;
    assert_eq!(
        again.user.id, s.user.id,
        "addresses compare case-insensitively"
    );
    let same = sign_in(&db, "ALICE@example.com").await;
    assert_eq!(same.user.id, s.user.id);
    let orgs = store::list_orgs(&client, s.user.id, PageRequest::new(None, None))
        .await
        .expect("orgs");
    assert_eq!(orgs.items.len(), 1);
    assert_eq!(audit_count(&db, "auth.request").await, 3);
    assert_eq!(audit_count(&db, "auth.verify").await, 3);
}

#[tokio::test]
async fn tokens_are_stored_only_as_hashes() {
    let db = TestDb::new().await;
    let link = store::request_magic_link(
        &mut db.pool.get().await.expect("client"),
        &email("a@example.com"),
        TTL,
        &ctx(),
    )
    .await
    .expect("link");
    let client = db.pool.get().await.expect("client");
    let stored: Vec<u8> = client
        .query_one("SELECT token_hash FROM magic_links", &[])
        .await
        .expect("row")
        .get(0);
    assert_eq!(stored, link.token.hash().as_bytes());
    let dump: String = client
        .query_one("SELECT string_agg(t::text, ' ') FROM magic_links t", &[])
        .await
        .expect("dump")
        .get(0);
    assert!(!dump.contains(link.token.expose()));
}

#[tokio::test]
async fn a_link_works_once_and_bad_links_all_fail_the_same_way() {
    let db = TestDb::new().await;
    let link = store::request_magic_link(
        &mut db.pool.get().await.expect("client"),
        &email("a@example.com"),
        TTL,
        &ctx(),
    )
    .await
    .expect("link");
    store::verify_magic_link(
        &mut db.pool.get().await.expect("client"),
        &link.token,
        SESSION,
        &ctx(),
    )
    .await
    .expect("first use");
    let used = store::verify_magic_link(
        &mut db.pool.get().await.expect("client"),
        &link.token,
        SESSION,
        &ctx(),
    )
    .await;
    assert!(matches!(used, Err(IdentityError::InvalidToken)));
    let unknown = store::verify_magic_link(
        &mut db.pool.get().await.expect("client"),
        &OneTimeToken::generate(),
        SESSION,
        &ctx(),
    )
    .await;
    assert!(matches!(unknown, Err(IdentityError::InvalidToken)));
    // Expired.
    let link = store::request_magic_link(
        &mut db.pool.get().await.expect("client"),
        &email("b@example.com"),
        Duration::from_secs(0),
        &ctx(),
    )
    .await
    .expect("link");
    let expired = store::verify_magic_link(
        &mut db.pool.get().await.expect("client"),
        &link.token,
        SESSION,
        &ctx(),
    )
    .await;
    assert!(matches!(expired, Err(IdentityError::InvalidToken)));
}

#[tokio::test]
async fn a_newer_link_invalidates_older_unused_ones() {
    let db = TestDb::new().await;
    let old = store::request_magic_link(
        &mut db.pool.get().await.expect("client"),
        &email("a@example.com"),
        TTL,
        &ctx(),
    )
    .await
    .expect("old");
    let new = store::request_magic_link(
        &mut db.pool.get().await.expect("client"),
        &email("a@example.com"),
        TTL,
        &ctx(),
    )
    .await
    .expect("new");
    assert!(matches!(
        store::verify_magic_link(
            &mut db.pool.get().await.expect("client"),
            &old.token,
            SESSION,
            &ctx()
        )
        .await,
        Err(IdentityError::InvalidToken)
    ));
    store::verify_magic_link(
        &mut db.pool.get().await.expect("client"),
        &new.token,
        SESSION,
        &ctx(),
    )
    .await
    .expect("new works");
}

#[tokio::test]
async fn concurrent_verifies_of_one_token_give_exactly_one_session() {
    let db = TestDb::new().await;
    let link = store::request_magic_link(
        &mut db.pool.get().await.expect("client"),
        &email("race@example.com"),
        TTL,
        &ctx(),
    )
    .await
    .expect("link");
    let text = link.token.expose().to_owned();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let pool = db.pool.clone();
        let text = text.clone();
        tasks.push(tokio::spawn(async move {
            let token = OneTimeToken::parse(&text).expect("token");
            store::verify_magic_link(
                &mut pool.get().await.expect("client"),
                &token,
                SESSION,
                &AuditContext::default(),
            )
            .await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.expect("join") {
            Ok(_) => ok += 1,
            Err(IdentityError::InvalidToken) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(ok, 1);
    let client = db.pool.get().await.expect("client");
    let sessions: i64 = client
        .query_one("SELECT count(*) FROM sessions", &[])
        .await
        .expect("n")
        .get(0);
    assert_eq!(sessions, 1);
}

#[tokio::test]
async fn concurrent_mutual_demotion_of_the_last_two_owners_leaves_an_owner() {
    for _round in 0..5 {
        let db = TestDb::new().await;
        let a = sign_in(&db, "a@example.com").await.user.id;
        let b = sign_in(&db, "b@example.com").await.user.id;
        let org = store::create_org(
            &mut db.pool.get().await.expect("client"),
            a,
            &OrgSlug::parse("duo").expect("slug"),
            &OrgName::parse("Duo").expect("name"),
            &ctx(),
        )
        .await
        .expect("org");
        let client = db.pool.get().await.expect("client");
        client
            .execute(
                "INSERT INTO memberships (org_id, user_id, role) VALUES ($1, $2, 'owner')",
                &[&org.id.as_uuid(), &b.as_uuid()],
            )
            .await
            .expect("second owner");
        let c = ctx();
        let (mut ca, mut cb) = (
            db.pool.get().await.expect("client"),
            db.pool.get().await.expect("client"),
        );
        let (ra, rb) = tokio::join!(
            store::set_role(&mut ca, a, org.id, b, Role::Member, &c),
            store::set_role(&mut cb, b, org.id, a, Role::Member, &c),
        );
        assert!(
            ra.is_ok() != rb.is_ok(),
            "exactly one demotion wins: {ra:?} {rb:?}"
        );
        let owners: i64 = client
            .query_one(
                "SELECT count(*) FROM memberships WHERE org_id = $1 AND role = 'owner'",
                &[&org.id.as_uuid()],
            )
            .await
            .expect("n")
            .get(0);
        assert_eq!(owners, 1);
    }
}

#[tokio::test]
async fn the_last_owner_cannot_leave_or_be_demoted() {
    let db = TestDb::new().await;
    let (a, org) = owner_of_personal_org(&db, "a@example.com").await;
    assert!(matches!(
        store::set_role(
            &mut db.pool.get().await.expect("client"),
            a,
            org,
            a,
            Role::Member,
            &ctx()
        )
        .await,
        Err(IdentityError::LastOwner)
    ));
    assert!(matches!(
        store::remove_member(&mut db.pool.get().await.expect("client"), a, org, a, &ctx()).await,
        Err(IdentityError::LastOwner)
    ));
}

#[tokio::test]
async fn invites_are_single_use_bound_and_revocable() {
    let db = TestDb::new().await;
    let (owner, org) = owner_of_personal_org(&db, "owner@example.com").await;
    let client = db.pool.get().await.expect("client");
    let (invite, token) = store::create_invite(
        &mut db.pool.get().await.expect("client"),
        owner,
        org,
        &email("new@example.com"),
        Role::Member,
        TTL,
        &ctx(),
    )
    .await
    .expect("invite");
    let pending = store::list_invites(&client, org, PageRequest::new(None, None))
        .await
        .expect("list");
    assert_eq!(pending.items.len(), 1);
    let (session, joined) = store::accept_invite(
        &mut db.pool.get().await.expect("client"),
        &token,
        SESSION,
        &ctx(),
    )
    .await
    .expect("accept");
    assert_eq!(joined, org);
    assert_eq!(session.user.email, "new@example.com");
    assert_eq!(
        store::role_of(&client, org, session.user.id)
            .await
            .expect("role"),
        Some(Role::Member)
    );
    assert!(matches!(
        store::accept_invite(
            &mut db.pool.get().await.expect("client"),
            &token,
            SESSION,
            &ctx()
        )
        .await,
        Err(IdentityError::InvalidToken)
    ));
    assert!(
        store::list_invites(&client, org, PageRequest::new(None, None))
            .await
            .expect("list")
            .items
            .is_empty()
    );
    assert!(matches!(
        store::revoke_invite(
            &mut db.pool.get().await.expect("client"),
            owner,
            org,
            invite.id,
            &ctx()
        )
        .await,
        Err(IdentityError::NotFound)
    ));

    // A revoked invite cannot be accepted; inviting a member is a conflict.
    let (second, token2) = store::create_invite(
        &mut db.pool.get().await.expect("client"),
        owner,
        org,
        &email("other@example.com"),
        Role::Owner,
        TTL,
        &ctx(),
    )
    .await
    .expect("invite");
    store::revoke_invite(
        &mut db.pool.get().await.expect("client"),
        owner,
        org,
        second.id,
        &ctx(),
    )
    .await
    .expect("revoke");
    assert!(matches!(
        store::accept_invite(
            &mut db.pool.get().await.expect("client"),
            &token2,
            SESSION,
            &ctx()
        )
        .await,
        Err(IdentityError::InvalidToken)
    ));
    assert!(matches!(
        store::create_invite(
            &mut db.pool.get().await.expect("client"),
            owner,
            org,
            &email("new@example.com"),
            Role::Member,
            TTL,
            &ctx()
        )
        .await,
        Err(IdentityError::AlreadyMember)
    ));
}

#[tokio::test]
async fn a_pending_invite_to_the_same_address_is_reused_with_a_fresh_link() {
    let db = TestDb::new().await;
    let (owner, org) = owner_of_personal_org(&db, "owner@example.com").await;
    let client = db.pool.get().await.expect("client");
    let (first, token) = store::create_invite(
        &mut db.pool.get().await.expect("client"),
        owner,
        org,
        &email("late@example.com"),
        Role::Member,
        TTL,
        &ctx(),
    )
    .await
    .expect("invite");
    let (second, token2) = store::create_invite(
        &mut db.pool.get().await.expect("client"),
        owner,
        org,
        &email("LATE@Example.com"),
        Role::Owner,
        TTL,
        &ctx(),
    )
    .await
    .expect("second invite");
    assert_eq!(second.id, first.id, "one pending invite per address");
    assert_eq!(second.role, Role::Owner);
    let pending = store::list_invites(&client, org, PageRequest::new(None, None))
        .await
        .expect("list");
    assert_eq!(pending.items.len(), 1);
    assert!(
        matches!(
            store::accept_invite(
                &mut db.pool.get().await.expect("client"),
                &token,
                SESSION,
                &ctx()
            )
            .await,
            Err(IdentityError::InvalidToken)
        ),
        "the earlier link stopped working"
    );
    let (session, _) = store::accept_invite(
        &mut db.pool.get().await.expect("client"),
        &token2,
        SESSION,
        &ctx(),
    )
    .await
    .expect("accept");
    assert_eq!(
        store::role_of(&client, org, session.user.id)
            .await
            .expect("role"),
        Some(Role::Owner)
    );
    let reused: Vec<bool> = client
        .query(
            "SELECT (details->>'reused')::boolean FROM audit_events WHERE action = 'invite.create' ORDER BY id",
            &[],
        )
        .await
        .expect("audit")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(reused, [false, true]);
}

#[tokio::test]
async fn api_keys_authenticate_until_revoked_or_expired() {
    let db = TestDb::new().await;
    let (owner, org) = owner_of_personal_org(&db, "owner@example.com").await;
    let client = db.pool.get().await.expect("client");
    let (key, secret) = store::create_api_key(
        &mut db.pool.get().await.expect("client"),
        owner,
        org,
        &defendable_identity::ApiKeyName::parse("ci").expect("name"),
        None,
        &ctx(),
    )
    .await
    .expect("key");
    let stored: Vec<u8> = client
        .query_one("SELECT secret_hash FROM api_keys", &[])
        .await
        .expect("row")
        .get(0);
    assert_eq!(stored, secret.hash().as_bytes());

    let auth = Authenticator::new(SessionKeys::new(
        b"0123456789abcdef0123456789abcdef",
        None,
        SESSION,
    ));
    let (p, _) = auth
        .authenticate_pooled(&db.pool, secret.expose())
        .await
        .expect("valid key");
    assert_eq!(p, Principal::ApiKey { key: key.id, org });

    store::revoke_api_key(
        &mut db.pool.get().await.expect("client"),
        owner,
        org,
        key.id,
        &ctx(),
    )
    .await
    .expect("revoke");
    // Another process (a fresh authenticator) refuses at once; this one within the cache period.
    let other = Authenticator::new(SessionKeys::new(
        b"0123456789abcdef0123456789abcdef",
        None,
        SESSION,
    ));
    assert!(other
        .authenticate_pooled(&db.pool, secret.expose())
        .await
        .is_err());
    tokio::time::sleep(defendable_identity::authn::CACHE_TTL + Duration::from_millis(100)).await;
    assert!(auth
        .authenticate_pooled(&db.pool, secret.expose())
        .await
        .is_err());

    let (expiring, secret2) = store::create_api_key(
        &mut db.pool.get().await.expect("client"),
        owner,
        org,
        &defendable_identity::ApiKeyName::parse("short").expect("name"),
        None,
        &ctx(),
    )
    .await
    .expect("key");
    client
        .execute(
            "UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE id = $1",
            &[&expiring.id.as_uuid()],
        )
        .await
        .expect("expire");
    assert!(other
        .authenticate_pooled(&db.pool, secret2.expose())
        .await
        .is_err());
}

#[tokio::test]
async fn sessions_verify_with_the_previous_secret_during_rotation_and_end_on_logout() {
    let db = TestDb::new().await;
    let s = sign_in(&db, "a@example.com").await;
    let old = SessionKeys::new(b"old-secret-old-secret-old-secret-0", None, SESSION);
    let token = old.issue(
        s.user.id,
        s.session,
        time::OffsetDateTime::now_utc().unix_timestamp(),
        s.expires_at.unix_timestamp(),
    );
    let rotated = Authenticator::new(SessionKeys::new(
        b"new-secret-new-secret-new-secret-1",
        Some(b"old-secret-old-secret-old-secret-0"),
        SESSION,
    ));
    let (p, used) = rotated
        .authenticate_pooled(&db.pool, &token)
        .await
        .expect("old token still valid");
    assert_eq!(used, Some(KeyUsed::Previous));
    assert_eq!(
        p,
        Principal::User {
            user: s.user.id,
            session: s.session,
            sso: None,
        }
    );
    let unrotated = Authenticator::new(SessionKeys::new(
        b"new-secret-new-secret-new-secret-1",
        None,
        SESSION,
    ));
    assert!(unrotated
        .authenticate_pooled(&db.pool, &token)
        .await
        .is_err());

    store::revoke_session(
        &mut db.pool.get().await.expect("client"),
        s.user.id,
        s.session,
        &ctx(),
    )
    .await
    .expect("logout");
    rotated.forget_session(s.session);
    assert!(rotated.authenticate_pooled(&db.pool, &token).await.is_err());
}
