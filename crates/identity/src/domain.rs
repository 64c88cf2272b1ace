//! Identity's domain values. Each is parsed once at the edge and is valid by construction.

use std::fmt;

use serde::Serialize;
use uuid::Uuid;

use crate::IdentityError;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A new time-ordered id (UUIDv7), so lists can page by id.
            pub fn generate() -> Self {
                $name(Uuid::now_v7())
            }

            /// Wraps an id read from storage or a path.
            pub fn from_uuid(id: Uuid) -> Self {
                $name(id)
            }

            /// The underlying UUID.
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(
    /// A user.
    UserId
);
id_type!(
    /// An organization.
    OrgId
);
id_type!(
    /// A session (the `sid` claim of an access token).
    SessionId
);
id_type!(
    /// An invite.
    InviteId
);
id_type!(
    /// An API key.
    ApiKeyId
);

/// A normalized email address: trimmed, domain lower-cased, checked for a plausible shape.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    /// Parses and normalizes an address: trimmed, ASCII-lowercased.
    pub fn parse(raw: &str) -> Result<Email, IdentityError> {
        let bad = |why: &str| IdentityError::InvalidEmail(why.to_owned());
        let s = raw.trim();
        if s.len() > 254 {
            return Err(bad("is longer than 254 characters"));
        }
        let (local, domain) = s.rsplit_once('@').ok_or_else(|| bad("has no @"))?;
        if local.is_empty() || local.len() > 64 {
            return Err(bad("has an empty or over-long local part"));
        }
        if local.contains('@')
            || local.chars().any(|c| {
                c.is_whitespace()
                    || c.is_control()
                    || matches!(
                        c,
                        '<' | '>' | '"' | ',' | ';' | '\\' | '(' | ')' | '[' | ']'
                    )
            })
        {
            return Err(bad("has characters not allowed in the local part"));
        }
        if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
            return Err(bad("has misplaced dots in the local part"));
        }
        // Addresses compare case-insensitively everywhere (ASCII case, as the database folds
        // it): one person, one account, one rate-limit bucket, whatever they type.
        let local = local.to_ascii_lowercase();
        let domain = domain.to_ascii_lowercase();
        let labels: Vec<&str> = domain.split('.').collect();
        let label_ok = |l: &&str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || !c.is_ascii())
        };
        if labels.len() < 2 || !labels.iter().all(label_ok) {
            return Err(bad("has an invalid domain"));
        }
        Ok(Email(format!("{local}@{domain}")))
    }

    /// The normalized address.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part before the `@`.
    pub fn local_part(&self) -> &str {
        self.0.rsplit_once('@').map(|(l, _)| l).unwrap_or(&self.0)
    }

    /// The part after the `@`, lower-cased.
    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map(|(_, d)| d).unwrap_or_default()
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An organization's URL name: 3–40 characters of `a-z`, `0-9` and single inner hyphens.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct OrgSlug(String);

impl OrgSlug {
    /// Parses a slug.
    pub fn parse(raw: &str) -> Result<OrgSlug, IdentityError> {
        let s = raw.trim();
        let ok = (3..=40).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-')
            && !s.ends_with('-')
            && !s.contains("--");
        if ok && Uuid::parse_str(s).is_err() {
            Ok(OrgSlug(s.to_owned()))
        } else {
            Err(IdentityError::InvalidSlug(format!(
                "{s:?} must be 3-40 characters of a-z, 0-9 and single inner hyphens"
            )))
        }
    }

    /// A slug for a personal organization: the email's local part, cleaned, plus a random tail.
    pub fn personal(email: &Email) -> OrgSlug {
        let mut base: String = email
            .local_part()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect();
        while base.contains("--") {
            base = base.replace("--", "-");
        }
        let base: String = base.trim_matches('-').chars().take(24).collect();
        let base = base.trim_matches('-');
        let tail = &Uuid::new_v4().simple().to_string()[..6];
        let slug = if base.is_empty() {
            format!("org-{tail}")
        } else {
            format!("{base}-{tail}")
        };
        OrgSlug(slug)
    }

    /// The slug.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OrgSlug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An organization's display name: 1–100 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct OrgName(String);

impl OrgName {
    /// Parses a display name.
    pub fn parse(raw: &str) -> Result<OrgName, IdentityError> {
        let s = raw.trim();
        if s.is_empty() || s.chars().count() > 100 || s.chars().any(char::is_control) {
            return Err(IdentityError::InvalidInput(
                "name must be 1-100 characters without control characters".into(),
            ));
        }
        Ok(OrgName(s.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A way to name an organization in a path: its id or its slug.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrgRef {
    /// By id.
    Id(OrgId),
    /// By slug.
    Slug(OrgSlug),
}

impl OrgRef {
    /// Parses a path segment. Anything that is neither an id nor a slug names no organization.
    pub fn parse(raw: &str) -> Result<OrgRef, IdentityError> {
        match Uuid::parse_str(raw) {
            Ok(id) => Ok(OrgRef::Id(OrgId::from_uuid(id))),
            Err(_) => OrgSlug::parse(raw)
                .map(OrgRef::Slug)
                .map_err(|_| IdentityError::NotFound),
        }
    }
}

/// A role in an organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// May do everything, including invites, API keys and role changes.
    Owner,
    /// May use the organization's receipts and datasets.
    Member,
}

impl Role {
    /// Parses `owner` or `member`.
    pub fn parse(raw: &str) -> Result<Role, IdentityError> {
        match raw {
            "owner" => Ok(Role::Owner),
            "member" => Ok(Role::Member),
            other => Err(IdentityError::InvalidInput(format!(
                "role {other:?} must be owner or member"
            ))),
        }
    }

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Member => "member",
        }
    }
}
