//! The fault harness (issue 13, part 2): the real server binary on a PostgreSQL cluster of the
//! harness's own (never a shared one), under writers, while PostgreSQL restarts, while a server
//! process is killed with SIGKILL, and with three server processes on one database. It prints
//! its figures (run with `--nocapture` to see them); it asserts the promises, and only generous
//! bounds on time.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use defendable_store::cluster::{Cluster, Durability};
use serde_json::{json, Value};

use defendable_testkit::http::{sign_in_by_mail, wait_ready};

use crate::helpers::{path_of, signing_key, TempDir, INTERNAL_KEY, JWT_SECRET, OBJECT_URL_KEY};

const WRITERS: usize = 32;

/// A private cluster, the database the servers share, and the servers' data directory.
struct Harness {
    dir: TempDir,
    cluster: Option<Cluster>,
    url: String,
    http: reqwest::Client,
    servers: usize,
}

impl Harness {
    async fn start() -> Harness {
        let dir = TempDir::new();
        let root = dir.path().join("pg");
        let cluster = start_cluster(root).await;
        let admin = cluster.url("postgres");
        let (client, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
            .await
            .expect("admin connection");
        tokio::spawn(conn);
        client
            .batch_execute("CREATE DATABASE faults")
            .await
            .expect("create database");
        let url = cluster.url("faults");
        std::fs::create_dir_all(dir.path().join("data/objects/raw")).expect("objects dir");
        Harness {
            dir,
            cluster: Some(cluster),
            url,
            http: crate::helpers::http_builder()
                .timeout(Duration::from_secs(30))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            servers: 0,
        }
    }

    /// Starts a server process on the shared database and data directory; waits until it
    /// answers `/healthz`.
    async fn server(&mut self) -> Server {
        self.servers += 1;
        let (socket, port) = defendable_testkit::listener();
        let log =
            std::fs::File::create(self.dir.path().join(format!("server-{}.log", self.servers)))
                .expect("log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_defendable-api"));
        defendable_testkit::hand_down(&mut command, &socket);
        let child = command
            .env("APP_ENV", "development")
            .env("BIND_ADDR", format!("127.0.0.1:{port}"))
            .env("DATA_DIR", self.dir.path().join("data"))
            .env("DATABASE_URL", &self.url)
            .env("JWT_SECRET", JWT_SECRET)
            .env("LEDGER_SIGNING_KEY", signing_key())
            .env("OBJECT_URL_SIGNING_KEY", OBJECT_URL_KEY)
            .env("INTERNAL_API_KEY", INTERNAL_KEY)
            .env("DEV_LOG_MAIL_LINKS", "false")
            .env("DATASET_DOWNLOAD_DAILY_LIMIT", "25")
            // Writers and grants measure the fault, not the limits; one share limit stays low to
            // show that limits are shared.
            .env(
                "RATE_LIMITS",
                "dataset-grant-org=100000/1h,dataset-grant-ip=100000/1h,share-view-ip=100000/1h,share-view-token=6/1h",
            )
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("the server binary starts");
        let server = Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        wait_ready(&self.http, &server.base, Duration::from_secs(60)).await;
        server
    }

    async fn stop_database(&mut self) {
        let cluster = self.cluster.take().expect("running");
        tokio::task::spawn_blocking(move || cluster.stop().expect("pg_ctl stop"))
            .await
            .expect("join");
    }

    async fn start_database(&mut self) {
        self.cluster = Some(start_cluster(self.dir.path().join("pg")).await);
    }

    /// Signs in through the mailed link (on `server`); returns the token and the personal
    /// organization's slug and id.
    async fn sign_in(&self, server: &Server, email: &str) -> (String, String, uuid::Uuid) {
        let outbox = self.dir.path().join("data/outbox");
        let signed = sign_in_by_mail(&self.http, &server.base, &outbox, email).await;
        (
            signed.token,
            signed.slug,
            signed.org_id.parse().expect("uuid"),
        )
    }

