-- The last Stripe event applied to each subscription: an event created before it (Stripe does
-- not deliver in order) is acknowledged and ignored, so a late "active" cannot undo a newer
-- "past_due" or "canceled".
CREATE TABLE billing_subscriptions (
    subscription_id    TEXT PRIMARY KEY,
    org_id             UUID NOT NULL,
    last_event_created BIGINT NOT NULL,
    last_event_id      TEXT NOT NULL,
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);
