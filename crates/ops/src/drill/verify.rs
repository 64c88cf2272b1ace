//! The restored copy checked against the manifest, step by step: counts, heads, every chain
//! link by link, the signed checkpoints and a sample of objects re-hashed.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use defendable_datasets::ObjectKey;
use defendable_ledger::checkpoint::verify_checkpoint;
use futures_util::StreamExt;
use uuid::Uuid;

use super::isolated::restore;
use super::{tree_roots, Drill};
use crate::manifest::{self, Manifest};
use crate::postgres::tool_error;
use crate::{Deployment, Result};

/// Restores the dump into `url`, migrates it and checks it against the manifest, step by step
/// (each step a check in `drill`; a failed restore ends the drill's checks there).
#[allow(clippy::too_many_arguments)]
pub(super) async fn verify_restored(
    dep: &Deployment,
    manifest: &Manifest,
    dump: &Path,
    identity: &age::x25519::Identity,
    keys: &[defendable_ledger::PublicKey],
    url: &str,
    sample: usize,
    drill: &mut Drill,
) -> Result<()> {
    let t = Instant::now();
    let (dump, identity, target) = (dump.to_owned(), identity.clone(), url.to_owned());
    let restored = tokio::task::spawn_blocking(move || restore(&dump, &identity, &target))
        .await
        .map_err(|e| tool_error("pg_restore", e))?;
    drill.time("decrypt_and_restore", t);
    if let Err(e) = restored {
        drill.check("restore", false, e.to_string());
        return Ok(());
    }
    drill.check("restore", true, "decrypted and restored with pg_restore");

    let pool = defendable_store::pool(url, 4)?;
    let t = Instant::now();
    defendable_store::migrate(&pool).await?;
    let version = defendable_store::schema_version(&pool.get().await?).await?;
    drill.time("migrate", t);
    drill.check(
        "migrations",
        true,
        format!(
            "backup at schema {}, now at {}",
            manifest.schema_version,
            version.unwrap_or(0)
        ),
    );

    let verify_started = Instant::now();
    let client = pool.get().await?;
    let (counts, chains) = manifest::snapshot(&client).await?;
    check_counts(manifest, &counts, drill);
    drill.counts = counts;
    let slugs: HashMap<Uuid, String> = client
        .query("SELECT id, slug FROM orgs", &[])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let name_of = |org: &Uuid| match slugs.get(org) {
        Some(s) => format!("org {s} ({org})"),
        None => format!("org {org}"),
    };
    check_heads(manifest, &chains, &name_of, drill);
    verify_chains(&pool, manifest, &name_of, drill).await?;
    check_checkpoints(&client, manifest, keys, &name_of, drill).await?;
    tree_roots(dep, manifest, &client, &name_of, drill).await?;
    drill.time("verify", verify_started);
    check_objects(dep, &client, sample, drill).await
}

/// The restored table counts against the manifest's.
fn check_counts(manifest: &Manifest, counts: &manifest::Counts, drill: &mut Drill) {
    let want = &manifest.counts;
    let mut diffs = Vec::new();
    for (name, got, expected) in [
        ("users", counts.users, want.users),
        ("orgs", counts.orgs, want.orgs),
        ("memberships", counts.memberships, want.memberships),
        ("receipts", counts.receipts, want.receipts),
        (
            "dataset_versions",
            counts.dataset_versions,
            want.dataset_versions,
        ),
    ] {
        if got != expected {
            diffs.push(format!("{name}: {got}, manifest {expected}"));
        }
    }
    drill.check(
        "counts",
        diffs.is_empty(),
        if diffs.is_empty() {
            format!(
                "{} users, {} orgs, {} memberships, {} receipts, {} dataset versions",
                counts.users,
                counts.orgs,
                counts.memberships,
                counts.receipts,
                counts.dataset_versions
            )
        } else {
            diffs.join("; ")
        },
    );
}

/// Each restored chain ends where the manifest says (receipts, head seq and hash), and no chain
/// is missing or extra.
fn check_heads(
    manifest: &Manifest,
    chains: &[manifest::Chain],
    name_of: &dyn Fn(&Uuid) -> String,
    drill: &mut Drill,
) {
    let restored: HashMap<Uuid, &manifest::Chain> = chains.iter().map(|c| (c.org, c)).collect();
    let mut head_diffs = Vec::new();
    for c in &manifest.chains {
        match restored.get(&c.org) {
            None => head_diffs.push(format!("{}: chain missing", name_of(&c.org))),
            Some(r)
                if r.receipts != c.receipts
                    || r.head_seq != c.head_seq
                    || r.head_hash != c.head_hash =>
            {
                head_diffs.push(format!(
                    "{}: {} receipts ending at seq {} {}, manifest {} ending at seq {} {}",
                    name_of(&c.org),
                    r.receipts,
                    r.head_seq,
                    r.head_hash,
                    c.receipts,
                    c.head_seq,
                    c.head_hash
                ))
            }
            Some(_) => {}
        }
    }
    if chains.len() != manifest.chains.len() {
        head_diffs.push(format!(
            "{} chains restored, manifest lists {}",
            chains.len(),
            manifest.chains.len()
        ));
    }
    drill.check(
        "chain heads",
        head_diffs.is_empty(),
        if head_diffs.is_empty() {
            format!(
                "{} chains end at the manifest's heads",
                manifest.chains.len()
            )
        } else {
            head_diffs.join("; ")
        },
    );
}

