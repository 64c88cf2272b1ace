//! The pages people open from links, over HTTP without a browser: the share page for browsers
//! (JSON for everyone else), its verifier module under node against the Rust vectors, and
//! sign-in and invite pages that a mail scanner cannot consume.

use defendable_api::error::{ErrorCode, Problem};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::datasets_http::{grant_share, publish};
use crate::helpers::{config, path_of, read_as, TestApp};

const BROWSER_ACCEPT: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

/// GETs `path` as a browser does; returns status, headers and body.
async fn browse(app: &TestApp, path: &str) -> (StatusCode, reqwest::header::HeaderMap, String) {
    let res = app
        .http
        .get(app.url(path))
        .header("accept", BROWSER_ACCEPT)
        .send()
        .await
        .expect("response");
    let (status, headers) = (res.status(), res.headers().clone());
    (status, headers, res.text().await.expect("text"))
}

/// Opens the link's page and presses its button, as a browser does.
async fn press(app: &TestApp, token: &str, link: &str) -> (StatusCode, String) {
    let res = crate::helpers::press_link(app, token, link, None).await;
    let status = res.status();
    (status, res.text().await.expect("text"))
}

/// Posts the form as another site's page would (login CSRF): no cookie from our page, and a
/// value of its own making (or none).
async fn forge(app: &TestApp, token: &str, link: &str, csrf: Option<&str>) -> (StatusCode, String) {
    let mut body = format!("token={token}&link={link}");
    if let Some(c) = csrf {
        body.push_str(&format!("&csrf={c}"));
    }
    let res = app
        .http
        .post(app.url("/auth/callback"))
        .header("accept", BROWSER_ACCEPT)
        .header("origin", "https://attacker.example")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("response");
    let status = res.status();
    (status, res.text().await.expect("text"))
}

fn assert_page_headers(h: &reqwest::header::HeaderMap) {
    assert_eq!(h["content-type"], "text/html; charset=utf-8");
    assert_eq!(h["content-security-policy"], defendable_api::pages::CSP);
    assert!(h["content-security-policy"]
        .to_str()
        .expect("ascii")
        .starts_with("default-src 'none'"));
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["cache-control"], "no-store");
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert_eq!(h["x-content-type-options"], "nosniff");
}

/// The JSON in `<script type="application/json" id="{id}">`.
fn embedded(page: &str, id: &str) -> Value {
    let open = format!("<script type=\"application/json\" id=\"{id}\">");
    let start = page
        .find(&open)
        .unwrap_or_else(|| panic!("no #{id} in the page"))
        + open.len();
    let end = start + page[start..].find("</script>").expect("closed");
    serde_json::from_str(&page[start..end]).expect("embedded JSON")
}

#[test]
fn the_page_verifier_agrees_with_the_rust_vectors_under_node() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new("node")
        .arg(root.join("assets/verify.test.mjs"))
        .arg(root.join("../ledger/tests/it/vectors"))
        .output()
        .expect("node runs (cargo xtask test installs it when missing)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    // Every bundle vector, every RFC 9162 inclusion vector and every tessera checkpoint ran.
    assert!(text.contains("132 of 132 checks agree"), "{text}");
}

