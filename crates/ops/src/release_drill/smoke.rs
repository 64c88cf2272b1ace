//! The smoke suite the drill runs through the release's own CLI: sign-in by mail, a receipt
//! and its share link, a dataset grant; and the read-only part the previous release must pass
//! on the migrated database.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use super::process::{command, run};
use super::{DrillEnv, Steps, SMOKE_DATASET, SMOKE_EMAIL, WAIT};

/// What the new release's smoke suite left for the read-only checks.
pub(super) struct Smoke {
    receipt_id: String,
    share_url: String,
}

pub(super) async fn new_release_smoke(
    dir: &Path,
    env: &DrillEnv,
    steps: &mut Steps,
) -> Option<Smoke> {
    let cli = dir.join("defendable");
    let signed_in = sign_in(&cli, env).await;
    steps.result(
        "sign-in",
        signed_in,
        &format!("{SMOKE_EMAIL} signed in through the captured mail with `defendable login`"),
    )?;
    let recorded = run(
        &cli,
        &[
            "--json",
            "receipts",
            "record",
            "--kind",
            "release_drill.smoke",
            "--public",
            "-",
        ],
        &env.cli_vars(),
        Some(r#"{"smoke": "release drill"}"#),
    )
    .await
    .and_then(|out| field(&out, "receipt_id"));
    let receipt_id = steps.result(
        "record a receipt",
        recorded,
        "`defendable receipts record` answered with a receipt",
    )?;
    let shared = run(
        &cli,
        &["--json", "receipts", "share", &receipt_id],
        &env.cli_vars(),
        None,
    )
    .await
    .and_then(|out| field(&out, "url"));
    let share_url = steps.result(
        "share it",
        shared,
        "`defendable receipts share` made a link",
    )?;
    let smoke = Smoke {
        receipt_id,
        share_url,
    };
    read_only_smoke(dir, env, &smoke, "", steps).await;
    let grant = dataset_grant(&cli, env).await;
    steps.result(
        "dataset grant",
        grant,
        "a dataset published for the drill downloaded under quota and matched its BLAKE3",
    );
    Some(smoke)
}

/// The checks that change nothing: what the previous release must still pass after the new
/// release's migrations.
pub(super) async fn read_only_smoke(
    dir: &Path,
    env: &DrillEnv,
    smoke: &Smoke,
    prefix: &str,
    steps: &mut Steps,
) {
    let cli = dir.join("defendable");
    let ready = env.http.get(format!("{}/readyz", env.base)).send().await;
    steps.check(
        &format!("{prefix}readyz"),
        ready.as_ref().is_ok_and(|r| r.status() == 200),
        match &ready {
            Ok(r) => format!("/readyz answered {}", r.status()),
            Err(e) => e.to_string(),
        },
    );
    let listed = run(&cli, &["--json", "receipts", "list"], &env.cli_vars(), None)
        .await
        .and_then(|out| {
            out.contains(&smoke.receipt_id)
                .then_some(())
                .ok_or_else(|| format!("the list does not hold {}", smoke.receipt_id))
        });
    steps.result(
        &format!("{prefix}receipts list"),
        listed,
        "the smoke receipt is listed",
    );
    let verified = run(
        &cli,
        &["verify", &smoke.share_url, "--vkey", &env.ledger_vkey],
        &env.cli_vars(),
        None,
    )
    .await;
    steps.result(
        &format!("{prefix}verify the share offline"),
        verified.map(drop),
        "`defendable verify` checked the bundle against the drill's pinned key",
    );
}

/// `defendable login` with the link from the captured mail pasted at its prompt.
async fn sign_in(cli: &Path, env: &DrillEnv) -> std::result::Result<(), String> {
    let mut child = command(cli, &["login", "--email", SMOKE_EMAIL], &env.cli_vars())
        .stdin(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{}: {e}", cli.display()))?;
    let deadline = Instant::now() + WAIT;
    let link = loop {
        if let Some(link) = env.smtp.link_to(SMOKE_EMAIL) {
            break link;
        }
        if Instant::now() > deadline {
            let _ = child.kill().await;
            return Err("no sign-in mail reached the capture server".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(format!("{link}\n").as_bytes())
            .await
            .map_err(|e| e.to_string())?;
    }
    let out = tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .map_err(|_| "defendable login did not finish".to_owned())?
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "defendable login exited {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Publishes a small dataset for the drill and downloads it through the CLI (a grant under the
/// daily quota, a signed object URL, the BLAKE3 check).
async fn dataset_grant(cli: &Path, env: &DrillEnv) -> std::result::Result<(), String> {
    let bytes = b"release drill,ok\n".repeat(64);
    let object = env.objects.join("drill/smoke.csv");
    std::fs::create_dir_all(object.parent().unwrap_or(&env.objects)).map_err(|e| e.to_string())?;
    std::fs::write(&object, &bytes).map_err(|e| e.to_string())?;
    let res = env
        .http
        .post(format!("{}/internal/datasets", env.base))
        .header("x-internal-key", &env.internal_key)
        .json(&json!({
            "slug": SMOKE_DATASET, "title": "Release drill", "description": "Published by a release drill",
            "version": "1", "license": "CC0-1.0", "media_type": "text/csv", "object_key": "drill/smoke.csv"
        }))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if res.status() != 201 {
        return Err(format!(
            "publishing the drill dataset answered {}",
            res.status()
        ));
    }
    let out = env.work.join("smoke-download.csv");
    let out_str = out.to_string_lossy().into_owned();
    run(
        cli,
        &["datasets", "download", SMOKE_DATASET, "--out", &out_str],
        &env.cli_vars(),
        None,
    )
    .await?;
    let got = std::fs::read(&out).map_err(|e| e.to_string())?;
    if got != bytes {
        return Err("the downloaded bytes differ from the published ones".into());
    }
    Ok(())
}

/// The value of `name` in the CLI's one-line JSON output.
fn field(out: &str, name: &str) -> std::result::Result<String, String> {
    let v: Value = serde_json::from_str(out.trim()).map_err(|e| format!("{e}: {out}"))?;
    v[name]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("no {name} in {out}"))
}
