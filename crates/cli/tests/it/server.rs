//! A real server for the CLI to talk to: the API in-process on a fresh PostgreSQL database,
//! reached through a loopback TCP proxy that records what clients send and can break one
//! transfer midway, as a flaky network would. The CLI runs as a child process with its own
//! configuration directory, as a user's shell would run it.

use object_store::ObjectStoreExt as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use defendable_api::{Application, Dependencies};
use defendable_config::{Config, Env};
use defendable_testkit::files::{outbox_tokens, TempDir};
use defendable_testkit::TestDb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const INTERNAL_KEY: &str = "cli-internal-Hg5Fd3Sa1Qw9Er7Ty5Ui3Op1";

/// A recording proxy in front of the server.
#[derive(Clone)]
pub struct Proxy {
    /// What clients sent, all connections appended.
    sent: Arc<Mutex<Vec<u8>>>,
    /// When non-zero: the next connection to carry more than this many bytes back is cut.
    cut_after: Arc<AtomicU64>,
}

impl Proxy {
    /// Breaks the next connection that carries more than `bytes` back to its client.
    pub fn cut_next_transfer_after(&self, bytes: u64) {
        self.cut_after.store(bytes, Ordering::SeqCst);
    }

    /// Whether a cut is still waiting for its transfer.
    pub fn cut_pending(&self) -> bool {
        self.cut_after.load(Ordering::SeqCst) != 0
    }

    /// Everything clients sent, lowercased (header names are case-insensitive).
    pub fn sent(&self) -> String {
        String::from_utf8_lossy(&self.sent.lock().expect("lock")).to_lowercase()
    }

    async fn start(upstream: Arc<OnceLock<SocketAddr>>) -> (SocketAddr, Proxy) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy binds");
        let addr = listener.local_addr().expect("addr");
        let proxy = Proxy {
            sent: Arc::default(),
            cut_after: Arc::default(),
        };
        let p = proxy.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Some(up) = upstream.get().copied() else {
                    continue;
                };
                tokio::spawn(p.clone().relay(client, up));
            }
        });
        (addr, proxy)
    }

    async fn relay(self, client: TcpStream, upstream: SocketAddr) {
        let Ok(server) = TcpStream::connect(upstream).await else {
            return;
        };
        let (mut cr, mut cw) = client.into_split();
        let (mut sr, mut sw) = server.into_split();
        let sent = self.sent.clone();
        let up = async move {
            let mut buf = vec![0u8; 16 * 1024];
            while let Ok(n) = cr.read(&mut buf).await {
                if n == 0 || sw.write_all(&buf[..n]).await.is_err() {
                    break;
                }
                sent.lock().expect("lock").extend_from_slice(&buf[..n]);
            }
        };
        let cut_after = self.cut_after.clone();
        let down = async move {
            let mut buf = vec![0u8; 16 * 1024];
            let mut carried = 0u64;
            while let Ok(n) = sr.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                let limit = cut_after.load(Ordering::SeqCst);
                if limit != 0 && carried + n as u64 > limit {
                    let keep = (limit - carried) as usize;
                    if cut_after
                        .compare_exchange(limit, 0, Ordering::SeqCst, Ordering::SeqCst)
                        .is_ok()
                    {
                        let _ = cw.write_all(&buf[..keep]).await;
                        let _ = cw.shutdown().await;
                        return;
                    }
                }
                if cw.write_all(&buf[..n]).await.is_err() {
                    break;
                }
                carried += n as u64;
            }
            let _ = cw.shutdown().await;
        };
        // Either direction ending ends the connection; a cut drops both halves at once.
        tokio::select! {
            _ = up => {}
            _ = down => {}
        }
    }
}

/// A running server, its database and objects, and a home for the CLI.
pub struct Server {
    /// The base URL clients use (the proxy).
    pub base: String,
    /// The server itself, bypassing the proxy (internal calls).
    pub direct: String,
    pub proxy: Proxy,
    /// Dropped with the server.
    pub db: TestDb,
    pub data: TempDir,
    /// The CLI's HOME and XDG_CONFIG_HOME.
    pub home: TempDir,
    pub objects: Arc<dyn object_store::ObjectStore>,
}

/// What a CLI run printed and how it ended.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Stdout as JSON (for `--json` runs).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }

    /// Panics with everything printed unless the run succeeded.
    pub fn ok(self) -> Run {
        assert_eq!(self.code, 0, "{self:?}");
        self
    }
}

