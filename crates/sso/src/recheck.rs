//! The daily re-check of verified domains. A domain stays verified while its TXT challenge is
//! published; customers are told to keep the record (docs/sso.md). Each round:
//!
//! 1. [`claim_due`]: in one short transaction under an advisory lock (one process claims at a
//!    time), the verified domains not looked at for [`RECHECK_EVERY`] are marked as looked at
//!    now: this round's claim. No connection is held afterwards.
//! 2. [`look`]: the DNS lookup, with no database connection held. Only an authoritative answer
//!    counts: "no such name", "no TXT record" or records without the challenge are a miss; a
//!    timeout, SERVFAIL or refusal is no answer and changes nothing.
//! 3. [`record`]: a present challenge clears the misses; a miss counts. The first miss warns
//!    the owners (an `sso.domain.recheck_warning` audit event, and the mail the shell sends for
//!    [`Recorded::Warn`]); a domain whose misses span at least [`UNVERIFY_AFTER`] with the
//!    owners warned is unverified, with its audit event and `idp.config_change` receipt
//!    (`domain.unverify`, `by: "system"`) in one transaction.

use std::time::Duration;

use deadpool_postgres::GenericClient;
use defendable_identity::{Email, OrgId};
use defendable_ledger::{Draft, ReceiptKind};
use defendable_store::audit::{self, Actor, AuditAction, AuditContext, AuditEvent};
use serde_json::json;
use time::OffsetDateTime;

use crate::dns::TxtResolver;
use crate::domain::DomainName;
use crate::store::receipt_with_event;
use crate::Result;

/// How often a verified domain is looked at (config::limits).
pub const RECHECK_EVERY: Duration = defendable_config::limits::SSO_DOMAIN_RECHECK_EVERY;
/// How long the challenge must have been missing, in consecutive authoritative answers, before
/// the domain is unverified (config::limits).
pub const UNVERIFY_AFTER: Duration = defendable_config::limits::SSO_DOMAIN_UNVERIFY_AFTER;
/// Domains one round claims at most (config::limits).
pub const ROUND: i64 = defendable_config::limits::SSO_DOMAIN_RECHECK_ROUND;
/// The advisory lock one process holds while it claims a round.
pub const LOCK: i64 = 0x0def_e0da_d0c0_0001;

/// A verified domain to look at in this round.
#[derive(Debug, Clone)]
pub struct Due {
    /// Its organization.
    pub org: OrgId,
    /// The domain.
    pub domain: DomainName,
    /// The TXT value that must stay published.
    pub challenge: String,
}

/// What the lookup saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// The challenge is published.
    Present,
    /// An authoritative answer without the challenge.
    Missing,
    /// No answer (timeout, SERVFAIL, refused): counts for nothing.
    NoAnswer,
}

/// What recording an outcome did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// Nothing to tell anyone.
    Nothing,
    /// The first miss: the owners are to be told to publish the record again.
    Warn {
        /// The organization's owners.
        owners: Vec<Email>,
    },
    /// Unverified: connections stop routing it until it is verified again.
    Unverified {
        /// The receipt of the change.
        receipt: String,
    },
}

/// Claims the verified domains due at `now`, under the advisory lock: an empty list when
/// another process is claiming (it will look at them).
pub async fn claim_due(client: &mut impl GenericClient, now: OffsetDateTime) -> Result<Vec<Due>> {
    let tx = client.transaction().await?;
    let locked: bool = tx
        .query_one(
            &tx.prepare_cached("SELECT pg_try_advisory_xact_lock($1)")
                .await?,
            &[&LOCK],
        )
        .await?
        .get(0);
    if !locked {
        return Ok(Vec::new());
    }
    let rows = tx
        .query(
            &tx.prepare_cached(
                "UPDATE org_domains d SET rechecked_at = $1::timestamptz
                 FROM (SELECT org_id, domain FROM org_domains
                        WHERE verified_at IS NOT NULL
                          AND (rechecked_at IS NULL OR rechecked_at <= $1::timestamptz - make_interval(secs => $2))
                        ORDER BY rechecked_at NULLS FIRST LIMIT $3
                        FOR UPDATE SKIP LOCKED) due
                 WHERE d.org_id = due.org_id AND d.domain = due.domain
                 RETURNING d.org_id, d.domain, d.challenge",
            )
            .await?,
            &[&now, &RECHECK_EVERY.as_secs_f64(), &ROUND],
        )
        .await?;
    tx.commit().await?;
    rows.iter()
        .map(|r| {
            Ok(Due {
                org: OrgId::from_uuid(r.get(0)),
                domain: DomainName::parse(r.get(1))?,
                challenge: r.get(2),
            })
        })
        .collect()
}

