//! `defendable`: verify receipts without trusting the server.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use defendable_cli::{parse_evidence, verify, Evidence, EXIT_SERVER, EXIT_USAGE, EXIT_VERIFY};
use defendable_ledger::PublicKey;
use serde_json::{json, Value};

/// Defendable's command-line client.
#[derive(Parser, Debug)]
#[command(
    name = "defendable",
    version,
    about = "Verify Defendable receipts without trusting the server"
)]
struct Cli {
    /// API base URL.
    #[arg(
        long,
        env = "DEFENDABLE_API",
        global = true,
        default_value = "http://127.0.0.1:8080"
    )]
    api: String,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Verify a share link, a share token, or a file (projection, proof bundle or export) locally:
    /// hashes, ids, every link, and the checkpoint signature.
    Verify {
        /// A share URL (https://…/share/TOKEN), a bare share token, or a file path.
        target: String,
        /// A published Ed25519 public key (base64url); repeat for several. Without it the keys are
        /// fetched from the API's /ledger/keys.
        #[arg(long = "key")]
        keys: Vec<String>,
    },
}

/// A failure with its exit code and a message saying what to do.
struct Exit(i32, String);

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return finish(json, Err(Exit(EXIT_SERVER, format!("cannot start: {e}")))),
    };
    let result = match cli.command {
        Command::Verify { target, keys } => rt.block_on(run_verify(&cli.api, &target, &keys)),
    };
    finish(json, result)
}

#[allow(clippy::print_stdout)]
fn finish(json: bool, result: Result<Value, Exit>) -> ExitCode {
    match result {
        Ok(v) => {
            if json {
                println!("{v}");
            } else {
                println!("{}", v["message"].as_str().unwrap_or("ok"));
            }
            ExitCode::SUCCESS
        }
        Err(Exit(code, message)) => {
            if json {
                println!("{}", json!({ "ok": false, "error": message }));
            } else {
                eprintln!("defendable: {message}");
            }
            ExitCode::from(code as u8)
        }
    }
}

async fn fetch(url: &str) -> Result<String, Exit> {
    let res = reqwest::get(url).await.map_err(|e| {
        Exit(
            EXIT_SERVER,
            format!("cannot reach {url}: {e}; check --api or your network"),
        )
    })?;
    if !res.status().is_success() {
        return Err(Exit(
            EXIT_SERVER,
            format!(
                "{url} answered {}; is the link revoked or mistyped?",
                res.status()
            ),
        ));
    }
    res.text()
        .await
        .map_err(|e| Exit(EXIT_SERVER, format!("reading {url}: {e}")))
}

async fn run_verify(api: &str, target: &str, keys: &[String]) -> Result<Value, Exit> {
    let (text, base) = if let Some(i) = target.find("/share/") {
        let token = target[i + "/share/".len()..].trim_end_matches("/download");
        let base = target[..i].to_owned();
        (fetch(&format!("{base}/share/{token}")).await?, base)
    } else if std::path::Path::new(target).exists() {
        let text = std::fs::read_to_string(target)
            .map_err(|e| Exit(EXIT_USAGE, format!("cannot read {target}: {e}")))?;
        (text, api.trim_end_matches('/').to_owned())
    } else if target.len() == 43
        && target
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        let base = api.trim_end_matches('/').to_owned();
        (fetch(&format!("{base}/share/{target}")).await?, base)
    } else {
        return Err(Exit(
            EXIT_USAGE,
            format!("{target:?} is neither a share URL, a share token nor a file"),
        ));
    };
    let evidence = parse_evidence(&text).map_err(|e| Exit(EXIT_VERIFY, e.to_string()))?;
    let needs_keys = !matches!(evidence, Evidence::Projection(_));
    let public_keys: Vec<PublicKey> = if !keys.is_empty() {
        keys.iter()
            .map(|k| {
                PublicKey::from_base64(k).map_err(|e| Exit(EXIT_USAGE, format!("--key {k}: {e}")))
            })
            .collect::<Result<_, _>>()?
    } else if needs_keys {
        let listed: Value = serde_json::from_str(&fetch(&format!("{base}/ledger/keys")).await?)
            .map_err(|e| Exit(EXIT_SERVER, format!("the key list is not JSON: {e}")))?;
        serde_json::from_value(listed["keys"].clone())
            .map_err(|e| Exit(EXIT_SERVER, format!("the key list is malformed: {e}")))?
    } else {
        Vec::new()
    };
    let verified = verify(&evidence, &public_keys)
        .map_err(|f| Exit(EXIT_VERIFY, format!("verification failed: {f}")))?;
    let what = match evidence {
        Evidence::Projection(_) => "receipt".to_owned(),
        _ => format!("{} receipts", verified.receipts),
    };
    let signed = verified
        .signed_by
        .as_ref()
        .map(|k| format!(", checkpoint signed by key {k}"))
        .unwrap_or_default();
    Ok(json!({
        "ok": true,
        "receipts": verified.receipts,
        "head": verified.head,
        "signed_by": verified.signed_by,
        "message": format!("verified {what}; head {}{signed}", verified.head),
    }))
}
