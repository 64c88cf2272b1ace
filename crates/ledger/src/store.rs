//! The PostgreSQL store: receipts with their canonical bytes, a head row per organization, and
//! two append paths with one chain rule.
//!
//! The chain rule: a receipt is placed at `head.seq + 1` after `head.hash`, and it is inserted
//! in the same transaction that moves the head from exactly that `(seq, hash)`. Two ways keep
//! the head from moving underneath:
//!
//! - the locking path locks the head row (`SELECT … FOR UPDATE`, orgs in sorted order) before
//!   sealing: [`append_in`], which joins the caller's transaction so a business write and its
//!   receipt commit together, and batches that carry an idempotency key or an audit event;
//! - the compare-and-set path seals against a cached head and commits every organization's
//!   receipts in one statement that moves a head only if it is still where the cache says, and
//!   inserts receipts only for the heads it moved; a stale cache (another process appended) is
//!   re-read and retried, then handed to the locking path.
//!
//! Either way appends to one organization are serialized across every process on the database:
//! no fork, no gap, and the primary key `(org_id, seq)` refuses a duplicate even if the rule
//! were broken. A receipt is acknowledged only after its commit. [`BatchAppender`] gathers
//! concurrent appends so one statement (or transaction) and one commit flush serve many.

use std::collections::HashMap;
use std::sync::Arc;

use deadpool_postgres::{GenericClient, Pool, Transaction};
use defendable_store::audit::{record, AuditEvent};
use futures_util::{pin_mut, TryStreamExt};
use serde_json::{json, Value};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::canonical::canonicalize;
use crate::receipt::{seal, Draft, Hash, Sealed};
use crate::verify::{ChainVerifier, Link, VerifyFailure};
use crate::LedgerError;

type Result<T> = std::result::Result<T, LedgerError>;

/// Applies the ledger's tables to a database of another service (with their own history table,
/// `defendable_ledger_schema_history`). Defendable itself gets them from its own migrations.
pub async fn migrate(pool: &Pool) -> Result<()> {
    let migration = refinery::Migration::unapplied(
        "V1__ledger",
        include_str!("../../../migrations/V3__ledger.sql"),
    )
    .map_err(defendable_store::StoreError::from)?;
    let mut client = pool.get().await?;
    let client: &mut tokio_postgres::Client = &mut client;
    refinery::Runner::new(&[migration])
        .set_migration_table_name("defendable_ledger_schema_history")
        .run_async(client)
        .await
        .map_err(defendable_store::StoreError::from)?;
    Ok(())
}

/// A receipt as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredReceipt {
    /// Organization.
    pub org: Uuid,
    /// Position.
    pub seq: u64,
    /// `DCR-…` id.
    pub receipt_id: String,
    /// Hash (hex).
    pub hash: String,
    /// Parent hash (hex).
    pub parent: String,
    /// Kind.
    pub kind: String,
    /// Creation time.
    pub created_at: OffsetDateTime,
    /// The hashed bytes.
    pub canonical: Vec<u8>,
    /// The private part (members only); `None` when absent or erased.
    pub private: Option<Value>,
    /// The private digest's salt; `None` when absent or erased.
    pub salt: Option<Vec<u8>>,
}

impl StoredReceipt {
    /// The body, parsed from the canonical bytes.
    pub fn body(&self) -> Value {
        serde_json::from_slice(&self.canonical).unwrap_or(Value::Null)
    }

    /// The public projection `{receipt_id, hash, body}`.
    pub fn projection(&self) -> Value {
        json!({ "receipt_id": self.receipt_id, "hash": self.hash, "body": self.body() })
    }

    /// The member view: the projection plus `private` and `salt` (hex).
    pub fn member_view(&self) -> Value {
        let mut v = self.projection();
        v["private"] = self.private.clone().unwrap_or(Value::Null);
        v["salt"] = self
            .salt
            .as_ref()
            .map(hex::encode)
            .map(Value::String)
            .unwrap_or(Value::Null);
        v
    }
}

impl From<&Sealed> for StoredReceipt {
    fn from(s: &Sealed) -> Self {
        StoredReceipt {
            org: s.org,
            seq: s.seq,
            receipt_id: s.id.clone(),
            hash: s.hash.to_hex(),
            parent: s.parent.to_hex(),
            kind: s.kind.as_str().to_owned(),
            created_at: s.created_at,
            canonical: s.canonical.clone(),
            private: s.private.clone().map(Value::Object),
            salt: s.salt.map(|s| s.to_vec()),
        }
    }
}

