//! The locking path: one transaction per batch that locks each organization's head, for what the
//! fast path hands back.

use std::collections::HashMap;

use deadpool_postgres::{Pool, Transaction};
use defendable_store::audit::record;
use time::OffsetDateTime;
use uuid::Uuid;

use super::super::append::{insert_sealed, lock_and_catch_up, seal_next, Appended, Tree};
use super::super::reads::get_by_seq;
use super::super::tree::NodeRows;
use super::super::{Result, StoredReceipt};
use super::Request;
use crate::receipt::Sealed;
use crate::LedgerError;

/// Outcome of one request inside a batch, known before commit.
enum Outcome {
    New(usize),
    Existing(StoredReceipt),
    Refused(LedgerError),
}

/// Commits one batch. On failure nothing is committed and the requests come back for an error
/// reply; on success every request is answered.
pub(super) async fn commit_batch(
    pool: &Pool,
    requests: Vec<Request>,
    tree: Tree,
) -> std::result::Result<(), (LedgerError, Vec<Request>)> {
    let mut client = match pool.get().await {
        Ok(c) => c,
        Err(e) => return Err((e.into(), requests)),
    };
    let tx = match client.transaction().await {
        Ok(t) => t,
        Err(e) => return Err((e.into(), requests)),
    };
    let mut requests = requests;
    let outcomes = match stage_batch(&tx, &mut requests, tree).await {
        Ok(o) => o,
        Err(e) => return Err((e, requests)),
    };
    let (outcomes, sealed) = outcomes;
    if let Err(e) = tx.commit().await {
        return Err((e.into(), requests));
    }
    for (r, outcome) in requests.into_iter().zip(outcomes) {
        let reply = match outcome {
            Outcome::New(i) => Ok(Appended::New(StoredReceipt::from(&sealed[i]))),
            Outcome::Existing(s) => Ok(Appended::Existing(s)),
            Outcome::Refused(e) => Err(e),
        };
        let _ = r.reply.send(reply);
    }
    Ok(())
}

async fn stage_batch(
    tx: &Transaction<'_>,
    requests: &mut [Request],
    tree: Tree,
) -> Result<(Vec<Outcome>, Vec<Sealed>)> {
    let mut orgs: Vec<Uuid> = requests.iter().map(|r| r.org).collect();
    orgs.sort();
    orgs.dedup();
    let mut nodes = NodeRows::default();
    let mut heads = lock_and_catch_up(tx, &orgs, &mut nodes, tree).await?;
    let now = OffsetDateTime::now_utc();
    let mut outcomes = Vec::with_capacity(requests.len());
    let mut sealed: Vec<Sealed> = Vec::with_capacity(requests.len());
    let mut keyed: Vec<(Uuid, String, i64)> = Vec::new();
    // Keys already used earlier in this batch: their row exists but has no seq until the end.
    let mut batch_keys: HashMap<(Uuid, String), (String, Option<usize>)> = HashMap::new();
    for r in requests.iter_mut() {
        if let Some((key, fingerprint)) = &r.options.idempotency {
            if let Some((fp, index)) = batch_keys.get(&(r.org, key.clone())) {
                outcomes.push(match index {
                    Some(i) if fp == fingerprint => {
                        Outcome::Existing(StoredReceipt::from(&sealed[*i]))
                    }
                    _ => Outcome::Refused(LedgerError::IdempotencyConflict),
                });
                continue;
            }
            let fresh = tx
                .query_opt(
                    &tx.prepare_cached("INSERT INTO receipt_idempotency (org_id, key, request_hash) VALUES ($1, $2, $3)
                     ON CONFLICT DO NOTHING RETURNING 1").await?,
                    &[&r.org, key, fingerprint],
                )
                .await?
                .is_some();
            if !fresh {
                let row = tx
                    .query_one(
                        &tx.prepare_cached("SELECT request_hash, seq FROM receipt_idempotency WHERE org_id = $1 AND key = $2").await?,
                        &[&r.org, key],
                    )
                    .await?;
                let (stored_fp, seq): (String, Option<i64>) = (row.get(0), row.get(1));
                let outcome = match seq {
                    Some(seq) if &stored_fp == fingerprint => {
                        let existing = match sealed
                            .iter()
                            .find(|s| s.org == r.org && s.seq as i64 == seq)
                        {
                            Some(s) => StoredReceipt::from(s),
                            None => get_by_seq(tx, r.org, seq as u64)
                                .await?
                                .ok_or(LedgerError::IdempotencyConflict)?,
                        };
                        Outcome::Existing(existing)
                    }
                    _ => Outcome::Refused(LedgerError::IdempotencyConflict),
                };
                outcomes.push(outcome);
                continue;
            }
        }
        let head = heads.get_mut(&r.org).expect("locked above");
        match seal_next(r.org, head, now, r.draft.clone(), &mut nodes, tree) {
            Ok(s) => {
                if let Some((key, fingerprint)) = &r.options.idempotency {
                    keyed.push((r.org, key.clone(), s.seq as i64));
                    batch_keys.insert(
                        (r.org, key.clone()),
                        (fingerprint.clone(), Some(sealed.len())),
                    );
                }
                outcomes.push(Outcome::New(sealed.len()));
                sealed.push(s);
            }
            Err(e) => {
                if let Some((key, fingerprint)) = &r.options.idempotency {
                    batch_keys.insert((r.org, key.clone()), (fingerprint.clone(), None));
                }
                outcomes.push(Outcome::Refused(e));
            }
        }
    }
    insert_sealed(tx, &sealed, &nodes, &heads).await?;
    for (org, key, seq) in keyed {
        tx.execute(
            &tx.prepare_cached(
                "UPDATE receipt_idempotency SET seq = $3 WHERE org_id = $1 AND key = $2",
            )
            .await?,
            &[&org, &key, &seq],
        )
        .await?;
    }
    for (r, outcome) in requests.iter().zip(&outcomes) {
        if let (Some(event), Outcome::New(i)) = (&r.options.audit, outcome) {
            let mut event = event.clone();
            event.target = Some(sealed[*i].id.clone());
            record(tx, &event).await?;
        }
    }
    Ok((outcomes, sealed))
}
