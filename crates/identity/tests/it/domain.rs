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
