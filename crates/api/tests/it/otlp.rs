//! OpenTelemetry export: the real binary with `OTEL_EXPORTER_OTLP_ENDPOINT` pointing at a
//! collector on loopback that records what it is sent (OTLP/HTTP, protobuf). A request that
//! carries a W3C `traceparent` must reach the collector as a span of the caller's trace.

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use defendable_testkit::TestDb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One OTLP request the collector received: its path and body.
type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A collector that answers every HTTP request 200 and keeps its path and body.
async fn collector() -> (u16, Received) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let received: Received = Arc::default();
    let kept = received.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let kept = kept.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                // Headers, then as many body bytes as Content-Length says.
                let (head_end, length) = loop {
                    let n = socket.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..at]).to_ascii_lowercase();
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        break (at + 4, length);
                    }
                };
                while buf.len() < head_end + length {
                    let n = socket.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
                let body = buf[head_end..].to_vec();
                kept.lock().expect("lock").push((path, body));
                let _ = socket
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                    .await;
            });
        }
    });
    (port, received)
}

#[tokio::test]
async fn request_spans_reach_the_collector_in_the_callers_trace() {
    let db = TestDb::new().await;
    let (collector_port, received) = collector().await;
    let (socket, port) = defendable_testkit::listener();
    let data =
        std::env::temp_dir().join(format!("defendable-otlp-{}", uuid::Uuid::new_v4().simple()));
    let mut command = Command::new(env!("CARGO_BIN_EXE_defendable-api"));
    // env_clear first: it would also drop the LISTEN_FDS the hand-down sets.
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    defendable_testkit::hand_down(&mut command, &socket);
    let mut child = command
        .envs([
            ("BIND_ADDR", format!("127.0.0.1:{port}")),
            ("DATA_DIR", data.display().to_string()),
            ("DATABASE_URL", db.url().to_owned()),
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://127.0.0.1:{collector_port}"),
            ),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawns");
    let base = format!("http://127.0.0.1:{port}");
    let http = crate::helpers::http();
    defendable_testkit::http::wait_ready(&http, &base, Duration::from_secs(60)).await;

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let res = http
        .get(format!("{base}/healthz"))
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(res.status(), 200);
    let request_id = res.headers()["x-request-id"]
        .to_str()
        .expect("id")
        .to_owned();

    // The span travels as protobuf: the trace id as its 16 raw bytes, the request id (a span
    // attribute) as text.
    let trace_bytes = hex::decode(trace_id).expect("hex");
    let deadline = Instant::now() + Duration::from_secs(20);
    let found = loop {
        let hit = received.lock().expect("lock").iter().any(|(path, body)| {
            path == "/v1/traces"
                && body.windows(16).any(|w| w == trace_bytes.as_slice())
                && body
                    .windows(request_id.len())
                    .any(|w| w == request_id.as_bytes())
        });
        if hit || Instant::now() > deadline {
            break hit;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let paths: Vec<String> = received
        .lock()
        .expect("lock")
        .iter()
        .map(|(p, b)| format!("{p} ({} bytes)", b.len()))
        .collect();
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&data);
    assert!(
        found,
        "no exported span carried trace {trace_id} and request {request_id}; the collector got: {paths:?}"
    );
}
