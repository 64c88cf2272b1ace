//! The shapes the API answers with for people, organizations, memberships, invites and keys,
//! typed once here for the server and its clients (the CLI reads them without the `postgres`
//! feature). The `openapi` feature derives their schemas under the names the API document has
//! always used (`UserDto`, …).

#[cfg(feature = "postgres")]
use crate::store as identity;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// A role in an organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = RoleDto))]
#[serde(rename_all = "lowercase")]
pub enum RoleView {
    /// Full control, including invites, API keys and roles.
    Owner,
    /// Uses the organization's receipts and datasets.
    Member,
}

impl From<crate::Role> for RoleView {
    fn from(r: crate::Role) -> Self {
        match r {
            crate::Role::Owner => RoleView::Owner,
            crate::Role::Member => RoleView::Member,
        }
    }
}

impl From<RoleView> for crate::Role {
    fn from(r: RoleView) -> Self {
        match r {
            RoleView::Owner => crate::Role::Owner,
            RoleView::Member => crate::Role::Member,
        }
    }
}

/// A user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = UserDto))]
pub struct UserView {
    /// Id.
    pub id: Uuid,
    /// Normalized email.
    pub email: String,
    /// First sign-in.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

#[cfg(feature = "postgres")]
impl From<identity::User> for UserView {
    fn from(u: identity::User) -> Self {
        UserView {
            id: u.id.as_uuid(),
            email: u.email,
            created_at: u.created_at,
        }
    }
}

/// An organization.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = OrgDto))]
pub struct OrgView {
    /// Id.
    pub id: Uuid,
    /// URL name, usable wherever `{org}` appears.
    pub slug: String,
    /// Display name.
    pub name: String,
    /// Whether it is a user's personal organization.
    pub personal: bool,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

#[cfg(feature = "postgres")]
impl From<identity::Org> for OrgView {
    fn from(o: identity::Org) -> Self {
        OrgView {
            id: o.id.as_uuid(),
            slug: o.slug,
            name: o.name,
            personal: o.personal,
            created_at: o.created_at,
        }
    }
}

/// An organization and the caller's role in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = MembershipDto))]
pub struct MembershipView {
    /// The organization.
    pub org: OrgView,
    /// The caller's role.
    pub role: RoleView,
}

#[cfg(feature = "postgres")]
impl From<identity::Membership> for MembershipView {
    fn from(m: identity::Membership) -> Self {
        MembershipView {
            org: m.org.into(),
            role: m.role.into(),
        }
    }
}

/// A session for a signed-in user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = SessionDto))]
pub struct SessionView {
    /// Send as `Authorization: Bearer <access_token>`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the token expires.
    pub expires_in: i64,
    /// The user.
    pub user: UserView,
}

macro_rules! page_dto {
    ($name:ident, $item:ty, $doc:literal) => {
        #[doc = $doc]
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        pub struct $name {
            /// This page's items.
            pub items: Vec<$item>,
            /// Pass as `cursor` for the next page; null on the last page.
            pub next_cursor: Option<Uuid>,
        }

        #[cfg(feature = "postgres")]
        impl<T: Into<$item>> From<identity::Page<T>> for $name {
            fn from(p: identity::Page<T>) -> Self {
                $name {
                    items: p.items.into_iter().map(Into::into).collect(),
                    next_cursor: p.next_cursor,
                }
            }
        }
    };
}

page_dto!(
    MembershipPage,
    MembershipView,
    "A page of the caller's organizations."
);
page_dto!(
    MemberPage,
    MemberView,
    "A page of an organization's members."
);
page_dto!(InvitePage, InviteView, "A page of pending invites.");
page_dto!(ApiKeyPage, ApiKeyView, "A page of API keys.");

/// A member of an organization.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = MemberDto))]
pub struct MemberView {
    /// The user's id (use it in member paths).
    pub user_id: Uuid,
    /// The user's email.
    pub email: String,
    /// Role.
    pub role: RoleView,
    /// When they joined.
    #[serde(with = "time::serde::rfc3339")]
    pub joined_at: OffsetDateTime,
}

#[cfg(feature = "postgres")]
impl From<identity::Member> for MemberView {
    fn from(m: identity::Member) -> Self {
        MemberView {
            user_id: m.user_id.as_uuid(),
            email: m.email,
            role: m.role.into(),
            joined_at: m.joined_at,
        }
    }
}

/// A pending invite.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = InviteDto))]
pub struct InviteView {
    /// Id.
    pub id: Uuid,
    /// Invited address.
    pub email: String,
    /// Role granted on acceptance.
    pub role: RoleView,
    /// Who invited.
    pub invited_by: Uuid,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Expiry.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

#[cfg(feature = "postgres")]
impl From<identity::Invite> for InviteView {
    fn from(i: identity::Invite) -> Self {
        InviteView {
            id: i.id.as_uuid(),
            email: i.email,
            role: i.role.into(),
            invited_by: i.invited_by.as_uuid(),
            created_at: i.created_at,
            expires_at: i.expires_at,
        }
    }
}

/// An API key (never its secret).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = ApiKeyDto))]
pub struct ApiKeyView {
    /// Id.
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// The fixed prefix (`dfd_`).
    pub prefix: String,
    /// Last four characters.
    pub last4: String,
    /// Creator.
    pub created_by: Uuid,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Last use (updated at most once a minute).
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
    /// Expiry, if any.
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    /// Revocation time, if revoked.
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
}

#[cfg(feature = "postgres")]
impl From<identity::ApiKey> for ApiKeyView {
    fn from(k: identity::ApiKey) -> Self {
        ApiKeyView {
            id: k.id.as_uuid(),
            name: k.name,
            prefix: k.prefix,
            last4: k.last4,
            created_by: k.created_by.as_uuid(),
            created_at: k.created_at,
            last_used_at: k.last_used_at,
            expires_at: k.expires_at,
            revoked_at: k.revoked_at,
        }
    }
}

/// The caller and their organizations (`GET /me`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = MeDto))]
pub struct MeView {
    /// The user.
    pub user: UserView,
    /// Their first 100 memberships (page through `GET /orgs` for more).
    pub memberships: Vec<MembershipView>,
}

/// A newly created key, with its secret shown this once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = CreatedApiKey))]
pub struct CreatedApiKeyView {
    /// The key's public facts.
    pub key: ApiKeyView,
    /// The secret: `dfd_` + 40 base62 characters + a 6-character checksum. Store it now; it is
    /// never shown again.
    pub secret: String,
}

// The request bodies the API takes (and the CLI sends).

/// `POST /auth/request` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuthRequest {
    /// The address to send a sign-in link to.
    pub email: String,
}

/// A body carrying a one-time token from a mailed link.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenBody {
    /// The `token` query parameter of the mailed link.
    pub token: String,
}

/// `POST /auth/verify` body: a one-time sign-in token, and the CLI's verifier for a link a
/// single sign-on handed to it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VerifyBody {
    /// The `token` query parameter of the mailed link (or of the single sign-on's redirect).
    pub token: String,
    /// For a link a single sign-on sent to a CLI's loopback port: the verifier whose SHA-256
    /// the CLI sent as `cli.code_challenge` when it started. Such a link is refused without it.
    pub code_verifier: Option<String>,
}

/// `POST /orgs` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateOrg {
    /// URL name: 3–40 characters of a-z, 0-9 and single inner hyphens.
    pub slug: String,
    /// Display name.
    pub name: String,
}

/// `PATCH /orgs/{org}/members/{user}` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SetRole {
    /// The new role.
    pub role: RoleView,
}

/// `POST /orgs/{org}/invites` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateInvite {
    /// Address to invite; only this address can accept.
    pub email: String,
    /// Role granted on acceptance.
    pub role: RoleView,
}

/// `POST /orgs/{org}/api-keys` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateApiKey {
    /// A name to tell keys apart (1–100 characters).
    pub name: String,
    /// Optional expiry (RFC 3339, in the future).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
}
