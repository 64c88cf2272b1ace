-- Ledger v2 (DESIGN §2b): each organization's receipts also form an RFC 9162 Merkle tree.
--
-- Expand only: the previous release keeps running during a deploy. It inserts receipts and moves
-- `seq`/`hash` without knowing these columns, so the tree can lag the chain (tree_size <= seq + 1)
-- but never disagree with it: integration (in the new release's append paths and its background
-- integrator) adds the missing leaves in seq order, and checkpoints cover only integrated leaves.

-- The tree's size and right edge (the roots of the perfect subtrees of tree_size's binary
-- decomposition, largest first, 32 bytes each): all an appender needs to extend the tree.
ALTER TABLE ledger_heads
    ADD COLUMN tree_size BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN tree_edge BYTEA NOT NULL DEFAULT ''::bytea,
    ADD CONSTRAINT ledger_heads_tree_within_chain CHECK (tree_size >= 0 AND tree_size <= seq + 1),
    ADD CONSTRAINT ledger_heads_tree_edge_hashes CHECK (length(tree_edge) % 32 = 0);

-- Perfect nodes of the tree, insert-only. Leaf hashes are not stored twice: leaf i is
-- SHA-256(0x00 || receipts.hash of seq i). The store keeps levels 4 and up (one row per 16
-- receipts) and folds the few nodes below from leaves when a proof needs them.
CREATE TABLE ledger_nodes (
    org_id UUID NOT NULL,
    level  SMALLINT NOT NULL CHECK (level BETWEEN 1 AND 63),
    idx    BIGINT NOT NULL CHECK (idx >= 0),
    hash   BYTEA NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (org_id, level, idx)
);
-- Hashes do not compress: keep them inline, never try.
ALTER TABLE ledger_nodes ALTER COLUMN hash SET STORAGE PLAIN;

CREATE FUNCTION ledger_nodes_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'tree nodes are append-only' USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER ledger_nodes_no_rewrite
    BEFORE UPDATE OR DELETE ON ledger_nodes
    FOR EACH ROW EXECUTE FUNCTION ledger_nodes_append_only();

CREATE TRIGGER ledger_nodes_no_truncate
    BEFORE TRUNCATE ON ledger_nodes
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_nodes_append_only();

-- Share links may expire; existing links never do.
ALTER TABLE receipt_shares ADD COLUMN expires_at TIMESTAMPTZ;
