-- Enterprise SSO (issue 18): verified domains and identity-provider connections. Expand only:
-- new tables, nothing the previous release reads changes.

-- A domain an organization claims. The owner publishes `challenge` as a DNS TXT record; once
-- it is seen the domain is verified, and only one organization can hold a verified domain.
CREATE TABLE org_domains (
    org_id      UUID NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    domain      TEXT NOT NULL CHECK (domain ~ '^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$' AND length(domain) <= 253),
    challenge   TEXT NOT NULL,
    created_by  UUID REFERENCES users (id) ON DELETE SET NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    verified_at TIMESTAMPTZ,
    PRIMARY KEY (org_id, domain)
);
CREATE UNIQUE INDEX org_domains_verified_once ON org_domains (domain) WHERE verified_at IS NOT NULL;

-- An organization's identity-provider connection. The client secret is sealed (AES-256-GCM
-- under SSO_SECRET_KEY, the row's id as associated data) and never returned. `protocol` leaves
-- room for SAML 2.0 (docs/sso-roadmap.md).
CREATE TABLE sso_connections (
    id                 UUID PRIMARY KEY,
    org_id             UUID NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    protocol           TEXT NOT NULL DEFAULT 'oidc' CHECK (protocol IN ('oidc')),
    provider           TEXT NOT NULL CHECK (provider IN ('generic', 'google', 'entra', 'okta')),
    issuer             TEXT NOT NULL CHECK (length(issuer) <= 2048),
    client_id          TEXT NOT NULL CHECK (length(client_id) BETWEEN 1 AND 512),
    client_secret      BYTEA NOT NULL,
    secret_key_id      TEXT NOT NULL,
    domains            TEXT[] NOT NULL,
    group_roles        JSONB NOT NULL DEFAULT '{}',
    default_role       TEXT CHECK (default_role IN ('owner', 'member')),
    enforced           BOOLEAN NOT NULL DEFAULT false,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX sso_connections_org_idx ON sso_connections (org_id, id);

-- An OIDC sign-in in progress: single use, short-lived, bound to the browser that started it
-- (the hash of a cookie set on /auth/sso/start), so a login-CSRF cannot plant someone else's
-- session. Only the state's hash is a lookup key.
CREATE TABLE sso_logins (
    state_hash    BYTEA PRIMARY KEY CHECK (length(state_hash) = 32),
    connection_id UUID NOT NULL REFERENCES sso_connections (id) ON DELETE CASCADE,
    nonce         TEXT NOT NULL,
    code_verifier TEXT NOT NULL,
    browser_hash  BYTEA NOT NULL CHECK (length(browser_hash) = 32),
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at    TIMESTAMPTZ NOT NULL,
    consumed_at   TIMESTAMPTZ
);
CREATE INDEX sso_logins_expiry_idx ON sso_logins (expires_at);

-- Sessions, and the one-time links that start them, remember the connection they came through,
-- so an organization that enforces SSO can tell its sessions from magic-link ones.
ALTER TABLE magic_links ADD COLUMN sso_connection_id UUID REFERENCES sso_connections (id) ON DELETE SET NULL;
-- The longest session the link may start (SSO_SESSION_TTL for SSO links: without SCIM, removal
-- at the identity provider takes effect at the next sign-in).
ALTER TABLE magic_links ADD COLUMN session_max_secs DOUBLE PRECISION;
ALTER TABLE sessions ADD COLUMN sso_connection_id UUID REFERENCES sso_connections (id) ON DELETE SET NULL;

-- Break-glass owners keep access without SSO where it is enforced (at most two per organization).
ALTER TABLE memberships ADD COLUMN break_glass BOOLEAN NOT NULL DEFAULT false;

-- A break-glass session's first use in an organization, recorded once.
CREATE TABLE break_glass_uses (
    session_id UUID NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    org_id     UUID NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    used_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, org_id)
);
