//! The product path as a new user meets it (run with `cargo xtask bench http`): the release
//! server binary on a durable PostgreSQL cluster, driven over loopback by `wrk -t2 -c32`, one
//! run per route, beside the same run's baselines: `GET /healthz` (no database) and pgbench
//! `-S -M prepared -c 32` against the same database, run before and after the reads (each read
//! is printed as a share of their mean).
//!
//! Then the verification path, for an organization of 1,000 receipts and one of 1,000,000
//! (`BENCH_RECEIPTS` to change the larger): the projection `GET /share/{token}` as the
//! baseline, beside the share link's proof bundle, its page (`Accept: text/html`) and its
//! consistency proof, the member's receipt proof and the signed checkpoint, each printed as a
//! share of the projection. Then appends: the library's batched one-organization rate
//! (`bench_ledger`'s row, in this process, on the same database) beside `POST
//! /orgs/{org}/receipts`. Then the server's RSS after the load and with 1,000 open connections.
//! Every row also prints the machine's busy CPU (`cpu %`, 100 per core, the load generator's
//! included) and that CPU time per request (`cpu µs`).
//!
//! `BENCH_SERVER_BIN` names the server binary (xtask builds it); `BENCH_SECONDS` the length of
//! each run (default 10); `BENCH_ONLY`, when set, runs only the routes whose row contains it
//! (for profiling one route; the baselines and RSS still run).

#![allow(clippy::print_stdout)]

use std::io::Write as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use defendable_ledger::store::{AppendOptions, BatchAppender};
use defendable_ledger::{Draft, ReceiptKind};
use defendable_store::audit::{Actor, AuditAction, AuditContext, AuditEvent};
use defendable_testkit::bench::{drive, durable_database};
use defendable_testkit::files::TempDir;
use defendable_testkit::free_port;
use defendable_testkit::http::{sign_in_by_mail, wait_ready, SignedIn};
use serde_json::{json, Value};
use uuid::Uuid;

const SECRET: &str = "bench-jwt-K7q2Lm9Xr4Tz8Vw1Ny6Pb3Hc5Jd0Fg";
const URL_KEY: &str = "bench-url-Pq8Wn3Ez5Rt7Yu1Io4As6Df9Gh2Jk0";

/// Every limit a route below would meet, lifted: the load measures the route, not refusals.
const LIFTED: &str = "share-view-ip=1000000000/1h,share-view-token=1000000000/1h,\
share-proof-ip=1000000000/1h,share-proof-token=1000000000/1h,\
share-consistency-ip=1000000000/1h,share-consistency-token=1000000000/1h,\
auth-request-email=1000000/10m,auth-request-ip=1000000/10m,auth-verify-ip=1000000/10m";

struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("/proc status");
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS");
        kib / 1024.0
    }
}

/// One wrk run: requests/s, p50 and p99 (ms).
struct Run {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: String,
}

/// What a wrk run sends besides the URL: a bearer, other headers, a Lua script.
#[derive(Default, Clone, Copy)]
struct Ask<'a> {
    bearer: Option<&'a str>,
    header: Option<&'a str>,
    script: Option<&'a std::path::Path>,
}

fn wrk(url: &str, ask: Ask<'_>, secs: u64) -> Run {
    let mut cmd = Command::new("wrk");
    cmd.args(["-t2", "-c32", &format!("-d{secs}s"), "--latency"]);
    if let Some(b) = ask.bearer {
        cmd.args(["-H", &format!("Authorization: Bearer {b}")]);
    }
    if let Some(h) = ask.header {
        cmd.args(["-H", h]);
    }
    let script = ask.script;
    if let Some(s) = script {
        cmd.arg("-s").arg(s);
    }
    let out = cmd
        .arg(url)
        .output()
        .expect("wrk runs (cargo xtask bench http installs it)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let rps = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("wrk printed no rate:\n{text}"));
    let percentile = |p: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(p))
            .map(|v| duration_ms(v.trim()))
            .unwrap_or(f64::NAN)
    };
    let (p50_ms, p99_ms) = (percentile("50%"), percentile("99%"));
    let errors = text
        .lines()
        .filter(|l| l.contains("Non-2xx") || l.contains("Socket errors"))
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("; ");
    Run {
        rps,
        p50_ms,
        p99_ms,
        errors,
    }
}

fn duration_ms(v: &str) -> f64 {
    let (n, unit) = v.split_at(v.find(|c: char| c.is_alphabetic()).unwrap_or(v.len()));
    let n: f64 = n.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => n / 1e3,
        "ms" => n,
        "s" => n * 1e3,
        "m" => n * 60e3,
        _ => f64::NAN,
    }
}

