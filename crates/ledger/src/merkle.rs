//! The RFC 9162 Merkle tree over one organization's receipts (DESIGN §2b), built on
//! `tlog_tiles` (a port of Go's `sumdb/tlog`).
//!
//! Leaf i is the receipt with seq i and its leaf data is the 32 raw bytes of the receipt hash, so
//! `leaf_hash = SHA-256(0x00 || SHA-256(JCS(body)))`. Node `(level, index)` covers leaves
//! `[index·2^level, (index+1)·2^level)`; it is *perfect* once the tree has that many leaves and
//! never changes after. Stores keep perfect nodes. Every proof here first names the nodes it
//! needs ([`inclusion_nodes`], [`consistency_nodes`], [`root_nodes`]), so a store fetches them in
//! one round trip, then builds the proof from what it fetched.

use std::cell::RefCell;
use std::collections::HashMap;

use tlog_tiles::{
    check_record, check_tree, prove_record, prove_tree, record_hash, split_stored_hash_index,
    stored_hashes_for_record_hash, sub_tree_index, tree_hash, HashReader,
};

use crate::receipt::Hash;
use crate::LedgerError;

/// A tree hash (leaf, node or root): 32 bytes, shown as standard base64 like every hash of §2b.
pub use tlog_tiles::Hash as TreeHash;

/// The root of the empty tree, `SHA-256("")`.
pub const EMPTY_ROOT: TreeHash = tlog_tiles::EMPTY_HASH;

/// A node of the tree: `(level, index)` covers leaves `[index·2^level, (index+1)·2^level)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    /// Height above the leaves (0 = a leaf).
    pub level: u8,
    /// Position within the level.
    pub index: u64,
}

impl NodeId {
    fn from_stored(stored: u64) -> NodeId {
        let (level, index) = split_stored_hash_index(stored);
        NodeId { level, index }
    }
}

/// Node hashes fetched from a store, by node.
pub type NodeMap = HashMap<NodeId, TreeHash>;

/// The leaf hash of a receipt: `SHA-256(0x00 || receipt hash bytes)`.
pub fn leaf_hash(receipt: &Hash) -> TreeHash {
    record_hash(&receipt.0)
}

/// Parses a standard-base64 tree hash.
pub fn parse_tree_hash(s: &str) -> Result<TreeHash, LedgerError> {
    TreeHash::parse_hash(s).map_err(|_| LedgerError::InvalidHash(s.chars().take(80).collect()))
}

/// Records which stored indexes the library asks for, answering with zeros.
#[derive(Default)]
struct Recorder(RefCell<Vec<u64>>);

impl HashReader for Recorder {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<TreeHash>, tlog_tiles::Error> {
        self.0.borrow_mut().extend_from_slice(indexes);
        Ok(vec![TreeHash::default(); indexes.len()])
    }
}

/// Answers the library's reads from fetched nodes.
struct Fetched<'a>(&'a NodeMap);

impl HashReader for Fetched<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<TreeHash>, tlog_tiles::Error> {
        indexes
            .iter()
            .map(|&i| {
                self.0
                    .get(&NodeId::from_stored(i))
                    .copied()
                    .ok_or(tlog_tiles::Error::IndexesNotInTree)
            })
            .collect()
    }
}

