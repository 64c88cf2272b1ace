//! Verifying as a log client does (DESIGN §2b): check the evidence, then prove that the
//! checkpoint it rests on extends the newest one this machine verified for the same log, and
//! remember the newer one. A server that shows a rewritten or forked history — to anyone, at any
//! time after this machine saw it — fails here with exit code 4, naming both tree sizes.

use std::path::Path;

use defendable_ledger::bundle::{
    check_consistent, open_org_checkpoint, verify_bundle, verify_consistency_proof,
};
use defendable_ledger::note::open_checkpoint;
use defendable_ledger::{
    BodyFields, ConsistencyProof, OpenedCheckpoint, ProofBundle, ProofFailure, PublicKey,
    PublishedKeys, Vkeys,
};
use serde_json::{json, Value};

use crate::client::{encode, Api};
use crate::output::count;
use crate::trust::{decide, KeySource, TrustStore};
use crate::verify::{parse_evidence, verify_v1, verify_v2};
use crate::{Exit, Output};

/// What `verify` and `ledger watch` were told to trust.
#[derive(Debug, Clone, Default)]
pub struct TrustOptions {
    /// v1 public keys (`--key`), for v1 material.
    pub keys: Vec<String>,
    /// Verifier keys pinned out of band (`--vkey`, else the `vkeys` file).
    pub vkeys: Vec<String>,
    /// Accept a served key set that drops every pinned key (`--trust-new-keys`).
    pub trust_new_keys: bool,
}

/// `--vkey` values, else the lines of `vkeys` in the configuration directory.
pub fn out_of_band(flags: &[String]) -> Result<Vec<String>, Exit> {
    if !flags.is_empty() {
        return Ok(flags.to_vec());
    }
    let Some(path) = dirs::config_dir().map(|d| d.join("defendable").join("vkeys")) else {
        return Ok(Vec::new());
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_owned)
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Exit::io(&path, e)),
    }
}

/// The keys `api` publishes at `/ledger/keys`.
async fn served_keys(api: &Api) -> Result<PublishedKeys, Exit> {
    api.get_as("/ledger/keys").await
}

fn served_vkeys(listed: &PublishedKeys) -> Vec<String> {
    listed
        .keys
        .iter()
        .map(|k| k.vkey.clone())
        .filter(|v| !v.is_empty())
        .collect()
}

/// The trusted vkeys for `api`, and a notice for the user when trust changed.
async fn trusted(
    store: &TrustStore,
    api: &Api,
    opts: &TrustOptions,
    online: bool,
) -> Result<(Vkeys, Option<String>), Exit> {
    let out_of_band = out_of_band(&opts.vkeys)?;
    let served = if out_of_band.is_empty() && online {
        Some(served_vkeys(&served_keys(api).await?))
    } else {
        None
    };
    let (vkeys, source) = decide(
        store,
        api.base(),
        &out_of_band,
        served.as_deref(),
        opts.trust_new_keys,
        &mut crate::trust::confirm_on_terminal,
    )?;
    let keys = Vkeys::parse(&vkeys).map_err(|e| Exit::usage(e.to_string()))?;
    let notice = source.notice(api.base(), store);
    if source == KeySource::OutOfBand && keys.is_empty() {
        return Err(Exit::usage("--vkey needs a verifier key"));
    }
    Ok((keys, notice))
}

fn failed(f: ProofFailure) -> Exit {
    Exit::verify(format!("verification failed: {f}"))
}

/// A rollback: the server's tree is smaller than one this machine verified.
fn rolled_back(saved: u64, now: u64) -> Exit {
    failed(ProofFailure::Inconsistent {
        from: saved,
        to: now,
    })
}

/// What comparing with the saved checkpoint established.
enum Continuity {
    /// Nothing was saved for this log: the checkpoint is now the baseline.
    First,
    /// The saved checkpoint has the same size and root.
    Same(u64),
    /// A consistency proof from the saved size verified.
    Extends(u64),
    /// Could not be compared (offline, or no access): nothing saved.
    Unchecked(u64),
}

impl Continuity {
    fn describe(&self) -> String {
        match self {
            Continuity::First => "saved as this log's first checkpoint on this machine".into(),
            Continuity::Same(m) => format!("the same tree as the checkpoint of size {m} saved earlier"),
            Continuity::Extends(m) => format!("consistent with the checkpoint of size {m} saved earlier"),
            Continuity::Unchecked(m) => format!(
                "NOT compared with the checkpoint of size {m} saved earlier (offline or no access): verify the share link or run `defendable ledger watch` as a member"
            ),
        }
    }

    fn json(&self) -> Value {
        match self {
            Continuity::First => json!({"previous": null, "consistent": true}),
            Continuity::Same(m) | Continuity::Extends(m) => {
                json!({"previous": m, "consistent": true})
            }
            Continuity::Unchecked(m) => json!({"previous": m, "consistent": null}),
        }
    }
}

