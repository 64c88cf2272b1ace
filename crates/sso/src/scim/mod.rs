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

pub mod patch;
#[cfg(feature = "postgres")]
pub mod store;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::rand::{SecureRandom, SystemRandom};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{Result, SsoError};

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

/// A directory user as stored.
#[derive(Debug, Clone)]
pub struct UserRecord {
    /// Its id (the directory entry's, not the account's).
    pub id: Uuid,
    /// userName.
    pub user_name: String,
    /// externalId.
    pub external_id: Option<String>,
    /// displayName.
    pub display_name: Option<String>,
    /// active (`None`: not stated, which counts as active).
    pub active: Option<bool>,
    /// emails, as given (value, type, primary).
    pub emails: Value,
    /// Its groups: id and displayName.
    pub groups: Vec<(Uuid, String)>,
    /// Bumped on every change.
    pub version: i64,
    /// Created.
    pub created_at: OffsetDateTime,
    /// Last changed.
    pub updated_at: OffsetDateTime,
}

/// A directory group as stored.
#[derive(Debug, Clone)]
pub struct GroupRecord {
    /// Its id.
    pub id: Uuid,
    /// displayName.
    pub display_name: String,
    /// externalId.
    pub external_id: Option<String>,
    /// Its members' entry ids.
    pub members: Vec<Uuid>,
    /// Bumped on every change.
    pub version: i64,
    /// Created.
    pub created_at: OffsetDateTime,
    /// Last changed.
    pub updated_at: OffsetDateTime,
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

fn meta(
    base: &str,
    kind: Kind,
    id: Uuid,
    version: i64,
    created: OffsetDateTime,
    updated: OffsetDateTime,
) -> Value {
    json!({
        "resourceType": kind.name(),
        "created": rfc3339(created),
        "lastModified": rfc3339(updated),
        "location": format!("{base}{}/{id}", kind.endpoint()),
        "version": format!("W/\"{version}\""),
    })
}

impl UserRecord {
    /// The resource as JSON; `base` is the organization's SCIM base URL.
    pub fn to_json(&self, base: &str) -> Value {
        let mut o = Map::new();
        o.insert("schemas".into(), json!([USER_SCHEMA]));
        o.insert("id".into(), json!(self.id));
        if let Some(e) = &self.external_id {
            o.insert("externalId".into(), json!(e));
        }
        o.insert("userName".into(), json!(self.user_name));
        if let Some(d) = &self.display_name {
            o.insert("displayName".into(), json!(d));
        }
        if let Some(active) = self.active {
            o.insert("active".into(), json!(active));
        }
        if self.emails.as_array().is_some_and(|a| !a.is_empty()) {
            o.insert("emails".into(), self.emails.clone());
        }
        if !self.groups.is_empty() {
            let groups: Vec<Value> = self
                .groups
                .iter()
                .map(|(id, name)| {
                    json!({ "value": id, "$ref": format!("{base}/Groups/{id}"), "display": name })
                })
                .collect();
            o.insert("groups".into(), Value::Array(groups));
        }
        o.insert(
            "meta".into(),
            meta(
                base,
                Kind::User,
                self.id,
                self.version,
                self.created_at,
                self.updated_at,
            ),
        );
        Value::Object(o)
    }