const COLUMNS: &str =
    "org_id, seq, receipt_id, hash, parent, kind, created_at, canonical, private, salt";

fn row_receipt(r: &tokio_postgres::Row) -> StoredReceipt {
    StoredReceipt {
        org: r.get(0),
        seq: r.get::<_, i64>(1) as u64,
        receipt_id: r.get(2),
        hash: r.get(3),
        parent: r.get(4),
        kind: r.get(5),
        created_at: r.get(6),
        canonical: r.get(7),
        private: r.get(8),
        salt: r.get(9),
    }
}

/// Locks the head rows of `orgs` (sorted, so concurrent batches never deadlock), creating
/// missing ones, and returns each org's `(seq, hash)`.
async fn lock_heads(tx: &Transaction<'_>, orgs: &[Uuid]) -> Result<HashMap<Uuid, (i64, Hash)>> {
    let select = "SELECT org_id, seq, hash FROM ledger_heads WHERE org_id = ANY($1) ORDER BY org_id FOR UPDATE";
    let mut heads = HashMap::with_capacity(orgs.len());
    for row in tx.query(select, &[&orgs]).await? {
        heads.insert(
            row.get::<_, Uuid>(0),
            (row.get::<_, i64>(1), Hash::parse(row.get(2))?),
        );
    }
    if heads.len() < orgs.len() {
        let missing: Vec<Uuid> = orgs
            .iter()
            .copied()
            .filter(|o| !heads.contains_key(o))
            .collect();
        tx.execute(
            "INSERT INTO ledger_heads (org_id, seq, hash)
             SELECT o, -1, $2 FROM unnest($1::uuid[]) AS o ORDER BY o ON CONFLICT DO NOTHING",
            &[&missing, &Hash::GENESIS.to_hex()],
        )
        .await?;
        for row in tx.query(select, &[&missing]).await? {
            heads.insert(
                row.get::<_, Uuid>(0),
                (row.get::<_, i64>(1), Hash::parse(row.get(2))?),
            );
        }
    }
    Ok(heads)
}

/// Inserts sealed receipts and moves the heads, in two statements whatever the count.
async fn insert_sealed(tx: &Transaction<'_>, sealed: &[Sealed]) -> Result<()> {
    if sealed.is_empty() {
        return Ok(());
    }
    let c = Columns::of(sealed);
    tx.execute(
        "INSERT INTO receipts (org_id, seq, receipt_id, hash, parent, kind, created_at, canonical, private, salt)
         SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[],
                              $7::timestamptz[], $8::bytea[], $9::jsonb[], $10::bytea[])",
        &[&c.org, &c.seq, &c.id, &c.hash, &c.parent, &c.kind, &c.created, &c.canonical, &c.private, &c.salt],
    )
    .await?;
    // The last receipt of each org is its new head.
    let mut last: HashMap<Uuid, (i64, String)> = HashMap::new();
    for s in sealed {
        last.insert(s.org, (s.seq as i64, s.hash.to_hex()));
    }
    let (h_org, rest): (Vec<Uuid>, Vec<(i64, String)>) = last.into_iter().unzip();
    let (h_seq, h_hash): (Vec<i64>, Vec<String>) = rest.into_iter().unzip();
    tx.execute(
        "UPDATE ledger_heads h SET seq = n.seq, hash = n.hash
         FROM unnest($1::uuid[], $2::bigint[], $3::text[]) AS n(org_id, seq, hash)
         WHERE h.org_id = n.org_id",
        &[&h_org, &h_seq, &h_hash],
    )
    .await?;
    Ok(())
}

/// Appends one receipt inside the caller's transaction: it commits or rolls back with the
/// caller's own writes. Holds the organization's head lock until that transaction ends.
pub async fn append_in(tx: &Transaction<'_>, org: Uuid, draft: Draft) -> Result<Sealed> {
    let heads = lock_heads(tx, &[org]).await?;
    let (seq, hash) = heads[&org];
    let sealed = seal(
        org,
        (seq + 1) as u64,
        hash,
        OffsetDateTime::now_utc(),
        draft,
    )?;
    insert_sealed(tx, std::slice::from_ref(&sealed)).await?;
    Ok(sealed)
}

