//! The CLI against a real server on a real PostgreSQL, driven as a user would drive it.

use object_store::ObjectStoreExt as _;
use serde_json::Value;

use crate::server::Server;

#[actix_web::test]
async fn sign_in_key_record_share_verify_export_and_catch_a_flipped_byte() {
    let s = Server::start().await;
    let anonymous = s.cli(&["whoami"], &[], None).await;
    assert_eq!(anonymous.code, 3, "{anonymous:?}");
    assert!(
        anonymous.stderr.contains("defendable login"),
        "{anonymous:?}"
    );

    let login = s.login("ada@example.com").await.ok();
    assert!(login.stdout.contains("signed in"), "{login:?}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(s.credentials())
            .expect("credentials saved")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let me = s.cli(&["whoami", "--json"], &[], None).await.ok().json();
    assert_eq!(me["user"]["email"], "ada@example.com");
    let org = me["memberships"][0]["org"]["slug"]
        .as_str()
        .expect("personal org")
        .to_owned();

    let created = s
        .cli(&["keys", "create", "--name", "ci", "--json"], &[], None)
        .await
        .ok()
        .json();
    let secret = created["secret"]
        .as_str()
        .expect("secret shown once")
        .to_owned();
    let listed = s.cli(&["keys", "list"], &[], None).await.ok();
    assert!(listed.stdout.contains("ci"), "{listed:?}");
    assert!(
        !listed.stdout.contains(&secret),
        "a listing never shows a secret"
    );

    // CI records with the key, which it gets from the environment.
    let key_env = [
        ("DEFENDABLE_TOKEN", secret.as_str()),
        ("DEFENDABLE_ORG", org.as_str()),
    ];
    let mut ids = Vec::new();
    for n in 0..3 {
        let r = s
            .cli(
                &[
                    "receipts", "record", "--kind", "run", "--public", "-", "--json",
                ],
                &key_env,
                Some(&format!(r#"{{"suite": "unit", "passed": {n}}}"#)),
            )
            .await
            .ok()
            .json();
        ids.push(r["receipt_id"].as_str().expect("id").to_owned());
    }
    let retry_args = [
        "receipts",
        "record",
        "--kind",
        "run",
        "--public",
        "-",
        "--idempotency-key",
        "build-42",
        "--json",
    ];
    let retry_body = Some(r#"{"suite": "retry"}"#);
    let first = s.cli(&retry_args, &key_env, retry_body).await.ok().json();
    let again = s.cli(&retry_args, &key_env, retry_body).await.ok().json();
    assert_eq!(
        first["receipt_id"], again["receipt_id"],
        "a retry records nothing new"
    );
    let unsafe_number = s
        .cli(
            &["receipts", "record", "--kind", "run", "--public", "-"],
            &key_env,
            Some(r#"{"rows": 12345678901234567890}"#),
        )
        .await;
    assert_eq!(unsafe_number.code, 2, "{unsafe_number:?}");
    assert!(
        unsafe_number.stderr.contains("unsafe_number"),
        "{unsafe_number:?}"
    );

    let page = s
        .cli(&["receipts", "list", "--json"], &[], None)
        .await
        .ok()
        .json();
    let kinds: Vec<&str> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|r| r["body"]["kind"].as_str())
        .collect();
    assert_eq!(kinds.iter().filter(|k| **k == "run").count(), 4, "{page}");

    // A key cannot share; the signed-in owner can.
    let by_key = s.cli(&["receipts", "share", &ids[1]], &key_env, None).await;
    assert_eq!(by_key.code, 3, "{by_key:?}");
    let share = s
        .cli(&["receipts", "share", &ids[1], "--json"], &[], None)
        .await
        .ok()
        .json();
    let url = share["url"].as_str().expect("url").to_owned();
    let checked = s.cli(&["verify", &url], &[], None).await.ok();
    assert!(checked.stdout.contains("verified receipt"), "{checked:?}");
    let bundle = s
        .cli(
            &[
                "verify",
                share["download_url"].as_str().expect("bundle url"),
            ],
            &[],
            None,
        )
        .await
        .ok();
    assert!(bundle.stdout.contains("verified receipt"), "{bundle:?}");

    s.cli(&["ledger", "verify"], &[], None).await.ok();
    let export = s.home.path().join("chain.jsonl");
    let export_arg = export.to_str().expect("utf8 path");
    let exported = s
        .cli(
            &["ledger", "export", "--out", export_arg, "--json"],
            &[],
            None,
        )
        .await
        .ok()
        .json();
    let count = exported["receipts"].as_u64().expect("count");
    assert!(count >= 4, "{exported}");
    let offline = s
        .cli(&["verify", export_arg, "--json"], &[], None)
        .await
        .ok()
        .json();
    assert_eq!(offline["receipts"].as_u64(), Some(count));

    // Flip one bit inside receipt seq 1's public part: verification names seq 1 and the hash.
    let text = std::fs::read_to_string(&export).expect("export");
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let line = lines
        .iter()
        .position(|l| serde_json::from_str::<Value>(l).expect("json")["body"]["seq"] == 1)
        .expect("seq 1");
    let at = lines[line].find("\"public\":{").expect("public") + "\"public\":{".len() + 1;
    let mut bytes = lines[line].clone().into_bytes();
    bytes[at] ^= 0x01;
    lines[line] = String::from_utf8(bytes).expect("still text");
    std::fs::write(&export, lines.join("\n") + "\n").expect("write");
    let tampered = s.cli(&["verify", export_arg], &[], None).await;
    assert_eq!(tampered.code, 4, "{tampered:?}");
    assert!(
        tampered.stderr.contains("receipt seq 1") && tampered.stderr.contains("hash"),
        "{tampered:?}"
    );

    let valid_key = s.cli(&["whoami"], &key_env, None).await.ok();
    assert!(valid_key.stdout.contains("API key"), "{valid_key:?}");
    let key_id = created["key"]["id"].as_str().expect("key id");
    s.cli(&["keys", "revoke", key_id], &[], None).await.ok();
    let revoked = s.cli(&["whoami"], &key_env, None).await;
    assert_eq!(revoked.code, 3, "{revoked:?}");
    assert!(revoked.stderr.contains("DEFENDABLE_TOKEN"), "{revoked:?}");

    s.cli(&["logout"], &[], None).await.ok();
    let after = s.cli(&["whoami"], &[], None).await;
    assert_eq!(after.code, 3, "{after:?}");
}

fn object(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

#[actix_web::test]
async fn an_interrupted_download_resumes_with_range_and_matches_blake3() {
    let s = Server::start().await;
    let bytes = object(6 * 1024 * 1024);
    s.publish("census", "raw/census.csv", bytes.clone()).await;
    s.login("dl@example.com").await.ok();
    let out = s.home.path().join("census.csv");
    let out_arg = out.to_str().expect("utf8 path");
    let part = s.home.path().join("census.csv.part");

    // The network breaks after 1 MiB and the user allowed no retry: the partial file stays.
    s.proxy.cut_next_transfer_after(1024 * 1024);
    let broken = s
        .cli(
            &[
                "datasets",
                "download",
                "census",
                "--out",
                out_arg,
                "--retries",
                "0",
            ],
            &[],
            None,
        )
        .await;
    assert_eq!(broken.code, 5, "{broken:?}");
    assert!(
        broken
            .stderr
            .contains("run the same command again to resume"),
        "{broken:?}"
    );
    assert!(!s.proxy.cut_pending(), "the transfer was cut");
    assert!(!out.exists(), "nothing under the final name");
    let kept = std::fs::metadata(&part).expect("partial kept").len();
    assert!(kept > 0 && kept < bytes.len() as u64, "kept {kept}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let saved = s.home.path().join("census.csv.part.json");
        let mode = std::fs::metadata(saved)
            .expect("grant saved")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the saved link is a credential");
    }

    // Run again: it resumes from where it stopped, on the same grant.
    let done = s
        .cli(
            &["datasets", "download", "census", "--out", out_arg, "--json"],
            &[],
            None,
        )
        .await
        .ok()
        .json();
    assert_eq!(done["resumed_from"].as_u64(), Some(kept), "{done}");
    assert!(s.proxy.sent().contains(&format!("range: bytes={kept}-")));
    let expected = blake3::hash(&bytes).to_hex().to_string();
    assert_eq!(done["blake3"], expected);
    assert_eq!(std::fs::read(&out).expect("final file"), bytes);
    assert!(!part.exists());
    let grants = s
        .cli(
            &["receipts", "list", "--kind", "dataset.download", "--json"],
            &[],
            None,
        )
        .await
        .ok()
        .json();
    assert_eq!(
        grants["items"].as_array().expect("items").len(),
        1,
        "a resume takes no new grant"
    );

    // Within one run the client resumes by itself.
    let again = s.home.path().join("again.csv");
    s.proxy.cut_next_transfer_after(2 * 1024 * 1024);
    let done = s
        .cli(
            &[
                "datasets",
                "download",
                "census",
                "--out",
                again.to_str().expect("utf8"),
                "--json",
            ],
            &[],
            None,
        )
        .await
        .ok()
        .json();
    assert!(!s.proxy.cut_pending());
    assert!(done["attempts"].as_u64().expect("attempts") >= 2, "{done}");
    assert_eq!(done["blake3"], expected);
    assert_eq!(std::fs::read(&again).expect("final file"), bytes);
}

#[actix_web::test]
async fn a_download_that_does_not_match_the_catalog_keeps_nothing() {
    let s = Server::start().await;
    let bytes = object(256 * 1024);
    s.publish("census", "raw/census.csv", bytes.clone()).await;
    // The stored object changes after the catalog recorded its digest.
    let mut altered = bytes.clone();
    altered[1000] ^= 0xff;
    s.objects
        .put(
            &object_store::path::Path::from("raw/census.csv"),
            altered.into(),
        )
        .await
        .expect("put");
    s.login("dl@example.com").await.ok();
    let out = s.home.path().join("census.csv");
    let run = s
        .cli(
            &[
                "datasets",
                "download",
                "census",
                "--out",
                out.to_str().expect("utf8"),
            ],
            &[],
            None,
        )
        .await;
    assert_eq!(run.code, 4, "{run:?}");
    assert!(run.stderr.contains("BLAKE3 mismatch"), "{run:?}");
    assert!(!out.exists());
    assert!(!s.home.path().join("census.csv.part").exists());
}
