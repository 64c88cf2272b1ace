-- Datasets: a catalog of verified versions, a daily download quota per organization, and
-- download grants, each tied to its dataset.download receipt and that receipt's share link.

CREATE TABLE datasets (
    slug            TEXT PRIMARY KEY CHECK (slug ~ '^[a-z0-9][a-z0-9._-]{1,63}$'),
    title           TEXT NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    description     TEXT NOT NULL CHECK (length(description) <= 4000),
    license         TEXT NOT NULL CHECK (length(license) BETWEEN 1 AND 200),
    media_type      TEXT NOT NULL CHECK (length(media_type) BETWEEN 1 AND 200),
    current_version TEXT NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Only versions whose bytes the API has hashed itself are stored, so every row is verified.
CREATE TABLE dataset_versions (
    slug        TEXT NOT NULL REFERENCES datasets (slug),
    version     TEXT NOT NULL,
    object_key  TEXT NOT NULL,
    size        BIGINT NOT NULL CHECK (size >= 0),
    blake3      TEXT NOT NULL CHECK (blake3 ~ '^[0-9a-f]{64}$'),
    verified_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (slug, version)
);

CREATE TABLE dataset_quota_limits (
    org_id      UUID PRIMARY KEY,
    daily_limit INTEGER NOT NULL CHECK (daily_limit >= 0),
    plan        TEXT,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE dataset_quota_usage (
    org_id UUID NOT NULL,
    day    DATE NOT NULL,
    used   INTEGER NOT NULL CHECK (used >= 0),
    PRIMARY KEY (org_id, day)
);

CREATE TABLE dataset_grants (
    id          UUID PRIMARY KEY,
    org_id      UUID NOT NULL,
    seq         BIGINT NOT NULL,
    slug        TEXT NOT NULL,
    version     TEXT NOT NULL,
    object_key  TEXT NOT NULL,
    user_id     UUID,
    api_key_id  UUID,
    expires_at  TIMESTAMPTZ NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (org_id, seq),
    FOREIGN KEY (org_id, seq) REFERENCES receipts (org_id, seq)
);

-- One dataset.catalog audit event per principal per minute, across every process.
CREATE TABLE dataset_catalog_views (
    principal TEXT NOT NULL,
    minute    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (principal, minute)
);
