//! PATCH (RFC 7644 §3.5.2) on a resource's document of writable attributes. The result is read
//! again by `parse_user` / `parse_group`, so a PATCH can never store what a PUT could not.
//!
//! Paths: `attr`, `attr.sub`, `attr[sub eq "v"]` and `attr[sub eq "v"].sub`, each optionally
//! prefixed by the resource's schema URI; `op` in any case; no path with an object value sets
//! each of its attributes. A `remove` of a multi-valued attribute with a value removes the listed
//! values (`{"op":"remove","path":"members","value":[{"value":"…"}]}`, as Microsoft Entra sends).

use serde_json::{Map, Value};

use super::{fault, strip_schema, Kind, ScimFault, PATCH_SCHEMA};
use crate::Result;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Replace,
    Remove,
}

/// A parsed path.
#[derive(Debug, PartialEq, Eq)]
struct Path {
    attr: &'static str,
    multi: bool,
    /// `[sub eq "value"]`.
    filter: Option<(String, String)>,
    /// `.sub` after the attribute or the filter.
    sub: Option<String>,
}

fn invalid_path(path: &str, why: &str) -> crate::SsoError {
    fault(ScimFault::InvalidPath, format!("path {path:?}: {why}"))
}

fn parse_path(kind: Kind, raw: &str) -> Result<Path> {
    let s = strip_schema(kind, raw.trim());
    let (head, filter, tail) = match s.find('[') {
        Some(open) => {
            let close = s
                .rfind(']')
                .filter(|c| *c > open)
                .ok_or_else(|| invalid_path(raw, "unclosed ["))?;
            let inner = &s[open + 1..close];
            let (sub, rest) = inner
                .trim()
                .split_once(char::is_whitespace)
                .ok_or_else(|| invalid_path(raw, "the filter is incomplete"))?;
            let (op, value) = rest
                .trim_start()
                .split_once(char::is_whitespace)
                .ok_or_else(|| invalid_path(raw, "the filter is incomplete"))?;
            if !op.eq_ignore_ascii_case("eq") {
                return Err(invalid_path(raw, "only eq filters are supported"));
            }
            let value: String = serde_json::from_str(value.trim())
                .map_err(|_| invalid_path(raw, "the filter's value must be a quoted string"))?;
            let tail = &s[close + 1..];
            (&s[..open], Some((sub.to_owned(), value)), tail)
        }
        None => match s.split_once('.') {
            Some((head, _)) => (head, None, &s[head.len()..]),
            None => (s, None, ""),
        },
    };
    let sub = match tail {
        "" => None,
        t => Some(
            t.strip_prefix('.')
                .filter(|t| !t.is_empty() && !t.contains('.'))
                .ok_or_else(|| invalid_path(raw, "malformed sub-attribute"))?
                .to_owned(),
        ),
    };
    let (attr, multi) = kind
        .writable()
        .iter()
        .copied()
        .find(|(a, _)| a.eq_ignore_ascii_case(head))
        .ok_or_else(|| match kind.canonical(head) {
            Some(a) => fault(
                ScimFault::Mutability,
                format!("{a} cannot be changed by a client"),
            ),
            None => invalid_path(raw, "no such attribute"),
        })?;
    if !multi && (filter.is_some() || sub.is_some()) {
        return Err(invalid_path(
            raw,
            "only multi-valued attributes have sub-attributes here",
        ));
    }
    Ok(Path {
        attr,
        multi,
        filter,
        sub,
    })
}

fn key_of<'a>(o: &'a Map<String, Value>, name: &str) -> Option<&'a String> {
    o.keys().find(|k| k.eq_ignore_ascii_case(name))
}

fn matches(element: &Value, filter: &(String, String)) -> bool {
    element
        .as_object()
        .and_then(|o| key_of(o, &filter.0).and_then(|k| o.get(k)))
        .is_some_and(|v| match v {
            Value::String(s) => s.eq_ignore_ascii_case(&filter.1),
            Value::Bool(b) => b.to_string() == filter.1.to_ascii_lowercase(),
            _ => false,
        })
}

fn as_list(value: Value) -> Vec<Value> {
    match value {
        Value::Array(a) => a,
        Value::Null => Vec::new(),
        other => vec![other],
    }
}

/// The same element, for `add` without repeats: members by `value`, anything else whole.
fn same(kind: Kind, a: &Value, b: &Value) -> bool {
    match kind {
        Kind::Group => a.get("value").is_some() && a.get("value") == b.get("value"),
        Kind::User => a == b,
    }
}

fn set_sub(element: &mut Value, sub: &str, value: Value) {
    if let Value::Object(o) = element {
        let key = key_of(o, sub).cloned().unwrap_or_else(|| sub.to_owned());
        o.insert(key, value);
    }
}

