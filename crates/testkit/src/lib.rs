//! Test-only helpers: every test gets its own PostgreSQL database, cloned from a migrated
//! template, so tests run in parallel and leave nothing behind.
//!
//! The server is the one named by `TEST_DATABASE_URL` (or `DATABASE_URL`) when set; otherwise a
//! private cluster is started under the system temp directory and reused by later test runs.
//! The template is named after a fingerprint of the migrations, so changing a migration builds
//! a new one.

pub mod dns;
pub mod files;
pub mod http;
pub mod oidc;
pub mod s3;

use std::path::PathBuf;

use deadpool_postgres::Pool;
use defendable_store::cluster::{Cluster, Durability};
use defendable_store::pg_message;
use tokio::sync::OnceCell;
use tokio_postgres::NoTls;

/// Where the template lives, established once per test process.
#[derive(Debug, Clone)]
struct Server {
    /// URL of the server's maintenance database (`postgres`).
    admin_url: String,
    /// Name of the migrated template database.
    template: String,
}

static SERVER: OnceCell<Server> = OnceCell::const_new();

/// Serializes template creation across test processes.
const TEMPLATE_LOCK: i64 = 0x0def_e0da_b1e0_0002;

/// A fresh, migrated database that is dropped when this value is dropped.
#[derive(Debug)]
pub struct TestDb {
    /// A pool on the fresh database.
    pub pool: Pool,
    url: String,
    name: String,
    admin_url: String,
}

impl TestDb {
    /// Creates a fresh migrated database for one test.
    pub async fn new() -> TestDb {
        defendable_store::install_crypto_provider();
        Self::create(true).await
    }

    /// Creates a fresh database with no schema at all (for code that migrates on its own).
    pub async fn empty() -> TestDb {
        Self::create(false).await
    }

    async fn create(migrated: bool) -> TestDb {
        let server = SERVER
            .get_or_try_init(prepare_server)
            .await
            .unwrap_or_else(|e| panic!("test database server: {e}"));
        let name = format!("defendable_test_{}", uuid::Uuid::new_v4().simple());
        let admin = connect(&server.admin_url).await;
        // Registered before it exists, so a leftover sweep never mistakes it for an orphan.
        OURS.lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(name.clone());
        let template = if migrated {
            server.template.as_str()
        } else {
            "template0"
        };
        admin
            .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {template}"))
            .await
            .unwrap_or_else(|e| panic!("creating {name}: {}", pg_message(&e)));
        let url = with_database(&server.admin_url, &name);
        let pool = defendable_store::pool(&url, 32).expect("pool for the test database");
        TestDb {
            pool,
            url,
            name,
            admin_url: server.admin_url.clone(),
        }
    }

    /// The connection URL of this database (for a second pool or a server process).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A new, independent pool on this database (stands in for another server process).
    pub fn another_pool(&self, max_size: usize) -> Pool {
        defendable_store::pool(&self.url, max_size).expect("pool for the test database")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        self.pool.close();
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Dropped on a detached thread: PostgreSQL 15's DROP DATABASE waits until every server
        // process has answered a signal barrier, which an idle auxiliary process can delay by a
        // minute. A database the process exits before dropping is removed by the next run
        // (see `drop_leftovers`). FORCE disconnects pools the test may have leaked.
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let result = rt.block_on(async {
                let admin = connect(&admin_url).await;
                admin
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
            });
            if let Err(e) = result {
                eprintln!(
                    "warning: could not drop test database {name}: {}",
                    pg_message(&e)
                );
            }
        });
    }
}

/// Drops the databases named `{prefix}…` that no session is connected to, except `keep`'s.
async fn drop_unused(admin: &tokio_postgres::Client, prefix: &str, keep: impl Fn(&str) -> bool) {
    let Ok(rows) = admin
        .query(
            "SELECT d.datname FROM pg_database d
             WHERE starts_with(d.datname, $1)
               AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datname = d.datname)",
            &[&prefix],
        )
        .await
    else {
        return;
    };
    for row in rows {
        let name: String = row.get(0);
        if !keep(&name) {
            let _ = admin
                .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await;
        }
    }
}

/// Drops test databases left by earlier test processes (those no session is connected to and
/// that are not this process's), in the background.
fn drop_leftovers(admin_url: String) {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let admin = connect(&admin_url).await;
            drop_unused(&admin, "defendable_test_", |name| {
                OURS.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .iter()
                    .any(|o| o == name)
            })
            .await;
        });
    });
}

/// Databases created by this process (never dropped as leftovers).
static OURS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

