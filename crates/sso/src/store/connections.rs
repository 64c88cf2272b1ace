//! Identity-provider connections: their sealed secrets, domains, mapping and enforcement.

use std::collections::BTreeMap;

use deadpool_postgres::{GenericClient, Transaction};
use defendable_identity::{OrgId, Role};
use serde_json::{json, Value};
use tokio_postgres::Row;

use super::{
    check_enforceable, record_change, secret_fingerprint, Change, Connection, ConnectionPatch,
    NewConnection, MAX_CONNECTIONS_PER_ORG,
};
use crate::domain::{ClientId, ConnectionId, DomainName, GroupRoles, Issuer, Provider};
use crate::sealed::{Sealed, SecretKeys};
use crate::{Result, SsoError};
use defendable_identity::Email;
use defendable_store::audit::AuditAction;

pub(crate) const CONNECTION_COLUMNS: &str = "id, org_id, provider, issuer, client_id, client_secret, secret_key_id, domains, group_roles, default_role, enforced, created_at, updated_at, scim_token_created_at";

pub(crate) fn row_connection(row: &Row) -> Result<Connection> {
    let domains: Vec<String> = row.get("domains");
    let default_role: Option<String> = row.get("default_role");
    Ok(Connection {
        id: ConnectionId::from_uuid(row.get("id")),
        org: OrgId::from_uuid(row.get("org_id")),
        provider: Provider::parse(row.get("provider"))?,
        // Stored issuers were checked when written; http:// ones exist only in development.
        issuer: Issuer::parse(row.get("issuer"), true)?,
        client_id: ClientId::parse(row.get("client_id"))?,
        domains: domains
            .iter()
            .map(|d| DomainName::parse(d))
            .collect::<Result<_>>()?,
        group_roles: GroupRoles::from_json(&row.get::<_, Value>("group_roles"))?,
        default_role: default_role
            .map(|r| Role::parse(&r).map_err(|e| SsoError::InvalidInput(e.to_string())))
            .transpose()?,
        enforced: row.get("enforced"),
        created_at: row.get("created_at"),
        updated_at: row.get("updated_at"),
        scim_token_created_at: row.get("scim_token_created_at"),
        sealed_secret: Sealed {
            bytes: row.get("client_secret"),
            key_id: row.get("secret_key_id"),
        },
    })
}

/// A domain may route to one connection of an organization: refuses `domains` that another of
/// its connections (other than `except`) lists.
pub(crate) async fn check_routing(
    tx: &Transaction<'_>,
    org: OrgId,
    domains: &[DomainName],
    except: Option<ConnectionId>,
) -> Result<()> {
    let names: Vec<&str> = domains.iter().map(DomainName::as_str).collect();
    let clash = tx
        .query_opt(
            &tx.prepare_cached(
                "SELECT d FROM sso_connections, unnest(domains) AS d
                 WHERE org_id = $1 AND d = ANY($2) AND ($3::uuid IS NULL OR id <> $3) LIMIT 1",
            )
            .await?,
            &[&org.as_uuid(), &names, &except.map(ConnectionId::as_uuid)],
        )
        .await?;
    match clash {
        Some(row) => Err(SsoError::DomainRouted(format!(
            "{} already routes to another of this organization's connections",
            row.get::<_, String>(0)
        ))),
        None => Ok(()),
    }
}

pub(crate) fn dedup(domains: &[DomainName]) -> Vec<DomainName> {
    let mut d = domains.to_vec();
    d.sort();
    d.dedup();
    d
}

fn values(c: &Connection) -> Value {
    json!({
        "issuer": c.issuer.as_str(),
        "client_id": c.client_id.as_str(),
        "domains": c.domains.iter().map(DomainName::as_str).collect::<Vec<_>>(),
        "group_roles": c.group_roles.to_json(),
        "default_role": c.default_role.map(Role::as_str),
        "enforced": c.enforced,
    })
}

