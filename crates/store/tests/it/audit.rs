//! The audit log records inside the caller's transaction and is append-only.

use defendable_store::audit::{record, Actor, AuditAction, AuditContext, AuditEvent};
use defendable_testkit::TestDb;
use serde_json::json;
use uuid::Uuid;

fn event(action: AuditAction) -> AuditEvent {
    let mut e = AuditEvent::new(action, Actor::User(Uuid::new_v4()));
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
    let e = event(AuditAction::MemberRoleChange);
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
    record(&tx, &event(AuditAction::ApiKeyCreate))
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
    record(&client, &event(AuditAction::AuthVerify))
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
fn every_action_has_one_dotted_lowercase_name_that_reads_back() {
    let valid_segment = |seg: &str| {
        let mut chars = seg.chars();
        chars.next().is_some_and(|c| c.is_ascii_lowercase())
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    };
    let mut seen = std::collections::HashSet::new();
    for &action in AuditAction::ALL {
        let name = action.as_str();
        assert!(
            name.len() <= 64 && name.contains('.') && name.split('.').all(valid_segment),
            "{name:?} is not a dotted lowercase name"
        );
        assert!(seen.insert(name), "{name} is declared twice");
        assert_eq!(AuditAction::from_name(name), Some(action));
    }
    for unknown in ["", "auth", "auth.unknown", "Auth.request", "auth.request "] {
        assert_eq!(AuditAction::from_name(unknown), None, "{unknown:?}");
    }
}

#[tokio::test]
async fn details_must_be_an_object() {
    let db = TestDb::new().await;
    let client = db.pool.get().await.expect("client");
    let mut e = event(AuditAction::AuthRequest);
    e.details = json!(["not", "an", "object"]);
    assert!(record(&client, &e).await.is_err());
}
