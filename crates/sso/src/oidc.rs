//! OpenID Connect relying party: discovery, the authorization request (code flow, PKCE S256,
//! `state` and `nonce`), the token exchange and ID token validation. Every outbound request
//! goes through one client that follows no redirects, times out, and refuses plain-http issuers
//! unless the deployment allows them (development).

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use ring::rand::{SecureRandom, SystemRandom};
use serde::Deserialize;
use subtle::ConstantTimeEq as _;

use crate::domain::{Issuer, Provider};
use crate::{Result, SsoError};

/// How long one request to an identity provider may take.
pub const PROVIDER_TIMEOUT: Duration = defendable_config::limits::SSO_PROVIDER_REQUEST;
/// Clock skew allowed on `exp`, `iat` and `nbf`.
pub const LEEWAY_SECS: u64 = 60;
/// Signature algorithms an ID token may use: asymmetric only, never `none` or an HMAC keyed with
/// something public.
pub const ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

fn refused(why: impl Into<String>) -> SsoError {
    SsoError::Refused(why.into())
}

fn provider_error(why: impl Into<String>) -> SsoError {
    SsoError::Provider(why.into())
}

/// 256 random bits, base64url: states, nonces, PKCE verifiers, browser bindings.
pub fn random_value() -> String {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the operating system's CSPRNG is available");
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The PKCE S256 challenge of a verifier.
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        verifier.as_bytes(),
    ))
}

/// What the provider publishes at `/.well-known/openid-configuration` (the part used here).
#[derive(Debug, Clone, Deserialize)]
pub struct Discovery {
    /// Must equal the connection's issuer exactly.
    pub issuer: String,
    /// Where the browser goes.
    pub authorization_endpoint: String,
    /// Where the code is exchanged.
    pub token_endpoint: String,
    /// The signing keys.
    pub jwks_uri: String,
}

/// The claims an ID token must carry for a sign-in.
#[derive(Debug, Clone, Deserialize)]
pub struct IdClaims {
    /// The provider's subject.
    pub sub: String,
    /// The user's email address.
    pub email: Option<String>,
    /// Whether the provider verified it.
    pub email_verified: Option<serde_json::Value>,
    /// Entra ID: the email domain's owner was verified by the tenant (optional claim).
    pub xms_edov: Option<serde_json::Value>,
    /// The groups the provider puts in the token (absent at Google).
    #[serde(default)]
    pub groups: Vec<String>,
    /// Replay protection: the value the authorization request carried.
    pub nonce: Option<String>,
    /// With several audiences, the party the token was issued to.
    pub azp: Option<String>,
    /// Audience: one value or several.
    pub aud: serde_json::Value,
}

fn truthy(v: &Option<serde_json::Value>) -> bool {
    matches!(v, Some(serde_json::Value::Bool(true)))
        || matches!(v, Some(serde_json::Value::String(s)) if s == "true")
}

impl IdClaims {
    /// The email address, if the provider's rules say it is verified: `email_verified` true
    /// (Google, Okta, any provider), or at Entra ID `xms_edov` true (Entra does not verify
    /// `email` by itself; its `email_verified` is not sent).
    pub fn verified_email(&self, provider: Provider) -> Result<&str> {
        let email = self.email.as_deref().ok_or_else(|| {
            refused("the ID token carries no email claim (request the email scope)")
        })?;
        let verified = match provider {
            Provider::Entra => truthy(&self.xms_edov) || truthy(&self.email_verified),
            _ => truthy(&self.email_verified),
        };
        if verified {
            Ok(email)
        } else {
            Err(refused(match provider {
                Provider::Entra => "the provider did not verify the email address (Entra ID: add the xms_edov optional claim)",
                _ => "the provider did not verify the email address (email_verified is not true)",
            }))
        }
    }
}

/// The one HTTP client for identity providers.
#[derive(Debug, Clone)]
pub struct OidcClient {
    http: reqwest::Client,
}

