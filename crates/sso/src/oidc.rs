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

    /// A loopback server for one request: answers `head`, then body bytes in 16 KiB chunks a
    /// millisecond apart until `total` are sent or the client goes; returns its port and the
    /// count of body bytes it sent.
    async fn streaming_server(
        head: &'static str,
        total: usize,
    ) -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::Ordering;
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = sent.clone();
        tokio::spawn(async move {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request).await;
            if stream.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let chunk = vec![b' '; 16 * 1024];
            while counter.load(Ordering::SeqCst) < total {
                if stream.write_all(&chunk).await.is_err() {
                    return;
                }
                counter.fetch_add(chunk.len(), Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        (port, sent)
    }

    const ENDLESS: &str =
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n";
    const HUGE: &str =
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 10485760\r\n\r\n";

    fn development() -> OidcClient {
        defendable_store::install_crypto_provider();
        OidcClient::new(Egress {
            allow_internal: true,
            allowed: vec![],
        })
        .expect("client")
    }

    #[tokio::test]
    async fn a_providers_answer_is_refused_at_the_cap_not_after_reading_it() {
        use std::sync::atomic::Ordering;
        // Without a length: refused at the chunk that crosses the cap. The server would send
        // 4 MiB; it got to send at most the cap and a few chunks before the client hung up.
        let (port, sent) = streaming_server(ENDLESS, 4 * 1024 * 1024).await;
        let issuer = Issuer::parse(&format!("http://127.0.0.1:{port}"), true).expect("issuer");
        let refused = development()
            .discover(&issuer, true)
            .await
            .expect_err("an endless answer");
        assert!(refused.to_string().contains("over 512 KiB"), "{refused}");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let n = sent.load(Ordering::SeqCst);
        assert!(
            n <= PROVIDER_BODY_MAX + 4 * 16 * 1024,
            "the server sent {n} bytes before the refusal"
        );

        // With a length over the cap: refused before reading the body.
        let (port, sent) = streaming_server(HUGE, 10 * 1024 * 1024).await;
        let issuer = Issuer::parse(&format!("http://127.0.0.1:{port}"), true).expect("issuer");
        let refused = development()
            .discover(&issuer, true)
            .await
            .expect_err("a 10 MiB answer");
        assert!(refused.to_string().contains("over 512 KiB"), "{refused}");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let n = sent.load(Ordering::SeqCst);
        assert!(n <= 4 * 16 * 1024, "the server sent {n} bytes");
    }

    #[tokio::test]
    async fn production_reaches_only_public_addresses_and_says_which_rule_refused() {
        defendable_store::install_crypto_provider();
        let strict = OidcClient::new(Egress::default()).expect("client");
        let (port, _) = streaming_server(HUGE, 1024).await;
        // An address in the URL (which skips the resolver) and a name resolving to loopback.
        for issuer in [
            format!("http://127.0.0.1:{port}"),
            format!("http://localhost:{port}"),
            format!("http://[::ffff:127.0.0.1]:{port}"),
        ] {
            let issuer = Issuer::parse(&issuer, true).expect("issuer");
            let refused = strict
                .discover(&issuer, true)
                .await
                .expect_err("loopback is refused");
            let text = refused.to_string();
            assert!(
                text.contains("loopback") || text.contains("IPv4-mapped"),
                "{issuer:?}: {text}"
            );
            assert!(!text.contains(&port.to_string()), "no URL echoed: {text}");
        }
        // An on-premises provider's network, allowed by configuration, is reached.
        let on_premises = OidcClient::new(Egress {
            allow_internal: false,
            allowed: vec!["127.0.0.0/8".parse().expect("cidr")],
        })
        .expect("client");
        let issuer = Issuer::parse(&format!("http://localhost:{port}"), true).expect("issuer");
        let reached = on_premises
            .discover(&issuer, true)
            .await
            .expect_err("the answer is too large, but it was reached");
        assert!(reached.to_string().contains("over 512 KiB"), "{reached}");
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