/// Every link of every chain, four connections at a time.
async fn verify_chains(
    pool: &deadpool_postgres::Pool,
    manifest: &Manifest,
    name_of: &dyn Fn(&Uuid) -> String,
    drill: &mut Drill,
) -> Result<()> {
    let t = Instant::now();
    let reports: Vec<Result<defendable_ledger::store::ChainReport>> =
        futures_util::stream::iter(manifest.chains.iter().map(|c| c.org))
            .map(|org| {
                let pool = pool.clone();
                async move {
                    let client = pool.get().await?;
                    Ok(defendable_ledger::store::verify_org(&client, org).await?)
                }
            })
            .buffer_unordered(4)
            .collect()
            .await;
    let mut broken = Vec::new();
    let mut links = 0u64;
    for r in reports {
        let r = r?;
        links += r.checked;
        if let Some(f) = &r.failure {
            broken.push((r.org, f.seq, f.reason.to_string()));
        }
    }
    broken.sort();
    drill.chains = manifest.chains.len();
    drill.time("verify_chains", t);
    drill.check(
        "chains",
        broken.is_empty(),
        if broken.is_empty() {
            format!(
                "{} chains, {links} receipts verified link by link",
                manifest.chains.len()
            )
        } else {
            broken
                .iter()
                .map(|(org, seq, reason)| format!("{}: receipt seq {seq}: {reason}", name_of(org)))
                .collect::<Vec<_>>()
                .join("; ")
        },
    );

    Ok(())
}

/// Each signed checkpoint of the manifest verifies with the published keys and names a restored
/// receipt with its hash.
async fn check_checkpoints(
    client: &impl defendable_store::GenericClient,
    manifest: &Manifest,
    keys: &[defendable_ledger::PublicKey],
    name_of: &dyn Fn(&Uuid) -> String,
    drill: &mut Drill,
) -> Result<()> {
    let mut bad = Vec::new();
    for signed in &manifest.checkpoints {
        let cp = &signed.checkpoint;
        let Ok(org_id) = cp.org.parse::<Uuid>() else {
            bad.push(format!(
                "a checkpoint names {:?}, not an organization id",
                cp.org
            ));
            continue;
        };
        let org = name_of(&org_id);
        if let Err(e) = verify_checkpoint(signed, keys) {
            bad.push(format!("{org}: {e}"));
            continue;
        }
        let row = client
            .query_opt(
                "SELECT hash FROM receipts WHERE org_id = $1 AND seq = $2",
                &[&org_id, &cp.seq],
            )
            .await?;
        match row.map(|r| r.get::<_, String>(0)) {
            Some(h) if h == cp.head => {}
            Some(h) => bad.push(format!(
                "{org}: checkpoint head at seq {} is {}, restored receipt hash is {h}",
                cp.seq, cp.head
            )),
            None => bad.push(format!("{org}: checkpoint seq {} is not restored", cp.seq)),
        }
    }
    drill.check(
        "checkpoints",
        bad.is_empty(),
        if bad.is_empty() {
            format!(
                "{} signed checkpoints verify with the published keys and match the restored heads",
                manifest.checkpoints.len()
            )
        } else {
            bad.join("; ")
        },
    );
    Ok(())
}

/// A random sample of the catalog's objects re-hash to their recorded BLAKE3.
async fn check_objects(
    dep: &Deployment,
    client: &impl defendable_store::GenericClient,
    sample: usize,
    drill: &mut Drill,
) -> Result<()> {
    let t = Instant::now();
    let rows = client
        .query(
            "SELECT slug, version, object_key, blake3 FROM dataset_versions ORDER BY random() LIMIT $1",
            &[&(sample as i64)],
        )
        .await?;
    let mut mismatched = Vec::new();
    for row in &rows {
        let (slug, version, key, want): (String, String, String, String) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        let got = match ObjectKey::parse(&key) {
            Ok(k) => defendable_datasets::objects::digest(dep.objects.as_ref(), &k)
                .await
                .map(|(_, d)| d.to_hex())
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match got {
            Ok(d) if d == want => {}
            Ok(d) => mismatched.push(format!("{slug} {version}: BLAKE3 {d}, catalog {want}")),
            Err(e) => mismatched.push(format!("{slug} {version}: {e}")),
        }
    }
    drill.objects = rows.len();
    drill.time("objects", t);
    drill.check(
        "objects",
        mismatched.is_empty(),
        if mismatched.is_empty() {
            format!(
                "{} of the catalog's objects re-hash to their BLAKE3",
                rows.len()
            )
        } else {
            mismatched.join("; ")
        },
    );
    Ok(())
}
