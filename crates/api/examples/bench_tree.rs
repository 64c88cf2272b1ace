//! Ledger v2 benchmark (run with `cargo xtask bench tree`; `DATABASE_URL` to use your server,
//! otherwise a durable private cluster under `target/bench-pg` with synchronous commit on).
//!
//! Prints, from one run on one fresh database:
//! - appends/s on one organization under 32 writers with the Merkle tree maintained, beside the
//!   same appender without the tree (appending as the release before the tree did), alternated
//!   so both see the same machine;
//! - a 1,000,000-receipt organization (`BENCH_RECEIPTS` to change), then proof bundles of its
//!   receipts over HTTP from the real server with rate limits lifted: size beyond the receipt's
//!   own body, latency with one client and with 32, beside `/healthz` and the projection alone;
//! - offline bundle verification on one core (hash, id, note, Ed25519, inclusion), beside the
//!   Ed25519 check and the body's SHA-256 alone.

#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use defendable_api::{Application, Dependencies};
use defendable_config::{Config, Env};
use defendable_ledger::bundle::verify_bundle;
use defendable_ledger::note::LogSigner;
use defendable_ledger::store::{self, AppendOptions, BatchAppender};
use defendable_ledger::{Draft, LedgerName, ProofBundle, ReceiptKind, SigningKey, Vkeys};
use defendable_testkit::bench::{drive, durable_database, http_load, row};
use serde_json::json;
use uuid::Uuid;

const WRITERS: usize = 32;
const RUN: Duration = Duration::from_secs(5);

fn draft(n: u64) -> Draft {
    Draft::new(
        ReceiptKind::parse("run").expect("kind"),
        json!({"suite": "integration", "passed": n % 500, "commit": "4f9c2d1e"}),
        Some(json!({"runner": "ci-7"})),
    )
    .expect("draft")
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e3
}

async fn appends(appender: &BatchAppender, label: &str) -> f64 {
    let org = Uuid::new_v4();
    let a = appender.clone();
    let (n, t, lat) = drive(WRITERS, RUN, move |w, i| {
        let a = a.clone();
        async move {
            a.append(
                org,
                draft(w as u64 * 1_000_000 + i),
                AppendOptions::default(),
            )
            .await
            .expect("append");
        }
    })
    .await;
    row(label, n, t, lat)
}

/// Rounds of 32 appends sent together and awaited together, for `RUN`: batches of the same size
/// whatever the appender's timing, so the rate compares the work per batch.
async fn rounds(appender: &BatchAppender, label: &str) -> f64 {
    let org = Uuid::new_v4();
    let deadline = Instant::now() + RUN;
    let started = Instant::now();
    let mut lat = Vec::new();
    let mut n = 0u64;
    while Instant::now() < deadline {
        let t = Instant::now();
        let calls: Vec<_> = (0..WRITERS as u64)
            .map(|i| {
                let a = appender.clone();
                let k = n + i;
                tokio::spawn(async move {
                    a.append(org, draft(k), AppendOptions::default())
                        .await
                        .expect("append")
                })
            })
            .collect();
        for c in calls {
            c.await.expect("join");
        }
        n += WRITERS as u64;
        lat.push(t.elapsed());
    }
    row(label, n as usize, started.elapsed(), lat)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, run());
}

