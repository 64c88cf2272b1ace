//! Domains and connections in PostgreSQL. Every change writes its row, its audit event and an
//! `idp.config_change` receipt in the organization's chain in one transaction: all three or
//! none. The receipt's public part says what changed and by which role, never a value that could
//! be a secret; the private part (covered by its digest) holds the acting user and the new
//! non-secret values, and a fingerprint of a new client secret.

use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use deadpool_postgres::{GenericClient, Transaction};
use defendable_identity::{OrgId, Role, UserId};
use defendable_ledger::store as ledger;
use defendable_ledger::{Draft, ReceiptKind};
use defendable_store::audit::{self, Actor, AuditAction, AuditContext, AuditEvent};
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::{json, Value};
use time::OffsetDateTime;
use tokio_postgres::error::SqlState;
use tokio_postgres::Row;

use crate::domain::{
    ClientId, ClientSecret, ConnectionId, DomainName, GroupRoles, Issuer, Provider,
};
use crate::sealed::{Sealed, SecretKeys};
use crate::{Result, SsoError};

/// Domains one organization may claim (config::limits).
pub const MAX_DOMAINS_PER_ORG: i64 = defendable_config::limits::SSO_DOMAINS_PER_ORG;
/// Connections one organization may have (config::limits).
pub const MAX_CONNECTIONS_PER_ORG: i64 = defendable_config::limits::SSO_CONNECTIONS_PER_ORG;
/// The TXT value's prefix: `defendable-domain-verification=<token>`.
pub const CHALLENGE_PREFIX: &str = "defendable-domain-verification=";

/// A domain an organization claims.
#[derive(Debug, Clone)]
pub struct DomainClaim {
    /// The domain.
    pub domain: DomainName,
    /// The TXT value to publish at [`DomainName::challenge_name`].
    pub challenge: String,
    /// When it was claimed.
    pub created_at: OffsetDateTime,
    /// When its record was seen, if it has been.
    pub verified_at: Option<OffsetDateTime>,
}

/// A connection as stored, its secret still sealed.
#[derive(Debug, Clone)]
pub struct Connection {
    /// Its id.
    pub id: ConnectionId,
    /// Its organization.
    pub org: OrgId,
    /// The provider preset.
    pub provider: Provider,
    /// The issuer.
    pub issuer: Issuer,
    /// The OAuth client id.
    pub client_id: ClientId,
    /// The email domains it signs in (they route only once verified).
    pub domains: Vec<DomainName>,
    /// IdP group → role.
    pub group_roles: GroupRoles,
    /// The role of a user in no mapped group (`None`: refused).
    pub default_role: Option<Role>,
    /// Whether the organization accepts only sessions from this connection.
    pub enforced: bool,
    /// When it was created.
    pub created_at: OffsetDateTime,
    /// When it last changed.
    pub updated_at: OffsetDateTime,
    /// When its SCIM token was issued (`None`: provisioning is off).
    pub scim_token_created_at: Option<OffsetDateTime>,
    sealed_secret: Sealed,
}

impl Connection {
    /// Opens the client secret (for the token request).
    pub fn client_secret(&self, keys: &SecretKeys) -> Result<ClientSecret> {
        let plain = keys.open(self.id.as_uuid().as_bytes(), &self.sealed_secret)?;
        ClientSecret::parse(&String::from_utf8_lossy(&plain))
    }

    /// The id of the key that sealed the secret.
    pub fn secret_key_id(&self) -> &str {
        &self.sealed_secret.key_id
    }
}

/// A new connection.
#[derive(Debug)]
pub struct NewConnection {
    /// The provider preset.
    pub provider: Provider,
    /// The issuer (checked against the preset).
    pub issuer: Issuer,
    /// The OAuth client id.
    pub client_id: ClientId,
    /// The OAuth client secret.
    pub client_secret: ClientSecret,
    /// Email domains it signs in.
    pub domains: Vec<DomainName>,
    /// IdP group → role.
    pub group_roles: GroupRoles,
    /// The role of a user in no mapped group (`None`: refused).
    pub default_role: Option<Role>,
    /// Whether the organization accepts only sessions from this connection.
    pub enforced: bool,
}