async fn prepare_server() -> Result<Server, String> {
    let admin_url = match std::env::var("TEST_DATABASE_URL")
        .ok()
        .or_else(|| std::env::var("DATABASE_URL").ok())
        .filter(|s| !s.trim().is_empty())
    {
        Some(url) => with_database(&url, "postgres"),
        None => {
            let root = cluster_root();
            let cluster =
                tokio::task::spawn_blocking(move || Cluster::ensure(&root, Durability::Throwaway))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())?;
            cluster.url("postgres")
        }
    };
    let template = format!(
        "defendable_tmpl_{}",
        defendable_store::migrations_fingerprint()
    );
    let admin = connect(&admin_url).await;
    admin
        .execute("SELECT pg_advisory_lock($1)", &[&TEMPLATE_LOCK])
        .await
        .map_err(|e| pg_message(&e))?;
    let exists: bool = admin
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)",
            &[&template],
        )
        .await
        .map_err(|e| pg_message(&e))?
        .get(0);
    if !exists {
        build_template(&admin, &admin_url, &template).await?;
    }
    admin
        .execute("SELECT pg_advisory_unlock($1)", &[&TEMPLATE_LOCK])
        .await
        .map_err(|e| pg_message(&e))?;
    drop_leftovers(admin_url.clone());
    Ok(Server {
        admin_url,
        template,
    })
}

/// Migrates a scratch database, then renames it into place so a half-built template is never
/// used by anyone.
async fn build_template(
    admin: &tokio_postgres::Client,
    admin_url: &str,
    template: &str,
) -> Result<(), String> {
    let building = format!("{template}_building");
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)"))
        .await
        .map_err(|e| pg_message(&e))?;
    admin
        .batch_execute(&format!("CREATE DATABASE {building}"))
        .await
        .map_err(|e| pg_message(&e))?;
    let pool = defendable_store::pool(&with_database(admin_url, &building), 1)
        .map_err(|e| e.to_string())?;
    defendable_store::migrate(&pool)
        .await
        .map_err(|e| e.to_string())?;
    pool.close();
    admin
        .batch_execute(&format!("ALTER DATABASE {building} RENAME TO {template}"))
        .await
        .map_err(|e| pg_message(&e))
}

