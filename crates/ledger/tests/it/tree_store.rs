//! The Merkle tree in PostgreSQL: every append path maintains it under contention across
//! processes, receipts written by a release that predates the tree are integrated (never
//! silently missing), chains populated before the migration are backfilled, and tampering is
//! detected.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use defendable_ledger::bundle::{check_consistent, verify_bundle};
use defendable_ledger::note::{open_checkpoint, LogSigner};
use defendable_ledger::store::{self, AppendOptions, BatchAppender};
use defendable_ledger::{
    merkle, seal, Draft, Hash, LedgerError, LedgerName, OpenedCheckpoint, Reason, ReceiptKind,
    SigningKey, Vkeys,
};
use defendable_testkit::TestDb;
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

fn draft(n: u64) -> Draft {
    Draft::new(
        ReceiptKind::parse("run").expect("kind"),
        json!({"n": n}),
        Some(json!({"runner": "ci"})),
    )
    .expect("draft")
}

fn log() -> (Arc<LogSigner>, Vkeys) {
    let (key, _) = SigningKey::generate().expect("key");
    let log = Arc::new(LogSigner::new(
        LedgerName::parse("ledger.test").expect("name"),
        key,
    ));
    let keys = Vkeys::parse(&[log.vkey()]).expect("vkey");
    (log, keys)
}

/// The current signed checkpoint of `org`, opened.
async fn current(
    client: &deadpool_postgres::Client,
    log: &LogSigner,
    keys: &Vkeys,
    org: Uuid,
) -> OpenedCheckpoint {
    let (_, note) = store::signed_checkpoint(client, log, org)
        .await
        .expect("checkpoint");
    open_checkpoint(&note, keys).expect("opens")
}

/// Every receipt's bundle verifies against the current checkpoint, and every pair of the given
/// checkpoints is proved consistent by the store.
async fn assert_log_holds(
    db: &TestDb,
    log: &LogSigner,
    keys: &Vkeys,
    org: Uuid,
    checkpoints: &[OpenedCheckpoint],
) {
    let client = db.pool.get().await.expect("client");
    let report = store::verify_org(&client, org).await.expect("verify");
    assert_eq!(report.failure, None);
    assert_eq!(
        report.tree_size, report.checked,
        "the tree covers the chain"
    );
    let all = store::list(&client, org, None, 100_000, None)
        .await
        .expect("list");
    let edge = store::tree_edge(&client, org).await.expect("edge");
    for r in &all {
        // Every receipt's inclusion path leads to the current root...
        let proof = store::prove_receipt(&client, org, r.seq, None)
            .await
            .expect("prove");
        assert_eq!((proof.size, proof.root), (edge.size(), edge.root()));
        let leaf = merkle::leaf_hash(&Hash::parse(&r.hash).expect("hash"));
        merkle::verify_inclusion(r.seq, proof.size, &proof.root, &leaf, &proof.path)
            .unwrap_or_else(|e| panic!("seq {}: {e}", r.seq));
        // ...and a sample goes through the whole signed bundle, as an outsider checks it.
        if r.seq % 97 == 0 || r.seq + 1 == all.len() as u64 {
            let bundle = store::proof_bundle(&client, log, r, None)
                .await
                .expect("bundle");
            let verified =
                verify_bundle(&bundle, keys).unwrap_or_else(|e| panic!("seq {}: {e}", r.seq));
            assert_eq!(verified.checkpoint.head.size, all.len() as u64);
        }
    }
    for (i, older) in checkpoints.iter().enumerate() {
        for newer in &checkpoints[i..] {
            if older.head.size == 0 {
                continue;
            }
            let proof =
                store::consistency_proof(&client, log, org, older.head.size, Some(newer.head.size))
                    .await
                    .expect("consistency");
            let signed = open_checkpoint(&proof.checkpoint, keys).expect("opens");
            assert_eq!(
                signed.head, newer.head,
                "the same tree of size {}",
                newer.head.size
            );
            check_consistent(older, &signed, proof.from, &proof.consistency)
                .unwrap_or_else(|e| panic!("{} → {}: {e}", older.head.size, newer.head.size));
        }
    }
}

