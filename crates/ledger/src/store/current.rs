//! Proofs against the current tree read in one statement, alone or with what asks for them
//! (the receipt, its share link): an inclusion path is made of siblings inside the perfect
//! subtree that holds the leaf and of edge nodes, and a consistency proof from `m` leaves also
//! of the perfect subtree that ends at `m`, so the head's edge, one block of leaves and a probe
//! per level are all they read. Proofs against an earlier size are in [`super::tree`].

use std::collections::HashMap;

use deadpool_postgres::GenericClient;
use uuid::Uuid;

use super::tree::{check_size, tree_edge, InclusionProof, STORED_FROM_LEVEL};
use super::{Result, StoredReceipt};
use crate::bundle::ConsistencyProof;
use crate::merkle::{self, NodeId, NodeMap, TreeEdge, TreeHash};
use crate::note::LogSigner;
use crate::receipt::Hash;
use crate::LedgerError;

/// What proves receipt `r` against the current tree, as columns after the receipt's own:
/// the head's size and right edge, the leaves of the receipt's block of 16 (below
/// [`STORED_FROM_LEVEL`]) and the stored siblings of its ancestors that the tree holds, by
/// level. An inclusion path is made of siblings inside the perfect subtree that holds the leaf
/// and of edge nodes, so nothing else is read. Every lookup is a primary-key probe. The
/// statement that selects them ends with `FROM receipts r {PROOF_JOINS}`.
pub(super) const PROOF_COLUMNS: &str = "h.tree_size, h.tree_edge, lv.leaves, sb.levels, sb.hashes";

