//! The Merkle tree in storage: node rows, integration of leaves the tree does not cover yet, and
//! every read that proves something (inclusion, consistency, checkpoints, tiles).
//!
//! Perfect nodes from level [`STORED_FROM_LEVEL`] up live in `ledger_nodes`; leaf `i` is derived
//! from `receipts.hash` of seq `i` and the few nodes in between are folded from leaves; the right
//! edge (and so the root) of the current tree lives in the head row. Every proof names its nodes
//! first and fetches them in one statement.

use std::collections::{BTreeSet, HashMap};

use deadpool_postgres::{GenericClient, Pool, Transaction};
use futures_util::{pin_mut, TryStreamExt};
use uuid::Uuid;

use super::{Head, Result, StoredReceipt};
use crate::bundle::{ConsistencyProof, ProofBundle};
use crate::merkle::{self, NodeId, NodeMap, TileId, TreeEdge, TreeHash};
use crate::note::LogSigner;
use crate::receipt::Hash;
use crate::LedgerError;

/// The lowest level kept in `ledger_nodes`. Nodes below it cover at most 8 leaves and are folded
/// from the receipts' hashes when a proof needs them, so an append writes one node row per 16
/// receipts instead of one per receipt (the tree's cost on the append path), and a proof reads
/// at most 2 × 15 extra leaf hashes.
pub(super) const STORED_FROM_LEVEL: u8 = 4;

/// New perfect nodes kept in storage, as columns for one `unnest` insert.
#[derive(Debug, Default)]
pub(super) struct NodeRows {
    pub(super) org: Vec<Uuid>,
    pub(super) level: Vec<i16>,
    pub(super) idx: Vec<i64>,
    pub(super) hash: Vec<Vec<u8>>,
}

impl NodeRows {
    /// Appends receipt `hash` as the next leaf of `edge`, keeping the new nodes that are stored.
    pub(super) fn append(&mut self, org: Uuid, edge: &mut TreeEdge, hash: &Hash) {
        for (id, h) in edge.append(merkle::leaf_hash(hash)) {
            if id.level >= STORED_FROM_LEVEL {
                self.org.push(org);
                self.level.push(i16::from(id.level));
                self.idx.push(id.index as i64);
                self.hash.push(h.0.to_vec());
            }
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.org.is_empty()
    }
}

/// Inserts node rows in one statement.
pub(super) async fn insert_nodes(client: &impl GenericClient, rows: &NodeRows) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let statement = client
        .prepare_cached(
            "INSERT INTO ledger_nodes (org_id, level, idx, hash)
             SELECT * FROM unnest($1::uuid[], $2::smallint[], $3::bigint[], $4::bytea[])",
        )
        .await?;
    client
        .execute(&statement, &[&rows.org, &rows.level, &rows.idx, &rows.hash])
        .await?;
    Ok(())
}

/// Integrates up to `limit` receipts the tree does not cover yet (inserted by a binary that
/// predates the tree), in seq order, inside the caller's transaction, which holds the head lock.
pub(super) async fn catch_up(
    tx: &Transaction<'_>,
    org: Uuid,
    head: &mut Head,
    limit: u64,
    rows: &mut NodeRows,
) -> Result<()> {
    let from = head.edge.size();
    let to = ((head.seq + 1) as u64).min(from.saturating_add(limit));
    if from >= to {
        return Ok(());
    }
    let hashes = tx
        .query(
            &tx.prepare_cached("SELECT seq, hash, canonical FROM receipts WHERE org_id = $1 AND seq >= $2 AND seq < $3 ORDER BY seq").await?,
            &[&org, &(from as i64), &(to as i64)],
        )
        .await?;
    for (expected, row) in (from..to).zip(&hashes) {
        if row.get::<_, i64>(0) as u64 != expected {
            return Err(LedgerError::InvalidProof(format!(
                "org {org}: receipt seq {expected} is missing; the tree cannot cover it"
            )));
        }
        // A receipt another binary wrote enters the tree only if its stored hash is its body's.
        let hash = Hash::parse(row.get(1))?;
        if Hash::of(row.get(2)) != hash {
            return Err(LedgerError::InvalidProof(format!(
                "org {org}: receipt seq {expected}: hash does not match the canonical bytes; the tree will not cover it"
            )));
        }
        rows.append(org, &mut head.edge, &hash);
    }
    if hashes.len() as u64 != to - from {
        return Err(LedgerError::InvalidProof(format!(
            "org {org}: receipts {from}..{to} are not all stored; the tree cannot cover them"
        )));
    }
    Ok(())
}

