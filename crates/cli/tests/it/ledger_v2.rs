//! Ledger v2 from the CLI: `verify` remembers the newest checkpoint per log and proves every
//! newer one consistent with it; `ledger watch` does the same for members; rewritten history and
//! altered receipts exit 4; keys are pinned on first use or out of band.

use serde_json::Value;

use crate::server::{Run, Server};

/// Records `n` receipts as the signed-in user and returns their ids.
async fn record(s: &Server, n: u64) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let r = s
            .cli(
                &[
                    "receipts", "record", "--kind", "run", "--public", "-", "--json",
                ],
                &[],
                Some(&format!(r#"{{"step": {i}}}"#)),
            )
            .await
            .ok()
            .json();
        ids.push(r["receipt_id"].as_str().expect("id").to_owned());
    }
    ids
}

async fn share(s: &Server, id: &str) -> String {
    let share = s
        .cli(&["receipts", "share", id, "--json"], &[], None)
        .await
        .ok()
        .json();
    share["url"].as_str().expect("url").to_owned()
}

fn assert_fails(run: &Run, needles: &[&str]) {
    assert_eq!(run.code, 4, "{run:?}");
    for n in needles {
        assert!(run.stderr.contains(n), "{n:?} missing: {run:?}");
    }
}

async fn org_id(s: &Server) -> uuid::Uuid {
    let me = s.cli(&["whoami", "--json"], &[], None).await.ok().json();
    me["memberships"][0]["org"]["id"]
        .as_str()
        .expect("org id")
        .parse()
        .expect("uuid")
}

/// Alters stored rows behind the API's back (past the append-only triggers).
async fn tamper(s: &Server, sql: &str, org: uuid::Uuid) {
    let client = s.db.pool.get().await.expect("client");
    client
        .batch_execute("SET session_replication_role = replica")
        .await
        .expect("bypass");
    let n = client.execute(sql, &[&org]).await.expect("tamper");
    assert_eq!(n, 1, "{sql}");
}

#[actix_web::test]
async fn verify_remembers_checkpoints_and_catches_a_rewritten_tree() {
    let s = Server::start().await;
    s.login("v2@example.com").await.ok();
    let org = org_id(&s).await;
    let ids = record(&s, 4).await;
    let url = share(&s, &ids[3]).await;

    // First use: keys pinned, checkpoint of size 4 saved.
    let first = s.cli(&["verify", &url, "--json"], &[], None).await.ok();
    assert!(
        first.stderr.contains("pinned the signing keys"),
        "{first:?}"
    );
    let v: Value = first.json();
    assert_eq!(v["checkpoint"]["size"], 4);
    assert_eq!(v["continuity"]["previous"], Value::Null);
    // Same tree again: nothing new, nothing to prove.
    let same = s.cli(&["verify", &url], &[], None).await.ok();
    assert!(
        same.stdout
            .contains("the same tree as the checkpoint of size 4"),
        "{same:?}"
    );
    assert!(!same.stderr.contains("pinned"), "{same:?}");

    // The log grows; the next run proves 4 → 20 and saves 20.
    record(&s, 16).await;
    let grown = s
        .cli(&["verify", &url, "--json"], &[], None)
        .await
        .ok()
        .json();
    assert_eq!(grown["checkpoint"]["size"], 20);
    assert_eq!(
        grown["continuity"],
        serde_json::json!({"previous": 4, "consistent": true})
    );
    // Members watch the same log.
    let watched = s
        .cli(&["ledger", "watch", "--json"], &[], None)
        .await
        .ok()
        .json();
    assert_eq!(
        watched["continuity"],
        serde_json::json!({"previous": 20, "consistent": true})
    );
    record(&s, 2).await;

    // Someone with the database rewrites node (4, 0), the root of receipts 0–15, and the log
    // grows on. The proof from the saved size 20 to the new size 23 rests on that node.
    tamper(
        &s,
        "UPDATE ledger_nodes SET hash = sha256(hash) WHERE org_id = $1 AND level = 4 AND idx = 0",
        org,
    )
    .await;
    record(&s, 1).await;
    assert_fails(
        &s.cli(&["verify", &url], &[], None).await,
        &["size 20", "size 23", "rewritten or forked"],
    );
    assert_fails(
        &s.cli(&["ledger", "watch"], &[], None).await,
        &["size 20", "size 23", "rewritten or forked"],
    );
}

#[actix_web::test]
async fn an_altered_receipt_body_fails_its_bundle_and_keys_are_pinned() {
    let s = Server::start().await;
    s.login("body@example.com").await.ok();
    let org = org_id(&s).await;
    let ids = record(&s, 3).await;
    let url = share(&s, &ids[1]).await;
    s.cli(&["verify", &url], &[], None).await.ok();
    let expiring = s
        .cli(
            &["receipts", "share", &ids[2], "--expires-in", "2h", "--json"],
            &[],
            None,
        )
        .await
        .ok()
        .json();
    assert!(
        expiring["expires_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{expiring}"
    );

    // The vkey published out of band verifies a saved tlog-proof file offline.
    let keys: Value = reqwest::get(format!("{}/ledger/keys", s.base))
        .await
        .expect("keys")
        .json()
        .await
        .expect("json");
    let vkey = keys["keys"][0]["vkey"].as_str().expect("vkey").to_owned();
    let token = url.rsplit('/').next().expect("token");
    let tlog = reqwest::get(format!("{}/share/{token}/proof?format=tlog-proof", s.base))
        .await
        .expect("proof")
        .text()
        .await
        .expect("text");
    let file = s.home.path().join("receipt.tlog-proof");
    std::fs::write(&file, &tlog).expect("write");
    let file = file.to_str().expect("utf8");
    let offline = s
        .cli(
            &["verify", file, "--vkey", &vkey],
            &[("DEFENDABLE_API", "http://127.0.0.1:9")],
            None,
        )
        .await
        .ok();
    assert!(offline.stdout.contains("verified 1 receipt"), "{offline:?}");
    // A key that did not sign it is refused.
    let (other, _) = defendable_ledger::SigningKey::generate().expect("key");
    let name = defendable_ledger::LedgerName::parse("localhost-dev").expect("name");
    let other = defendable_ledger::note::vkey(&name, &other.raw_public());
    assert_fails(
        &s.cli(&["verify", file, "--vkey", &other], &[], None).await,
        &["no trusted key signed"],
    );

    // One byte of the shared receipt's stored body changes: its bundle no longer checks.
    tamper(
        &s,
        "UPDATE receipts SET canonical = set_byte(canonical, 20, get_byte(canonical, 20) # 1) WHERE org_id = $1 AND seq = 1",
        org,
    )
    .await;
    assert_fails(
        &s.cli(&["verify", &url], &[], None).await,
        &["receipt seq 1"],
    );
    // So do a hash and an id forged to match the altered body: the inclusion proof fails.
    tamper(
        &s,
        "UPDATE receipts SET hash = encode(sha256(canonical), 'hex'),
                receipt_id = 'DCR-000001-' || left(encode(sha256(canonical), 'hex'), 8)
          WHERE org_id = $1 AND seq = 1",
        org,
    )
    .await;
    assert_fails(
        &s.cli(&["verify", &url], &[], None).await,
        &["receipt seq 1", "inclusion in the tree of size 3"],
    );
}
