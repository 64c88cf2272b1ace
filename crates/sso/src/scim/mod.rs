//! SCIM 2.0 provisioning (RFC 7643, RFC 7644) for one connection's directory: Users and Groups,
//! their discovery documents, filters, pagination, attribute projection and PATCH.
//!
//! Directory entries are the identity provider's; what they grant is ours to decide:
//! - an entry links to an account by its email address only when the address is in one of the
//!   connection's verified domains (as an OIDC sign-in must be); an entry outside them is kept
//!   and grants nothing;
//! - the linked user's role in the organization comes from the entry's groups through the
//!   connection's group mapping (or its default role); `active: false`, removal from every
//!   mapped group, or deleting the entry deprovisions: the membership goes, and so do the
//!   user's sessions from this organization's connections and the API keys they created in it;
//! - nothing here changes an account as other organizations see it: names and addresses stay
//!   in the entry, a changed address moves the membership to the account with that address.
//!
//! [`store`] holds the writes (each in one transaction with its audit events and
//! `member.role_change` receipts); [`patch`] applies PATCH operations to a resource's document.

mod discovery;
mod input;
pub mod patch;
mod query;
mod records;
#[cfg(feature = "postgres")]
pub mod store;

pub use discovery::{resource_types, schemas, service_provider_config};
pub use input::{parse_group, parse_user, GroupInput, UserInput};
pub use query::{list_response, project, Filter, Page};
pub use records::{GroupRecord, Resource, UserRecord};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::rand::{SecureRandom, SystemRandom};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};

use crate::SsoError;

/// The User schema.
pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// The Group schema.
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
/// A list response.
pub const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
/// A PATCH request.
pub const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// An error response.
pub const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
/// The content type of every SCIM answer.
pub const CONTENT_TYPE: &str = "application/scim+json";

/// Resources per page unless `count` says otherwise, and the most a page holds
/// (config::limits).
pub const PAGE_DEFAULT: i64 = defendable_config::limits::SCIM_PAGE_DEFAULT;
/// The most resources one page holds (config::limits).
pub const PAGE_MAX: i64 = defendable_config::limits::SCIM_PAGE_MAX;

/// Why a SCIM request was refused, in RFC 7644 §3.12's vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScimFault {
    /// A value is missing, of the wrong type or out of range.
    InvalidValue,
    /// The request body is not a SCIM message.
    InvalidSyntax,
    /// The filter is malformed or names what we cannot filter on.
    InvalidFilter,
    /// A PATCH path is malformed or names an unknown attribute.
    InvalidPath,
    /// A PATCH path's filter matched nothing.
    NoTarget,
    /// The change would alter a read-only attribute.
    Mutability,
    /// userName (or the account an address names) is taken in this directory.
    Uniqueness,
    /// Too many operations, members or addresses (config::limits).
    TooMany,
    /// The change would leave the organization without an owner.
    LastOwner,
    /// Not supported (bulk, root searches, sorting).
    NotImplemented,
}

impl ScimFault {
    /// The `scimType` keyword, where RFC 7644 defines one.
    pub fn scim_type(self) -> Option<&'static str> {
        match self {
            ScimFault::InvalidValue => Some("invalidValue"),
            ScimFault::InvalidSyntax => Some("invalidSyntax"),
            ScimFault::InvalidFilter => Some("invalidFilter"),
            ScimFault::InvalidPath => Some("invalidPath"),
            ScimFault::NoTarget => Some("noTarget"),
            ScimFault::Mutability => Some("mutability"),
            ScimFault::Uniqueness => Some("uniqueness"),
            ScimFault::TooMany => Some("tooMany"),
            ScimFault::LastOwner | ScimFault::NotImplemented => None,
        }
    }
}

pub(crate) fn fault(kind: ScimFault, detail: impl Into<String>) -> SsoError {
    SsoError::Scim(kind, detail.into())
}

