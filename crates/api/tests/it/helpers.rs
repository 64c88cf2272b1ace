//! Spawning the application on a fresh database, the way a client sees it, with every log line
//! of the test process captured for the secret-leak check.

use defendable_identity::view::{MeView, RoleView};
use std::sync::{Arc, Mutex, Once, OnceLock};

use defendable_api::{Application, Dependencies};
use defendable_config::{Config, Env};
pub use defendable_testkit::files::{
    decode_quoted_printable, outbox_tokens, token_from_mail, TempDir,
};
use defendable_testkit::TestDb;
use reqwest::StatusCode;
use serde_json::Value;

pub const JWT_SECRET: &str = "test-jwt-K7q2Lm9Xr4Tz8Vw1Ny6Pb3Hc5Jd0Fg";
pub const OBJECT_URL_KEY: &str = "test-url-Pq8Wn3Ez5Rt7Yu1Io4As6Df9Gh2Jk0";
pub const INTERNAL_KEY: &str = "test-internal-Zx9Cv8Bn7Mq6Wr5Ty4Ui3Op2";
pub const RUNNER_TOKEN: &str = "test-runner-Lk3Jh5Gf7Ds9Aq2We4Rt6Yu8";
pub const STRIPE_SECRET: &str = "whsec_test_Mn1Bv2Cx3Za4Sd5Fg6Hj7Kl8";
pub const SSO_KEY: &str = "test-sso-Rv4Ty7Ui1Op3As6Df8Gh2Jk5Lz9Xc";

/// One checkpoint signing key for every server in this test process (PKCS#8, base64url).
pub fn signing_key() -> &'static str {
    static KEY: OnceLock<String> = OnceLock::new();
    KEY.get_or_init(|| defendable_ledger::SigningKey::generate().expect("key").1)
}

/// A running server and what it runs on.
pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    pub db: TestDb,
    pub data: TempDir,
    /// The object store the server uses (local filesystem under `data` unless given).
    pub objects: Arc<dyn object_store::ObjectStore>,
}

/// A configuration as `vars` on top of a test baseline (free port, fixed JWT secret, no links
/// in logs), bound to a free port.
pub fn config(vars: &[(&str, &str)]) -> Config {
    let mut pairs: Vec<(String, String)> = vec![
        ("BIND_ADDR".into(), "127.0.0.1:0".into()),
        ("JWT_SECRET".into(), JWT_SECRET.into()),
        ("DEV_LOG_MAIL_LINKS".into(), "false".into()),
        ("LEDGER_SIGNING_KEY".into(), signing_key().into()),
        ("OBJECT_URL_SIGNING_KEY".into(), OBJECT_URL_KEY.into()),
        ("INTERNAL_API_KEY".into(), INTERNAL_KEY.into()),
        ("RUNNER_TOKEN".into(), RUNNER_TOKEN.into()),
        ("STRIPE_WEBHOOK_SECRET".into(), STRIPE_SECRET.into()),
        ("SSO_SECRET_KEY".into(), SSO_KEY.into()),
    ];
    pairs.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Config::parse(&Env::from_pairs(pairs)).expect("test config parses")
}

impl TestApp {
    /// A development-mode server.
    pub async fn spawn() -> TestApp {
        Self::spawn_with(config(&[])).await
    }

    /// A server with the given configuration on a fresh database.
    pub async fn spawn_with(config: Config) -> TestApp {
        let db = TestDb::new().await;
        Self::spawn_on(db, config).await
    }

    /// A server on a fresh database, listening on `listener`: a socket the test bound first, so
    /// that its port could go into the configuration (`BIND_ADDR` here, hence `API_BASE_URL`)
    /// and to other servers before this one started, with no moment the port was free.
    pub async fn spawn_listening(mut config: Config, listener: std::net::TcpListener) -> TestApp {
        config.bind_addr = listener.local_addr().expect("the socket's address");
        let db = TestDb::new().await;
        let data = TempDir::new();
        let objects = local_objects(&data);
        let settings = defendable_boot::server_pool_settings(config.database_pool_size);
        let url = db.url().to_owned();
        let server = (objects.clone(), None, Some(listener));
        Self::launch(db, config, data, server, settings, url)
    }

    /// A server on an existing database (another "process" on the same data).
    pub async fn spawn_on(db: TestDb, config: Config) -> TestApp {
        let data = TempDir::new();
        let objects = local_objects(&data);
        Self::spawn_full(db, config, data, objects, None).await
    }

    /// A server with a given object store and presigner (S3 tests).
    pub async fn spawn_full(
        db: TestDb,
        config: Config,
        data: TempDir,
        objects: Arc<dyn object_store::ObjectStore>,
        presigner: Option<Arc<dyn object_store::signer::Signer>>,
    ) -> TestApp {
        let settings = defendable_boot::server_pool_settings(config.database_pool_size);
        let url = db.url().to_owned();
        Self::launch(db, config, data, (objects, presigner, None), settings, url)
    }