/// Creates pgbench's tables (scale 10) in the bench database.
fn pgbench_init(url: &str) {
    let bin = defendable_store::cluster::program("pgbench").expect("pgbench");
    let init = Command::new(&bin)
        .args(["-i", "-q", "-s", "10", url])
        .output()
        .expect("pgbench -i");
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
}

/// pgbench `-S -M prepared -c 32 -j 2` for `secs`: its tps.
fn pgbench(url: &str, secs: u64) -> f64 {
    let bin = defendable_store::cluster::program("pgbench").expect("pgbench");
    let out = Command::new(&bin)
        .args([
            "-S",
            "-M",
            "prepared",
            "-c",
            "32",
            "-j",
            "2",
            "-T",
            &secs.to_string(),
            url,
        ])
        .output()
        .expect("pgbench");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("tps = "))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("pgbench printed no tps:\n{text}"))
}

/// An organization as the benchmark uses it: a signed-in owner, an API key, a receipt in the
/// middle of its log and a share link to it.
struct Org {
    receipts: u64,
    token: String,
    slug: String,
    key: String,
    receipt_id: String,
    share: String,
}

fn draft(n: u64) -> Draft {
    Draft::new(
        ReceiptKind::parse("run").expect("kind"),
        json!({"suite": "integration", "passed": n % 500, "commit": "4f9c2d1e"}),
        Some(json!({"runner": "ci-7"})),
    )
    .expect("draft")
}

/// Signs `email` in (which creates their organization), makes an API key, brings the
/// organization's log to `receipts` receipts through the library's batched appender (64
/// writers, tree maintained, as the server appends), then shares the receipt in the middle.
async fn organization(
    http: &reqwest::Client,
    base: &str,
    data: &std::path::Path,
    appender: &BatchAppender,
    email: &str,
    receipts: u64,
) -> Org {
    let SignedIn {
        token,
        slug,
        org_id,
    } = sign_in_by_mail(http, base, &data.join("outbox"), email).await;
    let org: Uuid = org_id.parse().expect("org id");
    let post = |path: String, bearer: String, body: Value| {
        let http = http.clone();
        async move {
            http.post(path)
                .bearer_auth(bearer)
                .json(&body)
                .send()
                .await
                .expect("post")
                .json::<Value>()
                .await
                .expect("json")
        }
    };
    let key = post(
        format!("{base}/orgs/{slug}/api-keys"),
        token.clone(),
        json!({"name": "bench"}),
    )
    .await;
    let key = key["secret"].as_str().expect("secret").to_owned();
    let started = Instant::now();
    let writers = 64u64;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let a = appender.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = w;
            while i < receipts {
                a.append(org, draft(i), AppendOptions::default())
                    .await
                    .expect("append");
                i += writers;
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
    let page: Value = http
        .get(format!(
            "{base}/orgs/{slug}/receipts?after={}&limit=1",
            receipts / 2
        ))
        .bearer_auth(&key)
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("page");
    let receipt_id = page["items"][0]["receipt_id"]
        .as_str()
        .expect("a receipt in the middle")
        .to_owned();
    let share = post(
        format!("{base}/orgs/{slug}/receipts/{receipt_id}/share"),
        token.clone(),
        json!({}),
    )
    .await;
    let share = share["token"].as_str().expect("token").to_owned();
    println!(
        "organization {slug}: {receipts} receipts appended in {:.1} s; shared receipt {receipt_id}",
        started.elapsed().as_secs_f64()
    );
    Org {
        receipts,
        token,
        slug,
        key,
        receipt_id,
        share,
    }
}

/// Prints rows, running only those `BENCH_ONLY` selects (and every baseline).
struct Table {
    secs: u64,
    only: String,
}

impl Table {
    fn row(&self, name: &str, run: impl FnOnce() -> Run) -> Option<Run> {
        if !name.contains(self.only.as_str()) && !name.contains("baseline") {
            return None;
        }
        let before = CpuTimes::now();
        let run = run();
        let busy = CpuTimes::now().busy_cores_since(&before);
        println!(
            "{name:<64} {:>9.0} {:>8.1} {:>8.1} {:>6.0} {:>7.1}  {}",
            run.rps,
            run.p50_ms,
            run.p99_ms,
            busy * 100.0,
            busy * 1e6 / run.rps,
            run.errors
        );
        Some(run)
    }

    fn get(&self, name: &str, url: &str, ask: Ask<'_>) -> Option<Run> {
        self.row(name, || wrk(url, ask, self.secs))
    }

    fn header(&self) {
        println!(
            "{:<64} {:>9} {:>8} {:>8} {:>6} {:>7}",
            "route", "req/s", "p50 ms", "p99 ms", "cpu %", "cpu µs"
        );
    }
}

/// The machine's CPU time from `/proc/stat`: every process's, the load generator's too, so a
/// row's `cpu %` (100 per busy core) and `cpu µs` (busy CPU time per request) show where a
/// rate is bounded by the two cores rather than by waiting.
struct CpuTimes {
    busy: u64,
    total: u64,
}

impl CpuTimes {
    fn now() -> CpuTimes {
        let stat = std::fs::read_to_string("/proc/stat").expect("/proc/stat");
        let ticks: Vec<u64> = stat
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("cpu "))
            .expect("the cpu line")
            .split_whitespace()
            .map(|v| v.parse().expect("ticks"))
            .collect();
        // user nice system idle iowait irq softirq steal (guest time is inside user).
        let total: u64 = ticks.iter().take(8).sum();
        CpuTimes {
            busy: total - ticks[3] - ticks[4],
            total,
        }
    }

    /// Busy cores on average since `before` (2.0: both cores of this machine all the time).
    fn busy_cores_since(&self, before: &CpuTimes) -> f64 {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let total = (self.total - before.total).max(1) as f64;
        cores * (self.busy - before.busy) as f64 / total
    }
}

