//! The audit log records inside the caller's transaction and is append-only.

use defendable_store::audit::{record, Actor, AuditAction, AuditContext, AuditEvent};
use defendable_testkit::TestDb;
use serde_json::json;
use uuid::Uuid;

fn event(action: &str) -> AuditEvent {
    let mut e = AuditEvent::new(
        AuditAction::parse(action).expect("valid"),
        Actor::User(Uuid::new_v4()),
    );
    e.org_id = Some(Uuid::new_v4());
    e.target = Some("member:42".into());
    e.context = AuditContext {
        request_id: Some("req-1".into()),
        ip: Some("203.0.113.9".parse().expect("ip")),
        user_agent: Some("curl/8".into()),
    };
    e.details = json!({"role": "owner"});
    e
}

#[tokio::test]
async fn an_event_commits_with_its_transaction() {
    let db = TestDb::new().await;
    let mut client = db.pool.get().await.expect("client");
    let tx = client.transaction().await.expect("tx");
    let e = event("member.role_change");
    let id = record(&tx, &e).await.expect("recorded");
    tx.commit().await.expect("commit");

    let row = client
        .query_one(
            "SELECT action, actor_kind, actor_id, org_id, target, request_id, host(ip), user_agent, details
             FROM audit_events WHERE id = $1",
            &[&id],
        )
        .await
        .expect("row");
    assert_eq!(row.get::<_, String>(0), "member.role_change");
    assert_eq!(row.get::<_, String>(1), "user");
    assert_eq!(row.get::<_, Option<Uuid>>(3), e.org_id);
    assert_eq!(row.get::<_, String>(4), "member:42");
    assert_eq!(row.get::<_, String>(5), "req-1");
    assert_eq!(row.get::<_, String>(6), "203.0.113.9");
    assert_eq!(row.get::<_, String>(7), "curl/8");
    assert_eq!(row.get::<_, serde_json::Value>(8), json!({"role": "owner"}));
}

#[tokio::test]
async fn a_rolled_back_transaction_leaves_no_event() {
    let db = TestDb::new().await;
    let mut client = db.pool.get().await.expect("client");
    let tx = client.transaction().await.expect("tx");
    record(&tx, &event("api_key.create"))
        .await
        .expect("recorded");
    tx.rollback().await.expect("rollback");
    let n: i64 = client
        .query_one("SELECT count(*) FROM audit_events", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 0);
}

#[tokio::test]
async fn events_cannot_be_updated_deleted_or_truncated() {
    let db = TestDb::new().await;
    let client = db.pool.get().await.expect("client");
    record(&client, &event("auth.verify"))
        .await
        .expect("recorded");
    for sql in [
        "UPDATE audit_events SET action = 'auth.request'",
        "DELETE FROM audit_events",
        "TRUNCATE audit_events",
    ] {
        let err = client.execute(sql, &[]).await.expect_err(sql);
        assert!(
            err.to_string().contains("append-only") || format!("{err:?}").contains("append-only"),
            "{sql}: {err:?}"
        );
    }
}

#[test]
fn action_names_are_dotted_lowercase() {
    for ok in [
        "auth.request",
        "api_key.revoke",
        "dataset.download",
        "restore_drill",
    ] {
        assert!(AuditAction::parse(ok).is_ok(), "{ok}");
    }
    for bad in [
        "",
        "Auth.request",
        "auth..verify",
        ".auth",
        "auth.",
        "9lives",
        "a b",
        &"x".repeat(65),
    ] {
        assert!(AuditAction::parse(bad).is_err(), "{bad:?}");
    }
}

#[tokio::test]
async fn details_must_be_an_object() {
    let db = TestDb::new().await;
    let client = db.pool.get().await.expect("client");
    let mut e = event("auth.request");
    e.details = json!(["not", "an", "object"]);
    assert!(record(&client, &e).await.is_err());
}
