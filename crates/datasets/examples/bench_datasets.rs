//! Dataset grant benchmark (run with `cargo xtask bench datasets`).
//!
//! Prints, from one run on one fresh durable database: grants/s and latency with 32 concurrent
//! members of one organization (each grant: quota unit, grant row, `dataset.download` receipt,
//! share link and audit event in one transaction), beside the bare in-transaction receipt append
//! on the same organization as a baseline; and the cost of minting a signed object URL, locally
//! (HMAC) and on S3 (presigned, computed offline).

#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use defendable_datasets::signed_url::UrlSigner;
use defendable_datasets::store::{self, GrantRequest, Grantee, Publication};
use defendable_datasets::{DatasetSlug, DatasetVersion, ObjectKey};
use defendable_ledger::{Draft, ReceiptKind};
use defendable_store::audit::AuditContext;
use defendable_testkit::bench::{drive, durable_database, row};
use object_store::signer::Signer;
use object_store::ObjectStoreExt as _;
use serde_json::json;
use uuid::Uuid;

const WRITERS: usize = 32;
const RUN: Duration = Duration::from_secs(5);

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}

async fn run() {
    let (db, origin) = durable_database().await;
    println!("database: fresh database on {origin}; {WRITERS} concurrent members of one org; {} s per row\n", RUN.as_secs());
    let objects = object_store::memory::InMemory::new();
    objects
        .put(
            &object_store::path::Path::from("raw/census.csv"),
            vec![7u8; 4096].into(),
        )
        .await
        .expect("put");
    let publication = Publication {
        slug: DatasetSlug::parse("census").expect("slug"),
        title: "Census".into(),
        description: String::new(),
        version: DatasetVersion::parse("2026.1").expect("version"),
        license: "CC0-1.0".into(),
        media_type: "text/csv".into(),
        object_key: ObjectKey::parse("raw/census.csv").expect("key"),
        blake3: None,
    };
    store::publish(
        &mut db.pool.get().await.expect("client"),
        &objects,
        &publication,
    )
    .await
    .expect("publish");

    // Baseline: the bare receipt append inside a transaction, same org shape.
    let base_org = Uuid::new_v4();
    let pool = db.pool.clone();
    let (n, t, lat) = drive(WRITERS, RUN, move |_, i| {
        let pool = pool.clone();
        async move {
            let mut c = pool.get().await.expect("c");
            let tx = c.transaction().await.expect("tx");
            let draft = Draft::new(
                ReceiptKind::parse("dataset.download").expect("kind"),
                json!({"i": i}),
                None,
            )
            .expect("draft");
            defendable_ledger::store::append_in(&tx, base_org, draft)
                .await
                .expect("append");
            tx.commit().await.expect("commit");
        }
    })
    .await;
    row("baseline: receipt append in its own transaction", n, t, lat);

    let org = Uuid::new_v4();
    let pool = db.pool.clone();
    let (n, t, lat) = drive(WRITERS, RUN, move |w, _| {
        let pool = pool.clone();
        async move {
            let req = GrantRequest {
                org,
                slug: DatasetSlug::parse("census").expect("slug"),
                expires_in: Duration::from_secs(86_400),
                grantee: Grantee::User {
                    id: Uuid::from_u128(w as u128 + 1),
                    email: format!("m{w}@example.com"),
                },
                client_ip: Some("203.0.113.7".parse().expect("ip")),
                default_limit: i64::from(i32::MAX),
                context: AuditContext::default(),
            };
            store::grant(&mut pool.get().await.expect("client"), &req)
                .await
                .expect("grant");
        }
    })
    .await;
    row(
        "grants: quota + receipt + share + audit, one org",
        n,
        t,
        lat,
    );

    // Minting a signed URL.
    let signer = UrlSigner::new(b"bench-url-key-bench-url-key-bench", None);
    let started = Instant::now();
    let rounds = 200_000;
    for i in 0..rounds {
        std::hint::black_box(signer.sign("raw/census.csv", 1_900_000_000 + i));
    }
    let per = started.elapsed().as_secs_f64() / rounds as f64;
    println!(
        "\n{:<52} {:>10.2} µs each",
        "signed URL, local HMAC",
        per * 1e6
    );
    let s3 = Arc::new(
        object_store::aws::AmazonS3Builder::new()
            .with_bucket_name("datasets")
            .with_region("us-east-1")
            .with_access_key_id("AKIDEXAMPLE")
            .with_secret_access_key("secret")
            .build()
            .expect("s3"),
    );
    let path = object_store::path::Path::from("raw/census.csv");
    let started = Instant::now();
    let rounds = 20_000;
    for _ in 0..rounds {
        std::hint::black_box(
            s3.signed_url(reqwest::Method::GET, &path, Duration::from_secs(900))
                .await
                .expect("presign"),
        );
    }
    let per = started.elapsed().as_secs_f64() / rounds as f64;
    println!(
        "{:<52} {:>10.2} µs each",
        "signed URL, S3 presign (SigV4, offline)",
        per * 1e6
    );
}
