//! Reading receipts and heads, and verifying a chain (and its tree) from storage.

use std::collections::HashMap;

use deadpool_postgres::GenericClient;
use serde_json::Value;
use uuid::Uuid;

use super::tree::{tree_edge, STORED_FROM_LEVEL};
use super::{row_receipt, Result, StoredReceipt, COLUMNS};
use crate::merkle::{self, NodeId, TreeEdge, TreeHash};
use crate::receipt::Hash;
use crate::verify::{ChainVerifier, Link, Reason, VerifyFailure};

pub(super) async fn get_by_seq(
    client: &impl GenericClient,
    org: Uuid,
    seq: u64,
) -> Result<Option<StoredReceipt>> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM receipts WHERE org_id = $1 AND seq = $2"
        ))
        .await?;
    let row = client.query_opt(&statement, &[&org, &(seq as i64)]).await?;
    Ok(row.as_ref().map(row_receipt))
}

/// The sequence number a canonical `DCR-…` id names, as stored; `None` for any other text.
pub(super) fn seq_of(receipt_id: &str) -> Option<i64> {
    let (seq, _) = crate::receipt::parse_receipt_id(receipt_id)?;
    i64::try_from(seq).ok()
}

/// A receipt by its `DCR-…` id. The id names its sequence number, so this is a primary-key
/// probe (`receipt_id` has no index of its own: a lookup by it alone scans the organization's
/// log, and a prepared statement's generic plan scans the whole table). An id that is not of
/// the canonical form names no receipt.
pub async fn get(
    client: &impl GenericClient,
    org: Uuid,
    receipt_id: &str,
) -> Result<Option<StoredReceipt>> {
    let Some(seq) = seq_of(receipt_id) else {
        return Ok(None);
    };
    let statement = client
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM receipts WHERE org_id = $1 AND seq = $2 AND receipt_id = $3"
        ))
        .await?;
    let row = client
        .query_opt(&statement, &[&org, &seq, &receipt_id])
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
    // A cursor beyond any seq lists nothing (never wraps to a negative seq).
    let after = after_seq.map_or(-1, |s| i64::try_from(s).unwrap_or(i64::MAX));
    // Two statements, not one `($3 IS NULL OR kind = $3)`: the server plans each statement once
    // per connection (generic plans), and only a statement that always filters by kind can use
    // `receipts_kind_idx`.
    let rows = match kind {
        Some(kind) => {
            let statement = client
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM receipts WHERE org_id = $1 AND kind = $3 AND seq > $2
                     ORDER BY seq LIMIT $4"
                ))
                .await?;
            client
                .query(&statement, &[&org, &after, &kind, &limit])
                .await?
        }
        None => {
            let statement = client
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM receipts WHERE org_id = $1 AND seq > $2
                     ORDER BY seq LIMIT $3"
                ))
                .await?;
            client.query(&statement, &[&org, &after, &limit]).await?
        }
    };
    Ok(rows.iter().map(row_receipt).collect())
}

/// The head `(seq, hash)` of an organization's chain; `(-1, zeros)` when empty.
pub async fn head(client: &impl GenericClient, org: Uuid) -> Result<(i64, Hash)> {
    let row = client
        .query_opt(
            &client
                .prepare_cached("SELECT seq, hash FROM ledger_heads WHERE org_id = $1")
                .await?,
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
    /// Leaves in the stored tree, whose root was recomputed from the verified receipts.
    pub tree_size: u64,
    /// The first failure, if any.
    pub failure: Option<VerifyFailure>,
}

/// Receipts read per page while verifying (each page is one short statement).
const VERIFY_PAGE: i64 = 10_000;

/// Verifies one organization's chain link by link, in pages of constant size, and its tree: the
/// tree is recomputed from the verified receipts, every stored node is compared with the
/// recomputed one, and the stored right edge (the root of every checkpoint) with the recomputed
/// edge. Finally the head row must agree with the last receipt.
pub async fn verify_org(client: &impl GenericClient, org: Uuid) -> Result<ChainReport> {
    // The tree only grows, so its stored edge read first is a prefix of what the pages read.
    let stored_tree = tree_edge(client, org).await?;
    let mut tree = TreeEdge::empty();
    let mut verifier = ChainVerifier::new(org);
    let mut failure = None;
    let page = client
        .prepare_cached(
            "SELECT seq, hash, parent, receipt_id, canonical FROM receipts
             WHERE org_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .await?;
    let mut after = -1i64;
    'pages: loop {
        let rows = client.query(&page, &[&org, &after, &VERIFY_PAGE]).await?;
        let Some(last) = rows.last() else { break };
        after = last.get(0);
        // Nodes recomputed on this page, each with the seq of the leaf that completed it.
        let mut expected: Vec<(NodeId, TreeHash, u64)> = Vec::new();
        for row in &rows {
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
                break 'pages;
            }
            if tree.size() < stored_tree.size() {
                let seq = tree.size();
                for (id, h) in tree.append(merkle::leaf_hash(&verifier.head())) {
                    if id.level >= STORED_FROM_LEVEL {
                        expected.push((id, h, seq));
                    }
                }
            }
        }
        if let Some(f) = compare_nodes(client, org, &expected, stored_tree.size()).await? {
            failure = Some(f);
            break;
        }
        if (rows.len() as i64) < VERIFY_PAGE {
            break;
        }
    }
    if failure.is_none() && tree != stored_tree {
        failure = Some(VerifyFailure {
            seq: stored_tree.size().saturating_sub(1),
            reason: Reason::TreeMismatch {
                size: stored_tree.size(),
            },
        });
    }
    if failure.is_none() {
        let (head_seq, head_hash) = head(client, org).await?;
        if head_seq + 1 != verifier.count() as i64 || head_hash != verifier.head() {
            failure = Some(VerifyFailure {
                seq: head_seq.max(0) as u64,
                reason: Reason::HeadMismatch,
            });
        }
    }
    Ok(ChainReport {
        org,
        checked: verifier.count(),
        head: verifier.head(),
        tree_size: stored_tree.size(),
        failure,
    })
}