/// Brings `org`'s tree up to its chain, `chunk` receipts per transaction (each holding the head
/// lock only briefly). Returns the leaves added.
pub async fn integrate(pool: &Pool, org: Uuid, chunk: u64) -> Result<u64> {
    let mut added = 0;
    loop {
        let mut client = pool.get().await?;
        let tx = client.transaction().await?;
        let statement = tx
            .prepare_cached(&format!(
                "SELECT {} FROM ledger_heads WHERE org_id = $1 FOR UPDATE",
                Head::COLUMNS
            ))
            .await?;
        let row = tx.query_opt(&statement, &[&org]).await?;
        let Some(row) = row else { return Ok(added) };
        let mut head = Head::from_row(&row, 0)?;
        if head.tree_complete() {
            return Ok(added);
        }
        let before = head.edge.size();
        let mut rows = NodeRows::default();
        catch_up(&tx, org, &mut head, chunk.max(1), &mut rows).await?;
        insert_nodes(&tx, &rows).await?;
        tx.execute(
            &tx.prepare_cached(
                "UPDATE ledger_heads SET tree_size = $2, tree_edge = $3 WHERE org_id = $1",
            )
            .await?,
            &[&org, &(head.edge.size() as i64), &head.edge.to_bytes()],
        )
        .await?;
        tx.commit().await?;
        added += head.edge.size() - before;
        tracing::info!(org_id = %org, tree_size = head.edge.size(), chain_size = head.seq + 1, "integrated receipts into the tree");
    }
}

