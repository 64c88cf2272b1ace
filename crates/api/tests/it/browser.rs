//! The pages in a real browser: headless Chromium (Debian's `chromium` and `chromium-driver`,
//! installed by `cargo xtask test`) driven over WebDriver, one browser session for every case.
//! The share page verifies a genuine receipt (✔), names the hash step for a receipt altered in
//! the database behind the API's back and the signature step for a checkpoint altered on the
//! way (a tampering proxy), and the sign-in page consumes its token only on the button.
//! `UPDATE_SCREENSHOTS=1` writes the screenshots `docs/images/` shows.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{config, path_of, TempDir, TestApp};

const CHROMIUM: &str = "/usr/bin/chromium";
const DESKTOP: (u32, u32) = (1280, 900);
const PHONE: (u32, u32) = (390, 844);

/// chromedriver on a free port, stopped on drop.
struct Driver {
    child: Child,
    port: u16,
    _profile: TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_driver() -> Driver {
    assert!(
        std::path::Path::new(CHROMIUM).is_file(),
        "{CHROMIUM} is missing: `cargo xtask test` installs Debian's chromium and chromium-driver"
    );
    // Port 0: chromedriver binds a free port itself and says which.
    let mut child = Command::new("chromedriver")
        .arg("--port=0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts (`cargo xtask test` installs chromium-driver)");
    let port = defendable_testkit::announced_port(
        child.stdout.take().expect("its output"),
        "started successfully on port",
        Duration::from_secs(10),
    );
    Driver {
        child,
        port,
        _profile: TempDir::new(),
    }
}

async fn browser(driver: &Driver) -> Client {
    // The flags keep a headless Chromium off the network it would otherwise call home to.
    let args = [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
    ];
    let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    args.push(format!(
        "--user-data-dir={}",
        driver._profile.path().display()
    ));
    let caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
    });
    let Value::Object(caps) = caps else {
        unreachable!()
    };
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a WebDriver session")
}

/// Waits for the share page's verdict; returns its `data-result` and text.
async fn verdict(c: &Client) -> (String, String) {
    let el = c
        .wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Css("#verdict:not([data-result=pending])"))
        .await
        .expect("the page reaches a verdict");
    let result = el
        .attr("data-result")
        .await
        .expect("attr")
        .unwrap_or_default();
    (result, el.text().await.expect("text"))
}

async fn text_of(c: &Client, css: &str) -> String {
    c.wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .expect("text")
}

/// Takes the page at desktop and phone widths; writes them under docs/images with
/// `UPDATE_SCREENSHOTS=1`.
async fn screenshots(c: &Client, name: &str) {
    for (label, (w, h)) in [("desktop", DESKTOP), ("phone", PHONE)] {
        c.set_window_size(w, h).await.expect("resize");
        let png = c.screenshot().await.expect("screenshot");
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        if std::env::var_os("UPDATE_SCREENSHOTS").is_some() {
            let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/images");
            std::fs::create_dir_all(&dir).expect("docs/images");
            std::fs::write(dir.join(format!("{name}-{label}.png")), png).expect("write");
        }
    }
    c.set_window_size(DESKTOP.0, DESKTOP.1)
        .await
        .expect("resize");
}

/// A proxy in front of `upstream` that flips one character of the checkpoint signature in
/// every share page it passes on: what a tampering network (or a server without the key) would
/// serve. Returns its base URL.
async fn tampering_proxy(upstream: String) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let http = crate::helpers::http();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let http = http.clone();
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
                let accept = head
                    .lines()
                    .find_map(|l| l.strip_prefix("Accept: ").or(l.strip_prefix("accept: ")))
                    .unwrap_or("*/*")
                    .to_owned();
                let Ok(res) = http
                    .get(format!("{upstream}{path}"))
                    .header("accept", accept)
                    .send()
                    .await
                else {
                    return;
                };
                let status = res.status();
                let ctype = res.headers()["content-type"]
                    .to_str()
                    .unwrap_or("")
                    .to_owned();
                let mut body = res.text().await.unwrap_or_default();
                if ctype.starts_with("text/html") && path.starts_with("/share/") {
                    body = flip_signature(&body);
                }
                let reply = format!(
                    "HTTP/1.1 {} OK\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    status.as_u16(),
                    body.len()
                );
                let _ = socket.write_all(reply.as_bytes()).await;
            });
        }
    });
    base
}

/// Flips a character of the signature inside the embedded bundle's checkpoint note.
fn flip_signature(page: &str) -> String {
    let at = page.find("\"checkpoint\":\"").expect("a bundle");
    let dash = at + page[at..].find("— ").expect("a signature line");
    let sig = dash + page[dash + "— ".len()..].find(' ').expect("name") + "— ".len() + 1;
    let mut bytes = page.as_bytes().to_vec();
    let i = sig + 20;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).expect("utf8")
}