/// The joins [`PROOF_COLUMNS`] reads from (levels up to 61 cover trees of 2^62 leaves).
pub(super) const PROOF_JOINS: &str = "
    LEFT JOIN ledger_heads h ON h.org_id = r.org_id
    LEFT JOIN LATERAL (
        SELECT array_agg(decode(l.hash, 'hex') ORDER BY l.seq) AS leaves
          FROM receipts l
         WHERE l.org_id = r.org_id AND l.seq >= (r.seq & ~15::bigint)
           AND l.seq < least((r.seq & ~15::bigint) + 16, h.tree_size)) lv ON true
    LEFT JOIN LATERAL (
        SELECT array_agg(q.level::smallint ORDER BY q.level) AS levels,
               array_agg(n.hash ORDER BY q.level) AS hashes
          FROM generate_series(4, 61) AS q(level)
          CROSS JOIN LATERAL (SELECT hash FROM ledger_nodes
                               WHERE org_id = r.org_id AND level = q.level
                                 AND idx = (r.seq >> q.level) # 1) n
         WHERE (((r.seq >> q.level) # 1) + 1) << q.level <= h.tree_size) sb ON true";

/// With [`PROOF_COLUMNS`], for a consistency proof from `m = r.seq + 1` leaves: the one stored
/// ancestor of leaf `m - 1` the proof reads, the perfect subtree that ends at `m` (level
/// `r.level`, the trailing zeros of `m`, when it is stored; NULL otherwise,
/// [`ancestor_level`]). RFC 9162's SUBPROOF reads the
/// siblings of leaf `m - 1`'s ancestors inside the tree, edge nodes, and that one subtree.
pub(super) const ANCESTOR_COLUMNS: &str = "an.hash";

/// The join [`ANCESTOR_COLUMNS`] reads from.
pub(super) const ANCESTOR_JOINS: &str = "
    LEFT JOIN ledger_nodes an
      ON an.org_id = r.org_id AND an.level = r.level AND an.idx = r.seq >> r.level::int
         AND ((r.seq >> r.level::int) + 1) << r.level::int <= h.tree_size";

/// The level of the perfect subtree that ends at `from` leaves when the tree stores it (below
/// the stored levels it is folded from the block of leaf `from - 1`).
pub(super) fn ancestor_level(from: u64) -> Option<i16> {
    let level = from.trailing_zeros().min(62) as i16;
    (level >= i16::from(STORED_FROM_LEVEL)).then_some(level)
}

/// Whether `from` can start a consistency proof read in one statement: `1 ≤ from ≤ 2^62` (no
/// tree has more leaves; anything else is refused by the general path, with the tree's size).
pub fn consistency_from_ok(from: u64) -> bool {
    from != 0 && from <= 1 << 62
}

/// What a consistency proof from `from` leaves to the current tree reads, in the statement that
/// reads it ([`PROOF_COLUMNS`] around leaf `from - 1` and [`ANCESTOR_COLUMNS`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ConsistencyParts {
    from: u64,
    parts: ProofParts,
}

impl ConsistencyParts {
    /// Reads the columns starting at `at`, for a proof from `from` leaves.
    pub(super) fn from_row(
        row: &tokio_postgres::Row,
        at: usize,
        from: u64,
    ) -> Result<ConsistencyParts> {
        let mut parts = ProofParts::from_row(row, at)?;
        if let (Some(level), Some(bytes)) =
            (ancestor_level(from), row.get::<_, Option<&[u8]>>(at + 5))
        {
            parts.ancestor = Some((level as u8, TreeHash(hash32(bytes)?)));
        }
        Ok(ConsistencyParts { from, parts })
    }

    /// The consistency proof from `from` leaves to the current tree of `org`, signed.
    pub fn prove(&self, log: &LogSigner, org: Uuid) -> Result<ConsistencyProof> {
        let (from, to) = (self.from, self.parts.size());
        check_size(to, to, "to")?;
        check_size(from, to, "from")?;
        let nodes = self.parts.nodes(from - 1)?;
        Ok(ConsistencyProof {
            from,
            to,
            consistency: merkle::to_base64(&merkle::prove_consistency(from, to, &nodes)?),
            checkpoint: log.sign(org, to, self.parts.edge.root())?,
        })
    }
}

/// The proof material of one leaf ([`PROOF_COLUMNS`], and [`ANCESTOR_COLUMNS`] for a
/// consistency proof), read in the statement that reads the receipt (or its share link);
/// [`ProofParts::prove`] makes the inclusion proof.
#[derive(Debug, Clone, PartialEq)]
pub struct ProofParts {
    edge: TreeEdge,
    leaves: Vec<TreeHash>,
    siblings: Vec<(u8, TreeHash)>,
    /// The stored subtree a consistency proof ends its old tree with, if it reads one.
    ancestor: Option<(u8, TreeHash)>,
}

/// 32 stored bytes as a hash.
fn hash32(bytes: &[u8]) -> Result<[u8; 32]> {
    bytes
        .try_into()
        .map_err(|_| LedgerError::InvalidProof("a stored tree hash is not 32 bytes".into()))
}

/// Stored nodes by level from two parallel array columns (NULL: none).
fn levelled(row: &tokio_postgres::Row, at: usize) -> Result<Vec<(u8, TreeHash)>> {
    let levels = row.get::<_, Option<Vec<i16>>>(at).unwrap_or_default();
    let hashes = row.get::<_, Option<Vec<&[u8]>>>(at + 1).unwrap_or_default();
    levels
        .into_iter()
        .zip(hashes)
        .map(|(level, b)| Ok((level as u8, TreeHash(hash32(b)?))))
        .collect()
}

impl ProofParts {
    /// Reads [`PROOF_COLUMNS`] starting at column `at`.
    pub(super) fn from_row(row: &tokio_postgres::Row, at: usize) -> Result<ProofParts> {
        let size: Option<i64> = row.get(at);
        let edge = match size {
            Some(size) => TreeEdge::from_bytes(size as u64, row.get(at + 1))?,
            None => TreeEdge::empty(),
        };
        let leaves = row
            .get::<_, Option<Vec<&[u8]>>>(at + 2)
            .unwrap_or_default()
            .into_iter()
            .map(|b| Ok(merkle::leaf_hash(&Hash(hash32(b)?))))
            .collect::<Result<_>>()?;
        Ok(ProofParts {
            edge,
            leaves,
            siblings: levelled(row, at + 3)?,
            ancestor: None,
        })
    }

    /// The size of the tree these parts prove against.
    pub fn size(&self) -> u64 {
        self.edge.size()
    }

    /// The nodes read around leaf `leaf` (`leaf < size`): its block's leaves and the nodes
    /// folded from them, the stored siblings and ancestor, and the edge.
    fn nodes(&self, leaf: u64) -> Result<NodeMap> {
        let size = self.edge.size();
        let block = leaf & !15;
        if self.leaves.len() as u64 != (size - block).min(16) {
            return Err(LedgerError::InvalidProof(format!(
                "leaves {block}..{} are not all stored; the tree cannot prove {leaf}",
                (block + 16).min(size)
            )));
        }
        // The edge first: where a stored or folded node is also an edge node, the stored one
        // is used, as the general path uses it (an altered node breaks the proof it is in).
        let mut nodes: NodeMap = HashMap::with_capacity(48);
        nodes.extend(self.edge.nodes());
        for (i, leaf) in self.leaves.iter().enumerate() {
            nodes.insert(
                NodeId {
                    level: 0,
                    index: block + i as u64,
                },
                *leaf,
            );
        }
        // The nodes below the stored levels inside the block, from its leaves.
        for level in 1..STORED_FROM_LEVEL {
            let width = 1usize << level;
            for (i, below) in self.leaves.chunks_exact(width).enumerate() {
                let id = NodeId {
                    level,
                    index: (block >> level) + i as u64,
                };
                nodes.insert(id, merkle::root_of_leaves(below.iter().copied()).1);
            }
        }
        for (level, hash) in &self.siblings {
            let index = (leaf >> level) ^ 1;
            nodes.insert(
                NodeId {
                    level: *level,
                    index,
                },
                *hash,
            );
        }
        if let Some((level, hash)) = &self.ancestor {
            let index = leaf >> level;
            nodes.insert(
                NodeId {
                    level: *level,
                    index,
                },
                *hash,
            );
        }
        Ok(nodes)
    }

    /// The inclusion proof of leaf `seq` (the receipt these parts were read with) against the
    /// current tree. A receipt the tree does not cover yet is [`LedgerError::NotIntegrated`].
    pub fn prove(&self, seq: u64) -> Result<InclusionProof> {
        let size = self.edge.size();
        if seq >= size {
            return Err(LedgerError::NotIntegrated);
        }
        let nodes = self.nodes(seq)?;
        Ok(InclusionProof {
            size,
            root: self.edge.root(),
            path: merkle::prove_inclusion(seq, size, &nodes)?,
        })
    }
}

/// Proves receipt `seq` against the current tree in one statement, from one snapshot
/// ([`PROOF_COLUMNS`]).
pub(super) async fn prove_current(
    client: &impl GenericClient,
    org: Uuid,
    seq: u64,
) -> Result<InclusionProof> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {PROOF_COLUMNS} FROM receipts r {PROOF_JOINS}
              WHERE r.org_id = $1 AND r.seq = $2"
        ))
        .await?;
    match client.query_opt(&statement, &[&org, &(seq as i64)]).await? {
        Some(row) => ProofParts::from_row(&row, 0)?.prove(seq),
        None => Err(LedgerError::NotIntegrated),
    }
}