/// Prints each row's rate as a share of `baseline`'s, beside its goal.
fn shares(title: &str, baseline: f64, rows: &[(&str, Option<Run>, f64)]) {
    println!("{title} ({baseline:.0} req/s):");
    for (name, run, goal) in rows {
        if let Some(run) = run {
            println!(
                "  {name:<62} {:>6.1} %   (goal >= {goal:.0} %{})",
                100.0 * run.rps / baseline,
                if run.p99_ms.is_finite() {
                    format!("; p99 {:.1} ms", run.p99_ms)
                } else {
                    String::new()
                }
            );
        }
    }
}

/// The verification rows for one organization, each against its projection in the same run.
fn verification(t: &Table, base: &str, org: &Org) {
    let n = org.receipts;
    println!("\n== verification: an organization of {n} receipts");
    t.header();
    let share = format!("{base}/share/{}", org.share);
    let Some(projection) = t.get(
        &format!("GET /share/{{token}} [{n}] (baseline: projection)"),
        &share,
        Ask::default(),
    ) else {
        return;
    };
    let key = Some(org.key.as_str());
    let rows = [
        (
            "GET /share/{token}/proof",
            t.get(
                &format!("GET /share/{{token}}/proof [{n}]"),
                &format!("{share}/proof"),
                Ask::default(),
            ),
            50.0,
        ),
        (
            "GET /share/{token} (Accept: text/html)",
            t.get(
                &format!("GET /share/{{token}} (Accept: text/html) [{n}]"),
                &share,
                Ask {
                    header: Some("Accept: text/html"),
                    ..Ask::default()
                },
            ),
            50.0,
        ),
        (
            "GET /orgs/{org}/receipts/{id}/proof (API key)",
            t.get(
                &format!("GET /orgs/{{org}}/receipts/{{id}}/proof (API key) [{n}]"),
                &format!("{base}/orgs/{}/receipts/{}/proof", org.slug, org.receipt_id),
                Ask {
                    bearer: key,
                    ..Ask::default()
                },
            ),
            40.0,
        ),
        (
            "GET /share/{token}/consistency?from=<half>",
            t.get(
                &format!("GET /share/{{token}}/consistency?from=<half> [{n}]"),
                &format!("{share}/consistency?from={}", (n / 2).max(1)),
                Ask::default(),
            ),
            40.0,
        ),
        (
            "GET /orgs/{org}/ledger/checkpoint (API key)",
            t.get(
                &format!("GET /orgs/{{org}}/ledger/checkpoint (API key) [{n}]"),
                &format!("{base}/orgs/{}/ledger/checkpoint", org.slug),
                Ask {
                    bearer: key,
                    ..Ask::default()
                },
            ),
            40.0,
        ),
    ];
    shares(
        &format!("against the projection of the {n}-receipt organization, same run"),
        projection.rps,
        &rows,
    );
}

