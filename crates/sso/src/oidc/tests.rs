//! The relying party's tests: ID token validation, email rules, capped answers and egress.

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
    let refused =
        validate_id_token(&signed, &other_jwks, &issuer, "client", "n-1").expect_err("another key");
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
