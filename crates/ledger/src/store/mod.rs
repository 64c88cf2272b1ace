//! The PostgreSQL store: receipts with their canonical bytes, a head row per organization (chain
//! head plus the Merkle tree's size and right edge), the tree's perfect nodes, and share links.
//!
//! The chain rule: a receipt is placed at `head.seq + 1` after `head.hash`, and it is inserted
//! in the same transaction that moves the head from exactly that `(seq, hash)`. Two ways keep
//! the head from moving underneath:
//!
//! - the locking path ([`append`]) locks the head row (`SELECT … FOR UPDATE`, orgs in sorted
//!   order) before sealing: [`append_in`], which joins the caller's transaction so a business
//!   write and its receipt commit together, and batches that carry an idempotency key or an
//!   audit event;
//! - the compare-and-set path ([`batch`]) seals against a cached head and commits every
//!   organization's receipts in one statement that moves a head only if it is still where the
//!   cache says, and inserts receipts only for the heads it moved; a stale cache (another process
//!   appended) is re-read and retried, then handed to the locking path.
//!
//! The tree rule ([`tree`]): whichever path moves a head also extends the tree in the same
//! transaction when the tree covers the whole chain (`tree_size == seq + 1`), inserting the new
//! perfect nodes and the new right edge. A receipt inserted by a binary that predates the tree
//! leaves the tree short of the chain; the next append on the locking path and the background
//! integrator ([`integrate_all`]) add the missing leaves in seq order, and checkpoints and proofs
//! only ever cover integrated leaves. The tree never disagrees with the chain, it can only lag.
//!
//! Either way appends to one organization are serialized across every process on the database:
//! no fork, no gap, and the primary keys `(org_id, seq)` and `(org_id, level, idx)` refuse a
//! duplicate even if the rule were broken. A receipt is acknowledged only after its commit.

mod append;
mod batch;
mod current;
mod reads;
mod shares;
mod tree;

use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::merkle::TreeEdge;
use crate::receipt::{Hash, Sealed};
use crate::LedgerError;

pub use append::{append_in, receipt_created, request_fingerprint, AppendOptions, Appended};
pub use batch::{BatchAppender, BatchObserver};
pub use current::{
    consistency_from_ok, get_with_proof, receipts_with_proofs, ConsistencyParts, ProofParts,
    ProvenReceipt,
};
pub use reads::{get, head, list, orgs, projections_page, verify_all, verify_org, ChainReport};
pub use shares::{
    create_share, revoke_shares, share_receipt, shared_consistency, shared_proofs, shared_receipts,
    unshare_receipt, NewShare, SharedConsistency,
};
pub use tree::{
    bundle_of, consistency_proof, integrate, integrate_all, proof_bundle, prove_receipt,
    signed_checkpoint, tile, tree_edge, InclusionProof, TileRequest,
};

type Result<T> = std::result::Result<T, LedgerError>;

