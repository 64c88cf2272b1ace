//! The drill's environment: loopback addresses, its server socket, fresh secrets and ledger key,
//! the mail capture, a local object store and the variables each program it runs gets.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use defendable_ledger::{LedgerName, SigningKey};
use ring::rand::SecureRandom as _;

use super::smtp::SmtpCapture;
use super::DRILL_LEDGER_NAME;
use crate::{OpsError, Result};

/// The drill's settings: loopback addresses, fresh secrets, a fresh ledger key under
/// `drill.invalid`, the capture server, a local object store and a throwaway CLI state.
pub(super) struct DrillEnv {
    pub(super) base: String,
    pub(super) port: u16,
    /// The server's socket, bound by the drill and handed to each server it starts
    /// (`LISTEN_FDS`): no other process can take the port, so the drill only ever talks to the
    /// server it started. Given up only for a release that cannot take a socket (see
    /// `server::Server::start`).
    pub(super) listener: std::sync::Mutex<Option<std::net::TcpListener>>,
    pub(super) db_url: String,
    pub(super) work: PathBuf,
    pub(super) objects: PathBuf,
    pub(super) secrets: BTreeMap<&'static str, String>,
    pub(super) ledger_key: String,
    pub(super) ledger_vkey: String,
    pub(super) internal_key: String,
    pub(super) smtp: SmtpCapture,
    pub(super) http: reqwest::Client,
}

fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("the operating system's CSPRNG");
    hex::encode(bytes)
}

impl DrillEnv {
    pub(super) async fn new(db_url: &str, work: &Path) -> Result<DrillEnv> {
        // The library may run outside the ops binary (benchmarks, tests): reqwest needs a TLS
        // provider installed either way.
        defendable_store::install_crypto_provider();
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .map_err(|e| OpsError::Setup(format!("binding the drill's server socket: {e}")))?;
        let port = listener
            .local_addr()
            .map_err(|e| OpsError::Setup(e.to_string()))?
            .port();
        let (key, encoded) = SigningKey::generate()?;
        let name = LedgerName::parse(DRILL_LEDGER_NAME)?;
        let internal_key = random_secret();
        let secrets = BTreeMap::from([
            ("JWT_SECRET", random_secret()),
            ("OBJECT_URL_SIGNING_KEY", random_secret()),
            ("INTERNAL_API_KEY", internal_key.clone()),
            ("RUNNER_TOKEN", random_secret()),
            ("STRIPE_WEBHOOK_SECRET", random_secret()),
        ]);
        let objects = work.join("objects");
        std::fs::create_dir_all(&objects).map_err(|e| OpsError::io(&objects, e))?;
        Ok(DrillEnv {
            base: format!("http://127.0.0.1:{port}"),
            port,
            listener: std::sync::Mutex::new(Some(listener)),
            db_url: db_url.to_owned(),
            work: work.to_owned(),
            objects,
            secrets,
            ledger_vkey: defendable_ledger::note::vkey(&name, &key.raw_public()),
            ledger_key: encoded,
            internal_key,
            smtp: SmtpCapture::start().await?,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .map_err(|e| OpsError::Http(e.to_string()))?,
        })
    }

    pub(super) fn server_vars(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = vec![
            ("APP_ENV", "production".to_owned()),
            ("RELEASE_DRILL", "true".to_owned()),
            ("LEDGER_NAME", DRILL_LEDGER_NAME.to_owned()),
            ("LEDGER_SIGNING_KEY", self.ledger_key.clone()),
            ("DATABASE_URL", self.db_url.clone()),
            ("BIND_ADDR", format!("127.0.0.1:{}", self.port)),
            ("API_BASE_URL", self.base.clone()),
            ("APP_BASE_URL", self.base.clone()),
            ("CORS_ORIGINS", self.base.clone()),
            ("SMTP_URL", format!("smtp://127.0.0.1:{}", self.smtp.port)),
            (
                "EMAIL_FROM",
                "Defendable drill <drill@drill.invalid>".to_owned(),
            ),
            (
                "OBJECT_STORE_URL",
                format!("file://{}", self.objects.display()),
            ),
            ("DATA_DIR", self.work.join("data").display().to_string()),
            ("LOG_FORMAT", "json".to_owned()),
            ("DATASET_DOWNLOAD_DAILY_LIMIT", "100".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        v.extend(self.secrets.iter().map(|(k, s)| (k.to_string(), s.clone())));
        v
    }

    pub(super) fn cli_vars(&self) -> Vec<(String, String)> {
        vec![
            ("DEFENDABLE_API".into(), self.base.clone()),
            (
                "XDG_CONFIG_HOME".into(),
                self.work.join("cli-config").display().to_string(),
            ),
            ("HOME".into(), self.work.display().to_string()),
        ]
    }
}
