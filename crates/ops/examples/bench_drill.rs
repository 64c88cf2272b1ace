//! `cargo xtask bench drill`: backup and restore-drill figures on 1,000,000 receipts across
//! 1,000 organizations (override with BENCH_ORGS and BENCH_RECEIPTS_PER_ORG), on a durable
//! private cluster, with baselines from the same run: a plain unencrypted `pg_dump` of the same
//! database, and reading plus SHA-256 of every stored body without verifying anything.
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::time::Instant;

use defendable_config::{Config, Env};
use defendable_ledger::receipt::seal_with_salt;
use defendable_ledger::{Draft, Hash, ReceiptKind};
use defendable_ops::drill::{restore_drill, DrillOptions, Target};
use defendable_ops::release::release_receipt;
use defendable_ops::release_drill::{release_drill, ReleaseDrillOptions};
use defendable_ops::{backup::backup, postgres, Deployment};
use defendable_testkit::bench::durable_database;
use defendable_testkit::files::TempDir;
use futures_util::StreamExt;
use serde_json::json;
use uuid::Uuid;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Seals `per_org` receipts for `org` and inserts them in batches, then its head.
async fn seed_org(pool: deadpool_postgres::Pool, org: Uuid, per_org: usize) {
    let kind = ReceiptKind::parse("run").unwrap();
    let mut parent = Hash::GENESIS;
    let now = time::OffsetDateTime::now_utc();
    let mut sealed = Vec::with_capacity(per_org);
    for seq in 0..per_org as u64 {
        let draft = Draft::new(
            kind.clone(),
            json!({"suite": "integration", "result": "pass", "passed": seq % 500, "commit": format!("{:040x}", seq)}),
            Some(json!({"runner": "ci-runner-7.internal", "log": format!("s3://logs/{org}/{seq}")})),
        )
        .unwrap();
        let s = seal_with_salt(org, seq, parent, now, draft, Some([7u8; 32])).unwrap();
        parent = s.hash;
        sealed.push(s);
    }
    let client = pool.get().await.unwrap();
    for chunk in sealed.chunks(2000) {
        let org_ids: Vec<Uuid> = chunk.iter().map(|s| s.org).collect();
        let seqs: Vec<i64> = chunk.iter().map(|s| s.seq as i64).collect();
        let ids: Vec<&str> = chunk.iter().map(|s| s.id.as_str()).collect();
        let hashes: Vec<String> = chunk.iter().map(|s| s.hash.to_hex()).collect();
        let parents: Vec<String> = chunk.iter().map(|s| s.parent.to_hex()).collect();
        let kinds: Vec<&str> = chunk.iter().map(|s| s.kind.as_str()).collect();
        let created: Vec<time::OffsetDateTime> = chunk.iter().map(|s| s.created_at).collect();
        let canonical: Vec<&[u8]> = chunk.iter().map(|s| s.canonical.as_slice()).collect();
        let private: Vec<Option<serde_json::Value>> = chunk
            .iter()
            .map(|s| s.private.clone().map(serde_json::Value::Object))
            .collect();
        let salts: Vec<Option<Vec<u8>>> =
            chunk.iter().map(|s| s.salt.map(|b| b.to_vec())).collect();
        client
            .execute(
                "INSERT INTO receipts (org_id, seq, receipt_id, hash, parent, kind, created_at, canonical, private, salt)
                 SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[],
                                      $7::timestamptz[], $8::bytea[], $9::jsonb[], $10::bytea[])",
                &[&org_ids, &seqs, &ids, &hashes, &parents, &kinds, &created, &canonical, &private, &salts],
            )
            .await
            .unwrap();
    }
    let last = sealed.last().unwrap();
    client
        .execute(
            "INSERT INTO ledger_heads (org_id, seq, hash) VALUES ($1, $2, $3)",
            &[&org, &(last.seq as i64), &last.hash.to_hex()],
        )
        .await
        .unwrap();
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let orgs = env_or("BENCH_ORGS", 1000);
    let per_org = env_or("BENCH_RECEIPTS_PER_ORG", 1000);
    let (db, origin) = durable_database().await;
    let data = TempDir::new();
    let env = Env::from_pairs([
        ("DATABASE_URL".to_owned(), db.url().to_owned()),
        ("DATA_DIR".to_owned(), data.path().display().to_string()),
        ("OPERATOR_ORG".to_owned(), "org-0000".to_owned()),
    ]);
    let dep = Deployment::open(Config::parse(&env).unwrap())
        .await
        .unwrap();
    println!("drill bench: {orgs} orgs × {per_org} receipts on {origin}");

    let t = Instant::now();
    let ids: Vec<Uuid> = (0..orgs).map(|_| Uuid::new_v4()).collect();
    {
        let client = dep.pool.get().await.unwrap();
        for (i, org) in ids.iter().enumerate() {
            let user = Uuid::new_v4();
            client
                .batch_execute(&format!(
                    "INSERT INTO orgs (id, slug, name) VALUES ('{org}', 'org-{i:04}', 'Org {i}');
                     INSERT INTO users (id, email) VALUES ('{user}', 'owner{i}@example.com');
                     INSERT INTO memberships (org_id, user_id, role) VALUES ('{org}', '{user}', 'owner');"
                ))
                .await
                .unwrap();
        }
    }
    futures_util::stream::iter(ids.clone())
        .map(|org| seed_org(dep.pool.clone(), org, per_org))
        .buffer_unordered(2)
        .collect::<Vec<()>>()
        .await;
    dep.pool
        .get()
        .await
        .unwrap()
        .batch_execute("VACUUM ANALYZE receipts")
        .await
        .unwrap();
    println!(
        "seeded in {:.1} s (not measured)",
        t.elapsed().as_secs_f64()
    );

    // Baseline 1: a plain pg_dump of the same database, unencrypted, to a file.
    let out = TempDir::new();
    let plain = out.path().join("plain.pgc");
    let t = Instant::now();
    let status = postgres::command("pg_dump", dep.database_url())
        .unwrap()
        .arg("--format=custom")
        .arg(format!("--file={}", plain.display()))
        .status()
        .unwrap();
    assert!(status.success());
    let plain_dump = t.elapsed();
    let plain_bytes = std::fs::metadata(&plain).unwrap().len();

    // Baseline 2: read every stored body and SHA-256 it, checking nothing.
    let t = Instant::now();
    let client = dep.pool.get().await.unwrap();
    let rows = client
        .query_raw("SELECT canonical FROM receipts", std::iter::empty::<i32>())
        .await
        .unwrap();
    futures_util::pin_mut!(rows);
    let mut n = 0u64;
    while let Some(row) = rows.next().await {
        let bytes: &[u8] = row.as_ref().unwrap().get(0);
        std::hint::black_box(Hash::of(bytes));
        n += 1;
    }
    let read_and_hash = t.elapsed();

    let t = Instant::now();
    let b = backup(&dep, out.path()).await.unwrap();
    let backup_time = t.elapsed();

    let admin = postgres::with_database(dep.database_url(), "postgres").unwrap();
    let report = restore_drill(
        &dep,
        &DrillOptions {
            backup: b.dir.clone(),
            target: Target::Server(admin),
            sample: 0,
            report: None,
            allow_unsigned_manifest: false,
        },
    )
    .await
    .unwrap();
    assert!(report.ok, "{}", report.human());
    let ms = |k: &str| report.durations_ms.get(k).copied().unwrap_or(0) as f64 / 1000.0;
    println!();
    println!("{:<58} {:>9}", "measure", "seconds");
    println!(
        "{:<58} {:>9.2}   ({} MB)",
        "baseline: plain pg_dump, unencrypted",
        plain_dump.as_secs_f64(),
        plain_bytes / 1_000_000
    );
    println!(
        "{:<58} {:>9.2}   ({n} bodies, {:.0}/s)",
        "baseline: read + SHA-256 every body, no checks",
        read_and_hash.as_secs_f64(),
        n as f64 / read_and_hash.as_secs_f64()
    );
    println!(
        "{:<58} {:>9.2}   ({} MB encrypted)",
        "backup: snapshot, counts, checkpoints, pg_dump | age",
        backup_time.as_secs_f64(),
        b.manifest.dump.bytes / 1_000_000
    );
    println!(
        "{:<58} {:>9.2}",
        "drill: digest of the encrypted file",
        ms("digest")
    );
    println!(
        "{:<58} {:>9.2}",
        "drill: decrypt + pg_restore",
        ms("decrypt_and_restore")
    );
    println!("{:<58} {:>9.2}", "drill: migrate", ms("migrate"));
    println!(
        "{:<58} {:>9.2}   ({:.0} receipts/s)",
        "drill: verification (counts, heads, every link, checkpoints)",
        ms("verify"),
        report.counts.receipts as f64 / ms("verify").max(1e-9)
    );
    println!(
        "{:<58} {:>9.2}",
        "drill: of which chains link by link",
        ms("verify_chains")
    );
    println!(
        "{:<58} {:>9.2}",
        "drill: drop the database",
        ms("drop_target")
    );
    println!("{:<58} {:>9.2}", "drill: total", ms("total"));

    // With BENCH_RELEASE=DIR (a directory from `cargo xtask release`): record it and drill it
    // against the same backup, previous = the same release.
    if let Ok(dir) = std::env::var("BENCH_RELEASE") {
        let copy = out.path().join("release");
        std::fs::create_dir_all(&copy).unwrap();
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), copy.join(e.file_name())).unwrap();
        }
        // The bench built this release itself: it pins the key the release was signed with.
        let vkey = std::fs::read_to_string(copy.join("release.vkey"))
            .unwrap()
            .trim()
            .to_owned();
        release_receipt(&dep, &copy, std::slice::from_ref(&vkey))
            .await
            .unwrap();
        let report = release_drill(
            &dep,
            &ReleaseDrillOptions {
                release: copy.clone(),
                backup: b.dir.clone(),
                previous: Some(copy.clone()),
                vkeys: vec![vkey],
                inject_migration: None,
                report: None,
                sweep_prefix: "raw/".into(),
            },
        )
        .await
        .unwrap();
        assert!(report.ok, "{}", report.human());
        let ms = |k: &str| report.durations_ms.get(k).copied().unwrap_or(0) as f64 / 1000.0;
        println!();
        println!(
            "release drill of {dir} on the same backup ({} receipts)",
            b.manifest.counts.receipts
        );
        for (label, key) in [
            (
                "release drill: verify release, bundle, backup digest",
                "verify_release",
            ),
            ("release drill: decrypt + pg_restore", "restore"),
            ("release drill: migrate (new binary)", "migrate"),
            (
                "release drill: verify every restored chain and tree",
                "verify_restored_ledgers",
            ),
            ("release drill: new server + smoke suite (CLI)", "smoke_new"),
            (
                "release drill: previous server + read-only suite",
                "rollback",
            ),
            ("release drill: drop the cluster", "drop"),
            ("release drill: total", "total"),
        ] {
            println!("{label:<58} {:>9.2}", ms(key));
        }
    }
}
