//! SSO's values, parsed once: whatever holds one of these has been checked.

use std::collections::BTreeMap;
use std::fmt;

use defendable_identity::Role;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Result, SsoError};

fn invalid(why: impl Into<String>) -> SsoError {
    SsoError::InvalidInput(why.into())
}

/// A DNS domain an organization claims: lowercase ASCII labels (an internationalized name in its
/// `xn--` form), at least two, no trailing dot.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct DomainName(String);

impl DomainName {
    /// Parses `Example.COM` or `example.com.` as `example.com`.
    pub fn parse(s: &str) -> Result<DomainName> {
        let name = s.trim().trim_end_matches('.').to_ascii_lowercase();
        let label_ok = |l: &str| {
            (1..=63).contains(&l.len())
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        let labels: Vec<&str> = name.split('.').collect();
        if name.len() > 253 || labels.len() < 2 || !labels.iter().all(|l| label_ok(l)) {
            return Err(invalid(format!(
                "{:?} is not a domain name: lowercase letters, digits and hyphens in at least two dot-separated labels (an internationalized name in its xn-- form)",
                s.chars().take(80).collect::<String>()
            )));
        }
        if labels
            .last()
            .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(invalid(format!("{name} is an address, not a domain name")));
        }
        Ok(DomainName(name))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Where the verification record lives: `_defendable-challenge.<domain>`.
    pub fn challenge_name(&self) -> String {
        format!("_defendable-challenge.{}", self.0)
    }

    /// Whether `email`'s domain is this one (exactly: a subdomain is another domain).
    pub fn holds(&self, email: &str) -> bool {
        email
            .rsplit_once('@')
            .is_some_and(|(_, d)| d.eq_ignore_ascii_case(&self.0))
    }
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An OpenID Provider's issuer identifier: an `https://` URL without query or fragment (plain
/// `http://` only where the deployment allows it: development), kept exactly as given, since ID
/// tokens must name it byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Issuer(String);

impl Issuer {
    /// Parses an issuer; `allow_http` is true in development only.
    pub fn parse(s: &str, allow_http: bool) -> Result<Issuer> {
        let url =
            url::Url::parse(s.trim()).map_err(|e| invalid(format!("issuer: not a URL ({e})")))?;
        let scheme_ok = url.scheme() == "https" || (allow_http && url.scheme() == "http");
        if !scheme_ok {
            return Err(invalid("issuer: must be an https:// URL"));
        }
        if url.host_str().is_none()
            || url.query().is_some()
            || url.fragment().is_some()
            || !url.username().is_empty()
            || url.password().is_some()
        {
            return Err(invalid(
                "issuer: a host and path only (no query, fragment or credentials)",
            ));
        }
        if s.trim().len() > 2048 {
            return Err(invalid("issuer: at most 2,048 characters"));
        }
        Ok(Issuer(s.trim().to_owned()))
    }

    /// The issuer as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Its host.
    pub fn host(&self) -> String {
        url::Url::parse(&self.0)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

/// A provider preset: which issuer shapes it has and how its tokens differ
/// (docs/sso.md, "Providers").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// Any OpenID Provider that serves discovery.
    Generic,
    /// Google Workspace: issuer `https://accounts.google.com`; ID tokens carry no groups.
    Google,
    /// Microsoft Entra ID: issuer `https://login.microsoftonline.com/<tenant id>/v2.0`.
    Entra,
    /// Okta: the org's or a custom authorization server's issuer.
    Okta,
}

impl Provider {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Generic => "generic",
            Provider::Google => "google",
            Provider::Entra => "entra",
            Provider::Okta => "okta",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Result<Provider> {
        match s {
            "generic" => Ok(Provider::Generic),
            "google" => Ok(Provider::Google),
            "entra" => Ok(Provider::Entra),
            "okta" => Ok(Provider::Okta),
            other => Err(invalid(format!(
                "provider: {other:?} is not one of generic, google, entra, okta"
            ))),
        }
    }

    /// The scopes a sign-in asks for: Google and Entra ID refuse scopes they do not know, and
    /// neither puts group names in ID tokens through a scope.
    pub fn scopes(self) -> &'static str {
        match self {
            Provider::Google => "openid email",
            Provider::Entra => "openid email profile",
            Provider::Okta | Provider::Generic => "openid email groups",
        }
    }

    /// Refuses an issuer the preset's provider never uses, so a typo fails at configuration,
    /// not at someone's first sign-in.
    pub fn check_issuer(self, issuer: &Issuer) -> Result<()> {
        let url = url::Url::parse(issuer.as_str()).map_err(|e| invalid(e.to_string()))?;
        let ok = match self {
            Provider::Generic | Provider::Okta => true,
            Provider::Google => issuer.as_str() == "https://accounts.google.com",
            Provider::Entra => {
                let segments: Vec<&str> = url.path().trim_matches('/').split('/').collect();
                url.host_str() == Some("login.microsoftonline.com")
                    && segments.len() == 2
                    && Uuid::parse_str(segments[0]).is_ok()
                    && segments[1] == "v2.0"
            }
        };
        if ok {
            Ok(())
        } else {
            Err(invalid(match self {
                Provider::Google => "issuer: Google's is exactly https://accounts.google.com",
                _ => "issuer: Entra ID's is https://login.microsoftonline.com/<tenant id>/v2.0",
            }))
        }
    }
}

/// A connection's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct ConnectionId(Uuid);

impl ConnectionId {
    /// A new, time-ordered id.
    pub fn new() -> ConnectionId {
        ConnectionId(Uuid::now_v7())
    }

    /// Wraps a stored id.
    pub fn from_uuid(id: Uuid) -> ConnectionId {
        ConnectionId(id)
    }

    /// The UUID.
    pub fn as_uuid(self) -> Uuid {
        self.0
    }
}

impl Default for ConnectionId {
    fn default() -> Self {
        ConnectionId::new()
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The OAuth client id the provider issued: 1–512 visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientId(String);

impl ClientId {
    /// Parses a client id.
    pub fn parse(s: &str) -> Result<ClientId> {
        if (1..=512).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic()) {
            Ok(ClientId(s.to_owned()))
        } else {
            Err(invalid(
                "client_id: 1 to 512 visible ASCII characters, no spaces",
            ))
        }
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The OAuth client secret: sealed before storage, never returned, never printed.
pub struct ClientSecret(SecretString);

impl ClientSecret {
    /// Accepts 1–1,024 visible ASCII characters.
    pub fn parse(s: &str) -> Result<ClientSecret> {
        if (1..=1024).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic()) {
            Ok(ClientSecret(SecretString::from(s.to_owned())))
        } else {
            Err(invalid(
                "client_secret: 1 to 1,024 visible ASCII characters, no spaces",
            ))
        }
    }

    /// The secret, for the token request and for sealing.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientSecret(..)")
    }
}

/// The most groups one connection maps (config::limits).
pub const MAX_GROUP_MAPPINGS: usize = defendable_config::limits::SSO_GROUP_MAPPINGS;

/// IdP group → role in the organization. A user in several mapped groups gets the highest role.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupRoles(BTreeMap<String, Role>);

impl GroupRoles {
    /// Parses `{"group": "owner" | "member"}`: at most [`MAX_GROUP_MAPPINGS`] groups, each name
    /// 1–256 characters.
    pub fn parse(map: &BTreeMap<String, String>) -> Result<GroupRoles> {
        if map.len() > MAX_GROUP_MAPPINGS {
            return Err(SsoError::LimitReached(format!(
                "group_roles: at most {MAX_GROUP_MAPPINGS} groups"
            )));
        }
        let mut out = BTreeMap::new();
        for (group, role) in map {
            if !(1..=256).contains(&group.chars().count()) {
                return Err(invalid(
                    "group_roles: each group name is 1 to 256 characters",
                ));
            }
            let role = Role::parse(role)
                .map_err(|_| invalid(format!("group_roles: {role:?} is not owner or member")))?;
            out.insert(group.clone(), role);
        }
        Ok(GroupRoles(out))
    }

    /// The mapping.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Role)> {
        self.0.iter()
    }

    /// As stored: `{"group": "role"}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Object(
            self.0
                .iter()
                .map(|(g, r)| (g.clone(), serde_json::Value::from(r.as_str())))
                .collect(),
        )
    }