    async fn api_key(&self, server: &Server, token: &str, slug: &str) -> (String, String) {
        let created: Value = self
            .http
            .post(server.url(&format!("/orgs/{slug}/api-keys")))
            .bearer_auth(token)
            .json(&json!({"name": "writer"}))
            .send()
            .await
            .expect("key")
            .json()
            .await
            .expect("key");
        (
            created["secret"].as_str().expect("secret").to_owned(),
            created["key"]["id"].as_str().expect("id").to_owned(),
        )
    }

    /// A user signed in on `server`, its personal organization and an API key of it.
    async fn tenant(&self, server: &Server, email: &str) -> Tenant {
        let (token, slug, org) = self.sign_in(server, email).await;
        let (key, key_id) = self.api_key(server, &token, &slug).await;
        Tenant {
            token,
            slug,
            org,
            key,
            key_id,
        }
    }

    async fn db(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .expect("connection");
        tokio::spawn(conn);
        client
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(cluster) = self.cluster.take() {
            let _ = cluster.stop();
        }
    }
}

async fn start_cluster(root: PathBuf) -> Cluster {
    tokio::task::spawn_blocking(move || Cluster::ensure(&root, Durability::Durable))
        .await
        .expect("join")
        .expect("the harness's own cluster")
}

/// A signed-in owner, its organization and an API key of it.
struct Tenant {
    token: String,
    slug: String,
    org: uuid::Uuid,
    key: String,
    key_id: String,
}

/// One server process; killed (SIGKILL) when dropped.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn kill(&mut self) {
        // std's Child::kill is SIGKILL on Unix: no shutdown hooks, no draining.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What one request got.
#[derive(Debug, Clone)]
struct Outcome {
    key: String,
    at: Instant,
    /// `None`: no HTTP response (the connection failed).
    status: Option<u16>,
    retry_after: bool,
    receipt_id: Option<String>,
}

/// Writers recording receipts, and what each request got.
struct Writers {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<Outcome>>>,
    handles: Vec<tokio::task::JoinHandle<()>>,
}

impl Writers {
    /// What the writers got so far.
    fn outcomes(&self) -> Vec<Outcome> {
        self.log.lock().expect("log").clone()
    }

    /// Stops the writers and returns what every request got.
    async fn stop(self) -> Vec<Outcome> {
        self.stop.store(true, Ordering::SeqCst);
        for h in self.handles {
            h.await.expect("writer");
        }
        self.log.lock().expect("log").clone()
    }
}

/// Writers recording receipts with an `Idempotency-Key` each, round-robin over `bases`, until
/// stopped; after a refusal or a failed connection a writer waits 100 ms, as a client backing
/// off would.
fn start_writers(
    http: &reqwest::Client,
    bases: Vec<String>,
    tenant: &Tenant,
    label: &str,
    writers: usize,
) -> Writers {
    let (bearer, slug) = (tenant.key.as_str(), tenant.slug.as_str());
    let stop = Arc::new(AtomicBool::new(false));
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut handles = Vec::new();
    for w in 0..writers {
        let (http, stop, log) = (http.clone(), stop.clone(), log.clone());
        let base = bases[w % bases.len()].clone();
        let url = format!("{base}/orgs/{slug}/receipts");
        let (bearer, label) = (bearer.to_owned(), label.to_owned());
        handles.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let key = format!("{label}-{w}-{i}");
                i += 1;
                let res = http
                    .post(&url)
                    .bearer_auth(&bearer)
                    .header("idempotency-key", &key)
                    .json(&json!({"kind": "fault.write", "public": {"key": key}}))
                    .send()
                    .await;
                let outcome = match res {
                    Ok(res) => {
                        let status = res.status().as_u16();
                        let retry_after = res.headers().contains_key("retry-after");
                        let body: Value = res.json().await.unwrap_or(Value::Null);
                        Outcome {
                            key,
                            at: Instant::now(),
                            status: Some(status),
                            retry_after,
                            receipt_id: body["receipt_id"].as_str().map(str::to_owned),
                        }
                    }
                    Err(_) => Outcome {
                        key,
                        at: Instant::now(),
                        status: None,
                        retry_after: false,
                        receipt_id: None,
                    },
                };
                let ok = outcome.status == Some(201);
                log.lock().expect("log").push(outcome);
                if !ok {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }));
    }
    Writers { stop, log, handles }
}