fn cluster_root() -> PathBuf {
    // Versioned: a cluster made with older settings is left alone and a new one is made.
    std::env::temp_dir().join("defendable-testkit-pg-v2")
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting to the test server: {e}"));
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// `url` with its database name replaced by `db`.
fn with_database(url: &str, db: &str) -> String {
    defendable_store::conninfo::with_database(url, db).expect("a valid PostgreSQL URL")
}

/// Helpers shared by the benchmark examples (`cargo xtask bench …`).
pub mod bench {
    use std::future::Future;
    use std::path::PathBuf;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use defendable_store::cluster::{Cluster, Durability};

    /// A fresh, migrated database with synchronous commit on: on `DATABASE_URL` when set,
    /// otherwise on a durable private cluster under `target/bench-pg`. Dropping it drops the
    /// database.
    pub async fn durable_database() -> (super::TestDb, &'static str) {
        let (admin, origin) = match std::env::var("DATABASE_URL") {
            Ok(url) => (super::with_database(&url, "postgres"), "DATABASE_URL"),
            Err(_) => {
                let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-pg");
                let cluster = tokio::task::spawn_blocking(move || {
                    Cluster::ensure(&root, Durability::Durable)
                })
                .await
                .expect("join")
                .expect("bench cluster");
                (cluster.url("postgres"), "a private durable cluster")
            }
        };
        let name = format!("defendable_bench_{}", uuid::Uuid::new_v4().simple());
        let client = super::connect(&admin).await;
        // A bench exits before its database's detached drop finishes: remove earlier ones now.
        super::drop_unused(&client, "defendable_bench_", |_| false).await;
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create database");
        let url = super::with_database(&admin, &name);
        let pool = defendable_store::pool(&url, 40).expect("pool");
        defendable_store::migrate(&pool).await.expect("migrate");
        (
            super::TestDb {
                pool,
                url,
                name,
                admin_url: admin,
            },
            origin,
        )
    }

    /// Runs `writers` tasks calling `op(writer, i)` until `run` elapses; returns the number of
    /// calls, the elapsed time and every call's latency.
    pub async fn drive<F, Fut>(
        writers: usize,
        run: Duration,
        op: F,
    ) -> (usize, Duration, Vec<Duration>)
    where
        F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let op = Arc::new(op);
        let started = Instant::now();
        let deadline = started + run;
        let mut tasks = Vec::new();
        for w in 0..writers {
            let op = op.clone();
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut i = 0u64;
                while Instant::now() < deadline {
                    let t = Instant::now();
                    op(w, i).await;
                    lat.push(t.elapsed());
                    i += 1;
                }
                lat
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.expect("join"));
        }
        (all.len(), started.elapsed(), all)
    }

    /// Requests `urls` round-robin with `GET` from `concurrency` clients (keep-alive) until `run`
    /// elapses; every answer must be a success. Returns requests/s and the sorted latencies.
    pub async fn http_load(
        urls: &[String],
        bearer: Option<&str>,
        concurrency: usize,
        run: Duration,
    ) -> (f64, Vec<Duration>) {
        defendable_store::install_crypto_provider();
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(concurrency)
            .build()
            .expect("client");
        let deadline = Instant::now() + run;
        let urls: Arc<Vec<String>> = Arc::new(urls.to_vec());
        let mut tasks = Vec::new();
        for c in 0..concurrency {
            let (http, urls) = (http.clone(), urls.clone());
            let bearer = bearer.map(str::to_owned);
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut i = c;
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let mut req = http.get(&urls[i % urls.len()]);
                    if let Some(b) = &bearer {
                        req = req.bearer_auth(b);
                    }
                    let res = req.send().await.expect("response");
                    assert!(res.status().is_success(), "{}", res.status());
                    let _ = res.bytes().await;
                    lat.push(t.elapsed());
                    i += concurrency;
                }
                lat
            }));
        }
        let started = Instant::now();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.expect("join"));
        }
        let rps = all.len() as f64 / started.elapsed().as_secs_f64();
        all.sort();
        (rps, all)
    }

    /// Prints one result row: rate, p50 and p99 in milliseconds.
    #[allow(clippy::print_stdout)]
    pub fn row(name: &str, count: usize, elapsed: Duration, mut lat: Vec<Duration>) -> f64 {
        lat.sort();
        let pct = |p: f64| {
            if lat.is_empty() {
                0.0
            } else {
                lat[((lat.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e3
            }
        };
        let rate = count as f64 / elapsed.as_secs_f64();
        println!(
            "{name:<52} {rate:>10.0} /s   p50 {:>7.2} ms   p99 {:>7.2} ms   (n={count})",
            pct(0.5),
            pct(0.99)
        );
        rate
    }
}

/// A listening socket on 127.0.0.1 (port 0: the system picks) and its port. Hand it to the
/// server that needs it — in process (`Application::build_on`) or to a child with
/// [`hand_down`] — instead of a port number: held from the bind on, the port cannot be taken by
/// another process, so a test only ever talks to the server it started.
pub fn listener() -> (std::net::TcpListener, u16) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback socket");
    let port = listener.local_addr().expect("its address").port();
    (listener, port)
}

/// Hands `listener` to the child `cmd` starts as its descriptor 3 with `LISTEN_FDS=1` (systemd's
/// socket activation, which the server takes before `BIND_ADDR`).
pub fn hand_down(cmd: &mut std::process::Command, listener: &std::net::TcpListener) {
    use command_fds::{CommandFdExt as _, FdMapping};
    let socket = listener.try_clone().expect("a copy of the socket");
    cmd.env("LISTEN_FDS", "1")
        .fd_mappings(vec![FdMapping {
            parent_fd: socket.into(),
            child_fd: 3,
        }])
        .expect("one mapping");
}

/// The port a child announces once it listens: reads `out` (its standard output or error) until
/// a line holds `marker` followed by a port number, and answers that number. For servers that
/// bind port 0 themselves and say which port they got (chromedriver, the OpenID Provider), so
/// there is never a moment the port is free for another process. The rest of `out` is drained in
/// the background, so the child never blocks on a full pipe.
pub fn announced_port(
    out: impl std::io::Read + Send + 'static,
    marker: &'static str,
    within: std::time::Duration,
) -> u16 {
    use std::io::BufRead as _;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in std::io::BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if let Some(at) = line.find(marker) {
                let digits: String = line[at + marker.len()..]
                    .trim_start()
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                if let (Some(tx), Ok(port)) = (tx.take(), digits.parse::<u16>()) {
                    let _ = tx.send(port);
                }
            }
        }
    });
    rx.recv_timeout(within)
        .unwrap_or_else(|_| panic!("no line with {marker:?} and a port within {within:?}"))
}

/// A TCP port on 127.0.0.1 that refuses connections for as long as the returned socket lives:
/// bound (so no other process can take it) but not listening. For "the server is unreachable".
pub fn refusing_port() -> (socket2::Socket, u16) {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("a socket");
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().expect("address");
    socket.bind(&any.into()).expect("bound");
    let port = socket
        .local_addr()
        .expect("address")
        .as_socket()
        .expect("an IP socket")
        .port();
    (socket, port)
}

/// A free port on 127.0.0.1 for a server to start on later (UDP and TCP are both free when
/// this returns). Only for servers that can neither take a socket nor report the port they
/// bound (dnsmasq); those check that the server they started is the one that answers.
pub fn free_port() -> u16 {
    loop {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        let port = tcp.local_addr().expect("addr").port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}
