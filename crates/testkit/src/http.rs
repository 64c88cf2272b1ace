//! A running server, met as a client meets it: for tests and benchmarks that drive the real
//! binary over HTTP.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::files::outbox_tokens;

/// Waits until `base` answers `GET /healthz` with 200; panics after `timeout`.
pub async fn wait_ready(http: &reqwest::Client, base: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(res) = http.get(format!("{base}/healthz")).send().await {
            if res.status() == 200 {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{base} did not become ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A user signed in through the mailed link.
#[derive(Debug, Clone)]
pub struct SignedIn {
    /// The session's access token.
    pub token: String,
    /// The slug of the personal organization the first sign-in created.
    pub slug: String,
    /// Its id.
    pub org_id: String,
}

/// Requests a magic link for `email`, reads it from the development outbox and verifies it.
pub async fn sign_in_by_mail(
    http: &reqwest::Client,
    base: &str,
    outbox: &Path,
    email: &str,
) -> SignedIn {
    let res = http
        .post(format!("{base}/auth/request"))
        .json(&json!({ "email": email }))
        .send()
        .await
        .expect("request a link");
    assert_eq!(res.status(), 202);
    let link = outbox_tokens(outbox, email).pop().expect("a mailed link");
    let session: Value = http
        .post(format!("{base}/auth/verify"))
        .json(&json!({ "token": link }))
        .send()
        .await
        .expect("verify")
        .json()
        .await
        .expect("session");
    let token = session["access_token"]
        .as_str()
        .expect("access token")
        .to_owned();
    let me: Value = http
        .get(format!("{base}/me"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("me")
        .json()
        .await
        .expect("me");
    let org = &me["memberships"][0]["org"];
    SignedIn {
        token,
        slug: org["slug"].as_str().expect("slug").to_owned(),
        org_id: org["id"].as_str().expect("id").to_owned(),
    }
}
