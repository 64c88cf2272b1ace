//! The single sign-on use cases called directly, with no HTTP server of ours: `login::begin` and
//! `login::finish` against a real OpenID Provider (oidc-provider on loopback) and PostgreSQL.
//! They hold the sign-in rules (one use, one browser, a verified email in a verified domain, the
//! role from the group mapping), deprovisioning when the groups stop mapping, and the
//! break-glass rule enforcement needs. The HTTP tests keep the wiring, the matrix and the pages.

use std::collections::BTreeMap;
use std::time::Duration;

use defendable_identity::store as identity;
use defendable_identity::{OneTimeToken, OrgId, Role, UserId};
use defendable_sso::egress::Egress;
use defendable_sso::login::{self, Deployment};
use defendable_sso::oidc::OidcClient;
use defendable_sso::sealed::SecretKeys;
use defendable_sso::store::{self, Change, ConnectionPatch, NewConnection};
use defendable_sso::view::{SsoCallback, StartSso};
use defendable_sso::{ClientId, ClientSecret, DomainName, GroupRoles, Issuer, Provider, SsoError};
use defendable_store::audit::AuditContext;
use defendable_testkit::oidc::OidcProvider;
use defendable_testkit::TestDb;
use serde_json::{json, Value};

const CALLBACK: &str = "http://127.0.0.1:9/auth/sso/callback";
const SECRET: &str = "provider-secret-Hj4Kl7Zx1Cv9";

/// A pooled connection, as the server's `Db` hands one out: the connection source the use
/// cases take is `|| pooled(&db)`.
async fn pooled(db: &TestDb) -> Result<Box<deadpool_postgres::Object>, SsoError> {
    Ok(Box::new(db.pool.get().await?))
}

fn accounts(bob_groups: Value) -> Value {
    json!({
        "ann": {"email": "ann@corp.test", "email_verified": true, "groups": ["admins"]},
        "bob": {"email": "bob@corp.test", "email_verified": true, "groups": bob_groups},
        "eve": {"email": "eve@corp.test", "email_verified": false, "groups": ["engineering"]},
        "out": {"email": "out@elsewhere.test", "email_verified": true, "groups": ["engineering"]},
    })
}

/// An organization that verified corp.test, with a connection to `provider` that maps
/// `admins` to owner and `engineering` to member (no default role).
async fn organization(db: &TestDb, provider: &OidcProvider, keys: &SecretKeys) -> (OrgId, UserId) {
    let (org, owner) = crate::store::org(db).await;
    let ctx = AuditContext::default();
    let change = || Change {
        org,
        actor: owner,
        ctx: &ctx,
    };
    let corp = DomainName::parse("corp.test").expect("domain");
    let mut client = db.pool.get().await.expect("client");
    store::add_domain(&mut client, change(), &corp)
        .await
        .expect("claim");
    store::mark_verified(&mut client, change(), &corp)
        .await
        .expect("verify");
    let group_roles: BTreeMap<String, String> = [
        ("admins".to_owned(), "owner".to_owned()),
        ("engineering".to_owned(), "member".to_owned()),
    ]
    .into();
    let settings = NewConnection {
        provider: Provider::Generic,
        issuer: Issuer::parse(&provider.issuer, true).expect("issuer"),
        client_id: ClientId::parse("defendable").expect("client id"),
        client_secret: ClientSecret::parse(SECRET).expect("secret"),
        domains: vec![corp, DomainName::parse("elsewhere.test").expect("domain")],
        group_roles: GroupRoles::parse(&group_roles).expect("mapping"),
        default_role: None,
        enforced: false,
    };
    store::create_connection(&mut client, keys, change(), settings)
        .await
        .expect("connection");
    (org, owner)
}

