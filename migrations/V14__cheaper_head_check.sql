-- The ledger head's hash check, same rule (64 lowercase hex digits), cheaper to evaluate:
-- PostgreSQL's regex engine spends about 5.6 µs on the bounded repetition `{64}` per row, and
-- every batched append moves one head per organization in the batch (issue 14's profile of
-- 1,000 organizations: 6% of all CPU). A length test and an unbounded class take about 0.3 µs.
-- The table holds one row per organization, so re-validating it is quick.

ALTER TABLE ledger_heads
    DROP CONSTRAINT ledger_heads_hash_check,
    ADD CONSTRAINT ledger_heads_hash_check CHECK (octet_length(hash) = 64 AND hash ~ '^[0-9a-f]*$');