impl OidcClient {
    /// A client that follows no redirects and gives up after [`PROVIDER_TIMEOUT`].
    pub fn new() -> Result<OidcClient> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(PROVIDER_TIMEOUT)
            .build()
            .map_err(|e| provider_error(e.to_string()))?;
        Ok(OidcClient { http })
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        allow_http: bool,
    ) -> Result<T> {
        check_url(url, allow_http)?;
        let response = self
            .http
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| provider_error(format!("GET {url}: {e}")))?;
        if !response.status().is_success() {
            return Err(provider_error(format!("GET {url}: {}", response.status())));
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| provider_error(format!("GET {url}: {e}")))?;
        if bytes.len() > 512 * 1024 {
            return Err(provider_error(format!("GET {url}: answer over 512 KiB")));
        }
        serde_json::from_slice(&bytes).map_err(|e| provider_error(format!("GET {url}: {e}")))
    }

    /// The provider's discovery document; its `issuer` must be the connection's exactly.
    pub async fn discover(&self, issuer: &Issuer, allow_http: bool) -> Result<Discovery> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.as_str().trim_end_matches('/')
        );
        let d: Discovery = self.get_json(&url, allow_http).await?;
        if d.issuer != issuer.as_str() {
            return Err(refused(format!(
                "the provider's discovery names issuer {:?}, not the connection's {:?}",
                d.issuer,
                issuer.as_str()
            )));
        }
        for endpoint in [&d.authorization_endpoint, &d.token_endpoint, &d.jwks_uri] {
            check_url(endpoint, allow_http)?;
        }
        Ok(d)
    }

    /// The provider's signing keys (fetched for each sign-in, so a rotated key is seen at once).
    pub async fn jwks(&self, d: &Discovery, allow_http: bool) -> Result<JwkSet> {
        self.get_json(&d.jwks_uri, allow_http).await
    }

    /// Exchanges the authorization code (client_secret_basic, PKCE verifier) for the ID token.
    #[allow(clippy::too_many_arguments)]
    pub async fn exchange(
        &self,
        d: &Discovery,
        client_id: &str,
        client_secret: &str,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
        allow_http: bool,
    ) -> Result<String> {
        check_url(&d.token_endpoint, allow_http)?;
        #[derive(Deserialize)]
        struct TokenResponse {
            id_token: Option<String>,
            error: Option<String>,
        }
        let response = self
            .http
            .post(&d.token_endpoint)
            .basic_auth(client_id, Some(client_secret))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", redirect_uri),
                ("code_verifier", verifier),
            ])
            .send()
            .await
            .map_err(|e| provider_error(format!("token request: {e}")))?;
        let status = response.status();
        let body: TokenResponse = response
            .json()
            .await
            .map_err(|e| provider_error(format!("token response: {e}")))?;
        match (status.is_success(), body.id_token) {
            (true, Some(token)) => Ok(token),
            _ => Err(refused(format!(
                "the provider refused the code: {} {}",
                status.as_u16(),
                body.error.unwrap_or_default()
            ))),
        }
    }
}

fn check_url(url: &str, allow_http: bool) -> Result<()> {
    let parsed = url::Url::parse(url).map_err(|e| provider_error(format!("{url}: {e}")))?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if allow_http => Ok(()),
        _ => Err(provider_error(format!(
            "{url}: identity provider endpoints must be https://"
        ))),
    }
}

