//! The API shapes of domains and connections (the server's OpenAPI document derives from these
//! with the `openapi` feature). A connection's client secret never appears in any of them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::Provider;
#[cfg(feature = "postgres")]
use crate::store::{Connection, DomainClaim};

/// A claimed domain and how to verify it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DomainView {
    /// The domain.
    pub domain: String,
    /// Whether its TXT record has been seen.
    pub verified: bool,
    /// The record's name: `_defendable-challenge.<domain>`.
    pub txt_name: String,
    /// The record's value.
    pub txt_value: String,
    /// When it was claimed.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it was verified.
    #[serde(with = "time::serde::rfc3339::option")]
    pub verified_at: Option<OffsetDateTime>,
}

#[cfg(feature = "postgres")]
impl From<DomainClaim> for DomainView {
    fn from(c: DomainClaim) -> Self {
        DomainView {
            txt_name: c.domain.challenge_name(),
            domain: c.domain.as_str().to_owned(),
            verified: c.verified_at.is_some(),
            txt_value: c.challenge,
            created_at: c.created_at,
            verified_at: c.verified_at,
        }
    }
}

/// The organization's domains.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DomainList {
    /// Every claimed domain, by name (an organization claims at most 50).
    pub items: Vec<DomainView>,
}

/// An identity-provider connection, without its secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConnectionView {
    /// Its id.
    pub id: Uuid,
    /// Always `oidc` today (SAML 2.0 is on the roadmap).
    pub protocol: String,
    /// The provider preset.
    pub provider: Provider,
    /// The issuer.
    pub issuer: String,
    /// The OAuth client id.
    pub client_id: String,
    /// Always true: a connection has a client secret, which is never returned.
    pub client_secret_set: bool,
    /// The email domains it signs in (each routes only once the organization has verified it).
    pub domains: Vec<String>,
    /// IdP group → `owner` | `member`.
    pub group_roles: BTreeMap<String, String>,
    /// The role of a user in no mapped group; absent: such a user is refused.
    pub default_role: Option<String>,
    /// Whether the organization accepts only sessions from this connection.
    pub enforced: bool,
    /// When it was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it last changed.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// When its SCIM token was issued; absent: SCIM provisioning is off.
    #[serde(with = "time::serde::rfc3339::option")]
    pub scim_token_created_at: Option<OffsetDateTime>,
}

/// A connection's new SCIM token, shown once.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScimTokenView {
    /// The bearer token for `/scim/v2/{org}/…` (`dscim_…`). Only its hash is stored: it is
    /// never shown again; the previous token stopped working.
    pub token: String,
    /// The SCIM base URL to give the identity provider.
    pub base_url: String,
    /// When it was issued.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

#[cfg(feature = "postgres")]
impl From<Connection> for ConnectionView {
    fn from(c: Connection) -> Self {
        ConnectionView {
            id: c.id.as_uuid(),
            protocol: "oidc".to_owned(),
            provider: c.provider,
            issuer: c.issuer.as_str().to_owned(),
            client_id: c.client_id.as_str().to_owned(),
            client_secret_set: true,
            domains: c.domains.iter().map(|d| d.as_str().to_owned()).collect(),
            group_roles: c
                .group_roles
                .iter()
                .map(|(g, r)| (g.clone(), r.as_str().to_owned()))
                .collect(),
            default_role: c.default_role.map(|r| r.as_str().to_owned()),
            enforced: c.enforced,
            created_at: c.created_at,
            updated_at: c.updated_at,
            scim_token_created_at: c.scim_token_created_at,
        }
    }
}

/// The organization's connections.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConnectionList {
    /// Every connection, oldest first (an organization has at most 10).
    pub items: Vec<ConnectionView>,
}

/// `POST /auth/sso/start` body: an email address (its domain picks the connection), an
/// organization with one connection, or an invite to accept; and, for the CLI, its loopback
/// binding.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct StartSso {
    /// The address to sign in; its verified domain names the organization and connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Or an organization (slug or id) that has exactly one connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    /// Or an invite's token: the sign-in accepts it (its address must be the one signed in).
    /// This is how an invite to a domain whose connection enforces single sign-on is accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invite: Option<String>,
    /// Set by a CLI (RFC 8252): the callback sends the browser to its loopback port with the
    /// one-time link instead of to the web app, and no browser cookie is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cli: Option<CliStart>,
}

/// A CLI's binding of a single sign-on it starts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CliStart {
    /// The port the CLI listens on at `127.0.0.1`.
    pub port: u16,
    /// base64url (no padding) of the SHA-256 of a verifier only the CLI holds (RFC 7636 S256);
    /// `POST /auth/verify` redeems the link only with that `code_verifier`.
    pub code_challenge: String,
    /// 22–128 base64url characters the CLI chose at random: the callback sends it to the
    /// loopback port beside the link, and the CLI takes only the request that carries it.
    pub state: String,
}

/// Where to send the browser.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SsoStarted {
    /// The identity provider's authorization URL (code flow, PKCE S256, state, nonce).
    pub authorization_url: String,
    /// Seconds the sign-in may take.
    pub expires_in: u64,
}

/// `GET /auth/sso/callback` query: what the provider redirects back with.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
pub struct SsoCallback {
    /// The authorization code.
    pub code: Option<String>,
    /// The state the sign-in started with.
    pub state: Option<String>,
    /// The issuer (RFC 9207), when the provider sends it.
    pub iss: Option<String>,
    /// The provider's error, when it refused.
    pub error: Option<String>,
}

/// `POST /orgs/{org}/domains` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClaimDomain {
    /// The domain, e.g. `example.com` (an internationalized name in its `xn--` form).
    pub domain: String,
}

/// `POST /orgs/{org}/sso/connections` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateConnection {
    /// The provider preset: `generic`, `google`, `entra` or `okta`.
    pub provider: Provider,
    /// The OpenID Provider's issuer (`https://`), exactly as its ID tokens name it.
    pub issuer: String,
    /// The OAuth client id.
    pub client_id: String,
    /// The OAuth client secret: sealed at rest, never returned.
    pub client_secret: String,
    /// Email domains this connection signs in (each routes once verified).
    pub domains: Vec<String>,
    /// IdP group → `owner` | `member` (at most 100 groups).
    #[serde(default)]
    pub group_roles: BTreeMap<String, String>,
    /// The role of a user in no mapped group; absent: such a user is refused.
    #[serde(default)]
    pub default_role: Option<String>,
    /// Accept only sessions from this connection in the organization.
    #[serde(default)]
    pub enforced: bool,
}

/// `PATCH /orgs/{org}/sso/connections/{id}` body: each field present replaces that setting.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PatchConnection {
    /// A new issuer.
    pub issuer: Option<String>,
    /// A new client id.
    pub client_id: Option<String>,
    /// A new client secret (rotation at the IdP).
    pub client_secret: Option<String>,
    /// New domains.
    pub domains: Option<Vec<String>>,
    /// A new group mapping.
    pub group_roles: Option<BTreeMap<String, String>>,
    /// A new default role; `null` removes it.
    #[serde(default, deserialize_with = "double_option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub default_role: Option<Option<String>>,
    /// Enforcement on or off.
    pub enforced: Option<bool>,
}

/// Tells an absent field (`None`) from an explicit `null` (`Some(None)`).
fn double_option<'de, D>(d: D) -> Result<Option<Option<String>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    Option::<String>::deserialize(d).map(Some)
}
