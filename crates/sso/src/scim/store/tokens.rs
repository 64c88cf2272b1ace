//! A connection's SCIM token: issued, revoked, and the connection it authenticates.

use deadpool_postgres::GenericClient;
use defendable_identity::OrgRef;
use defendable_store::audit::AuditAction;
use serde_json::json;

use crate::scim::ScimToken;
use crate::store::{record_change, row_connection, Change, Connection, CONNECTION_COLUMNS};
use crate::{ConnectionId, Result, SsoError};

/// Issues a new SCIM token for a connection, replacing the one it had (which stops working at
/// once): an `idp.config_change` receipt whose private part holds the token's fingerprint.
pub async fn rotate_token(
    client: &mut impl GenericClient,
    change: Change<'_>,
    id: ConnectionId,
) -> Result<(ScimToken, time::OffsetDateTime)> {
    let token = ScimToken::generate();
    let tx = client.transaction().await?;
    let row = tx
        .query_opt(
            &tx.prepare_cached(
                "UPDATE sso_connections SET scim_token_hash = $3, scim_token_created_at = now()
                 WHERE org_id = $1 AND id = $2 RETURNING scim_token_created_at, provider",
            )
            .await?,
            &[&change.org.as_uuid(), &id.as_uuid(), &token.hash().to_vec()],
        )
        .await?
        .ok_or(SsoError::NotFound)?;
    let fingerprint: String = token.hash()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    record_change(
        &tx,
        change,
        AuditAction::SsoScimTokenRotate,
        format!("sso_connection:{id}"),
        json!({ "connection": id.to_string(), "provider": row.get::<_, String>(1), "fields": ["scim_token"] }),
        json!({ "scim_token_sha256_prefix": fingerprint }),
    )
    .await?;
    tx.commit().await?;
    Ok((token, row.get(0)))
}

/// Turns provisioning off: the token stops working. The directory's entries stay (turning it
/// back on resumes them).
pub async fn revoke_token(
    client: &mut impl GenericClient,
    change: Change<'_>,
    id: ConnectionId,
) -> Result<()> {
    let tx = client.transaction().await?;
    let row = tx
        .query_opt(
            &tx.prepare_cached(
                "UPDATE sso_connections SET scim_token_hash = NULL, scim_token_created_at = NULL
                 WHERE org_id = $1 AND id = $2 RETURNING provider",
            )
            .await?,
            &[&change.org.as_uuid(), &id.as_uuid()],
        )
        .await?
        .ok_or(SsoError::NotFound)?;
    record_change(
        &tx,
        change,
        AuditAction::SsoScimTokenRevoke,
        format!("sso_connection:{id}"),
        json!({ "connection": id.to_string(), "provider": row.get::<_, String>(0), "fields": ["scim_token"] }),
        json!({}),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The connection a SCIM token belongs to, if it belongs to the organization `org` names. A
/// token of another organization's connection is as unknown as a wrong one.
pub async fn authenticate(
    client: &impl GenericClient,
    token: &ScimToken,
    org: &OrgRef,
) -> Result<Option<Connection>> {
    let row = client
        .query_opt(
            &client
                .prepare_cached(&format!(
                    "SELECT {CONNECTION_COLUMNS}, (SELECT slug FROM orgs WHERE orgs.id = sso_connections.org_id) AS org_slug
                     FROM sso_connections WHERE scim_token_hash = $1"
                ))
                .await?,
            &[&token.hash().to_vec()],
        )
        .await?;
    let Some(row) = row else { return Ok(None) };
    let connection = row_connection(&row)?;
    let slug: String = row.get("org_slug");
    let ours = match org {
        OrgRef::Id(id) => *id == connection.org,
        OrgRef::Slug(s) => s.as_str() == slug,
    };
    Ok(ours.then_some(connection))
}
