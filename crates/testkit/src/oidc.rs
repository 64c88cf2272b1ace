//! A real OpenID Provider on loopback for the SSO tests: the npm `oidc-provider` package,
//! pinned and installed under `target/tools/` by `cargo xtask test`, started with
//! `crates/testkit/oidc/provider.mjs`. [`OidcProvider::sign_in`] drives its development login
//! and consent forms the way a browser would, and returns where the provider sends the browser
//! back.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// The pinned oidc-provider; keep in step with `OIDC_PROVIDER` in xtask/src/main.rs.
pub const OIDC_PROVIDER_VERSION: &str = "8.8.1";

/// A running provider, stopped when dropped.
#[derive(Debug)]
pub struct OidcProvider {
    child: Child,
    /// Its issuer: `http://127.0.0.1:<port>`.
    pub issuer: String,
    /// Holds the accounts file the provider reads at every sign-in.
    dir: crate::files::TempDir,
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Asks the provider for its discovery document once and waits for the answer, so that a test's
/// first request does not meet node's cold start (it loads modules on first use).
fn warm_up(port: u16) {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("the provider");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    stream
        .write_all(b"GET /.well-known/openid-configuration HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .expect("request");
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .expect("the discovery document");
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "the provider answered {answer}"
    );
}

impl OidcProvider {
    /// Starts a provider with `accounts` (`{"sub": {claims}}`, see `provider.mjs` for the
    /// `_id_token` misbehaviours) and `clients` (oidc-provider client metadata).
    pub fn start(accounts: &Value, clients: &Value) -> OidcProvider {
        let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../target/tools")
            .join(format!("oidc-provider-{OIDC_PROVIDER_VERSION}"));
        assert!(
            dir.join("node_modules/oidc-provider").is_dir(),
            "{} is missing: `cargo xtask test` installs oidc-provider {OIDC_PROVIDER_VERSION}",
            dir.display()
        );
        // Beside its node_modules, so the module resolves; copied under a name of its own and
        // renamed into place, so a provider starting in a parallel test never reads half a file.
        let script = dir.join("provider.mjs");
        let fresh = dir.join(format!("provider.mjs.{}", uuid::Uuid::new_v4().simple()));
        std::fs::copy(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("oidc/provider.mjs"),
            &fresh,
        )
        .expect("copy provider.mjs");
        std::fs::rename(&fresh, &script).expect("provider.mjs in place");
        let dir = crate::files::TempDir::new();
        let accounts_file = dir.path().join("accounts.json");
        std::fs::write(&accounts_file, accounts.to_string()).expect("accounts file");
        let mut child = Command::new("node")
            .arg(&script)
            .env("OIDC_ACCOUNTS_FILE", &accounts_file)
            .env("OIDC_CLIENTS", clients.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node starts oidc-provider");
        // The provider binds port 0 and says which port it got once it answers.
        let port = crate::announced_port(
            child.stdout.take().expect("its output"),
            "listening on port",
            Duration::from_secs(20),
        );
        let issuer = format!("http://127.0.0.1:{port}");
        warm_up(port);
        OidcProvider { child, issuer, dir }
    }

    /// Replaces the accounts (as an administrator changes a user's groups at the provider);
    /// the next sign-in sees them.
    pub fn set_accounts(&self, accounts: &Value) {
        let file = self.dir.path().join("accounts.json");
        let next = self.dir.path().join("accounts.json.next");
        std::fs::write(&next, accounts.to_string()).expect("accounts file");
        std::fs::rename(&next, &file).expect("accounts file");
    }

    /// Follows `authorization_url` as a browser would: signs in as `account` on the provider's
    /// login form, consents, and returns the URL the provider redirects back to (the relying
    /// party's callback with `code` and `state`, or with `error`).
    pub async fn sign_in(&self, authorization_url: &str, account: &str) -> String {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        let mut cookies: Vec<String> = Vec::new();
        let mut url = authorization_url.to_owned();
        let mut form: Option<Vec<(&str, String)>> = None;
        for _ in 0..12 {
            if !url.starts_with(&self.issuer) {
                return url;
            }
            let request = match form.take() {
                Some(fields) => http.post(&url).form(&fields),
                None => http.get(&url),
            };
            let response = request
                .header("cookie", cookies.join("; "))
                .send()
                .await
                .expect("provider answers");
            for c in response.headers().get_all("set-cookie") {
                let pair = c
                    .to_str()
                    .expect("cookie")
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .to_owned();
                let name = pair.split('=').next().unwrap_or("").to_owned();
                cookies.retain(|have| !have.starts_with(&format!("{name}=")));
                cookies.push(pair);
            }
            if let Some(location) = response.headers().get("location") {
                let location = location.to_str().expect("location").to_owned();
                url = if location.starts_with('/') {
                    format!("{}{location}", self.issuer)
                } else {
                    location
                };
                continue;
            }
            let page = response.text().await.expect("page");
            let action = page
                .split("action=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap_or_else(|| panic!("no form on the provider's page: {page}"))
                .to_owned();
            url = if action.starts_with('/') {
                format!("{}{action}", self.issuer)
            } else {
                action
            };
            form = Some(if page.contains("name=\"login\"") {
                vec![
                    ("prompt", "login".to_owned()),
                    ("login", account.to_owned()),
                    ("password", "any".to_owned()),
                ]
            } else {
                vec![("prompt", "consent".to_owned())]
            });
        }
        panic!("the provider never sent the browser back");
    }
}
