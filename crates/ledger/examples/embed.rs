//! Embedding the ledger in another service: its own pool, its own migration history table,
//! receipts appended inside its own transactions, verification and a signed checkpoint.
//!
//! Run with `DATABASE_URL=postgres://… cargo run -p defendable-ledger --example embed`
//! (an empty database is best: the example creates the ledger's tables in it).

#![allow(clippy::print_stdout)]

use defendable_ledger::checkpoint::verify_checkpoint;
use defendable_ledger::store;
use defendable_ledger::{Checkpoint, Draft, ReceiptKind, SigningKey};
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("DATABASE_URL")
        .map_err(|_| "set DATABASE_URL to an (empty) PostgreSQL database")?;
    let pool = defendable_store::pool(&url, 4)?;

    // 1. The ledger's tables, tracked in `defendable_ledger_schema_history`.
    store::migrate(&pool).await?;

    // 2. A business write and its receipt in one transaction of the host service.
    let org = Uuid::new_v4();
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS deployments (id serial PRIMARY KEY, version text NOT NULL)",
    )
    .await?;
    tx.execute("INSERT INTO deployments (version) VALUES ($1)", &[&"1.4.2"])
        .await?;
    let receipt = store::append_in(
        &tx,
        org,
        Draft::new(
            ReceiptKind::parse("deploy")?,
            json!({"service": "billing", "version": "1.4.2"}),
            Some(json!({"operator": "ops@example.com"})),
        )?,
    )
    .await?;
    tx.commit().await?;
    println!("appended {} (hash {})", receipt.id, receipt.hash);

    // 3. Verify the chain from storage, link by link.
    let report = store::verify_org(&client, org).await?;
    println!(
        "verified {} receipt(s); failure: {:?}",
        report.checked, report.failure
    );

    // 4. Sign a checkpoint of the head and check it as an outsider would.
    let (key, _pkcs8) = SigningKey::generate()?;
    let (seq, head) = store::head(&client, org).await?;
    let signed = key.sign(Checkpoint::new(org, seq, head, OffsetDateTime::now_utc()))?;
    verify_checkpoint(&signed, std::slice::from_ref(key.public_key()))?;
    println!("{}", serde_json::to_string_pretty(&signed)?);
    Ok(())
}
