//! Publish, catalog and grants through the core's own API.

use object_store::ObjectStoreExt as _;
use std::sync::Arc;
use std::time::Duration;

use defendable_datasets::store::{self, GrantRequest, Grantee, Publication};
use defendable_datasets::{Blake3Digest, DatasetSlug, DatasetVersion, DatasetsError, ObjectKey};
use defendable_store::audit::AuditContext;
use defendable_testkit::TestDb;
use object_store::memory::InMemory;
use uuid::Uuid;

const BYTES: &[u8] = b"year,region,count\n2026,north,41\n";

async fn objects() -> Arc<InMemory> {
    let objects = Arc::new(InMemory::new());
    objects
        .put(
            &object_store::path::Path::from("raw/census.csv"),
            BYTES.to_vec().into(),
        )
        .await
        .expect("put");
    objects
}

fn publication(blake3: Option<Blake3Digest>) -> Publication {
    Publication {
        slug: DatasetSlug::parse("census").expect("slug"),
        title: "Census".into(),
        description: "Counts by region".into(),
        version: DatasetVersion::parse("2026.1").expect("version"),
        license: "CC-BY-4.0".into(),
        media_type: "text/csv".into(),
        object_key: ObjectKey::parse("raw/census.csv").expect("key"),
        blake3,
    }
}

fn grant(org: Uuid, user: Uuid, default_limit: i64) -> GrantRequest {
    GrantRequest {
        org,
        slug: DatasetSlug::parse("census").expect("slug"),
        expires_in: Duration::from_secs(3600),
        grantee: Grantee::User {
            id: user,
            email: "reader@example.com".into(),
        },
        client_ip: None,
        default_limit,
        context: AuditContext::default(),
    }
}

#[tokio::test]
async fn publishing_hashes_the_bytes_and_the_catalog_lists_the_version() {
    let db = TestDb::new().await;
    let objects = objects().await;
    let wrong = Blake3Digest::parse(&blake3::hash(b"other").to_hex()).expect("digest");
    let refused = store::publish(
        &mut db.pool.get().await.expect("client"),
        objects.as_ref(),
        &publication(Some(wrong)),
    )
    .await;
    assert!(matches!(refused, Err(DatasetsError::DigestMismatch { .. })));
    let entry = store::publish(
        &mut db.pool.get().await.expect("client"),
        objects.as_ref(),
        &publication(None),
    )
    .await
    .expect("publish");
    assert_eq!(entry.blake3, blake3::hash(BYTES).to_hex().to_string());
    assert_eq!(entry.size, BYTES.len() as i64);
    let client = db.pool.get().await.expect("client");
    let listed = store::catalog(&client, None, Some("region"), 10)
        .await
        .expect("catalog");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].version, "2026.1");
}

/// Exactly the daily limit of racing grants succeed; every grant minted a receipt in a chain
/// that verifies; refusals wrote nothing.
#[tokio::test]
async fn racing_grants_take_exactly_the_quota() {
    let db = TestDb::new().await;
    let objects = objects().await;
    store::publish(
        &mut db.pool.get().await.expect("client"),
        objects.as_ref(),
        &publication(None),
    )
    .await
    .expect("publish");
    let (org, user) = (Uuid::new_v4(), Uuid::new_v4());
    let mut racers = Vec::new();
    for _ in 0..20 {
        let pool = db.pool.clone();
        racers.push(tokio::spawn(async move {
            store::grant(&mut pool.get().await.expect("client"), &grant(org, user, 7)).await
        }));
    }
    let mut granted = 0;
    let mut refused = 0;
    for r in racers {
        match r.await.expect("join") {
            Ok(_) => granted += 1,
            Err(DatasetsError::QuotaExhausted { .. }) => refused += 1,
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!((granted, refused), (7, 13));
    let client = db.pool.get().await.expect("client");
    let report = defendable_ledger::store::verify_org(&client, org)
        .await
        .expect("verify");
    assert!(report.failure.is_none());
    assert_eq!(report.checked, 7);
}
