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
            let mut buckets = vec![bucket("shared", 3600)];
            if i % 4 == 0 {
                buckets.push(bucket("quarter", 3600));
            }
            counter.hit(buckets).await.expect("counted")
        }));
    }
    let (mut shared, mut quarter) = (Vec::new(), Vec::new());
    for t in tasks {
        let counts = t.await.expect("join");
        assert!(counts
            .iter()
            .all(|c| c.reset_secs >= 1 && c.reset_secs <= 3600));
        shared.push(counts[0].hits);
        if let Some(q) = counts.get(1) {
            quarter.push(q.hits);
        }
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