/// Creates a connection; its client secret is sealed under the current key.
pub async fn create_connection(
    client: &mut impl GenericClient,
    keys: &SecretKeys,
    change: Change<'_>,
    new: NewConnection,
) -> Result<Connection> {
    new.provider.check_issuer(&new.issuer)?;
    let domains = dedup(&new.domains);
    if domains.is_empty() {
        return Err(SsoError::InvalidInput(
            "domains: at least one email domain the connection signs in".into(),
        ));
    }
    let tx = client.transaction().await?;
    // Serializes connection changes per organization, so the count and routing checks hold.
    tx.execute(
        &tx.prepare_cached("SELECT 1 FROM orgs WHERE id = $1 FOR UPDATE")
            .await?,
        &[&change.org.as_uuid()],
    )
    .await?;
    let count: i64 = tx
        .query_one(
            &tx.prepare_cached("SELECT count(*) FROM sso_connections WHERE org_id = $1")
                .await?,
            &[&change.org.as_uuid()],
        )
        .await?
        .get(0);
    if count >= MAX_CONNECTIONS_PER_ORG {
        return Err(SsoError::LimitReached(format!(
            "an organization has at most {MAX_CONNECTIONS_PER_ORG} SSO connections"
        )));
    }
    check_routing(&tx, change.org, &domains, None).await?;
    if new.enforced {
        check_enforceable(&tx, change.org).await?;
    }
    let id = ConnectionId::new();
    let sealed = keys.seal(
        id.as_uuid().as_bytes(),
        new.client_secret.expose().as_bytes(),
    );
    let names: Vec<&str> = domains.iter().map(DomainName::as_str).collect();
    let row = tx
        .query_one(
            &tx.prepare_cached(&format!(
                "INSERT INTO sso_connections (id, org_id, provider, issuer, client_id, client_secret, secret_key_id, domains, group_roles, default_role, enforced)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING {CONNECTION_COLUMNS}"
            ))
            .await?,
            &[
                &id.as_uuid(),
                &change.org.as_uuid(),
                &new.provider.as_str(),
                &new.issuer.as_str(),
                &new.client_id.as_str(),
                &sealed.bytes,
                &sealed.key_id,
                &names,
                &new.group_roles.to_json(),
                &new.default_role.map(Role::as_str),
                &new.enforced,
            ],
        )
        .await?;
    let connection = row_connection(&row)?;
    let mut private = values(&connection);
    private["client_secret_fingerprint"] = json!(secret_fingerprint(&new.client_secret));
    record_change(
        &tx,
        change,
        AuditAction::SsoConnectionCreate,
        format!("sso_connection:{id}"),
        json!({
            "connection": id.to_string(),
            "provider": new.provider.as_str(),
            "enforced": new.enforced,
            "fields": ["issuer", "client_id", "client_secret", "domains", "group_roles", "default_role", "enforced"],
        }),
        private,
    )
    .await?;
    tx.commit().await?;
    Ok(connection)
}

/// The organization's connections, oldest first (at most [`MAX_CONNECTIONS_PER_ORG`]).
pub async fn list_connections(client: &impl GenericClient, org: OrgId) -> Result<Vec<Connection>> {
    client
        .query(
            &client
                .prepare_cached(&format!(
                    "SELECT {CONNECTION_COLUMNS} FROM sso_connections WHERE org_id = $1 ORDER BY id"
                ))
                .await?,
            &[&org.as_uuid()],
        )
        .await?
        .iter()
        .map(row_connection)
        .collect()
}

/// One connection of the organization.
pub async fn get_connection(
    client: &impl GenericClient,
    org: OrgId,
    id: ConnectionId,
) -> Result<Connection> {
    let row = client
        .query_opt(
            &client
                .prepare_cached(&format!(
                    "SELECT {CONNECTION_COLUMNS} FROM sso_connections WHERE org_id = $1 AND id = $2"
                ))
                .await?,
            &[&org.as_uuid(), &id.as_uuid()],
        )
        .await?
        .ok_or(SsoError::NotFound)?;
    row_connection(&row)
}

/// A connection by id alone (a sign-in in progress names it).
pub async fn get_connection_by_id(
    client: &impl GenericClient,
    id: ConnectionId,
) -> Result<Connection> {
    let row = client
        .query_opt(
            &client
                .prepare_cached(&format!(
                    "SELECT {CONNECTION_COLUMNS} FROM sso_connections WHERE id = $1"
                ))
                .await?,
            &[&id.as_uuid()],
        )
        .await?
        .ok_or(SsoError::NotFound)?;
    row_connection(&row)
}