/// The fingerprint of a request for idempotency: SHA-256 of JCS({kind, public, private}).
pub fn request_fingerprint(kind: &str, public: &Value, private: Option<&Value>) -> Result<String> {
    let bytes = canonicalize(&json!({ "kind": kind, "public": public, "private": private }))?;
    Ok(Hash::of(&bytes).to_hex())
}

/// An append's options beyond the receipt itself.
#[derive(Debug, Default)]
pub struct AppendOptions {
    /// `(Idempotency-Key, request fingerprint)`: a retry with the same key and request gets the
    /// receipt the first call created; the same key with another request is refused.
    pub idempotency: Option<(String, String)>,
    /// An audit event recorded in the same transaction as the receipt.
    pub audit: Option<AuditEvent>,
}

/// What an append produced.
#[derive(Debug, Clone)]
pub enum Appended {
    /// A new receipt.
    New(StoredReceipt),
    /// The receipt an earlier call with the same Idempotency-Key created.
    Existing(StoredReceipt),
}

impl Appended {
    /// The receipt either way.
    pub fn receipt(&self) -> &StoredReceipt {
        match self {
            Appended::New(r) | Appended::Existing(r) => r,
        }
    }
}

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
        let workers = workers.max(1);
        let mut queues = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (tx, rx) = mpsc::channel(max_batch * 4);
            tokio::spawn(worker(pool.clone(), rx, max_batch.max(1)));
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

async fn worker(pool: Pool, mut rx: mpsc::Receiver<Request>, max_batch: usize) {
    // The heads this worker last saw, so a batch usually needs a single statement. Another
    // process may have moved a head since; the compare-and-set below notices and retries.
    let mut heads: HashMap<Uuid, (i64, Hash)> = HashMap::new();
    let mut batch = Vec::with_capacity(max_batch);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        if heads.len() > 100_000 {
            heads.clear();
        }
        let (plain, optioned): (Vec<Request>, Vec<Request>) = std::mem::take(&mut batch)
            .into_iter()
            .partition(|r| r.options.idempotency.is_none() && r.options.audit.is_none());
        let leftovers = if plain.is_empty() {
            Vec::new()
        } else {
            fast_batch(&pool, &mut heads, plain).await
        };
        let slow: Vec<Request> = optioned.into_iter().chain(leftovers).collect();
        if slow.is_empty() {
            continue;
        }
        for r in &slow {
            heads.remove(&r.org);
        }
        if let Err((e, requests)) = commit_batch(&pool, slow).await {
            tracing::error!(error = %e, receipts = requests.len(), "ledger batch failed; nothing was committed");
            let message = e.to_string();
            for r in requests {
                let _ = r.reply.send(Err(LedgerError::BatchFailed(message.clone())));
            }
        }
    }
}

/// Reads (creating if needed) the heads of `orgs` into the cache, without locking.
async fn load_heads(
    pool: &Pool,
    orgs: &[Uuid],
    heads: &mut HashMap<Uuid, (i64, Hash)>,
) -> Result<()> {
    let client = pool.get().await?;
    client
        .execute(
            "INSERT INTO ledger_heads (org_id, seq, hash)
             SELECT o, -1, $2 FROM unnest($1::uuid[]) AS o ORDER BY o ON CONFLICT DO NOTHING",
            &[&orgs, &Hash::GENESIS.to_hex()],
        )
        .await?;
    for row in client
        .query(
            "SELECT org_id, seq, hash FROM ledger_heads WHERE org_id = ANY($1)",
            &[&orgs],
        )
        .await?
    {
        heads.insert(row.get(0), (row.get(1), Hash::parse(row.get(2))?));
    }
    Ok(())
}