/// Verifies a share link as a log client does: the bundle's checkpoint is first proved
/// consistent with the newest checkpoint saved for its log (through the link's own consistency
/// route), then the receipt's inclusion in it is checked, and the checkpoint is saved.
pub async fn verify_share(base: &str, token: &str, opts: &TrustOptions) -> Result<Output, Exit> {
    let store = TrustStore::open()?;
    let api = Api::new(base, None)?;
    let (keys, notice) = trusted(&store, &api, opts, true).await?;
    let share = format!("/share/{}", encode(token));
    let mut bundle = fetch_bundle(&api, &format!("{share}/proof")).await?;
    let org = bundle
        .receipt
        .org()
        .ok_or_else(|| failed(ProofFailure::Shape("body.org is not a UUID".into())))?;
    let checkpoint = open_org_checkpoint(&bundle.checkpoint, org, &keys).map_err(failed)?;
    let continuity = match store.checkpoint(&checkpoint.head.origin, &keys)? {
        None => Continuity::First,
        Some(saved) => {
            let (m, n) = (saved.head.size, checkpoint.head.size);
            if m == n {
                check_consistent(&saved, &checkpoint, m, &[]).map_err(failed)?;
                Continuity::Same(m)
            } else if m > n {
                return Err(rolled_back(m, n));
            } else {
                let proof: ConsistencyProof = serde_json::from_value(
                    api.get(&format!("{share}/consistency?from={m}")).await?,
                )
                .map_err(|e| Exit::server(format!("the consistency proof is malformed: {e}")))?;
                let newest = verify_consistency_proof(&proof, &saved, &keys).map_err(failed)?;
                if newest.head.size != n {
                    // The log grew meanwhile: prove the receipt against the newest tree.
                    bundle =
                        fetch_bundle(&api, &format!("{share}/proof?size={}", newest.head.size))
                            .await?;
                }
                let proved = open_org_checkpoint(&bundle.checkpoint, org, &keys).map_err(failed)?;
                check_consistent(&newest, &proved, newest.head.size, &[]).map_err(failed)?;
                Continuity::Extends(m)
            }
        }
    };
    let verified = verify_bundle(&bundle, &keys).map_err(failed)?;
    finish(
        &store,
        verified.checkpoint.clone(),
        &continuity,
        notice,
        || {
            (
                format!("verified receipt seq {} ({})", verified.seq, verified.hash),
                json!({"receipts": 1, "head": verified.hash.to_hex(), "seq": verified.seq}),
            )
        },
    )
}

async fn fetch_bundle(api: &Api, path: &str) -> Result<ProofBundle, Exit> {
    serde_json::from_value(api.get(path).await?)
        .map_err(|e| Exit::verify(format!("verification failed: not a v2 proof bundle: {e}")))
}

/// Saves a checkpoint that extends what was saved, and renders the outcome.
fn finish(
    store: &TrustStore,
    checkpoint: OpenedCheckpoint,
    continuity: &Continuity,
    notice: Option<String>,
    what: impl FnOnce() -> (String, Value),
) -> Result<Output, Exit> {
    if !matches!(continuity, Continuity::Unchecked(_) | Continuity::Same(_)) {
        store.save_checkpoint(&checkpoint)?;
    }
    if let Some(n) = &notice {
        eprintln!("{n}");
    }
    let (human, mut json) = what();
    json["ok"] = json!(true);
    json["checkpoint"] = json!({
        "origin": checkpoint.head.origin,
        "size": checkpoint.head.size,
        "root": checkpoint.head.root.to_string(),
        "signed_by": format!("{}+{:08x}", checkpoint.signed_by, checkpoint.key_id),
    });
    json["continuity"] = continuity.json();
    Ok(Output::new(
        json,
        format!(
            "{human}; in the tree of size {} of {}, signed by {}+{:08x}; {}",
            checkpoint.head.size,
            checkpoint.head.origin,
            checkpoint.signed_by,
            checkpoint.key_id,
            continuity.describe()
        ),
    ))
}

