//! RFC 8785 test vectors and properties of canonicalization.

use defendable_ledger::canonical::{canonicalize, check_canonical, parse_strict};
use proptest::prelude::*;
use serde_json::{json, Value};

fn jcs(v: &Value) -> String {
    String::from_utf8(canonicalize(v).expect("canonicalizes")).expect("utf8")
}

/// RFC 8785 Appendix B: IEEE 754 bit patterns and their canonical forms.
#[test]
fn rfc8785_appendix_b_numbers() {
    let cases: &[(u64, &str)] = &[
        (0x0000000000000000, "0"),
        (0x8000000000000000, "0"),
        (0x0000000000000001, "5e-324"),
        (0x8000000000000001, "-5e-324"),
        (0x7fefffffffffffff, "1.7976931348623157e+308"),
        (0xffefffffffffffff, "-1.7976931348623157e+308"),
        (0x4340000000000000, "9007199254740992"),
        (0xc340000000000000, "-9007199254740992"),
        (0x4430000000000000, "295147905179352830000"),
        (0x44b52d02c7e14af5, "9.999999999999997e+22"),
        (0x44b52d02c7e14af6, "1e+23"),
        (0x44b52d02c7e14af7, "1.0000000000000001e+23"),
        (0x444b1ae4d6e2ef4e, "999999999999999700000"),
        (0x444b1ae4d6e2ef4f, "999999999999999900000"),
        (0x444b1ae4d6e2ef50, "1e+21"),
        (0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"),
        (0x3eb0c6f7a0b5ed8d, "0.000001"),
        (0x41b3de4355555553, "333333333.3333332"),
        (0x41b3de4355555554, "333333333.33333325"),
        (0x41b3de4355555555, "333333333.3333333"),
        (0x41b3de4355555556, "333333333.3333334"),
        (0x41b3de4355555557, "333333333.33333343"),
        (0xbecbf647612f3696, "-0.0000033333333333333333"),
        (0x43143ff3c1cb0959, "1424953923781206.2"),
    ];
    for (bits, expected) in cases {
        let f = f64::from_bits(*bits);
        let v = Value::from(f);
        assert_eq!(jcs(&v), *expected, "bits {bits:#018x}");
    }
    for bits in [0x7fffffffffffffff_u64, 0x7ff0000000000000] {
        // NaN and Infinity are not JSON numbers: serde_json turns them into null, and the strict
        // reader refuses overflowing literals.
        assert_eq!(Value::from(f64::from_bits(bits)), Value::Null);
    }
    assert!(parse_strict(b"[1e400]").is_err());
}

/// RFC 8785 §3.2.2: the worked example.
#[test]
fn rfc8785_example() {
    let input = r#"{
        "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
        "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
        "literals": [null, true, false]
    }"#;
    let v = parse_strict(input.as_bytes()).expect("parses");
    assert_eq!(
        jcs(&v),
        r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#
    );
}

/// RFC 8785 §3.2.3: members sorted by UTF-16 code units.
#[test]
fn rfc8785_sorting() {
    let input = r#"{
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\ud83d\ude00": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis"
    }"#;
    let v = parse_strict(input.as_bytes()).expect("parses");
    let out = jcs(&v);
    let order: Vec<&str> = [
        "\\r",
        "1",
        "\u{80}",
        "\u{f6}",
        "\u{20ac}",
        "\u{1f600}",
        "\u{fb33}",
    ]
    .to_vec();
    let mut last = 0;
    for key in order {
        let pos = out
            .find(&format!("\"{key}\""))
            .unwrap_or_else(|| panic!("{key:?} in {out}"));
        assert!(pos >= last, "{key:?} out of order in {out}");
        last = pos;
    }
}

#[test]
fn strings_escape_as_json_stringify() {
    assert_eq!(
        jcs(&json!("\u{1}\u{1f}\u{7f}\t\"\\/é")),
        "\"\\u0001\\u001f\u{7f}\\t\\\"\\\\/é\""
    );
}

