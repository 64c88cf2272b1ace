//! The server binary's boot behaviour, driven as an operator would.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use defendable_testkit::TestDb;

fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_defendable-api"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    cmd
}

#[test]
fn production_with_an_empty_environment_refuses_and_lists_every_rule() {
    let out = bin().env("APP_ENV", "production").output().expect("runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for var in [
        "JWT_SECRET",
        "CORS_ORIGINS",
        "APP_BASE_URL",
        "API_BASE_URL",
        "SMTP_URL",
        "DATASET_DOWNLOAD_DAILY_LIMIT",
        "INTERNAL_API_KEY",
        "DATABASE_URL",
        "LEDGER_SIGNING_KEY",
        "LEDGER_NAME",
        "OBJECT_URL_SIGNING_KEY",
    ] {
        assert!(stderr.contains(var), "{var} missing from:\n{stderr}");
    }
}

#[test]
fn check_config_reports_and_exits_non_zero_on_failure() {
    let out = bin()
        .arg("check-config")
        .env("APP_ENV", "production")
        .env("JWT_SECRET", "hunter2-not-shown")
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("refusing to boot"), "{stdout}");
    assert!(
        stdout.contains("JWT_SECRET") && stdout.contains("fingerprint"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("hunter2"),
        "a secret was printed:\n{stdout}"
    );

    let ok = bin().arg("check-config").output().expect("runs");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
}

#[tokio::test]
async fn production_with_a_complete_environment_boots_and_is_ready() {
    let db = TestDb::new().await;
    let (socket, port) = defendable_testkit::listener();
    let data =
        std::env::temp_dir().join(format!("defendable-boot-{}", uuid::Uuid::new_v4().simple()));
    let mut command = bin();
    defendable_testkit::hand_down(&mut command, &socket);
    let mut child = command
        .envs([
            ("APP_ENV", "production"),
            ("BIND_ADDR", &format!("127.0.0.1:{port}")),
            ("DATA_DIR", data.to_str().expect("utf8")),
            ("DATABASE_URL", db.url()),
            ("APP_BASE_URL", "https://app.example.com"),
            ("API_BASE_URL", "https://api.example.com"),
            ("CORS_ORIGINS", "https://app.example.com"),
            ("JWT_SECRET", "q8Zr4TnV1xYpLk2Wm7Hc0Ds9Ga3Fb6Ej5Ru8Io1Pw4Qs"),
            (
                "INTERNAL_API_KEY",
                "Zx9Cv8Bn7Mq6Wr5Ty4Ui3Op2As1Df0GhJkLzXcVbNm",
            ),
            ("SMTP_URL", "smtp://127.0.0.1:2525"),
            ("DATASET_DOWNLOAD_DAILY_LIMIT", "100"),
            ("LEDGER_SIGNING_KEY", crate::helpers::signing_key()),
            ("LEDGER_NAME", "ledger.example.com"),
            (
                "OBJECT_URL_SIGNING_KEY",
                "Pq8Wn3Ez5Rt7Yu1Io4As6Df9Gh2Jk0LzXcVbNmQwEr",
            ),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawns");
    let http = crate::helpers::http();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = None;
    while Instant::now() < deadline {
        if let Ok(res) = http
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
        {
            last = Some(res.status().as_u16());
            if res.status() == 200 {
                assert_eq!(
                    res.headers()["strict-transport-security"],
                    "max-age=31536000; includeSubDomains"
                );
                break;
            }
        }
        if let Some(status) = child.try_wait().expect("wait") {
            panic!("server exited early with {status}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&data);
    assert_eq!(last, Some(200), "the production server never became ready");
}

#[test]
fn generate_signing_key_prints_the_vkey_to_publish() {
    let out = bin()
        .arg("generate-signing-key")
        .env("LEDGER_NAME", "ledger.example.com")
        .output()
        .expect("runs");
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let vkey = stdout
        .lines()
        .find_map(|l| l.strip_prefix("# vkey "))
        .and_then(|l| l.split(';').next())
        .expect("a vkey line");
    assert!(vkey.starts_with("ledger.example.com+"), "{stdout}");
    defendable_ledger::Vkeys::parse(&[vkey]).expect("a C2SP verifier key");
    let pkcs8 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("LEDGER_SIGNING_KEY="))
        .expect("the key");
    let key = defendable_ledger::SigningKey::from_pkcs8(pkcs8).expect("key");
    let name = defendable_ledger::LedgerName::parse("ledger.example.com").expect("name");
    assert_eq!(
        defendable_ledger::note::vkey(&name, &key.raw_public()),
        vkey
    );
}
