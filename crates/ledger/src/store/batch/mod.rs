//! The batching appender: concurrent appends gathered into one statement (compare-and-set fast
//! path) or one transaction (locking path) per batch, tree nodes included.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use uuid::Uuid;

mod fast;
mod locking;

use fast::fast_batch;
use locking::commit_batch;

use super::append::{AppendOptions, Appended, Tree};
use super::{Head, Result};
use crate::receipt::{Draft, Hash};
use crate::LedgerError;

/// Called with the size of every batch an appender gathers.
pub type BatchObserver = Arc<dyn Fn(usize) + Send + Sync>;

struct Request {
    org: Uuid,
    draft: Draft,
    options: AppendOptions,
    reply: oneshot::Sender<Result<Appended>>,
}

/// Gathers concurrent appends into one transaction per batch. Organizations are spread over
/// `workers` queues by id, so one organization's appends are batched by one worker per process;
/// across processes the head lock keeps a single chain.
#[derive(Debug, Clone)]
pub struct BatchAppender {
    queues: Arc<Vec<mpsc::Sender<Request>>>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("org", &self.org)
            .finish_non_exhaustive()
    }
}

impl BatchAppender {
    /// Starts `workers` batching tasks on the current runtime, each committing at most
    /// `max_batch` receipts per transaction.
    pub fn start(pool: Pool, workers: usize, max_batch: usize) -> BatchAppender {
        Self::start_with(pool, workers, max_batch, Tree::Maintain, Arc::new(|_| {}))
    }

    /// [`BatchAppender::start`], calling `observe` with the size of every batch it gathers (a
    /// metrics hook: the embedding service decides what to do with it).
    pub fn start_observed(
        pool: Pool,
        workers: usize,
        max_batch: usize,
        observe: BatchObserver,
    ) -> BatchAppender {
        Self::start_with(pool, workers, max_batch, Tree::Maintain, observe)
    }

    /// Starts an appender that appends as the release before the Merkle tree did: receipts and
    /// heads only, the tree left to the integrator ([`super::integrate_all`]). The same-run
    /// baseline of `cargo xtask bench tree`; the server never uses it.
    #[doc(hidden)]
    pub fn start_without_tree(pool: Pool, workers: usize, max_batch: usize) -> BatchAppender {
        Self::start_with(pool, workers, max_batch, Tree::Skip, Arc::new(|_| {}))
    }

    fn start_with(
        pool: Pool,
        workers: usize,
        max_batch: usize,
        tree: Tree,
        observe: BatchObserver,
    ) -> BatchAppender {
        let workers = workers.max(1);
        let mut queues = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (tx, rx) = mpsc::channel(max_batch * 4);
            tokio::spawn(worker(
                pool.clone(),
                rx,
                max_batch.max(1),
                tree,
                observe.clone(),
            ));
            queues.push(tx);
        }
        BatchAppender {
            queues: Arc::new(queues),
        }
    }

    /// Appends a receipt; returns once it is committed.
    pub async fn append(
        &self,
        org: Uuid,
        draft: Draft,
        options: AppendOptions,
    ) -> Result<Appended> {
        let (reply, rx) = oneshot::channel();
        let queue = &self.queues[(org.as_u128() % self.queues.len() as u128) as usize];
        queue
            .send(Request {
                org,
                draft,
                options,
                reply,
            })
            .await
            .map_err(|_| LedgerError::AppenderStopped)?;
        rx.await.map_err(|_| LedgerError::AppenderStopped)?
    }
}

/// How many batches one worker keeps in flight at once, each on its own connection and its own
/// task (so batches are sealed side by side). Batches in flight together never share an
/// organization (a request for an organization in flight waits for the next batch), so they take
/// no row lock the other needs and commit side by side: while one batch waits for its statement
/// and its WAL flush, the next is sealed and sent.
const IN_FLIGHT: usize = 3;

/// A batch started while another is in flight waits until it has this many requests (or
/// `max_batch`), for at most [`HOLD`]: each statement has a fixed cost, and a slot that took
/// whatever had arrived would commit the load in many small batches. With nothing in flight a
/// batch starts at once, whatever its size.
const MIN_FILL: usize = 8;

/// The longest a request waits for a batch to fill while another batch is in flight (one stuck
/// batch never holds the other organizations back for longer).
const HOLD: Duration = Duration::from_millis(2);

/// What a batch in flight gives back: its organizations and their heads after it.
type Done = (HashSet<Uuid>, HashMap<Uuid, Head>);

