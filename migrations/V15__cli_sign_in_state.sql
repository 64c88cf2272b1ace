-- A CLI's single sign-on carries a `state` the CLI chose: the callback sends it back to the
-- CLI's loopback port beside the one-time link, and the CLI takes only the request that carries
-- it, so a local process or a page probing loopback ports cannot hand the CLI a link of its own.
-- Sign-ins started before this migration have none and finish as before (they expire within
-- SSO_LOGIN_TTL).

ALTER TABLE sso_logins ADD COLUMN cli_state TEXT
    CHECK (length(cli_state) BETWEEN 22 AND 128 AND cli_state ~ '^[A-Za-z0-9_-]*$');
ALTER TABLE sso_logins ADD CONSTRAINT sso_logins_cli_state_only_for_cli
    CHECK (cli_state IS NULL OR cli_port IS NOT NULL);