#[tokio::test]
async fn three_pools_with_64_writers_each_on_every_path_build_one_provable_tree() {
    const WRITERS: u64 = 64;
    const EACH: u64 = 3;
    let db = TestDb::new().await;
    let (log, keys) = log();
    let org = Uuid::new_v4();
    let pools: Vec<_> = (0..3).map(|_| db.another_pool(8)).collect();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));

    // Checkpoints taken while the writers run, as a monitor would.
    let watcher = {
        let pool = pools[0].clone();
        let done = done.clone();
        let log = log.clone();
        tokio::spawn(async move {
            let mut notes = Vec::new();
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                let client = pool.get().await.expect("client");
                notes.push(
                    store::signed_checkpoint(&client, &log, org)
                        .await
                        .expect("checkpoint")
                        .1,
                );
                drop(client);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            notes
        })
    };

    let mut tasks = Vec::new();
    for (p, pool) in pools.iter().enumerate() {
        let appender = BatchAppender::start(pool.clone(), 2, 64);
        for w in 0..WRITERS {
            let (pool, appender) = (pool.clone(), appender.clone());
            tasks.push(tokio::spawn(async move {
                for i in 0..EACH {
                    let n = (p as u64 * WRITERS + w) * EACH + i;
                    match w % 4 {
                        // The caller's own transaction.
                        0 => {
                            let mut client = pool.get().await.expect("client");
                            let tx = client.transaction().await.expect("tx");
                            store::append_in(&tx, org, draft(n))
                                .await
                                .expect("append_in");
                            tx.commit().await.expect("commit");
                        }
                        // The locking batch path (an idempotency key).
                        1 => {
                            let options = AppendOptions {
                                idempotency: Some((format!("k-{n}"), format!("{n:064}"))),
                                audit: None,
                            };
                            appender
                                .append(org, draft(n), options)
                                .await
                                .expect("keyed");
                        }
                        // The compare-and-set fast path.
                        _ => {
                            appender
                                .append(org, draft(n), AppendOptions::default())
                                .await
                                .expect("plain");
                        }
                    }
                }
            }));
        }
    }
    for t in tasks {
        t.await.expect("writer");
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let notes = watcher.await.expect("watcher");
    assert!(notes.len() >= 2, "checkpoints were taken during the run");

    let client = db.pool.get().await.expect("client");
    let (_, last) = store::signed_checkpoint(&client, &log, org)
        .await
        .expect("final");
    let mut by_size = BTreeMap::new();
    for n in notes.iter().chain([&last]) {
        let c = open_checkpoint(n, &keys).expect("opens");
        if let Some(seen) = by_size.insert(c.head.size, c.clone()) {
            assert_eq!(
                seen.head.root, c.head.root,
                "two roots for size {}: a fork",
                c.head.size
            );
        }
    }
    let total = 3 * WRITERS * EACH;
    assert_eq!(by_size.keys().last(), Some(&total));
    let checkpoints: Vec<_> = by_size.into_values().collect();
    assert_log_holds(&db, &log, &keys, org, &checkpoints).await;
}

/// A receipt as the previous release writes it: receipt row and head, nothing of the tree.
async fn old_release_append(client: &impl store_client::Client, org: Uuid, n: u64) {
    let row = client
        .query_opt(
            "SELECT seq, hash FROM ledger_heads WHERE org_id = $1",
            &[&org],
        )
        .await
        .expect("head");
    let (seq, parent) = match row {
        Some(r) => (r.get::<_, i64>(0), Hash::parse(r.get(1)).expect("hash")),
        None => (-1, Hash::GENESIS),
    };
    let s = seal(
        org,
        (seq + 1) as u64,
        parent,
        OffsetDateTime::now_utc(),
        draft(n),
    )
    .expect("seal");
    client
        .execute(
            "INSERT INTO receipts (org_id, seq, receipt_id, hash, parent, kind, created_at, canonical)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[&org, &(s.seq as i64), &s.id, &s.hash.to_hex(), &s.parent.to_hex(), &s.kind.as_str(), &s.created_at, &s.canonical],
        )
        .await
        .expect("insert");
    client
        .execute(
            "INSERT INTO ledger_heads (org_id, seq, hash) VALUES ($1, $2, $3)
             ON CONFLICT (org_id) DO UPDATE SET seq = EXCLUDED.seq, hash = EXCLUDED.hash",
            &[&org, &(s.seq as i64), &s.hash.to_hex()],
        )
        .await
        .expect("head");
}

mod store_client {
    pub use deadpool_postgres::GenericClient as Client;
}

