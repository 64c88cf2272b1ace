-- Verified domains are re-checked daily: when a process last looked (`rechecked_at`, also its
-- claim on the domain for this round), since when the challenge has been missing in consecutive
-- authoritative answers (`missing_since`, with `misses` counting them), and when the owners were
-- warned. A resolver timeout or SERVFAIL changes none of these. A domain is unverified only after
-- misses over at least three days, owners warned first (docs/sso.md).

ALTER TABLE org_domains
    ADD COLUMN rechecked_at TIMESTAMPTZ,
    ADD COLUMN missing_since TIMESTAMPTZ,
    ADD COLUMN misses INTEGER NOT NULL DEFAULT 0 CHECK (misses >= 0),
    ADD COLUMN warned_at TIMESTAMPTZ;

CREATE INDEX org_domains_recheck_idx ON org_domains (rechecked_at NULLS FIRST) WHERE verified_at IS NOT NULL;
