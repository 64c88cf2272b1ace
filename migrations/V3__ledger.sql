-- The receipt ledger: one hash chain per organization. Rows are append-only; the only update
-- allowed is erasure of a receipt's private part and salt, which leaves every hash intact.
-- No foreign key to orgs: the ledger is embeddable in services that have no such table.

CREATE TABLE ledger_heads (
    org_id UUID PRIMARY KEY,
    seq    BIGINT NOT NULL CHECK (seq >= -1),
    hash   TEXT NOT NULL CHECK (hash ~ '^[0-9a-f]{64}$')
);

CREATE TABLE receipts (
    org_id     UUID NOT NULL,
    seq        BIGINT NOT NULL CHECK (seq >= 0),
    receipt_id TEXT NOT NULL,
    hash       TEXT NOT NULL,
    parent     TEXT NOT NULL,
    kind       TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    canonical  BYTEA NOT NULL,
    private    JSONB,
    salt       BYTEA,
    PRIMARY KEY (org_id, seq)
);
-- A receipt id names its seq (DCR-{seq}-{hash8}), so lookups by id use the primary key.
CREATE INDEX receipts_kind_idx ON receipts (org_id, kind, seq);

CREATE FUNCTION receipts_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE'
       AND NEW.org_id = OLD.org_id AND NEW.seq = OLD.seq AND NEW.receipt_id = OLD.receipt_id
       AND NEW.hash = OLD.hash AND NEW.parent = OLD.parent AND NEW.kind = OLD.kind
       AND NEW.created_at = OLD.created_at AND NEW.canonical = OLD.canonical
       AND NEW.private IS NULL AND NEW.salt IS NULL THEN
        RETURN NEW; -- erasure of the private part
    END IF;
    RAISE EXCEPTION 'receipts are append-only' USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER receipts_no_rewrite
    BEFORE UPDATE OR DELETE ON receipts
    FOR EACH ROW EXECUTE FUNCTION receipts_append_only();

CREATE TRIGGER receipts_no_truncate
    BEFORE TRUNCATE ON receipts
    FOR EACH STATEMENT EXECUTE FUNCTION receipts_append_only();

-- Idempotency-Key of receipt creation: a retried POST returns the receipt it created.
CREATE TABLE receipt_idempotency (
    org_id       UUID NOT NULL,
    key          TEXT NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    request_hash TEXT NOT NULL,
    seq          BIGINT,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, key)
);

-- Share links: the token is stored only as a hash.
CREATE TABLE receipt_shares (
    id         UUID PRIMARY KEY,
    org_id     UUID NOT NULL,
    seq        BIGINT NOT NULL,
    token_hash BYTEA NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    created_by UUID,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at TIMESTAMPTZ,
    FOREIGN KEY (org_id, seq) REFERENCES receipts (org_id, seq)
);
CREATE INDEX receipt_shares_receipt_idx ON receipt_shares (org_id, seq);
