//! A real S3-compatible server on loopback for tests: `s3s-fs` (from the Rust registry; `cargo
//! xtask test` installs it), serving one bucket from a temporary directory.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::files::TempDir;

/// The access key every test server accepts.
pub const ACCESS_KEY: &str = "defendable-test";
/// Its secret.
pub const SECRET_KEY: &str = "defendable-test-secret";

/// A running s3s-fs, stopped when dropped.
#[derive(Debug)]
pub struct S3Server {
    child: Child,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    _root: TempDir,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl S3Server {
    /// Starts a server holding one empty `bucket` (and installs the process's TLS provider,
    /// which an S3 client needs before it is built).
    pub fn start(bucket: &str) -> S3Server {
        defendable_store::install_crypto_provider();
        let root = TempDir::new();
        std::fs::create_dir_all(root.path().join(bucket)).expect("bucket dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new("s3s-fs")
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("s3s-fs starts (cargo xtask test installs it with cargo install)");
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "s3s-fs did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        S3Server {
            child,
            port,
            _root: root,
        }
    }

    /// Its endpoint URL.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// An S3 client for `bucket` on this server (it also presigns URLs).
    pub fn store(&self, bucket: &str) -> object_store::aws::AmazonS3 {
        object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_endpoint(self.endpoint())
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_access_key_id(ACCESS_KEY)
            .with_secret_access_key(SECRET_KEY)
            .build()
            .expect("s3 store")
    }
}
