//! Table-driven parsing of identity's domain values.

use defendable_identity::{Email, OrgRef, OrgSlug, Role};

fn check_email(input: &str, expected: Option<&str>) {
    let got = Email::parse(input).ok().map(|e| e.as_str().to_owned());
    assert_eq!(got.as_deref(), expected, "{input:?}");
}

#[test]
fn emails_are_trimmed_and_lower_cased() {
    check_email("  Alice@Example.COM ", Some("alice@example.com"));
    // ASCII case only, as the database folds it: other letters are kept as typed.
    check_email("\u{c9}lise@Example.com", Some("\u{c9}lise@example.com"));
    check_email("bob+tag@sub.example.org", Some("bob+tag@sub.example.org"));
    check_email("x@b\u{fc}cher.example", Some("x@b\u{fc}cher.example"));
    for bad in [
        "",
        "plain",
        "@example.com",
        "a@",
        "a@localhost",
        "a b@example.com",
        "a@exa mple.com",
        "a..b@example.com",
        ".a@example.com",
        "a@-example.com",
        "a@example..com",
        "<a>@example.com",
    ] {
        check_email(bad, None);
    }
    check_email(&format!("{}@example.com", "a".repeat(65)), None);
    check_email(&format!("a@{}.com", "b".repeat(250)), None);
}

#[test]
fn slugs() {
    for ok in ["acme", "acme-labs", "a1b", "x".repeat(40).as_str()] {
        assert!(OrgSlug::parse(ok).is_ok(), "{ok}");
    }
    for bad in [
        "ab",
        "Acme",
        "acme_",
        "-acme",
        "acme-",
        "ac--me",
        "x".repeat(41).as_str(),
        "4b6e6c2e-0d1f-4c39-9a59-8c4f6f8e1e11",
    ] {
        assert!(OrgSlug::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn personal_slugs_are_valid_slugs() {
    for email in [
        "alice@example.com",
        "A.B_C+d@example.com",
        "___@example.com",
        "x@example.com",
        &format!("{}@example.com", "z".repeat(64)),
    ] {
        let slug = OrgSlug::personal(&Email::parse(email).expect("valid"));
        assert!(OrgSlug::parse(slug.as_str()).is_ok(), "{email} -> {slug}");
    }
}

#[test]
fn org_refs_and_roles() {
    assert!(matches!(
        OrgRef::parse("4b6e6c2e-0d1f-4c39-9a59-8c4f6f8e1e11"),
        Ok(OrgRef::Id(_))
    ));
    assert!(matches!(OrgRef::parse("acme"), Ok(OrgRef::Slug(_))));
    assert!(OrgRef::parse("../etc").is_err());
    assert_eq!(Role::parse("owner").expect("owner"), Role::Owner);
    assert_eq!(Role::parse("member").expect("member"), Role::Member);
    assert!(Role::parse("admin").is_err());
}

mod properties {
    use defendable_identity::{ApiKeySecret, Email, OneTimeToken};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Outside strings never panic the parsers; what parses is already normalized.
        #[test]
        fn outside_strings_never_panic_the_parsers(s in any::<String>()) {
            let _ = OneTimeToken::parse(&s);
            let _ = ApiKeySecret::parse(&s);
            if let Ok(e) = Email::parse(&s) {
                let again = Email::parse(e.as_str()).expect("reparses");
                prop_assert_eq!(again.as_str(), e.as_str());
                prop_assert!(!e.as_str().bytes().any(|b| b.is_ascii_uppercase()));
            }
        }

        /// A share token parses in any blank-padded spelling to the same token, and a token of
        /// another length never parses.
        #[test]
        fn share_tokens_parse_only_in_their_shape(pad in "[ \t]{0,3}", cut in 1usize..43) {
            let token = OneTimeToken::generate();
            let padded = format!("{pad}{}{pad}", token.expose());
            let parsed = OneTimeToken::parse(&padded).expect("parses");
            let (a, b) = (parsed.hash(), token.hash());
            prop_assert_eq!(a.as_bytes(), b.as_bytes());
            prop_assert!(OneTimeToken::parse(&token.expose()[..cut]).is_err());
        }

        /// A mistyped API key (any one character replaced) is refused by its checksum before
        /// any database access.
        #[test]
        fn api_keys_refuse_any_single_character_change(pos in 4usize..50, c in "[0-9A-Za-z]") {
            let key = ApiKeySecret::generate();
            prop_assert!(ApiKeySecret::parse(key.expose()).is_ok());
            let mut changed = key.expose().to_owned();
            let c = c.chars().next().expect("one char");
            prop_assume!(changed.as_bytes()[pos] != c as u8);
            changed.replace_range(pos..pos + 1, &c.to_string());
            prop_assert!(ApiKeySecret::parse(&changed).is_err());
        }
    }
}