/// Verifies a file (projection, v1 or v2 bundle, tlog-proof file, v1 or v2 export). v2 material
/// is compared with the saved checkpoint of its log; proving consistency between different sizes
/// needs member access to `member` (the CLI's configured API), else it is reported unchecked.
pub async fn verify_file(
    path: &Path,
    base: &str,
    member: Option<(&Api, bool)>,
    opts: &TrustOptions,
) -> Result<Output, Exit> {
    let text = std::fs::read_to_string(path).map_err(|e| Exit::io(path, e))?;
    let evidence = parse_evidence(&text).map_err(failed)?;
    let api = Api::new(base, None)?;
    if !evidence.is_v2() {
        return verify_v1_file(&api, &evidence, opts).await;
    }
    let store = TrustStore::open()?;
    // Offline is fine when keys are pinned: only a first use needs the server's list.
    let online = out_of_band(&opts.vkeys)?.is_empty() && store.pinned(base)?.is_empty();
    let (keys, notice) = trusted(&store, &api, opts, online).await?;
    let verified = verify_v2(&evidence, &keys).map_err(failed)?;
    let checkpoint = verified
        .checkpoint
        .clone()
        .ok_or_else(|| Exit::verify("no checkpoint"))?;
    let continuity = match store.checkpoint(&checkpoint.head.origin, &keys)? {
        None => Continuity::First,
        Some(saved) if saved.head.size == checkpoint.head.size => {
            check_consistent(&saved, &checkpoint, saved.head.size, &[]).map_err(failed)?;
            Continuity::Same(saved.head.size)
        }
        Some(saved) => match member {
            Some((api, true)) => {
                let (older, newer) = if saved.head.size < checkpoint.head.size {
                    (&saved, &checkpoint)
                } else {
                    (&checkpoint, &saved)
                };
                let org = older.org().map(|o| o.to_string()).unwrap_or_default();
                let proof = member_consistency(api, &org, older.head.size, newer.head.size).await?;
                let signed = verify_consistency_proof(&proof, older, &keys).map_err(failed)?;
                check_consistent(newer, &signed, newer.head.size, &[]).map_err(failed)?;
                if saved.head.size > checkpoint.head.size {
                    // An older file than what was saved: it checks, and the saved one stays.
                    Continuity::Same(saved.head.size)
                } else {
                    Continuity::Extends(saved.head.size)
                }
            }
            _ => Continuity::Unchecked(saved.head.size),
        },
    };
    let receipts = verified.receipts;
    finish(&store, checkpoint, &continuity, notice, || {
        (
            format!(
                "verified {}; head {}",
                count(receipts, "receipt"),
                verified.head
            ),
            json!({"receipts": receipts, "head": verified.head}),
        )
    })
}

async fn member_consistency(
    api: &Api,
    org: &str,
    from: u64,
    to: u64,
) -> Result<ConsistencyProof, Exit> {
    serde_json::from_value(
        api.get(&format!(
            "/orgs/{}/ledger/consistency?from={from}&to={to}",
            encode(org)
        ))
        .await?,
    )
    .map_err(|e| Exit::server(format!("the consistency proof is malformed: {e}")))
}

async fn verify_v1_file(
    api: &Api,
    evidence: &crate::Evidence,
    opts: &TrustOptions,
) -> Result<Output, Exit> {
    let needs_keys = !matches!(evidence, crate::Evidence::Projection(_));
    let public_keys: Vec<PublicKey> = if !opts.keys.is_empty() {
        opts.keys
            .iter()
            .map(|k| PublicKey::from_base64(k).map_err(|e| Exit::usage(format!("--key {k}: {e}"))))
            .collect::<Result<_, _>>()?
    } else if needs_keys {
        served_keys(api).await?.keys
    } else {
        Vec::new()
    };
    let verified = verify_v1(evidence, &public_keys).map_err(failed)?;
    let what = match evidence {
        crate::Evidence::Projection(_) => "receipt".to_owned(),
        _ => count(verified.receipts, "receipt"),
    };
    let signed = verified
        .signed_by
        .as_ref()
        .map(|k| format!(", checkpoint signed by key {k}"))
        .unwrap_or_default();
    Ok(Output::new(
        json!({
            "ok": true,
            "receipts": verified.receipts,
            "head": verified.head,
            "signed_by": verified.signed_by,
        }),
        format!("verified {what}; head {}{signed}", verified.head),
    ))
}

/// `ledger watch`: the organization's current checkpoint, proved consistent with the one saved
/// on the last run (for cron: exit 0 when consistent, 4 on a rewrite or rollback).
pub async fn watch(api: &Api, org: &str, opts: &TrustOptions) -> Result<Output, Exit> {
    let store = TrustStore::open()?;
    let (keys, notice) = trusted(&store, api, opts, true).await?;
    let res = api
        .send(
            reqwest::Method::GET,
            &format!("/orgs/{}/ledger/checkpoint", encode(org)),
            crate::client::Body::None,
            &[],
            false,
        )
        .await?;
    let note = res
        .text()
        .await
        .map_err(|e| Exit::server(format!("reading the checkpoint: {e}")))?;
    let current = open_checkpoint(&note, &keys)
        .map_err(|e| failed(ProofFailure::Checkpoint(e.to_string())))?;
    let org_id = current
        .org()
        .ok_or_else(|| {
            failed(ProofFailure::Checkpoint(format!(
                "origin {:?} is not an organization's log",
                current.head.origin
            )))
        })?
        .to_string();
    let continuity = match store.checkpoint(&current.head.origin, &keys)? {
        None => Continuity::First,
        Some(saved) => {
            let (m, n) = (saved.head.size, current.head.size);
            if m > n {
                return Err(rolled_back(m, n));
            }
            if m == n {
                check_consistent(&saved, &current, m, &[]).map_err(failed)?;
                Continuity::Same(m)
            } else {
                let proof = member_consistency(api, &org_id, m, n).await?;
                let signed = verify_consistency_proof(&proof, &saved, &keys).map_err(failed)?;
                check_consistent(&current, &signed, n, &[]).map_err(failed)?;
                Continuity::Extends(m)
            }
        }
    };
    finish(&store, current, &continuity, notice, || {
        (format!("the log of {org} verifies"), json!({"org": org_id}))
    })
}
