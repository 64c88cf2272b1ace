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
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq starts (cargo xtask test installs dnsmasq-base)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "dnsmasq did not listen on {port}"
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