    /// The writable attributes, the document a PATCH works on.
    pub fn document(&self) -> Map<String, Value> {
        let mut o = Map::new();
        o.insert("userName".into(), json!(self.user_name));
        if let Some(e) = &self.external_id {
            o.insert("externalId".into(), json!(e));
        }
        if let Some(d) = &self.display_name {
            o.insert("displayName".into(), json!(d));
        }
        if let Some(active) = self.active {
            o.insert("active".into(), json!(active));
        }
        o.insert("emails".into(), self.emails.clone());
        o
    }
}

impl GroupRecord {
    /// The resource as JSON; `base` is the organization's SCIM base URL.
    pub fn to_json(&self, base: &str) -> Value {
        let mut o = Map::new();
        o.insert("schemas".into(), json!([GROUP_SCHEMA]));
        o.insert("id".into(), json!(self.id));
        if let Some(e) = &self.external_id {
            o.insert("externalId".into(), json!(e));
        }
        o.insert("displayName".into(), json!(self.display_name));
        if !self.members.is_empty() {
            let members: Vec<Value> = self
                .members
                .iter()
                .map(|id| json!({ "value": id, "$ref": format!("{base}/Users/{id}") }))
                .collect();
            o.insert("members".into(), Value::Array(members));
        }
        o.insert(
            "meta".into(),
            meta(
                base,
                Kind::Group,
                self.id,
                self.version,
                self.created_at,
                self.updated_at,
            ),
        );
        Value::Object(o)
    }

    /// The writable attributes, the document a PATCH works on.
    pub fn document(&self) -> Map<String, Value> {
        let mut o = Map::new();
        o.insert("displayName".into(), json!(self.display_name));
        if let Some(e) = &self.external_id {
            o.insert("externalId".into(), json!(e));
        }
        let members: Vec<Value> = self
            .members
            .iter()
            .map(|id| json!({ "value": id }))
            .collect();
        o.insert("members".into(), Value::Array(members));
        o
    }
}

/// A user as a client wrote it, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct UserInput {
    /// userName.
    pub user_name: String,
    /// externalId.
    pub external_id: Option<String>,
    /// displayName.
    pub display_name: Option<String>,
    /// active (`None`: not stated, which counts as active; only `false` deprovisions).
    pub active: Option<bool>,
    /// emails: objects with `value` and optional `type` and `primary`.
    pub emails: Vec<Value>,
}

impl UserInput {
    /// The address that names the account: the primary email, else the first, else userName
    /// when it is an address.
    pub fn address(&self) -> Option<&str> {
        fn value(e: &Value) -> Option<&str> {
            e.get("value").and_then(Value::as_str)
        }
        self.emails
            .iter()
            .find(|e| e.get("primary") == Some(&Value::Bool(true)))
            .and_then(value)
            .or_else(|| self.emails.first().and_then(value))
            .or_else(|| {
                self.user_name
                    .contains('@')
                    .then_some(self.user_name.as_str())
            })
    }
}

/// A group as a client wrote it, validated (members not yet checked against the directory).
#[derive(Debug, Clone, PartialEq)]
pub struct GroupInput {
    /// displayName.
    pub display_name: String,
    /// externalId.
    pub external_id: Option<String>,
    /// Member entry ids, without repeats.
    pub members: Vec<Uuid>,
}

const MAX_TEXT: usize = 256;

fn member<'a>(o: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    o.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
        .filter(|v| !v.is_null())
}

fn text(o: &Map<String, Value>, name: &str, required: bool) -> Result<Option<String>> {
    match member(o, name) {
        None if required => Err(fault(
            ScimFault::InvalidValue,
            format!("{name} is required"),
        )),
        None => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() && required => Err(fault(
            ScimFault::InvalidValue,
            format!("{name} must not be empty"),
        )),
        Some(Value::String(s)) if s.chars().count() > MAX_TEXT => Err(fault(
            ScimFault::InvalidValue,
            format!("{name} is longer than {MAX_TEXT} characters"),
        )),
        Some(Value::String(s)) if s.chars().any(char::is_control) => Err(fault(
            ScimFault::InvalidValue,
            format!("{name} contains control characters"),
        )),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(fault(
            ScimFault::InvalidValue,
            format!("{name} must be a string"),
        )),
    }
}

/// A boolean, also as the strings "true"/"false" in any case (Microsoft Entra sends those).
fn boolean(v: &Value, name: &str) -> Result<bool> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        _ => Err(fault(
            ScimFault::InvalidValue,
            format!("{name} must be a boolean"),
        )),
    }
}

fn object<'a>(v: &'a Value, what: &str) -> Result<&'a Map<String, Value>> {
    v.as_object().ok_or_else(|| {
        fault(
            ScimFault::InvalidSyntax,
            format!("{what} must be a JSON object"),
        )
    })
}

