//! Log-level routes: verification, signed-note checkpoints, consistency proofs, tiles, export,
//! published keys (DESIGN §2b).

use actix_web::http::header;
use actix_web::{web, HttpResponse};

use defendable_config::limits;
use defendable_ledger::merkle::TileId;
use defendable_ledger::store as ledger;
use defendable_ledger::{ConsistencyProof, ExportLine};
use defendable_store::slots;
use futures_util::stream;
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::{ApiError, ErrorCode, Problem};
use crate::proofs::{note_response, ConsistencyQuery};
use crate::AppState;

pub use defendable_ledger::{ChainCheck, ChainFailure, PublishedKeys};

/// The keys that sign checkpoints (public).
#[utoipa::path(get, path = "/ledger/keys", tag = "ledger",
    responses((status = 200, description = "Ed25519 public keys", body = PublishedKeys)))]
pub async fn get_ledger_keys(state: web::Data<AppState>) -> web::Json<PublishedKeys> {
    web::Json(PublishedKeys {
        keys: state.published_keys.clone(),
    })
}

/// Verifies every link of the organization's chain in storage.
#[utoipa::path(get, path = "/orgs/{org}/ledger/verify", tag = "ledger", security(("bearer" = [])),
    params(("org" = String, Path, description = "Organization slug or id")),
    responses(
        (status = 200, description = "The verification result (see `valid`)", body = ChainCheck),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization, or not a member", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_ledger_verify(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<web::Json<ChainCheck>, ApiError> {
    let access = caller.member(&state, &path).await?;
    let client = state.db.get().await?;
    let report = ledger::verify_org(&*client, access.org.id.as_uuid()).await?;
    if let Some(f) = &report.failure {
        state
            .metrics
            .receipt_hash_mismatch(access.org.id.as_uuid(), f);
    }
    Ok(web::Json(ChainCheck {
        org: report.org,
        valid: report.failure.is_none(),
        checked: report.checked,
        head: report.head.to_hex(),
        tree_size: report.tree_size,
        failure: report.failure.map(|f| ChainFailure {
            seq: f.seq,
            reason: f.reason.to_string(),
        }),
    }))
}

/// The signed checkpoint of the organization's current tree: a C2SP tlog-checkpoint note
/// (`<LEDGER_NAME>/orgs/<org id>`, size, base64 root, signature line).
#[utoipa::path(get, path = "/orgs/{org}/ledger/checkpoint", tag = "ledger", security(("bearer" = [])),
    params(("org" = String, Path, description = "Organization slug or id")),
    responses(
        (status = 200, description = "The signed note; an empty log has size 0 and the root SHA-256 of nothing", body = String, content_type = "text/plain; charset=utf-8"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization, or not a member", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_ledger_checkpoint(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let access = caller.member(&state, &path).await?;
    let client = state.db.reader().await?;
    let (_, note) =
        ledger::signed_checkpoint(&*client, &state.log, access.org.id.as_uuid()).await?;
    Ok(note_response(note))
}

/// A consistency proof between two sizes of the organization's tree, with the signed
/// checkpoint of the larger.
#[utoipa::path(get, path = "/orgs/{org}/ledger/consistency", tag = "ledger", security(("bearer" = [])),
    params(("org" = String, Path, description = "Organization slug or id"), ConsistencyQuery),
    responses(
        (status = 200, description = "The proof (empty when from = to) and the checkpoint of `to`", body = ConsistencyProof),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization, or not a member", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Sizes outside `1 ≤ from ≤ to ≤ current`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_ledger_consistency(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    query: web::Query<ConsistencyQuery>,
) -> Result<web::Json<ConsistencyProof>, ApiError> {
    let access = caller.member(&state, &path).await?;
    let client = state.db.reader().await?;
    let proof = ledger::consistency_proof(
        &*client,
        &state.log,
        access.org.id.as_uuid(),
        query.from,
        query.to,
    )
    .await?;
    Ok(web::Json(proof))
}

/// A C2SP tlog-tiles hash tile of the organization's tree: `<L>/<N>[.p/<W>]` with `<N>` in
/// 3-digit groups (`x001/x234/067`); a full tile is 8,192 bytes, a partial one `W` hashes.
#[utoipa::path(get, path = "/orgs/{org}/ledger/tile/{tile}", tag = "ledger", security(("bearer" = [])),
    params(("org" = String, Path, description = "Organization slug or id"),
           ("tile" = String, Path, description = "`<L>/<N>[.p/<W>]`, e.g. `0/000.p/7` or `1/x001/002`")),
    responses(
        (status = 200, description = "The tile's hashes, 32 bytes each", content_type = "application/octet-stream"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization or membership, or a tile beyond the current tree", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a tile path", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_ledger_tile(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (org, tile) = path.into_inner();
    let access = caller.member(&state, &org).await?;
    let tile = TileId::parse(&tile)?;
    let client = state.db.get().await?;
    let bytes = ledger::tile(&*client, access.org.id.as_uuid(), tile)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(HttpResponse::Ok()
        .content_type("application/octet-stream")
        .body(bytes))
}

/// The whole log as JSON Lines: one public projection per line in seq order, then
/// `{"checkpoint": "<signed note>"}` of exactly the exported receipts (the tree's current size).
/// Streamed in pages of `EXPORT_PAGE` receipts, each read on a connection returned before the
/// page is written, so a slow reader holds no database connection. A reader that takes no line
/// for `EXPORT_WRITE_TIMEOUT` is cut off (the export then lacks its checkpoint line and fails
/// verification); each principal runs at most `EXPORTS_PER_PRINCIPAL` exports at once.
#[utoipa::path(get, path = "/orgs/{org}/ledger/export", tag = "ledger", security(("bearer" = [])),
    params(("org" = String, Path, description = "Organization slug or id")),
    responses(
        (status = 200, description = "JSON Lines", content_type = "application/x-ndjson"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization, or not a member", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "This principal already runs as many exports as allowed (Retry-After)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable (Retry-After)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_ledger_export(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let access = caller.member(&state, &path).await?;
    let org = access.org.id.as_uuid();
    let slot = export_slot(&state, &caller).await?;
    // Fix the tree first: the export ends exactly at its size, whatever is appended meanwhile.
    let signed = async {
        let client = state.db.get().await?;
        Ok::<_, ApiError>(ledger::signed_checkpoint(&*client, &state.log, org).await?)
    }
    .await;
    let (size, note) = match signed {
        Ok(signed) => signed,
        Err(e) => {
            release_slot(&state, slot).await;
            return Err(e);
        }
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<ExportLine>(64);
    actix_web::rt::spawn(export_pages(state.clone(), org, size, note, slot, tx));
    let body = stream::unfold(rx, |mut rx| async move {
        let line = rx.recv().await?;
        let mut bytes = serde_json::to_vec(&line).unwrap_or_default();
        bytes.push(b'\n');
        Some((Ok::<_, actix_web::Error>(web::Bytes::from(bytes)), rx))
    });
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "application/x-ndjson"))
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{}-ledger.jsonl\"", access.org.slug),
        ))
        .streaming(body))
}

