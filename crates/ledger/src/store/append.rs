//! The locking append path: lock the head rows, seal, insert receipts and tree nodes, move the
//! heads — inside the caller's transaction ([`append_in`]) or a batch's.

use std::collections::HashMap;

use deadpool_postgres::Transaction;
use defendable_store::audit::AuditEvent;
use serde_json::{json, Value};
use time::OffsetDateTime;
use uuid::Uuid;

use super::tree::{catch_up, insert_nodes, NodeRows};
use super::{Head, Result, StoredReceipt};
use crate::canonical::canonicalize;
use crate::receipt::{seal, Draft, Hash, Sealed};

/// Receipts a locking append integrates for a tree that lags its chain before adding its own;
/// more is left to the background integrator so one append never carries a long backlog.
const INLINE_CATCH_UP: u64 = 1024;

/// Locks the head rows of `orgs` (sorted, so concurrent batches never deadlock), creating
/// missing ones, and returns each org's head.
pub(super) async fn lock_heads(tx: &Transaction<'_>, orgs: &[Uuid]) -> Result<HashMap<Uuid, Head>> {
    let select = format!(
        "SELECT org_id, {} FROM ledger_heads WHERE org_id = ANY($1) ORDER BY org_id FOR UPDATE",
        Head::COLUMNS
    );
    let mut heads = HashMap::with_capacity(orgs.len());
    let select = tx.prepare_cached(&select).await?;
    for row in tx.query(&select, &[&orgs]).await? {
        heads.insert(row.get::<_, Uuid>(0), Head::from_row(&row, 1)?);
    }
    if heads.len() < orgs.len() {
        let missing: Vec<Uuid> = orgs
            .iter()
            .copied()
            .filter(|o| !heads.contains_key(o))
            .collect();
        tx.execute(
            &tx.prepare_cached(
                "INSERT INTO ledger_heads (org_id, seq, hash)
             SELECT o, -1, $2 FROM unnest($1::uuid[]) AS o ORDER BY o ON CONFLICT DO NOTHING",
            )
            .await?,
            &[&missing, &Hash::GENESIS.to_hex()],
        )
        .await?;
        for row in tx.query(&select, &[&missing]).await? {
            heads.insert(row.get::<_, Uuid>(0), Head::from_row(&row, 1)?);
        }
    }
    Ok(heads)
}

/// Sealed receipts as column arrays for `unnest`.
pub(super) struct Columns<'a> {
    pub(super) org: Vec<Uuid>,
    pub(super) seq: Vec<i64>,
    pub(super) id: Vec<&'a str>,
    pub(super) hash: Vec<String>,
    pub(super) parent: Vec<String>,
    pub(super) kind: Vec<&'a str>,
    pub(super) created: Vec<OffsetDateTime>,
    pub(super) canonical: Vec<&'a [u8]>,
    pub(super) private: Vec<Option<Value>>,
    pub(super) salt: Vec<Option<Vec<u8>>>,
}