/// `bench_ledger`'s batched one-organization row: 32 writers appending through the library's
/// batched appender for `secs`, in this process, on the server's database. With `audited`, each
/// receipt also records the audit event `POST /orgs/{org}/receipts` records with it (in the
/// same transaction), so the two rows split the route's gap into the audit write and the rest.
async fn library_rate(pool: deadpool_postgres::Pool, secs: u64, audited: bool) -> Run {
    let appender = BatchAppender::start(pool, 2, 512);
    let org = Uuid::new_v4();
    let key = Uuid::new_v4();
    let (n, t, mut lat) = drive(32, Duration::from_secs(secs), move |w, i| {
        let a = appender.clone();
        let audit = audited.then(|| {
            let mut e = AuditEvent::new(AuditAction::ReceiptCreate, Actor::ApiKey(key));
            e.org_id = Some(org);
            e.context = AuditContext {
                request_id: Some(format!("bench-{w}-{i}")),
                ip: Some(std::net::Ipv4Addr::LOCALHOST.into()),
                user_agent: Some("wrk".into()),
            };
            e.details = json!({ "kind": "run", "via": "api" });
            e
        });
        async move {
            a.append(
                org,
                draft(w as u64 * 1_000_000 + i),
                AppendOptions {
                    audit,
                    ..AppendOptions::default()
                },
            )
            .await
            .expect("append");
        }
    })
    .await;
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e3;
    Run {
        rps: n as f64 / t.as_secs_f64(),
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        errors: String::new(),
    }
}

