//! Share links: only a token's hash is stored; a link may expire and can be revoked.

use deadpool_postgres::{Client, GenericClient};
use defendable_store::audit::{record, Actor, AuditAction, AuditContext, AuditEvent};
use time::OffsetDateTime;
use uuid::Uuid;

use super::current::{
    ancestor_level, consistency_from_ok, ConsistencyParts, ProvenReceipt, ANCESTOR_COLUMNS,
    ANCESTOR_JOINS, PROOF_COLUMNS, PROOF_JOINS,
};
use super::{row_receipt, Result, StoredReceipt, COLUMNS_COUNT, COLUMNS_R};
use crate::ShareToken;

/// Records a share link for receipt `seq` of `org`, valid until `expires_at` when given; only
/// the token's hash is stored.
pub async fn create_share(
    client: &impl GenericClient,
    org: Uuid,
    seq: u64,
    token_hash: &[u8],
    created_by: Option<Uuid>,
    expires_at: Option<OffsetDateTime>,
) -> Result<Uuid> {
    let id = Uuid::now_v7();
    client
        .execute(
            &client.prepare_cached("INSERT INTO receipt_shares (id, org_id, seq, token_hash, created_by, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6)").await?,
            &[
                &id,
                &org,
                &(seq as i64),
                &token_hash,
                &created_by,
                &expires_at,
            ],
        )
        .await?;
    Ok(id)
}

/// Revokes every active share link of a receipt; returns how many.
pub async fn revoke_shares(client: &impl GenericClient, org: Uuid, seq: u64) -> Result<u64> {
    Ok(client
        .execute(
            &client.prepare_cached("UPDATE receipt_shares SET revoked_at = now() WHERE org_id = $1 AND seq = $2 AND revoked_at IS NULL").await?,
            &[&org, &(seq as i64)],
        )
        .await?)
}

/// A share link as its owner asks for it: the receipt, the token's hash, who shares it and until
/// when.
#[derive(Debug, Clone)]
pub struct NewShare<'a> {
    /// The receipt's organization.
    pub org: Uuid,
    /// The receipt's seq.
    pub seq: u64,
    /// The user who shares it.
    pub created_by: Option<Uuid>,
    /// When the link stops working; `None`: never.
    pub expires_at: Option<OffsetDateTime>,
    /// The receipt's id (what the audit event names).
    pub receipt_id: &'a str,
}

/// The audit event of a share action on a receipt, by `by` in the request's `ctx`.
fn share_event(
    action: AuditAction,
    org: Uuid,
    receipt_id: &str,
    (by, ctx): (Actor, &AuditContext),
) -> AuditEvent {
    AuditEvent::new(action, by)
        .in_org(org)
        .on(receipt_id)
        .within(ctx)
}

/// Creates a share link with a fresh token and records its `share.create` audit event (by `by`)
/// in one transaction; answers the link's id and its token (stored only as its hash).
pub async fn share_receipt(
    client: &mut Client,
    share: &NewShare<'_>,
    by: (Actor, &AuditContext),
) -> Result<(Uuid, ShareToken)> {
    let event = share_event(AuditAction::ShareCreate, share.org, share.receipt_id, by);
    let token = ShareToken::generate();
    let tx = client.transaction().await?;
    let id = create_share(
        &tx,
        share.org,
        share.seq,
        &token.hash(),
        share.created_by,
        share.expires_at,
    )
    .await?;
    record(&tx, &event).await?;
    tx.commit().await?;
    Ok((id, token))
}

/// Revokes every active link of receipt `seq` (`receipt_id`) of `org` and records its
/// `share.revoke` audit event (by `by`) in one transaction; returns how many links were
/// revoked.
pub async fn unshare_receipt(
    client: &mut Client,
    (org, seq, receipt_id): (Uuid, u64, &str),
    by: (Actor, &AuditContext),
) -> Result<u64> {
    let event = share_event(AuditAction::ShareRevoke, org, receipt_id, by);
    let tx = client.transaction().await?;
    let revoked = revoke_shares(&tx, org, seq).await?;
    record(&tx, &event).await?;
    tx.commit().await?;
    Ok(revoked)
}

