//! Domains and connections in PostgreSQL. Every change writes its row, its audit event and an
//! `idp.config_change` receipt in the organization's chain in one transaction: all three or
//! none. The receipt's public part says what changed and by which role, never a value that could
//! be a secret; the private part (covered by its digest) holds the acting user and the new
//! non-secret values, and a fingerprint of a new client secret.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use deadpool_postgres::Transaction;
use defendable_identity::{OrgId, Role, UserId};
use defendable_ledger::store as ledger;
use defendable_ledger::{Draft, ReceiptKind};
use defendable_store::audit::{self, Actor, AuditAction, AuditContext, AuditEvent};
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::domain::{
    ClientId, ClientSecret, ConnectionId, DomainName, GroupRoles, Issuer, Provider,
};
use crate::sealed::{Sealed, SecretKeys};
use crate::view::{CreateConnection, PatchConnection};
use crate::Result;

mod break_glass;
mod connections;
mod domains;

pub(crate) use break_glass::check_enforceable;
pub use break_glass::{record_break_glass_use, set_break_glass, MAX_BREAK_GLASS};
pub use connections::{
    create_connection, delete_connection, get_connection, get_connection_by_id, list_connections,
    update_connection, verified_domain,
};
pub(crate) use connections::{is_verified, row_connection, CONNECTION_COLUMNS};
pub use domains::{
    add_domain, challenge_found, get_domain, list_domains, mark_verified, remove_domain,
};

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

pub(crate) fn random_token() -> String {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the operating system's CSPRNG is available");
    URL_SAFE_NO_PAD.encode(bytes)
}

pub(crate) fn secret_fingerprint(secret: &ClientSecret) -> String {
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
    action: AuditAction,
    target: String,
    public: Value,
    private: Value,
) -> Result<String> {
    let mut public = public;
    // The receipt names the change without the audit namespace (`domain.add`).
    let change_name = action
        .as_str()
        .strip_prefix("sso.")
        .unwrap_or(action.as_str());
    public["change"] = json!(change_name);
    public["by"] = json!(Role::Owner.as_str());
    let draft = Draft::new(
        ReceiptKind::parse("idp.config_change")?,
        public.clone(),
        Some(json!({ "actor": change.actor.to_string(), "values": private })),
    )?;
    let event = AuditEvent::new(action, Actor::User(change.actor.as_uuid()))
        .on(target)
        .with(json!({ "fields": public.get("fields") }));
    receipt_with_event(tx, change.org, draft, event, change.ctx).await
}

impl CreateConnection {
    /// The connection this body describes, each value parsed; `allow_http` accepts `http://`
    /// issuers (never in production).
    pub fn parse(&self, allow_http: bool) -> Result<NewConnection> {
        Ok(NewConnection {
            provider: self.provider,
            issuer: Issuer::parse(&self.issuer, allow_http)?,
            client_id: ClientId::parse(&self.client_id)?,
            client_secret: ClientSecret::parse(&self.client_secret)?,
            domains: domains(&self.domains)?,
            group_roles: GroupRoles::parse(&self.group_roles)?,
            default_role: self.default_role.as_deref().map(role).transpose()?,
            enforced: self.enforced,
        })
    }
}

impl PatchConnection {
    /// The change this body describes, each value present parsed; `allow_http` as for
    /// [`CreateConnection::parse`].
    pub fn parse(&self, allow_http: bool) -> Result<ConnectionPatch> {
        Ok(ConnectionPatch {
            issuer: self
                .issuer
                .as_deref()
                .map(|i| Issuer::parse(i, allow_http))
                .transpose()?,
            client_id: self.client_id.as_deref().map(ClientId::parse).transpose()?,
            client_secret: self
                .client_secret
                .as_deref()
                .map(ClientSecret::parse)
                .transpose()?,
            domains: self.domains.as_deref().map(domains).transpose()?,
            group_roles: self
                .group_roles
                .as_ref()
                .map(GroupRoles::parse)
                .transpose()?,
            default_role: self
                .default_role
                .as_ref()
                .map(|r| r.as_deref().map(role).transpose())
                .transpose()?,
            enforced: self.enforced,
        })
    }
}

fn domains(list: &[String]) -> Result<Vec<DomainName>> {
    list.iter().map(|d| DomainName::parse(d)).collect()
}

fn role(r: &str) -> Result<Role> {
    Role::parse(r).map_err(crate::identity_error)
}