/// Validates an ID token: signature against the provider's keys (the header's `kid`, an
/// asymmetric algorithm the key's type fits), issuer, audience (and `azp` when there are several),
/// expiry and issue time with [`LEEWAY_SECS`], and the nonce the sign-in started with.
pub fn validate_id_token(
    token: &str,
    keys: &JwkSet,
    issuer: &Issuer,
    client_id: &str,
    nonce: &str,
) -> Result<IdClaims> {
    let header =
        jsonwebtoken::decode_header(token).map_err(|e| refused(format!("ID token: {e}")))?;
    if !ALGORITHMS.contains(&header.alg) {
        return Err(refused(format!(
            "ID token: algorithm {:?} is not accepted",
            header.alg
        )));
    }
    let jwk = match &header.kid {
        Some(kid) => keys.find(kid),
        None if keys.keys.len() == 1 => keys.keys.first(),
        None => None,
    }
    .ok_or_else(|| refused("ID token: signed with a key the provider does not publish"))?;
    if matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)) {
        return Err(refused("ID token: a symmetric key is never accepted"));
    }
    let key = DecodingKey::from_jwk(jwk).map_err(|e| refused(format!("ID token key: {e}")))?;
    let mut validation = Validation::new(header.alg);
    validation.leeway = LEEWAY_SECS;
    validation.validate_nbf = true;
    validation.set_issuer(&[issuer.as_str()]);
    validation.set_audience(&[client_id]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    let data = jsonwebtoken::decode::<IdClaims>(token, &key, &validation).map_err(|e| {
        use jsonwebtoken::errors::ErrorKind as K;
        refused(match e.kind() {
            K::InvalidIssuer => "ID token: wrong issuer".to_owned(),
            K::InvalidAudience => "ID token: wrong audience".to_owned(),
            K::ExpiredSignature => "ID token: expired".to_owned(),
            K::InvalidSignature => "ID token: bad signature".to_owned(),
            K::ImmatureSignature => "ID token: not valid yet".to_owned(),
            other => format!("ID token: {other:?}"),
        })
    })?;
    let claims = data.claims;
    if claims.aud.is_array() && claims.azp.as_deref() != Some(client_id) {
        return Err(refused("ID token: wrong audience (azp)"));
    }
    let same_nonce = claims
        .nonce
        .as_deref()
        .is_some_and(|n| bool::from(n.as_bytes().ct_eq(nonce.as_bytes())));
    if !same_nonce {
        return Err(refused("ID token: wrong nonce"));
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use ring::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
    use serde_json::json;

    const ISSUER: &str = "https://idp.example.test";

    /// A P-256 key: its encoding key and its JWK set (kid `k1`).
    fn key() -> (EncodingKey, JwkSet) {
        let rng = SystemRandom::new();
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("generate");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .expect("pair");
        let point = pair.public_key().as_ref();
        let jwks: JwkSet = serde_json::from_value(json!({"keys": [{
            "kty": "EC", "crv": "P-256", "kid": "k1", "use": "sig", "alg": "ES256",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        }]}))
        .expect("jwks");
        (EncodingKey::from_ec_der(pkcs8.as_ref()), jwks)
    }

    fn now() -> i64 {
        time::OffsetDateTime::now_utc().unix_timestamp()
    }

    fn token(key: &EncodingKey, claims: serde_json::Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("k1".into());
        jsonwebtoken::encode(&header, &claims, key).expect("sign")
    }

    fn good() -> serde_json::Value {
        json!({
            "iss": ISSUER, "aud": "client", "sub": "u1", "nonce": "n-1",
            "iat": now(), "exp": now() + 300,
            "email": "ann@acme.test", "email_verified": true, "groups": ["admins"],
        })
    }

    /// Validates `claims` signed with the right key; `Err` is the refusal's text.
    fn check(claims: serde_json::Value) -> std::result::Result<IdClaims, String> {
        let (key, jwks) = key();
        let issuer = Issuer::parse(ISSUER, false).expect("issuer");
        validate_id_token(&token(&key, claims), &jwks, &issuer, "client", "n-1")
            .map_err(|e| e.to_string())
    }

    #[test]
    fn id_tokens_are_refused_for_each_broken_claim() {
        let ok = check(good()).expect("valid");
        assert_eq!(ok.groups, ["admins"]);
        assert_eq!(
            ok.verified_email(Provider::Okta).expect("email"),
            "ann@acme.test"
        );
        let with = |field: &str, value: serde_json::Value| {
            let mut c = good();
            c[field] = value;
            c
        };
        for (claims, why) in [
            (with("iss", json!("https://other.test")), "wrong issuer"),
            (with("aud", json!("someone-else")), "wrong audience"),
            (
                with("aud", json!(["client", "other"])),
                "wrong audience (azp)",
            ),
            (with("exp", json!(now() - 3600)), "expired"),
            (with("nonce", json!("n-2")), "wrong nonce"),
            (with("nbf", json!(now() + 3600)), "not valid yet"),
        ] {
            let refused = check(claims).expect_err(why);
            assert!(refused.contains(why), "{why}: {refused}");
        }
        let mut missing = good();
        missing.as_object_mut().expect("object").remove("nonce");
        assert!(check(missing)
            .expect_err("no nonce")
            .contains("wrong nonce"));
        let mut azp = with("aud", json!(["client", "other"]));
        azp["azp"] = json!("client");
        assert!(check(azp).is_ok(), "several audiences with azp = client");
    }

    #[test]
    fn only_the_providers_keys_and_asymmetric_algorithms_verify() {
        let (key, _) = key();
        let (_, other_jwks) = self::key();
        let issuer = Issuer::parse(ISSUER, false).expect("issuer");
        let signed = token(&key, good());
        let refused = validate_id_token(&signed, &other_jwks, &issuer, "client", "n-1")
            .expect_err("another key");
        assert!(refused.to_string().contains("bad signature"), "{refused}");

        // An HMAC token keyed with something public (alg confusion) never verifies.
        let (_, jwks) = self::key();
        let hs = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &good(),
            &EncodingKey::from_secret(b"public"),
        )
        .expect("sign");
        let refused = validate_id_token(&hs, &jwks, &issuer, "client", "n-1").expect_err("HS256");
        assert!(refused.to_string().contains("not accepted"), "{refused}");
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(good().to_string())
        );
        assert!(validate_id_token(&none, &jwks, &issuer, "client", "n-1").is_err());
    }

    #[test]
    fn email_verification_follows_each_providers_rules() {
        let claims = |v: serde_json::Value| -> IdClaims {
            let mut c = good();
            c.as_object_mut().expect("object").remove("email_verified");
            for (k, val) in v.as_object().expect("object") {
                c[k] = val.clone();
            }
            serde_json::from_value(c).expect("claims")
        };
        assert!(claims(json!({})).verified_email(Provider::Google).is_err());
        assert!(claims(json!({"email_verified": false}))
            .verified_email(Provider::Okta)
            .is_err());
        assert!(claims(json!({"email_verified": "true"}))
            .verified_email(Provider::Google)
            .is_ok());
        assert!(claims(json!({})).verified_email(Provider::Entra).is_err());
        assert!(claims(json!({"xms_edov": true}))
            .verified_email(Provider::Entra)
            .is_ok());
        assert!(claims(json!({"xms_edov": true}))
            .verified_email(Provider::Okta)
            .is_err());
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }
}
