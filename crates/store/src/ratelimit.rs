//! Fixed-window rate-limit counters in PostgreSQL, so every server process counts together.
//! One statement counts a request against all of its buckets at once; a [`Counter`] counts
//! concurrent requests together in one statement.

use std::collections::BTreeMap;

use deadpool_postgres::{GenericClient, Pool};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

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
    Ok(hit_many(client, &[buckets])
        .await?
        .pop()
        .unwrap_or_default())
}

/// Counts several requests, each in its own buckets, in one statement; returns each request's
/// counts in its buckets' order. Requests that share a bucket are counted as if one after the
/// other, in the order given: the first sees the bucket's earlier count plus one, the next
/// plus two, and so on, so no two requests see the same count.
pub async fn hit_many(
    client: &impl GenericClient,
    requests: &[&[Bucket]],
) -> Result<Vec<Vec<Count>>, StoreError> {
    // One row per distinct bucket, with how many of these requests it counts, in name order:
    // every statement locks the rows it updates in the same order, so two processes' batches
    // never deadlock on each other's buckets.
    let mut tallies: BTreeMap<&str, Tally> = BTreeMap::new();
    for b in requests.iter().flat_map(|r| r.iter()) {
        tallies
            .entry(b.name.as_str())
            .or_insert(Tally {
                window: b.window_secs.max(1),
                added: 0,
                counted: None,
            })
            .added += 1;
    }
    if tallies.is_empty() {
        return Ok(requests.iter().map(|_| Vec::new()).collect());
    }
    let names: Vec<&str> = tallies.keys().copied().collect();
    let windows: Vec<i64> = tallies.values().map(|t| t.window).collect();
    let added: Vec<i64> = tallies.values().map(|t| t.added).collect();
    let statement = client
        .prepare_cached(
            "INSERT INTO rate_limit_counters (bucket, window_start, hits)
             SELECT b, to_timestamp(floor(extract(epoch FROM now()) / w) * w), n
             FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS t(b, w, n)
             ON CONFLICT (bucket) DO UPDATE SET
                 hits = CASE WHEN rate_limit_counters.window_start = EXCLUDED.window_start
                             THEN rate_limit_counters.hits + EXCLUDED.hits ELSE EXCLUDED.hits END,
                 window_start = EXCLUDED.window_start
             RETURNING bucket, hits, window_start, now()",
        )
        .await?;
    let rows = client
        .query(&statement, &[&names, &windows, &added])
        .await?;
    // Each bucket's count before these requests, and its reset; then handed out in order.
    for row in &rows {
        let Some(t) = tallies.get_mut(row.get::<_, &str>(0)) else {
            continue;
        };
        let (hits, start, now): (i64, OffsetDateTime, OffsetDateTime) =
            (row.get(1), row.get(2), row.get(3));
        let reset = (start + time::Duration::seconds(t.window) - now)
            .whole_seconds()
            .max(1);
        t.counted = Some((hits - t.added, reset));
    }
    let mut out = Vec::with_capacity(requests.len());
    for request in requests {
        let mut counts = Vec::with_capacity(request.len());
        for b in request.iter() {
            let (hits, reset_secs) = tallies
                .get_mut(b.name.as_str())
                .and_then(|t| t.counted.as_mut())
                .ok_or_else(|| StoreError::Invalid {
                    what: "rate limit",
                    why: "bucket missing from the count".into(),
                })?;
            *hits += 1;
            counts.push(Count {
                hits: *hits,
                reset_secs: *reset_secs,
            });
        }
        out.push(counts);
    }
    Ok(out)
}

/// One bucket of a [`hit_many`] statement: its window, how many requests it counts, and once
/// counted, the next count to hand out (less one) and the seconds until its window resets.
struct Tally {
    window: i64,
    added: i64,
    counted: Option<(i64, i64)>,
}

/// Counts requests in batches: what arrives while a statement is in flight is counted by the
/// next one ([`hit_many`]), so a busy route costs PostgreSQL one write transaction per batch
/// rather than per request. Counts stay exact and shared by every process: each statement
/// adds its requests to the counters in the database.
///
/// A caller must not hold a pooled connection while it waits: the counter takes one from the
/// pool for each batch.
#[derive(Debug, Clone)]
pub struct Counter {
    queue: mpsc::Sender<Pending>,
}

struct Pending {
    buckets: Vec<Bucket>,
    reply: oneshot::Sender<Result<Vec<Count>, StoreError>>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("buckets", &self.buckets)
            .finish_non_exhaustive()
    }
}

impl Counter {
    /// Starts the counting task on the current runtime; each statement counts at most
    /// `max_batch` requests.
    pub fn start(pool: Pool, max_batch: usize) -> Counter {
        let max_batch = max_batch.max(1);
        let (queue, rx) = mpsc::channel(max_batch * 4);
        tokio::spawn(count_batches(pool, rx, max_batch));
        Counter { queue }
    }

    /// Counts one request in every bucket; returns the counts in the same order.
    pub async fn hit(&self, buckets: Vec<Bucket>) -> Result<Vec<Count>, StoreError> {
        if buckets.is_empty() {
            return Ok(Vec::new());
        }
        let stopped = || StoreError::Shared {
            message: "the rate-limit counter stopped".into(),
            unavailable: true,
        };
        let (reply, rx) = oneshot::channel();
        self.queue
            .send(Pending { buckets, reply })
            .await
            .map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }
}

async fn count_batches(pool: Pool, mut rx: mpsc::Receiver<Pending>, max_batch: usize) {
    let mut batch: Vec<Pending> = Vec::with_capacity(max_batch);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let requests: Vec<&[Bucket]> = batch.iter().map(|p| p.buckets.as_slice()).collect();
        let counted = match pool.get().await {
            Ok(client) => hit_many(&client, &requests).await,
            Err(e) => Err(e.into()),
        };
        match counted {
            Ok(counts) => {
                for (p, c) in batch.drain(..).zip(counts) {
                    let _ = p.reply.send(Ok(c));
                }
            }
            Err(e) => {
                let (message, unavailable) = (e.to_string(), e.is_unavailable());
                for p in batch.drain(..) {
                    let _ = p.reply.send(Err(StoreError::Shared {
                        message: message.clone(),
                        unavailable,
                    }));
                }
            }
        }
    }
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