fn values<'a>(o: &'a Map<String, Value>, name: &str, max: usize) -> Result<&'a [Value]> {
    match member(o, name) {
        None => Ok(&[]),
        Some(Value::Array(a)) if a.len() > max => Err(fault(
            ScimFault::TooMany,
            format!("{name} holds at most {max} values"),
        )),
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(fault(
            ScimFault::InvalidValue,
            format!("{name} must be an array"),
        )),
    }
}

/// Reads a User resource (POST, PUT, or a PATCH's result).
pub fn parse_user(body: &Value) -> Result<UserInput> {
    let o = object(body, "a User")?;
    let user_name = text(o, "userName", true)?.unwrap_or_default();
    let active = member(o, "active")
        .map(|v| boolean(v, "active"))
        .transpose()?;
    let mut emails = Vec::new();
    for e in values(o, "emails", defendable_config::limits::SCIM_EMAILS)? {
        let e = object(e, "an email")?;
        let value = text(e, "value", true)?.unwrap_or_default();
        let mut clean = Map::new();
        clean.insert("value".into(), json!(value));
        if let Some(t) = text(e, "type", false)? {
            clean.insert("type".into(), json!(t));
        }
        if let Some(p) = member(e, "primary") {
            clean.insert("primary".into(), json!(boolean(p, "primary")?));
        }
        emails.push(Value::Object(clean));
    }
    if emails
        .iter()
        .filter(|e| e.get("primary") == Some(&Value::Bool(true)))
        .count()
        > 1
    {
        return Err(fault(
            ScimFault::InvalidValue,
            "at most one email is primary",
        ));
    }
    Ok(UserInput {
        user_name,
        external_id: text(o, "externalId", false)?,
        display_name: text(o, "displayName", false)?,
        active,
        emails,
    })
}

/// Reads a Group resource (POST, PUT, or a PATCH's result).
pub fn parse_group(body: &Value) -> Result<GroupInput> {
    let o = object(body, "a Group")?;
    let mut members = Vec::new();
    for m in values(o, "members", defendable_config::limits::SCIM_GROUP_MEMBERS)? {
        let m = object(m, "a member")?;
        let value = text(m, "value", true)?.unwrap_or_default();
        let id = Uuid::parse_str(&value).map_err(|_| {
            fault(
                ScimFault::InvalidValue,
                format!("members: {value:?} is not a user id of this directory"),
            )
        })?;
        if !members.contains(&id) {
            members.push(id);
        }
    }
    Ok(GroupInput {
        display_name: text(o, "displayName", true)?.unwrap_or_default(),
        external_id: text(o, "externalId", false)?,
        members,
    })
}

/// A list filter: one attribute compared for equality (`userName eq "…"`, `externalId eq "…"`,
/// `displayName eq "…"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// The attribute's canonical name.
    pub attribute: &'static str,
    /// The value it must equal.
    pub value: String,
}

impl Filter {
    /// Parses `attr eq "value"` for an attribute of `kind` we filter on.
    pub fn parse(kind: Kind, raw: &str) -> Result<Filter> {
        let invalid = |why: &str| {
            fault(
                ScimFault::InvalidFilter,
                format!("{why}; filters have the form userName eq \"value\" (userName, externalId or displayName for Users; displayName or externalId for Groups)"),
            )
        };
        let raw = raw.trim();
        let (attr, rest) = raw
            .split_once(char::is_whitespace)
            .ok_or_else(|| invalid("the filter is incomplete"))?;
        let rest = rest.trim_start();
        let (op, value) = rest
            .split_once(char::is_whitespace)
            .ok_or_else(|| invalid("the filter is incomplete"))?;
        if !op.eq_ignore_ascii_case("eq") {
            return Err(invalid(&format!("the operator {op:?} is not supported")));
        }
        let value: String = serde_json::from_str(value.trim())
            .map_err(|_| invalid("the value must be a quoted string"))?;
        let filterable: &[&str] = match kind {
            Kind::User => &["userName", "externalId", "displayName"],
            Kind::Group => &["displayName", "externalId"],
        };
        let attribute = kind
            .canonical(attr)
            .filter(|a| filterable.contains(a))
            .ok_or_else(|| invalid(&format!("{attr:?} cannot be filtered on")))?;
        Ok(Filter { attribute, value })
    }
}