/// A change to a connection: each `Some` replaces that setting.
#[derive(Debug, Default)]
pub struct ConnectionPatch {
    /// A new issuer.
    pub issuer: Option<Issuer>,
    /// A new client id.
    pub client_id: Option<ClientId>,
    /// A new client secret.
    pub client_secret: Option<ClientSecret>,
    /// New domains.
    pub domains: Option<Vec<DomainName>>,
    /// A new mapping.
    pub group_roles: Option<GroupRoles>,
    /// A new default role (`Some(None)` removes it).
    pub default_role: Option<Option<Role>>,
    /// Enforcement on or off.
    pub enforced: Option<bool>,
}

/// Who makes a change, from where.
#[derive(Debug, Clone, Copy)]
pub struct Change<'a> {
    /// The organization.
    pub org: OrgId,
    /// The acting owner.
    pub actor: UserId,
    /// The request's audit context.
    pub ctx: &'a AuditContext,
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the operating system's CSPRNG is available");
    URL_SAFE_NO_PAD.encode(bytes)
}

fn secret_fingerprint(secret: &ClientSecret) -> String {
    let d = ring::digest::digest(
        &ring::digest::SHA256,
        format!("defendable-fingerprint-v1:{}", secret.expose()).as_bytes(),
    );
    d.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Appends `receipt` to `org`'s chain and records `event` naming it, both in `tx`: the one way
/// this crate writes a receipt with its audit event. Returns the receipt's id.
pub(crate) async fn receipt_with_event(
    tx: &Transaction<'_>,
    org: OrgId,
    receipt: Draft,
    mut event: AuditEvent,
    ctx: &AuditContext,
) -> Result<String> {
    let sealed = ledger::append_in(tx, org.as_uuid(), receipt).await?;
    event.details["receipt"] = json!(sealed.id);
    event.org_id = Some(org.as_uuid());
    event.context = ctx.clone();
    audit::record(tx, &event).await?;
    Ok(sealed.id)
}

/// Records the change's audit event and its `idp.config_change` receipt in `tx`.
pub(crate) async fn record_change(
    tx: &Transaction<'_>,
    change: Change<'_>,
    action: &str,
    target: String,
    public: Value,
    private: Value,
) -> Result<String> {
    let mut public = public;
    public["change"] = json!(action);
    public["by"] = json!(Role::Owner.as_str());
    let draft = Draft::new(
        ReceiptKind::parse("idp.config_change")?,
        public.clone(),
        Some(json!({ "actor": change.actor.to_string(), "values": private })),
    )?;
    let event = AuditEvent::new(
        AuditAction::parse(&format!("sso.{action}"))?,
        Actor::User(change.actor.as_uuid()),
    )
    .on(target)
    .with(json!({ "fields": public.get("fields") }));
    receipt_with_event(tx, change.org, draft, event, change.ctx).await
}

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
        "domain.add",
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
        "domain.verify",
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
        "domain.remove",
        format!("domain:{domain}"),
        json!({ "domain": domain.as_str(), "was_verified": was_verified, "fields": ["domain"] }),
        json!({}),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

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
async fn check_routing(
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

fn dedup(domains: &[DomainName]) -> Vec<DomainName> {
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

/// The organization's break-glass owners (owners whose flag is set).
async fn break_glass_owners(tx: &Transaction<'_>, org: OrgId) -> Result<i64> {
    Ok(tx
        .query_one(
            &tx.prepare_cached(
                "SELECT count(*) FROM memberships WHERE org_id = $1 AND role = 'owner' AND break_glass",
            )
            .await?,
            &[&org.as_uuid()],
        )
        .await?
        .get(0))
}

/// Enforcing single sign-on needs a break-glass owner, so a broken identity provider never
/// locks an organization out.
/// Takes the organization's row lock first: membership changes judge the last break-glass
/// owner under it, so enforcement and a demotion never both pass unseen by each other.
async fn check_enforceable(tx: &Transaction<'_>, org: OrgId) -> Result<()> {
    tx.execute(
        &tx.prepare_cached("SELECT 1 FROM orgs WHERE id = $1 FOR UPDATE")
            .await?,
        &[&org.as_uuid()],
    )
    .await?;
    if break_glass_owners(tx, org).await? == 0 {
        return Err(SsoError::BreakGlassRequired(
            "enforcing single sign-on needs a break-glass owner first (PUT /orgs/{org}/sso/break-glass/{user})".into(),
        ));
    }
    Ok(())
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
        "connection.create",
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
        "connection.update",
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
        "connection.delete",
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

/// Grants or withdraws break-glass status: an owner who keeps access without single sign-on
/// where it is enforced. At most [`MAX_BREAK_GLASS`] per organization; the last one cannot be
/// withdrawn while a connection enforces sign-on. Each change is an `idp.config_change` receipt.
pub async fn set_break_glass(
    client: &mut impl GenericClient,
    change: Change<'_>,
    user: UserId,
    on: bool,
) -> Result<()> {
    let tx = client.transaction().await?;
    tx.execute(
        &tx.prepare_cached("SELECT 1 FROM orgs WHERE id = $1 FOR UPDATE")
            .await?,
        &[&change.org.as_uuid()],
    )
    .await?;
    let row = tx
        .query_opt(
            &tx.prepare_cached(
                "SELECT role, break_glass FROM memberships WHERE org_id = $1 AND user_id = $2",
            )
            .await?,
            &[&change.org.as_uuid(), &user.as_uuid()],
        )
        .await?
        .ok_or(SsoError::NotFound)?;
    let (role, already): (String, bool) = (row.get(0), row.get(1));
    if on && role != Role::Owner.as_str() {
        return Err(SsoError::InvalidInput(
            "break-glass status is for owners only".into(),
        ));
    }
    if already == on {
        return Ok(());
    }
    let current = break_glass_owners(&tx, change.org).await?;
    if on && current >= MAX_BREAK_GLASS {
        return Err(SsoError::LimitReached(format!(
            "an organization has at most {MAX_BREAK_GLASS} break-glass owners"
        )));
    }
    if !on && current <= 1 {
        let enforced = tx
            .query_opt(
                &tx.prepare_cached(
                    "SELECT 1 FROM sso_connections WHERE org_id = $1 AND enforced LIMIT 1",
                )
                .await?,
                &[&change.org.as_uuid()],
            )
            .await?;
        if enforced.is_some() {
            return Err(SsoError::BreakGlassRequired(
                "the last break-glass owner stays while single sign-on is enforced".into(),
            ));
        }
    }
    tx.execute(
        &tx.prepare_cached(
            "UPDATE memberships SET break_glass = $3 WHERE org_id = $1 AND user_id = $2",
        )
        .await?,
        &[&change.org.as_uuid(), &user.as_uuid(), &on],
    )
    .await?;
    record_change(
        &tx,
        change,
        if on {
            "break_glass.grant"
        } else {
            "break_glass.revoke"
        },
        format!("user:{user}"),
        json!({ "fields": ["break_glass"] }),
        json!({ "user": user.to_string() }),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Break-glass owners per organization (config::limits).
pub const MAX_BREAK_GLASS: i64 = defendable_config::limits::SSO_BREAK_GLASS_OWNERS;

/// Records a break-glass session's use in an organization that enforces single sign-on, once
/// per session and organization: an `sso.break_glass_use` audit event and an `sso.break_glass`
/// receipt, in one transaction. True when this was the first use (the caller alerts).
pub async fn record_break_glass_use(
    client: &mut impl GenericClient,
    org: OrgId,
    user: UserId,
    session: uuid::Uuid,
    ctx: &AuditContext,
) -> Result<bool> {
    let tx = client.transaction().await?;
    let first = tx
        .execute(
            &tx.prepare_cached(
                "INSERT INTO break_glass_uses (session_id, org_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .await?,
            &[&session, &org.as_uuid()],
        )
        .await?
        == 1;
    if first {
        let draft = Draft::new(
            ReceiptKind::parse("sso.break_glass")?,
            json!({ "by": Role::Owner.as_str(), "use": "first in this session" }),
            Some(json!({ "user": user.to_string(), "session": session.to_string() })),
        )?;
        let event = AuditEvent::new(
            AuditAction::parse("sso.break_glass_use")?,
            Actor::User(user.as_uuid()),
        )
        .on(format!("session:{session}"));
        receipt_with_event(&tx, org, draft, event, ctx).await?;
    }
    tx.commit().await?;
    Ok(first)
}
