//! `cargo xtask packet`: the evidence packet an enterprise reviewer asks for, built from the
//! live deployment and the repository, with a manifest of every file's SHA-256.

use std::path::{Path, PathBuf};

use defendable_config::{inventory, Env};
use serde_json::{json, Value};

use crate::{now_rfc3339, sha256_file, Deployment, OpsError, Result};

/// What to build.
#[derive(Debug, Clone)]
pub struct PacketOptions {
    /// The directory to write (created; must not exist or be empty).
    pub out: PathBuf,
    /// The live API's base URL (OpenAPI document and response headers come from it).
    pub api: String,
    /// The repository root (architecture, docs, edge rules, CI summary).
    pub repo: PathBuf,
}

/// A built packet.
#[derive(Debug, Clone)]
pub struct Packet {
    /// Its directory.
    pub dir: PathBuf,
    /// Every file and its SHA-256.
    pub files: Vec<(String, String)>,
    /// What is missing or worth a reviewer's attention.
    pub notes: Vec<String>,
}

/// The repository documents copied into the packet, by path.
const DOCUMENTS: &[&str] = &[
    "ARCHITECTURE.md",
    "docs/security.md",
    "docs/soc2-control-map.md",
    "docs/receipts.md",
    "docs/sso-roadmap.md",
    "docs/protocols/backup-restore.md",
    "docs/protocols/secret-rotation.md",
    "docs/runbooks/incident.md",
    "docs/rate-limits.md",
    "docs/legal/privacy.md",
    "docs/legal/dpa.md",
    "docs/legal/terms.md",
    "deploy/prometheus/alerts.yml",
];

fn write(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| OpsError::io(parent, e))?;
    }
    std::fs::write(&path, bytes).map_err(|e| OpsError::io(&path, e))
}

fn json_bytes(v: &Value) -> Vec<u8> {
    let mut s = serde_json::to_vec_pretty(v).unwrap_or_default();
    s.push(b'\n');
    s
}

/// Builds the packet. `env` is the environment the deployment was configured from (for the
/// redacted inventory).
pub async fn packet(dep: &Deployment, env: &Env, opts: &PacketOptions) -> Result<Packet> {
    let dir = &opts.out;
    if dir.exists()
        && std::fs::read_dir(dir)
            .map_err(|e| OpsError::io(dir, e))?
            .next()
            .is_some()
    {
        return Err(OpsError::Setup(format!(
            "{} is not empty; choose a new directory",
            dir.display()
        )));
    }
    std::fs::create_dir_all(dir).map_err(|e| OpsError::io(dir, e))?;
    let mut notes = Vec::new();

    for doc in DOCUMENTS {
        match std::fs::read(opts.repo.join(doc)) {
            Ok(bytes) => write(dir, &format!("documents/{doc}"), &bytes)?,
            Err(e) => notes.push(format!("{doc} is missing from the repository: {e}")),
        }
    }
    let edge = opts.repo.join("deploy/cloudflare");
    let mut rules: Vec<PathBuf> = std::fs::read_dir(&edge)
        .map_err(|e| OpsError::io(&edge, e))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    rules.sort();
    for rule in rules {
        let bytes = std::fs::read(&rule).map_err(|e| OpsError::io(&rule, e))?;
        let name = rule
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        write(dir, &format!("edge/cloudflare/{name}"), &bytes)?;
    }

    let rows: Vec<Value> = inventory(env)
        .into_iter()
        .map(|r| json!({"name": r.name, "set": r.set, "secret": r.secret, "value": r.value, "fingerprint": r.fingerprint}))
        .collect();
    write(
        dir,
        "env-inventory.json",
        &json_bytes(&json!({"variables": rows})),
    )?;

    defendable_store::install_crypto_provider();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| OpsError::Http(e.to_string()))?;
    let api = opts.api.trim_end_matches('/');
    let get = |path: &str| {
        let url = format!("{api}{path}");
        let req = http.get(url.clone());
        async move {
            req.send().await.map_err(|e| {
                OpsError::Http(format!(
                    "{url}: {e}; start the server (cargo xtask dev) or pass --api"
                ))
            })
        }
    };
    let openapi = get("/openapi.json").await?;
    let openapi = openapi
        .bytes()
        .await
        .map_err(|e| OpsError::Http(e.to_string()))?;
    write(dir, "openapi.json", &openapi)?;
    let health = get("/healthz").await?;
    let mut headers: Vec<String> = health
        .headers()
        .iter()
        .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap_or("(binary)")))
        .filter(|h| !h.starts_with("date:") && !h.starts_with("x-request-id:"))
        .collect();
    headers.sort();
    write(
        dir,
        "security-headers.txt",
        format!(
            "GET {api}/healthz -> {}\n{}\n",
            health.status(),
            headers.join("\n")
        )
        .as_bytes(),
    )?;

    let client = dep.pool.get().await?;
    let applied = client
        .query(
            "SELECT version, name, applied_on, checksum FROM refinery_schema_history ORDER BY version",
            &[],
        )
        .await?;
    let migrations: Vec<Value> = defendable_store::embedded_migrations()
        .into_iter()
        .map(|(version, name, checksum)| {
            let row = applied
                .iter()
                .find(|r| i64::from(r.get::<_, i32>(0)) == version);
            json!({
                "version": version,
                "name": name,
                "checksum": checksum,
                "applied_on": row.map(|r| r.get::<_, String>(2)),
                "applied_checksum": row.map(|r| r.get::<_, String>(3)),
                "matches": row.is_some_and(|r| r.get::<_, String>(3) == checksum),
            })
        })
        .collect();
    write(
        dir,
        "migrations.json",
        &json_bytes(&json!({"migrations": migrations})),
    )?;

    match std::fs::read(opts.repo.join("target/ci-summary.json")) {
        Ok(bytes) => write(dir, "ci-summary.json", &bytes)?,
        Err(_) => notes.push(
            "no CI summary on this machine (target/ci-summary.json): run `cargo xtask test` first"
                .into(),
        ),
    }

    for (kind, file, how) in [
        (
            "restore_drill",
            "restore-drill.json",
            "cargo xtask restore-drill",
        ),
        (
            "release",
            "release-receipt.json",
            "cargo xtask release-receipt",
        ),
        (
            "release_drill",
            "release-drill.json",
            "cargo xtask release-drill",
        ),
    ] {
        match latest_of(dep, kind).await? {
            Some(evidence) => write(dir, file, &json_bytes(&evidence))?,
            None => notes.push(format!(
                "no {kind} receipt in the operator organization's chain: run `{how}`"
            )),
        }
    }

    let commit = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(&opts.repo)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    let mut readme = format!(
        "Defendable evidence packet\ncreated: {}\ncommit: {}\napi: {api}\n\n\
         documents/      architecture, security, SOC 2 control map, protocols, runbook, legal placeholders\n\
         edge/           Cloudflare WAF and rate-limit rules as deployed (generated from the declared limits)\n\
         env-inventory.json  every environment variable: set or not; secrets only as fingerprints\n\
         openapi.json    the live API's OpenAPI document\n\
         security-headers.txt  the headers of a live response\n\
         migrations.json the schema history with checksums, embedded and applied\n\
         ci-summary.json the latest test run on this machine\n\
         restore-drill.json  the latest restore drill receipt, its chain verification and a signed checkpoint\n\
         manifest.json   SHA-256 of every file above\n",
        now_rfc3339(),
        commit.as_deref().unwrap_or("unknown")
    );
    if !notes.is_empty() {
        readme.push_str("\nNotes:\n");
        for n in &notes {
            readme.push_str(&format!("- {n}\n"));
        }
    }
    write(dir, "README.txt", readme.as_bytes())?;

    let mut files = Vec::new();
    collect(dir, dir, &mut files)?;
    files.sort();
    let listed: Vec<Value> = files
        .iter()
        .map(|(p, h)| json!({"path": p, "sha256": h}))
        .collect();
    write(
        dir,
        "manifest.json",
        &json_bytes(
            &json!({"created_at": now_rfc3339(), "commit": commit, "files": listed, "notes": notes}),
        ),
    )?;
    Ok(Packet {
        dir: dir.clone(),
        files,
        notes,
    })
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) -> Result<()> {
    for entry in std::fs::read_dir(dir)
        .map_err(|e| OpsError::io(dir, e))?
        .flatten()
    {
        let path = entry.path();
        if path.is_dir() {
            collect(root, &path, out)?;
        } else {
            let rel = path
                .strip_prefix(root)
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            out.push((rel, sha256_file(&path)?));
        }
    }
    Ok(())
}