/// Pagination as asked (`startIndex` from 1, `count` clamped to [`PAGE_MAX`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// 1-based index of the first resource.
    pub start: i64,
    /// How many at most.
    pub count: i64,
}

impl Page {
    /// From the query's values; a start below 1 counts as 1, a negative count as 0 (RFC 7644
    /// §3.4.2.4).
    pub fn new(start: Option<i64>, count: Option<i64>) -> Page {
        Page {
            start: start.unwrap_or(1).max(1),
            count: count.unwrap_or(PAGE_DEFAULT).clamp(0, PAGE_MAX),
        }
    }
}

/// A list response.
pub fn list_response(total: i64, page: Page, resources: Vec<Value>) -> Value {
    json!({
        "schemas": [LIST_SCHEMA],
        "totalResults": total,
        "startIndex": page.start,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    })
}

/// Applies `attributes` / `excludedAttributes` (comma-separated, RFC 7644 §3.4.2.5) to a
/// resource: `schemas` and `id` always stay; a sub-attribute path keeps or drops its whole
/// top-level attribute.
pub fn project(
    kind: Kind,
    resource: Value,
    attributes: Option<&str>,
    excluded: Option<&str>,
) -> Value {
    let names = |list: Option<&str>| -> Vec<&'static str> {
        list.unwrap_or_default()
            .split(',')
            .filter_map(|a| {
                let a = a.trim();
                let top = strip_schema(kind, a).split('.').next().unwrap_or_default();
                kind.canonical(top)
            })
            .collect()
    };
    let Value::Object(mut o) = resource else {
        return resource;
    };
    let keep = names(attributes);
    let drop = names(excluded);
    if attributes.is_some() {
        o.retain(|k, _| k == "schemas" || k == "id" || keep.contains(&k.as_str()));
    }
    o.retain(|k, _| k == "schemas" || k == "id" || !drop.contains(&k.as_str()));
    Value::Object(o)
}

/// The discovery documents with their locations under `base`.
pub fn schemas(base: &str) -> Vec<Value> {
    let mut all: Vec<Value> =
        serde_json::from_str(include_str!("schemas.json")).expect("schemas.json is valid JSON");
    for s in &mut all {
        let rel = s["meta"]["location"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        s["meta"]["location"] = json!(format!("{base}{rel}"));
    }
    all
}

/// The resource types, with their locations under `base`.
pub fn resource_types(base: &str) -> Vec<Value> {
    [Kind::User, Kind::Group]
        .iter()
        .map(|k| {
            json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
                "id": k.name(),
                "name": k.name(),
                "description": match k {
                    Kind::User => "Directory users",
                    Kind::Group => "Directory groups",
                },
                "endpoint": k.endpoint(),
                "schema": k.schema(),
                "meta": {
                    "resourceType": "ResourceType",
                    "location": format!("{base}/ResourceTypes/{}", k.name()),
                },
            })
        })
        .collect()
}

/// The service provider's configuration.
pub fn service_provider_config(base: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "patch": { "supported": true },
        "bulk": { "supported": false, "maxOperations": 0, "maxPayloadSize": 0 },
        "filter": { "supported": true, "maxResults": PAGE_MAX },
        "changePassword": { "supported": false },
        "sort": { "supported": false },
        "etag": { "supported": false },
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "Connection token",
            "description": "The connection's SCIM token (dscim_…), issued by an owner with POST /orgs/{org}/sso/connections/{id}/scim-token, as a bearer token",
        }],
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": format!("{base}/ServiceProviderConfig"),
        },
    })
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