async fn run() {
    let (db, origin) = durable_database().await;
    let pool = db.pool.clone();
    println!(
        "database: fresh database on {origin}; {WRITERS} writers; {} s per row\n",
        RUN.as_secs()
    );

    println!(
        "== appends, 1 org x {WRITERS} writers, durable (alternated: without, with, without, with)"
    );
    let without = BatchAppender::start_without_tree(pool.clone(), 2, 512);
    let with = BatchAppender::start(pool.clone(), 2, 512);
    let mut base_rates = Vec::new();
    let mut tree_rates = Vec::new();
    for _ in 0..2 {
        base_rates.push(appends(&without, "baseline: batched, no tree (previous release)").await);
        tree_rates.push(appends(&with, "batched, Merkle tree maintained").await);
    }
    let base = base_rates.iter().sum::<f64>() / 2.0;
    let tree = tree_rates.iter().sum::<f64>() / 2.0;
    println!(
        "with the tree: {tree:.0} /s vs {base:.0} /s without: {:+.1}% (goal: within 15%)",
        (tree / base - 1.0) * 100.0
    );
    println!(
        "\n== the same, in rounds of {WRITERS} appends sent together (equal batches; latency is per round)"
    );
    let mut base_rounds = Vec::new();
    let mut tree_rounds = Vec::new();
    for _ in 0..2 {
        base_rounds.push(rounds(&without, "baseline: rounds, no tree (previous release)").await);
        tree_rounds.push(rounds(&with, "rounds, Merkle tree maintained").await);
    }
    let base = base_rounds.iter().sum::<f64>() / 2.0;
    let tree = tree_rounds.iter().sum::<f64>() / 2.0;
    println!(
        "with the tree: {tree:.0} /s vs {base:.0} /s without: {:+.1}% (goal: within 15%)\n",
        (tree / base - 1.0) * 100.0
    );

    let total: u64 = std::env::var("BENCH_RECEIPTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    println!("== a {total}-receipt organization");
    let big = Uuid::new_v4();
    let started = Instant::now();
    let writers = 64u64;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let a = with.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = w;
            while i < total {
                a.append(big, draft(i), AppendOptions::default())
                    .await
                    .expect("append");
                i += writers;
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
    let el = started.elapsed();
    println!(
        "{:<52} {:>10.0} /s   ({total} receipts in {:.1} s, tree maintained)",
        "populate: batched, 64 writers",
        total as f64 / el.as_secs_f64(),
        el.as_secs_f64()
    );
    let client = pool.get().await.expect("client");
    let sizes = client
        .query_one(
            "SELECT pg_total_relation_size('receipts')::float8 / greatest(1, (SELECT count(*) FROM receipts)),
                    pg_total_relation_size('ledger_nodes')::float8 / greatest(1, (SELECT count(*) FROM receipts))",
            &[],
        )
        .await
        .expect("sizes");
    println!(
        "{:<52} {:>10.0} bytes/receipt (receipts: {:.0})\n",
        "on disk: tree nodes (table + index)",
        sizes.get::<_, f64>(1),
        sizes.get::<_, f64>(0)
    );

    // Share links on receipts spread over the log, the first among them.
    let step = (total / 200).max(1);
    let mut tokens = Vec::new();
    {
        let mut c = pool.get().await.expect("client");
        let tx = c.transaction().await.expect("tx");
        for seq in (0..total).step_by(step as usize) {
            let token = defendable_identity::OneTimeToken::generate();
            store::create_share(&tx, big, seq, token.hash().as_bytes(), None, None)
                .await
                .expect("share");
            tokens.push(token.expose().to_owned());
        }
        tx.commit().await.expect("commit");
    }

    println!("== HTTP: proof bundles from the server (in-process, release; rate limits lifted)");
    let key = SigningKey::generate().expect("key").1;
    let pairs = vec![
        ("BIND_ADDR", "127.0.0.1:0"),
        ("JWT_SECRET", "bench-jwt-K7q2Lm9Xr4Tz8Vw1Ny6Pb3Hc5Jd0Fg"),
        ("RUST_LOG", "warn"),
        ("DEV_LOG_MAIL_LINKS", "false"),
        (
            "RATE_LIMITS",
            "share-proof-ip=1000000000/1h,share-proof-token=1000000000/1h,share-view-ip=1000000000/1h,share-view-token=1000000000/1h",
        ),
        ("LEDGER_SIGNING_KEY", key.as_str()),
        (
            "OBJECT_URL_SIGNING_KEY",
            "bench-url-Pq8Wn3Ez5Rt7Yu1Io4As6Df9Gh2Jk0",
        ),
    ];
    let config = Config::parse(&Env::from_pairs(pairs)).expect("config");
    let deps = Dependencies {
        pool: db.another_pool(16),
        objects: Arc::new(object_store::memory::InMemory::new()),
        presigner: None,
    };
    let app = Application::build(config, deps).expect("server");
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::task::spawn_local(app.run_until_stopped());
    tokio::time::sleep(Duration::from_millis(300)).await;

    let first_proof = reqwest::get(format!("{base}/share/{}/proof", tokens[0]))
        .await
        .expect("proof")
        .text()
        .await
        .expect("text");
    let bundle: ProofBundle = serde_json::from_str(&first_proof).expect("bundle");
    let body = serde_json::to_string(&bundle.receipt.body).expect("body");
    println!(
        "bundle of seq 0 in a tree of {total}: {} bytes, of which the receipt's body {} -> {} bytes beyond the body (goal <= 2048); {} path hashes",
        first_proof.len(),
        body.len(),
        first_proof.len() - body.len(),
        bundle.inclusion.len()
    );
    let healthz = vec![format!("{base}/healthz")];
    let projections: Vec<String> = tokens.iter().map(|t| format!("{base}/share/{t}")).collect();
    let proofs: Vec<String> = tokens
        .iter()
        .map(|t| format!("{base}/share/{t}/proof"))
        .collect();
    for (name, paths) in [
        ("baseline: GET /healthz", &healthz),
        (
            "baseline: GET /share/{token} (projection only)",
            &projections,
        ),
        ("GET /share/{token}/proof", &proofs),
    ] {
        let _ = http_load(paths, None, 4, Duration::from_secs(1)).await;
        for clients in [1usize, 32] {
            let (rps, lat) = http_load(paths, None, clients, RUN).await;
            println!(
                "{:<52} {rps:>8.0} req/s   p50 {:>6.2} ms   p99 {:>6.2} ms   ({clients} client{})",
                name,
                pct(&lat, 0.5),
                pct(&lat, 0.99),
                if clients == 1 { "" } else { "s" }
            );
        }
    }

    println!("\n== offline verification, one core");
    let log = LogSigner::new(
        LedgerName::parse("localhost-dev").expect("name"),
        SigningKey::from_pkcs8(&key).expect("key"),
    );
    let keys = Vkeys::parse(&[log.vkey()]).expect("vkeys");
    let mut bundles = Vec::new();
    for seq in (0..total).step_by((total / 1000).max(1) as usize) {
        let r = store::list(&client, big, seq.checked_sub(1), 1, None)
            .await
            .expect("receipt")
            .remove(0);
        bundles.push(
            store::proof_bundle(&client, &log, &r, None)
                .await
                .expect("bundle"),
        );
    }
    let rounds = 10;
    let started = Instant::now();
    for _ in 0..rounds {
        for b in &bundles {
            std::hint::black_box(verify_bundle(b, &keys).expect("verifies"));
        }
    }
    let verify_rate = (rounds * bundles.len()) as f64 / started.elapsed().as_secs_f64();
    let note = &bundles[0].checkpoint;
    let started = Instant::now();
    for _ in 0..rounds * bundles.len() {
        std::hint::black_box(defendable_ledger::note::open_note(note, &keys).expect("opens"));
    }
    let note_rate = (rounds * bundles.len()) as f64 / started.elapsed().as_secs_f64();
    let bodies: Vec<Vec<u8>> = bundles
        .iter()
        .map(|b| defendable_ledger::canonicalize(&b.receipt.body).expect("jcs"))
        .collect();
    let started = Instant::now();
    for _ in 0..rounds {
        for b in &bodies {
            std::hint::black_box(defendable_ledger::Hash::of(b));
        }
    }
    let sha_rate = (rounds * bodies.len()) as f64 / started.elapsed().as_secs_f64();
    println!(
        "{:<52} {sha_rate:>10.0} /s",
        "baseline: SHA-256 of the body alone"
    );
    println!(
        "{:<52} {note_rate:>10.0} /s",
        "baseline: open the signed note alone (Ed25519)"
    );
    println!(
        "{:<52} {verify_rate:>10.0} /s   (goal >= 10,000; {} distinct bundles)",
        "verify_bundle: every check",
        bundles.len()
    );
}