/// The latest receipt of `kind` in the operator organization's chain as a v2 proof bundle (its
/// projection, inclusion path and a signed checkpoint of the operator organization's tree) that
/// `defendable verify` checks offline, with the published keys and the server-side
/// verification of the whole log.
async fn latest_of(dep: &Deployment, kind: &str) -> Result<Option<Value>> {
    let (org, slug) = match dep.operator_org().await {
        Ok(o) => o,
        Err(OpsError::Setup(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    let client = dep.pool.get().await?;
    let Some(latest) = client
        .query_opt(
            "SELECT receipt_id FROM receipts WHERE org_id = $1 AND kind = $2 ORDER BY seq DESC LIMIT 1",
            &[&org, &kind],
        )
        .await?
    else {
        return Ok(None);
    };
    let id: String = latest.get(0);
    drop(client);
    let bundle = bundle_of(dep, org, &id).await?;
    let client = dep.pool.get().await?;
    let chain = defendable_ledger::store::verify_org(&client, org).await?;
    Ok(Some(json!({
        "operator_org": slug,
        "v": bundle.v,
        "receipt": bundle.receipt,
        "index": bundle.index,
        "inclusion": bundle.inclusion,
        "checkpoint": bundle.checkpoint,
        "published_keys": dep.published_keys()?,
        "chain_verification": {
            "valid": chain.failure.is_none(),
            "checked": chain.checked,
            "head": chain.head.to_hex(),
            "tree_size": chain.tree_size,
            "failure": chain.failure.as_ref().map(|f| json!({"seq": f.seq, "reason": f.reason.to_string()})),
        },
    })))
}

/// The v2 proof bundle of receipt `id` of `org`, against the current tree.
pub async fn bundle_of(
    dep: &Deployment,
    org: uuid::Uuid,
    id: &str,
) -> Result<defendable_ledger::ProofBundle> {
    let client = dep.pool.get().await?;
    let receipt = defendable_ledger::store::get(&client, org, id)
        .await?
        .ok_or_else(|| OpsError::Database(format!("receipt {id} is not in the chain")))?;
    Ok(defendable_ledger::store::proof_bundle(&client, &dep.log_signer()?, &receipt, None).await?)
}
