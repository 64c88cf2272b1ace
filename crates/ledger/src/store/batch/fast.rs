//! The fast path: one compare-and-set statement per batch against the cached heads.

use std::collections::{HashMap, HashSet};

use deadpool_postgres::Pool;
use defendable_store::audit::{log_batch_recorded, AuditColumns};
use time::OffsetDateTime;
use uuid::Uuid;

use super::super::append::{head_columns, seal_next, Appended, Columns, Tree};
use super::super::tree::NodeRows;
use super::super::{Head, Result, StoredReceipt};
use super::{load_heads, Request};
use crate::receipt::Sealed;
use crate::LedgerError;

/// The fast path: seal against the cached heads and commit every organization's receipts in one
/// statement that moves each head only if it is still where the cache says (compare-and-set)
/// and inserts, for the heads it moved, the receipts, their tree nodes, their audit events and
/// their idempotency keys. The statement is its own transaction, so a receipt, its audit event
/// and its key commit together or not at all. Organizations whose head moved elsewhere are
/// re-read and retried; what still fails after a few rounds is returned for the locking path,
/// and so are the requests whose key repeats within the batch, and the whole attempt when a key
/// turns out to exist already (a retry across batches or processes: the insert's unique
/// violation undoes the statement, and the locking path answers with the first receipt).
pub(super) async fn fast_batch(
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
