//! Embedded refinery migrations from the workspace's `migrations/` directory.

use deadpool_postgres::Pool;

use crate::StoreError;

mod embedded {
    refinery::embed_migrations!("../../migrations");
}

/// A lock id shared by every process that migrates, so concurrent boots apply migrations once.
const MIGRATION_LOCK: i64 = 0x0def_e0da_b1e0_0001;

/// Applies every pending migration, serialized across processes by an advisory lock.
pub async fn migrate(pool: &Pool) -> Result<(), StoreError> {
    let mut client = pool.get().await?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let client_ref: &mut tokio_postgres::Client = &mut client;
    let result = embedded::migrations::runner()
        .set_abort_divergent(true)
        .run_async(client_ref)
        .await;
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await?;
    result?;
    Ok(())
}

/// Applies the embedded migrations up to and including `version` only: the schema an earlier
/// release ran on (tests of expand/contract migrations use it).
pub async fn migrate_to(pool: &Pool, version: u32) -> Result<(), StoreError> {
    let mut client = pool.get().await?;
    let client_ref: &mut tokio_postgres::Client = &mut client;
    embedded::migrations::runner()
        .set_target(refinery::Target::Version(version))
        .run_async(client_ref)
        .await?;
    Ok(())
}

/// The newest migration version embedded in this binary.
pub fn latest_version() -> i64 {
    embedded::migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| i64::from(m.version()))
        .max()
        .unwrap_or(0)
}

/// The embedded migrations: version, name and refinery checksum, in order.
pub fn embedded_migrations() -> Vec<(i64, String, String)> {
    embedded::migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| {
            (
                i64::from(m.version()),
                m.name().to_owned(),
                m.checksum().to_string(),
            )
        })
        .collect()
}

/// The newest migration version applied to the database, if any.
pub async fn schema_version(
    client: &impl deadpool_postgres::GenericClient,
) -> Result<Option<i64>, StoreError> {
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('refinery_schema_history') IS NOT NULL",
            &[],
        )
        .await?
        .get(0);
    if !exists {
        return Ok(None);
    }
    let row = client
        .query_one(
            "SELECT MAX(version)::bigint FROM refinery_schema_history",
            &[],
        )
        .await?;
    Ok(row.get(0))
}

/// A fingerprint of the embedded migrations (names and checksums), so a cached migrated
/// template database is rebuilt whenever a migration changes.
pub fn migrations_fingerprint() -> String {
    let mut acc = String::new();
    for m in embedded::migrations::runner().get_migrations() {
        acc.push_str(&format!("{}:{}:{};", m.version(), m.name(), m.checksum()));
    }
    // FNV-1a is enough to name a cache entry; this is not a security boundary.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in acc.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}