/// Looks the challenge up (no database connection held).
pub async fn look(resolver: &TxtResolver, due: &Due) -> Seen {
    match resolver.challenge_records(&due.domain).await {
        Ok(found) if found.iter().any(|v| v.trim() == due.challenge) => Seen::Present,
        Ok(_) => Seen::Missing,
        Err(_) => Seen::NoAnswer,
    }
}

/// Records what the lookup at `now` saw, in one transaction.
pub async fn record(
    client: &mut impl GenericClient,
    due: &Due,
    seen: &Seen,
    now: OffsetDateTime,
) -> Result<Recorded> {
    let org = due.org.as_uuid();
    match seen {
        Seen::NoAnswer => Ok(Recorded::Nothing),
        Seen::Present => {
            client
                .execute(
                    &client
                        .prepare_cached(
                            "UPDATE org_domains SET misses = 0, missing_since = NULL, warned_at = NULL
                             WHERE org_id = $1 AND domain = $2 AND verified_at IS NOT NULL",
                        )
                        .await?,
                    &[&org, &due.domain.as_str()],
                )
                .await?;
            Ok(Recorded::Nothing)
        }
        Seen::Missing => {
            let tx = client.transaction().await?;
            let Some(row) = tx
                .query_opt(
                    &tx.prepare_cached(
                        "UPDATE org_domains SET misses = misses + 1, missing_since = coalesce(missing_since, $3)
                         WHERE org_id = $1 AND domain = $2 AND verified_at IS NOT NULL
                         RETURNING misses, missing_since, warned_at",
                    )
                    .await?,
                    &[&org, &due.domain.as_str(), &now],
                )
                .await?
            else {
                return Ok(Recorded::Nothing);
            };
            let (misses, since, warned): (i32, OffsetDateTime, Option<OffsetDateTime>) =
                (row.get(0), row.get(1), row.get(2));
            let ctx = AuditContext::default();
            let outcome = match warned {
                None => {
                    tx.execute(
                        &tx.prepare_cached(
                            "UPDATE org_domains SET warned_at = $3 WHERE org_id = $1 AND domain = $2",
                        )
                        .await?,
                        &[&org, &due.domain.as_str(), &now],
                    )
                    .await?;
                    let mut e =
                        AuditEvent::new(AuditAction::SsoDomainRecheckWarning, Actor::System)
                            .on(format!("domain:{}", due.domain))
                            .with(json!({
                                "txt_name": due.domain.challenge_name(),
                                "missing_since": since.unix_timestamp(),
                                "unverified_after_days": UNVERIFY_AFTER.as_secs() / 86_400,
                            }));
                    e.org_id = Some(org);
                    audit::record(&tx, &e).await?;
                    let owners = tx
                        .query(
                            &tx.prepare_cached(
                                "SELECT u.email FROM memberships m JOIN users u ON u.id = m.user_id
                                 WHERE m.org_id = $1 AND m.role = 'owner' ORDER BY u.email",
                            )
                            .await?,
                            &[&org],
                        )
                        .await?
                        .iter()
                        .filter_map(|r| Email::parse(r.get::<_, &str>(0)).ok())
                        .collect();
                    Recorded::Warn { owners }
                }
                Some(_)
                    if misses >= 2
                        && (now - since).whole_seconds() >= UNVERIFY_AFTER.as_secs() as i64 =>
                {
                    tx.execute(
                        &tx.prepare_cached(
                            "UPDATE org_domains SET verified_at = NULL, misses = 0, missing_since = NULL, warned_at = NULL
                             WHERE org_id = $1 AND domain = $2",
                        )
                        .await?,
                        &[&org, &due.domain.as_str()],
                    )
                    .await?;
                    let draft = Draft::new(
                        ReceiptKind::parse("idp.config_change")?,
                        json!({
                            "change": "domain.unverify",
                            "by": "system",
                            "domain": due.domain.as_str(),
                            "fields": ["verified"],
                            "misses": misses,
                        }),
                        Some(json!({ "actor": "system", "values": {
                            "txt_name": due.domain.challenge_name(),
                            "missing_since": since.unix_timestamp(),
                        }})),
                    )?;
                    let event = AuditEvent::new(AuditAction::SsoDomainUnverify, Actor::System)
                        .on(format!("domain:{}", due.domain))
                        .with(json!({ "fields": ["verified"], "misses": misses }));
                    let receipt = receipt_with_event(&tx, due.org, draft, event, &ctx).await?;
                    Recorded::Unverified { receipt }
                }
                Some(_) => Recorded::Nothing,
            };
            tx.commit().await?;
            Ok(outcome)
        }
    }
}
