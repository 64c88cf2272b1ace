//! Billing: which daily dataset limit a plan gives, and applying a verified Stripe event to an
//! organization's plan. Events are idempotent by id; an event created before the last one
//! applied to the same subscription is ignored (Stripe delivers out of order); a subscription
//! that is `past_due`, `unpaid` or `canceled`, or deleted, falls back to the free limit.

use deadpool_postgres::{Client, GenericClient};
use defendable_store::audit::{record, Actor, AuditAction, AuditEvent};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::DatasetsError;

type Result<T> = std::result::Result<T, DatasetsError>;

/// The daily dataset limit of a plan: `Some(None)` is the default (free) limit, `None` an
/// unknown plan.
pub fn plan_limit(plan: &str) -> Option<Option<i32>> {
    match plan {
        "free" => Some(None),
        "pro" => Some(Some(1_000)),
        "enterprise" => Some(Some(10_000)),
        _ => None,
    }
}

/// The plan an event asks for: subscriptions that are deleted or no longer paid fall back to
/// the free plan; otherwise `metadata.plan`.
pub fn requested_plan<'a>(kind: &str, object: &'a Value) -> Option<&'a str> {
    let lapsed = matches!(
        object["status"].as_str(),
        Some("canceled" | "past_due" | "unpaid")
    );
    if kind == "customer.subscription.deleted" || lapsed {
        Some("free")
    } else {
        object["metadata"]["plan"].as_str()
    }
}

/// What applying an event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The event id was applied before: nothing done.
    Duplicate,
    /// A type we do not act on, or no usable organization or plan: acknowledged, nothing done.
    Ignored(&'static str),
    /// Created before the last event applied to its subscription: acknowledged, nothing done.
    Stale,
    /// The organization's plan (and dataset limit) changed.
    Changed {
        /// The organization.
        org: Uuid,
        /// The plan.
        plan: String,
        /// Its daily limit; `None`: the default.
        limit: Option<i32>,
    },
}

/// Applies a Stripe event whose signature the caller verified, in one transaction with its
/// `billing.plan_change` audit event.
pub async fn apply_stripe_event(client: &mut Client, event: &Value) -> Result<Applied> {
    let id = event["id"].as_str().unwrap_or_default();
    let kind = event["type"].as_str().unwrap_or("unknown");
    let tx = client.transaction().await?;
    let fresh = tx
        .execute(
            &tx.prepare_cached(
                "INSERT INTO stripe_events (id, type) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .await?,
            &[&id, &kind],
        )
        .await?
        == 1;
    if !fresh {
        return Ok(Applied::Duplicate);
    }
    let applied = decide(&tx, id, kind, event).await?;
    if let Applied::Changed { org, plan, limit } = &applied {
        match limit {
            Some(limit) => {
                crate::store::set_daily_limit(&tx, *org, *limit, Some(plan.as_str())).await?
            }
            None => {
                tx.execute(
                    &tx.prepare_cached("DELETE FROM dataset_quota_limits WHERE org_id = $1")
                        .await?,
                    &[org],
                )
                .await?;
            }
        }
        let mut e = AuditEvent::new(AuditAction::BillingPlanChange, Actor::Webhook);
        e.org_id = Some(*org);
        e.target = Some(id.to_owned());
        e.details = json!({ "plan": plan, "dataset_daily_limit": limit, "event": kind });
        record(&tx, &e).await?;
    }
    tx.commit().await?;
    Ok(applied)
}

async fn decide(tx: &impl GenericClient, id: &str, kind: &str, event: &Value) -> Result<Applied> {
    let handled = matches!(
        kind,
        "checkout.session.completed"
            | "customer.subscription.created"
            | "customer.subscription.updated"
            | "customer.subscription.deleted"
    );
    if !handled {
        return Ok(Applied::Ignored("event type not acted on"));
    }
    let object = &event["data"]["object"];
    let org = object["metadata"]["org_id"]
        .as_str()
        .or_else(|| object["client_reference_id"].as_str())
        .and_then(|o| o.parse::<Uuid>().ok());
    let plan = requested_plan(kind, object).and_then(|p| plan_limit(p).map(|l| (p, l)));
    let (Some(org), Some((plan, limit))) = (org, plan) else {
        return Ok(Applied::Ignored("no usable org_id or plan"));
    };
    let subscription = if kind.starts_with("customer.subscription.") {
        object["id"].as_str()
    } else {
        object["subscription"].as_str()
    };
    if let (Some(subscription), Some(created)) = (subscription, event["created"].as_i64()) {
        let newest = tx
            .query_opt(
                &tx.prepare_cached(
                    "INSERT INTO billing_subscriptions (subscription_id, org_id, last_event_created, last_event_id)
                     VALUES ($1, $2, $3, $4)
                     ON CONFLICT (subscription_id) DO UPDATE
                         SET org_id = $2, last_event_created = $3, last_event_id = $4, updated_at = now()
                         WHERE billing_subscriptions.last_event_created <= $3
                     RETURNING 1",
                )
                .await?,
                &[&subscription, &org, &created, &id],
            )
            .await?;
        if newest.is_none() {
            return Ok(Applied::Stale);
        }
    }
    Ok(Applied::Changed {
        org,
        plan: plan.to_owned(),
        limit,
    })
}