fn by_status(outcomes: &[Outcome]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for o in outcomes {
        let name = o
            .status
            .map(|s| s.to_string())
            .unwrap_or_else(|| "no response".to_owned());
        *out.entry(name).or_insert(0) += 1;
    }
    out
}

/// Retries every request that was not acknowledged, with its key; returns (new, replayed).
async fn retry_unacknowledged(
    http: &reqwest::Client,
    base: &str,
    tenant: &Tenant,
    outcomes: &[Outcome],
) -> (usize, usize) {
    let (bearer, slug) = (tenant.key.as_str(), tenant.slug.as_str());
    let acked: HashSet<&str> = outcomes
        .iter()
        .filter(|o| o.status == Some(201))
        .map(|o| o.key.as_str())
        .collect();
    let mut pending: Vec<&str> = outcomes
        .iter()
        .filter(|o| !acked.contains(o.key.as_str()))
        .map(|o| o.key.as_str())
        .collect();
    pending.sort_unstable();
    pending.dedup();
    let (mut new, mut replayed) = (0, 0);
    for key in pending {
        let res = http
            .post(format!("{base}/orgs/{slug}/receipts"))
            .bearer_auth(bearer)
            .header("idempotency-key", key)
            .json(&json!({"kind": "fault.write", "public": {"key": key}}))
            .send()
            .await
            .expect("retry");
        match res.status().as_u16() {
            201 => new += 1,
            200 => {
                assert_eq!(
                    res.headers()
                        .get("idempotency-replayed")
                        .map(|v| v.as_bytes()),
                    Some(&b"true"[..])
                );
                replayed += 1
            }
            other => panic!("retrying {key}: {other}"),
        }
    }
    (new, replayed)
}

/// Every acknowledged receipt is in the chain, every key has exactly one receipt, and the
/// chain and its tree verify. Returns the number of receipts.
async fn assert_nothing_lost(
    h: &Harness,
    server: &Server,
    tenant: &Tenant,
    outcomes: &[Outcome],
) -> i64 {
    let (token, slug, org) = (tenant.token.as_str(), tenant.slug.as_str(), tenant.org);
    let db = h.db().await;
    let keys: HashSet<&str> = outcomes.iter().map(|o| o.key.as_str()).collect();
    let receipts: i64 = db
        .query_one("SELECT count(*) FROM receipts WHERE org_id = $1", &[&org])
        .await
        .expect("count")
        .get(0);
    assert_eq!(receipts, keys.len() as i64, "exactly one receipt per key");
    let ids: HashSet<String> = db
        .query("SELECT receipt_id FROM receipts WHERE org_id = $1", &[&org])
        .await
        .expect("ids")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let lost = outcomes
        .iter()
        .filter_map(|o| o.receipt_id.as_ref())
        .filter(|id| !ids.contains(*id))
        .count();
    assert_eq!(lost, 0, "acknowledged receipts lost");
    let verify: Value = h
        .http
        .get(server.url(&format!("/orgs/{slug}/ledger/verify")))
        .bearer_auth(token)
        .send()
        .await
        .expect("verify")
        .json()
        .await
        .expect("verify");
    assert_eq!(verify["valid"], true, "{verify}");
    assert_eq!(verify["checked"], receipts, "{verify}");
    receipts
}

