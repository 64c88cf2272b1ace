//! Claimed domains and their DNS verification.

use deadpool_postgres::GenericClient;
use defendable_identity::OrgId;
use serde_json::json;
use tokio_postgres::error::SqlState;
use tokio_postgres::Row;

use super::{
    random_token, record_change, Change, DomainClaim, CHALLENGE_PREFIX, MAX_DOMAINS_PER_ORG,
};
use crate::domain::DomainName;
use crate::{Result, SsoError};
use defendable_store::audit::AuditAction;

fn row_claim(row: &Row) -> Result<DomainClaim> {
    Ok(DomainClaim {
        domain: DomainName::parse(row.get("domain"))?,
        challenge: row.get("challenge"),
        created_at: row.get("created_at"),
        verified_at: row.get("verified_at"),
    })
}

/// Claims a domain: its TXT challenge to publish. A domain another organization has verified
/// is refused here already.
pub async fn add_domain(
    client: &mut impl GenericClient,
    change: Change<'_>,
    domain: &DomainName,
) -> Result<DomainClaim> {
    let tx = client.transaction().await?;
    let held: i64 = tx
        .query_one(
            &tx.prepare_cached("SELECT count(*) FROM org_domains WHERE org_id = $1")
                .await?,
            &[&change.org.as_uuid()],
        )
        .await?
        .get(0);
    if held >= MAX_DOMAINS_PER_ORG {
        return Err(SsoError::LimitReached(format!(
            "an organization claims at most {MAX_DOMAINS_PER_ORG} domains"
        )));
    }
    let elsewhere = tx
        .query_opt(
            &tx.prepare_cached(
                "SELECT 1 FROM org_domains WHERE domain = $1 AND verified_at IS NOT NULL AND org_id <> $2",
            )
            .await?,
            &[&domain.as_str(), &change.org.as_uuid()],
        )
        .await?;
    if elsewhere.is_some() {
        return Err(SsoError::DomainTaken);
    }
    let challenge = format!("{CHALLENGE_PREFIX}{}", random_token());
    let row = tx
        .query_opt(
            &tx.prepare_cached(
                "INSERT INTO org_domains (org_id, domain, challenge, created_by) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (org_id, domain) DO NOTHING
                 RETURNING domain, challenge, created_at, verified_at",
            )
            .await?,
            &[&change.org.as_uuid(), &domain.as_str(), &challenge, &change.actor.as_uuid()],
        )
        .await?
        .ok_or(SsoError::DomainExists)?;
    record_change(
        &tx,
        change,
        AuditAction::SsoDomainAdd,
        format!("domain:{domain}"),
        json!({ "domain": domain.as_str(), "fields": ["domain"] }),
        json!({}),
    )
    .await?;
    tx.commit().await?;
    row_claim(&row)
}

/// The organization's domains, by name.
pub async fn list_domains(client: &impl GenericClient, org: OrgId) -> Result<Vec<DomainClaim>> {
    client
        .query(
            &client
                .prepare_cached(
                    "SELECT domain, challenge, created_at, verified_at FROM org_domains WHERE org_id = $1 ORDER BY domain",
                )
                .await?,
            &[&org.as_uuid()],
        )
        .await?
        .iter()
        .map(row_claim)
        .collect()
}

/// One claimed domain of the organization.
pub async fn get_domain(
    client: &impl GenericClient,
    org: OrgId,
    domain: &DomainName,
) -> Result<DomainClaim> {
    let row = client
        .query_opt(
            &client
                .prepare_cached(
                    "SELECT domain, challenge, created_at, verified_at FROM org_domains WHERE org_id = $1 AND domain = $2",
                )
                .await?,
            &[&org.as_uuid(), &domain.as_str()],
        )
        .await?
        .ok_or(SsoError::NotFound)?;
    row_claim(&row)
}

/// Whether the TXT values found at `_defendable-challenge.<domain>` hold the claim's challenge;
/// the refusal says what was seen.
pub fn challenge_found(claim: &DomainClaim, found: &[String]) -> Result<()> {
    if found.iter().any(|v| v.trim() == claim.challenge) {
        return Ok(());
    }
    let name = claim.domain.challenge_name();
    Err(SsoError::DomainNotVerified(if found.is_empty() {
        format!("no TXT record at {name}: publish {}", claim.challenge)
    } else {
        format!(
            "{} TXT record(s) at {name}, none with this domain's challenge {}",
            found.len(),
            claim.challenge
        )
    }))
}

/// Verifies a claim whose challenge [`challenge_found`] saw published (the lookup runs between
/// the two calls with no database connection held). Another organization that verified the
/// same domain first keeps it: `DomainTaken`. Verifying twice is not a change.
pub async fn mark_verified(
    client: &mut impl GenericClient,
    change: Change<'_>,
    domain: &DomainName,
) -> Result<DomainClaim> {
    let tx = client.transaction().await?;
    let updated = tx
        .query_opt(
            &tx.prepare_cached(
                "UPDATE org_domains SET verified_at = now() WHERE org_id = $1 AND domain = $2 AND verified_at IS NULL
                 RETURNING domain, challenge, created_at, verified_at",
            )
            .await?,
            &[&change.org.as_uuid(), &domain.as_str()],
        )
        .await;
    let row = match updated {
        Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
            return Err(SsoError::DomainTaken)
        }
        other => other?,
    };
    let Some(row) = row else {
        // Verified concurrently (or removed): report what is there now.
        return get_domain(&tx, change.org, domain).await;
    };
    record_change(
        &tx,
        change,
        AuditAction::SsoDomainVerify,
        format!("domain:{domain}"),
        json!({ "domain": domain.as_str(), "fields": ["verified"] }),
        json!({ "txt_name": domain.challenge_name() }),
    )
    .await?;
    tx.commit().await?;
    row_claim(&row)
}

/// Removes a claimed domain (verified or not); connections that list it stop routing it.
pub async fn remove_domain(
    client: &mut impl GenericClient,
    change: Change<'_>,
    domain: &DomainName,
) -> Result<()> {
    let tx = client.transaction().await?;
    let removed = tx
        .query_opt(
            &tx.prepare_cached(
                "DELETE FROM org_domains WHERE org_id = $1 AND domain = $2 RETURNING verified_at IS NOT NULL",
            )
            .await?,
            &[&change.org.as_uuid(), &domain.as_str()],
        )
        .await?
        .ok_or(SsoError::NotFound)?;
    let was_verified: bool = removed.get(0);
    record_change(
        &tx,
        change,
        AuditAction::SsoDomainRemove,
        format!("domain:{domain}"),
        json!({ "domain": domain.as_str(), "was_verified": was_verified, "fields": ["domain"] }),
        json!({}),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
