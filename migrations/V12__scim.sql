-- SCIM 2.0 provisioning (issue 18). Expand only: new tables and nullable columns.

-- A connection's SCIM bearer token, stored as its SHA-256 only; rotating replaces the hash, and
-- clearing it turns provisioning off. The token authenticates /scim/v2/{org}/… for this
-- connection's organization alone.
ALTER TABLE sso_connections ADD COLUMN scim_token_hash BYTEA UNIQUE CHECK (length(scim_token_hash) = 32);
ALTER TABLE sso_connections ADD COLUMN scim_token_created_at TIMESTAMPTZ;

-- The identity provider's directory entries, per connection. An entry links to a user account
-- (by its email address) only when the address is in one of the connection's verified domains;
-- the entry's names never change the account, which other organizations see too.
CREATE TABLE scim_users (
    id            UUID PRIMARY KEY,
    connection_id UUID NOT NULL REFERENCES sso_connections (id) ON DELETE CASCADE,
    org_id        UUID NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    user_name     TEXT NOT NULL CHECK (length(user_name) BETWEEN 1 AND 256),
    external_id   TEXT CHECK (length(external_id) <= 256),
    display_name  TEXT CHECK (length(display_name) <= 256),
    -- NULL: not stated, which counts as active; only false deprovisions.
    active        BOOLEAN,
    emails        JSONB NOT NULL DEFAULT '[]',
    user_id       UUID REFERENCES users (id) ON DELETE SET NULL,
    version       BIGINT NOT NULL DEFAULT 1,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- userName is unique per connection, compared without case (RFC 7643 §4.1.1).
CREATE UNIQUE INDEX scim_users_name_idx ON scim_users (connection_id, lower(user_name));
CREATE UNIQUE INDEX scim_users_account_idx ON scim_users (connection_id, user_id) WHERE user_id IS NOT NULL;
CREATE INDEX scim_users_external_idx ON scim_users (connection_id, external_id);
CREATE INDEX scim_users_page_idx ON scim_users (connection_id, created_at, id);

CREATE TABLE scim_groups (
    id            UUID PRIMARY KEY,
    connection_id UUID NOT NULL REFERENCES sso_connections (id) ON DELETE CASCADE,
    org_id        UUID NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    display_name  TEXT NOT NULL CHECK (length(display_name) BETWEEN 1 AND 256),
    external_id   TEXT CHECK (length(external_id) <= 256),
    version       BIGINT NOT NULL DEFAULT 1,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX scim_groups_name_idx ON scim_groups (connection_id, lower(display_name));
CREATE INDEX scim_groups_page_idx ON scim_groups (connection_id, created_at, id);

CREATE TABLE scim_group_members (
    group_id UUID NOT NULL REFERENCES scim_groups (id) ON DELETE CASCADE,
    user_id  UUID NOT NULL REFERENCES scim_users (id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX scim_group_members_user_idx ON scim_group_members (user_id);

-- Changes made by an identity provider through SCIM are audited as the connection's.
ALTER TABLE audit_events DROP CONSTRAINT audit_events_actor_kind_check;
ALTER TABLE audit_events ADD CONSTRAINT audit_events_actor_kind_check
    CHECK (actor_kind IN ('anonymous', 'user', 'api_key', 'internal', 'runner', 'webhook', 'system', 'scim'));
