//! Migrations apply once, concurrently safe, and report their version.

use defendable_store::{latest_version, migrate, schema_version};
use defendable_testkit::TestDb;

#[tokio::test]
async fn a_fresh_database_is_at_the_latest_version_and_migrating_again_is_a_no_op() {
    let db = TestDb::new().await;
    let client = db.pool.get().await.expect("client");
    assert_eq!(
        schema_version(&client).await.expect("version"),
        Some(latest_version())
    );
    // Several processes booting at once: all succeed, none applies twice.
    let (p2, p3) = (db.another_pool(2), db.another_pool(2));
    let (a, b, c) = tokio::join!(migrate(&db.pool), migrate(&p2), migrate(&p3));
    a.expect("a");
    b.expect("b");
    c.expect("c");
    let applied: i64 = client
        .query_one("SELECT count(*) FROM refinery_schema_history", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(applied, latest_version());
}

/// Connections try TLS (`sslmode=prefer`, the default, falls back to plain on a server without
/// it); `sslmode=require` refuses a server that cannot do TLS instead of sending in clear.
#[tokio::test]
async fn sslmode_require_refuses_a_server_without_tls() {
    let db = TestDb::new().await;
    let prefer = defendable_store::pool(db.url(), 1).expect("pool");
    let client = prefer.get().await.expect("prefer falls back to plain");
    client.query_one("SELECT 1", &[]).await.expect("query");
    let require =
        defendable_store::pool(&format!("{} sslmode=require", db.url()), 1).expect("pool");
    let err = require.get().await.expect_err("require must not fall back");
    assert!(
        format!("{err:?}").to_lowercase().contains("tls")
            || format!("{err:?}").to_lowercase().contains("ssl"),
        "{err:?}"
    );
}
