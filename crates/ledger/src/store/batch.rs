//! The batching appender: concurrent appends gathered into one statement (compare-and-set fast
//! path) or one transaction (locking path) per batch, tree nodes included.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Pool, Transaction};
use defendable_store::audit::{log_batch_recorded, record, AuditColumns};
use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use uuid::Uuid;

use super::append::{
    head_columns, insert_sealed, lock_and_catch_up, seal_next, AppendOptions, Appended, Columns,
    Tree,
};
use super::reads::get_by_seq;
use super::tree::NodeRows;
use super::{Head, Result, StoredReceipt};
use crate::receipt::{Draft, Hash, Sealed};
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
async fn load_heads(pool: &Pool, orgs: &[Uuid], heads: &mut HashMap<Uuid, Head>) -> Result<()> {
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

/// The fast path: seal against the cached heads and commit every organization's receipts in one
/// statement that moves each head only if it is still where the cache says (compare-and-set)
/// and inserts, for the heads it moved, the receipts, their tree nodes, their audit events and
/// their idempotency keys. The statement is its own transaction, so a receipt, its audit event
/// and its key commit together or not at all. Organizations whose head moved elsewhere are
/// re-read and retried; what still fails after a few rounds is returned for the locking path,
/// and so are the requests whose key repeats within the batch, and the whole attempt when a key
/// turns out to exist already (a retry across batches or processes: the insert's unique
/// violation undoes the statement, and the locking path answers with the first receipt).
async fn fast_batch(
    pool: &Pool,
    heads: &mut HashMap<Uuid, Head>,
    requests: Vec<Request>,
    tree: Tree,
) -> Vec<Request> {
    let mut pending = requests;
    let mut locking = Vec::new();
    for _round in 0..4 {
        let mut unknown: Vec<Uuid> = pending
            .iter()
            .map(|r| r.org)
            .filter(|o| !heads.contains_key(o))
            .collect();
        unknown.sort();
        unknown.dedup();
        if !unknown.is_empty() {
            if let Err(e) = load_heads(pool, &unknown, heads).await {
                tracing::warn!(error = %e, "could not read ledger heads; using the locking path");
                locking.append(&mut pending);
                return locking;
            }
        }
        // A tree that lags its chain (receipts from an older release) is caught up under the
        // head lock, and a key repeated within the batch must answer its second request with
        // the first one's receipt: both take the locking path.
        let mut key_uses: HashMap<(Uuid, &str), usize> = HashMap::new();
        for r in &pending {
            if let Some((key, _)) = &r.options.idempotency {
                *key_uses.entry((r.org, key.as_str())).or_insert(0) += 1;
            }
        }
        let repeated: HashSet<(Uuid, String)> = key_uses
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|((org, key), _)| (org, key.to_owned()))
            .collect();
        let (fast, slow): (Vec<Request>, Vec<Request>) = pending.drain(..).partition(|r| {
            (tree == Tree::Skip || heads[&r.org].tree_complete())
                && r.options
                    .idempotency
                    .as_ref()
                    .is_none_or(|(key, _)| !repeated.contains(&(r.org, key.clone())))
        });
        locking.extend(slow);
        // Seal against the cache, chaining within the batch and extending the tree.
        let start: HashMap<Uuid, Head> = fast
            .iter()
            .map(|r| (r.org, heads[&r.org].clone()))
            .collect();
        let mut tip = start.clone();
        let mut nodes = NodeRows::default();
        let now = OffsetDateTime::now_utc();
        let mut sealed = Vec::with_capacity(fast.len());
        let mut placed = Vec::with_capacity(fast.len());
        let mut extras = Extras::default();
        for r in fast {
            // A bad request fails alone, before it takes a place in the chain.
            if let Some(event) = &r.options.audit {
                if !event.details.is_object() {
                    let _ = r.reply.send(Err(LedgerError::Store(
                        defendable_store::StoreError::Invalid {
                            what: "audit details",
                            why: "must be a JSON object".into(),
                        },
                    )));
                    continue;
                }
            }
            let head = tip.get_mut(&r.org).expect("in start");
            match seal_next(r.org, head, now, r.draft.clone(), &mut nodes, tree) {
                Ok(s) => {
                    extras.add(&r, &s);
                    sealed.push(s);
                    placed.push(r);
                }
                Err(e) => {
                    let _ = r.reply.send(Err(e));
                }
            }
        }
        if sealed.is_empty() {
            return locking;
        }
        let moved = match compare_and_append(pool, &start, &tip, &sealed, &nodes, &extras).await {
            Ok(m) => m,
            Err(e) => {
                // A key that exists already, a deadlock with another process or a lost
                // connection: nothing committed (or unknown); the locking path decides.
                if is_unique_violation(&e) {
                    tracing::debug!(error = %e, "an idempotency key exists; using the locking path");
                } else {
                    tracing::warn!(error = %e, "compare-and-append failed; using the locking path");
                }
                for r in &placed {
                    heads.remove(&r.org);
                }
                locking.extend(placed);
                return locking;
            }
        };
        for (r, s) in placed.into_iter().zip(sealed) {
            if moved.contains(&r.org) {
                if let Some(event) = &r.options.audit {
                    let mut event = event.clone();
                    event.target = Some(s.id.clone());
                    log_batch_recorded([&event]);
                }
                let _ = r.reply.send(Ok(Appended::New(StoredReceipt::from(&s))));
            } else {
                pending.push(r);
            }
        }
        for (org, head) in tip {
            if moved.contains(&org) {
                heads.insert(org, head);
            } else {
                heads.remove(&org);
            }
        }
        if pending.is_empty() {
            return locking;
        }
    }
    locking.append(&mut pending);
    locking
}

