//! The PostgreSQL store: both append paths, contention across pools, idempotency, erasure, and
//! tampering with every stored field.

use std::collections::HashSet;

use defendable_ledger::store::{self, AppendOptions, Appended, BatchAppender};
use defendable_ledger::{Draft, Reason, ReceiptKind};
use defendable_testkit::TestDb;
use serde_json::json;
use uuid::Uuid;

fn draft(n: u64) -> Draft {
    Draft::new(
        ReceiptKind::parse("run").expect("kind"),
        json!({"n": n, "status": "passed"}),
        Some(json!({"runner": "ci-7", "host": "10.0.0.7"})),
    )
    .expect("draft")
}

async fn chain_of(db: &TestDb, org: Uuid, n: u64) {
    let appender = BatchAppender::start(db.pool.clone(), 2, 64);
    for i in 0..n {
        appender
            .append(org, draft(i), AppendOptions::default())
            .await
            .expect("append");
    }
}

#[tokio::test]
async fn append_in_joins_the_callers_transaction() {
    let db = TestDb::new().await;
    let org = Uuid::new_v4();
    let mut client = db.pool.get().await.expect("client");

    let tx = client.transaction().await.expect("tx");
    let first = store::append_in(&tx, org, draft(0)).await.expect("append");
    tx.rollback().await.expect("rollback");
    assert_eq!(first.seq, 0);
    assert!(
        store::get(&client, org, &first.id)
            .await
            .expect("get")
            .is_none(),
        "rolled back with the caller"
    );

    let tx = client.transaction().await.expect("tx");
    let a = store::append_in(&tx, org, draft(0)).await.expect("append");
    let b = store::append_in(&tx, org, draft(1)).await.expect("append");
    tx.commit().await.expect("commit");
    assert_eq!((a.seq, b.seq), (0, 1));
    assert_eq!(b.parent, a.hash);
    let report = store::verify_org(&client, org).await.expect("verify");
    assert_eq!((report.checked, report.failure), (2, None));
}

#[tokio::test]
async fn three_pools_with_64_writers_each_build_one_chain_without_fork_or_gap() {
    let db = TestDb::new().await;
    let org = Uuid::new_v4();
    const PER_WRITER: u64 = 105;
    let mut tasks = Vec::new();
    for process in 0..3 {
        // Each pool and appender stands in for a separate server process.
        let appender = BatchAppender::start(db.another_pool(8), 2, 256);
        for writer in 0..64u64 {
            let appender = appender.clone();
            tasks.push(tokio::spawn(async move {
                let mut seqs = Vec::new();
                for i in 0..PER_WRITER {
                    let n = (process * 64 + writer) * PER_WRITER + i;
                    match appender
                        .append(org, draft(n), AppendOptions::default())
                        .await
                        .expect("append")
                    {
                        Appended::New(r) => seqs.push(r.seq),
                        Appended::Existing(_) => panic!("no idempotency key was used"),
                    }
                }
                seqs
            }));
        }
    }
    let mut acknowledged = HashSet::new();
    for t in tasks {
        for seq in t.await.expect("join") {
            assert!(acknowledged.insert(seq), "seq {seq} acknowledged twice");
        }
    }
    let total = 3 * 64 * PER_WRITER;
    assert!(total >= 20_000);
    assert_eq!(acknowledged.len() as u64, total);
    let client = db.pool.get().await.expect("client");
    let stored: Vec<i64> = client
        .query(
            "SELECT seq FROM receipts WHERE org_id = $1 ORDER BY seq",
            &[&org],
        )
        .await
        .expect("seqs")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        stored,
        (0..total as i64).collect::<Vec<_>>(),
        "seqs are exactly 0..n-1"
    );
    let report = store::verify_org(&client, org).await.expect("verify");
    assert_eq!(report.failure, None);
    assert_eq!(report.checked, total);
}

