-- Application-side rate limits: one fixed-window counter per bucket, shared by every process.
-- UNLOGGED: a crash forgets the counts, which only makes limits briefly lenient.
CREATE UNLOGGED TABLE rate_limit_counters (
    bucket       TEXT PRIMARY KEY,
    window_start TIMESTAMPTZ NOT NULL,
    hits         BIGINT NOT NULL
);
CREATE INDEX rate_limit_counters_window_idx ON rate_limit_counters (window_start);

-- Stripe webhook events already handled: a replay is acknowledged and does nothing.
CREATE TABLE stripe_events (
    id          TEXT PRIMARY KEY,
    type        TEXT NOT NULL,
    received_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Owners read their organization's audit log by org, action and time.
CREATE INDEX audit_events_org_action_idx ON audit_events (org_id, action, id);
