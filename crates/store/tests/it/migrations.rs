//! Migrations apply once, concurrently safe, and report their version.

use defendable_store::{latest_version, migrate, schema_version};
use defendable_testkit::TestDb;

#[tokio::test]
async fn a_fresh_database_is_at_the_latest_version_and_migrating_again_is_a_no_op() {
    let db = TestDb::new().await;
    let client = db.pool.get().await.expect("client");
    assert_eq!(
        schema_version(&client).await.expect("version"),
        Some(latest_version())
    );
    // Several processes booting at once: all succeed, none applies twice.
    let (p2, p3) = (db.another_pool(2), db.another_pool(2));
    let (a, b, c) = tokio::join!(migrate(&db.pool), migrate(&p2), migrate(&p3));
    a.expect("a");
    b.expect("b");
    c.expect("c");
    let applied: i64 = client
        .query_one("SELECT count(*) FROM refinery_schema_history", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(applied, latest_version());
}

/// Connections try TLS (`sslmode=prefer`, the default, falls back to plain on a server without
/// it); `sslmode=require` refuses a server that cannot do TLS instead of sending in clear.
#[tokio::test]
async fn sslmode_require_refuses_a_server_without_tls() {
    let db = TestDb::new().await;
    let prefer = defendable_store::pool(db.url(), 1).expect("pool");
    let client = prefer.get().await.expect("prefer falls back to plain");
    client.query_one("SELECT 1", &[]).await.expect("query");
    let require =
        defendable_store::pool(&format!("{} sslmode=require", db.url()), 1).expect("pool");
    let err = require.get().await.expect_err("require must not fall back");
    assert!(
        format!("{err:?}").to_lowercase().contains("tls")
            || format!("{err:?}").to_lowercase().contains("ssl"),
        "{err:?}"
    );
}

/// V8: addresses that differed only in case were separate users; they become one (the oldest),
/// which takes every membership (owner where any was owner); the others lose their sessions
/// and memberships, keep their rows under an undeliverable address, and are listed and audited.
/// Pending invites to one address in one organization collapse to the newest.
#[tokio::test]
async fn v8_merges_users_whose_emails_differ_only_in_case_and_lowercases_every_address() {
    let db = TestDb::empty().await;
    defendable_store::migrate_to(&db.pool, 7).await.expect("V7");
    let client = db.pool.get().await.expect("client");
    let (old, new, other) = (
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4(),
    );
    let (org_a, org_b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    client
        .batch_execute(&format!(
            "INSERT INTO users (id, email, created_at) VALUES
                 ('{old}', 'Alice@example.com', now() - interval '2 days'),
                 ('{new}', 'alice@example.com', now() - interval '1 day'),
                 ('{other}', 'Bob@Example.com', now());
             INSERT INTO orgs (id, slug, name) VALUES ('{org_a}', 'org-a', 'A'), ('{org_b}', 'org-b', 'B');
             INSERT INTO memberships (org_id, user_id, role) VALUES
                 ('{org_a}', '{old}', 'member'), ('{org_a}', '{new}', 'owner'),
                 ('{org_b}', '{new}', 'member');
             INSERT INTO sessions (id, user_id, expires_at) VALUES
                 (gen_random_uuid(), '{new}', now() + interval '1 day');
             INSERT INTO invites (id, org_id, email, role, token_hash, invited_by, created_at, expires_at) VALUES
                 (gen_random_uuid(), '{org_a}', 'Carol@x.org', 'member', sha256('1'), '{old}', now() - interval '1 hour', now() + interval '1 day'),
                 (gen_random_uuid(), '{org_a}', 'carol@x.org', 'owner', sha256('2'), '{old}', now(), now() + interval '1 day');"
        ))
        .await
        .expect("V7 data");
    migrate(&db.pool).await.expect("V8");

    let emails: Vec<(uuid::Uuid, String)> = client
        .query("SELECT id, email FROM users ORDER BY created_at", &[])
        .await
        .expect("users")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        emails,
        [
            (old, "alice@example.com".to_owned()),
            (new, format!("merged+{new}@invalid")),
            (other, "bob@example.com".to_owned()),
        ]
    );
    let memberships: Vec<(String, uuid::Uuid, String)> = client
        .query(
            "SELECT o.slug, m.user_id, m.role FROM memberships m JOIN orgs o ON o.id = m.org_id ORDER BY o.slug",
            &[],
        )
        .await
        .expect("memberships")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        memberships,
        [
            ("org-a".to_owned(), old, "owner".to_owned()),
            ("org-b".to_owned(), old, "member".to_owned()),
        ]
    );
    let live_sessions: i64 = client
        .query_one(
            "SELECT count(*) FROM sessions WHERE user_id = $1 AND revoked_at IS NULL",
            &[&new],
        )
        .await
        .expect("sessions")
        .get(0);
    assert_eq!(live_sessions, 0);
    let merged: Vec<(uuid::Uuid, uuid::Uuid, String)> = client
        .query(
            "SELECT user_id, kept_user_id, original_email FROM email_case_merges",
            &[],
        )
        .await
        .expect("merges")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(merged, [(new, old, "alice@example.com".to_owned())]);
    let audited: i64 = client
        .query_one(
            "SELECT count(*) FROM audit_events WHERE action = 'user.email_case_merge' AND target = $1",
            &[&format!("user:{new}")],
        )
        .await
        .expect("audit")
        .get(0);
    assert_eq!(audited, 1);
    let pending: Vec<(String, String)> = client
        .query(
            "SELECT email, role FROM invites WHERE revoked_at IS NULL AND accepted_at IS NULL",
            &[],
        )
        .await
        .expect("invites")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        pending,
        [("carol@x.org".to_owned(), "owner".to_owned())],
        "the newest pending invite is kept"
    );
    let mixed = client
        .execute(
            "INSERT INTO users (id, email) VALUES (gen_random_uuid(), 'Dave@example.com')",
            &[],
        )
        .await;
    assert!(
        mixed.is_err(),
        "a mixed-case address is refused from now on"
    );
}