#[actix_web::test]
async fn a_browser_gets_the_share_page_and_api_clients_keep_the_json() {
    let app = TestApp::spawn().await;
    let (token, slug, _) = app.sign_in_to_org("page@example.com").await;
    let hostile = "<script>alert('x')</script> & <img src=x onerror=alert(1)>";
    let receipt = app
        .expect(
            201,
            "POST",
            &format!("/orgs/{slug}/receipts"),
            Some(&token),
            Some(json!({"kind": "run.approved", "public": {"title": hostile, "n": 1.5}, "private": {"who": "secret-person"}})),
        )
        .await;
    let id = receipt["receipt_id"].as_str().expect("id");
    let share = app.share(&token, &slug, id, None).await;
    let share_path = path_of(&share.url);

    let (s, h, page) = browse(&app, &share_path).await;
    assert_eq!(s, 200, "{page}");
    assert_page_headers(&h);
    assert!(h["vary"].to_str().expect("ascii").starts_with("Accept"));
    // Attacker-chosen text is escaped, never markup.
    assert!(!page.contains("<script>alert"), "{page}");
    assert!(!page.contains("<img src=x"), "{page}");
    assert!(page.contains("&#60;script&#62;alert") || page.contains("&lt;script&gt;alert"));
    assert!(!page.contains("secret-person"));
    // No third-party assets: every src and href is relative to this server.
    for attr in ["src=\"", "href=\""] {
        for part in page.split(attr).skip(1) {
            assert!(
                !part.starts_with("http") && !part.starts_with("//"),
                "{attr}{part}"
            );
        }
    }
    assert!(page.contains(id));
    assert!(page.contains("run.approved"));
    // Without JavaScript the receipt is still there, and the page says how to check it.
    assert!(page.contains("<noscript><p><strong>Not checked here:</strong> verification in this page needs JavaScript"));
    assert!(page.contains("defendable verify http"));
    let token_part = share_path.rsplit('/').next().expect("token");
    assert!(
        page.contains(&format!("href=\"{token_part}/proof\"")),
        "{page}"
    );
    // The bundle the script verifies is the one the proof route serves.
    let bundle = embedded(&page, "bundle");
    let (s, served) = app
        .call("GET", &format!("{share_path}/proof"), None, None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(bundle, served);
    let vkeys = embedded(&page, "vkeys");
    assert_eq!(vkeys[0], app.vkeys().await.vkeys()[0].as_str());

    // API clients (no Accept, or JSON) keep the projection.
    for accept in [None, Some("application/json"), Some("*/*")] {
        let mut req = app.http.get(app.url(&share_path));
        if let Some(a) = accept {
            req = req.header("accept", a);
        }
        let res = req.send().await.expect("response");
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["content-type"], "application/json");
        let projection: Value = res.json().await.expect("json");
        assert_eq!(projection, bundle["receipt"]);
    }

    // An unknown link is a page for a browser and a problem for a program.
    let (s, h, page) = browse(&app, "/share/not-a-token").await;
    assert_eq!(s, 404);
    assert_eq!(h["content-type"], "text/html; charset=utf-8");
    assert!(page.contains("Not Found"), "{page}");
    let (s, body) = app.call("GET", "/share/not-a-token", None, None).await;
    assert_eq!(
        (s, read_as::<Problem>(&body).code),
        (StatusCode::NOT_FOUND, ErrorCode::NotFound)
    );

    // The assets are embedded and served with the same policy.
    for (name, ctype) in [("page.css", "text/css"), ("verify.mjs", "text/javascript")] {
        let res = app
            .http
            .get(app.url(&format!("/assets/{name}")))
            .send()
            .await
            .expect("asset");
        assert_eq!(res.status(), 200);
        assert!(res.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with(ctype));
    }
    let (s, _) = app.call("GET", "/assets/../Cargo.toml", None, None).await;
    assert_eq!(s, 404);
}

#[actix_web::test]
async fn a_dataset_grant_share_page_shows_the_dataset_and_a_download_button() {
    let app = TestApp::spawn().await;
    let bytes = b"year,region,count\n2026,north,41\n";
    publish(&app, "census", "raw/census.csv", bytes).await;
    let (token, _, _) = app.sign_in_to_org("grantee@example.com").await;
    let (_, share_path) = grant_share(&app, &token, "census").await;
    let (s, _, page) = browse(&app, &share_path).await;
    assert_eq!(s, 200, "{page}");
    assert!(page.contains("census@2026.1"), "{page}");
    assert!(page.contains(&blake3::hash(bytes).to_hex().to_string()));
    assert!(page.contains(&format!("{} bytes", bytes.len())));
    let token_part = share_path.rsplit('/').next().expect("token");
    assert!(page.contains(&format!("href=\"{token_part}/download\"")));
    assert!(
        !page.contains("raw/census.csv"),
        "the object key never shows"
    );
    assert!(
        !page.contains("grantee@example.com"),
        "the grantee never shows"
    );
}