/// A receipt with what proves it against the current tree, read in one statement with it
/// ([`receipts_with_proofs`], [`super::shared_proofs`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ProvenReceipt {
    /// The receipt.
    pub receipt: StoredReceipt,
    /// What proves it; unreadable stored hashes (a damaged tree) fail this receipt alone.
    parts: std::result::Result<ProofParts, String>,
}

impl ProvenReceipt {
    /// Reads the receipt's columns and [`PROOF_COLUMNS`] after them.
    pub(super) fn from_row(row: &tokio_postgres::Row) -> ProvenReceipt {
        ProvenReceipt {
            receipt: super::row_receipt(row),
            parts: ProofParts::from_row(row, super::COLUMNS_COUNT).map_err(|e| e.to_string()),
        }
    }

    /// The receipt's inclusion proof against the current tree ([`ProofParts::prove`]).
    pub fn prove(&self) -> Result<InclusionProof> {
        match &self.parts {
            Ok(parts) => parts.prove(self.receipt.seq),
            Err(e) => Err(LedgerError::InvalidProof(e.clone())),
        }
    }
}

/// Receipts by organization and `DCR-…` id, each with what proves it against the current tree,
/// for many receipts in one statement (the server batches concurrent proof reads). Each is a
/// primary-key probe, as [`super::get`]; keys that name no receipt are left out.
pub async fn receipts_with_proofs(
    client: &impl GenericClient,
    keys: &[(Uuid, String)],
) -> Result<Vec<((Uuid, String), ProvenReceipt)>> {
    let (mut orgs, mut seqs, mut ids) = (Vec::new(), Vec::new(), Vec::new());
    for (org, id) in keys {
        if let Some(seq) = super::reads::seq_of(id) {
            orgs.push(*org);
            seqs.push(seq);
            ids.push(id.as_str());
        }
    }
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let statement = client
        .prepare_cached(&format!(
            "SELECT {}, {PROOF_COLUMNS}
               FROM unnest($1::uuid[], $2::bigint[], $3::text[]) AS k(org_id, seq, receipt_id)
               JOIN receipts r
                 ON r.org_id = k.org_id AND r.seq = k.seq AND r.receipt_id = k.receipt_id
               {PROOF_JOINS}",
            super::COLUMNS_R
        ))
        .await?;
    let rows = client.query(&statement, &[&orgs, &seqs, &ids]).await?;
    Ok(rows
        .iter()
        .map(|row| {
            let proven = ProvenReceipt::from_row(row);
            let key = (proven.receipt.org, proven.receipt.receipt_id.clone());
            (key, proven)
        })
        .collect())
}