#[tokio::test]
async fn many_orgs_batch_together_and_verify_all() {
    let db = TestDb::new().await;
    let appender = BatchAppender::start(db.pool.clone(), 4, 128);
    let orgs: Vec<Uuid> = (0..50).map(|_| Uuid::new_v4()).collect();
    let mut tasks = Vec::new();
    for (i, org) in orgs.iter().enumerate() {
        let appender = appender.clone();
        let org = *org;
        tasks.push(tokio::spawn(async move {
            for n in 0..20 {
                appender
                    .append(org, draft(i as u64 * 100 + n), AppendOptions::default())
                    .await
                    .expect("append");
            }
        }));
    }
    for t in tasks {
        t.await.expect("join");
    }
    let client = db.pool.get().await.expect("client");
    let reports = store::verify_all(&client).await.expect("verify");
    assert_eq!(reports.len(), 50);
    assert!(reports
        .iter()
        .all(|r| r.failure.is_none() && r.checked == 20));
}

#[tokio::test]
async fn a_worker_commits_other_orgs_while_one_orgs_batch_is_stuck_and_keeps_that_org_in_order() {
    let db = TestDb::new().await;
    // One worker: without a second batch in flight, B would queue behind A's stuck batch.
    let appender = BatchAppender::start(db.pool.clone(), 1, 64);
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    for org in [a, b] {
        appender
            .append(org, draft(0), AppendOptions::default())
            .await
            .expect("first append");
    }
    // Another session holds A's head: A's next batch waits on that row lock.
    let mut holder = db.pool.get().await.expect("client");
    let lock = holder.transaction().await.expect("tx");
    lock.execute(
        "SELECT 1 FROM ledger_heads WHERE org_id = $1 FOR UPDATE",
        &[&a],
    )
    .await
    .expect("lock");
    let first = tokio::spawn({
        let appender = appender.clone();
        async move { appender.append(a, draft(1), AppendOptions::default()).await }
    });
    // Wait until A's batch is the one waiting for the lock.
    let watcher = db.pool.get().await.expect("client");
    let mut stuck = false;
    for _ in 0..600 {
        let waiting: i64 = watcher
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                  WHERE datname = current_database() AND wait_event_type = 'Lock'",
                &[],
            )
            .await
            .expect("activity")
            .get(0);
        if waiting > 0 {
            stuck = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(stuck, "A's batch waits for the held head");
    // A second request for A must wait for the first; B goes ahead in a batch of its own.
    let second = tokio::spawn({
        let appender = appender.clone();
        async move { appender.append(a, draft(2), AppendOptions::default()).await }
    });
    let on_b = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        appender.append(b, draft(1), AppendOptions::default()),
    )
    .await
    .expect("B committed while A's batch was stuck")
    .expect("append to B");
    assert!(matches!(on_b, Appended::New(r) if r.seq == 1));
    assert!(
        !first.is_finished() && !second.is_finished(),
        "A is still held"
    );
    lock.rollback().await.expect("release");
    let first = first.await.expect("join").expect("append to A");
    let second = second.await.expect("join").expect("append to A");
    let seqs: Vec<u64> = [first, second]
        .into_iter()
        .map(|a| match a {
            Appended::New(r) => r.seq,
            Appended::Existing(_) => panic!("no key was sent"),
        })
        .collect();
    assert_eq!(seqs, vec![1, 2], "A's requests keep their order");
    let client = db.pool.get().await.expect("client");
    for org in [a, b] {
        let report = store::verify_org(&client, org).await.expect("verify");
        assert_eq!(report.failure, None);
    }
}