/// Compares recomputed nodes with the stored ones in one statement; the first that differs (or
/// is missing) fails at the seq of the leaf that completed it.
async fn compare_nodes(
    client: &impl GenericClient,
    org: Uuid,
    expected: &[(NodeId, TreeHash, u64)],
    size: u64,
) -> Result<Option<VerifyFailure>> {
    if expected.is_empty() {
        return Ok(None);
    }
    let (levels, idxs): (Vec<i16>, Vec<i64>) = expected
        .iter()
        .map(|(id, _, _)| (i16::from(id.level), id.index as i64))
        .unzip();
    let statement = client
        .prepare_cached(
            // One primary-key probe per node (see `tree::fetch_nodes`).
            "SELECT q.level, q.idx, n.hash
               FROM unnest($2::smallint[], $3::bigint[]) AS q(level, idx)
               CROSS JOIN LATERAL (SELECT hash FROM ledger_nodes
                                    WHERE org_id = $1 AND level = q.level AND idx = q.idx) n",
        )
        .await?;
    let stored: HashMap<NodeId, Vec<u8>> = client
        .query(&statement, &[&org, &levels, &idxs])
        .await?
        .iter()
        .map(|r| {
            (
                NodeId {
                    level: r.get::<_, i16>(0) as u8,
                    index: r.get::<_, i64>(1) as u64,
                },
                r.get(2),
            )
        })
        .collect();
    Ok(expected
        .iter()
        .find(|(id, h, _)| stored.get(id).map(Vec::as_slice) != Some(&h.0[..]))
        .map(|(_, _, seq)| VerifyFailure {
            seq: *seq,
            reason: Reason::TreeMismatch { size },
        }))
}

/// Every organization that has a chain.
pub async fn orgs(client: &impl GenericClient) -> Result<Vec<Uuid>> {
    Ok(client
        .query(
            &client
                .prepare_cached("SELECT org_id FROM ledger_heads ORDER BY org_id")
                .await?,
            &[],
        )
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

/// The public projections `{receipt_id, hash, body}` of `org`'s receipts `from ≤ seq ≤ through`,
/// at most `limit` of them, in seq order: one page of an export, read in one short statement so
/// that no connection is held while the page is written to a slow reader.
pub async fn projections_page(
    client: &impl GenericClient,
    org: Uuid,
    from: i64,
    through: i64,
    limit: i64,
) -> Result<Vec<crate::Projection>> {
    let statement = client
        .prepare_cached(
            "SELECT receipt_id, hash, canonical FROM receipts
             WHERE org_id = $1 AND seq >= $2 AND seq <= $3 ORDER BY seq LIMIT $4",
        )
        .await?;
    let rows = client
        .query(&statement, &[&org, &from, &through, &limit])
        .await?;
    Ok(rows
        .iter()
        .map(|row| {
            let canonical: &[u8] = row.get(2);
            crate::Projection {
                body: serde_json::from_slice(canonical).unwrap_or(Value::Null),
                hash: row.get(1),
                receipt_id: row.get(0),
            }
        })
        .collect())
}
