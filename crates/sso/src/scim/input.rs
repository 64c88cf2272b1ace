//! Users and groups as a client wrote them: one strict parse into validated inputs.

use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::Result;

use super::*;

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