/// One receipt by its `DCR-…` id with what proves it against the current tree
/// ([`receipts_with_proofs`] for one key); `None` when there is no such receipt.
pub async fn get_with_proof(
    client: &impl GenericClient,
    org: Uuid,
    receipt_id: &str,
) -> Result<Option<ProvenReceipt>> {
    let found = receipts_with_proofs(client, &[(org, receipt_id.to_owned())]).await?;
    Ok(found.into_iter().next().map(|(_, proven)| proven))
}

/// The consistency proof from `from` leaves to the current tree in one statement, from one
/// snapshot ([`PROOF_COLUMNS`] around leaf `from - 1`, and [`ANCESTOR_COLUMNS`]).
pub(super) async fn consistency_current(
    client: &impl GenericClient,
    log: &LogSigner,
    org: Uuid,
    from: u64,
) -> Result<ConsistencyProof> {
    if !consistency_from_ok(from) {
        let size = tree_edge(client, org).await?.size();
        check_size(size, size, "to")?;
        check_size(from, size, "from")?;
    }
    let statement = client
        .prepare_cached(&format!(
            "SELECT {PROOF_COLUMNS}, {ANCESTOR_COLUMNS}
               FROM (SELECT $1::uuid AS org_id, $2::bigint AS seq, $3::smallint AS level) r
               {PROOF_JOINS} {ANCESTOR_JOINS}"
        ))
        .await?;
    let row = client
        .query_one(
            &statement,
            &[&org, &((from - 1) as i64), &ancestor_level(from)],
        )
        .await?;
    ConsistencyParts::from_row(&row, 0, from)?.prove(log, org)
}