#[actix_web::test]
async fn mail_scanners_cannot_consume_a_sign_in_link_and_the_button_works_once() {
    // A real port, and a CORS list naming only a web app elsewhere: the page's own form post
    // (same origin) still goes through.
    let (socket, port) = defendable_testkit::listener();
    let bind = format!("127.0.0.1:{port}");
    let app = TestApp::spawn_listening(
        config(&[("CORS_ORIGINS", "https://app.example.com")]),
        socket,
    )
    .await;
    let email = "scanned@example.com";
    let (s, _) = app
        .call("POST", "/auth/request", None, Some(json!({"email": email})))
        .await;
    assert_eq!(s, 202);
    // In development the mailed link lands on this API's own page.
    let outbox = std::fs::read_dir(app.data.path().join("outbox"))
        .expect("outbox")
        .map(|e| std::fs::read_to_string(e.expect("entry").path()).expect("mail"))
        .collect::<String>();
    let mail = crate::helpers::decode_quoted_printable(&outbox);
    assert!(
        mail.contains(&format!("http://{bind}/auth/callback?token=")),
        "{mail}"
    );
    let token = app.outbox_token(email);
    let link = format!("/auth/callback?token={token}");

    // A scanner, a link preview and a prefetch open it many times.
    for _ in 0..12 {
        let (s, h, page) = browse(&app, &link).await;
        assert_eq!(s, 200);
        assert_page_headers(&h);
        assert!(page.contains("Sign in here"));
        assert!(page.contains("Use in the CLI"));
    }
    let head = app.http.head(app.url(&link)).send().await.expect("head");
    assert!(head.status().is_success() || head.status() == 405);

    // A form another site posts with the victim's browser (the attacker's own link, to sign the
    // victim in as the attacker) is refused and uses nothing: no page cookie, or a value copied
    // from the attacker's own view of the page.
    let (_, _, own_view) = browse(&app, &link).await;
    let copied = own_view
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the page carries a form value")
        .to_owned();
    for csrf in [None, Some(copied.as_str())] {
        let (s, page) = forge(&app, &token, "sign-in", csrf).await;
        assert_eq!(s, 403, "{page}");
        assert!(page.contains("did not come from the page"), "{page}");
    }

    // The button signs in, once.
    let (s, page) = press(&app, &token, "sign-in").await;
    assert_eq!(s, 200, "{page}");
    assert!(page.contains("You are signed in"), "{page}");
    assert!(page.contains(email));
    let (s, page) = press(&app, &token, "sign-in").await;
    assert_eq!(s, 401, "{page}");
    assert!(page.contains("already been used"), "{page}");
    // A page with no token says so.
    let (s, _, page) = browse(&app, "/auth/callback").await;
    assert_eq!(s, 400);
    assert!(page.contains("no token"), "{page}");
}

#[actix_web::test]
async fn an_invite_page_accepts_only_on_the_button() {
    let app = TestApp::spawn().await;
    let (owner, slug, _) = app.sign_in_to_org("inviter@example.com").await;
    let invitee = "invitee@example.com";
    app.expect(
        201,
        "POST",
        &format!("/orgs/{slug}/invites"),
        Some(&owner),
        Some(json!({"email": invitee, "role": "member"})),
    )
    .await;
    let token = app.outbox_token(invitee);
    for _ in 0..5 {
        let (s, _, page) = browse(&app, &format!("/auth/accept-invite?token={token}")).await;
        assert_eq!(s, 200);
        assert!(page.contains("Accept the invitation"), "{page}");
    }
    let (s, page) = press(&app, &token, "invite").await;
    assert_eq!(s, 200, "{page}");
    let members = app
        .expect(
            200,
            "GET",
            &format!("/orgs/{slug}/members"),
            Some(&owner),
            None,
        )
        .await;
    assert!(members.to_string().contains(invitee), "{members}");
    let (s, page) = press(&app, &token, "invite").await;
    assert_eq!(s, 401, "{page}");
}
