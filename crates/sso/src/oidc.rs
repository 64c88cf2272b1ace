//! OpenID Connect relying party: discovery, the authorization request (code flow, PKCE S256,
//! `state` and `nonce`), the token exchange and ID token validation. Every outbound request
//! goes through one client that follows no redirects, times out, refuses plain-http issuers
//! unless the deployment allows them (development), connects only to addresses [`Egress`]
//! permits, and reads each answer as a stream capped at [`PROVIDER_BODY_MAX`]. What a refusal
//! says names the rule that refused, never what the provider answered (that is logged).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use ring::rand::{SecureRandom, SystemRandom};
use serde::Deserialize;
use subtle::ConstantTimeEq as _;

use crate::domain::{Issuer, Provider};
use crate::egress::{refusal_in, Egress, GuardedResolver};
use crate::{Result, SsoError};

/// How long one request to an identity provider may take.
pub const PROVIDER_TIMEOUT: Duration = defendable_config::limits::SSO_PROVIDER_REQUEST;
/// The most an identity provider's answer (discovery, keys, token response) may hold.
pub const PROVIDER_BODY_MAX: usize = defendable_config::limits::SSO_PROVIDER_BODY;
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
    /// Google: the Google Workspace (primary domain) the account belongs to; absent for a
    /// personal Google account, even one registered with a company address.
    pub hd: Option<String>,
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
    egress: Arc<Egress>,
}

impl OidcClient {
    /// A client that follows no redirects, gives up after [`PROVIDER_TIMEOUT`], and connects
    /// only where `egress` permits (checked in its resolver, on the addresses it connects to).
    pub fn new(egress: Egress) -> Result<OidcClient> {
        let egress = Arc::new(egress);
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(PROVIDER_TIMEOUT)
            // No proxy from the environment: the addresses checked are the providers' own.
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver {
                egress: egress.clone(),
            }))
            .build()
            .map_err(|e| provider_error(e.to_string()))?;
        Ok(OidcClient { http, egress })
    }

    /// A URL the client may request: `https://` (or `http://` where allowed), and a host
    /// written as an address (which skips the resolver) that [`Egress`] permits.
    fn check_url(&self, url: &str, allow_http: bool) -> Result<()> {
        let parsed = url::Url::parse(url)
            .map_err(|_| provider_error("an identity provider endpoint is not a valid URL"))?;
        match parsed.scheme() {
            "https" => {}
            "http" if allow_http => {}
            _ => {
                return Err(provider_error(
                    "identity provider endpoints must be https://",
                ))
            }
        }
        let ip = match parsed.host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            _ => None,
        };
        if let Some(ip) = ip {
            self.egress
                .check(ip)
                .map_err(|r| provider_error(r.to_string()))?;
        }
        Ok(())
    }

    /// A request's failure as the caller sees it: which rule refused the address, or that the
    /// provider could not be reached; never what the target answered (logged here instead).
    fn send_failed(what: &str, e: &reqwest::Error) -> SsoError {
        if let Some(refused) = refusal_in(e) {
            return provider_error(format!("{what}: {refused}"));
        }
        tracing::warn!(error = %e, what, "identity provider request failed");
        provider_error(format!(
            "{what}: the identity provider could not be reached (connection failed or timed out)"
        ))
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        what: &str,
        allow_http: bool,
    ) -> Result<T> {
        self.check_url(url, allow_http)?;
        let response = self
            .http
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| Self::send_failed(what, &e))?;
        if !response.status().is_success() {
            tracing::warn!(status = %response.status(), what, "identity provider answered an error status");
            return Err(provider_error(format!(
                "{what}: the identity provider did not answer with a success status"
            )));
        }
        let bytes = read_capped(response, what).await?;
        serde_json::from_slice(&bytes).map_err(|e| {
            tracing::warn!(error = %e, what, "identity provider answered malformed JSON");
            provider_error(format!(
                "{what}: the identity provider's answer is not the expected JSON"
            ))
        })
    }

    /// The provider's discovery document; its `issuer` must be the connection's exactly.
    pub async fn discover(&self, issuer: &Issuer, allow_http: bool) -> Result<Discovery> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.as_str().trim_end_matches('/')
        );
        let d: Discovery = self.get_json(&url, "discovery", allow_http).await?;
        if d.issuer != issuer.as_str() {
            return Err(refused(
                "the provider's discovery document names another issuer than the connection's",
            ));
        }
        for endpoint in [&d.authorization_endpoint, &d.token_endpoint, &d.jwks_uri] {
            self.check_url(endpoint, allow_http)?;
        }
        Ok(d)
    }

    /// The provider's signing keys (fetched for each sign-in, so a rotated key is seen at once).
    pub async fn jwks(&self, d: &Discovery, allow_http: bool) -> Result<JwkSet> {
        self.get_json(&d.jwks_uri, "signing keys", allow_http).await
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
        self.check_url(&d.token_endpoint, allow_http)?;
        #[derive(Deserialize)]
        struct TokenResponse {
            id_token: Option<String>,
            error: Option<String>,
        }
        let what = "token request";
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
            .map_err(|e| Self::send_failed(what, &e))?;
        let status = response.status();
        let bytes = read_capped(response, what).await?;
        let body: TokenResponse = serde_json::from_slice(&bytes).map_err(|e| {
            tracing::warn!(error = %e, %status, "identity provider's token response is malformed");
            provider_error("token request: the identity provider's answer is not the expected JSON")
        })?;
        match (status.is_success(), body.id_token) {
            (true, Some(token)) => Ok(token),
            (_, _) => {
                tracing::warn!(%status, error = body.error.as_deref().unwrap_or(""), "the identity provider refused the code");
                Err(refused(
                    "the identity provider refused the authorization code",
                ))
            }
        }
    }
}

/// Reads a provider's answer as a stream, refusing it as soon as it would exceed
/// [`PROVIDER_BODY_MAX`]: on its `Content-Length` before reading anything, otherwise at the
/// chunk that crosses the limit. Nothing over the limit is buffered.
async fn read_capped(mut response: reqwest::Response, what: &str) -> Result<Vec<u8>> {
    let too_large = || {
        provider_error(format!(
            "{what}: the identity provider's answer is over {} KiB",
            PROVIDER_BODY_MAX / 1024
        ))
    };
    if response
        .content_length()
        .is_some_and(|n| n > PROVIDER_BODY_MAX as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| OidcClient::send_failed(what, &e))?
    {
        if body.len() + chunk.len() > PROVIDER_BODY_MAX {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
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
mod tests;
