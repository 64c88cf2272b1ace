//! Response and request bodies shared by several resources, with their OpenAPI schemas.

use defendable_identity::store as identity;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// Cursor pagination: items after `cursor`, at most `limit` (1–100, default 50).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// The `next_cursor` of the previous page.
    pub cursor: Option<Uuid>,
    /// Page size, 1–100.
    pub limit: Option<i64>,
}

impl PageQuery {
    /// The core's page request.
    pub fn page(&self) -> identity::PageRequest {
        identity::PageRequest::new(self.cursor, self.limit)
    }
}

/// Parses an optional JSON body: no body (or only blanks) is the default; anything else must
/// be the expected object exactly (unknown members refused), never silently ignored. Malformed
/// JSON is 400; JSON of another shape is 422 `invalid_body`.
pub fn optional_body<T: serde::de::DeserializeOwned + Default>(
    body: &[u8],
    what: &str,
) -> Result<T, crate::error::ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| crate::error::ApiError::bad_request(format!("invalid {what}: {e}")))?;
    let shape =
        |detail: String| crate::error::ApiError::new(crate::error::ErrorCode::InvalidBody, detail);
    if !value.is_object() {
        return Err(shape(format!("the {what} must be a JSON object")));
    }
    serde_json::from_value(value).map_err(|e| shape(format!("invalid {what}: {e}")))
}

/// Cuts a fetch of `limit + 1` rows down to `limit` and returns the next page's cursor (the key
/// of the last row kept), or `None` when there is no further page.
pub fn split_page<T, C>(rows: &mut Vec<T>, limit: i64, key: impl Fn(&T) -> C) -> Option<C> {
    if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(key)
    } else {
        None
    }
}

/// A role in an organization.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RoleDto {
    /// Full control, including invites, API keys and roles.
    Owner,
    /// Uses the organization's receipts and datasets.
    Member,
}

impl From<defendable_identity::Role> for RoleDto {
    fn from(r: defendable_identity::Role) -> Self {
        match r {
            defendable_identity::Role::Owner => RoleDto::Owner,
            defendable_identity::Role::Member => RoleDto::Member,
        }
    }
}

impl From<RoleDto> for defendable_identity::Role {
    fn from(r: RoleDto) -> Self {
        match r {
            RoleDto::Owner => defendable_identity::Role::Owner,
            RoleDto::Member => defendable_identity::Role::Member,
        }
    }
}

/// A user.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserDto {
    /// Id.
    pub id: Uuid,
    /// Normalized email.
    pub email: String,
    /// First sign-in.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl From<identity::User> for UserDto {
    fn from(u: identity::User) -> Self {
        UserDto {
            id: u.id.as_uuid(),
            email: u.email,
            created_at: u.created_at,
        }
    }
}

/// An organization.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrgDto {
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

impl From<identity::Org> for OrgDto {
    fn from(o: identity::Org) -> Self {
        OrgDto {
            id: o.id.as_uuid(),
            slug: o.slug,
            name: o.name,
            personal: o.personal,
            created_at: o.created_at,
        }
    }
}

/// An organization and the caller's role in it.
#[derive(Debug, Serialize, ToSchema)]
pub struct MembershipDto {
    /// The organization.
    pub org: OrgDto,
    /// The caller's role.
    pub role: RoleDto,
}

impl From<identity::Membership> for MembershipDto {
    fn from(m: identity::Membership) -> Self {
        MembershipDto {
            org: m.org.into(),
            role: m.role.into(),
        }
    }
}

/// A session for a signed-in user.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionDto {
    /// Send as `Authorization: Bearer <access_token>`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the token expires.
    pub expires_in: i64,
    /// The user.
    pub user: UserDto,
}

macro_rules! page_dto {
    ($name:ident, $item:ty, $doc:literal) => {
        #[doc = $doc]
        #[derive(Debug, Serialize, ToSchema)]
        pub struct $name {
            /// This page's items.
            pub items: Vec<$item>,
            /// Pass as `cursor` for the next page; null on the last page.
            pub next_cursor: Option<Uuid>,
        }

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
    MembershipDto,
    "A page of the caller's organizations."
);
page_dto!(
    MemberPage,
    MemberDto,
    "A page of an organization's members."
);
page_dto!(InvitePage, InviteDto, "A page of pending invites.");
page_dto!(ApiKeyPage, ApiKeyDto, "A page of API keys.");

/// A member of an organization.
#[derive(Debug, Serialize, ToSchema)]
pub struct MemberDto {
    /// The user's id (use it in member paths).
    pub user_id: Uuid,
    /// The user's email.
    pub email: String,
    /// Role.
    pub role: RoleDto,
    /// When they joined.
    #[serde(with = "time::serde::rfc3339")]
    pub joined_at: OffsetDateTime,
}

impl From<identity::Member> for MemberDto {
    fn from(m: identity::Member) -> Self {
        MemberDto {
            user_id: m.user_id.as_uuid(),
            email: m.email,
            role: m.role.into(),
            joined_at: m.joined_at,
        }
    }
}

/// A pending invite.
#[derive(Debug, Serialize, ToSchema)]
pub struct InviteDto {
    /// Id.
    pub id: Uuid,
    /// Invited address.
    pub email: String,
    /// Role granted on acceptance.
    pub role: RoleDto,
    /// Who invited.
    pub invited_by: Uuid,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Expiry.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

impl From<identity::Invite> for InviteDto {
    fn from(i: identity::Invite) -> Self {
        InviteDto {
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
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyDto {
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

impl From<identity::ApiKey> for ApiKeyDto {
    fn from(k: identity::ApiKey) -> Self {
        ApiKeyDto {
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
