//! A real OpenID Provider on loopback for the SSO tests: the npm `oidc-provider` package,
//! pinned and installed under `target/tools/` by `cargo xtask test`, started with
//! `crates/testkit/oidc/provider.mjs`. [`OidcProvider::sign_in`] drives its development login
//! and consent forms the way a browser would, and returns where the provider sends the browser
//! back.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
        // Beside its node_modules, so the module resolves.
        let script = dir.join("provider.mjs");
        std::fs::copy(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("oidc/provider.mjs"),
            &script,
        )
        .expect("copy provider.mjs");
        let port = crate::free_port();
        let issuer = format!("http://127.0.0.1:{port}");
        let dir = crate::files::TempDir::new();
        let accounts_file = dir.path().join("accounts.json");
        std::fs::write(&accounts_file, accounts.to_string()).expect("accounts file");
        let child = Command::new("node")
            .arg(&script)
            .env("PORT", port.to_string())
            .env("ISSUER", &issuer)
            .env("OIDC_ACCOUNTS_FILE", &accounts_file)
            .env("OIDC_CLIENTS", clients.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("node starts oidc-provider");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "oidc-provider did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
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