#[tokio::test]
async fn idempotency_keys_return_the_first_receipt_and_refuse_a_different_request() {
    let db = TestDb::new().await;
    let org = Uuid::new_v4();
    let appender = BatchAppender::start(db.pool.clone(), 1, 64);
    let fp =
        store::request_fingerprint("run", &json!({"n": 1, "status": "passed"}), None).expect("fp");
    let opts = || AppendOptions {
        idempotency: Some(("retry-1".into(), fp.clone())),
        audit: None,
    };
    let (a, b) = tokio::join!(
        appender.append(org, draft(1), opts()),
        appender.append(org, draft(1), opts())
    );
    let (a, b) = (a.expect("a"), b.expect("b"));
    assert_eq!(a.receipt().receipt_id, b.receipt().receipt_id);
    assert!(matches!(
        (&a, &b),
        (Appended::New(_), Appended::Existing(_)) | (Appended::Existing(_), Appended::New(_))
    ));
    let again = appender.append(org, draft(1), opts()).await.expect("retry");
    assert!(matches!(again, Appended::Existing(ref r) if r.receipt_id == a.receipt().receipt_id));
    let other = AppendOptions {
        idempotency: Some(("retry-1".into(), "different".into())),
        audit: None,
    };
    assert!(appender.append(org, draft(2), other).await.is_err());
    let (seq, _) = store::head(&db.pool.get().await.expect("client"), org)
        .await
        .expect("head");
    assert_eq!(seq, 0, "exactly one receipt was created");
}

#[tokio::test]
async fn erasing_the_private_part_keeps_the_chain_valid_and_rewrites_are_refused() {
    let db = TestDb::new().await;
    let org = Uuid::new_v4();
    chain_of(&db, org, 3).await;
    let client = db.pool.get().await.expect("client");
    client
        .execute(
            "UPDATE receipts SET private = NULL, salt = NULL WHERE org_id = $1 AND seq = 1",
            &[&org],
        )
        .await
        .expect("erasure is allowed");
    assert_eq!(
        store::verify_org(&client, org)
            .await
            .expect("verify")
            .failure,
        None
    );
    for sql in [
        "UPDATE receipts SET kind = 'other' WHERE org_id = $1 AND seq = 1",
        "DELETE FROM receipts WHERE org_id = $1 AND seq = 2",
    ] {
        let err = client.execute(sql, &[&org]).await.expect_err(sql);
        assert!(format!("{err:?}").contains("append-only"), "{sql}: {err:?}");
    }
}

/// Flips one byte of one stored field of receipt 2 (triggers bypassed, as an attacker with
/// database access would) and expects verification to name seq and reason.
#[tokio::test]
async fn tampering_with_any_stored_field_is_reported_with_seq_and_reason() {
    type Case = (&'static str, &'static str, u64, fn(&Reason) -> bool);
    let cases: [Case; 6] = [
        ("body byte", "UPDATE receipts SET canonical = set_byte(canonical, 29, get_byte(canonical, 29) # 1) WHERE org_id = $1 AND seq = 2", 2, |r| *r == Reason::HashMismatch),
        ("hash", "UPDATE receipts SET hash = overlay(hash placing (CASE WHEN substr(hash, 5, 1) = 'a' THEN 'b' ELSE 'a' END) from 5 for 1) WHERE org_id = $1 AND seq = 2", 2, |r| *r == Reason::HashMismatch),
        ("parent", "UPDATE receipts SET parent = overlay(parent placing (CASE WHEN substr(parent, 9, 1) = 'a' THEN 'b' ELSE 'a' END) from 9 for 1) WHERE org_id = $1 AND seq = 2", 2, |r| *r == Reason::ParentMismatch),
        ("seq", "UPDATE receipts SET seq = 9 WHERE org_id = $1 AND seq = 2", 3, |r| *r == Reason::SeqGap { expected: 2 }),
        ("receipt id", "UPDATE receipts SET receipt_id = 'DCR-000002-00000000' WHERE org_id = $1 AND seq = 2", 2, |r| *r == Reason::IdMismatch),
        (
            "body and hash rewritten together",
            "UPDATE receipts SET canonical = set_byte(canonical, 29, get_byte(canonical, 29) # 1), hash = encode(sha256(set_byte(canonical, 29, get_byte(canonical, 29) # 1)), 'hex') WHERE org_id = $1 AND seq = 2",
            2,
            |r| matches!(r, Reason::NotCanonical | Reason::BodyField(_) | Reason::IdMismatch),
        ),
    ];
    for (what, sql, seq, reason_ok) in cases {
        let db = TestDb::new().await;
        let org = Uuid::new_v4();
        chain_of(&db, org, 5).await;
        let client = db.pool.get().await.expect("client");
        client
            .batch_execute("SET session_replication_role = replica")
            .await
            .expect("bypass triggers");
        let n = client
            .execute(sql, &[&org])
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(n, 1, "{what}");
        let failure = store::verify_org(&client, org)
            .await
            .expect("verify")
            .failure;
        let failure = failure.unwrap_or_else(|| panic!("{what}: tampering went unnoticed"));
        assert_eq!(failure.seq, seq, "{what}: {failure}");
        assert!(reason_ok(&failure.reason), "{what}: {failure}");
    }
}