impl<'a> Columns<'a> {
    pub(super) fn of(sealed: &'a [Sealed]) -> Columns<'a> {
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

/// Heads as column arrays for `unnest`: org, seq, hash, tree size, tree edge.
pub(super) type HeadColumns = (Vec<Uuid>, Vec<i64>, Vec<String>, Vec<i64>, Vec<Vec<u8>>);

pub(super) fn head_columns<'h>(heads: impl Iterator<Item = (&'h Uuid, &'h Head)>) -> HeadColumns {
    let mut c: HeadColumns = Default::default();
    for (org, h) in heads {
        c.0.push(*org);
        c.1.push(h.seq);
        c.2.push(h.hash.to_hex());
        c.3.push(h.edge.size() as i64);
        c.4.push(h.edge.to_bytes());
    }
    c
}

/// Whether an append path maintains the Merkle tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tree {
    /// Extend the tree with every receipt (the server, always).
    Maintain,
    /// Append as the release before the tree did and leave the tree to the integrator (the
    /// same-run baseline of `cargo xtask bench tree`).
    Skip,
}

/// Seals `draft` as the next receipt of `head` (chain and, when it covers the chain, tree),
/// collecting the new tree nodes.
pub(super) fn seal_next(
    org: Uuid,
    head: &mut Head,
    now: OffsetDateTime,
    draft: Draft,
    nodes: &mut NodeRows,
    tree: Tree,
) -> Result<Sealed> {
    let sealed = seal(org, (head.seq + 1) as u64, head.hash, now, draft)?;
    if tree == Tree::Maintain && head.tree_complete() {
        nodes.append(org, &mut head.edge, &sealed.hash);
    }
    head.seq += 1;
    head.hash = sealed.hash;
    Ok(sealed)
}

/// Inserts sealed receipts and their tree nodes and writes the heads, in three statements
/// whatever the count. Every head in `heads` must be locked by this transaction.
pub(super) async fn insert_sealed(
    tx: &Transaction<'_>,
    sealed: &[Sealed],
    nodes: &NodeRows,
    heads: &HashMap<Uuid, Head>,
) -> Result<()> {
    if !sealed.is_empty() {
        let c = Columns::of(sealed);
        let insert = tx
            .prepare_cached(
                "INSERT INTO receipts (org_id, seq, receipt_id, hash, parent, kind, created_at, canonical, private, salt)
                 SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[],
                                      $7::timestamptz[], $8::bytea[], $9::jsonb[], $10::bytea[])",
            )
            .await?;
        tx.execute(
            &insert,
            &[
                &c.org,
                &c.seq,
                &c.id,
                &c.hash,
                &c.parent,
                &c.kind,
                &c.created,
                &c.canonical,
                &c.private,
                &c.salt,
            ],
        )
        .await?;
    }
    insert_nodes(tx, nodes).await?;
    let (org, seq, hash, size, edge) = head_columns(heads.iter());
    let update = tx
        .prepare_cached(
            "UPDATE ledger_heads h SET seq = n.seq, hash = n.hash, tree_size = n.tree_size, tree_edge = n.tree_edge
             FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::bigint[], $5::bytea[])
                 AS n(org_id, seq, hash, tree_size, tree_edge)
             WHERE h.org_id = ANY($1) AND h.org_id = n.org_id",
        )
        .await?;
    tx.execute(&update, &[&org, &seq, &hash, &size, &edge])
        .await?;
    Ok(())
}

/// Locks the heads of `orgs` and integrates (a bounded number of) receipts their trees lag by,
/// so the receipts appended next extend the tree directly.
pub(super) async fn lock_and_catch_up(
    tx: &Transaction<'_>,
    orgs: &[Uuid],
    nodes: &mut NodeRows,
    tree: Tree,
) -> Result<HashMap<Uuid, Head>> {
    let mut heads = lock_heads(tx, orgs).await?;
    if tree == Tree::Skip {
        return Ok(heads);
    }
    for org in orgs {
        if let Some(head) = heads.get_mut(org) {
            if !head.tree_complete() {
                catch_up(tx, *org, head, INLINE_CATCH_UP, nodes).await?;
            }
        }
    }
    Ok(heads)
}

/// Appends one receipt inside the caller's transaction: it commits or rolls back with the
/// caller's own writes, tree nodes included. Holds the organization's head lock until that
/// transaction ends.
pub async fn append_in(tx: &Transaction<'_>, org: Uuid, draft: Draft) -> Result<Sealed> {
    let mut nodes = NodeRows::default();
    let mut heads = lock_and_catch_up(tx, &[org], &mut nodes, Tree::Maintain).await?;
    let head = heads.get_mut(&org).expect("locked above");
    let sealed = seal_next(
        org,
        head,
        OffsetDateTime::now_utc(),
        draft,
        &mut nodes,
        Tree::Maintain,
    )?;
    insert_sealed(tx, std::slice::from_ref(&sealed), &nodes, &heads).await?;
    Ok(sealed)
}

/// The fingerprint of a request for idempotency: SHA-256 of JCS({kind, public, private}).
pub fn request_fingerprint(kind: &str, public: &Value, private: Option<&Value>) -> Result<String> {
    let bytes = canonicalize(&json!({ "kind": kind, "public": public, "private": private }))?;
    Ok(Hash::of(&bytes).to_hex())
}

/// The `receipt.create` audit event of a receipt of `kind` recorded in `org` by `actor` through
/// `via` (`api`, `runner`), for [`AppendOptions::audit`].
pub fn receipt_created(
    org: Uuid,
    kind: &crate::ReceiptKind,
    via: &str,
    actor: defendable_store::audit::Actor,
    context: &defendable_store::audit::AuditContext,
) -> AuditEvent {
    AuditEvent::new(defendable_store::audit::AuditAction::ReceiptCreate, actor)
        .in_org(org)
        .within(context)
        .with(json!({ "kind": kind.as_str(), "via": via }))
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