/// The receipts active share tokens point at, for many tokens in one statement (the server
/// batches concurrent share reads); tokens without an active share are left out.
pub async fn shared_receipts(
    client: &impl GenericClient,
    token_hashes: &[Vec<u8>],
) -> Result<Vec<(Vec<u8>, StoredReceipt)>> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {COLUMNS_R}, s.token_hash
             FROM receipt_shares s JOIN receipts r ON r.org_id = s.org_id AND r.seq = s.seq
             WHERE s.token_hash = ANY($1) AND s.revoked_at IS NULL
               AND (s.expires_at IS NULL OR s.expires_at > now())"
        ))
        .await?;
    let rows = client.query(&statement, &[&token_hashes]).await?;
    Ok(rows
        .iter()
        .map(|row| (row.get(COLUMNS_COUNT), row_receipt(row)))
        .collect())
}

/// [`shared_receipts`] with each receipt's proof material, in the same one statement: the
/// share link's proof and page cost PostgreSQL one statement per batch of requests, as its
/// projection does.
pub async fn shared_proofs(
    client: &impl GenericClient,
    token_hashes: &[Vec<u8>],
) -> Result<Vec<(Vec<u8>, ProvenReceipt)>> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {COLUMNS_R}, {PROOF_COLUMNS}, s.token_hash
             FROM receipt_shares s JOIN receipts r ON r.org_id = s.org_id AND r.seq = s.seq
             {PROOF_JOINS}
             WHERE s.token_hash = ANY($1) AND s.revoked_at IS NULL
               AND (s.expires_at IS NULL OR s.expires_at > now())"
        ))
        .await?;
    let rows = client.query(&statement, &[&token_hashes]).await?;
    Ok(rows
        .iter()
        .map(|row| (row.get(COLUMNS_COUNT + 5), ProvenReceipt::from_row(row)))
        .collect())
}

/// A shared receipt's log with what proves it consistent from an earlier size to the current
/// tree ([`shared_consistency`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SharedConsistency {
    /// The shared receipt's organization.
    pub org: Uuid,
    /// What proves it; unreadable stored hashes fail this request alone.
    parts: std::result::Result<ConsistencyParts, String>,
}

impl SharedConsistency {
    /// The consistency proof to the current tree, signed by `log`.
    pub fn prove(&self, log: &crate::note::LogSigner) -> Result<crate::ConsistencyProof> {
        match &self.parts {
            Ok(parts) => parts.prove(log, self.org),
            Err(e) => Err(crate::LedgerError::InvalidProof(e.clone())),
        }
    }
}

/// For share tokens (hashes) with the size each holder proves from (`1 ≤ from ≤ 2^62`; others
/// are left out, as unknown tokens are): the consistency material of each active link's log to
/// its current tree, all in one statement.
pub async fn shared_consistency(
    client: &impl GenericClient,
    asks: &[(Vec<u8>, u64)],
) -> Result<Vec<((Vec<u8>, u64), SharedConsistency)>> {
    let asks: Vec<&(Vec<u8>, u64)> = asks
        .iter()
        .filter(|(_, f)| consistency_from_ok(*f))
        .collect();
    let tokens: Vec<&[u8]> = asks.iter().map(|(t, _)| t.as_slice()).collect();
    let froms: Vec<i64> = asks.iter().map(|(_, f)| *f as i64).collect();
    let levels: Vec<Option<i16>> = asks.iter().map(|(_, f)| ancestor_level(*f)).collect();
    let statement = client
        .prepare_cached(&format!(
            "SELECT q.token_hash, q.m, s.org_id, {PROOF_COLUMNS}, {ANCESTOR_COLUMNS}
             FROM unnest($1::bytea[], $2::bigint[], $3::smallint[]) AS q(token_hash, m, level)
             JOIN receipt_shares s ON s.token_hash = q.token_hash AND s.revoked_at IS NULL
                                  AND (s.expires_at IS NULL OR s.expires_at > now())
             CROSS JOIN LATERAL (SELECT s.org_id, q.m - 1 AS seq, q.level) r
             {PROOF_JOINS} {ANCESTOR_JOINS}"
        ))
        .await?;
    let rows = client
        .query(&statement, &[&tokens, &froms, &levels])
        .await?;
    Ok(rows
        .iter()
        .map(|row| {
            let from = row.get::<_, i64>(1) as u64;
            let parts = ConsistencyParts::from_row(row, 3, from).map_err(|e| e.to_string());
            (
                (row.get(0), from),
                SharedConsistency {
                    org: row.get(2),
                    parts,
                },
            )
        })
        .collect())
}
