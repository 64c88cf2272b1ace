//! The shell's behaviour on every response: headers, request ids, problem documents, readiness.

use actix_web::{test, web, App, HttpResponse};
use defendable_api::error::{ErrorCode, Problem};
use serde_json::Value;

use crate::helpers::{assert_security_headers, config, read_as, TestApp};

async fn problem(res: reqwest::Response) -> Value {
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    res.json().await.expect("problem body")
}

#[actix_web::test]
async fn readyz_is_200_with_every_security_header() {
    let app = TestApp::spawn().await;
    let res = app
        .http
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("response");
    assert_eq!(res.status(), 200);
    assert_security_headers(&res);
    assert!(
        res.headers().get("strict-transport-security").is_none(),
        "no HSTS in development"
    );
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["status"], "ready");
    assert_eq!(
        body["checks"],
        serde_json::json!({"database": "ok", "migrations": "ok", "object_store": "ok"})
    );
}

#[actix_web::test]
async fn healthz_answers() {
    let app = TestApp::spawn().await;
    let res = app
        .http
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("response");
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<Value>().await.expect("json"),
        serde_json::json!({"status": "ok"})
    );
}

#[actix_web::test]
async fn security_txt_names_a_contact_and_a_future_expiry() {
    let app =
        TestApp::spawn_with(config(&[("SECURITY_CONTACT", "mailto:psirt@example.com")])).await;
    let res = app
        .http
        .get(app.url("/.well-known/security.txt"))
        .send()
        .await
        .expect("response");
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .starts_with("text/plain"));
    let text = res.text().await.expect("text");
    assert!(
        text.contains("Contact: mailto:psirt@example.com\n"),
        "{text}"
    );
    let expires = text
        .lines()
        .find_map(|l| l.strip_prefix("Expires: "))
        .expect("Expires");
    let expires =
        time::OffsetDateTime::parse(expires, &time::format_description::well_known::Rfc3339)
            .expect("RFC 3339");
    let now = time::OffsetDateTime::now_utc();
    assert!(expires > now && expires < now + time::Duration::days(366));
    assert!(text.contains("Canonical: "), "{text}");
}

#[actix_web::test]
async fn an_unknown_route_is_a_problem_404_with_headers() {
    let app = TestApp::spawn().await;
    let res = app
        .http
        .post(app.url("/nope"))
        .body("{")
        .send()
        .await
        .expect("response");
    assert_eq!(res.status(), 404);
    assert_security_headers(&res);
    let body = problem(res).await;
    let body: Problem = read_as(&body);
    assert_eq!((body.code, body.status), (ErrorCode::NotFound, 404));
}

#[actix_web::test]
async fn a_wrong_method_is_a_problem_405() {
    let app = TestApp::spawn().await;
    let res = app
        .http
        .delete(app.url("/healthz"))
        .send()
        .await
        .expect("response");
    assert_eq!(res.status(), 405);
    assert_security_headers(&res);
    assert_eq!(
        read_as::<Problem>(&problem(res).await).code,
        ErrorCode::MethodNotAllowed
    );
}

#[actix_web::test]
async fn a_sane_request_id_is_echoed_and_anything_else_replaced() {
    let app = TestApp::spawn().await;
    let res = app
        .http
        .get(app.url("/healthz"))
        .header("x-request-id", "abc-123.x")
        .send()
        .await
        .expect("r");
    assert_eq!(res.headers()["x-request-id"], "abc-123.x");
    for bad in ["has space", "x".repeat(129).as_str(), "<script>"] {
        let res = app
            .http
            .get(app.url("/healthz"))
            .header("x-request-id", bad)
            .send()
            .await
            .expect("r");
        let got = res.headers()["x-request-id"]
            .to_str()
            .expect("ascii")
            .to_owned();
        assert_ne!(got, bad);
        assert!(uuid::Uuid::parse_str(&got).is_ok(), "{got}");
    }
}

#[actix_web::test]
async fn authenticated_requests_are_never_cached() {
    let app = TestApp::spawn().await;
    let anon = app.http.get(app.url("/healthz")).send().await.expect("r");
    assert!(anon.headers().get("cache-control").is_none());
    let authed = app
        .http
        .get(app.url("/healthz"))
        .bearer_auth("whatever")
        .send()
        .await
        .expect("r");
    assert_eq!(authed.headers()["cache-control"], "no-store");
    let missing = app
        .http
        .get(app.url("/nope"))
        .bearer_auth("whatever")
        .send()
        .await
        .expect("r");
    assert_eq!(missing.headers()["cache-control"], "no-store");
}