/// V13: a membership whose latest role change came from single sign-on or SCIM becomes
/// `idp_managed` (groups that stop mapping remove it); one an owner changed last, or one with
/// no such change, does not.
#[tokio::test]
async fn v13_marks_memberships_whose_role_the_identity_provider_set_last() {
    let db = TestDb::empty().await;
    defendable_store::migrate_to(&db.pool, 12)
        .await
        .expect("V12");
    let client = db.pool.get().await.expect("client");
    let org = uuid::Uuid::new_v4();
    let (sso, scim, owner_changed, invited) = (
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4(),
    );
    client
        .batch_execute(&format!(
            "INSERT INTO users (id, email) VALUES
                 ('{sso}', 'sso@x.test'), ('{scim}', 'scim@x.test'),
                 ('{owner_changed}', 'owner@x.test'), ('{invited}', 'invited@x.test');
             INSERT INTO orgs (id, slug, name) VALUES ('{org}', 'org-v13', 'V13');
             INSERT INTO memberships (org_id, user_id, role) VALUES
                 ('{org}', '{sso}', 'member'), ('{org}', '{scim}', 'owner'),
                 ('{org}', '{owner_changed}', 'owner'), ('{org}', '{invited}', 'member');
             INSERT INTO audit_events (action, actor_kind, org_id, target, details) VALUES
                 ('member.role_change', 'user', '{org}', 'user:{sso}', '{{\"from\": null, \"to\": \"member\", \"source\": \"sso\"}}'),
                 ('member.role_change', 'scim', '{org}', 'user:{scim}', '{{\"from\": null, \"to\": \"owner\", \"source\": \"scim\"}}'),
                 ('member.role_change', 'user', '{org}', 'user:{owner_changed}', '{{\"from\": null, \"to\": \"member\", \"source\": \"sso\"}}'),
                 ('member.role_change', 'user', '{org}', 'user:{owner_changed}', '{{\"from\": \"member\", \"to\": \"owner\"}}'),
                 ('invite.accept', 'user', '{org}', 'invite:x', '{{\"outcome\": \"ok\"}}');"
        ))
        .await
        .expect("V12 data");
    migrate(&db.pool).await.expect("V13");
    let managed: Vec<(uuid::Uuid, bool)> = client
        .query(
            "SELECT user_id, idp_managed FROM memberships WHERE org_id = $1",
            &[&org],
        )
        .await
        .expect("memberships")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    for (user, expected) in [
        (sso, true),
        (scim, true),
        (owner_changed, false),
        (invited, false),
    ] {
        assert!(
            managed.contains(&(user, expected)),
            "{user}: expected {expected} in {managed:?}"
        );
    }
}

/// V14: the head hash check is rewritten to be cheaper and keeps its rule: exactly 64 lowercase
/// hex digits, on rows from before the migration and after it.
#[tokio::test]
async fn v14_head_hashes_remain_64_lowercase_hex_digits() {
    let db = TestDb::empty().await;
    defendable_store::migrate_to(&db.pool, 13)
        .await
        .expect("V13");
    let client = db.pool.get().await.expect("client");
    let good = "0123456789abcdef".repeat(4);
    client
        .execute(
            "INSERT INTO ledger_heads (org_id, seq, hash) VALUES ($1, 0, $2)",
            &[&uuid::Uuid::new_v4(), &good],
        )
        .await
        .expect("a head from before V14");
    migrate(&db.pool).await.expect("V14");
    let insert = |hash: String| {
        let client = &client;
        async move {
            client
                .execute(
                    "INSERT INTO ledger_heads (org_id, seq, hash) VALUES ($1, 0, $2)",
                    &[&uuid::Uuid::new_v4(), &hash],
                )
                .await
        }
    };
    insert(good.clone()).await.expect("64 lowercase hex digits");
    for bad in [
        good.to_uppercase(),
        good[..63].to_owned(),
        format!("{good}0"),
        format!("{}g", &good[..63]),
        format!("{}\n", &good[..63]),
        String::new(),
    ] {
        let err = insert(bad.clone()).await.expect_err(&bad);
        assert_eq!(
            err.code(),
            Some(&tokio_postgres::error::SqlState::CHECK_VIOLATION),
            "{bad:?}: {err}"
        );
    }
}