#[test]
fn unsafe_numbers_are_refused_never_rounded() {
    for bad in [
        "9007199254740992",
        "-9007199254740992",
        "12345678901234567890123",
        "1e999",
        "-1e999",
    ] {
        let text = format!(r#"{{"n": {bad}}}"#);
        assert!(parse_strict(text.as_bytes()).is_err(), "{bad}");
    }
    for ok in [
        "9007199254740991",
        "-9007199254740991",
        "0",
        "-0",
        "1.5",
        "1e21",
        "2.5e-7",
    ] {
        let text = format!(r#"{{"n": {ok}, "s": "9007199254740993 in a string is fine"}}"#);
        assert!(parse_strict(text.as_bytes()).is_ok(), "{ok}");
    }
    // Values built in code: exact doubles print as JCS prints them, anything else is refused.
    assert!(canonicalize(&json!({"n": 9_007_199_254_740_993_u64})).is_err());
    assert_eq!(jcs(&json!(9_007_199_254_740_992_u64)), "9007199254740992");
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-(1i64 << 53) + 1..(1i64 << 53)).prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    /// Canonical output parses back to the same value and canonicalizes to the same bytes.
    #[test]
    fn canonicalization_is_a_fixed_point(v in arb_json()) {
        let once = canonicalize(&v).expect("canonicalizes");
        let back: Value = serde_json::from_slice(&once).expect("valid JSON");
        let twice = canonicalize(&back).expect("canonicalizes");
        prop_assert_eq!(&once, &twice);
    }

    /// The strict reader accepts canonical text of safe values and reads it back exactly.
    /// (Doubles of 2^53 and above print as bare digits, which the strict reader refuses by rule:
    /// clients send such values as strings.)
    #[test]
    fn the_strict_reader_round_trips_safe_values(ints in prop::collection::vec(-(1i64 << 53) + 1..(1i64 << 53), 0..8),
                                                 floats in prop::collection::vec(-1e15f64..1e15, 0..8)) {
        let v = json!({"ints": ints, "floats": floats});
        let once = canonicalize(&v).expect("canonicalizes");
        let strict = parse_strict(&once).expect("strict reader accepts");
        prop_assert_eq!(canonicalize(&strict).expect("again"), once);
    }

    /// Member order in the input never changes the output.
    #[test]
    fn member_order_does_not_matter(pairs in prop::collection::vec((any::<String>(), any::<i32>()), 0..12)) {
        let forward: serde_json::Map<String, Value> = pairs.iter().map(|(k, v)| (k.clone(), Value::from(*v))).collect();
        let backward: serde_json::Map<String, Value> = forward.iter().rev().map(|(k, v)| (k.clone(), v.clone())).collect();
        prop_assert_eq!(canonicalize(&Value::Object(forward)).expect("a"), canonicalize(&Value::Object(backward)).expect("b"));
    }
}

/// The fast validator agrees with "re-canonicalizing gives the same bytes".
fn slow_check(bytes: &[u8]) -> bool {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v @ Value::Object(_)) => canonicalize(&v).map(|c| c == bytes).unwrap_or(false),
        _ => false,
    }
}

#[test]
fn the_fast_canonical_check_agrees_on_known_cases() {
    let cases: &[&str] = &[
        r#"{}"#,
        r#"{"a":1,"b":[true,false,null],"c":{"d":"x"}}"#,
        r#"{"b":1,"a":2}"#,
        r#"{"a":1,"a":1}"#,
        r#"{"a": 1}"#,
        r#"{"a":1.0}"#,
        r#"{"a":1e21}"#,
        r#"{"a":1e+21}"#,
        r#"{"a":-0}"#,
        r#"{"a":01}"#,
        r#"{"a":"\u0041"}"#,
        r#"{"a":"\u001f"}"#,
        r#"{"a":"\u001F"}"#,
        r#"{"a":"\n"}"#,
        r#"{"a":"\u000a"}"#,
        r#"{"a":"\/"}"#,
        r#"{"\r":1,"1":2}"#,
        r#"{"1":2,"\r":1}"#,
        r#"{"€":1,"😀":2,"דּ":3}"#,
        r#"{"😀":1,"דּ":2}"#,
        r#"{"דּ":1,"😀":2}"#,
        r#"[1]"#,
        r#"{"a":1}x"#,
        r#"{"a":333333333.3333333}"#,
        r#"{"a":333333333.33333329}"#,
    ];
    for c in cases {
        assert_eq!(
            check_canonical(c.as_bytes()).is_some(),
            slow_check(c.as_bytes()),
            "{c}"
        );
    }
}

proptest! {
    /// Canonical output of any object passes the fast check; any one-byte change passes it
    /// exactly when re-canonicalization agrees.
    #[test]
    fn the_fast_canonical_check_agrees_with_recanonicalization(v in arb_json(), pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let v = json!({"payload": v});
        let bytes = canonicalize(&v).expect("canonical");
        prop_assert!(check_canonical(&bytes).is_some());
        let mut mutated = bytes.clone();
        let i = pos.index(mutated.len());
        mutated[i] = byte;
        prop_assert_eq!(check_canonical(&mutated).is_some(), slow_check(&mutated), "{}", String::from_utf8_lossy(&mutated));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Outside bytes (a request body, a stored row, an export line) never panic the strict
    /// reader or the canonical check, and whatever the fast check accepts the strict reader
    /// reads back to the same bytes.
    #[test]
    fn outside_bytes_never_panic_the_readers(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let strict = parse_strict(&bytes);
        if let Ok(v) = &strict {
            let _ = canonicalize(v);
        }
        if check_canonical(&bytes).is_some() {
            let v = strict.expect("canonical bytes are strict JSON");
            prop_assert_eq!(canonicalize(&v).expect("canonical"), bytes);
        }
    }

    /// Deep nesting is refused, not a stack overflow.
    #[test]
    fn deep_nesting_is_refused(depth in 100usize..5000) {
        let text = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let _ = parse_strict(text.as_bytes());
        let object = format!("{}{}", "{\"a\":".repeat(depth), "}".repeat(depth));
        let _ = check_canonical(object.as_bytes());
    }
}
