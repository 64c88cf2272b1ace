//! The directory's resources as stored and as SCIM documents, and what users and groups
//! share as resource types.

use serde_json::{json, Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::Result;

use super::*;

/// What users and groups share as SCIM resource types, so that what is done to either —
/// parsed, stored, patched, answered — is written once over this.
pub trait Resource: Sized {
    /// A body as a client wrote it, validated.
    type Input;
    /// Users or Groups.
    const KIND: Kind;
    /// One strict parse of a client's body.
    fn parse(body: &Value) -> Result<Self::Input>;
    /// The SCIM document, its locations under `base`.
    fn to_json(&self, base: &str) -> Value;
    /// The document PATCH operates on (re-validated as a PUT body afterwards).
    fn document(&self) -> Map<String, Value>;
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

/// What every resource's document starts with: its schema, its id and its `externalId`.
fn head(kind: Kind, id: Uuid, external_id: Option<&str>) -> Map<String, Value> {
    let mut o = Map::new();
    o.insert("schemas".into(), json!([kind.schema()]));
    o.insert("id".into(), json!(id));
    if let Some(e) = external_id {
        o.insert("externalId".into(), json!(e));
    }
    o
}

impl Resource for UserRecord {
    type Input = UserInput;
    const KIND: Kind = Kind::User;

    fn parse(body: &Value) -> Result<UserInput> {
        parse_user(body)
    }

    /// The resource as JSON; `base` is the organization's SCIM base URL.
    fn to_json(&self, base: &str) -> Value {
        let mut o = head(Kind::User, self.id, self.external_id.as_deref());
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
    fn document(&self) -> Map<String, Value> {
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

impl Resource for GroupRecord {
    type Input = GroupInput;
    const KIND: Kind = Kind::Group;

    fn parse(body: &Value) -> Result<GroupInput> {
        parse_group(body)
    }

    /// The resource as JSON; `base` is the organization's SCIM base URL.
    fn to_json(&self, base: &str) -> Value {
        let mut o = head(Kind::Group, self.id, self.external_id.as_deref());
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
    fn document(&self) -> Map<String, Value> {
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
