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

/// The raw text of the top-level members a chain check needs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TopLevel<'a> {
    /// `v`.
    pub v: Option<&'a [u8]>,
    /// `org` (with quotes).
    pub org: Option<&'a [u8]>,
    /// `seq`.
    pub seq: Option<&'a [u8]>,
    /// `parent` (with quotes).
    pub parent: Option<&'a [u8]>,
}

/// Checks, without building a value, that `bytes` are exactly what [`canonicalize`] produces for
/// the JSON they denote, and returns the raw text of the top-level members verification needs.
/// Equivalent to `canonicalize(parse(bytes)) == bytes` for a top-level object, and several times
/// faster, which is what lets verification keep up with the chain.
pub fn check_canonical(bytes: &[u8]) -> Option<TopLevel<'_>> {
    std::str::from_utf8(bytes).ok()?;
    let mut s = Scanner { b: bytes, i: 0 };
    let mut top = TopLevel::default();
    if s.peek()? != b'{' {
        return None;
    }
    s.object(0, Some(&mut top))?;
    (s.i == bytes.len()).then_some(top)
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

const MAX_DEPTH: usize = 128;

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    fn value(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        match self.peek()? {
            b'{' => self.object(depth, None),
            b'[' => {
                self.i += 1;
                if self.eat(b']').is_some() {
                    return Some(());
                }
                loop {
                    self.value(depth + 1)?;
                    match self.peek()? {
                        b',' => self.i += 1,
                        b']' => {
                            self.i += 1;
                            return Some(());
                        }
                        _ => return None,
                    }
                }
            }
            b'"' => self.string().map(|_| ()),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.i + word.len();
        (self.b.get(self.i..end)? == word).then(|| self.i = end)
    }

    fn object(&mut self, depth: usize, mut top: Option<&mut TopLevel<'a>>) -> Option<()> {
        self.eat(b'{')?;
        if self.eat(b'}').is_some() {
            return Some(());
        }
        let mut previous: Option<(usize, usize, bool)> = None;
        loop {
            let key = self.string()?;
            if let Some(prev) = previous {
                // Members must be strictly increasing: sorted and without duplicates.
                if self.key_cmp(prev, key) != std::cmp::Ordering::Less {
                    return None;
                }
            }
            previous = Some(key);
            self.eat(b':')?;
            let start = self.i;
            self.value(depth + 1)?;
            if let Some(top) = top.as_deref_mut() {
                let raw = &self.b[start..self.i];
                match &self.b[key.0..key.1] {
                    b"v" => top.v = Some(raw),
                    b"org" => top.org = Some(raw),
                    b"seq" => top.seq = Some(raw),
                    b"parent" => top.parent = Some(raw),
                    _ => {}
                }
            }
            match self.peek()? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// A string in canonical form; returns the span of its content and whether it has escapes.
    fn string(&mut self) -> Option<(usize, usize, bool)> {
        self.eat(b'"')?;
        let start = self.i;
        let mut escaped = false;
        loop {
            let c = self.peek()?;
            match c {
                b'"' => {
                    let end = self.i;
                    self.i += 1;
                    return Some((start, end, escaped));
                }
                b'\\' => {
                    escaped = true;
                    let e = *self.b.get(self.i + 1)?;
                    match e {
                        b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't' => self.i += 2,
                        b'u' => {
                            // Only control characters without a short form are \u-escaped,
                            // as \u00xx with lowercase hex.
                            let hex = self.b.get(self.i + 2..self.i + 6)?;
                            let code =
                                u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
                            let canonical = format!("{code:04x}");
                            let short = matches!(code, 0x08 | 0x09 | 0x0a | 0x0c | 0x0d);
                            if hex != canonical.as_bytes() || code >= 0x20 || short {
                                return None;
                            }
                            self.i += 6;
                        }
                        _ => return None,
                    }
                }
                0x00..=0x1f => return None,
                _ => self.i += 1,
            }
        }
    }

    fn number(&mut self) -> Option<()> {
        let start = self.i;
        while let Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') = self.peek() {
            self.i += 1;
        }
        let raw = &self.b[start..self.i];
        // Fast path: a plain integer of at most 15 digits without a leading zero is its own
        // canonical form (every such value is exact and printed as is).
        let digits = raw.strip_prefix(b"-").unwrap_or(raw);
        if !digits.is_empty()
            && digits.len() <= 15
            && digits.iter().all(u8::is_ascii_digit)
            && (digits[0] != b'0' || digits.len() == 1)
            && raw != b"-0"
        {
            return Some(());
        }
        let token = std::str::from_utf8(raw).ok()?;
        // JSON's grammar: serde_json would refuse what `f64::from_str` alone might accept.
        if token.starts_with('+')
            || token.starts_with('.')
            || token.starts_with("-.")
            || token.ends_with('.')
        {
            return None;
        }
        let f: f64 = token.parse().ok()?;
        if !f.is_finite() {
            return None;
        }
        let mut buf = ryu_js::Buffer::new();
        (buf.format_finite(f) == token).then_some(())
    }

    /// Orders two member names by UTF-16 code units, as JCS sorts them.
    fn key_cmp(&self, a: (usize, usize, bool), b: (usize, usize, bool)) -> std::cmp::Ordering {
        let (ra, rb) = (&self.b[a.0..a.1], &self.b[b.0..b.1]);
        if !a.2 && !b.2 && ra.is_ascii() && rb.is_ascii() {
            return ra.cmp(rb);
        }
        let da = unescape(ra);
        let db = unescape(rb);
        da.encode_utf16().cmp(db.encode_utf16())
    }
}

/// Decodes the content of a canonical string (only the escapes canonical form uses).
fn unescape(raw: &[u8]) -> String {
    let text = std::str::from_utf8(raw).unwrap_or_default();
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('b') => out.push('\u{08}'),
            Some('f') => out.push('\u{0c}'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                if let Some(c) = u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    out.push(c);
                }
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}