#[actix_web::test]
#[allow(clippy::print_stdout)] // the figures are this test's report (`--nocapture`)
async fn faults_lose_nothing_and_three_processes_behave_as_one() {
    let mut h = Harness::start().await;
    let mut report = Vec::new();

    // 1. PostgreSQL restarts under 32 writers.
    let first = h.server().await;
    let t = h.tenant(&first, "restart@example.com").await;
    let writers = start_writers(&h.http, vec![first.base.clone()], &t, "restart", WRITERS);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    h.stop_database().await;
    let down_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let res = h
        .http
        .get(first.url("/readyz"))
        .send()
        .await
        .expect("readyz");
    let ready_status = res.status().as_u16();
    let readiness: Value = res.json().await.expect("readiness");
    assert_eq!(ready_status, 503, "{readiness}");
    assert_eq!(
        readiness["checks"]["database"], "unreachable",
        "{readiness}"
    );
    // Prometheus still scrapes the counters, with its bearer token, while the database is away.
    let res = h
        .http
        .get(first.url("/metrics"))
        .bearer_auth(INTERNAL_KEY)
        .send()
        .await
        .expect("scrape");
    assert_eq!(res.status(), 200, "a scrape needs no database");
    let text = res.text().await.expect("metrics");
    assert!(
        text.contains(
            "defendable_http_requests_total{route=\"/orgs/{org}/receipts\",method=\"POST\",code=\"503\"}"
        ),
        "the outage's 503s are counted:\n{text}"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    h.start_database().await;
    let up_at = Instant::now();
    let recovered_at = loop {
        let first_ok = writers
            .outcomes()
            .iter()
            .filter(|o| o.status == Some(201) && o.at > up_at)
            .map(|o| o.at)
            .min();
        if let Some(at) = first_ok {
            break at;
        }
        assert!(
            up_at.elapsed() < Duration::from_secs(60),
            "writes did not recover within a minute of PostgreSQL's return"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let outcomes = writers.stop().await;
    let during: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| o.at > down_at && o.at < up_at)
        .collect();
    for o in &outcomes {
        assert!(
            o.status == Some(201) || (o.status == Some(503) && o.retry_after),
            "every answer is 201, or 503 with Retry-After: {o:?}"
        );
    }
    assert!(
        during.iter().any(|o| o.status == Some(503)),
        "the outage was seen"
    );
    let (new, replayed) = retry_unacknowledged(&h.http, &first.base, &t, &outcomes).await;
    let receipts = assert_nothing_lost(&h, &first, &t, &outcomes).await;
    let recovery = recovered_at.duration_since(up_at);
    report.push(format!(
        "PostgreSQL restart, {WRITERS} writers: {} requests {:?}; outage {:.1} s; {} receipts, 0 lost; \
         {} unacknowledged retried with their keys ({new} new, {replayed} already committed); \
         writes succeeded {:.2} s after PostgreSQL was back",
        outcomes.len(),
        by_status(&outcomes),
        up_at.duration_since(down_at).as_secs_f64(),
        receipts,
        new + replayed,
        recovery.as_secs_f64(),
    ));
    drop(first);

    // 2. A server process killed with SIGKILL mid-write; a second process takes over.
    let mut doomed = h.server().await;
    let t = h.tenant(&doomed, "killed@example.com").await;
    let writers = start_writers(&h.http, vec![doomed.base.clone()], &t, "kill", WRITERS);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    doomed.kill();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let outcomes = writers.stop().await;
    let survivor = h.server().await;
    let (new, replayed) = retry_unacknowledged(&h.http, &survivor.base, &t, &outcomes).await;
    let receipts = assert_nothing_lost(&h, &survivor, &t, &outcomes).await;
    report.push(format!(
        "SIGKILL mid-write, {WRITERS} writers: {} requests {:?}; {} receipts, 0 lost; \
         {} unacknowledged retried with their keys on another process ({new} new, \
         {replayed} had committed before the kill; none twice)",
        outcomes.len(),
        by_status(&outcomes),
        receipts,
        new + replayed,
    ));
    drop(survivor);

    // 3. Three processes on one database.
    let servers = [h.server().await, h.server().await, h.server().await];
    let bases: Vec<String> = servers.iter().map(|s| s.base.clone()).collect();
    let t = h.tenant(&servers[0], "three@example.com").await;
    let Tenant {
        token,
        slug,
        key,
        key_id,
        ..
    } = &t;
    let writers = start_writers(&h.http, bases.clone(), &t, "three", 48);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let outcomes = writers.stop().await;
    assert!(
        outcomes.iter().all(|o| o.status == Some(201)),
        "{:?}",
        by_status(&outcomes)
    );
    let receipts = assert_nothing_lost(&h, &servers[2], &t, &outcomes).await;

    // Grants: the quota (25 a day) holds across processes.
    let bytes = b"year,count\n2026,41\n";
    std::fs::write(h.dir.path().join("data/objects/raw/census.csv"), bytes).expect("object");
    let res = h
        .http
        .post(servers[0].url("/internal/datasets"))
        .header("x-internal-key", INTERNAL_KEY)
        .json(
            &json!({"slug": "census", "title": "Census", "description": "", "version": "1",
                      "license": "CC0", "media_type": "text/csv", "object_key": "raw/census.csv"}),
        )
        .send()
        .await
        .expect("publish");
    assert_eq!(res.status(), 201);
    let mut grants = Vec::new();
    for i in 0..75 {
        let http = h.http.clone();
        let url = format!("{}/datasets/catalog/census/download", bases[i % 3]);
        let token = token.clone();
        grants.push(tokio::spawn(async move {
            http.post(url)
                .bearer_auth(token)
                .json(&json!({}))
                .send()
                .await
                .expect("grant")
                .status()
                .as_u16()
        }));
    }
    let mut grant_statuses = BTreeMap::new();
    for g in grants {
        *grant_statuses.entry(g.await.expect("join")).or_insert(0) += 1;
    }
    assert_eq!(
        grant_statuses,
        BTreeMap::from([(201, 25), (429, 50)]),
        "exactly the quota is granted"
    );

    // A rate limit (share-view-token = 6 an hour) holds across processes.
    let receipt_id = outcomes[0].receipt_id.clone().expect("id");
    let share: defendable_ledger::ShareLink = h
        .http
        .post(servers[0].url(&format!("/orgs/{slug}/receipts/{receipt_id}/share")))
        .bearer_auth(token)
        .json(&json!({}))
        .send()
        .await
        .expect("share")
        .json()
        .await
        .expect("share");
    let share_path = path_of(&share.url);
    let mut views = BTreeMap::new();
    for i in 0..12 {
        let status = h
            .http
            .get(format!("{}{share_path}", bases[i % 3]))
            .send()
            .await
            .expect("view")
            .status()
            .as_u16();
        *views.entry(status).or_insert(0) += 1;
    }
    assert_eq!(views, BTreeMap::from([(200, 6), (429, 6)]));

    // A revocation on one process reaches the others.
    let key_status = |base: &str| {
        let request = h.http.get(format!("{base}/orgs/{slug}")).bearer_auth(key);
        async move { request.send().await.expect("get").status() }
    };
    for base in &bases {
        assert_eq!(key_status(base).await, 200);
    }
    let res = h
        .http
        .delete(servers[0].url(&format!("/orgs/{slug}/api-keys/{key_id}")))
        .bearer_auth(token)
        .send()
        .await
        .expect("revoke");
    assert_eq!(res.status(), 204);
    let revoked_at = Instant::now();
    let mut refused_after = Vec::new();
    for base in &bases {
        loop {
            if key_status(base).await == 401 {
                refused_after.push(revoked_at.elapsed());
                break;
            }
            assert!(
                revoked_at.elapsed() < Duration::from_secs(30),
                "revocation did not reach {base}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let slowest = refused_after.iter().max().expect("three");
    report.push(format!(
        "Three processes: 48 writers on one organization, {} receipts, chain verifies (no fork); \
         75 grants against a quota of 25: {grant_statuses:?}; 12 share views against a limit of 6: \
         {views:?}; a revoked key refused everywhere within {:.2} s",
        receipts,
        slowest.as_secs_f64(),
    ));
    println!("\nFault harness figures:");
    for line in &report {
        println!("- {line}");
    }
}