/// What a fast batch writes beside its receipts: the audit events and idempotency keys of its
/// requests, as column arrays, each row tagged with the organization whose head must move for
/// it to be written.
#[derive(Default)]
struct Extras {
    audit_org: Vec<Uuid>,
    audit: AuditColumns,
    key_org: Vec<Uuid>,
    key: Vec<String>,
    fingerprint: Vec<String>,
    key_seq: Vec<i64>,
}

impl Extras {
    fn add(&mut self, r: &Request, sealed: &Sealed) {
        if let Some(event) = &r.options.audit {
            let mut event = event.clone();
            event.target = Some(sealed.id.clone());
            if self.audit.push(&event).is_ok() {
                self.audit_org.push(r.org);
            }
        }
        if let Some((key, fingerprint)) = &r.options.idempotency {
            self.key_org.push(r.org);
            self.key.push(key.clone());
            self.fingerprint.push(fingerprint.clone());
            self.key_seq.push(sealed.seq as i64);
        }
    }
}

fn is_unique_violation(e: &LedgerError) -> bool {
    match e {
        LedgerError::Store(defendable_store::StoreError::Postgres(pg)) => {
            pg.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
        }
        _ => false,
    }
}

/// One statement: move each head (chain and tree) from `start` to `tip` if it is still at
/// `start`, and insert the sealed receipts, tree nodes, audit events and idempotency keys of the
/// organizations whose head moved. Returns those organizations.
async fn compare_and_append(
    pool: &Pool,
    start: &HashMap<Uuid, Head>,
    tip: &HashMap<Uuid, Head>,
    sealed: &[Sealed],
    nodes: &NodeRows,
    extras: &Extras,
) -> Result<HashSet<Uuid>> {
    let mut orgs: Vec<Uuid> = start.keys().copied().collect();
    orgs.sort();
    let (_, old_seq, old_hash, old_size, _) = head_columns(orgs.iter().map(|o| (o, &start[o])));
    let (_, new_seq, new_hash, new_size, new_edge) =
        head_columns(orgs.iter().map(|o| (o, &tip[o])));
    let cols = Columns::of(sealed);
    let client = pool.get().await?;
    // Prepared once per connection: the hot path then costs one round trip. `h.org_id = ANY($1)`
    // beside the join keeps the heads an index lookup: joined to the unnested columns alone,
    // the plan made for a small or fresh table is a hash join over a sequential scan of every
    // head, a cost that grows with the organizations and their dead head versions.
    let statement = client
        .prepare_cached(
            "WITH n AS (
                 SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::bigint[], $5::text[],
                                      $6::bigint[], $7::bigint[], $8::bytea[])
                     AS n(org_id, old_seq, old_hash, new_seq, new_hash, old_size, new_size, new_edge)
             ), moved AS (
                 UPDATE ledger_heads h
                    SET seq = n.new_seq, hash = n.new_hash, tree_size = n.new_size, tree_edge = n.new_edge
                 FROM n WHERE h.org_id = ANY($1) AND h.org_id = n.org_id AND h.seq = n.old_seq
                          AND h.hash = n.old_hash AND h.tree_size = n.old_size
                 RETURNING h.org_id
             ), ins AS (
                 INSERT INTO receipts (org_id, seq, receipt_id, hash, parent, kind, created_at, canonical, private, salt)
                 SELECT r.* FROM unnest($9::uuid[], $10::bigint[], $11::text[], $12::text[], $13::text[], $14::text[],
                                        $15::timestamptz[], $16::bytea[], $17::jsonb[], $18::bytea[])
                     AS r(org_id, seq, receipt_id, hash, parent, kind, created_at, canonical, private, salt)
                 WHERE r.org_id IN (SELECT org_id FROM moved)
                 RETURNING 1
             ), nodes AS (
                 INSERT INTO ledger_nodes (org_id, level, idx, hash)
                 SELECT x.* FROM unnest($19::uuid[], $20::smallint[], $21::bigint[], $22::bytea[])
                     AS x(org_id, level, idx, hash)
                 WHERE x.org_id IN (SELECT org_id FROM moved)
                 RETURNING 1
             ), audits AS (
                 INSERT INTO audit_events
                     (action, actor_kind, actor_id, org_id, target, request_id, ip, user_agent, details)
                 SELECT a.action, a.actor_kind, a.actor_id, a.org_id, a.target, a.request_id, a.ip,
                        a.user_agent, a.details
                 FROM unnest($23::uuid[], $24::text[], $25::text[], $26::uuid[], $27::uuid[], $28::text[],
                             $29::text[], $30::inet[], $31::text[], $32::jsonb[])
                     AS a(for_org, action, actor_kind, actor_id, org_id, target, request_id, ip, user_agent, details)
                 WHERE a.for_org IN (SELECT org_id FROM moved)
                 RETURNING 1
             ), keys AS (
                 INSERT INTO receipt_idempotency (org_id, key, request_hash, seq)
                 SELECT k.* FROM unnest($33::uuid[], $34::text[], $35::text[], $36::bigint[])
                     AS k(org_id, key, request_hash, seq)
                 WHERE k.org_id IN (SELECT org_id FROM moved)
                 RETURNING 1
             )
             SELECT org_id FROM moved",
        )
        .await?;
    let rows = client
        .query(
            &statement,
            &[
                &orgs,
                &old_seq,
                &old_hash,
                &new_seq,
                &new_hash,
                &old_size,
                &new_size,
                &new_edge,
                &cols.org,
                &cols.seq,
                &cols.id,
                &cols.hash,
                &cols.parent,
                &cols.kind,
                &cols.created,
                &cols.canonical,
                &cols.private,
                &cols.salt,
                &nodes.org,
                &nodes.level,
                &nodes.idx,
                &nodes.hash,
                &extras.audit_org,
                &extras.audit.action,
                &extras.audit.actor_kind,
                &extras.audit.actor_id,
                &extras.audit.org_id,
                &extras.audit.target,
                &extras.audit.request_id,
                &extras.audit.ip,
                &extras.audit.user_agent,
                &extras.audit.details,
                &extras.key_org,
                &extras.key,
                &extras.fingerprint,
                &extras.key_seq,
            ],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Outcome of one request inside a batch, known before commit.
enum Outcome {
    New(usize),
    Existing(StoredReceipt),
    Refused(LedgerError),
}

/// Commits one batch. On failure nothing is committed and the requests come back for an error
/// reply; on success every request is answered.
async fn commit_batch(
    pool: &Pool,
    requests: Vec<Request>,
    tree: Tree,
) -> std::result::Result<(), (LedgerError, Vec<Request>)> {
    let mut client = match pool.get().await {
        Ok(c) => c,
        Err(e) => return Err((e.into(), requests)),
    };
    let tx = match client.transaction().await {
        Ok(t) => t,
        Err(e) => return Err((e.into(), requests)),
    };
    let mut requests = requests;
    let outcomes = match stage_batch(&tx, &mut requests, tree).await {
        Ok(o) => o,
        Err(e) => return Err((e, requests)),
    };
    let (outcomes, sealed) = outcomes;
    if let Err(e) = tx.commit().await {
        return Err((e.into(), requests));
    }
    for (r, outcome) in requests.into_iter().zip(outcomes) {
        let reply = match outcome {
            Outcome::New(i) => Ok(Appended::New(StoredReceipt::from(&sealed[i]))),
            Outcome::Existing(s) => Ok(Appended::Existing(s)),
            Outcome::Refused(e) => Err(e),
        };
        let _ = r.reply.send(reply);
    }
    Ok(())
}

async fn stage_batch(
    tx: &Transaction<'_>,
    requests: &mut [Request],
    tree: Tree,
) -> Result<(Vec<Outcome>, Vec<Sealed>)> {
    let mut orgs: Vec<Uuid> = requests.iter().map(|r| r.org).collect();
    orgs.sort();
    orgs.dedup();
    let mut nodes = NodeRows::default();
    let mut heads = lock_and_catch_up(tx, &orgs, &mut nodes, tree).await?;
    let now = OffsetDateTime::now_utc();
    let mut outcomes = Vec::with_capacity(requests.len());
    let mut sealed: Vec<Sealed> = Vec::with_capacity(requests.len());
    let mut keyed: Vec<(Uuid, String, i64)> = Vec::new();
    // Keys already used earlier in this batch: their row exists but has no seq until the end.
    let mut batch_keys: HashMap<(Uuid, String), (String, Option<usize>)> = HashMap::new();
    for r in requests.iter_mut() {
        if let Some((key, fingerprint)) = &r.options.idempotency {
            if let Some((fp, index)) = batch_keys.get(&(r.org, key.clone())) {
                outcomes.push(match index {
                    Some(i) if fp == fingerprint => {
                        Outcome::Existing(StoredReceipt::from(&sealed[*i]))
                    }
                    _ => Outcome::Refused(LedgerError::IdempotencyConflict),
                });
                continue;
            }
            let fresh = tx
                .query_opt(
                    &tx.prepare_cached("INSERT INTO receipt_idempotency (org_id, key, request_hash) VALUES ($1, $2, $3)
                     ON CONFLICT DO NOTHING RETURNING 1").await?,
                    &[&r.org, key, fingerprint],
                )
                .await?
                .is_some();
            if !fresh {
                let row = tx
                    .query_one(
                        &tx.prepare_cached("SELECT request_hash, seq FROM receipt_idempotency WHERE org_id = $1 AND key = $2").await?,
                        &[&r.org, key],
                    )
                    .await?;
                let (stored_fp, seq): (String, Option<i64>) = (row.get(0), row.get(1));
                let outcome = match seq {
                    Some(seq) if &stored_fp == fingerprint => {
                        let existing = match sealed
                            .iter()
                            .find(|s| s.org == r.org && s.seq as i64 == seq)
                        {
                            Some(s) => StoredReceipt::from(s),
                            None => get_by_seq(tx, r.org, seq as u64)
                                .await?
                                .ok_or(LedgerError::IdempotencyConflict)?,
                        };
                        Outcome::Existing(existing)
                    }
                    _ => Outcome::Refused(LedgerError::IdempotencyConflict),
                };
                outcomes.push(outcome);
                continue;
            }
        }
        let head = heads.get_mut(&r.org).expect("locked above");
        match seal_next(r.org, head, now, r.draft.clone(), &mut nodes, tree) {
            Ok(s) => {
                if let Some((key, fingerprint)) = &r.options.idempotency {
                    keyed.push((r.org, key.clone(), s.seq as i64));
                    batch_keys.insert(
                        (r.org, key.clone()),
                        (fingerprint.clone(), Some(sealed.len())),
                    );
                }
                outcomes.push(Outcome::New(sealed.len()));
                sealed.push(s);
            }
            Err(e) => {
                if let Some((key, fingerprint)) = &r.options.idempotency {
                    batch_keys.insert((r.org, key.clone()), (fingerprint.clone(), None));
                }
                outcomes.push(Outcome::Refused(e));
            }
        }
    }
    insert_sealed(tx, &sealed, &nodes, &heads).await?;
    for (org, key, seq) in keyed {
        tx.execute(
            &tx.prepare_cached(
                "UPDATE receipt_idempotency SET seq = $3 WHERE org_id = $1 AND key = $2",
            )
            .await?,
            &[&org, &key, &seq],
        )
        .await?;
    }
    for (r, outcome) in requests.iter().zip(&outcomes) {
        if let (Some(event), Outcome::New(i)) = (&r.options.audit, outcome) {
            let mut event = event.clone();
            event.target = Some(sealed[*i].id.clone());
            record(tx, &event).await?;
        }
    }
    Ok((outcomes, sealed))
}
