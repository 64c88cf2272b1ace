use std::time::Duration;

use defendable_identity::store as identity;
use defendable_identity::{Email, OrgName, OrgSlug, Role};
use defendable_sso::login;
use defendable_sso::sealed::SecretKeys;
use defendable_sso::store::{self, Change, ConnectionPatch, NewConnection};
use defendable_sso::{ClientId, ClientSecret, DomainName, Issuer, Provider, SsoError};
use defendable_store::audit::AuditContext;
use defendable_testkit::TestDb;

const OLD: &str = "sso-old-key-Qw3Er6Ty9Ui2Op5As8Df1Gh4";
const NEW: &str = "sso-new-key-Zx4Cv7Bn0Mq3Wr6Ty9Ui2Op5";

/// An organization and its owner on a fresh database.
pub(crate) async fn org(db: &TestDb) -> (defendable_identity::OrgId, defendable_identity::UserId) {
    let ctx = AuditContext::default();
    let email = Email::parse("owner@rotate.test").expect("email");
    let link = identity::request_magic_link(
        &mut db.pool.get().await.expect("client"),
        &email,
        Duration::from_secs(60),
        &ctx,
    )
    .await
    .expect("link");
    let signed_in = identity::verify_magic_link(
        &mut db.pool.get().await.expect("client"),
        &link.token,
        Duration::from_secs(3600),
        &ctx,
    )
    .await
    .expect("verify");
    let org = identity::create_org(
        &mut db.pool.get().await.expect("client"),
        signed_in.user.id,
        &OrgSlug::parse("rotate").expect("slug"),
        &OrgName::parse("Rotate").expect("name"),
        &ctx,
    )
    .await
    .expect("org");
    (org.id, signed_in.user.id)
}

/// A generic connection for rotate.test whose secret is `first-secret`.
fn connection_settings() -> NewConnection {
    NewConnection {
        provider: Provider::Generic,
        issuer: Issuer::parse("https://idp.rotate.test", false).expect("issuer"),
        client_id: ClientId::parse("rotate").expect("id"),
        client_secret: ClientSecret::parse("first-secret").expect("secret"),
        domains: vec![DomainName::parse("rotate.test").expect("domain")],
        group_roles: Default::default(),
        default_role: Some(Role::Member),
        enforced: false,
    }
}

#[tokio::test]
async fn a_rotation_reseals_on_the_next_change_and_the_old_key_alone_no_longer_opens() {
    let db = TestDb::new().await;
    let (org, owner) = org(&db).await;
    let ctx = AuditContext::default();
    let change = Change {
        org,
        actor: owner,
        ctx: &ctx,
    };
    let old = SecretKeys::new(OLD, None);
    let created = store::create_connection(
        &mut db.pool.get().await.expect("client"),
        &old,
        change,
        connection_settings(),
    )
    .await
    .expect("create");
    assert_eq!(created.secret_key_id(), old.current_id());

    // During the rotation both keys are configured: the stored secret still opens.
    let rotating = SecretKeys::new(NEW, Some(OLD));
    let read = store::get_connection(&db.pool.get().await.expect("client"), org, created.id)
        .await
        .expect("get");
    assert_eq!(
        read.client_secret(&rotating).expect("opens").expose(),
        "first-secret"
    );

    // The next change re-seals under the new key, secret unchanged.
    let updated = store::update_connection(
        &mut db.pool.get().await.expect("client"),
        &rotating,
        change,
        created.id,
        ConnectionPatch {
            default_role: Some(None),
            ..Default::default()
        },
    )
    .await
    .expect("update");
    assert_eq!(updated.secret_key_id(), rotating.current_id());
    let after = SecretKeys::new(NEW, None);
    assert_eq!(
        updated.client_secret(&after).expect("opens").expose(),
        "first-secret"
    );
    assert!(matches!(
        updated.client_secret(&old),
        Err(SsoError::SealedWithUnknownKey)
    ));

    // Both changes are receipts in the organization's chain, which verifies.
    let client = db.pool.get().await.expect("client");
    let kinds: Vec<String> = client
        .query(
            "SELECT kind FROM receipts WHERE org_id = $1 ORDER BY seq",
            &[&org.as_uuid()],
        )
        .await
        .expect("receipts")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(kinds, ["idp.config_change", "idp.config_change"]);
    let report = defendable_ledger::store::verify_org(&client, org.as_uuid())
        .await
        .expect("verify");
    assert!(report.failure.is_none(), "{report:?}");
}