/// One of the caller's concurrent-export slots (`config::limits::EXPORTS_PER_PRINCIPAL`), or
/// 429 `too_many_exports`.
async fn export_slot(state: &AppState, caller: &Caller) -> Result<slots::Slot, ApiError> {
    slots::acquire(
        &mut *state.db.get().await?,
        &format!("ledger.export:{}", caller.principal_key()),
        limits::EXPORTS_PER_PRINCIPAL,
        limits::EXPORT_LEASE,
    )
    .await
    .map_err(ApiError::store)?
    .ok_or_else(|| {
        ApiError::new(
            ErrorCode::TooManyExports,
            format!(
                "at most {} exports may run at once for one user or API key; wait for one to finish",
                limits::EXPORTS_PER_PRINCIPAL
            ),
        )
        .with_retry_after(10)
    })
}

/// Feeds the export: a page at a time on a short-lived connection, then the checkpoint line.
/// Ends early, without the checkpoint line, when the reader goes away or stalls.
async fn export_pages(
    state: web::Data<AppState>,
    org: Uuid,
    size: u64,
    note: String,
    slot: slots::Slot,
    out: tokio::sync::mpsc::Sender<ExportLine>,
) {
    let through = size as i64 - 1;
    let mut next = 0i64;
    let complete = loop {
        if next > through {
            break true;
        }
        let page = match export_page(&state, slot, org, next, through).await {
            Ok(page) if !page.is_empty() => page,
            Ok(_) => break false,
            Err(e) => {
                tracing::error!(error = %e, org_id = %org, "ledger export failed mid-stream");
                break false;
            }
        };
        next += page.len() as i64;
        if !deliver(&out, page.into_iter().map(ExportLine::Receipt), org).await {
            break false;
        }
    };
    if complete {
        let line = ExportLine::Note { checkpoint: note };
        let _ = tokio::time::timeout(limits::EXPORT_WRITE_TIMEOUT, out.send(line)).await;
    }
    drop(out);
    release_slot(&state, slot).await;
}

/// The export's next page from `next` on a short-lived connection, renewing its slot's lease.
async fn export_page(
    state: &AppState,
    slot: slots::Slot,
    org: Uuid,
    next: i64,
    through: i64,
) -> Result<Vec<defendable_ledger::Projection>, ApiError> {
    let client = state.db.get().await?;
    slots::renew(&*client, slot)
        .await
        .map_err(ApiError::store)?;
    Ok(ledger::projections_page(&*client, org, next, through, limits::EXPORT_PAGE).await?)
}

/// Sends `lines` to the reader; false when it went away or stalled past
/// `config::limits::EXPORT_WRITE_TIMEOUT` (the export is cut off).
async fn deliver(
    out: &tokio::sync::mpsc::Sender<ExportLine>,
    lines: impl Iterator<Item = ExportLine>,
    org: Uuid,
) -> bool {
    for line in lines {
        match tokio::time::timeout(limits::EXPORT_WRITE_TIMEOUT, out.send(line)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return false,
            Err(_) => {
                tracing::warn!(org_id = %org, "ledger export reader stalled; cut off");
                return false;
            }
        }
    }
    true
}

/// Frees an export slot; if the database is away the slot goes stale after its lease.
async fn release_slot(state: &AppState, slot: slots::Slot) {
    let released = async {
        let client = state.db.get().await?;
        slots::release(&*client, slot)
            .await
            .map_err(ApiError::store)
    }
    .await;
    if let Err(e) = released {
        tracing::warn!(error = %e, "could not free an export slot; it expires with its lease");
    }
}
