//! `defendable login --sso` against the real server and a real OpenID Provider on loopback (the
//! npm `oidc-provider`, as in the API's SSO tests): the CLI listens on a loopback port, the
//! browser comes back to it, and the CLI redeems the link with its verifier.

use defendable_testkit::files::outbox_tokens;
use defendable_testkit::oidc::OidcProvider;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};

use crate::server::{finish, Run, Server};

#[actix_web::test]
async fn login_with_sso_takes_the_session_the_browser_brings_back_to_the_cli() {
    let s = Server::start().await;
    let provider = OidcProvider::start(
        &json!({
            "ann": {"email": "ann@corp.test", "email_verified": true, "groups": ["admins"]},
            "dan": {"email": "dan@corp.test", "email_verified": true, "groups": []},
        }),
        &json!([{
            "client_id": "defendable",
            "client_secret": "provider-secret-Hj4Kl7Zx1Cv9",
            "redirect_uris": [format!("{}/auth/sso/callback", s.base)],
        }]),
    );
    s.login("admin@corp.test").await.ok();
    let saved: Value =
        serde_json::from_slice(&std::fs::read(s.credentials()).expect("credentials"))
            .expect("json");
    let owner = saved["servers"][&s.base]["token"]
        .as_str()
        .expect("saved session")
        .to_owned();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let post = |path: &str, body: Value| {
        http.post(format!("{}{path}", s.base))
            .bearer_auth(&owner)
            .json(&body)
            .send()
    };
    let org = post("/orgs", json!({"slug": "corp", "name": "Corp"}))
        .await
        .expect("org");
    assert_eq!(org.status(), 201);
    s.db.pool
        .get()
        .await
        .expect("client")
        .execute(
            "INSERT INTO org_domains (org_id, domain, challenge, verified_at)
             SELECT id, 'corp.test', 'c', now() FROM orgs WHERE slug = 'corp'",
            &[],
        )
        .await
        .expect("verified domain");
    let connection = post(
        "/orgs/corp/sso/connections",
        json!({
            "provider": "generic",
            "issuer": provider.issuer,
            "client_id": "defendable",
            "client_secret": "provider-secret-Hj4Kl7Zx1Cv9",
            "domains": ["corp.test"],
            "group_roles": {"admins": "owner"},
        }),
    )
    .await
    .expect("connection");
    assert_eq!(connection.status(), 201);

    let cli = s
        .command(
            &["login", "--sso", "--email", "ann@corp.test", "--no-browser"],
            &[],
        )
        .spawn()
        .expect("cli starts");
    let (run, callback) = browse(&provider, &http, cli, "ann").await;
    assert!(run.stdout.contains("as ann@corp.test"), "{run:?}");
    let me = s.cli(&["whoami", "--json"], &[], None).await.ok().json();
    assert_eq!(me["user"]["email"], "ann@corp.test");
    let corp = me["memberships"]
        .as_array()
        .expect("memberships")
        .iter()
        .find(|m| m["org"]["slug"] == "corp")
        .cloned()
        .expect("a member of corp");
    assert_eq!(corp["role"], "owner", "{me}");

    // The link went to the CLI's port and was used: the callback cannot be replayed.
    let replay = http.get(&callback).send().await.expect("replay");
    assert_eq!(replay.status(), 401);

    // An invite, pasted rather than given on the command line, is accepted by signing in.
    let invited = http
        .post(format!("{}/orgs/corp/invites", s.base))
        .bearer_auth(&owner)
        .json(&json!({"email": "dan@corp.test", "role": "member"}))
        .send()
        .await
        .expect("invite");
    assert_eq!(invited.status(), 201);
    let token = outbox_tokens(&s.data.path().join("outbox"), "dan@corp.test")
        .pop()
        .expect("the invite was mailed");
    let mut cli = s
        .command(&["login", "--sso", "--invite", "--no-browser"], &[])
        .spawn()
        .expect("cli starts");
    let mut stdin = cli.stdin.take().expect("stdin");
    stdin
        .write_all(format!("{}/auth/accept-invite?token={token}\n", s.base).as_bytes())
        .await
        .expect("paste");
    drop(stdin);
    let (run, _) = browse(&provider, &http, cli, "dan").await;
    assert!(run.stdout.contains("as dan@corp.test"), "{run:?}");
    let me = s.cli(&["whoami", "--json"], &[], None).await.ok().json();
    assert!(
        me["memberships"]
            .as_array()
            .expect("memberships")
            .iter()
            .any(|m| m["org"]["slug"] == "corp" && m["role"] == "member"),
        "{me}"
    );
}

/// Plays the browser for a `login --sso` run: reads the sign-in URL the CLI prints, signs in at
/// the provider as `account`, follows our callback to the CLI's loopback port, and returns how
/// the CLI ended and the callback URL.
async fn browse(
    provider: &OidcProvider,
    http: &reqwest::Client,
    mut cli: tokio::process::Child,
    account: &str,
) -> (Run, String) {
    let mut stderr = BufReader::new(cli.stderr.take().expect("stderr")).lines();
    let url = loop {
        let line = stderr
            .next_line()
            .await
            .expect("stderr")
            .expect("the CLI prints the sign-in URL");
        if line.starts_with(&provider.issuer) {
            break line;
        }
    };
    let callback = provider.sign_in(&url, account).await;
    let back = http.get(&callback).send().await.expect("callback");
    assert_eq!(back.status(), 303);
    let loopback = back.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    assert!(loopback.starts_with("http://127.0.0.1:"), "{loopback}");
    // A local process probing the port cannot hand the CLI a link: without the state the CLI
    // chose, or with another, the request is not the server's and the CLI keeps waiting.
    let port_base = loopback.split('?').next().expect("base").to_owned();
    let token = loopback
        .split("token=")
        .nth(1)
        .and_then(|rest| rest.split('&').next())
        .expect("token");
    for probe in [
        format!("{port_base}?token={}", "A".repeat(43)),
        format!("{port_base}?token={token}"),
        format!("{port_base}?token={token}&state=Zx9Cv8Bn7Mq6Wl5Ek4Rj3Th2"),
        format!("{port_base}?error=access_denied"),
    ] {
        let answer = http.get(&probe).send().await.expect("the CLI answers");
        assert_eq!(answer.status(), 404, "{probe}");
    }
    let page = http.get(&loopback).send().await.expect("the CLI answers");
    assert_eq!(page.status(), 200);
    assert!(page
        .text()
        .await
        .expect("page")
        .contains("You are signed in"));
    (finish(cli).await.ok(), callback)
}