#[actix_web::test]
async fn the_pages_work_in_a_real_browser() {
    // A real port, so the links and the command the pages show are the ones a person would see.
    let (socket, port) = defendable_testkit::listener();
    let bind = format!("127.0.0.1:{port}");
    let app = TestApp::spawn_listening(config(&[]), socket).await;
    let driver = start_driver().await;
    let c = browser(&driver).await;

    // A genuine share verifies in the browser.
    let (token, slug, org) = app.sign_in_to_org("auditor.demo@example.com").await;
    let mut ids = Vec::new();
    for (n, public) in [
        json!({"change": "CHG-2041", "approved_by": "dana@example.com", "environment": "production", "note": "genuine"}),
        json!({"change": "CHG-2042", "note": "genuine", "markup": "<b>not bold</b>"}),
    ]
    .into_iter()
    .enumerate()
    {
        let r = app
            .expect(
                201,
                "POST",
                &format!("/orgs/{slug}/receipts"),
                Some(&token),
                Some(json!({"kind": if n == 0 { "deploy.approved" } else { "run.approved" }, "public": public})),
            )
            .await;
        ids.push(r["receipt_id"].as_str().expect("id").to_owned());
    }
    let share = |id: String| {
        let app = &app;
        let token = token.clone();
        let slug = slug.clone();
        async move {
            let s = app.share(&token, &slug, &id, None).await;
            path_of(&s.url)
        }
    };
    let genuine = share(ids[0].clone()).await;
    c.goto(&app.url(&genuine)).await.expect("goto");
    let (result, text) = verdict(&c).await;
    assert_eq!(result, "ok", "{text}");
    assert!(text.contains("✔ Verified in your browser"), "{text}");
    assert!(text.contains("Inclusion proof"), "{text}");
    // The stylesheet loaded under the page's CSP.
    let border = c
        .execute(
            "return getComputedStyle(document.getElementById('verdict')).borderTopWidth",
            vec![],
        )
        .await
        .expect("script");
    assert_eq!(border, json!("2px"));
    assert!(text_of(&c, "#r-fields").await.contains("CHG-2041"));
    assert!(text_of(&c, "pre")
        .await
        .starts_with(&format!("defendable verify http://{bind}/share/")));
    screenshots(&c, "share-verified").await;

    // A receipt altered in the database: the page names the hash step.
    let altered = share(ids[1].clone()).await;
    let db = app.db.pool.get().await.expect("client");
    db.batch_execute("SET session_replication_role = replica")
        .await
        .expect("bypass the append-only trigger");
    let changed = db
        .execute(
            "UPDATE receipts SET canonical = convert_to(replace(convert_from(canonical, 'UTF8'), 'genuine', 'forged!'), 'UTF8') WHERE org_id = $1 AND seq = 1",
            &[&org.parse::<uuid::Uuid>().expect("uuid")],
        )
        .await
        .expect("tamper");
    assert_eq!(changed, 1);
    c.goto(&app.url(&altered)).await.expect("goto");
    let (result, text) = verdict(&c).await;
    assert_eq!(result, "hash", "{text}");
    assert!(text.contains("✘ Not verified: Body hash failed"), "{text}");
    // The altered text is shown as text, never as markup.
    assert!(text_of(&c, "#r-fields").await.contains("<b>not bold</b>"));
    screenshots(&c, "share-altered").await;

    // A checkpoint whose signature was altered on the way: the page names the signature.
    let proxy = tampering_proxy(app.base.clone()).await;
    c.goto(&format!("{proxy}{genuine}")).await.expect("goto");
    let (result, text) = verdict(&c).await;
    assert_eq!(result, "signature", "{text}");
    assert!(text.contains("Checkpoint signature failed"), "{text}");

    // The sign-in page: opening it consumes nothing; the button does, once.
    let email = "button.press@example.com";
    let (s, _) = app
        .call("POST", "/auth/request", None, Some(json!({"email": email})))
        .await;
    assert_eq!(s, 202);
    let link = app.url(&format!("/auth/callback?token={}", app.outbox_token(email)));
    for _ in 0..3 {
        c.goto(&link).await.expect("goto");
    }
    assert_eq!(text_of(&c, "h1").await, "Sign in to Defendable");
    screenshots(&c, "sign-in").await;
    c.find(Locator::Css("#use-link"))
        .await
        .expect("the button")
        .click()
        .await
        .expect("click");
    assert_eq!(text_of(&c, "#outcome").await, "You are signed in");
    assert!(text_of(&c, "main").await.contains(email));
    c.back().await.expect("back");
    c.find(Locator::Css("#use-link"))
        .await
        .expect("the button again")
        .click()
        .await
        .expect("click");
    assert_eq!(
        text_of(&c, "#outcome").await,
        "This link did not sign you in"
    );
    assert!(text_of(&c, "#problem").await.contains("already been used"));

    c.close().await.expect("close the session");
}
