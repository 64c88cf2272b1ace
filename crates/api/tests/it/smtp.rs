//! Mail delivery over real SMTP: a capture server from Debian's python3-aiosmtpd on loopback.

use defendable_api::error::ErrorCode;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{config, decode_quoted_printable, token_from_mail, TempDir, TestApp};

struct SmtpServer {
    child: Child,
    mailbox: std::path::PathBuf,
    port: u16,
    _dir: TempDir,
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// aiosmtpd's mailbox server on the listening socket at descriptor 3 (`argv[1]`: the mailbox).
const SERVE_ON_FD_3: &str = "
import asyncio, socket, sys
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import SMTP

async def main():
    sock = socket.socket(fileno=3)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(Mailbox(sys.argv[1])), sock=sock)
    await server.serve_forever()

asyncio.run(main())
";

fn start_smtp() -> SmtpServer {
    let dir = TempDir::new();
    let mailbox = dir.path().join("mailbox");
    // The test binds the socket and hands it down (descriptor 3): aiosmtpd serves on it, so no
    // other process can take the port between a pick and a bind.
    let (socket, port) = defendable_testkit::listener();
    let mut command = Command::new("/usr/bin/python3");
    defendable_testkit::hand_down(&mut command, &socket);
    let child = command
        .args(["-c", SERVE_ON_FD_3])
        .arg(&mailbox)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("aiosmtpd starts (cargo xtask test installs python3-aiosmtpd)");
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "aiosmtpd did not listen; is python3-aiosmtpd installed?"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    SmtpServer {
        child,
        mailbox,
        port,
        _dir: dir,
    }
}

fn delivered(mailbox: &std::path::Path) -> Vec<String> {
    let new = mailbox.join("new");
    std::fs::read_dir(new)
        .map(|d| {
            d.flatten()
                .map(|e| std::fs::read_to_string(e.path()).expect("mail"))
                .collect()
        })
        .unwrap_or_default()
}

#[actix_web::test]
async fn a_magic_link_travels_through_a_real_smtp_server_and_signs_in() {
    let smtp = start_smtp();
    let url = format!("smtp://127.0.0.1:{}", smtp.port);
    let app = TestApp::spawn_with(config(&[
        ("SMTP_URL", &url),
        ("EMAIL_FROM", "Defendable <auth@example.com>"),
    ]))
    .await;
    let (s, _) = app
        .call(
            "POST",
            "/auth/request",
            None,
            Some(json!({"email": "smtp@example.com"})),
        )
        .await;
    assert_eq!(s, 202);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mail = loop {
        if let Some(m) = delivered(&smtp.mailbox).pop() {
            break decode_quoted_printable(&m);
        }
        assert!(
            Instant::now() < deadline,
            "no message reached the SMTP server"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(mail.contains("To: smtp@example.com"), "{mail}");
    assert!(
        mail.contains("From: Defendable <auth@example.com>"),
        "{mail}"
    );
    assert!(
        !app.data.path().join("outbox").exists(),
        "SMTP mode writes no outbox"
    );
    let token = token_from_mail(&mail);
    let (s, body) = app
        .call("POST", "/auth/verify", None, Some(json!({"token": token})))
        .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["user"]["email"], "smtp@example.com");
}

#[actix_web::test]
async fn an_unreachable_smtp_server_is_a_503_and_an_audit_event() {
    // Bound but not listening: connections are refused, and no other process can take the port.
    let (_reserved, port) = defendable_testkit::refusing_port();
    let app =
        TestApp::spawn_with(config(&[("SMTP_URL", &format!("smtp://127.0.0.1:{port}"))])).await;
    let (s, body) = app
        .problem(
            "POST",
            "/auth/request",
            None,
            Some(json!({"email": "x@example.com"})),
        )
        .await;
    assert_eq!((s, body.code), (503, ErrorCode::MailUnavailable));
    assert!(!format!("{body:?}").contains("token="));
    let client = app.db.pool.get().await.expect("client");
    let n: i64 = client
        .query_one(
            "SELECT count(*) FROM audit_events WHERE action = 'mail.failure'",
            &[],
        )
        .await
        .expect("n")
        .get(0);
    assert_eq!(n, 1);
}
