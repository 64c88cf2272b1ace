//! Ledger benchmark (run with `cargo xtask bench ledger`; `DATABASE_URL` to use your server,
//! otherwise a durable private cluster under `target/bench-pg` with synchronous commit on).
//!
//! Prints, from one run on one fresh database: a plain single-row INSERT baseline; appends/s
//! and latency on the naive one-transaction-per-receipt path and on the batched path for one
//! organization under 32 writers; the batched path over 1,000 organizations under 32 writers
//! and again under 512 (each with its mean batch size and its ratio to the baseline); offline
//! verification on one core; verification from PostgreSQL; bytes per receipt on disk.
//! `BENCH_ONLY=orgs` runs the baseline and the 1,000-organization rows alone; `LEDGER_WORKERS`
//! sets the appender's workers (default 2, as in the server).

#![allow(clippy::print_stdout)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use defendable_testkit::bench::{drive, durable_database, row};

use defendable_ledger::store::{self, AppendOptions, BatchAppender};
use defendable_ledger::{seal, ChainVerifier, Draft, Hash, Link, ReceiptKind};
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

const WRITERS: usize = 32;
const RUN: Duration = Duration::from_secs(5);
/// The 1,000-organization row again with this many writers: not the goal's load, but the
/// appender's throughput once the 32 writers' round trips stop bounding it (each writer waits
/// for its receipt, so 32 writers make at most 32 / latency appends per second).
const MANY_WRITERS: usize = 512;

fn draft(n: u64) -> Draft {
    Draft::new(
        ReceiptKind::parse("run").expect("kind"),
        json!({"suite": "integration", "passed": n % 500, "commit": "4f9c2d1e"}),
        Some(json!({"runner": "ci-7"})),
    )
    .expect("draft")
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}

