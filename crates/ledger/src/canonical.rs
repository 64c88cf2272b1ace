//! RFC 8785 JSON Canonicalization Scheme (JCS) over `serde_json::Value`, and the strict payload
//! reader that refuses numbers JCS cannot represent exactly.
//!
//! JCS: object members sorted by the UTF-16 code units of their names, no insignificant
//! whitespace, strings escaped as ECMAScript's `JSON.stringify` does, numbers formatted as
//! ECMAScript's `Number.prototype.toString` (via `ryu-js`).

use serde_json::{Map, Value};

use crate::LedgerError;

/// The largest integer a JSON number may carry and still be exact in every verifier (2^53 − 1).
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// The canonical bytes of `value`.
pub fn canonicalize(value: &Value) -> Result<Vec<u8>, LedgerError> {
    let mut out = Vec::with_capacity(256);
    write_value(value, &mut out)?;
    Ok(out)
}

fn write_value(value: &Value, out: &mut Vec<u8>) -> Result<(), LedgerError> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(n, out)?,
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(map) => write_object(map, out)?,
    }
    Ok(())
}

fn write_object(map: &Map<String, Value>, out: &mut Vec<u8>) -> Result<(), LedgerError> {
    let mut members: Vec<(&String, &Value)> = map.iter().collect();
    // UTF-16 code unit order, which differs from UTF-8 byte order above the BMP.
    members.sort_by(|(a, _), (b, _)| a.encode_utf16().cmp(b.encode_utf16()));
    out.push(b'{');
    for (i, (k, v)) in members.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_string(k, out);
        out.push(b':');
        write_value(v, out)?;
    }
    out.push(b'}');
    Ok(())
}

fn write_number(n: &serde_json::Number, out: &mut Vec<u8>) -> Result<(), LedgerError> {
    let integer = n
        .as_i64()
        .map(i128::from)
        .or_else(|| n.as_u64().map(i128::from));
    if let Some(i) = integer {
        if i.unsigned_abs() <= u128::from(MAX_SAFE_INTEGER) {
            out.extend_from_slice(i.to_string().as_bytes());
            return Ok(());
        }
        // Beyond 2^53 an integer is acceptable only when these very digits are how JCS prints
        // the nearest double: that is how a large float appears in canonical bytes, so a
        // verifier re-reading them must accept it. Any other digits would be silently rounded.
        let f = i as f64;
        let mut buf = ryu_js::Buffer::new();
        let text = buf.format_finite(f);
        if text == i.to_string() {
            out.extend_from_slice(text.as_bytes());
            return Ok(());
        }
        return Err(LedgerError::UnsafeNumber(i.to_string()));
    }
    let f = n
        .as_f64()
        .ok_or_else(|| LedgerError::UnsafeNumber(n.to_string()))?;
    if !f.is_finite() {
        return Err(LedgerError::UnsafeNumber(n.to_string()));
    }
    let mut buf = ryu_js::Buffer::new();
    out.extend_from_slice(buf.format_finite(f).as_bytes());
    Ok(())
}

fn write_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\u{08}' => out.extend_from_slice(b"\\b"),
            '\u{09}' => out.extend_from_slice(b"\\t"),
            '\u{0A}' => out.extend_from_slice(b"\\n"),
            '\u{0C}' => out.extend_from_slice(b"\\f"),
            '\u{0D}' => out.extend_from_slice(b"\\r"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes());
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

/// Parses JSON text for a receipt payload, refusing any number literal JCS would not carry
/// exactly: integers beyond ±(2^53 − 1) and numbers that overflow to infinity. (`serde_json`
/// alone would silently round them to the nearest double.)
pub fn parse_strict(text: &[u8]) -> Result<Value, LedgerError> {
    check_number_literals(text)?;
    serde_json::from_slice(text).map_err(|e| LedgerError::InvalidJson(e.to_string()))
}

/// Scans JSON text outside strings and checks each number literal.
fn check_number_literals(text: &[u8]) -> Result<(), LedgerError> {
    let mut i = 0;
    let mut in_string = false;
    while i < text.len() {
        let b = text[i];
        if in_string {
            match b {
                b'\\' => i += 2,
                b'"' => {
                    in_string = false;
                    i += 1;
                }
                _ => i += 1,
            }
            continue;
        }
        match b {
            b'"' => {
                in_string = true;
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                i += 1;
                while i < text.len()
                    && matches!(text[i], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
                {
                    i += 1;
                }
                check_literal(&text[start..i])?;
            }
            _ => i += 1,
        }
    }
    Ok(())
}

fn check_literal(lit: &[u8]) -> Result<(), LedgerError> {
    let s = std::str::from_utf8(lit).map_err(|e| LedgerError::InvalidJson(e.to_string()))?;
    let is_integer = !s.contains(['.', 'e', 'E']);
    if is_integer {
        let digits = s.trim_start_matches('-');
        // Beyond 16 digits it is certainly above 2^53; otherwise compare exactly.
        let too_big =
            digits.len() > 16 || digits.parse::<u64>().map_or(true, |v| v > MAX_SAFE_INTEGER);
        if too_big {
            return Err(LedgerError::UnsafeNumber(s.to_owned()));
        }
    } else {
        match s.parse::<f64>() {
            Ok(f) if f.is_finite() => {}
            _ => return Err(LedgerError::UnsafeNumber(s.to_owned())),
        }
    }
    Ok(())
}