/// The fast path for appends without options: seal against the cached heads and commit every
/// organization's receipts in one statement that moves each head only if it is still where the
/// cache says (compare-and-set) and inserts receipts only for the heads it moved. The statement
/// is its own transaction. Organizations whose head moved elsewhere are re-read and retried;
/// what still fails after a few rounds is returned for the locking path.
async fn fast_batch(
    pool: &Pool,
    heads: &mut HashMap<Uuid, (i64, Hash)>,
    requests: Vec<Request>,
) -> Vec<Request> {
    let mut pending = requests;
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
                return pending;
            }
        }
        // Seal against the cache, chaining within the batch.
        let start: HashMap<Uuid, (i64, Hash)> =
            pending.iter().map(|r| (r.org, heads[&r.org])).collect();
        let mut tip = start.clone();
        let now = OffsetDateTime::now_utc();
        let mut sealed = Vec::with_capacity(pending.len());
        let mut placed = Vec::with_capacity(pending.len());
        for r in pending.drain(..) {
            let (seq, parent) = tip[&r.org];
            match seal(r.org, (seq + 1) as u64, parent, now, r.draft.clone()) {
                Ok(s) => {
                    tip.insert(r.org, (seq + 1, s.hash));
                    sealed.push(s);
                    placed.push(r);
                }
                Err(e) => {
                    let _ = r.reply.send(Err(e));
                }
            }
        }
        if sealed.is_empty() {
            return Vec::new();
        }
        let moved = match compare_and_append(pool, &start, &tip, &sealed).await {
            Ok(m) => m,
            Err(e) => {
                // A deadlock with another process or a lost connection: nothing committed or
                // unknown; the locking path decides.
                tracing::warn!(error = %e, "compare-and-append failed; using the locking path");
                for r in &placed {
                    heads.remove(&r.org);
                }
                return placed;
            }
        };
        for (r, s) in placed.into_iter().zip(sealed) {
            if moved.contains(&r.org) {
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
            return Vec::new();
        }
    }
    pending
}

/// One statement: move each head from `start` to `tip` if it is still at `start`, and insert
/// the sealed receipts of the organizations whose head moved. Returns those organizations.
async fn compare_and_append(
    pool: &Pool,
    start: &HashMap<Uuid, (i64, Hash)>,
    tip: &HashMap<Uuid, (i64, Hash)>,
    sealed: &[Sealed],
) -> Result<std::collections::HashSet<Uuid>> {
    let mut orgs: Vec<Uuid> = start.keys().copied().collect();
    orgs.sort();
    let old_seq: Vec<i64> = orgs.iter().map(|o| start[o].0).collect();
    let old_hash: Vec<String> = orgs.iter().map(|o| start[o].1.to_hex()).collect();
    let new_seq: Vec<i64> = orgs.iter().map(|o| tip[o].0).collect();
    let new_hash: Vec<String> = orgs.iter().map(|o| tip[o].1.to_hex()).collect();
    let cols = Columns::of(sealed);
    let client = pool.get().await?;
    // Prepared once per connection: the hot path then costs one round trip.
    let statement = client
        .prepare_cached(
            "WITH n AS (
                 SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::bigint[], $5::text[])
                     AS n(org_id, old_seq, old_hash, new_seq, new_hash)
             ), moved AS (
                 UPDATE ledger_heads h SET seq = n.new_seq, hash = n.new_hash
                 FROM n WHERE h.org_id = n.org_id AND h.seq = n.old_seq AND h.hash = n.old_hash
                 RETURNING h.org_id
             ), ins AS (
                 INSERT INTO receipts (org_id, seq, receipt_id, hash, parent, kind, created_at, canonical, private, salt)
                 SELECT r.* FROM unnest($6::uuid[], $7::bigint[], $8::text[], $9::text[], $10::text[], $11::text[],
                                        $12::timestamptz[], $13::bytea[], $14::jsonb[], $15::bytea[])
                     AS r(org_id, seq, receipt_id, hash, parent, kind, created_at, canonical, private, salt)
                 WHERE r.org_id IN (SELECT org_id FROM moved)
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
            ],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Sealed receipts as column arrays for `unnest`.
struct Columns<'a> {
    org: Vec<Uuid>,
    seq: Vec<i64>,
    id: Vec<&'a str>,
    hash: Vec<String>,
    parent: Vec<String>,
    kind: Vec<&'a str>,
    created: Vec<OffsetDateTime>,
    canonical: Vec<&'a [u8]>,
    private: Vec<Option<Value>>,
    salt: Vec<Option<Vec<u8>>>,
}

