//! The product path as a new user meets it (run with `cargo xtask bench http`): the release
//! server binary on a durable PostgreSQL cluster, driven over loopback by `wrk -t2 -c32`, one
//! run per route, beside the same run's baselines: `GET /healthz` (no database) and pgbench
//! `-S -M prepared -c 32` against the same database, run before and after the reads (each read
//! is printed as a share of their mean). Then the server's RSS after the load and with 1,000
//! open connections.
//!
//! `BENCH_SERVER_BIN` names the server binary (xtask builds it); `BENCH_SECONDS` the length of
//! each run (default 10); `BENCH_ONLY`, when set, runs only the routes whose row contains it
//! (for profiling one route; the baselines and RSS still run).

#![allow(clippy::print_stdout)]

use std::io::Write as _;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use defendable_testkit::bench::durable_database;
use defendable_testkit::files::TempDir;
use defendable_testkit::free_port;
use defendable_testkit::http::{sign_in_by_mail, wait_ready, SignedIn};
use serde_json::{json, Value};

const SECRET: &str = "bench-jwt-K7q2Lm9Xr4Tz8Vw1Ny6Pb3Hc5Jd0Fg";
const URL_KEY: &str = "bench-url-Pq8Wn3Ez5Rt7Yu1Io4As6Df9Gh2Jk0";

/// Every limit a route below would meet, lifted: the load measures the route, not refusals.
const LIFTED: &str = "share-view-ip=1000000000/1h,share-view-token=1000000000/1h,\
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

/// One wrk run: requests/s and p99 (ms).
struct Run {
    rps: f64,
    p99_ms: f64,
    errors: String,
}

fn wrk(url: &str, script: Option<&std::path::Path>, bearer: Option<&str>, secs: u64) -> Run {
    let mut cmd = Command::new("wrk");
    cmd.args(["-t2", "-c32", &format!("-d{secs}s"), "--latency"]);
    if let Some(b) = bearer {
        cmd.args(["-H", &format!("Authorization: Bearer {b}")]);
    }
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
    let p99_ms = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("99%"))
        .map(|v| duration_ms(v.trim()))
        .unwrap_or(f64::NAN);
    let errors = text
        .lines()
        .filter(|l| l.contains("Non-2xx") || l.contains("Socket errors"))
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("; ");
    Run {
        rps,
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

/// Waits for the server, then makes a user, its organization, an API key, some receipts and a
/// share link. Returns (session token, slug, API key, share token).
async fn setup(base: &str, data: &std::path::Path) -> (String, String, String, String) {
    defendable_store::install_crypto_provider();
    let http = reqwest::Client::new();
    wait_ready(&http, base, Duration::from_secs(60)).await;
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
    let SignedIn { token, slug, .. } =
        sign_in_by_mail(&http, base, &data.join("outbox"), "bench@example.com").await;
    let key = post(
        format!("{base}/orgs/{slug}/api-keys"),
        token.clone(),
        json!({"name": "bench"}),
    )
    .await;
    let key = key["secret"].as_str().expect("secret").to_owned();
    let mut last = Value::Null;
    for i in 0..20 {
        last = post(
            format!("{base}/orgs/{slug}/receipts"),
            key.clone(),
            json!({"kind": "bench.seed", "public": {"i": i}}),
        )
        .await;
    }
    let id = last["receipt_id"].as_str().expect("id");
    let share = post(
        format!("{base}/orgs/{slug}/receipts/{id}/share"),
        token.clone(),
        json!({}),
    )
    .await;
    let share_token = share["token"].as_str().expect("token").to_owned();
    (token, slug, key, share_token)
}

fn main() {
    let secs: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
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
    let (token, slug, key, share_token) = rt.block_on(setup(&server.base, data.path()));
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
    // pgbench -i writes its 1M rows just before the runs: write them out now, not during one.
    rt.block_on(async {
        let client = db.pool.get().await.expect("client");
        client
            .batch_execute("CHECKPOINT")
            .await
            .expect("checkpoint");
    });
    println!("\nwrk -t2 -c32 -d{secs}s, release build, loopback, one run each (2 cores shared by server, database and load):");
    println!("{:<52} {:>10} {:>9}", "route", "req/s", "p99 ms");
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let row = |name: &str, run: &dyn Fn() -> Run| -> Option<f64> {
        if !name.contains(only.as_str()) && !name.contains("baseline") {
            return None;
        }
        let run = run();
        println!(
            "{name:<52} {:>10.0} {:>9.1}  {}",
            run.rps, run.p99_ms, run.errors
        );
        Some(run.rps)
    };
    let pgbench_row = || {
        let tps = pgbench(db.url(), secs);
        println!(
            "{:<52} {:>10.0} {:>9}",
            "pgbench -S -M prepared -c 32 -j 2 (baseline)", tps, "—"
        );
        tps
    };
    let base = &server.base;
    row("GET /healthz (baseline: no database)", &|| {
        wrk(&format!("{base}/healthz"), None, None, secs)
    });
    // pgbench before and after the reads: this machine's throughput drifts from minute to
    // minute, so the reads are compared with the mean of the runs on either side of them.
    let before = pgbench_row();
    row("GET /readyz", &|| {
        wrk(&format!("{base}/readyz"), None, None, secs)
    });
    let reads = [
        (
            "GET /me",
            row("GET /me (session)", &|| {
                wrk(&format!("{base}/me"), None, Some(&token), secs)
            }),
        ),
        (
            "GET /orgs/{org}/receipts?limit=10",
            row("GET /orgs/{org}/receipts?limit=10 (API key)", &|| {
                wrk(
                    &format!("{base}/orgs/{slug}/receipts?limit=10"),
                    None,
                    Some(&key),
                    secs,
                )
            }),
        ),
        (
            "GET /share/{token}",
            row("GET /share/{token}", &|| {
                wrk(&format!("{base}/share/{share_token}"), None, None, secs)
            }),
        ),
    ];
    let after = pgbench_row();
    row("POST /orgs/{org}/receipts (API key)", &|| {
        wrk(
            &format!("{base}/orgs/{slug}/receipts"),
            Some(&post_script),
            Some(&key),
            secs,
        )
    });
    row(
        "POST /orgs/{org}/receipts (API key, Idempotency-Key)",
        &|| {
            wrk(
                &format!("{base}/orgs/{slug}/receipts"),
                Some(&keyed_script),
                Some(&key),
                secs,
            )
        },
    );
    let mean = (before + after) / 2.0;
    println!(
        "
reads against pgbench (mean of the runs before and after them: {mean:.0} tps; goal 40 %):"
    );
    for (name, rps) in reads {
        if let Some(rps) = rps {
            println!("{name:<52} {:>9.1} %", 100.0 * rps / mean);
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
