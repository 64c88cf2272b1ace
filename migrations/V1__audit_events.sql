-- The append-only audit log. Every consequential change records one row in the same transaction.
CREATE TABLE audit_events (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    occurred_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    action      TEXT NOT NULL CHECK (action ~ '^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$' AND length(action) <= 64),
    actor_kind  TEXT NOT NULL CHECK (actor_kind IN ('anonymous', 'user', 'api_key', 'internal', 'runner', 'webhook', 'system')),
    actor_id    UUID,
    org_id      UUID,
    target      TEXT CHECK (length(target) <= 256),
    request_id  TEXT CHECK (length(request_id) <= 128),
    ip          INET,
    user_agent  TEXT CHECK (length(user_agent) <= 512),
    details     JSONB NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(details) = 'object')
);

CREATE INDEX audit_events_org_idx ON audit_events (org_id, id);
CREATE INDEX audit_events_action_idx ON audit_events (action, occurred_at);

-- Rows are never updated or deleted; retention, when it comes, is a separate, audited job.
CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only' USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER audit_events_no_update_delete
    BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();

CREATE TRIGGER audit_events_no_truncate
    BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();
