//! Batched reads: concurrent lookups share statements, each key once per statement, nothing is
//! cached, and a failed statement fails every lookup it carried. Generic plans on request.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use defendable_store::loader::Loader;
use defendable_store::{pool_with, PoolSettings, StoreError};
use defendable_testkit::TestDb;

async fn things(db: &TestDb) {
    let client = db.pool.get().await.expect("client");
    client
        .batch_execute(
            "CREATE TABLE things (k INT PRIMARY KEY, v TEXT NOT NULL);
             INSERT INTO things SELECT k, 'v' || k FROM generate_series(0, 49) AS k;",
        )
        .await
        .expect("table");
}

/// A loader over `things` that records each statement's keys.
fn loader(db: &TestDb, batches: Arc<Mutex<Vec<Vec<i32>>>>) -> Loader<i32, String> {
    Loader::start(db.pool.clone(), 64, move |client, keys: Vec<i32>| {
        batches.lock().expect("batches").push(keys.clone());
        async move {
            let rows = client
                .query("SELECT k, v FROM things WHERE k = ANY($1)", &[&keys])
                .await?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        }
    })
}

/// 600 concurrent lookups of 60 keys (ten of them absent): each gets its own key's value or
/// `None`, the statements are far fewer than the lookups, and no statement names a key twice.
#[tokio::test]
async fn concurrent_lookups_share_statements_and_each_key_is_looked_up_once_per_statement() {
    let db = TestDb::new().await;
    things(&db).await;
    let batches = Arc::new(Mutex::new(Vec::new()));
    let loader = loader(&db, batches.clone());
    let tasks: Vec<_> = (0..600)
        .map(|i| {
            let loader = loader.clone();
            tokio::spawn(async move { (i % 60, loader.load(i % 60).await) })
        })
        .collect();
    for t in tasks {
        let (k, got) = t.await.expect("join");
        let want = (k < 50).then(|| format!("v{k}"));
        assert_eq!(got.expect("loaded"), want, "key {k}");
    }
    let batches = batches.lock().expect("batches");
    for keys in batches.iter() {
        assert!(keys.len() <= 64, "a batch over its bound: {}", keys.len());
        assert_eq!(
            keys.iter().collect::<HashSet<_>>().len(),
            keys.len(),
            "a key twice in one statement: {keys:?}"
        );
    }
    assert!(
        batches.len() * 4 <= 600,
        "{} statements for 600 lookups",
        batches.len()
    );
}

/// Nothing is cached: a change committed before a lookup is asked is what it sees.
#[tokio::test]
async fn a_lookup_sees_what_was_committed_before_it_was_asked() {
    let db = TestDb::new().await;
    things(&db).await;
    let loader = loader(&db, Arc::default());
    assert_eq!(loader.load(7).await.expect("load"), Some("v7".to_owned()));
    let client = db.pool.get().await.expect("client");
    client
        .execute("DELETE FROM things WHERE k = 7", &[])
        .await
        .expect("delete");
    assert_eq!(loader.load(7).await.expect("load"), None);
}

/// A statement that fails answers every lookup it carried with the error, and the loader goes
/// on serving later lookups.
#[tokio::test]
async fn a_failed_statement_fails_each_of_its_lookups_and_the_loader_goes_on() {
    let db = TestDb::new().await;
    things(&db).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let loader: Loader<i32, String> = Loader::start(db.pool.clone(), 64, move |client, keys| {
        let first = counted.fetch_add(1, Ordering::SeqCst) == 0;
        async move {
            let table = if first { "no_such_table" } else { "things" };
            let rows = client
                .query(
                    &format!("SELECT k, v FROM {table} WHERE k = ANY($1)"),
                    &[&keys],
                )
                .await?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        }
    });
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let loader = loader.clone();
            tokio::spawn(async move { loader.load(i).await })
        })
        .collect();
    let mut failed = 0;
    for t in tasks {
        match t.await.expect("join") {
            Err(e @ StoreError::Shared { .. }) => {
                assert!(e.to_string().contains("no_such_table"), "{e}");
                failed += 1;
            }
            Err(e) => panic!("unexpected error {e}"),
            Ok(v) => assert!(v.is_some()),
        }
    }
    assert!(failed >= 1, "the first statement's lookups fail");
    assert_eq!(loader.load(3).await.expect("load"), Some("v3".to_owned()));
}

/// The server's setting plans each prepared statement once per connection; tools keep
/// PostgreSQL's default.
#[tokio::test]
async fn generic_plans_are_set_on_the_connections_that_ask_for_them() {
    let db = TestDb::new().await;
    for (generic, want) in [(true, "force_generic_plan"), (false, "auto")] {
        let pool = pool_with(
            db.url(),
            PoolSettings {
                generic_plans: generic,
                ..PoolSettings::tools(1)
            },
        )
        .expect("pool");
        let client = pool.get().await.expect("client");
        let mode: String = client
            .query_one("SHOW plan_cache_mode", &[])
            .await
            .expect("show")
            .get(0);
        assert_eq!(mode, want);
    }
}