impl<'a> Columns<'a> {
    fn of(sealed: &'a [Sealed]) -> Columns<'a> {
        Columns {
            org: sealed.iter().map(|s| s.org).collect(),
            seq: sealed.iter().map(|s| s.seq as i64).collect(),
            id: sealed.iter().map(|s| s.id.as_str()).collect(),
            hash: sealed.iter().map(|s| s.hash.to_hex()).collect(),
            parent: sealed.iter().map(|s| s.parent.to_hex()).collect(),
            kind: sealed.iter().map(|s| s.kind.as_str()).collect(),
            created: sealed.iter().map(|s| s.created_at).collect(),
            canonical: sealed.iter().map(|s| s.canonical.as_slice()).collect(),
            private: sealed
                .iter()
                .map(|s| s.private.clone().map(Value::Object))
                .collect(),
            salt: sealed.iter().map(|s| s.salt.map(|x| x.to_vec())).collect(),
        }
    }
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
    let outcomes = match stage_batch(&tx, &mut requests).await {
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
) -> Result<(Vec<Outcome>, Vec<Sealed>)> {
    let mut orgs: Vec<Uuid> = requests.iter().map(|r| r.org).collect();
    orgs.sort();
    orgs.dedup();
    let mut heads = lock_heads(tx, &orgs).await?;
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
                    "INSERT INTO receipt_idempotency (org_id, key, request_hash) VALUES ($1, $2, $3)
                     ON CONFLICT DO NOTHING RETURNING 1",
                    &[&r.org, key, fingerprint],
                )
                .await?
                .is_some();
            if !fresh {
                let row = tx
                    .query_one(
                        "SELECT request_hash, seq FROM receipt_idempotency WHERE org_id = $1 AND key = $2",
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
        let (seq, parent) = heads[&r.org];
        let draft = r.draft.clone();
        match seal(r.org, (seq + 1) as u64, parent, now, draft) {
            Ok(s) => {
                heads.insert(r.org, (seq + 1, s.hash));
                if let Some((key, fingerprint)) = &r.options.idempotency {
                    keyed.push((r.org, key.clone(), seq + 1));
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
    insert_sealed(tx, &sealed).await?;
    for (org, key, seq) in keyed {
        tx.execute(
            "UPDATE receipt_idempotency SET seq = $3 WHERE org_id = $1 AND key = $2",
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

// ---------------------------------------------------------------------------------------------
// Reading

async fn get_by_seq(
    client: &impl GenericClient,
    org: Uuid,
    seq: u64,
) -> Result<Option<StoredReceipt>> {
    let row = client
        .query_opt(
            &format!("SELECT {COLUMNS} FROM receipts WHERE org_id = $1 AND seq = $2"),
            &[&org, &(seq as i64)],
        )
        .await?;
    Ok(row.as_ref().map(row_receipt))
}

/// A receipt by its `DCR-…` id.
pub async fn get(
    client: &impl GenericClient,
    org: Uuid,
    receipt_id: &str,
) -> Result<Option<StoredReceipt>> {
    let row = client
        .query_opt(
            &format!("SELECT {COLUMNS} FROM receipts WHERE org_id = $1 AND receipt_id = $2"),
            &[&org, &receipt_id],
        )
        .await?;
    Ok(row.as_ref().map(row_receipt))
}

/// Receipts after `after_seq` (exclusive), oldest first, optionally of one kind.
pub async fn list(
    client: &impl GenericClient,
    org: Uuid,
    after_seq: Option<u64>,
    limit: i64,
    kind: Option<&str>,
) -> Result<Vec<StoredReceipt>> {
    let after = after_seq.map(|s| s as i64).unwrap_or(-1);
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM receipts WHERE org_id = $1 AND seq > $2 AND ($3::text IS NULL OR kind = $3)
                 ORDER BY seq LIMIT $4"
            ),
            &[&org, &after, &kind, &limit],
        )
        .await?;
    Ok(rows.iter().map(row_receipt).collect())
}

/// The head `(seq, hash)` of an organization's chain; `(-1, zeros)` when empty.
pub async fn head(client: &impl GenericClient, org: Uuid) -> Result<(i64, Hash)> {
    let row = client
        .query_opt(
            "SELECT seq, hash FROM ledger_heads WHERE org_id = $1",
            &[&org],
        )
        .await?;
    match row {
        Some(r) => Ok((r.get(0), Hash::parse(r.get(1))?)),
        None => Ok((-1, Hash::GENESIS)),
    }
}

/// The result of verifying one organization's chain from storage.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainReport {
    /// Organization.
    pub org: Uuid,
    /// Receipts checked.
    pub checked: u64,
    /// The verified head hash.
    pub head: Hash,
    /// The first failure, if any.
    pub failure: Option<VerifyFailure>,
}

/// Verifies one organization's chain link by link, streaming rows in constant memory, and checks
/// that the head row agrees with the last receipt.
pub async fn verify_org(client: &impl GenericClient, org: Uuid) -> Result<ChainReport> {
    let stream = client
        .query_raw(
            "SELECT seq, hash, parent, receipt_id, canonical FROM receipts WHERE org_id = $1 ORDER BY seq",
            &[&org],
        )
        .await?;
    pin_mut!(stream);
    let mut verifier = ChainVerifier::new(org);
    let mut failure = None;
    while let Some(row) = stream.try_next().await? {
        // A CHECK constraint keeps seq non-negative, so the cast is exact.
        let link = Link {
            seq: row.get::<_, i64>(0) as u64,
            hash: row.get(1),
            parent: row.get(2),
            receipt_id: row.get(3),
            canonical: row.get(4),
        };
        if let Err(f) = verifier.push(link) {
            failure = Some(f);
            break;
        }
    }
    if failure.is_none() {
        let (head_seq, head_hash) = head(client, org).await?;
        if head_seq + 1 != verifier.count() as i64 || head_hash != verifier.head() {
            failure = Some(VerifyFailure {
                seq: head_seq.max(0) as u64,
                reason: crate::verify::Reason::HeadMismatch,
            });
        }
    }
    Ok(ChainReport {
        org,
        checked: verifier.count(),
        head: verifier.head(),
        failure,
    })
}

/// Every organization that has a chain.
pub async fn orgs(client: &impl GenericClient) -> Result<Vec<Uuid>> {
    Ok(client
        .query("SELECT org_id FROM ledger_heads ORDER BY org_id", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// Verifies every organization's chain.
pub async fn verify_all(client: &impl GenericClient) -> Result<Vec<ChainReport>> {
    let mut out = Vec::new();
    for org in orgs(client).await? {
        out.push(verify_org(client, org).await?);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Share links

/// Records a share link for receipt `seq` of `org`; only the token's hash is stored.
pub async fn create_share(
    client: &impl GenericClient,
    org: Uuid,
    seq: u64,
    token_hash: &[u8],
    created_by: Option<Uuid>,
) -> Result<Uuid> {
    let id = Uuid::now_v7();
    client
        .execute(
            "INSERT INTO receipt_shares (id, org_id, seq, token_hash, created_by) VALUES ($1, $2, $3, $4, $5)",
            &[&id, &org, &(seq as i64), &token_hash, &created_by],
        )
        .await?;
    Ok(id)
}

/// Revokes every active share link of a receipt; returns how many.
pub async fn revoke_shares(client: &impl GenericClient, org: Uuid, seq: u64) -> Result<u64> {
    Ok(client
        .execute(
            "UPDATE receipt_shares SET revoked_at = now() WHERE org_id = $1 AND seq = $2 AND revoked_at IS NULL",
            &[&org, &(seq as i64)],
        )
        .await?)
}

/// The receipt an active share token points at.
pub async fn shared_receipt(
    client: &impl GenericClient,
    token_hash: &[u8],
) -> Result<Option<StoredReceipt>> {
    let row = client
        .query_opt(
            "SELECT r.org_id, r.seq, r.receipt_id, r.hash, r.parent, r.kind, r.created_at, r.canonical, r.private, r.salt
             FROM receipt_shares s JOIN receipts r ON r.org_id = s.org_id AND r.seq = s.seq
             WHERE s.token_hash = $1 AND s.revoked_at IS NULL",
            &[&token_hash],
        )
        .await?;
    Ok(row.as_ref().map(row_receipt))
}

/// Sends the public projections of `org` from seq 0 through `through` (inclusive), in order,
/// into `out`, waiting whenever the receiver is behind (constant memory). Stops early when the
/// receiver goes away. Returns how many were sent.
pub async fn send_projections(
    client: &impl GenericClient,
    org: Uuid,
    through: i64,
    out: &mpsc::Sender<Value>,
) -> Result<u64> {
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&org, &through];
    let stream = client
        .query_raw(
            "SELECT receipt_id, hash, canonical FROM receipts WHERE org_id = $1 AND seq <= $2 ORDER BY seq",
            params,
        )
        .await?;
    pin_mut!(stream);
    let mut n = 0;
    while let Some(row) = stream.try_next().await? {
        let canonical: &[u8] = row.get(2);
        let body: Value = serde_json::from_slice(canonical).unwrap_or(Value::Null);
        let projection = json!({ "receipt_id": row.get::<_, &str>(0), "hash": row.get::<_, &str>(1), "body": body });
        if out.send(projection).await.is_err() {
            break;
        }
        n += 1;
    }
    Ok(n)
}
