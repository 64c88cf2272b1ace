//! Concurrency slots in PostgreSQL: at most `cap` pieces of work per scope at once, counted
//! across every server process. A slot is renewed while its work progresses; one not renewed
//! within its lease (its process died) no longer counts.

use std::time::Duration;

use deadpool_postgres::GenericClient;
use uuid::Uuid;

use crate::StoreError;

/// A held slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot(pub Uuid);

/// Takes a slot in `scope` unless `cap` live ones are held there already (then `None`).
/// Acquisitions in one scope are serialized by a transaction-scoped advisory lock, so racing
/// processes cannot both take the last slot. Needs a client outside any transaction.
pub async fn acquire(
    client: &mut deadpool_postgres::Client,
    scope: &str,
    cap: u32,
    lease: Duration,
) -> Result<Option<Slot>, StoreError> {
    let lease_secs = lease.as_secs_f64();
    let tx = client.transaction().await?;
    tx.execute(
        &tx.prepare_cached(
            "SELECT pg_advisory_xact_lock(hashtextextended('concurrency_slots:' || $1, 0))",
        )
        .await?,
        &[&scope],
    )
    .await?;
    tx.execute(
        &tx.prepare_cached(
            "DELETE FROM concurrency_slots
         WHERE scope = $1 AND renewed_at < now() - make_interval(secs => $2)",
        )
        .await?,
        &[&scope, &lease_secs],
    )
    .await?;
    let held: i64 = tx
        .query_one(
            &tx.prepare_cached("SELECT count(*) FROM concurrency_slots WHERE scope = $1")
                .await?,
            &[&scope],
        )
        .await?
        .get(0);
    if held >= i64::from(cap) {
        return Ok(None);
    }
    let id = Uuid::new_v4();
    tx.execute(
        &tx.prepare_cached("INSERT INTO concurrency_slots (id, scope) VALUES ($1, $2)")
            .await?,
        &[&id, &scope],
    )
    .await?;
    tx.commit().await?;
    Ok(Some(Slot(id)))
}

/// Marks the slot's work as still progressing.
pub async fn renew(client: &impl GenericClient, slot: Slot) -> Result<(), StoreError> {
    client
        .execute(
            &client
                .prepare_cached("UPDATE concurrency_slots SET renewed_at = now() WHERE id = $1")
                .await?,
            &[&slot.0],
        )
        .await?;
    Ok(())
}

/// Frees the slot.
pub async fn release(client: &impl GenericClient, slot: Slot) -> Result<(), StoreError> {
    client
        .execute(
            &client
                .prepare_cached("DELETE FROM concurrency_slots WHERE id = $1")
                .await?,
            &[&slot.0],
        )
        .await?;
    Ok(())
}