#[actix_web::test]
async fn hsts_is_sent_in_production_only() {
    let prod = config(&[
        ("APP_ENV", "production"),
        ("LEDGER_NAME", "ledger.example.com"),
        ("APP_BASE_URL", "https://app.example.com"),
        ("API_BASE_URL", "https://api.example.com"),
        ("CORS_ORIGINS", "https://app.example.com"),
    ]);
    let app = TestApp::spawn_with(prod).await;
    for path in ["/healthz", "/nope"] {
        let res = app.http.get(app.url(path)).send().await.expect("r");
        assert_eq!(
            res.headers()["strict-transport-security"],
            "max-age=31536000; includeSubDomains",
            "{path}"
        );
    }
}

#[actix_web::test]
async fn cors_allows_only_configured_origins() {
    let app = TestApp::spawn_with(config(&[("CORS_ORIGINS", "https://app.example.com")])).await;
    let ok = app
        .http
        .get(app.url("/healthz"))
        .header("origin", "https://app.example.com")
        .send()
        .await
        .expect("r");
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    let other = app
        .http
        .get(app.url("/healthz"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .expect("r");
    assert!(other.headers().get("access-control-allow-origin").is_none());
    let preflight = app
        .http
        .request(reqwest::Method::OPTIONS, app.url("/healthz"))
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .expect("r");
    assert!(preflight.status().is_client_error());
    assert!(preflight
        .headers()
        .get("access-control-allow-origin")
        .is_none());
    assert_eq!(problem(preflight).await["status"], 400);
}

#[actix_web::test]
async fn readyz_is_503_with_reasons_when_the_database_is_unreachable() {
    let app = TestApp::spawn().await;
    // Same server, but a pool pointing at a port nothing listens on.
    let dead = defendable_store::pool("postgres://nobody@127.0.0.1:1/none", 1).expect("pool");
    let objects = std::sync::Arc::new(object_store::memory::InMemory::new());
    let server = defendable_api::Application::build(
        config(&[]),
        defendable_api::Dependencies {
            pool: dead,
            objects,
            presigner: None,
        },
    )
    .expect("binds");
    let url = format!("http://127.0.0.1:{}/readyz", server.port());
    actix_web::rt::spawn(server.run_until_stopped());
    let res = app.http.get(url).send().await.expect("r");
    assert_eq!(res.status(), 503);
    let body = problem(res).await;
    assert_eq!(body["code"], "not_ready");
    assert_eq!(body["checks"]["database"], "unreachable");
    assert_eq!(body["checks"]["object_store"], "ok");
}

#[actix_web::test]
async fn readyz_reports_a_database_behind_on_migrations() {
    let app = TestApp::spawn().await;
    let client = app.db.pool.get().await.expect("client");
    client
        .execute("DELETE FROM refinery_schema_history WHERE version = (SELECT max(version) FROM refinery_schema_history)", &[])
        .await
        .expect("rewind history");
    let res = app.http.get(app.url("/readyz")).send().await.expect("r");
    assert_eq!(res.status(), 503);
    let body = problem(res).await;
    assert!(
        body["checks"]["migrations"]
            .as_str()
            .expect("reason")
            .contains("this build expects"),
        "{body}"
    );
}

/// JSON bodies go through the shell's extractor configuration; this mounts it with an echo
/// route, since the foundation itself has no JSON-accepting route yet.
#[actix_web::test]
async fn json_bodies_map_to_problems() {
    let cfg = config(&[("JSON_BODY_LIMIT", "64")]);
    let app = test::init_service(
        App::new()
            .configure(defendable_api::routes::configure(&cfg))
            .wrap(actix_web::middleware::from_fn(
                defendable_api::middleware::edge,
            ))
            .service(
                web::resource("/echo")
                    .post(|b: web::Json<EchoBody>| async move { HttpResponse::Ok().json(b.0) }),
            ),
    )
    .await;
    let cases: [(&str, &str, u16, &str); 5] = [
        (r#"{"name":"ok"}"#, "application/json", 200, ""),
        ("{", "application/json", 400, "malformed_json"),
        (r#"{"name": 5}"#, "application/json", 422, "invalid_body"),
        (
            r#"{"name":"ok"}"#,
            "text/plain",
            415,
            "unsupported_media_type",
        ),
        (
            &format!(r#"{{"name":"{}"}}"#, "x".repeat(100)),
            "application/json",
            413,
            "payload_too_large",
        ),
    ];
    for (body, ct, status, code) in cases {
        let req = test::TestRequest::post()
            .uri("/echo")
            .insert_header(("content-type", ct))
            .set_payload(body.to_owned())
            .to_request();
        let res = test::call_service(&app, req).await;
        assert_eq!(res.status().as_u16(), status, "{body} as {ct}");
        if status != 200 {
            assert_eq!(
                res.headers().get("content-type").expect("content-type"),
                "application/problem+json"
            );
            assert!(res.headers().contains_key("x-request-id"));
            let v: Value = test::read_body_json(res).await;
            assert_eq!(v["code"], code, "{body}");
        }
    }
}

#[derive(serde::Deserialize, serde::Serialize)]
struct EchoBody {
    name: String,
}