/// The nodes a computation reads: the library's reads depend only on the sizes, never on the
/// hashes, so a dry run with zeros names them all.
fn nodes_read(run: impl FnOnce(&Recorder) -> Result<(), tlog_tiles::Error>) -> Vec<NodeId> {
    let recorder = Recorder::default();
    // A dry run fails only on input the callers have already checked.
    let _ = run(&recorder);
    let mut ids: Vec<NodeId> = recorder
        .0
        .into_inner()
        .into_iter()
        .map(NodeId::from_stored)
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

fn missing(e: tlog_tiles::Error) -> LedgerError {
    match e {
        tlog_tiles::Error::IndexesNotInTree => {
            LedgerError::InvalidProof("a tree node is missing from storage".into())
        }
        other => LedgerError::InvalidProof(other.to_string()),
    }
}

fn check_index(index: u64, size: u64) -> Result<(), LedgerError> {
    if index >= size {
        return Err(LedgerError::OutOfRange(format!(
            "leaf {index} is not in a tree of size {size}"
        )));
    }
    Ok(())
}

fn check_sizes(from: u64, to: u64) -> Result<(), LedgerError> {
    if from == 0 || from > to {
        return Err(LedgerError::OutOfRange(format!(
            "a consistency proof needs 1 ≤ from ≤ to; got from {from}, to {to}"
        )));
    }
    Ok(())
}

/// The nodes an inclusion proof of leaf `index` in a tree of `size` leaves reads.
pub fn inclusion_nodes(index: u64, size: u64) -> Result<Vec<NodeId>, LedgerError> {
    check_index(index, size)?;
    Ok(nodes_read(|r| prove_record(size, index, r).map(drop)))
}

/// The RFC 9162 §2.1.3.1 inclusion path of leaf `index` in a tree of `size` leaves, leaf's
/// sibling first.
pub fn prove_inclusion(
    index: u64,
    size: u64,
    nodes: &NodeMap,
) -> Result<Vec<TreeHash>, LedgerError> {
    check_index(index, size)?;
    prove_record(size, index, &Fetched(nodes)).map_err(missing)
}

/// The nodes a consistency proof from `from` to `to` leaves reads.
pub fn consistency_nodes(from: u64, to: u64) -> Result<Vec<NodeId>, LedgerError> {
    check_sizes(from, to)?;
    Ok(nodes_read(|r| prove_tree(to, from, r).map(drop)))
}

/// The RFC 9162 §2.1.4.1 consistency proof from `from` to `to` leaves (empty when equal).
pub fn prove_consistency(
    from: u64,
    to: u64,
    nodes: &NodeMap,
) -> Result<Vec<TreeHash>, LedgerError> {
    check_sizes(from, to)?;
    prove_tree(to, from, &Fetched(nodes)).map_err(missing)
}

/// The nodes the root of a tree of `size` leaves is folded from (its compact range, largest
/// subtree first).
pub fn root_nodes(size: u64) -> Vec<NodeId> {
    sub_tree_index(0, size, Vec::new())
        .into_iter()
        .map(NodeId::from_stored)
        .collect()
}

/// The root of a tree of `size` leaves.
pub fn root(size: u64, nodes: &NodeMap) -> Result<TreeHash, LedgerError> {
    tree_hash(size, &Fetched(nodes)).map_err(missing)
}

/// Checks an inclusion path (RFC 9162 §2.1.3.2): leaf `index` with hash `leaf` is in the tree of
/// `size` leaves with root `root`.
pub fn verify_inclusion(
    index: u64,
    size: u64,
    root: &TreeHash,
    leaf: &TreeHash,
    path: &[TreeHash],
) -> Result<(), LedgerError> {
    check_index(index, size)?;
    check_record(&path.to_vec(), size, *root, index, *leaf).map_err(|_| {
        LedgerError::InvalidProof(format!(
            "the inclusion path of leaf {index} does not lead to the root of size {size}"
        ))
    })
}

/// Checks a consistency proof (RFC 9162 §2.1.4.2): the tree of `from` leaves with root
/// `root_from` is a prefix of the tree of `to` leaves with root `root_to`.
pub fn verify_consistency(
    from: u64,
    to: u64,
    root_from: &TreeHash,
    root_to: &TreeHash,
    proof: &[TreeHash],
) -> Result<(), LedgerError> {
    check_sizes(from, to)?;
    check_tree(&proof.to_vec(), to, *root_to, from, *root_from).map_err(|_| {
        LedgerError::InvalidProof(format!(
            "the tree of size {from} is not a prefix of the tree of size {to}"
        ))
    })
}

/// The right edge of a tree (its compact range): the roots of the perfect subtrees of `size`'s
/// binary decomposition, largest first. It is all an appender needs to add leaves, emit the new
/// perfect nodes and compute the root, and it is at most 64 hashes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TreeEdge {
    size: u64,
    hashes: Vec<TreeHash>,
}

/// Answers reads of edge nodes while appending.
struct EdgeReader<'a>(&'a TreeEdge);

impl HashReader for EdgeReader<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<TreeHash>, tlog_tiles::Error> {
        let ids = root_nodes(self.0.size);
        indexes
            .iter()
            .map(|&i| {
                let id = NodeId::from_stored(i);
                ids.iter()
                    .position(|n| *n == id)
                    .map(|p| self.0.hashes[p])
                    .ok_or(tlog_tiles::Error::IndexesNotInTree)
            })
            .collect()
    }
}

impl TreeEdge {
    /// The empty tree.
    pub fn empty() -> TreeEdge {
        TreeEdge::default()
    }

    /// The edge of a tree of `size` leaves from its stored bytes (32 per subtree root).
    pub fn from_bytes(size: u64, bytes: &[u8]) -> Result<TreeEdge, LedgerError> {
        if bytes.len() != 32 * size.count_ones() as usize {
            return Err(LedgerError::InvalidProof(format!(
                "a tree of size {size} has {} edge hashes, storage holds {} bytes",
                size.count_ones(),
                bytes.len()
            )));
        }
        let hashes = bytes
            .chunks_exact(32)
            .map(|c| {
                let mut h = [0u8; 32];
                h.copy_from_slice(c);
                TreeHash(h)
            })
            .collect();
        Ok(TreeEdge { size, hashes })
    }