#[tokio::test]
async fn chains_from_before_the_migration_and_an_older_release_are_integrated_never_missed() {
    let db = TestDb::empty().await;
    let (log, keys) = log();
    let (small, large) = (Uuid::new_v4(), Uuid::new_v4());
    // The schema the previous release ran on, populated by it.
    defendable_store::migrate_to(&db.pool, 5)
        .await
        .expect("migrate to V5");
    {
        let mut client = db.pool.get().await.expect("client");
        let tx = client.transaction().await.expect("tx");
        for i in 0..7 {
            old_release_append(&tx, small, i).await;
        }
        for i in 0..1100 {
            old_release_append(&tx, large, i).await;
        }
        tx.commit().await.expect("commit");
    }
    defendable_store::migrate(&db.pool).await.expect("migrate");

    let client = db.pool.get().await.expect("client");
    let (size, _) = store::signed_checkpoint(&client, &log, small)
        .await
        .expect("checkpoint");
    assert_eq!(size, 0, "a checkpoint covers only integrated receipts");
    let first = store::get(
        &client,
        small,
        &store::list(&client, small, None, 1, None)
            .await
            .expect("list")[0]
            .receipt_id,
    )
    .await
    .expect("get")
    .expect("exists");
    assert!(matches!(
        store::proof_bundle(&client, &log, &first, None).await,
        Err(LedgerError::NotIntegrated)
    ));

    // The new release's next append integrates the backlog, then extends the tree.
    let appender = BatchAppender::start(db.pool.clone(), 1, 16);
    appender
        .append(small, draft(7), AppendOptions::default())
        .await
        .expect("append");
    assert_eq!(
        store::tree_edge(&client, small).await.expect("edge").size(),
        8
    );
    // A backlog beyond what one append carries is partly integrated, the rest left to the
    // integrator; the tree never disagrees with the chain meanwhile.
    appender
        .append(large, draft(1100), AppendOptions::default())
        .await
        .expect("append");
    let partial = store::tree_edge(&client, large).await.expect("edge").size();
    assert!((1024..1101).contains(&partial), "{partial}");
    assert_eq!(
        store::verify_org(&client, large)
            .await
            .expect("verify")
            .failure,
        None
    );
    let before = current(&client, &log, &keys, large).await;

    // The previous release keeps writing during the deploy.
    old_release_append(&client, small, 8).await;
    assert_eq!(
        store::tree_edge(&client, small).await.expect("edge").size(),
        8
    );
    assert!(store::integrate_all(&db.pool, 50).await.expect("integrate") >= 1 + 1101 - partial);
    assert_eq!(
        store::tree_edge(&client, small).await.expect("edge").size(),
        9
    );
    assert_eq!(
        store::tree_edge(&client, large).await.expect("edge").size(),
        1101
    );
    assert_eq!(
        store::integrate_all(&db.pool, 1000).await.expect("again"),
        0
    );

    let after = current(&client, &log, &keys, large).await;
    assert_log_holds(&db, &log, &keys, small, &[]).await;
    assert_log_holds(&db, &log, &keys, large, &[before, after]).await;
}

#[tokio::test]
async fn altered_nodes_and_edges_are_reported_and_break_proofs() {
    let db = TestDb::new().await;
    let (log, keys) = log();
    let org = Uuid::new_v4();
    let appender = BatchAppender::start(db.pool.clone(), 1, 8);
    for i in 0..20 {
        appender
            .append(org, draft(i), AppendOptions::default())
            .await
            .expect("append");
    }
    let client = db.pool.get().await.expect("client");
    let twenty = current(&client, &log, &keys, org).await;
    for i in 20..23 {
        appender
            .append(org, draft(i), AppendOptions::default())
            .await
            .expect("append");
    }
    let proof = store::consistency_proof(&client, &log, org, 20, None)
        .await
        .expect("proof");
    let later = open_checkpoint(&proof.checkpoint, &keys).expect("opens");
    check_consistent(&twenty, &later, 20, &proof.consistency).expect("consistent before tampering");

    // The consistency proof 20 → 23 uses node (4, 0), the root of the first sixteen receipts
    // and the lowest level the store keeps.
    client
        .batch_execute("SET session_replication_role = replica")
        .await
        .expect("bypass");
    let altered = client
        .execute(
            "UPDATE ledger_nodes SET hash = sha256(hash) WHERE org_id = $1 AND level = 4 AND idx = 0",
            &[&org],
        )
        .await
        .expect("tamper");
    assert_eq!(altered, 1);
    let report = store::verify_org(&client, org).await.expect("verify");
    assert_eq!(
        report.failure.map(|f| (f.seq, f.reason)),
        Some((15, Reason::TreeMismatch { size: 23 }))
    );
    let proof = store::consistency_proof(&client, &log, org, 20, None)
        .await
        .expect("proof");
    let err = check_consistent(
        &twenty,
        &open_checkpoint(&proof.checkpoint, &keys).expect("opens"),
        20,
        &proof.consistency,
    )
    .expect_err("detected");
    assert!(
        err.to_string().contains("size 20") && err.to_string().contains("size 23"),
        "{err}"
    );
    // The inclusion path of receipt 20 against the current tree ends with node (4, 0), which is
    // also an edge node: the stored one is used, so the bundle no longer verifies.
    let twentieth = store::list(&client, org, Some(19), 1, None)
        .await
        .expect("list")
        .remove(0);
    let bundle = store::proof_bundle(&client, &log, &twentieth, None)
        .await
        .expect("bundle");
    verify_bundle(&bundle, &keys).expect_err("an altered node breaks the inclusion proof");

    // An altered edge changes every later checkpoint's root.
    let other = Uuid::new_v4();
    appender
        .append(other, draft(0), AppendOptions::default())
        .await
        .expect("append");
    client
        .execute(
            "UPDATE ledger_heads SET tree_edge = sha256(tree_edge) WHERE org_id = $1",
            &[&other],
        )
        .await
        .expect("tamper edge");
    let report = store::verify_org(&client, other).await.expect("verify");
    assert_eq!(
        report.failure.map(|f| f.reason),
        Some(Reason::TreeMismatch { size: 1 })
    );
}