async fn run() {
    let (db, origin) = durable_database().await;
    let pool = db.pool.clone();
    let sync: String = pool
        .get()
        .await
        .expect("c")
        .query_one("SHOW synchronous_commit", &[])
        .await
        .expect("show")
        .get(0);
    println!("database: fresh database on {origin}; synchronous_commit = {sync}; {WRITERS} writers; {} s per row\n", RUN.as_secs());

    // Baseline: what this database does for a plain single-row INSERT per transaction.
    pool.get()
        .await
        .expect("c")
        .batch_execute(
            "CREATE TABLE bench_baseline (id bigserial PRIMARY KEY, body bytea NOT NULL)",
        )
        .await
        .expect("table");
    let p = pool.clone();
    let (n, t, lat) = drive(WRITERS, RUN, move |_, _| {
        let p = p.clone();
        async move {
            let c = p.get().await.expect("c");
            c.execute(
                "INSERT INTO bench_baseline (body) VALUES ($1)",
                &[&vec![7u8; 300]],
            )
            .await
            .expect("insert");
        }
    })
    .await;
    let baseline = row("baseline: single-row INSERT, autocommit", n, t, lat);

    // `BENCH_ONLY=orgs`: the baseline and the 1,000-organization row alone (for profiling).
    let only_orgs = std::env::var("BENCH_ONLY").is_ok_and(|v| v == "orgs");
    let workers: usize = std::env::var("LEDGER_WORKERS")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(2);
    let appender = BatchAppender::start(pool.clone(), workers, 512);
    if only_orgs {
        let ratio = thousand_orgs(&pool, workers, WRITERS).await / baseline;
        let ceiling = thousand_orgs(&pool, workers, MANY_WRITERS).await / baseline;
        println!("\n1,000 orgs vs plain INSERT baseline: {ratio:.2}x ({MANY_WRITERS} writers: {ceiling:.2}x)");
        return;
    }

    // Naive: one transaction per receipt, all writers on one org.
    let org = Uuid::new_v4();
    let p = pool.clone();
    let (n, t, lat) = drive(WRITERS, RUN, move |w, i| {
        let p = p.clone();
        async move {
            let mut c = p.get().await.expect("c");
            let tx = c.transaction().await.expect("tx");
            store::append_in(&tx, org, draft(w as u64 * 1_000_000 + i))
                .await
                .expect("append");
            tx.commit().await.expect("commit");
        }
    })
    .await;
    let naive = row("naive: 1 org, one transaction per receipt", n, t, lat);

    // Batched: one org.
    let org1 = Uuid::new_v4();
    let a = appender.clone();
    let (n1, t, lat) = drive(WRITERS, RUN, move |w, i| {
        let a = a.clone();
        async move {
            a.append(
                org1,
                draft(w as u64 * 1_000_000 + i),
                AppendOptions::default(),
            )
            .await
            .expect("append");
        }
    })
    .await;
    let batched = row("batched: 1 org", n1, t, lat);

    let orgs = thousand_orgs(&pool, workers, WRITERS).await;
    let ceiling = thousand_orgs(&pool, workers, MANY_WRITERS).await;
    println!(
        "\nbatched vs naive on 1 org: {:.1}x; naive vs plain INSERT baseline: {:.2}x; 1,000 orgs vs plain INSERT baseline: {:.2}x ({MANY_WRITERS} writers: {:.2}x)",
        batched / naive,
        naive / baseline,
        orgs / baseline,
        ceiling / baseline
    );

    // Offline verification on one core: a chain sealed in memory, checked link by link.
    let verify_org = Uuid::new_v4();
    let mut parent = Hash::GENESIS;
    let now = OffsetDateTime::now_utc();
    let chain: Vec<_> = (0..200_000u64)
        .map(|seq| {
            let s = seal(verify_org, seq, parent, now, draft(seq)).expect("seal");
            parent = s.hash;
            (s.seq, s.hash.to_hex(), s.parent.to_hex(), s.id, s.canonical)
        })
        .collect();
    let started = Instant::now();
    for c in &chain {
        std::hint::black_box(Hash::of(&c.4));
    }
    let el = started.elapsed();
    println!(
        "\n{:<52} {:>10.0} /s",
        "baseline: SHA-256 of each body alone, one core",
        chain.len() as f64 / el.as_secs_f64()
    );
    let started = Instant::now();
    for c in &chain {
        std::hint::black_box(defendable_ledger::canonical::check_canonical(&c.4));
    }
    let el = started.elapsed();
    println!(
        "{:<52} {:>10.0} /s",
        "canonical-form check alone, one core",
        chain.len() as f64 / el.as_secs_f64()
    );
    let started = Instant::now();
    let mut v = ChainVerifier::new(verify_org);
    for (seq, hash, parent, id, canonical) in &chain {
        v.push(Link {
            seq: *seq,
            hash,
            parent,
            receipt_id: id,
            canonical,
        })
        .expect("valid");
    }
    let el = started.elapsed();
    println!(
        "{:<52} {:>10.0} /s   ({} receipts, {:.0} bytes each)",
        "offline verification (every check), one core",
        chain.len() as f64 / el.as_secs_f64(),
        chain.len(),
        chain[0].4.len()
    );

    // Verification from PostgreSQL of the batched single-org chain.
    let c = pool.get().await.expect("c");
    let started = Instant::now();
    let report = store::verify_org(&c, org1).await.expect("verify");
    let el = started.elapsed();
    assert!(report.failure.is_none(), "{:?}", report.failure);
    println!(
        "{:<52} {:>10.0} /s   ({} receipts)",
        "verification from PostgreSQL (streamed)",
        report.checked as f64 / el.as_secs_f64(),
        report.checked
    );

    let row = c
        .query_one(
            "SELECT pg_total_relation_size('receipts')::bigint, (SELECT count(*) FROM receipts)",
            &[],
        )
        .await
        .expect("size");
    let (bytes, count): (i64, i64) = (row.get(0), row.get(1));
    println!(
        "{:<52} {:>10.0} bytes/receipt (table + indexes + TOAST, {count} receipts)",
        "on disk",
        bytes as f64 / count as f64
    );

    drop(c);
}

/// The batched path over 1,000 organizations under `writers` writers, on an appender of its own
/// so its batch sizes can be counted; returns appends/s.
async fn thousand_orgs(pool: &deadpool_postgres::Pool, workers: usize, writers: usize) -> f64 {
    let batches = Arc::new((AtomicUsize::new(0), AtomicUsize::new(0)));
    let b = batches.clone();
    let a = BatchAppender::start_observed(
        pool.clone(),
        workers,
        512,
        Arc::new(move |n| {
            b.0.fetch_add(1, Ordering::Relaxed);
            b.1.fetch_add(n, Ordering::Relaxed);
        }),
    );
    let orgs: Arc<Vec<Uuid>> = Arc::new((0..1000).map(|_| Uuid::new_v4()).collect());
    let (n, t, lat) = drive(writers, RUN, move |w, i| {
        let a = a.clone();
        let o = orgs.clone();
        async move {
            let org = o[(w * 7919 + i as usize * 31) % o.len()];
            a.append(org, draft(i), AppendOptions::default())
                .await
                .expect("append");
        }
    })
    .await;
    let rate = row(
        &format!("batched: 1,000 orgs, {writers} writers"),
        n,
        t,
        lat,
    );
    let (count, receipts) = (
        batches.0.load(Ordering::Relaxed),
        batches.1.load(Ordering::Relaxed),
    );
    println!(
        "{:<52} {:>10.1} receipts per batch ({count} batches, {workers} workers)",
        "",
        receipts as f64 / count.max(1) as f64
    );
    rate
}
