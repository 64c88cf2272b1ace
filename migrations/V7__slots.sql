-- Concurrency slots shared by every server process (for now: ledger exports per principal).
-- A slot is held while its work runs and renewed as it progresses; a process that dies frees
-- its slots when they go stale. UNLOGGED: a crash forgets them, which only frees slots early.
CREATE UNLOGGED TABLE concurrency_slots (
    id          UUID PRIMARY KEY,
    scope       TEXT NOT NULL,
    acquired_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    renewed_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX concurrency_slots_scope_idx ON concurrency_slots (scope, renewed_at);
