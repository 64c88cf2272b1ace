//! Listing: the equality filter, pagination, the list response and attribute projection.

use serde_json::{json, Value};

use crate::Result;

use super::*;

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