/// Begins a browser sign-in for `email`, signs in at the provider as `account`, and answers the
/// provider's redirect as the callback's query with the browser binding.
async fn through_provider(
    db: &TestDb,
    deployment: &Deployment<'_>,
    provider: &OidcProvider,
    email: &str,
    account: &str,
) -> (SsoCallback, Option<String>) {
    let start = StartSso {
        email: Some(email.to_owned()),
        ..StartSso::default()
    };
    let begun = login::begin(|| pooled(db), deployment, &start)
        .await
        .expect("begin");
    assert!(begun.browser.is_some(), "a browser sign-in is bound");
    let back = provider
        .sign_in(&begun.started.authorization_url, account)
        .await;
    let back = url::Url::parse(&back).expect("redirect");
    let param = |name: &str| {
        back.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    let callback = SsoCallback {
        code: param("code"),
        state: param("state"),
        iss: param("iss"),
        error: param("error"),
    };
    (callback, begun.browser)
}

/// Redeems the one-time link `target` carries: the user it signs in.
async fn redeem(db: &TestDb, target: &url::Url) -> UserId {
    assert_eq!(target.path(), "/auth/callback", "{target}");
    let token = target
        .query_pairs()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
        .expect("token");
    let session = identity::redeem_link(
        &mut db.pool.get().await.expect("client"),
        &OneTimeToken::parse(&token).expect("token"),
        None,
        Duration::from_secs(3600),
        &AuditContext::default(),
    )
    .await
    .expect("a session");
    session.user.id
}

/// `user`'s role in `org`, if a member.
async fn role(db: &TestDb, org: OrgId, user: UserId) -> Option<Role> {
    db.pool
        .get()
        .await
        .expect("client")
        .query_opt(
            "SELECT role FROM memberships WHERE org_id = $1 AND user_id = $2",
            &[&org.as_uuid(), &user.as_uuid()],
        )
        .await
        .expect("membership")
        .map(|r| Role::parse(r.get(0)).expect("role"))
}

fn refusal(outcome: Result<url::Url, SsoError>) -> String {
    match outcome {
        Err(SsoError::Refused(why)) => why,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn begin_and_finish_provision_by_group_refuse_every_bad_callback_and_deprovision() {
    let db = TestDb::new().await;
    let provider = OidcProvider::start(
        &accounts(json!(["engineering"])),
        &json!([{
            "client_id": "defendable",
            "client_secret": SECRET,
            "redirect_uris": [CALLBACK],
        }]),
    );
    let keys = SecretKeys::new("sso-login-key-Qw3Er6Ty9Ui2Op5As8Df1Gh4", None);
    let (org, _owner) = organization(&db, &provider, &keys).await;
    let oidc = OidcClient::new(Egress {
        allow_internal: true,
        allowed: Vec::new(),
    })
    .expect("client");
    let mut sign_in_page = url::Url::parse("https://app.example.test").expect("url");
    sign_in_page.set_path("/auth/callback");
    let deployment = Deployment {
        oidc: &oidc,
        keys: Some(&keys),
        allow_http_issuers: true,
        callback_url: CALLBACK.to_owned(),
        sign_in_page,
        link_ttl: Duration::from_secs(600),
        session_ttl: Duration::from_secs(8 * 3600),
    };
    let ctx = AuditContext::default();

    // Just in time, with the role the groups map to.
    let (ann_back, ann_browser) =
        through_provider(&db, &deployment, &provider, "ann@corp.test", "ann").await;
    let target = login::finish(
        || pooled(&db),
        &deployment,
        &ann_back,
        ann_browser.as_deref(),
        &ctx,
    )
    .await
    .expect("ann signs in");
    let ann = redeem(&db, &target).await;
    assert_eq!(role(&db, org, ann).await, Some(Role::Owner));
    let (back, browser) =
        through_provider(&db, &deployment, &provider, "bob@corp.test", "bob").await;
    let bob = redeem(
        &db,
        &login::finish(|| pooled(&db), &deployment, &back, browser.as_deref(), &ctx)
            .await
            .expect("bob signs in"),
    )
    .await;
    assert_eq!(role(&db, org, bob).await, Some(Role::Member));

    // Once, in the browser that started it, for a verified address in a verified domain.
    let replay = login::finish(
        || pooled(&db),
        &deployment,
        &ann_back,
        ann_browser.as_deref(),
        &ctx,
    )
    .await;
    assert!(refusal(replay).contains("unknown, used or expired state"));
    let (back, _) = through_provider(&db, &deployment, &provider, "bob@corp.test", "bob").await;
    let elsewhere = login::finish(
        || pooled(&db),
        &deployment,
        &back,
        Some("another browser"),
        &ctx,
    )
    .await;
    assert!(refusal(elsewhere).contains("another browser"));
    let (back, browser) =
        through_provider(&db, &deployment, &provider, "eve@corp.test", "eve").await;
    let unverified =
        login::finish(|| pooled(&db), &deployment, &back, browser.as_deref(), &ctx).await;
    assert!(refusal(unverified).contains("did not verify"));
    let (back, browser) =
        through_provider(&db, &deployment, &provider, "ann@corp.test", "out").await;
    let outside = login::finish(|| pooled(&db), &deployment, &back, browser.as_deref(), &ctx).await;
    assert!(refusal(outside).contains("elsewhere.test is not a verified domain"));
    let mut denied = ann_back.clone();
    denied.error = Some("access_denied".to_owned());
    let denied = login::finish(|| pooled(&db), &deployment, &denied, None, &ctx).await;
    assert!(refusal(denied).contains("access_denied"));

    // Groups that stop mapping take the membership the provider gave; the removal stands
    // although the sign-in is refused.
    provider.set_accounts(&accounts(json!(["sales"])));
    let (back, browser) =
        through_provider(&db, &deployment, &provider, "bob@corp.test", "bob").await;
    let unmapped =
        login::finish(|| pooled(&db), &deployment, &back, browser.as_deref(), &ctx).await;
    assert!(refusal(unmapped).contains("membership was removed"));
    assert_eq!(role(&db, org, bob).await, None);
}

#[tokio::test]
async fn a_sign_in_starts_only_where_a_verified_domain_routes_and_enforcement_needs_break_glass() {
    let db = TestDb::new().await;
    let provider = OidcProvider::start(&accounts(json!([])), &json!([]));
    let keys = SecretKeys::new("sso-login-key-Qw3Er6Ty9Ui2Op5As8Df1Gh4", None);
    let (org, owner) = organization(&db, &provider, &keys).await;
    let oidc = OidcClient::new(Egress {
        allow_internal: true,
        allowed: Vec::new(),
    })
    .expect("client");
    let deployment = Deployment {
        oidc: &oidc,
        keys: Some(&keys),
        allow_http_issuers: true,
        callback_url: CALLBACK.to_owned(),
        sign_in_page: url::Url::parse("https://app.example.test/auth/callback").expect("url"),
        link_ttl: Duration::from_secs(600),
        session_ttl: Duration::from_secs(3600),
    };
    let begin = |start: StartSso| {
        let deployment = &deployment;
        let db = &db;
        async move { login::begin(|| pooled(db), deployment, &start).await }
    };
    // elsewhere.test is listed but never verified: it routes nowhere.
    let unverified = begin(StartSso {
        email: Some("x@elsewhere.test".to_owned()),
        ..StartSso::default()
    })
    .await;
    assert!(
        matches!(unverified, Err(SsoError::Refused(ref why)) if why.contains("elsewhere.test")),
        "{unverified:?}"
    );
    let two = begin(StartSso {
        email: Some("x@corp.test".to_owned()),
        org: Some("rotate".to_owned()),
        ..StartSso::default()
    })
    .await;
    assert!(matches!(two, Err(SsoError::InvalidInput(_))), "{two:?}");
    let by_org = begin(StartSso {
        org: Some("rotate".to_owned()),
        ..StartSso::default()
    })
    .await
    .expect("the organization's one connection");
    assert!(by_org
        .started
        .authorization_url
        .starts_with(&provider.issuer));

    // Enforcing single sign-on needs a break-glass owner first.
    let ctx = AuditContext::default();
    let change = || Change {
        org,
        actor: owner,
        ctx: &ctx,
    };
    let client = db.pool.get().await.expect("client");
    let connection = login::connection_for_org(&client, org)
        .await
        .expect("connection");
    let enforce = || ConnectionPatch {
        enforced: Some(true),
        ..ConnectionPatch::default()
    };
    let mut client = client;
    let refused =
        store::update_connection(&mut client, &keys, change(), connection.id, enforce()).await;
    assert!(
        matches!(refused, Err(SsoError::BreakGlassRequired(_))),
        "{refused:?}"
    );
    store::set_break_glass(&mut client, change(), owner, true)
        .await
        .expect("break-glass owner");
    let enforced = store::update_connection(&mut client, &keys, change(), connection.id, enforce())
        .await
        .expect("enforced");
    assert!(enforced.enforced);
    let last = store::set_break_glass(&mut client, change(), owner, false).await;
    assert!(
        matches!(last, Err(SsoError::BreakGlassRequired(_))),
        "{last:?}"
    );
}