#[tokio::test]
async fn expired_sign_ins_are_pruned_and_a_live_one_is_taken_once_by_its_browser() {
    let db = TestDb::new().await;
    let (org, owner) = org(&db).await;
    let ctx = AuditContext::default();
    let created = store::create_connection(
        &mut db.pool.get().await.expect("client"),
        &SecretKeys::new(OLD, None),
        Change {
            org,
            actor: owner,
            ctx: &ctx,
        },
        connection_settings(),
    )
    .await
    .expect("create");
    let client = db.pool.get().await.expect("client");
    let old = login::start(&client, created.id, &login::Binding::Browser, None)
        .await
        .expect("start");
    let live = login::start(&client, created.id, &login::Binding::Browser, None)
        .await
        .expect("start");
    client
        .execute(
            "UPDATE sso_logins SET expires_at = now() - interval '2 hours'
             WHERE created_at = (SELECT min(created_at) FROM sso_logins)",
            &[],
        )
        .await
        .expect("age one");
    assert_eq!(
        login::prune(&client, Duration::from_secs(3600))
            .await
            .expect("prune"),
        1
    );
    assert!(login::take(&client, &old.state, old.browser.as_deref())
        .await
        .is_err());
    assert!(login::take(&client, &live.state, Some("another-browser"))
        .await
        .is_err());
    let remaining: i64 = client
        .query_one("SELECT count(*) FROM sso_logins", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(remaining, 1, "a consumed sign-in stays until it expires");
}

/// A connection made of `settings` for an organization that has verified each of its domains.
async fn verified_connection(
    db: &TestDb,
    org: defendable_identity::OrgId,
    owner: defendable_identity::UserId,
    settings: NewConnection,
) -> store::Connection {
    let client = db.pool.get().await.expect("client");
    for domain in &settings.domains {
        client
            .execute(
                "INSERT INTO org_domains (org_id, domain, challenge, verified_at) VALUES ($1, $2, 'c', now())",
                &[&org.as_uuid(), &domain.as_str()],
            )
            .await
            .expect("verified domain");
    }
    store::create_connection(
        &mut db.pool.get().await.expect("client"),
        &SecretKeys::new(NEW, None),
        Change {
            org,
            actor: owner,
            ctx: &AuditContext::default(),
        },
        settings,
    )
    .await
    .expect("connection")
}

#[tokio::test]
async fn google_sign_ins_need_the_workspace_of_a_verified_domain_in_hd() {
    let db = TestDb::new().await;
    let (org, owner) = org(&db).await;
    let ctx = AuditContext::default();
    let connection = verified_connection(
        &db,
        org,
        owner,
        NewConnection {
            provider: Provider::Google,
            issuer: Issuer::parse("https://accounts.google.com", false).expect("issuer"),
            domains: vec![
                DomainName::parse("corp.test").expect("domain"),
                DomainName::parse("corp-eu.test").expect("domain"),
            ],
            ..connection_settings()
        },
    )
    .await;
    // A secondary domain's address in the Workspace whose primary domain is corp.test signs in;
    // a personal Google account (no hd) with a company address, or another Workspace, does not.
    let email = Email::parse("ann@corp-eu.test").expect("email");
    for (hd, signs_in) in [
        (None, false),
        (Some("gmail.com"), false),
        (Some("corp.test.evil"), false),
        (Some("corp.test"), true),
    ] {
        let mut client = db.pool.get().await.expect("client");
        let tx = client.transaction().await.expect("tx");
        let outcome = login::complete(&tx, &connection, &email, &[], hd, None, &ctx).await;
        match (signs_in, outcome) {
            (true, Ok(done)) => assert_eq!(done.role, Some(Role::Member)),
            (false, Err(SsoError::Refused(why))) => assert!(why.contains("Google"), "{why}"),
            (want, got) => panic!("hd {hd:?}: want signs_in={want}, got {got:?}"),
        }
    }
}

#[tokio::test]
async fn a_sign_in_mapping_keeps_the_last_break_glass_owner_while_sso_is_enforced() {
    let db = TestDb::new().await;
    let (org, owner) = org(&db).await;
    let ctx = AuditContext::default();
    let client = db.pool.get().await.expect("client");
    let connection = verified_connection(
        &db,
        org,
        owner,
        NewConnection {
            group_roles: defendable_sso::GroupRoles::from_json(
                &serde_json::json!({"admins": "owner", "staff": "member"}),
            )
            .expect("mapping"),
            default_role: None,
            ..connection_settings()
        },
    )
    .await;
    let ann = Email::parse("ann@rotate.test").expect("email");
    let sign_in = |groups: &'static [&'static str]| {
        let (db, connection, ann, ctx) = (&db, &connection, &ann, &ctx);
        async move {
            let groups: Vec<String> = groups.iter().map(|g| (*g).to_owned()).collect();
            let mut client = db.pool.get().await.expect("client");
            let tx = client.transaction().await.expect("tx");
            let done = login::complete(&tx, connection, ann, &groups, None, None, ctx)
                .await
                .expect("completes");
            tx.commit().await.expect("commit");
            done.role
        }
    };
    // Ann becomes an owner through the mapping, then the only break-glass owner of an
    // organization whose connection enforces single sign-on (the creator stays an owner, so
    // the last-owner rule is not what keeps her).
    assert_eq!(sign_in(&["admins"]).await, Some(Role::Owner));
    client
        .execute(
            "UPDATE memberships SET break_glass = (user_id <> $2) WHERE org_id = $1",
            &[&org.as_uuid(), &owner.as_uuid()],
        )
        .await
        .expect("break-glass");
    client
        .execute(
            "UPDATE sso_connections SET enforced = true WHERE org_id = $1",
            &[&org.as_uuid()],
        )
        .await
        .expect("enforced");
    let membership = || async {
        let r = client
            .query_one(
                "SELECT m.role, m.break_glass FROM memberships m JOIN users u ON u.id = m.user_id
                 WHERE m.org_id = $1 AND u.email = 'ann@rotate.test'",
                &[&org.as_uuid()],
            )
            .await
            .expect("ann is still a member");
        (r.get::<_, String>(0), r.get::<_, bool>(1))
    };
    // A mapping to member, then to nothing: each would have taken her owner role (and so the
    // status); both sign-ins complete, and she stays the break-glass owner.
    assert_eq!(sign_in(&["staff"]).await, Some(Role::Owner));
    assert_eq!(membership().await, ("owner".to_owned(), true));
    assert_eq!(sign_in(&[]).await, Some(Role::Owner));
    assert_eq!(membership().await, ("owner".to_owned(), true));
    let kept: i64 = client
        .query_one(
            "SELECT count(*) FROM audit_events WHERE action = 'sso.break_glass_kept' AND org_id = $1",
            &[&org.as_uuid()],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(kept, 2);
    // Without enforcement the mapping applies as before.
    client
        .execute(
            "UPDATE sso_connections SET enforced = false WHERE org_id = $1",
            &[&org.as_uuid()],
        )
        .await
        .expect("not enforced");
    assert_eq!(sign_in(&["staff"]).await, Some(Role::Member));
}