/// Integrates every organization whose tree lags its chain (after a deploy that overlapped the
/// previous release, or after the migration that introduced the tree). Returns the leaves added;
/// an organization that fails is logged and skipped, and the error is returned only when nothing
/// at all could be added.
pub async fn integrate_all(pool: &Pool, chunk: u64) -> Result<u64> {
    let lagging: Vec<Uuid> = {
        let client = pool.get().await?;
        client
            .query(
                &client
                    .prepare_cached(
                        "SELECT org_id FROM ledger_heads WHERE tree_size < seq + 1 ORDER BY org_id",
                    )
                    .await?,
                &[],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    // One organization that cannot be integrated (a receipt missing or altered) must not hold
    // the others back: it is reported and left lagging, and checkpoints stay where they were.
    let mut added = 0;
    let mut first_error = None;
    for org in lagging {
        match integrate(pool, org, chunk).await {
            Ok(n) => added += n,
            Err(e) => {
                tracing::error!(org_id = %org, error = %e, "could not integrate receipts into the tree");
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) if added == 0 => Err(e),
        _ => Ok(added),
    }
}

/// The right edge of `org`'s tree: its size and root (the empty tree when it has no chain).
pub async fn tree_edge(client: &impl GenericClient, org: Uuid) -> Result<TreeEdge> {
    let statement = client
        .prepare_cached("SELECT tree_size, tree_edge FROM ledger_heads WHERE org_id = $1")
        .await?;
    match client.query_opt(&statement, &[&org]).await? {
        Some(row) => TreeEdge::from_bytes(row.get::<_, i64>(0) as u64, row.get(1)),
        None => Ok(TreeEdge::empty()),
    }
}

/// Fetches nodes in one statement: leaves from the receipts' hashes, nodes below
/// [`STORED_FROM_LEVEL`] folded from their (at most 8) leaves, the rest from `ledger_nodes`. A
/// node that cannot be found is simply absent from the map.
async fn fetch_nodes(client: &impl GenericClient, org: Uuid, ids: &[NodeId]) -> Result<NodeMap> {
    let mut leaves = BTreeSet::new();
    for id in ids.iter().filter(|id| id.level < STORED_FROM_LEVEL) {
        let first = id.index << id.level;
        leaves.extend((first..first + (1u64 << id.level)).map(|s| s as i64));
    }
    let leaves: Vec<i64> = leaves.into_iter().collect();
    let (levels, idxs): (Vec<i16>, Vec<i64>) = ids
        .iter()
        .filter(|id| id.level >= STORED_FROM_LEVEL)
        .map(|id| (i16::from(id.level), id.index as i64))
        .unzip();
    let statement = client
        .prepare_cached(
            // LATERAL keeps every lookup a primary-key probe: a join against the unnested ids
            // can be planned as a hash join that scans the whole organization.
            "SELECT 0::smallint, q.seq, decode(r.hash, 'hex')
               FROM unnest($2::bigint[]) AS q(seq)
               CROSS JOIN LATERAL (SELECT hash FROM receipts
                                    WHERE org_id = $1 AND seq = q.seq) r
             UNION ALL
             SELECT q.level, q.idx, n.hash
               FROM unnest($3::smallint[], $4::bigint[]) AS q(level, idx)
               CROSS JOIN LATERAL (SELECT hash FROM ledger_nodes
                                    WHERE org_id = $1 AND level = q.level AND idx = q.idx) n",
        )
        .await?;
    let rows = client
        .query(&statement, &[&org, &leaves, &levels, &idxs])
        .await?;
    let mut nodes = HashMap::with_capacity(rows.len() + ids.len());
    for row in rows {
        let bytes: &[u8] = row.get(2);
        let hash: [u8; 32] = bytes.try_into().map_err(|_| {
            LedgerError::InvalidProof(format!("org {org}: a stored tree hash is not 32 bytes"))
        })?;
        let id = NodeId {
            level: row.get::<_, i16>(0) as u8,
            index: row.get::<_, i64>(1) as u64,
        };
        let hash = if id.level == 0 {
            merkle::leaf_hash(&Hash(hash))
        } else {
            TreeHash(hash)
        };
        nodes.insert(id, hash);
    }
    for id in ids
        .iter()
        .filter(|id| id.level > 0 && id.level < STORED_FROM_LEVEL)
    {
        let first = id.index << id.level;
        let below: Option<Vec<TreeHash>> = (first..first + (1u64 << id.level))
            .map(|i| nodes.get(&NodeId { level: 0, index: i }).copied())
            .collect();
        if let Some(below) = below {
            nodes.insert(*id, merkle::root_of_leaves(below).1);
        }
    }
    Ok(nodes)
}

/// Fetches `ids` and the root of the tree of `size` leaves in one statement: the current tree's
/// root comes from its edge, an earlier tree's from its own compact range.
async fn fetch_with_root(
    client: &impl GenericClient,
    org: Uuid,
    edge: &TreeEdge,
    size: u64,
    mut ids: Vec<NodeId>,
) -> Result<(NodeMap, TreeHash)> {
    if size == edge.size() {
        return Ok((fetch_nodes(client, org, &ids).await?, edge.root()));
    }
    ids.extend(merkle::root_nodes(size));
    let nodes = fetch_nodes(client, org, &ids).await?;
    let root = merkle::root(size, &nodes)?;
    Ok((nodes, root))
}

/// Checks `1 ≤ size ≤ current` for a size a caller asked for.
pub(super) fn check_size(size: u64, current: u64, what: &str) -> Result<()> {
    if size == 0 || size > current {
        return Err(LedgerError::OutOfRange(format!(
            "{what} {size} is not between 1 and the current tree size {current}"
        )));
    }
    Ok(())
}

/// An inclusion proof against the tree of `size` leaves.
#[derive(Debug, Clone, PartialEq)]
pub struct InclusionProof {
    /// Leaves in the tree proved against.
    pub size: u64,
    /// That tree's root.
    pub root: TreeHash,
    /// The inclusion path, leaf's sibling first.
    pub path: Vec<TreeHash>,
}

/// Proves receipt `seq` against the current tree, or the tree of `size` leaves
/// (`seq < size ≤ current`). A receipt the tree does not cover yet is
/// [`LedgerError::NotIntegrated`]. Against the current tree it is one statement
/// ([`super::current`]); against a given size, two (the edge, then the nodes).
pub async fn prove_receipt(
    client: &impl GenericClient,
    org: Uuid,
    seq: u64,
    size: Option<u64>,
) -> Result<InclusionProof> {
    let Some(size) = size else {
        return super::current::prove_current(client, org, seq).await;
    };
    let edge = tree_edge(client, org).await?;
    check_size(size, edge.size(), "size")?;
    if seq >= size {
        return Err(LedgerError::OutOfRange(format!(
            "receipt seq {seq} is not in the tree of size {size}: ask for a size above {seq}"
        )));
    }
    let (nodes, root) = fetch_with_root(
        client,
        org,
        &edge,
        size,
        merkle::inclusion_nodes(seq, size)?,
    )
    .await?;
    Ok(InclusionProof {
        size,
        root,
        path: merkle::prove_inclusion(seq, size, &nodes)?,
    })
}

/// The v2 proof bundle of `receipt` from its inclusion proof, with the signed checkpoint of the
/// tree it proves against.
pub fn bundle_of(
    log: &LogSigner,
    receipt: &StoredReceipt,
    proof: &InclusionProof,
) -> Result<ProofBundle> {
    let checkpoint = log.sign(receipt.org, proof.size, proof.root)?;
    Ok(ProofBundle::new(
        receipt.projection(),
        receipt.seq,
        &proof.path,
        checkpoint,
    ))
}

/// The v2 proof bundle of `receipt` (DESIGN §2b): its projection, its inclusion path and the
/// signed checkpoint of the current tree (or of `size` leaves). It carries no other receipt.
pub async fn proof_bundle(
    client: &impl GenericClient,
    log: &LogSigner,
    receipt: &StoredReceipt,
    size: Option<u64>,
) -> Result<ProofBundle> {
    let proof = prove_receipt(client, receipt.org, receipt.seq, size).await?;
    bundle_of(log, receipt, &proof)
}

/// The consistency proof from `from` leaves to `to` (default: the current tree), with the signed
/// checkpoint of `to` (`1 ≤ from ≤ to ≤ current`).
pub async fn consistency_proof(
    client: &impl GenericClient,
    log: &LogSigner,
    org: Uuid,
    from: u64,
    to: Option<u64>,
) -> Result<ConsistencyProof> {
    if to.is_none() {
        return super::current::consistency_current(client, log, org, from).await;
    }
    let edge = tree_edge(client, org).await?;
    let to = to.unwrap_or(edge.size());
    check_size(to, edge.size(), "to")?;
    check_size(from, to, "from")?;
    let (nodes, root) =
        fetch_with_root(client, org, &edge, to, merkle::consistency_nodes(from, to)?).await?;
    Ok(ConsistencyProof {
        from,
        to,
        consistency: merkle::to_base64(&merkle::prove_consistency(from, to, &nodes)?),
        checkpoint: log.sign(org, to, root)?,
    })
}

/// The signed checkpoint of `org`'s current tree, with its size.
pub async fn signed_checkpoint(
    client: &impl GenericClient,
    log: &LogSigner,
    org: Uuid,
) -> Result<(u64, String)> {
    let edge = tree_edge(client, org).await?;
    Ok((edge.size(), log.sign(org, edge.size(), edge.root())?))
}

/// What a tile read asks for.
pub type TileRequest = TileId;

/// The bytes of a hash tile (`width` × 32), or `None` when the current tree does not hold it.
pub async fn tile(client: &impl GenericClient, org: Uuid, tile: TileId) -> Result<Option<Vec<u8>>> {
    let edge = tree_edge(client, org).await?;
    if !tile.within(edge.size()) {
        return Ok(None);
    }
    let (first, end) = (
        tile.first() as i64,
        (tile.first() + u64::from(tile.width)) as i64,
    );
    let mut out = Vec::with_capacity(tile.width as usize * 32);
    if tile.level == 0 {
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] = [&org, &first, &end];
        let stream = client
            .query_raw(
                "SELECT hash FROM receipts WHERE org_id = $1 AND seq >= $2 AND seq < $3 ORDER BY seq",
                params,
            )
            .await?;
        pin_mut!(stream);
        while let Some(row) = stream.try_next().await? {
            out.extend_from_slice(&merkle::leaf_hash(&Hash::parse(row.get(0))?).0);
        }
    } else {
        let level = i16::from(tile.tree_level());
        for row in client
            .query(
                &client.prepare_cached("SELECT hash FROM ledger_nodes WHERE org_id = $1 AND level = $2 AND idx >= $3 AND idx < $4 ORDER BY idx").await?,
                &[&org, &level, &first, &end],
            )
            .await?
        {
            out.extend_from_slice(row.get::<_, &[u8]>(0));
        }
    }
    if out.len() != tile.width as usize * 32 {
        return Err(LedgerError::InvalidProof(format!(
            "org {org}: tile {}/{} is missing stored hashes",
            tile.level, tile.index
        )));
    }
    Ok(Some(out))
}
