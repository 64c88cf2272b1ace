//! No token, key or JWT ever reaches a log line.

use serde_json::json;

use crate::helpers::{captured_logs, TestApp};

#[actix_web::test]
async fn no_secret_appears_in_any_log_line() {
    let app = TestApp::spawn().await;
    let mut secrets = Vec::new();

    app.call(
        "POST",
        "/auth/request",
        None,
        Some(json!({"email": "logs@example.com"})),
    )
    .await;
    let link_token = app.outbox_token("logs@example.com");
    let (_, session) = app
        .call(
            "POST",
            "/auth/verify",
            None,
            Some(json!({"token": link_token})),
        )
        .await;
    let jwt = session["access_token"].as_str().expect("jwt").to_owned();
    secrets.push(link_token);
    secrets.push(jwt.clone());

    let (_, me) = app.call("GET", "/me", Some(&jwt), None).await;
    let slug = me["memberships"][0]["org"]["slug"]
        .as_str()
        .expect("slug")
        .to_owned();
    app.call(
        "POST",
        &format!("/orgs/{slug}/invites"),
        Some(&jwt),
        Some(json!({"email": "inv@example.com", "role": "member"})),
    )
    .await;
    let invite_token = app.outbox_token("inv@example.com");
    let (_, joined) = app
        .call(
            "POST",
            "/auth/accept-invite",
            None,
            Some(json!({"token": invite_token})),
        )
        .await;
    secrets.push(invite_token);
    secrets.push(joined["access_token"].as_str().expect("jwt").to_owned());
    let (_, key) = app
        .call(
            "POST",
            &format!("/orgs/{slug}/api-keys"),
            Some(&jwt),
            Some(json!({"name": "k"})),
        )
        .await;
    let secret = key["secret"].as_str().expect("secret").to_owned();
    app.call("GET", &format!("/orgs/{slug}"), Some(&secret), None)
        .await;
    app.call(
        "GET",
        "/me",
        Some("not-a-valid-jwt-but-secret-looking"),
        None,
    )
    .await;
    secrets.push(secret);
    app.call("POST", "/auth/logout", Some(&jwt), None).await;

    let logs = captured_logs();
    assert!(
        logs.contains("\"route\":\"/me\""),
        "the capture saw the requests"
    );
    for s in &secrets {
        assert!(
            !logs.contains(s.as_str()),
            "a secret ({}…) reached the logs",
            &s[..6]
        );
    }
    // Nothing shaped like a JWT or an API key from any test in this process, either.
    assert!(
        !logs.contains("eyJ"),
        "a JWT-shaped string reached the logs"
    );
    for (i, _) in logs.match_indices("dfd_") {
        let tail: String = logs[i + 4..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        assert!(tail.len() < 40, "an API key reached the logs");
    }
}

/// The 500 a client sees points to a log line: the internal-error line carries the response's
/// request id (every line inside a request does, through the request span).
#[actix_web::test]
async fn an_internal_error_line_carries_the_request_id_of_its_response() {
    let app = TestApp::spawn().await;
    let (token, _) = app.sign_in("broken@example.com").await;
    // Break the database under the server in a way that is not an outage: a missing table is
    // a bug, answered 500.
    let client = app.db.pool.get().await.expect("client");
    client
        .batch_execute("ALTER TABLE memberships RENAME TO memberships_gone")
        .await
        .expect("rename");
    let res = app
        .http
        .get(app.url("/me"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("me");
    assert_eq!(res.status(), 500);
    let request_id = res
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("x-request-id")
        .to_owned();
    let logs = captured_logs();
    let line = logs
        .lines()
        .find(|l| l.contains("internal error") && l.contains(&request_id))
        .unwrap_or_else(|| panic!("no internal-error line names request {request_id}"));
    let parsed: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
    assert_eq!(parsed["span"]["request_id"], request_id.as_str(), "{line}");
}

/// A caller's W3C `traceparent` is accepted: the request's lines carry its trace id; a
/// malformed one is ignored.
#[actix_web::test]
async fn a_w3c_traceparent_puts_its_trace_id_on_the_requests_lines() {
    let app = TestApp::spawn().await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let res = app
        .http
        .get(app.url("/orgs/nowhere/receipts"))
        .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
        .header("authorization", "Bearer not-a-token")
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 401);
    let request_id = res
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("request id")
        .to_owned();
    let logs = captured_logs();
    let line = logs
        .lines()
        .find(|l| l.contains(&request_id) && l.contains("\"request\""))
        .unwrap_or_else(|| panic!("no line of request {request_id}"));
    let parsed: serde_json::Value = serde_json::from_str(line).expect("JSON");
    assert_eq!(parsed["span"]["trace_id"], trace, "{line}");
    for bad in [
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
    ] {
        let header = actix_web::http::header::HeaderValue::from_str(bad).expect("header");
        assert_eq!(defendable_api::middleware::trace_id(&header), None, "{bad}");
    }
}
