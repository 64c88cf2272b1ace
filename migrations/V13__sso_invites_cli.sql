-- Single sign-on started from an invite or from the command line (issue 18). Expand only:
-- nullable columns and a relaxed NOT NULL.

-- An invite to an address in a domain whose connection enforces SSO is accepted by signing in
-- through that connection: the sign-in remembers the invite and uses it when it completes.
ALTER TABLE sso_logins ADD COLUMN invite_id UUID REFERENCES invites (id) ON DELETE CASCADE;

-- A sign-in started by the CLI is not bound to a browser cookie (the CLI has no browser of its
-- own) but to a loopback port on the CLI's machine, where the callback sends the one-time link,
-- and to the SHA-256 of a verifier only the CLI holds (RFC 7636 S256), which redeeming the
-- link requires. Exactly one of the two bindings is present.
ALTER TABLE sso_logins ALTER COLUMN browser_hash DROP NOT NULL;
ALTER TABLE sso_logins ADD COLUMN cli_port INTEGER CHECK (cli_port BETWEEN 1 AND 65535);
ALTER TABLE sso_logins ADD COLUMN cli_challenge BYTEA CHECK (length(cli_challenge) = 32);
ALTER TABLE sso_logins ADD CONSTRAINT sso_logins_one_binding CHECK (
    (browser_hash IS NOT NULL AND cli_port IS NULL AND cli_challenge IS NULL)
    OR (browser_hash IS NULL AND cli_port IS NOT NULL AND cli_challenge IS NOT NULL)
);

-- The one-time link such a sign-in hands to the CLI is redeemed only with that verifier.
ALTER TABLE magic_links ADD COLUMN handoff_challenge BYTEA CHECK (length(handoff_challenge) = 32);

-- Whether a membership's role was given by the identity provider (a connection's group mapping
-- or default role, at sign-in or through SCIM). Only such a membership is removed when the
-- person's groups stop mapping; one an invite or an owner gave stays until an owner removes it
-- or the directory deactivates the person.
ALTER TABLE memberships ADD COLUMN idp_managed BOOLEAN NOT NULL DEFAULT false;
-- Memberships whose role the identity provider set before this column existed: their latest
-- role change came from a sign-in (source "sso") or the directory (source "scim").
UPDATE memberships m SET idp_managed = true
WHERE (SELECT e.details ->> 'source' FROM audit_events e
       WHERE e.action = 'member.role_change' AND e.org_id = m.org_id
         AND e.target = 'user:' || m.user_id
       ORDER BY e.id DESC LIMIT 1) IN ('sso', 'scim');