async fn worker(
    pool: Pool,
    mut rx: mpsc::Receiver<Request>,
    max_batch: usize,
    tree: Tree,
    observe: BatchObserver,
) {
    // The heads this worker last saw, so a batch usually needs a single statement. Another
    // process may have moved a head since; the compare-and-set below notices and retries. A
    // batch in flight takes its organizations' heads out of the map and gives them back when it
    // ends.
    let mut heads: HashMap<Uuid, Head> = HashMap::new();
    // Organizations with a batch in flight, and the requests waiting for one of them (at most
    // `max_batch`: beyond that the channel fills and callers wait in `append`).
    let mut busy: HashSet<Uuid> = HashSet::new();
    let mut waiting: VecDeque<Request> = VecDeque::new();
    let mut running: FuturesUnordered<BoxFuture<'static, Done>> = FuturesUnordered::new();
    // When a small batch, held back to fill, starts anyway.
    let mut hold_until: Option<Instant> = None;
    let min_fill = MIN_FILL.min(max_batch);
    let mut open = true;
    loop {
        if running.len() < IN_FLIGHT {
            let mut batch = Vec::new();
            let mut held = VecDeque::new();
            for r in waiting.drain(..) {
                if batch.len() < max_batch && !busy.contains(&r.org) {
                    batch.push(r);
                } else {
                    held.push_back(r);
                }
            }
            waiting = held;
            while open && batch.len() < max_batch && waiting.len() < max_batch {
                match rx.try_recv() {
                    Ok(r) if busy.contains(&r.org) => waiting.push_back(r),
                    Ok(r) => batch.push(r),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => open = false,
                }
            }
            let filling = !running.is_empty()
                && batch.len() < min_fill
                && open
                && hold_until.is_none_or(|t| Instant::now() < t);
            if filling && !batch.is_empty() {
                // Back to the front, in order: none of them shares an organization with the
                // requests held behind them for being busy.
                hold_until.get_or_insert_with(|| Instant::now() + HOLD);
                for r in batch.into_iter().rev() {
                    waiting.push_front(r);
                }
            } else {
                hold_until = None;
                if !batch.is_empty() {
                    observe(batch.len());
                    if heads.len() > 100_000 {
                        heads.clear();
                    }
                    let orgs: HashSet<Uuid> = batch.iter().map(|r| r.org).collect();
                    let mut own: HashMap<Uuid, Head> = orgs
                        .iter()
                        .filter_map(|o| heads.remove(o).map(|h| (*o, h)))
                        .collect();
                    busy.extend(orgs.iter().copied());
                    let pool = pool.clone();
                    let task = tokio::spawn(async move {
                        run_batch(&pool, &mut own, batch, tree).await;
                        own
                    });
                    // A batch task that panicked or was cancelled frees its organizations; their
                    // heads are read again.
                    running.push(Box::pin(
                        async move { (orgs, task.await.unwrap_or_default()) },
                    ));
                    continue;
                }
            }
        }
        if !open && running.is_empty() {
            // Every sender is gone and nothing is in flight, so nothing waits either.
            return;
        }
        tokio::select! {
            Some((orgs, own)) = running.next(), if !running.is_empty() => {
                for o in &orgs {
                    busy.remove(o);
                }
                heads.extend(own);
            }
            r = rx.recv(), if open && running.len() < IN_FLIGHT && waiting.len() < max_batch => match r {
                Some(r) => waiting.push_back(r),
                None => open = false,
            },
            () = tokio::time::sleep_until(hold_until.unwrap_or_else(Instant::now)), if hold_until.is_some() && running.len() < IN_FLIGHT => {}
        }
    }
}

/// Commits one batch: the fast path first, the locking path for what it hands back. `heads`
/// holds the cached heads of the batch's organizations (and no others) and is kept current.
async fn run_batch(pool: &Pool, heads: &mut HashMap<Uuid, Head>, batch: Vec<Request>, tree: Tree) {
    let slow = fast_batch(pool, heads, batch, tree).await;
    if slow.is_empty() {
        return;
    }
    for r in &slow {
        heads.remove(&r.org);
    }
    if let Err((e, requests)) = commit_batch(pool, slow, tree).await {
        tracing::error!(error = %e, receipts = requests.len(), "ledger batch failed; nothing was committed");
        let message = e.to_string();
        let unavailable = matches!(&e, LedgerError::Store(s) if s.is_unavailable());
        for r in requests {
            let _ = r.reply.send(Err(if unavailable {
                LedgerError::Unavailable(message.clone())
            } else {
                LedgerError::BatchFailed(message.clone())
            }));
        }
    }
}

/// Reads (creating if needed) the heads of `orgs` into the cache, without locking.
pub(super) async fn load_heads(
    pool: &Pool,
    orgs: &[Uuid],
    heads: &mut HashMap<Uuid, Head>,
) -> Result<()> {
    let client = pool.get().await?;
    let create = client
        .prepare_cached(
            "INSERT INTO ledger_heads (org_id, seq, hash)
             SELECT o, -1, $2 FROM unnest($1::uuid[]) AS o ORDER BY o ON CONFLICT DO NOTHING",
        )
        .await?;
    client
        .execute(&create, &[&orgs, &Hash::GENESIS.to_hex()])
        .await?;
    let select = client
        .prepare_cached(&format!(
            "SELECT org_id, {} FROM ledger_heads WHERE org_id = ANY($1)",
            Head::COLUMNS
        ))
        .await?;
    for row in client.query(&select, &[&orgs]).await? {
        heads.insert(row.get(0), Head::from_row(&row, 1)?);
    }
    Ok(())
}