    /// Starts the server on `db` (reached at `url`) with `settings` and data, its objects, its
    /// presigner and the socket it listens on (`None`: it binds `BIND_ADDR`).
    fn launch(
        db: TestDb,
        mut config: Config,
        data: TempDir,
        (objects, presigner, listener): ServerParts,
        settings: defendable_store::PoolSettings,
        url: String,
    ) -> TestApp {
        capture_logs();
        config.data_dir = data.path().to_path_buf();
        let parts = (objects.clone(), presigner, listener);
        let base = start_on(&url, settings, config, parts);
        TestApp {
            base,
            http: client(),
            db,
            data,
            objects,
        }
    }

    /// A server on a fresh database whose pool has `settings` (local objects).
    pub async fn spawn_with_pool(
        config: Config,
        settings: defendable_store::PoolSettings,
    ) -> TestApp {
        Self::spawn_through(config, settings, |url| url.to_owned()).await
    }

    /// A server on a fresh database whose pool has `settings` and reaches the database at
    /// `route(database url)` (a proxy in front of it, say).
    pub async fn spawn_through(
        config: Config,
        settings: defendable_store::PoolSettings,
        route: impl FnOnce(&str) -> String,
    ) -> TestApp {
        let db = TestDb::new().await;
        let data = TempDir::new();
        let objects = local_objects(&data);
        let url = route(db.url());
        Self::launch(db, config, data, (objects, None, None), settings, url)
    }

    /// A second server process on this app's database and objects, with its own caches.
    pub fn second_instance(&self, config: Config) -> String {
        let mut config = config;
        config.data_dir = self.data.path().to_path_buf();
        start(&self.db, config, self.objects.clone(), None)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a request with an optional bearer and JSON body; returns status and JSON (or Null).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        call(&self.http, &self.url(path), method, bearer, body).await
    }

    /// A new API key of `slug`, created by its owner's session `token`; returns the secret.
    pub async fn api_key(&self, token: &str, slug: &str) -> String {
        let path = format!("/orgs/{slug}/api-keys");
        let body = Some(serde_json::json!({"name": "ci"}));
        let key: defendable_identity::view::CreatedApiKeyView =
            self.expect_as(201, "POST", &path, Some(token), body).await;
        key.secret
    }

    /// Shares receipt `id` of `slug` as `token`, with `body` (`None`: a link that never
    /// expires); returns the created link.
    pub async fn share(
        &self,
        token: &str,
        slug: &str,
        id: &str,
        body: Option<Value>,
    ) -> defendable_ledger::ShareLink {
        let path = format!("/orgs/{slug}/receipts/{id}/share");
        self.expect_as(201, "POST", &path, Some(token), body).await
    }

    /// `GET /orgs/{slug}/ledger/verify` as `token`: the report.
    pub async fn verify(&self, token: &str, slug: &str) -> defendable_ledger::ChainCheck {
        let path = format!("/orgs/{slug}/ledger/verify");
        self.expect_as(200, "GET", &path, Some(token), None).await
    }