/// The benchmark's baseline appends as the release before the tree did: the tree lags, and
/// integration makes every receipt provable.
#[tokio::test]
async fn appending_without_the_tree_leaves_it_to_integration() {
    let db = TestDb::new().await;
    let (log, keys) = log();
    let org = Uuid::new_v4();
    let without = BatchAppender::start_without_tree(db.pool.clone(), 1, 16);
    let mut tasks = Vec::new();
    for i in 0..40 {
        let a = without.clone();
        tasks.push(tokio::spawn(async move {
            a.append(org, draft(i), AppendOptions::default())
                .await
                .expect("append")
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
    let client = db.pool.get().await.expect("client");
    assert_eq!(
        store::tree_edge(&client, org).await.expect("edge").size(),
        0
    );
    assert_eq!(
        store::integrate_all(&db.pool, 7).await.expect("integrate"),
        40
    );
    assert_log_holds(&db, &log, &keys, org, &[]).await;
}

/// A receipt written by another binary whose stored hash is not its body's never enters the
/// tree, and does not hold back other organizations.
#[tokio::test]
async fn an_altered_receipt_is_never_integrated_and_blocks_no_other_org() {
    let db = TestDb::new().await;
    let (bad, good) = (Uuid::new_v4(), Uuid::new_v4());
    let client = db.pool.get().await.expect("client");
    for i in 0..3 {
        old_release_append(&client, bad, i).await;
        old_release_append(&client, good, i).await;
    }
    client
        .batch_execute(&format!(
            "SET session_replication_role = replica;
             UPDATE receipts SET canonical = set_byte(canonical, 20, get_byte(canonical, 20) # 1)
              WHERE org_id = '{bad}' AND seq = 1;
             SET session_replication_role = origin;"
        ))
        .await
        .expect("tamper");
    assert_eq!(
        store::integrate_all(&db.pool, 100)
            .await
            .expect("integrate"),
        3
    );
    assert_eq!(
        store::tree_edge(&client, good).await.expect("edge").size(),
        3
    );
    assert_eq!(
        store::tree_edge(&client, bad).await.expect("edge").size(),
        0
    );
    let err = store::integrate(&db.pool, bad, 100)
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("receipt seq 1"), "{err}");
}

/// Proving against the current tree reads the head, the leaf's block and the stored siblings in
/// one statement (alone, or with the receipt it proves); proving against a given size reads the
/// edge and then the nodes the proof names. For every receipt of every tree from 1 to 80 receipts (stored levels start at 16
/// leaves), both give the same bundle, byte for byte, and a signer that keeps its checkpoints
/// signs the same note as one that signs each time.
#[tokio::test]
async fn a_bundle_against_the_current_tree_is_byte_for_byte_the_bundle_against_its_size() {
    let db = TestDb::new().await;
    let (_, pkcs8) = SigningKey::generate().expect("key");
    let name = LedgerName::parse("ledger.test").expect("name");
    let fresh = LogSigner::new(name.clone(), SigningKey::from_pkcs8(&pkcs8).expect("key"));
    let kept =
        LogSigner::new(name, SigningKey::from_pkcs8(&pkcs8).expect("key")).with_checkpoint_cache(8);
    let org = Uuid::new_v4();
    let appender = BatchAppender::start(db.pool.clone(), 1, 16);
    let client = db.pool.get().await.expect("client");
    for size in 1..=80u64 {
        appender
            .append(org, draft(size), AppendOptions::default())
            .await
            .expect("append");
        let all = store::list(&client, org, None, 1_000, None)
            .await
            .expect("list");
        assert_eq!(all.len() as u64, size);
        // Every receipt of the tree read with its proof in one batched statement, beside keys
        // that name nothing (another organization, an unknown seq, an id that is no id).
        let mut keys: Vec<(Uuid, String)> =
            all.iter().map(|r| (org, r.receipt_id.clone())).collect();
        keys.push((Uuid::new_v4(), all[0].receipt_id.clone()));
        keys.push((org, "DCR-not-an-id".into()));
        let proven: std::collections::HashMap<_, _> = store::receipts_with_proofs(&client, &keys)
            .await
            .expect("batched read")
            .into_iter()
            .collect();
        assert_eq!(
            proven.len() as u64,
            size,
            "keys naming nothing are left out"
        );
        for r in &all {
            let current = store::proof_bundle(&client, &kept, r, None)
                .await
                .expect("current");
            let sized = store::proof_bundle(&client, &fresh, r, Some(size))
                .await
                .expect("sized");
            let found = store::get_with_proof(&client, org, &r.receipt_id)
                .await
                .expect("read")
                .expect("found");
            assert_eq!(&found.receipt, r);
            let read_with =
                store::bundle_of(&kept, r, &found.prove().expect("proves")).expect("bundle");
            let batched = &proven[&(org, r.receipt_id.clone())];
            let read_batched =
                store::bundle_of(&kept, &batched.receipt, &batched.prove().expect("proves"))
                    .expect("bundle");
            let sized = serde_json::to_string(&sized).expect("json");
            for (path, bundle) in [
                ("current", &current),
                ("read with the receipt", &read_with),
                ("read with the receipt, batched", &read_batched),
            ] {
                assert_eq!(
                    serde_json::to_string(bundle).expect("json"),
                    sized,
                    "{path}: seq {} in a tree of {size}",
                    r.seq
                );
            }
        }
    }
    assert!(
        kept.cached_checkpoints() <= 8,
        "the kept checkpoints are bounded"
    );
}

/// A consistency proof to the current tree reads the head and the nodes around leaf `from - 1`
/// in one statement (alone, or with the share link that asks for it); to a given size, the edge
/// and then the nodes it names. For every `from` of every tree from 1 to 80 receipts, all three
/// give the same proof.
#[tokio::test]
async fn a_consistency_proof_to_the_current_tree_is_the_proof_to_its_size() {
    let db = TestDb::new().await;
    let (log, _) = log();
    let org = Uuid::new_v4();
    let appender = BatchAppender::start(db.pool.clone(), 1, 16);
    let client = db.pool.get().await.expect("client");
    let token = vec![7u8; 32];
    for size in 1..=80u64 {
        appender
            .append(org, draft(size), AppendOptions::default())
            .await
            .expect("append");
        if size == 1 {
            store::create_share(&client, org, 0, &token, None, None)
                .await
                .expect("share");
        }
        for from in 1..=size {
            let current = store::consistency_proof(&client, &log, org, from, None)
                .await
                .unwrap_or_else(|e| panic!("{from} -> current {size}: {e}"));
            let sized = store::consistency_proof(&client, &log, org, from, Some(size))
                .await
                .expect("sized");
            assert_eq!(current, sized, "{from} -> {size}");
            let shared = store::shared_consistency(&client, &[(token.clone(), from)])
                .await
                .expect("shared");
            assert_eq!(shared.len(), 1);
            assert_eq!(shared[0].0, (token.clone(), from));
            let via_link = shared[0].1.prove(&log).expect("proves");
            assert_eq!(via_link, sized, "via the share link: {from} -> {size}");
        }
    }
    for from in [0, 81, u64::MAX] {
        assert!(matches!(
            store::consistency_proof(&client, &log, org, from, None).await,
            Err(LedgerError::OutOfRange(_))
        ));
    }
}