fn apply_one(
    kind: Kind,
    doc: &mut Map<String, Value>,
    op: Op,
    path: &Path,
    value: Option<Value>,
) -> Result<()> {
    let current = doc.get(path.attr).cloned().unwrap_or(Value::Null);
    let need_value = || {
        value.clone().ok_or_else(|| {
            fault(
                ScimFault::InvalidValue,
                format!("{} needs a value", path.attr),
            )
        })
    };
    if !path.multi {
        match op {
            Op::Add | Op::Replace => {
                doc.insert(path.attr.to_owned(), need_value()?);
            }
            Op::Remove => {
                doc.remove(path.attr);
            }
        }
        return Ok(());
    }
    let mut list = as_list(current);
    match (&path.filter, &path.sub, op) {
        (None, None, Op::Add) => {
            for v in as_list(need_value()?) {
                if !list.iter().any(|e| same(kind, e, &v)) {
                    list.push(v);
                }
            }
        }
        (None, None, Op::Replace) => list = as_list(need_value()?),
        (None, None, Op::Remove) => match value {
            Some(v) => {
                let gone = as_list(v);
                list.retain(|e| !gone.iter().any(|g| same(kind, e, g) || e == g));
            }
            None => list.clear(),
        },
        (None, Some(sub), Op::Add | Op::Replace) => {
            let v = need_value()?;
            for e in &mut list {
                set_sub(e, sub, v.clone());
            }
        }
        (None, Some(sub), Op::Remove) => {
            for e in &mut list {
                if let Value::Object(o) = e {
                    if let Some(k) = key_of(o, sub).cloned() {
                        o.remove(&k);
                    }
                }
            }
        }
        (Some(filter), sub, Op::Add | Op::Replace) => {
            let v = need_value()?;
            let mut found = false;
            for e in list.iter_mut().filter(|e| matches(e, filter)) {
                found = true;
                match sub {
                    Some(sub) => set_sub(e, sub, v.clone()),
                    None => *e = v.clone(),
                }
            }
            if !found {
                match (op, sub) {
                    // `emails[type eq "work"].value` adds the work address when there is none.
                    (Op::Add, Some(sub)) | (Op::Replace, Some(sub)) => {
                        let mut o = Map::new();
                        o.insert(filter.0.clone(), Value::String(filter.1.clone()));
                        o.insert(sub.clone(), v);
                        list.push(Value::Object(o));
                    }
                    _ => {
                        return Err(fault(
                            ScimFault::NoTarget,
                            format!("no {} matches the filter", path.attr),
                        ))
                    }
                }
            }
        }
        (Some(filter), None, Op::Remove) => list.retain(|e| !matches(e, filter)),
        (Some(filter), Some(sub), Op::Remove) => {
            for e in list.iter_mut().filter(|e| matches(e, filter)) {
                if let Value::Object(o) = e {
                    if let Some(k) = key_of(o, sub).cloned() {
                        o.remove(&k);
                    }
                }
            }
        }
    }
    doc.insert(path.attr.to_owned(), Value::Array(list));
    Ok(())
}