#[tokio::test]
async fn a_moved_head_is_reported() {
    let db = TestDb::new().await;
    let org = Uuid::new_v4();
    chain_of(&db, org, 3).await;
    let client = db.pool.get().await.expect("client");
    let behind_the_tree = client
        .execute("UPDATE ledger_heads SET seq = 1 WHERE org_id = $1", &[&org])
        .await
        .expect_err("a head behind its tree is refused by a constraint");
    assert!(
        behind_the_tree
            .to_string()
            .contains("ledger_heads_tree_within_chain")
            || format!("{behind_the_tree:?}").contains("ledger_heads_tree_within_chain")
    );
    client
        .execute("UPDATE ledger_heads SET seq = 5 WHERE org_id = $1", &[&org])
        .await
        .expect("move head");
    let failure = store::verify_org(&client, org)
        .await
        .expect("verify")
        .failure
        .expect("noticed");
    assert_eq!(failure.reason, Reason::HeadMismatch);
}

/// What the `embed` example does, on a database that has nothing of ours in it.
#[tokio::test]
async fn another_service_migrates_an_empty_database_and_appends_in_its_own_transaction() {
    let db = TestDb::empty().await;
    store::migrate(&db.pool).await.expect("migrate");
    store::migrate(&db.pool)
        .await
        .expect("migrating again is a no-op");
    let org = Uuid::new_v4();
    let mut client = db.pool.get().await.expect("client");
    let tx = client.transaction().await.expect("tx");
    tx.batch_execute("CREATE TABLE deployments (id serial PRIMARY KEY)")
        .await
        .expect("host table");
    tx.execute("INSERT INTO deployments DEFAULT VALUES", &[])
        .await
        .expect("host write");
    store::append_in(&tx, org, draft(1)).await.expect("append");
    tx.commit().await.expect("commit");
    let history: i64 = client
        .query_one("SELECT count(*) FROM defendable_ledger_schema_history", &[])
        .await
        .expect("history")
        .get(0);
    assert_eq!(history, 2, "the chain and the tree migrations");
    assert_eq!(
        store::verify_org(&client, org)
            .await
            .expect("verify")
            .checked,
        1
    );
}

/// One batch of audited, keyed appends, as the API sends them.
fn audited(org: Uuid, key: Option<&str>, n: u64) -> (Draft, AppendOptions) {
    let draft = draft(n);
    let fingerprint =
        store::request_fingerprint("test.receipt", &json!({ "n": n }), None).expect("fingerprint");
    let mut audit = defendable_store::audit::AuditEvent::new(
        defendable_store::audit::AuditAction::ReceiptCreate,
        defendable_store::audit::Actor::System,
    );
    audit.org_id = Some(org);
    audit.details = json!({ "n": n });
    (
        draft,
        AppendOptions {
            idempotency: key.map(|k| (k.to_owned(), fingerprint)),
            audit: Some(audit),
        },
    )
}