/// Applies the ledger's tables to a database of another service (with their own history table,
/// `defendable_ledger_schema_history`). Defendable itself gets them from its own migrations.
pub async fn migrate(pool: &deadpool_postgres::Pool) -> Result<()> {
    let migrations = [
        refinery::Migration::unapplied(
            "V1__ledger",
            include_str!("../../../../migrations/V3__ledger.sql"),
        ),
        refinery::Migration::unapplied(
            "V2__ledger_tree",
            include_str!("../../../../migrations/V6__ledger_tree.sql"),
        ),
    ]
    .into_iter()
    .collect::<std::result::Result<Vec<_>, _>>()
    .map_err(defendable_store::StoreError::from)?;
    let mut client = pool.get().await?;
    let client: &mut tokio_postgres::Client = &mut client;
    refinery::Runner::new(&migrations)
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
    pub fn projection(&self) -> crate::Projection {
        crate::Projection {
            body: self.body(),
            hash: self.hash.clone(),
            receipt_id: self.receipt_id.clone(),
        }
    }

    /// The body as the stored canonical bytes, for writing without a parse; `null` if they are
    /// not JSON (as [`StoredReceipt::body`]).
    pub fn raw_body(&self) -> &serde_json::value::RawValue {
        serde_json::from_slice(&self.canonical).unwrap_or(serde_json::value::RawValue::NULL)
    }

    /// [`StoredReceipt::projection`], borrowed, the body written as stored.
    pub fn projection_out(&self) -> crate::view::ProjectionOut<'_> {
        crate::view::ProjectionOut {
            body: self.raw_body(),
            hash: &self.hash,
            receipt_id: &self.receipt_id,
        }
    }

    /// Whether members see the private part: not for the kinds of
    /// [`crate::receipt::OWNER_ONLY_PRIVATE_KINDS`].
    pub fn private_for_members(&self) -> bool {
        !crate::receipt::OWNER_ONLY_PRIVATE_KINDS.contains(&self.kind.as_str())
    }

    /// The private part and salt as members see them.
    fn member_private(&self) -> (Option<&Value>, Option<String>) {
        if self.private_for_members() {
            (self.private.as_ref(), self.salt.as_ref().map(hex::encode))
        } else {
            (None, None)
        }
    }

    /// [`StoredReceipt::member_view`], borrowed, the body written as stored.
    pub fn member_view_out(&self) -> crate::view::ReceiptViewOut<'_> {
        let (private, salt) = self.member_private();
        crate::view::ReceiptViewOut {
            receipt_id: &self.receipt_id,
            hash: &self.hash,
            body: self.raw_body(),
            private,
            salt,
        }
    }

    /// The member view: the projection plus `private` and `salt` (hex), both null for the
    /// kinds whose private part is for owners only.
    pub fn member_view(&self) -> crate::ReceiptView {
        let (private, salt) = self.member_private();
        crate::ReceiptView {
            receipt_id: self.receipt_id.clone(),
            hash: self.hash.clone(),
            body: self.body(),
            private: private.cloned().unwrap_or(Value::Null),
            salt,
        }
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
/// [`COLUMNS`] of the receipt aliased `r`.
const COLUMNS_R: &str =
    "r.org_id, r.seq, r.receipt_id, r.hash, r.parent, r.kind, r.created_at, r.canonical, r.private, r.salt";
/// How many columns [`row_receipt`] reads.
const COLUMNS_COUNT: usize = 10;

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

/// An organization's head row: the chain's last `(seq, hash)` and the tree's right edge.
#[derive(Debug, Clone, PartialEq)]
struct Head {
    seq: i64,
    hash: Hash,
    edge: TreeEdge,
}

impl Head {
    /// The columns [`Head::from_row`] reads, after `org_id`.
    const COLUMNS: &'static str = "seq, hash, tree_size, tree_edge";

    /// Parses `seq, hash, tree_size, tree_edge` starting at column `at`.
    fn from_row(row: &tokio_postgres::Row, at: usize) -> Result<Head> {
        let size: i64 = row.get(at + 2);
        Ok(Head {
            seq: row.get(at),
            hash: Hash::parse(row.get(at + 1))?,
            edge: TreeEdge::from_bytes(size as u64, row.get(at + 3))?,
        })
    }

    /// Whether the tree covers the whole chain, so a new receipt extends it directly.
    fn tree_complete(&self) -> bool {
        self.edge.size() as i64 == self.seq + 1
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use time::OffsetDateTime;
    use uuid::Uuid;

    use super::StoredReceipt;
    use crate::{seal, Draft, Hash, ReceiptKind};

    /// The borrowed views write the bytes the owned views write: same fields, same order, and
    /// a canonical body re-serialized from its parse is the canonical body itself. Bodies with
    /// escapes, non-ASCII text, nesting and extreme integers; with and without a private part.
    #[test]
    fn borrowed_views_write_what_the_owned_views_write() {
        let bodies = [
            json!({"suite": "integration", "passed": 42}),
            json!({"text": "quote \" backslash \\ tab \t nl \n bell \u{7} nul \u{0} é 日本 🎉 \u{2028}",
                   "nested": {"z": [1, -2, {"b": null, "a": true}], "a": []},
                   "big": 9007199254740991i64, "neg": -9007199254740991i64, "zero": 0}),
        ];
        for (i, public) in bodies.into_iter().enumerate() {
            for private in [None, Some(json!({"secret": "s3cr3t", "n": i}))] {
                let draft = Draft::new(
                    ReceiptKind::parse("run").expect("kind"),
                    public.clone(),
                    private,
                )
                .expect("draft");
                let sealed = seal(
                    Uuid::new_v4(),
                    i as u64,
                    Hash::GENESIS,
                    OffsetDateTime::now_utc(),
                    draft,
                )
                .expect("seal");
                let stored = StoredReceipt::from(&sealed);
                assert_eq!(
                    serde_json::to_string(&stored.member_view_out()).expect("out"),
                    serde_json::to_string(&stored.member_view()).expect("owned"),
                );
                assert_eq!(
                    serde_json::to_string(&stored.projection_out()).expect("out"),
                    serde_json::to_string(&stored.projection()).expect("owned"),
                );
            }
        }
    }
}