/// Applies a PatchOp message to `doc`.
pub fn apply(kind: Kind, doc: &mut Map<String, Value>, body: &Value) -> Result<()> {
    let o = body
        .as_object()
        .ok_or_else(|| fault(ScimFault::InvalidSyntax, "a PatchOp must be a JSON object"))?;
    let schemas_ok = o
        .get("schemas")
        .and_then(Value::as_array)
        .is_some_and(|s| s.iter().any(|v| v.as_str() == Some(PATCH_SCHEMA)));
    if !schemas_ok {
        return Err(fault(
            ScimFault::InvalidSyntax,
            format!("schemas must list {PATCH_SCHEMA}"),
        ));
    }
    let ops = key_of(o, "Operations")
        .and_then(|k| o[k].as_array())
        .filter(|a| !a.is_empty())
        .ok_or_else(|| {
            fault(
                ScimFault::InvalidSyntax,
                "Operations must be a non-empty array",
            )
        })?;
    if ops.len() > defendable_config::limits::SCIM_PATCH_OPERATIONS {
        return Err(fault(
            ScimFault::TooMany,
            format!(
                "a PATCH holds at most {} operations",
                defendable_config::limits::SCIM_PATCH_OPERATIONS
            ),
        ));
    }
    for operation in ops {
        let operation = operation
            .as_object()
            .ok_or_else(|| fault(ScimFault::InvalidSyntax, "each operation is an object"))?;
        let field = |name: &str| key_of(operation, name).map(|k| &operation[k]);
        let op = match field("op").and_then(Value::as_str) {
            Some(s) if s.eq_ignore_ascii_case("add") => Op::Add,
            Some(s) if s.eq_ignore_ascii_case("replace") => Op::Replace,
            Some(s) if s.eq_ignore_ascii_case("remove") => Op::Remove,
            _ => {
                return Err(fault(
                    ScimFault::InvalidSyntax,
                    "op must be add, replace or remove",
                ))
            }
        };
        let value = field("value").cloned();
        match field("path").and_then(Value::as_str) {
            Some(p) => apply_one(kind, doc, op, &parse_path(kind, p)?, value)?,
            None if op == Op::Remove => {
                return Err(fault(ScimFault::NoTarget, "remove needs a path"))
            }
            None => {
                let Some(Value::Object(values)) = value else {
                    return Err(fault(
                        ScimFault::InvalidValue,
                        "an operation without a path needs an object value",
                    ));
                };
                for (name, v) in values {
                    // `{"urn:…:User:active": false}` names attributes by their full URI too.
                    apply_one(kind, doc, op, &parse_path(kind, &name)?, Some(v))?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::scim::{parse_group, parse_user};

    fn patch(kind: Kind, doc: Value, ops: Value) -> Result<Value> {
        let mut doc = doc.as_object().unwrap().clone();
        apply(
            kind,
            &mut doc,
            &json!({"schemas": [PATCH_SCHEMA], "Operations": ops}),
        )?;
        Ok(Value::Object(doc))
    }

    #[test]
    fn entra_and_okta_shapes_apply() {
        let user = json!({"userName": "a", "active": true, "emails": [{"value": "a@x.com", "type": "work", "primary": true}]});
        // Entra: a string boolean, then a filtered sub-attribute.
        let out = patch(
            Kind::User,
            user.clone(),
            json!([
                {"op": "Replace", "path": "active", "value": "False"},
                {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "b@x.com"},
                {"op": "add", "path": "emails[type eq \"home\"].value", "value": "h@y.org"}
            ]),
        )
        .unwrap();
        let u = parse_user(&out).unwrap();
        assert_eq!(u.active, Some(false));
        assert_eq!(u.address(), Some("b@x.com"));
        assert_eq!(u.emails.len(), 2);
        // Okta: no path, an object value.
        let out = patch(
            Kind::User,
            user,
            json!([{"op": "replace", "value": {"active": false, "displayName": "A"}}]),
        )
        .unwrap();
        assert_eq!(out["displayName"], "A");
        assert_eq!(out["active"], false);
    }

    #[test]
    fn members_add_and_remove_by_value_and_by_filter() {
        let (a, b, c) = (
            "7f0c1d8e-0000-4000-8000-000000000001",
            "7f0c1d8e-0000-4000-8000-000000000002",
            "7f0c1d8e-0000-4000-8000-000000000003",
        );
        let group = json!({"displayName": "G", "members": [{"value": a}]});
        let out = patch(
            Kind::Group,
            group,
            json!([
                {"op": "add", "path": "members", "value": [{"value": a}, {"value": b}, {"value": c}]},
                {"op": "remove", "path": "members", "value": [{"value": b}]},
                {"op": "remove", "path": "members[value eq \"7F0C1D8E-0000-4000-8000-000000000001\"]"}
            ]),
        )
        .unwrap();
        let g = parse_group(&out).unwrap();
        assert_eq!(g.members, vec![uuid::Uuid::parse_str(c).unwrap()]);
    }

    #[test]
    fn bad_patches_are_refused_with_their_keyword() {
        let user = json!({"userName": "a", "active": true, "emails": []});
        let cases = [
            (
                json!([{"op": "move", "path": "active"}]),
                ScimFault::InvalidSyntax,
            ),
            (
                json!([{"op": "add", "path": "nickName", "value": "x"}]),
                ScimFault::InvalidPath,
            ),
            (
                json!([{"op": "add", "path": "id", "value": "x"}]),
                ScimFault::Mutability,
            ),
            (
                json!([{"op": "replace", "path": "emails[type eq \"work\"]", "value": {"value": "x@y.z"}}]),
                ScimFault::NoTarget,
            ),
            (json!([{"op": "remove"}]), ScimFault::NoTarget),
            (
                json!([{"op": "add", "path": "active[value eq \"x\"]", "value": true}]),
                ScimFault::InvalidPath,
            ),
            (json!([]), ScimFault::InvalidSyntax),
        ];
        for (ops, want) in cases {
            match patch(Kind::User, user.clone(), ops.clone()) {
                Err(crate::SsoError::Scim(got, _)) => assert_eq!(got, want, "{ops}"),
                other => panic!("{ops}: {other:?}"),
            }
        }
        // Removing userName leaves a document that is no User.
        let out = patch(
            Kind::User,
            user,
            json!([{"op": "remove", "path": "userName"}]),
        )
        .unwrap();
        assert!(parse_user(&out).is_err());
    }
}