    /// From storage.
    pub fn from_json(v: &serde_json::Value) -> Result<GroupRoles> {
        let map: BTreeMap<String, String> = serde_json::from_value(v.clone())
            .map_err(|e| invalid(format!("stored group_roles: {e}")))?;
        GroupRoles::parse(&map)
    }

    /// The role the user's groups give, the highest of them, or `None` if no group is mapped.
    pub fn role_for<'a>(&self, groups: impl IntoIterator<Item = &'a str>) -> Option<Role> {
        let mut best: Option<Role> = None;
        for g in groups {
            match self.0.get(g) {
                Some(Role::Owner) => return Some(Role::Owner),
                Some(r) => best = Some(*r),
                None => {}
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_names() {
        for (input, expected) in [
            ("Example.COM", Some("example.com")),
            ("example.com.", Some("example.com")),
            ("a-b.example.co.uk", Some("a-b.example.co.uk")),
            ("xn--bcher-kva.example", Some("xn--bcher-kva.example")),
            ("localhost", None),
            ("-bad.example", None),
            ("bad-.example", None),
            ("ex ample.com", None),
            ("bücher.example", None),
            ("10.0.0.1", None),
            ("", None),
            ("a..b", None),
        ] {
            let got = DomainName::parse(input).ok().map(|d| d.0);
            assert_eq!(got.as_deref(), expected, "{input:?}");
        }
        let d = DomainName::parse("example.com").expect("domain");
        assert!(d.holds("Ann@EXAMPLE.com"));
        assert!(!d.holds("ann@sub.example.com"));
        assert!(!d.holds("ann@example.com.evil"));
        assert_eq!(d.challenge_name(), "_defendable-challenge.example.com");
    }

    #[test]
    fn issuers_and_presets() {
        assert!(Issuer::parse("https://idp.example.com/oauth2/default", false).is_ok());
        assert!(Issuer::parse("http://127.0.0.1:4000", false).is_err());
        assert!(Issuer::parse("http://127.0.0.1:4000", true).is_ok());
        assert!(Issuer::parse("https://idp.example.com/?x=1", false).is_err());
        assert!(Issuer::parse("https://u:p@idp.example.com", false).is_err());
        let google = Issuer::parse("https://accounts.google.com", false).expect("issuer");
        assert!(Provider::Google.check_issuer(&google).is_ok());
        let other = Issuer::parse("https://accounts.google.com.evil", false).expect("issuer");
        assert!(Provider::Google.check_issuer(&other).is_err());
        let entra = Issuer::parse(
            "https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0",
            false,
        )
        .expect("issuer");
        assert!(Provider::Entra.check_issuer(&entra).is_ok());
        assert!(Provider::Entra.check_issuer(&google).is_err());
        let common =
            Issuer::parse("https://login.microsoftonline.com/common/v2.0", false).expect("issuer");
        assert!(
            Provider::Entra.check_issuer(&common).is_err(),
            "a tenant id, not the multi-tenant endpoint"
        );
    }

    #[test]
    fn group_roles_take_the_highest_role() {
        let map: BTreeMap<String, String> = [
            ("eng".to_owned(), "member".to_owned()),
            ("admins".to_owned(), "owner".to_owned()),
        ]
        .into();
        let roles = GroupRoles::parse(&map).expect("roles");
        assert_eq!(roles.role_for(["eng"]), Some(Role::Member));
        assert_eq!(roles.role_for(["eng", "admins"]), Some(Role::Owner));
        assert_eq!(roles.role_for(["sales"]), None);
        assert_eq!(
            GroupRoles::from_json(&roles.to_json()).expect("json"),
            roles
        );
        let bad: BTreeMap<String, String> = [("x".to_owned(), "admin".to_owned())].into();
        assert!(GroupRoles::parse(&bad).is_err());
        assert!(ClientSecret::parse("s3cret").is_ok());
        assert_eq!(
            format!("{:?}", ClientSecret::parse("s3cret").expect("secret")),
            "ClientSecret(..)"
        );
    }
}
