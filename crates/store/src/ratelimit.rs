//! Fixed-window rate-limit counters in PostgreSQL, so every server process counts together.
//! One statement counts a request against all of its buckets at once.

use deadpool_postgres::GenericClient;
use time::OffsetDateTime;

use crate::StoreError;

/// One bucket to count a request in.
#[derive(Debug, Clone)]
pub struct Bucket {
    /// The bucket name (rule id and a digest of the key value; never a raw secret).
    pub name: String,
    /// Window length in seconds.
    pub window_secs: i64,
}

/// A bucket's count after this request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count {
    /// Requests in the current window, this one included.
    pub hits: i64,
    /// Seconds until the window ends (at least 1).
    pub reset_secs: i64,
}

/// Counts one request in every bucket; returns the counts in the same order.
pub async fn hit(
    client: &impl GenericClient,
    buckets: &[Bucket],
) -> Result<Vec<Count>, StoreError> {
    if buckets.is_empty() {
        return Ok(Vec::new());
    }
    let names: Vec<&str> = buckets.iter().map(|b| b.name.as_str()).collect();
    let windows: Vec<i64> = buckets.iter().map(|b| b.window_secs.max(1)).collect();
    let statement = client
        .prepare_cached(
            "INSERT INTO rate_limit_counters (bucket, window_start, hits)
             SELECT b, to_timestamp(floor(extract(epoch FROM now()) / w) * w), 1
             FROM unnest($1::text[], $2::bigint[]) AS t(b, w)
             ON CONFLICT (bucket) DO UPDATE SET
                 hits = CASE WHEN rate_limit_counters.window_start = EXCLUDED.window_start
                             THEN rate_limit_counters.hits + 1 ELSE 1 END,
                 window_start = EXCLUDED.window_start
             RETURNING bucket, hits, window_start, now()",
        )
        .await?;
    let rows = client.query(&statement, &[&names, &windows]).await?;
    let mut out = Vec::with_capacity(buckets.len());
    for b in buckets {
        let row = rows
            .iter()
            .find(|r| r.get::<_, &str>(0) == b.name)
            .ok_or_else(|| StoreError::Invalid {
                what: "rate limit",
                why: "bucket missing from the count".into(),
            })?;
        let start: OffsetDateTime = row.get(2);
        let now: OffsetDateTime = row.get(3);
        let reset = (start + time::Duration::seconds(b.window_secs) - now)
            .whole_seconds()
            .max(1);
        out.push(Count {
            hits: row.get(1),
            reset_secs: reset,
        });
    }
    Ok(out)
}

/// Deletes counters whose window ended more than `older_than_secs` ago; keeps the table bounded.
pub async fn prune(client: &impl GenericClient, older_than_secs: i64) -> Result<u64, StoreError> {
    Ok(client
        .execute(
            &client.prepare_cached("DELETE FROM rate_limit_counters WHERE window_start < now() - make_interval(secs => $1)").await?,
            &[&(older_than_secs as f64)],
        )
        .await?)
}
