//! Real S3-compatible servers on loopback for tests, both installed by `cargo xtask test`:
//!
//! - [`S3Server`]: `s3s-fs` (from the Rust registry), serving one bucket from a temporary
//!   directory; it checks request signatures.
//! - [`Moto`]: moto's server (from PyPI, in a virtual environment under `target/tools/`), which
//!   implements the bucket versioning and lifecycle calls s3s-fs lacks.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

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
        // Port 0: s3s-fs binds a free port itself and logs which.
        let mut child = Command::new("s3s-fs")
            .args(["--host", "127.0.0.1", "--port", "0"])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(root.path())
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("s3s-fs starts (cargo xtask test installs it with cargo install)");
        let port = crate::announced_port(
            child.stdout.take().expect("its output"),
            "server is running at http://127.0.0.1:",
            Duration::from_secs(30),
        );
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
        self.builder(bucket).build().expect("s3 store")
    }

    /// The client settings for `bucket` on this server.
    pub fn builder(&self, bucket: &str) -> object_store::aws::AmazonS3Builder {
        client_settings(&self.endpoint(), bucket)
    }
}

fn client_settings(endpoint: &str, bucket: &str) -> object_store::aws::AmazonS3Builder {
    object_store::aws::AmazonS3Builder::new()
        .with_bucket_name(bucket)
        .with_endpoint(endpoint)
        .with_allow_http(true)
        .with_region("us-east-1")
        .with_access_key_id(ACCESS_KEY)
        .with_secret_access_key(SECRET_KEY)
}

/// The pinned moto; keep in step with `MOTO` in xtask/src/main.rs, which installs it.
pub const MOTO_VERSION: &str = "5.2.5";

/// A running moto server, stopped when dropped. It keeps everything in memory.
#[derive(Debug)]
pub struct Moto {
    child: Child,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    /// Starts a server with no buckets.
    pub fn start() -> Moto {
        defendable_store::install_crypto_provider();
        let bin = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../target/tools")
            .join(format!("moto-{MOTO_VERSION}/bin/moto_server"));
        assert!(
            bin.is_file(),
            "{} is missing: `cargo xtask test` installs moto {MOTO_VERSION}",
            bin.display()
        );
        // Port 0: moto's server binds a free port itself and says which.
        let mut child = Command::new(bin)
            .args(["-H", "127.0.0.1", "-p", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("moto_server starts");
        let port = crate::announced_port(
            child.stderr.take().expect("its output"),
            "Running on http://127.0.0.1:",
            Duration::from_secs(30),
        );
        Moto { child, port }
    }

    /// Its endpoint URL.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The client settings for `bucket` on this server.
    pub fn builder(&self, bucket: &str) -> object_store::aws::AmazonS3Builder {
        client_settings(&self.endpoint(), bucket)
    }

    /// Sends a bucket-level request as an administrator would (moto does not check signatures
    /// unless asked to): `PUT /bucket` creates it, `PUT /bucket?versioning` with a
    /// `VersioningConfiguration` turns versioning on, `PUT /bucket?lifecycle` sets the rules.
    pub async fn put(&self, path_and_query: &str, body: &str) {
        let response = reqwest::Client::new()
            .put(format!("{}/{path_and_query}", self.endpoint()))
            .body(body.to_owned())
            .send()
            .await
            .expect("moto answers");
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert!(status.is_success(), "PUT {path_and_query}: {status} {text}");
    }
}
