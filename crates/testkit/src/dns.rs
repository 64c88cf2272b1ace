//! A real DNS server on loopback for the domain-verification tests: dnsmasq (Debian's
//! dnsmasq-base; `cargo xtask test` installs it), answering the TXT records a test publishes and
//! NXDOMAIN for every other name under `.test` (RFC 6761), with no upstream and no cache.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running dnsmasq, stopped when dropped.
#[derive(Debug)]
pub struct DnsServer {
    child: Child,
    /// The port it answers on (127.0.0.1, UDP and TCP).
    pub port: u16,
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The name each server answers with its own nonce.
const PROBE: &str = "_probe.defendable.test";

/// Whether the DNS server on `port` answers the TXT query for [`PROBE`] with `nonce` (one UDP
/// query, RFC 1035 §4.1, a short wait).
fn answers(port: u16, nonce: &str) -> bool {
    let Ok(socket) = std::net::UdpSocket::bind("127.0.0.1:0") else {
        return false;
    };
    let _ = socket.set_read_timeout(Some(Duration::from_millis(200)));
    // Header: id, flags (recursion desired), one question.
    let mut query = vec![0x7e, 0x57, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in PROBE.split('.') {
        query.push(label.len() as u8);
        query.extend_from_slice(label.as_bytes());
    }
    query.extend_from_slice(&[0, 0, 16, 0, 1]); // end of name, TXT, IN
    if socket.send_to(&query, ("127.0.0.1", port)).is_err() {
        return false;
    }
    let mut answer = [0u8; 512];
    match socket.recv(&mut answer) {
        Ok(n) => answer[..n]
            .windows(nonce.len())
            .any(|w| w == nonce.as_bytes()),
        Err(_) => false,
    }
}

impl DnsServer {
    /// Serves `records` (name, TXT value) on `port`; names must end in `.test`.
    pub fn start(port: u16, records: &[(&str, &str)]) -> DnsServer {
        let mut cmd = Command::new("/usr/sbin/dnsmasq");
        cmd.args([
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--no-poll",
            "--cache-size=0",
            "--bind-interfaces",
            "--listen-address=127.0.0.1",
            "--local=/test/",
            "--pid-file=",
            "--user=",
        ])
        .arg(format!("--port={port}"));
        for (name, value) in records {
            assert!(name.ends_with(".test"), "{name}: test names end in .test");
            cmd.arg(format!("--txt-record={name},{value}"));
        }
        // dnsmasq can neither take a socket nor bind port 0 and say which: it binds the port it
        // is given. So it also serves a record only this one knows, and the start waits until
        // that record comes back: whatever answers is the server this call started (one that
        // found the port taken exits, and the start fails saying so).
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        cmd.arg(format!("--txt-record={PROBE},{nonce}"));
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq starts (cargo xtask test installs dnsmasq-base)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !answers(port, &nonce) {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("dnsmasq exited {status}: port {port} is taken by another process");
            }
            assert!(
                Instant::now() < deadline,
                "dnsmasq did not answer on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        DnsServer { child, port }
    }

    /// Its address for `DNS_RESOLVER`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}
