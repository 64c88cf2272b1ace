-- Email addresses compare case-insensitively everywhere: stored lowercase, checked by constraints.
-- "Case" is ASCII case (lower() under the C collation), exactly as the application folds it, so
-- the rule does not depend on the database locale.
--
-- Users whose addresses differed only in case were separate accounts. They are merged into the
-- oldest one: it takes every organization the others belonged to (owner if any of them was an
-- owner there); the others keep their rows (their receipts, keys and audit history point at
-- them) under an undeliverable address, lose their sessions and memberships, and are listed in
-- email_case_merges for operators. Each merge is an audit event.
CREATE TABLE email_case_merges (
    user_id        UUID PRIMARY KEY REFERENCES users (id),
    kept_user_id   UUID NOT NULL REFERENCES users (id),
    original_email TEXT NOT NULL,
    merged_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

INSERT INTO email_case_merges (user_id, kept_user_id, original_email)
SELECT id, kept, email
FROM (
    SELECT id, email,
           first_value(id) OVER (PARTITION BY lower(email COLLATE "C") ORDER BY created_at, id) AS kept
    FROM users
) ranked
WHERE id <> kept;

INSERT INTO memberships (org_id, user_id, role, created_at)
SELECT m.org_id, x.kept_user_id,
       CASE WHEN bool_or(m.role = 'owner') THEN 'owner' ELSE 'member' END,
       min(m.created_at)
FROM memberships m
JOIN email_case_merges x ON x.user_id = m.user_id
GROUP BY m.org_id, x.kept_user_id
ON CONFLICT (org_id, user_id) DO UPDATE
    SET role = CASE WHEN memberships.role = 'owner' OR EXCLUDED.role = 'owner'
                    THEN 'owner' ELSE 'member' END;

DELETE FROM memberships m USING email_case_merges x WHERE m.user_id = x.user_id;

UPDATE sessions s SET revoked_at = now()
FROM email_case_merges x
WHERE s.user_id = x.user_id AND s.revoked_at IS NULL;

UPDATE users u SET email = 'merged+' || u.id::text || '@invalid'
FROM email_case_merges x
WHERE u.id = x.user_id;

INSERT INTO audit_events (action, actor_kind, target, details)
SELECT 'user.email_case_merge', 'system', 'user:' || x.user_id::text,
       jsonb_build_object('kept', 'user:' || x.kept_user_id::text)
FROM email_case_merges x;

UPDATE users SET email = lower(email COLLATE "C") WHERE email <> lower(email COLLATE "C");
ALTER TABLE users ADD CONSTRAINT users_email_lowercase CHECK (email = lower(email COLLATE "C"));

UPDATE magic_links SET email = lower(email COLLATE "C") WHERE email <> lower(email COLLATE "C");
ALTER TABLE magic_links ADD CONSTRAINT magic_links_email_lowercase CHECK (email = lower(email COLLATE "C"));

-- A pending invite to an address is reused, not multiplied: keep the newest pending one per
-- organization and address, revoke the rest, and let the index hold the rule from now on.
UPDATE invites SET email = lower(email COLLATE "C") WHERE email <> lower(email COLLATE "C");
ALTER TABLE invites ADD CONSTRAINT invites_email_lowercase CHECK (email = lower(email COLLATE "C"));
UPDATE invites i SET revoked_at = now()
WHERE i.accepted_at IS NULL AND i.revoked_at IS NULL
  AND EXISTS (
      SELECT 1 FROM invites newer
      WHERE newer.org_id = i.org_id AND newer.email = i.email
        AND newer.accepted_at IS NULL AND newer.revoked_at IS NULL
        AND (newer.created_at, newer.id) > (i.created_at, i.id)
  );
CREATE UNIQUE INDEX invites_pending_idx ON invites (org_id, email)
    WHERE accepted_at IS NULL AND revoked_at IS NULL;