/// A connection's SCIM bearer token: `dscim_` and 43 base64url characters. Only its SHA-256 is
/// stored; it is shown once, when it is issued.
pub struct ScimToken(SecretString);

impl ScimToken {
    /// The fixed prefix (secret scanners can find leaked tokens by it).
    pub const PREFIX: &'static str = "dscim_";
    const LEN: usize = 6 + 43;

    /// A fresh token.
    pub fn generate() -> ScimToken {
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .expect("the operating system's CSPRNG is available");
        ScimToken(SecretString::from(format!(
            "{}{}",
            Self::PREFIX,
            URL_SAFE_NO_PAD.encode(bytes)
        )))
    }

    /// A presented token, if it has the token's shape.
    pub fn parse(raw: &str) -> Option<ScimToken> {
        let ok = raw.len() == Self::LEN
            && raw.starts_with(Self::PREFIX)
            && raw[Self::PREFIX.len()..]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        ok.then(|| ScimToken(SecretString::from(raw.to_owned())))
    }

    /// The hash stored and looked up.
    pub fn hash(&self) -> [u8; 32] {
        let d = ring::digest::digest(&ring::digest::SHA256, self.0.expose_secret().as_bytes());
        d.as_ref().try_into().expect("SHA-256 is 32 bytes")
    }

    /// The token text, returned once, when it is issued.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl std::fmt::Debug for ScimToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScimToken(…)")
    }
}

/// The two resource types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `/Users`.
    User,
    /// `/Groups`.
    Group,
}

impl Kind {
    /// The resource type's name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::User => "User",
            Kind::Group => "Group",
        }
    }

    /// Its endpoint, relative to the base URL.
    pub fn endpoint(self) -> &'static str {
        match self {
            Kind::User => "/Users",
            Kind::Group => "/Groups",
        }
    }

    /// Its schema's URI.
    pub fn schema(self) -> &'static str {
        match self {
            Kind::User => USER_SCHEMA,
            Kind::Group => GROUP_SCHEMA,
        }
    }

    /// The attributes a client may write, by their canonical names, and whether each holds
    /// several values.
    pub(crate) fn writable(self) -> &'static [(&'static str, bool)] {
        match self {
            Kind::User => &[
                ("userName", false),
                ("externalId", false),
                ("displayName", false),
                ("active", false),
                ("emails", true),
            ],
            Kind::Group => &[
                ("displayName", false),
                ("externalId", false),
                ("members", true),
            ],
        }
    }

    /// Every attribute a response can carry, by canonical name.
    fn attributes(self) -> &'static [&'static str] {
        match self {
            Kind::User => &[
                "schemas",
                "id",
                "externalId",
                "meta",
                "userName",
                "displayName",
                "active",
                "emails",
                "groups",
            ],
            Kind::Group => &[
                "schemas",
                "id",
                "externalId",
                "meta",
                "displayName",
                "members",
            ],
        }
    }

    /// `name` (case-insensitive, with or without this schema's URI as prefix) as the canonical
    /// attribute name, if it is one.
    pub(crate) fn canonical(self, name: &str) -> Option<&'static str> {
        let bare = strip_schema(self, name);
        self.attributes()
            .iter()
            .copied()
            .find(|a| a.eq_ignore_ascii_case(bare))
    }
}

/// `name` without this kind's schema URI and its colon, if it starts with them.
pub(crate) fn strip_schema(kind: Kind, name: &str) -> &str {
    let schema = kind.schema();
    if name.len() > schema.len()
        && name[..schema.len()].eq_ignore_ascii_case(schema)
        && name.as_bytes()[schema.len()] == b':'
    {
        &name[schema.len() + 1..]
    } else {
        name
    }
}

