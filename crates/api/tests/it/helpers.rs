//! Spawning the application on a fresh database, the way a client sees it.

use std::sync::Arc;

use defendable_api::{Application, Dependencies};
use defendable_config::{Config, Env};
use defendable_testkit::TestDb;

/// A running server and what it runs on.
pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    pub db: TestDb,
    _objects: tempdir::TempDir,
}

/// A configuration as `vars` on top of an empty environment, bound to a free port.
pub fn config(vars: &[(&str, &str)]) -> Config {
    let mut pairs: Vec<(String, String)> = vec![("BIND_ADDR".into(), "127.0.0.1:0".into())];
    pairs.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Config::parse(&Env::from_pairs(pairs)).expect("test config parses")
}

impl TestApp {
    /// A development-mode server.
    pub async fn spawn() -> TestApp {
        Self::spawn_with(config(&[])).await
    }

    /// A server with the given configuration.
    pub async fn spawn_with(config: Config) -> TestApp {
        let db = TestDb::new().await;
        let objects = tempdir::TempDir::new();
        let store = Arc::new(
            object_store::local::LocalFileSystem::new_with_prefix(objects.path())
                .expect("local store"),
        );
        let deps = Dependencies {
            pool: db.pool.clone(),
            objects: store,
        };
        let app = Application::build(config, deps).expect("server binds");
        let base = format!("http://127.0.0.1:{}", app.port());
        actix_web::rt::spawn(app.run_until_stopped());
        TestApp {
            base,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            db,
            _objects: objects,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

/// A minimal temporary directory, removed on drop.
pub mod tempdir {
    use std::path::{Path, PathBuf};

    pub struct TempDir(PathBuf);

    impl TempDir {
        pub fn new() -> TempDir {
            let p = std::env::temp_dir()
                .join(format!("defendable-it-{}", uuid::Uuid::new_v4().simple()));
            std::fs::create_dir_all(&p).expect("temp dir");
            TempDir(p)
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Asserts the headers every response must carry.
pub fn assert_security_headers(res: &reqwest::Response) {
    let h = res.headers();
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["referrer-policy"], "strict-origin-when-cross-origin");
    let pp = h["permissions-policy"].to_str().expect("ascii");
    for feature in ["camera=()", "microphone=()", "geolocation=()", "payment=()"] {
        assert!(pp.contains(feature), "{pp}");
    }
    assert!(!h["x-request-id"].is_empty());
}