/// The audited, keyed path batches like the plain one: every receipt commits with its audit
/// event and its key; a key sent twice at once (in one batch or in two) yields one receipt; a
/// key reused with another request, and a body too large once sealed, fail alone while their
/// batch-mates commit; the chain and tree verify.
#[tokio::test]
async fn audited_keyed_appends_batch_and_bad_requests_fail_alone() {
    let db = TestDb::new().await;
    let org = Uuid::new_v4();
    let appender = BatchAppender::start(db.pool.clone(), 1, 256);
    let mut calls = Vec::new();
    for n in 0..200u64 {
        let (draft, opts) = audited(org, Some(&format!("key-{n}")), n);
        calls.push(appender.append(org, draft, opts));
    }
    // The same key and request twice at once, and the same key with another request.
    let (d, o) = audited(org, Some("twice"), 1_000);
    calls.push(appender.append(org, d, o));
    let (d, o) = audited(org, Some("twice"), 1_000);
    calls.push(appender.append(org, d, o));
    let (d, o) = audited(org, Some("key-7"), 7_777);
    calls.push(appender.append(org, d, o));
    // The largest body a draft accepts: the sealed receipt's own fields push it over the limit.
    let oversized = (0..400)
        .find_map(|cut| {
            let big = "x".repeat(defendable_ledger::receipt::MAX_BODY_BYTES - cut);
            Draft::new(
                ReceiptKind::parse("test.receipt").expect("kind"),
                json!({ "pad": big }),
                None,
            )
            .ok()
        })
        .expect("a draft just under the limit");
    let results = futures_util::future::join_all(calls).await;
    let mut new = 0;
    let mut twice = HashSet::new();
    for (i, r) in results.iter().enumerate() {
        match (i, r) {
            (0..=199, Ok(Appended::New(_))) => new += 1,
            (0..=199, Ok(Appended::Existing(_))) => {
                // key-7 may have been committed before its conflicting twin arrived, or after.
            }
            (200 | 201, Ok(a)) => {
                let receipt = match a {
                    Appended::New(r) | Appended::Existing(r) => r,
                };
                twice.insert(receipt.receipt_id.clone());
            }
            (202, Err(defendable_ledger::LedgerError::IdempotencyConflict)) => {}
            (i, Ok(_)) => panic!("request {i} unexpectedly succeeded"),
            (i, Err(e)) => panic!("request {i} failed: {e}"),
        }
    }
    assert_eq!(new, 200);
    assert_eq!(twice.len(), 1, "one receipt for a key sent twice at once");
    {
        let mut batch = Vec::new();
        for n in 300..310u64 {
            let (d, o) = audited(org, Some(&format!("key-{n}")), n);
            batch.push(appender.append(org, d, o));
        }
        let (_, o) = audited(org, Some("too-big"), 999);
        batch.push(appender.append(org, oversized, o));
        let results = futures_util::future::join_all(batch).await;
        assert!(results[..10]
            .iter()
            .all(|r| matches!(r, Ok(Appended::New(_)))));
        assert!(
            matches!(
                results[10],
                Err(defendable_ledger::LedgerError::BodyTooLarge(_))
            ),
            "the oversized receipt fails alone: {:?}",
            results[10].as_ref().err()
        );
    }
    let client = db.pool.get().await.expect("client");
    let count = |sql: &'static str| {
        let client = &client;
        async move {
            client
                .query_one(sql, &[&org])
                .await
                .expect("count")
                .get::<_, i64>(0)
        }
    };
    let receipts = count("SELECT count(*) FROM receipts WHERE org_id = $1").await;
    assert_eq!(receipts, 211, "200 + the key sent twice + 10");
    assert_eq!(
        count("SELECT count(*) FROM audit_events WHERE org_id = $1 AND action = 'receipt.create'")
            .await,
        receipts,
        "one audit event per receipt"
    );
    assert_eq!(
        count("SELECT count(*) FROM receipt_idempotency WHERE org_id = $1 AND seq IS NOT NULL")
            .await,
        receipts,
        "one key per receipt"
    );
    let unlinked = count(
        "SELECT count(*) FROM audit_events a WHERE a.org_id = $1 AND a.action = 'receipt.create'
           AND NOT EXISTS (SELECT 1 FROM receipts r WHERE r.org_id = a.org_id AND r.receipt_id = a.target)",
    )
    .await;
    assert_eq!(unlinked, 0, "each audit event names its receipt");
    let report = store::verify_org(&client, org).await.expect("verify");
    assert!(report.failure.is_none(), "{report:?}");
    assert_eq!(report.tree_size, receipts as u64);
}