    /// The edge from fetched nodes (see [`root_nodes`]).
    pub fn from_nodes(size: u64, nodes: &NodeMap) -> Result<TreeEdge, LedgerError> {
        let hashes = root_nodes(size)
            .iter()
            .map(|id| {
                nodes.get(id).copied().ok_or_else(|| {
                    LedgerError::InvalidProof("a tree node is missing from storage".into())
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(TreeEdge { size, hashes })
    }

    /// The edge's nodes: the roots of the perfect subtrees of the size's binary decomposition,
    /// largest first (see [`root_nodes`]).
    pub fn nodes(&self) -> impl Iterator<Item = (NodeId, TreeHash)> + '_ {
        root_nodes(self.size)
            .into_iter()
            .zip(self.hashes.iter().copied())
    }

    /// The stored form: the edge hashes concatenated.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.hashes.iter().flat_map(|h| h.0).collect()
    }

    /// Leaves in the tree.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The root hash.
    pub fn root(&self) -> TreeHash {
        // The edge holds exactly the nodes the root is folded from, so this cannot miss.
        tree_hash(self.size, &EdgeReader(self)).unwrap_or(EMPTY_ROOT)
    }

    /// Appends a leaf; returns every node that became perfect, the leaf itself first.
    pub fn append(&mut self, leaf: TreeHash) -> Vec<(NodeId, TreeHash)> {
        let n = self.size;
        // The left siblings of the new subtrees are the smallest edge nodes, which the reader
        // holds, so this cannot fail.
        let hashes = stored_hashes_for_record_hash(n, leaf, &EdgeReader(self))
            .unwrap_or_else(|_| vec![leaf]);
        let completed = hashes.len() - 1;
        self.hashes.truncate(self.hashes.len() - completed);
        self.hashes.push(hashes[completed]);
        self.size += 1;
        hashes
            .into_iter()
            .enumerate()
            .map(|(level, h)| {
                (
                    NodeId {
                        level: level as u8,
                        index: n >> level,
                    },
                    h,
                )
            })
            .collect()
    }
}

/// The root of the tree over `leaves`, computed from the leaves alone (no stored node trusted).
pub fn root_of_leaves(leaves: impl IntoIterator<Item = TreeHash>) -> (u64, TreeHash) {
    let mut edge = TreeEdge::empty();
    for leaf in leaves {
        edge.append(leaf);
    }
    (edge.size(), edge.root())
}

/// Encodes hashes as standard base64 strings.
pub fn to_base64(hashes: &[TreeHash]) -> Vec<String> {
    hashes.iter().map(|h| h.to_string()).collect()
}

/// Decodes standard base64 strings into hashes.
pub fn from_base64(hashes: &[String]) -> Result<Vec<TreeHash>, LedgerError> {
    hashes.iter().map(|h| parse_tree_hash(h)).collect()
}

/// Hashes per full tile (C2SP tlog-tiles, height 8).
pub const TILE_WIDTH: u32 = 256;

/// A C2SP tlog-tiles hash tile: tile level `level` (tree level `8·level`), tile `index`,
/// `width` hashes (256 for a full tile).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TileId {
    /// Tile level (tree level `8·level`).
    pub level: u8,
    /// Tile index within its level.
    pub index: u64,
    /// Hashes in the tile, 1 to 256.
    pub width: u32,
}

impl TileId {
    /// Parses `<L>/<N>[.p/<W>]` (the part after `tile/`), with `<N>` in the spec's 3-digit
    /// groups (`x001/x234/067`).
    pub fn parse(path: &str) -> Result<TileId, LedgerError> {
        let bad = || {
            LedgerError::OutOfRange(format!(
                "{path:?} is not a tile path such as 0/x001/234.p/7"
            ))
        };
        // `tlog_tiles` asserts (panics) on a level of 64 or more and on a width of 0, so those
        // are refused here first; so is every level above 7 (tree level 64 and up).
        let parts: Vec<&str> = path.split('/').collect();
        let level_ok = parts[0].parse::<u8>().is_ok_and(|l| l < 8);
        let width_ok = match parts.len().checked_sub(2).map(|i| parts[i]) {
            Some(p) if p.ends_with(".p") => parts[parts.len() - 1]
                .parse::<u32>()
                .is_ok_and(|w| (1..TILE_WIDTH).contains(&w)),
            _ => true,
        };
        if !level_ok || !width_ok {
            return Err(bad());
        }
        let t = tlog_tiles::Tile::from_path(&format!("tile/8/{path}")).map_err(|_| bad())?;
        // Tile level 8 would hold nodes of tree level 64: no tree of 2^64 leaves exists.
        if t.is_data() || t.level() >= 8 || t.level_index() > u64::MAX / u64::from(TILE_WIDTH) {
            return Err(bad());
        }
        Ok(TileId {
            level: t.level(),
            index: t.level_index(),
            width: t.width(),
        })
    }

    /// The tree level of the tile's hashes.
    pub fn tree_level(&self) -> u8 {
        self.level * 8
    }

    /// The first node index (at [`TileId::tree_level`]) the tile holds.
    pub fn first(&self) -> u64 {
        self.index * u64::from(TILE_WIDTH)
    }

    /// Whether a tree of `size` leaves has every hash of this tile.
    pub fn within(&self, size: u64) -> bool {
        let available = size >> u32::from(self.tree_level());
        self.first()
            .checked_add(u64::from(self.width))
            .is_some_and(|end| end <= available)
    }
}