fn main() {
    let secs: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let big: u64 = std::env::var("BENCH_RECEIPTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let bin = std::env::var("BENCH_SERVER_BIN").expect("BENCH_SERVER_BIN (cargo xtask bench http)");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (db, origin) = rt.block_on(durable_database());
    println!("database: {origin} (synchronous_commit on)");
    let data = TempDir::new();
    let port = free_port();
    let ledger_key = defendable_ledger::SigningKey::generate().expect("key").1;
    let child = Command::new(&bin)
        .env("APP_ENV", "development")
        .env("BIND_ADDR", format!("127.0.0.1:{port}"))
        .env("DATA_DIR", data.path())
        .env("DATABASE_URL", db.url())
        .env("JWT_SECRET", SECRET)
        .env("LEDGER_SIGNING_KEY", &ledger_key)
        .env("OBJECT_URL_SIGNING_KEY", URL_KEY)
        .env("DEV_LOG_MAIL_LINKS", "false")
        .env("RATE_LIMITS", LIFTED)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("server starts");
    let server = Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let base = server.base.as_str();
    defendable_store::install_crypto_provider();
    let http = reqwest::Client::new();
    rt.block_on(wait_ready(&http, base, Duration::from_secs(60)));
    let (small, large) = rt.block_on(async {
        let appender = BatchAppender::start(db.pool.clone(), 2, 512);
        let small = organization(
            &http,
            base,
            data.path(),
            &appender,
            "bench@example.com",
            1_000,
        )
        .await;
        let large = organization(&http, base, data.path(), &appender, "big@example.com", big).await;
        (small, large)
    });
    println!(
        "server: {bin}, RSS after set-up {:.1} MiB",
        server.rss_mib()
    );

    let dir = TempDir::new();
    let post_script = dir.path().join("post.lua");
    let mut f = std::fs::File::create(&post_script).expect("script");
    write!(
        f,
        "wrk.method = \"POST\"\nwrk.body = '{{\"kind\": \"bench.http\", \"public\": {{\"n\": 1}}}}'\n\
         wrk.headers[\"Content-Type\"] = \"application/json\"\n"
    )
    .expect("script");
    let keyed_script = dir.path().join("keyed.lua");
    let mut f = std::fs::File::create(&keyed_script).expect("script");
    write!(
        f,
        "local n = 0\nlocal threads = 0\n\
         setup = function(thread) threads = threads + 1; thread:set(\"tid\", threads) end\n\
         wrk.headers[\"Content-Type\"] = \"application/json\"\n\
         request = function()\n  n = n + 1\n\
         wrk.headers[\"Idempotency-Key\"] = \"k-\" .. tid .. \"-\" .. n\n\
         return wrk.format(\"POST\", nil, nil, '{{\"kind\": \"bench.http\", \"public\": {{\"n\": 1}}}}')\nend\n"
    )
    .expect("script");

    pgbench_init(db.url());
    // pgbench -i and the populated logs are written out now, not during a run.
    rt.block_on(async {
        let client = db.pool.get().await.expect("client");
        for sql in ["VACUUM ANALYZE", "CHECKPOINT"] {
            client.batch_execute(sql).await.expect(sql);
        }
    });
    let t = Table {
        secs,
        only: std::env::var("BENCH_ONLY").unwrap_or_default(),
    };
    println!("\nwrk -t2 -c32 -d{secs}s, release build, loopback, one run each (2 cores shared by server, database and load):");
    t.header();
    let pgbench_row = || {
        let cpu = CpuTimes::now();
        let tps = pgbench(db.url(), secs);
        let busy = CpuTimes::now().busy_cores_since(&cpu);
        println!(
            "{:<64} {:>9.0} {:>8} {:>8} {:>6.0} {:>7.1}",
            "pgbench -S -M prepared -c 32 -j 2 (baseline)",
            tps,
            "—",
            "—",
            busy * 100.0,
            busy * 1e6 / tps
        );
        tps
    };
    t.get(
        "GET /healthz (baseline: no database)",
        &format!("{base}/healthz"),
        Ask::default(),
    );
    // pgbench before and after the reads: this machine's throughput drifts from minute to
    // minute, so the reads are compared with the mean of the runs on either side of them.
    let before = pgbench_row();
    t.get("GET /readyz", &format!("{base}/readyz"), Ask::default());
    let reads = [
        (
            "GET /me",
            t.get(
                "GET /me (session)",
                &format!("{base}/me"),
                Ask {
                    bearer: Some(&small.token),
                    ..Ask::default()
                },
            ),
            75.0,
        ),
        (
            "GET /orgs/{org}/receipts?limit=10",
            t.get(
                "GET /orgs/{org}/receipts?limit=10 (API key)",
                &format!("{base}/orgs/{}/receipts?limit=10", small.slug),
                Ask {
                    bearer: Some(&small.key),
                    ..Ask::default()
                },
            ),
            75.0,
        ),
        (
            "GET /share/{token}",
            t.get(
                "GET /share/{token}",
                &format!("{base}/share/{}", small.share),
                Ask::default(),
            ),
            75.0,
        ),
    ];
    let after = pgbench_row();
    shares(
        "\nreads against pgbench (mean of the runs before and after them)",
        (before + after) / 2.0,
        &reads,
    );

    verification(&t, base, &small);
    verification(&t, base, &large);

    println!("\n== appends: one organization, 32 writers");
    t.header();
    let library = t.row(
        "library: batched, 1 org (baseline: bench_ledger's row)",
        || rt.block_on(library_rate(db.pool.clone(), secs, false)),
    );
    let audited = t.row(
        "library: batched, 1 org, with POST's audit event (reference)",
        || rt.block_on(library_rate(db.pool.clone(), secs, true)),
    );
    let posts = [
        (
            "POST /orgs/{org}/receipts (API key)",
            t.get(
                "POST /orgs/{org}/receipts (API key)",
                &format!("{base}/orgs/{}/receipts", small.slug),
                Ask {
                    bearer: Some(&small.key),
                    script: Some(&post_script),
                    ..Ask::default()
                },
            ),
            90.0,
        ),
        (
            "POST /orgs/{org}/receipts (API key, Idempotency-Key)",
            t.get(
                "POST /orgs/{org}/receipts (API key, Idempotency-Key)",
                &format!("{base}/orgs/{}/receipts", small.slug),
                Ask {
                    bearer: Some(&small.key),
                    script: Some(&keyed_script),
                    ..Ask::default()
                },
            ),
            90.0,
        ),
    ];
    if let Some(library) = library {
        shares("against the library's rate", library.rps, &posts);
    }
    if let Some(audited) = audited {
        println!(
            "against the library's rate with the audit event (reference, no goal) ({:.0} req/s):",
            audited.rps
        );
        for (name, run, _) in posts.iter() {
            if let Some(run) = run {
                println!("  {name:<62} {:>6.1} %", 100.0 * run.rps / audited.rps);
            }
        }
    }
    println!("\nserver RSS after the load: {:.1} MiB", server.rss_mib());

    // 1,000 open keep-alive connections, each having made one request.
    let mut open = Vec::with_capacity(1000);
    for _ in 0..1000 {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: bench\r\n\r\n")
            .expect("write");
        open.push(s);
    }
    std::thread::sleep(Duration::from_secs(2));
    println!(
        "server RSS with 1,000 open connections: {:.1} MiB",
        server.rss_mib()
    );
    drop(open);
    drop(server);
    drop(db);
}