/// An RFC 7644 §3.12 error body.
pub fn error_body(status: u16, fault: Option<ScimFault>, detail: &str) -> Value {
    let mut o = json!({
        "schemas": [ERROR_SCHEMA],
        "status": status.to_string(),
        "detail": detail,
    });
    if let Some(t) = fault.and_then(ScimFault::scim_type) {
        o["scimType"] = json!(t);
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_the_three_supported_attributes_only() {
        let f = Filter::parse(Kind::User, r#"userName eq "Bjensen@Example.com""#).unwrap();
        assert_eq!(f.attribute, "userName");
        assert_eq!(f.value, "Bjensen@Example.com");
        let f = Filter::parse(
            Kind::User,
            r#"urn:ietf:params:scim:schemas:core:2.0:User:externalId EQ "a \"b\"""#,
        )
        .unwrap();
        assert_eq!((f.attribute, f.value.as_str()), ("externalId", "a \"b\""));
        assert_eq!(
            Filter::parse(Kind::Group, r#"displayName eq "Admins""#)
                .unwrap()
                .attribute,
            "displayName"
        );
        for bad in [
            r#"userName co "x""#,
            r#"emails eq "x""#,
            "userName eq x",
            "userName",
            r#"userName eq "x" and active eq true"#,
        ] {
            assert!(
                matches!(
                    Filter::parse(Kind::User, bad),
                    Err(SsoError::Scim(ScimFault::InvalidFilter, _))
                ),
                "{bad}"
            );
        }
        assert!(Filter::parse(Kind::Group, r#"userName eq "x""#).is_err());
    }

    #[test]
    fn users_parse_with_entra_booleans_and_name_their_account_address() {
        let u = parse_user(&json!({
            "userName": "bjensen",
            "ACTIVE": "False",
            "emails": [
                {"value": "home@example.org", "type": "home"},
                {"value": "Barbara@Example.com", "type": "work", "primary": true}
            ]
        }))
        .unwrap();
        assert_eq!(u.active, Some(false));
        assert_eq!(u.address(), Some("Barbara@Example.com"));
        let u = parse_user(&json!({"userName": "b@example.com"})).unwrap();
        assert_eq!(u.address(), Some("b@example.com"));
        assert_eq!(u.active, None);
        assert_eq!(
            parse_user(&json!({"userName": "b"})).unwrap().address(),
            None
        );
        for bad in [
            json!({}),
            json!({"userName": ""}),
            json!({"userName": 3}),
            json!({"userName": "a", "active": "yes"}),
            json!({"userName": "a", "emails": [{"value": "x@y.z", "primary": true}, {"value": "w@y.z", "primary": true}]}),
            json!({"userName": "a\u{0}"}),
        ] {
            assert!(parse_user(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn projection_keeps_id_and_schemas() {
        let r = json!({"schemas": [USER_SCHEMA], "id": "1", "userName": "a", "displayName": "A", "emails": [], "meta": {}});
        let p = project(
            Kind::User,
            r.clone(),
            Some("displayName,emails.value"),
            None,
        );
        assert_eq!(
            p,
            json!({"schemas": [USER_SCHEMA], "id": "1", "displayName": "A", "emails": []})
        );
        let p = project(
            Kind::User,
            r,
            None,
            Some("urn:ietf:params:scim:schemas:core:2.0:User:displayName,id"),
        );
        assert_eq!(
            p,
            json!({"schemas": [USER_SCHEMA], "id": "1", "userName": "a", "emails": [], "meta": {}})
        );
    }

    #[test]
    fn tokens_have_their_shape_and_hide_in_debug() {
        let t = ScimToken::generate();
        assert!(t.expose().starts_with("dscim_"));
        assert!(ScimToken::parse(t.expose()).is_some());
        assert_eq!(ScimToken::parse(t.expose()).unwrap().hash(), t.hash());
        assert!(ScimToken::parse("dscim_short").is_none());
        assert!(ScimToken::parse(&t.expose().replace("dscim_", "dscin_")).is_none());
        assert_eq!(format!("{t:?}"), "ScimToken(…)");
    }
}