impl Server {
    pub async fn start() -> Server {
        let upstream = Arc::new(OnceLock::new());
        let (proxy_addr, proxy) = Proxy::start(upstream.clone()).await;
        let base = format!("http://{proxy_addr}");
        let data = TempDir::new();
        let signing = defendable_ledger::SigningKey::generate().expect("key").1;
        let pairs: Vec<(String, String)> = [
            ("BIND_ADDR", "127.0.0.1:0"),
            ("API_BASE_URL", base.as_str()),
            ("JWT_SECRET", "cli-jwt-Rt5Yu7Io9Pa2Sd4Fg6Hj8Kl0Zx"),
            ("DEV_LOG_MAIL_LINKS", "false"),
            ("LEDGER_SIGNING_KEY", signing.as_str()),
            (
                "OBJECT_URL_SIGNING_KEY",
                "cli-url-Mn3Bv5Cx7Za9Sd2Fg4Hj6Kl8Qw",
            ),
            ("INTERNAL_API_KEY", INTERNAL_KEY),
            ("SSO_SECRET_KEY", "cli-sso-Lk8Jh6Gf4Ds2Aq9Wz7Xc5Vb3Nm"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let mut config = Config::parse(&Env::from_pairs(pairs)).expect("config");
        config.data_dir = data.path().to_path_buf();
        let dir = data.path().join("objects");
        std::fs::create_dir_all(&dir).expect("objects dir");
        let objects: Arc<dyn object_store::ObjectStore> = Arc::new(
            object_store::local::LocalFileSystem::new_with_prefix(&dir).expect("local store"),
        );
        let db = TestDb::new().await;
        let deps = Dependencies {
            pool: db.another_pool(8),
            objects: objects.clone(),
            presigner: None,
        };
        let app = Application::build(config, deps).expect("server builds");
        let server_addr: SocketAddr = format!("127.0.0.1:{}", app.port()).parse().expect("addr");
        upstream.set(server_addr).expect("set once");
        actix_web::rt::spawn(app.run_until_stopped());
        Server {
            base,
            direct: format!("http://{server_addr}"),
            proxy,
            db,
            data,
            home: TempDir::new(),
            objects,
        }
    }

    /// Runs `defendable ARGS` with `env` and, if given, `stdin`.
    pub async fn cli(&self, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Run {
        let mut child = self.command(args, env).spawn().expect("cli starts");
        let mut input = child.stdin.take().expect("stdin");
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).await.expect("stdin");
        }
        drop(input);
        finish(child).await
    }

    pub fn command(&self, args: &[&str], env: &[(&str, &str)]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_defendable"));
        cmd.args(args)
            .env("DEFENDABLE_API", &self.base)
            .env("HOME", self.home.path())
            .env("XDG_CONFIG_HOME", self.home.path())
            .env_remove("DEFENDABLE_TOKEN")
            .env_remove("DEFENDABLE_ORG")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    /// `defendable login --email EMAIL`, pasting the link from the mail once it arrives.
    pub async fn login(&self, email: &str) -> Run {
        let outbox = self.data.path().join("outbox");
        let before = outbox_tokens(&outbox, email);
        let mut child = self
            .command(&["login", "--email", email], &[])
            .spawn()
            .expect("cli starts");
        let mut waited = Duration::ZERO;
        let token = loop {
            if let Some(t) = outbox_tokens(&outbox, email)
                .into_iter()
                .find(|t| !before.contains(t))
            {
                break t;
            }
            assert!(waited < Duration::from_secs(30), "no mail to {email}");
            tokio::time::sleep(Duration::from_millis(20)).await;
            waited += Duration::from_millis(20);
        };
        let link = format!("{}/auth/callback?token={token}\n", self.base);
        let mut input = child.stdin.take().expect("stdin");
        input.write_all(link.as_bytes()).await.expect("paste");
        drop(input);
        finish(child).await
    }

    /// The CLI's credentials file.
    pub fn credentials(&self) -> PathBuf {
        self.home.path().join("defendable").join("credentials.json")
    }

    /// Puts an object and registers it as a dataset, as the stager would.
    pub async fn publish(&self, slug: &str, key: &str, bytes: Vec<u8>) {
        self.objects
            .put(&object_store::path::Path::from(key), bytes.into())
            .await
            .expect("put");
        defendable_cli::install_crypto_provider();
        let res = reqwest::Client::new()
            .post(format!("{}/internal/datasets", self.direct))
            .header("x-internal-key", INTERNAL_KEY)
            .json(&serde_json::json!({"slug": slug, "title": "Census", "description": "Counts",
                "version": "2026.1", "license": "CC-BY-4.0", "media_type": "text/csv", "object_key": key}))
            .send()
            .await
            .expect("publish");
        assert_eq!(res.status(), 201, "{:?}", res.text().await);
    }
}

pub async fn finish(child: tokio::process::Child) -> Run {
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("the CLI finishes")
        .expect("output");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
