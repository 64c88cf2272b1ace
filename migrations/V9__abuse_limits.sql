-- Dataset grants per person per UTC day, across all of their organizations (an API key's grants
-- count for the user who created it): free organizations do not multiply the daily quota.
CREATE TABLE dataset_user_usage (
    user_id UUID NOT NULL,
    day     DATE NOT NULL,
    used    INTEGER NOT NULL CHECK (used >= 0),
    PRIMARY KEY (user_id, day)
);

-- Refusals of anonymous and machine traffic (unknown share links, bad webhook signatures,
-- refused /internal calls), counted per source and minute. Only the first refusal of a source
-- in a minute writes an audit event, so hostile traffic cannot grow audit_events without bound.
-- UNLOGGED: a crash forgets recent counts, never an audit event.
CREATE UNLOGGED TABLE refusal_counts (
    source TEXT NOT NULL,
    minute TIMESTAMPTZ NOT NULL,
    hits   BIGINT NOT NULL,
    PRIMARY KEY (source, minute)
);
CREATE INDEX refusal_counts_minute_idx ON refusal_counts (minute);
