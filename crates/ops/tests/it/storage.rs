//! `storage-check` against real S3-compatible servers on loopback: moto, which implements the
//! bucket versioning and lifecycle calls, and s3s-fs, which checks request signatures.

use std::process::Command;

use defendable_boot::ObjectStoreTarget;
use defendable_ops::storage::storage_check;
use defendable_testkit::files::TempDir;
use defendable_testkit::s3::{Moto, S3Server, ACCESS_KEY, SECRET_KEY};

const VERSIONING_ON: &str = r#"<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Status>Enabled</Status></VersioningConfiguration>"#;

/// The rules docs/protocols/backup-restore.md asks for, with `status` Enabled or Disabled.
fn lifecycle(status: &str) -> String {
    format!(
        r#"<LifecycleConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
<Rule><ID>noncurrent</ID><Filter><Prefix></Prefix></Filter><Status>{status}</Status>
<NoncurrentVersionExpiration><NoncurrentDays>90</NoncurrentDays></NoncurrentVersionExpiration></Rule>
<Rule><ID>uploads</ID><Filter><Prefix>raw/</Prefix></Filter><Status>{status}</Status>
<AbortIncompleteMultipartUpload><DaysAfterInitiation>7</DaysAfterInitiation></AbortIncompleteMultipartUpload></Rule>
</LifecycleConfiguration>"#
    )
}

fn target(builder: object_store::aws::AmazonS3Builder) -> ObjectStoreTarget {
    ObjectStoreTarget::S3(Box::new(builder))
}

/// Each finding as (name, ok).
fn verdicts(r: &defendable_ops::storage::StorageCheckReport) -> Vec<(&str, bool)> {
    r.findings.iter().map(|f| (f.name, f.ok)).collect()
}

#[tokio::test]
async fn the_storage_check_reads_versioning_and_lifecycle_from_the_bucket() {
    let moto = Moto::start();
    moto.put("datasets", "").await;

    let r = storage_check(&target(moto.builder("datasets")))
        .await
        .expect("check");
    assert!(!r.ok && r.supported);
    assert_eq!(
        verdicts(&r),
        [
            ("versioning", false),
            ("lifecycle: non-current versions expire", false),
            ("lifecycle: incomplete multipart uploads are aborted", false),
        ],
        "{}",
        r.human()
    );
    assert!(
        r.findings[0].detail.contains("never enabled"),
        "{}",
        r.human()
    );

    moto.put("datasets?versioning", VERSIONING_ON).await;
    moto.put("datasets?lifecycle", &lifecycle("Disabled")).await;
    let r = storage_check(&target(moto.builder("datasets")))
        .await
        .expect("check");
    assert_eq!(
        verdicts(&r),
        [
            ("versioning", true),
            ("lifecycle: non-current versions expire", false),
            ("lifecycle: incomplete multipart uploads are aborted", false),
        ],
        "a disabled rule does not count: {}",
        r.human()
    );

    moto.put("datasets?lifecycle", &lifecycle("Enabled")).await;
    let r = storage_check(&target(moto.builder("datasets")))
        .await
        .expect("check");
    assert!(r.ok, "{}", r.human());
    assert_eq!(
        r.findings[1].detail,
        "rule noncurrent (the whole bucket) after 90 days"
    );
    assert_eq!(
        r.findings[2].detail,
        "rule uploads (objects under raw/) after 7 days"
    );
}

/// The request is signed as the object store's own are: s3s-fs checks the signature, answers
/// the calls it does not implement as such, and refuses a wrong secret.
#[tokio::test]
async fn the_storage_check_signs_its_requests_like_the_object_store() {
    let s3 = S3Server::start("datasets");
    let r = storage_check(&target(s3.builder("datasets")))
        .await
        .expect("a signed request is accepted");
    assert!(!r.ok, "{}", r.human());
    for f in &r.findings {
        assert!(
            !f.detail.contains("Signature") && !f.detail.contains("AccessDenied"),
            "{}",
            r.human()
        );
    }

    let wrong = s3
        .builder("datasets")
        .with_secret_access_key("not-the-secret");
    let e = storage_check(&target(wrong))
        .await
        .expect_err("a wrong secret is refused");
    assert!(e.to_string().contains("was refused"), "{e}");
}

/// `defendable-ops storage-check` from the environment, as the timer runs it: a missing setting
/// fails in production and only warns in development.
#[tokio::test]
async fn storage_check_fails_in_production_only() {
    let moto = Moto::start();
    moto.put("vault", "").await;
    let data = TempDir::new();
    let run = |app_env: &str| {
        Command::new(env!("CARGO_BIN_EXE_defendable-ops"))
            .arg("storage-check")
            .env_clear()
            .env("APP_ENV", app_env)
            .env("DATA_DIR", data.path())
            .env("OBJECT_STORE_URL", "s3://vault")
            .env("AWS_ENDPOINT_URL", moto.endpoint())
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .env("AWS_REGION", "us-east-1")
            .output()
            .expect("defendable-ops runs")
    };
    let out = run("production");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("MISSING versioning"), "{stdout}");
    let out = run("development");
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("a production deployment would fail"));

    moto.put("vault?versioning", VERSIONING_ON).await;
    moto.put("vault?lifecycle", &lifecycle("Enabled")).await;
    let out = run("production");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(!stdout.contains("MISSING"), "{stdout}");
}

#[tokio::test]
async fn a_local_directory_has_nothing_to_check() {
    let dir = TempDir::new();
    let r = storage_check(&ObjectStoreTarget::Local(dir.path().to_owned()))
        .await
        .expect("check");
    assert!(r.ok && !r.supported && r.findings.is_empty());
    assert!(r.human().contains("snapshots"));
}