    /// [`TestApp::call`], asserting the status; returns the body.
    pub async fn expect(
        &self,
        status: u16,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> Value {
        let (s, body) = self.call(method, path, bearer, body).await;
        assert_eq!(s, status, "{method} {path}: {body}");
        body
    }

    /// [`TestApp::expect`] read as the API's typed shape `T` (a core's view type): a body that
    /// does not fit `T` fails the test, naming what did not fit.
    pub async fn expect_as<T: serde::de::DeserializeOwned>(
        &self,
        status: u16,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> T {
        read_as(&self.expect(status, method, path, bearer, body).await)
    }

    /// A refused call: its status and the typed problem document.
    pub async fn problem(
        &self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> (u16, defendable_api::error::Problem) {
        let (s, body) = self.call(method, path, bearer, body).await;
        (s.as_u16(), read_as(&body))
    }

    /// `/metrics` with the internal key: the Prometheus text.
    pub async fn metrics(&self) -> String {
        let res = self
            .http
            .get(self.url("/metrics"))
            .header("x-internal-key", INTERNAL_KEY)
            .send()
            .await
            .expect("metrics");
        assert_eq!(res.status(), 200);
        res.text().await.expect("text")
    }

    /// `GET /orgs/{slug}/datasets/quota` as `token` sees it.
    pub async fn quota(&self, token: &str, slug: &str) -> defendable_datasets::view::QuotaView {
        let path = format!("/orgs/{slug}/datasets/quota");
        self.expect_as(200, "GET", &path, Some(token), None).await
    }

    /// The public parts of the organization's receipts of `kind`, oldest first.
    pub async fn receipts_of(&self, token: &str, slug: &str, kind: &str) -> Vec<Value> {
        let path = format!("/orgs/{slug}/receipts?kind={kind}&limit=100");
        let list: defendable_ledger::ReceiptPage =
            self.expect_as(200, "GET", &path, Some(token), None).await;
        // A receipt's public part is whatever its kind records: it stays JSON.
        list.items
            .into_iter()
            .map(|r| r.body["public"].clone())
            .collect()
    }

    /// The role `token`'s user has in `slug`, if any (from `GET /me`).
    pub async fn role_in(&self, token: &str, slug: &str) -> Option<String> {
        let me: MeView = self.expect_as(200, "GET", "/me", Some(token), None).await;
        me.memberships
            .into_iter()
            .find(|m| m.org.slug == slug)
            .map(|m| match m.role {
                RoleView::Owner => "owner".to_owned(),
                RoleView::Member => "member".to_owned(),
            })
    }

    /// The verifier keys `/ledger/keys` publishes.
    pub async fn vkeys(&self) -> defendable_ledger::Vkeys {
        let keys: defendable_ledger::PublishedKeys =
            self.expect_as(200, "GET", "/ledger/keys", None, None).await;
        let vkeys: Vec<&str> = keys.keys.iter().map(|k| k.vkey.as_str()).collect();
        defendable_ledger::Vkeys::parse(&vkeys).expect("vkeys parse")
    }

    /// Signs in and returns the access token with the slug and id of the personal organization
    /// the first sign-in created.
    pub async fn sign_in_to_org(&self, email: &str) -> (String, String, String) {
        let (token, _) = self.sign_in(email).await;
        let me: MeView = self.expect_as(200, "GET", "/me", Some(&token), None).await;
        let org = &me.memberships[0].org;
        (token, org.slug.clone(), org.id.to_string())
    }

    /// Calls an internal route with the internal key.
    pub async fn call_internal(
        &self,
        method: &str,
        path: &str,
        body: Value,
    ) -> (StatusCode, Value) {
        let res = self
            .http
            .request(method.parse().expect("method"), self.url(path))
            .header("x-internal-key", INTERNAL_KEY)
            .json(&body)
            .send()
            .await
            .expect("response");
        let status = res.status();
        let bytes = res.bytes().await.expect("body");
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// The tokens of every link mailed to `to` through the outbox, oldest first.
    pub fn outbox_tokens(&self, to: &str) -> Vec<String> {
        outbox_tokens(&self.data.path().join("outbox"), to)
    }

    /// The token in the newest link mailed to `to`.
    pub fn outbox_token(&self, to: &str) -> String {
        self.outbox_tokens(to)
            .pop()
            .unwrap_or_else(|| panic!("no mail to {to}"))
    }

    /// Signs in through the real magic-link flow; returns the access token and user id.
    pub async fn sign_in(&self, email: &str) -> (String, String) {
        let before = self.outbox_tokens(email);
        let (status, _) = self
            .call(
                "POST",
                "/auth/request",
                None,
                Some(serde_json::json!({"email": email})),
            )
            .await;
        assert_eq!(status, 202);
        let token = self
            .outbox_tokens(email)
            .into_iter()
            .find(|t| !before.contains(t))
            .expect("a new link was mailed");
        let session: defendable_identity::view::SessionView = self
            .expect_as(
                200,
                "POST",
                "/auth/verify",
                None,
                Some(serde_json::json!({"token": token})),
            )
            .await;
        (session.access_token, session.user.id.to_string())
    }
}

fn start(
    db: &TestDb,
    config: Config,
    objects: Arc<dyn object_store::ObjectStore>,
    presigner: Option<Arc<dyn object_store::signer::Signer>>,
) -> String {
    start_with_pool(
        db.url(),
        defendable_boot::server_pool_settings(config.database_pool_size),
        config,
        objects,
        presigner,
    )
}

/// A server whose pool has `settings` (the starvation and timeout tests).
pub fn start_with_pool(
    url: &str,
    settings: defendable_store::PoolSettings,
    config: Config,
    objects: Arc<dyn object_store::ObjectStore>,
    presigner: Option<Arc<dyn object_store::signer::Signer>>,
) -> String {
    start_on(url, settings, config, (objects, presigner, None))
}

/// What a test server is given besides its configuration: its object store, its presigner and
/// the socket it listens on (`None`: it binds `BIND_ADDR`).
type ServerParts = (
    Arc<dyn object_store::ObjectStore>,
    Option<Arc<dyn object_store::signer::Signer>>,
    Option<std::net::TcpListener>,
);

fn start_on(
    url: &str,
    settings: defendable_store::PoolSettings,
    config: Config,
    (objects, presigner, listener): ServerParts,
) -> String {
    let deps = Dependencies {
        pool: defendable_store::pool_with(url, settings).expect("pool for the test database"),
        objects,
        presigner,
    };
    let app = match listener {
        Some(listener) => Application::build_on(config, deps, listener),
        None => Application::build(config, deps),
    }
    .expect("server builds");
    let base = format!("http://127.0.0.1:{}", app.port());
    actix_web::rt::spawn(app.run_until_stopped());
    base
}

/// A local-filesystem object store under `data/objects`.
fn local_objects(data: &TempDir) -> Arc<dyn object_store::ObjectStore> {
    let dir = data.path().join("objects");
    std::fs::create_dir_all(&dir).expect("objects dir");
    Arc::new(object_store::local::LocalFileSystem::new_with_prefix(&dir).expect("local store"))
}

fn client() -> reqwest::Client {
    defendable_store::install_crypto_provider();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// A JSON body read as the API's typed shape `T` (a core's view type, or the API's `Problem`):
/// a body that does not fit fails the test, naming what did not fit.
pub fn read_as<T: serde::de::DeserializeOwned>(body: &Value) -> T {
    serde_json::from_value(body.clone()).unwrap_or_else(|e| panic!("{e} in {body}"))
}

pub async fn call(
    http: &reqwest::Client,
    url: &str,
    method: &str,
    bearer: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = http.request(method.parse().expect("method"), url);
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.expect("response");
    let status = res.status();
    let bytes = res.bytes().await.expect("body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Asserts the headers every response must carry.
pub fn assert_security_headers(res: &reqwest::Response) {
    let h = res.headers();
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["referrer-policy"], "strict-origin-when-cross-origin");
    let pp = h["permissions-policy"].to_str().expect("ascii");
    for feature in ["camera=()", "microphone=()", "geolocation=()", "payment=()"] {
        assert!(pp.contains(feature), "{pp}");
    }
    assert!(!h["x-request-id"].is_empty());
}

// ---------------------------------------------------------------------------------------------
// Log capture: every test in this binary logs into one buffer, which the leak test inspects.

static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
static INIT: Once = Once::new();

#[derive(Clone)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the capturing subscriber (once per test process), at the server's default level.
pub fn capture_logs() {
    INIT.call_once(|| {
        let buf = LOGS
            .get_or_init(|| Arc::new(Mutex::new(Vec::new())))
            .clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_env_filter(tracing_subscriber::EnvFilter::new("debug"))
            .with_writer(move || Capture(buf.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("first subscriber");
    });
}

/// Everything logged so far by this test process.
pub fn captured_logs() -> String {
    let buf = LOGS.get().expect("capture installed");
    String::from_utf8_lossy(&buf.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
}

/// The path (and query) of an absolute URL the API returned, to call it on this test server.
pub fn path_of(url: &str) -> String {
    let after_scheme = url.find("://").map(|i| i + 3).unwrap_or(0);
    let start = url[after_scheme..]
        .find('/')
        .map(|i| after_scheme + i)
        .unwrap_or(url.len());
    url[start..].to_owned()
}

/// A plain HTTP client (follows redirects), after the process's TLS provider is installed.
pub fn http() -> reqwest::Client {
    defendable_store::install_crypto_provider();
    reqwest::Client::new()
}

/// [`http`]'s builder, for clients with their own settings.
pub fn http_builder() -> reqwest::ClientBuilder {
    defendable_store::install_crypto_provider();
    reqwest::Client::builder()
}

/// Polls `check` until it holds or `within` passes (the revocation window).
pub async fn eventually<F, Fut>(within: std::time::Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = std::time::Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if std::time::Instant::now() > until {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Opens a mailed link's page (`link`: `sign-in` or `invite`) as a browser does and presses its
/// button: the form carries the page's anti-forgery value and the cookie the page set, from the
/// page's own origin. Returns the button's response.
pub async fn press_link(
    app: &TestApp,
    token: &str,
    link: &str,
    bearer: Option<&str>,
) -> reqwest::Response {
    let page_path = if link == "invite" {
        "/auth/accept-invite"
    } else {
        "/auth/callback"
    };
    let page = app
        .http
        .get(app.url(&format!("{page_path}?token={token}")))
        .send()
        .await
        .expect("page");
    let cookie = page.headers().get("set-cookie").map(|c| {
        c.to_str()
            .expect("cookie")
            .split(';')
            .next()
            .expect("pair")
            .to_owned()
    });
    let text = page.text().await.expect("page");
    let csrf = text
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_default()
        .to_owned();
    let mut req = app
        .http
        .post(app.url("/auth/callback"))
        .header("origin", &app.base)
        .header("content-type", "application/x-www-form-urlencoded")
        // Tokens and the form value are base64url: nothing in them needs form encoding.
        .body(format!("token={token}&link={link}&csrf={csrf}"));
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    req.send().await.expect("response")
}