/// Changes a connection. Only the settings that differ are written and named in the receipt; a
/// patch that changes nothing records nothing. A secret sealed under the previous key is
/// re-sealed under the current one whenever the connection changes.
pub async fn update_connection(
    client: &mut impl GenericClient,
    keys: &SecretKeys,
    change: Change<'_>,
    id: ConnectionId,
    patch: ConnectionPatch,
) -> Result<Connection> {
    let tx = client.transaction().await?;
    let row = tx
        .query_opt(
            &tx.prepare_cached(&format!(
                "SELECT {CONNECTION_COLUMNS} FROM sso_connections WHERE org_id = $1 AND id = $2 FOR UPDATE"
            ))
            .await?,
            &[&change.org.as_uuid(), &id.as_uuid()],
        )
        .await?
        .ok_or(SsoError::NotFound)?;
    let before = row_connection(&row)?;
    let mut after = before.clone();
    let mut fields: Vec<&str> = Vec::new();
    if let Some(issuer) = patch.issuer {
        before.provider.check_issuer(&issuer)?;
        if issuer != before.issuer {
            after.issuer = issuer;
            fields.push("issuer");
        }
    }
    if let Some(client_id) = patch.client_id.filter(|c| *c != before.client_id) {
        after.client_id = client_id;
        fields.push("client_id");
    }
    // The stored secret goes to the issuer's token endpoint as the client's credential: it
    // never follows a change of issuer or client id to where its owner did not send it.
    if patch.client_secret.is_none() {
        if let Some(field) = fields.first() {
            return Err(SsoError::SecretRequired(format!(
                "changing {field} needs client_secret in the same request: the stored secret is never sent to another provider or client"
            )));
        }
    }
    if let Some(domains) = patch.domains {
        let domains = dedup(&domains);
        if domains.is_empty() {
            return Err(SsoError::InvalidInput(
                "domains: at least one email domain the connection signs in".into(),
            ));
        }
        if domains != before.domains {
            check_routing(&tx, change.org, &domains, Some(id)).await?;
            after.domains = domains;
            fields.push("domains");
        }
    }
    if let Some(roles) = patch.group_roles.filter(|r| *r != before.group_roles) {
        after.group_roles = roles;
        fields.push("group_roles");
    }
    if let Some(role) = patch.default_role.filter(|r| *r != before.default_role) {
        after.default_role = role;
        fields.push("default_role");
    }
    if let Some(enforced) = patch.enforced.filter(|e| *e != before.enforced) {
        if enforced {
            check_enforceable(&tx, change.org).await?;
        }
        after.enforced = enforced;
        fields.push("enforced");
    }
    let mut private = BTreeMap::new();
    let plain = match &patch.client_secret {
        Some(secret) => {
            fields.push("client_secret");
            private.insert(
                "client_secret_fingerprint",
                json!(secret_fingerprint(secret)),
            );
            secret.expose().as_bytes().to_vec()
        }
        None if before.sealed_secret.key_id != keys.current_id() && !fields.is_empty() => {
            keys.open(id.as_uuid().as_bytes(), &before.sealed_secret)?
        }
        None => Vec::new(),
    };
    if fields.is_empty() {
        return Ok(before);
    }
    if !plain.is_empty() {
        after.sealed_secret = keys.seal(id.as_uuid().as_bytes(), &plain);
    }
    let names: Vec<&str> = after.domains.iter().map(DomainName::as_str).collect();
    let row = tx
        .query_one(
            &tx.prepare_cached(&format!(
                "UPDATE sso_connections SET issuer = $3, client_id = $4, client_secret = $5, secret_key_id = $6, domains = $7,
                    group_roles = $8, default_role = $9, enforced = $10, updated_at = now()
                 WHERE org_id = $1 AND id = $2 RETURNING {CONNECTION_COLUMNS}"
            ))
            .await?,
            &[
                &change.org.as_uuid(),
                &id.as_uuid(),
                &after.issuer.as_str(),
                &after.client_id.as_str(),
                &after.sealed_secret.bytes,
                &after.sealed_secret.key_id,
                &names,
                &after.group_roles.to_json(),
                &after.default_role.map(Role::as_str),
                &after.enforced,
            ],
        )
        .await?;
    let updated = row_connection(&row)?;
    let mut values = values(&updated);
    for (k, v) in private {
        values[k] = v;
    }
    record_change(
        &tx,
        change,
        AuditAction::SsoConnectionUpdate,
        format!("sso_connection:{id}"),
        json!({
            "connection": id.to_string(),
            "provider": updated.provider.as_str(),
            "enforced": updated.enforced,
            "fields": fields,
        }),
        values,
    )
    .await?;
    tx.commit().await?;
    Ok(updated)
}

/// Deletes a connection.
pub async fn delete_connection(
    client: &mut impl GenericClient,
    change: Change<'_>,
    id: ConnectionId,
) -> Result<()> {
    let tx = client.transaction().await?;
    let row = tx
        .query_opt(
            &tx.prepare_cached("DELETE FROM sso_connections WHERE org_id = $1 AND id = $2 RETURNING provider, enforced")
                .await?,
            &[&change.org.as_uuid(), &id.as_uuid()],
        )
        .await?
        .ok_or(SsoError::NotFound)?;
    record_change(
        &tx,
        change,
        AuditAction::SsoConnectionDelete,
        format!("sso_connection:{id}"),
        json!({
            "connection": id.to_string(),
            "provider": row.get::<_, String>(0),
            "enforced": false,
            "was_enforced": row.get::<_, bool>(1),
            "fields": [],
        }),
        json!({}),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The domain of `email` when `connection` lists it and its organization verified it: the rule
/// for which addresses a connection speaks for, at sign-in and in the directory alike.
pub async fn verified_domain(
    client: &impl GenericClient,
    connection: &Connection,
    email: &Email,
) -> Result<Option<DomainName>> {
    let Ok(domain) = DomainName::parse(email.domain()) else {
        return Ok(None);
    };
    Ok(is_verified(client, connection, &domain)
        .await?
        .then_some(domain))
}

/// Whether `domain` is one of the connection's domains and its organization verified it.
pub(crate) async fn is_verified(
    client: &impl GenericClient,
    connection: &Connection,
    domain: &DomainName,
) -> Result<bool> {
    if !connection.domains.contains(domain) {
        return Ok(false);
    }
    let verified = client
        .query_opt(
            &client
                .prepare_cached(
                    "SELECT 1 FROM org_domains WHERE org_id = $1 AND domain = $2 AND verified_at IS NOT NULL",
                )
                .await?,
            &[&connection.org.as_uuid(), &domain.as_str()],
        )
        .await?;
    Ok(verified.is_some())
}
