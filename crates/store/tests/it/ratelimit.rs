//! Rate-limit counters: batched counting is exact, shared by processes, and per window.

use std::collections::BTreeSet;

use defendable_store::ratelimit::{self, Bucket, Counter};
use defendable_testkit::TestDb;

fn bucket(name: &str, window_secs: i64) -> Bucket {
    Bucket {
        name: name.to_owned(),
        window_secs,
    }
}

/// Two counters (two server processes) on one database, 200 concurrent checks each, every check
/// in a shared bucket and some in a second one: the shared bucket's counts are exactly 1..=400,
/// each seen once, as if the checks had been counted one by one; the second bucket's likewise.
#[tokio::test]
async fn batched_counts_are_consecutive_and_shared_by_every_counter() {
    let db = TestDb::new().await;
    let (a, b) = (
        Counter::start(db.pool.clone(), 256),
        Counter::start(db.another_pool(4), 256),
    );
    let mut tasks = Vec::new();
    for i in 0..400 {
        let counter = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            // Some checks name the buckets in the other order.
            let buckets = match i % 8 {
                0 => vec![bucket("shared", 3600), bucket("quarter", 3600)],
                4 => vec![bucket("quarter", 3600), bucket("shared", 3600)],
                _ => vec![bucket("shared", 3600)],
            };
            let counts = counter.hit(buckets.clone()).await.expect("counted");
            let named = |name: &str| {
                buckets
                    .iter()
                    .position(|b| b.name == name)
                    .map(|at| counts[at])
            };
            (named("shared").expect("shared"), named("quarter"))
        }));
    }
    let (mut shared, mut quarter) = (Vec::new(), Vec::new());
    for t in tasks {
        let (s, q) = t.await.expect("join");
        for c in std::iter::once(s).chain(q) {
            assert!(c.reset_secs >= 1 && c.reset_secs <= 3600, "{c:?}");
        }
        shared.push(s.hits);
        quarter.extend(q.map(|q| q.hits));
    }
    shared.sort();
    quarter.sort();
    assert_eq!(shared, (1..=400).collect::<Vec<i64>>());
    assert_eq!(quarter, (1..=100).collect::<Vec<i64>>());
    // One statement for three checks hands out consecutive counts, in the order given.
    let client = db.pool.get().await.expect("client");
    let direct = ratelimit::hit_many(
        &client,
        &[
            &[bucket("shared", 3600)],
            &[bucket("shared", 3600), bucket("quarter", 3600)],
            &[bucket("shared", 3600)],
        ],
    )
    .await
    .expect("hit_many");
    let hits: Vec<Vec<i64>> = direct
        .iter()
        .map(|c| c.iter().map(|c| c.hits).collect())
        .collect();
    assert_eq!(hits, vec![vec![401], vec![402, 101], vec![403]]);
}

/// A window that has ended starts again from the batch's own checks: a one-second bucket whose
/// counter is from an earlier window counts 1, 2, 3 for three checks in one statement.
#[tokio::test]
async fn a_new_window_restarts_the_count_within_a_batch() {
    let db = TestDb::new().await;
    let client = db.pool.get().await.expect("client");
    client
        .execute(
            "INSERT INTO rate_limit_counters (bucket, window_start, hits)
             VALUES ('old', now() - interval '1 hour', 50)",
            &[],
        )
        .await
        .expect("old window");
    let one = [bucket("old", 1)];
    let counts = ratelimit::hit_many(&client, &[&one, &one, &one])
        .await
        .expect("hit_many");
    let hits: BTreeSet<i64> = counts.iter().map(|c| c[0].hits).collect();
    assert_eq!(hits, BTreeSet::from([1, 2, 3]));
    assert!(counts.iter().all(|c| c[0].reset_secs == 1));
}

/// Every statement updates its buckets in name order, whatever order its checks name them in, so
/// two processes' statements cannot deadlock: one transaction holds bucket `a` and waits while
/// another, counting `b` then `a`, waits for `a` without having taken `b`; the first then counts
/// `b` and commits, and the second finishes. (Counted in request order, the second would hold `b`
/// and PostgreSQL would abort one of them as a deadlock.)
#[tokio::test]
async fn statements_take_their_buckets_in_one_order() {
    let db = TestDb::new().await;
    let mut first = db.pool.get().await.expect("client");
    let other = db.another_pool(2);
    let watcher = db.pool.get().await.expect("client");
    let (a, b) = ([bucket("a", 3600)], [bucket("b", 3600)]);
    ratelimit::hit_many(&watcher, &[&a, &b])
        .await
        .expect("both rows exist");
    let tx = first.transaction().await.expect("tx");
    ratelimit::hit_many(&tx, &[&a]).await.expect("holds a");
    let second = tokio::spawn(async move {
        let mut client = other.get().await.expect("client");
        let tx = client.transaction().await.expect("tx");
        let counts =
            ratelimit::hit_many(&tx, &[&[bucket("b", 3600)], &[bucket("a", 3600)]]).await?;
        tx.commit().await?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(counts)
    });
    // Wait until the second statement is blocked on a lock.
    let mut waited = 0;
    loop {
        let blocked: i64 = watcher
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
                &[],
            )
            .await
            .expect("activity")
            .get(0);
        if blocked > 0 {
            break;
        }
        waited += 1;
        assert!(
            waited < 500,
            "the second statement never waited for bucket a"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let counts = ratelimit::hit_many(&tx, &[&b])
        .await
        .expect("b is free: the waiting statement has not taken it");
    assert_eq!(counts[0][0].hits, 2);
    tx.commit().await.expect("commit");
    let counts = second.await.expect("join").expect("no deadlock");
    assert_eq!((counts[0][0].hits, counts[1][0].hits), (3, 3));
}
