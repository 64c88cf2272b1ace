//! `datasets download`: take a grant, follow its link to a short-lived object URL, stream the
//! bytes into `OUT.part` with a progress bar, resume with `Range` after an interruption (in the
//! same run, and in a later run through the grant saved beside the partial file, so a resume
//! takes no second unit of quota), and check the whole file's BLAKE3 against the catalog before
//! it gets its final name. On a mismatch nothing is kept.

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use reqwest::{header, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::client::{encode, root_cause, typed, Api, Body};
use crate::output::bytes;
use crate::{Exit, Output};
use defendable_datasets::view::{DatasetView, GrantBody, GrantView};

/// What to download and how.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Catalog slug.
    pub slug: String,
    /// Final path (default: the slug, in the current directory).
    pub out: PathBuf,
    /// The organization whose quota pays (None: the server's default for the caller).
    pub org: Option<String>,
    /// Resumptions within this run after a broken transfer.
    pub retries: u32,
    /// Whether to draw a progress bar on stderr (it also hides itself off a terminal).
    pub progress: bool,
}

/// The grant saved beside a partial download (`OUT.part.json`, mode 0600).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pending {
    download_url: String,
    expires_at: String,
    blake3: String,
    size: u64,
    receipt_id: String,
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn blake3_of(path: &Path) -> Result<String, Exit> {
    let file = std::fs::File::open(path).map_err(|e| Exit::io(path, e))?;
    let mut hasher = blake3::Hasher::new();
    hasher
        .update_reader(std::io::BufReader::with_capacity(1 << 20, file))
        .map_err(|e| Exit::io(path, e))?;
    Ok(hasher.finalize().to_hex().to_string())
}

fn remove(path: &Path) {
    let _ = std::fs::remove_file(path);
}

/// Runs a download plan.
pub async fn download(api: &Api, plan: &Plan) -> Result<Output, Exit> {
    let entry: DatasetView = api
        .get_as(&format!("/datasets/catalog/{}", encode(&plan.slug)))
        .await?;
    let expected = entry.blake3.clone();
    let size = u64::try_from(entry.size)
        .map_err(|_| Exit::server("the catalog entry has a negative size"))?;
    let part = with_suffix(&plan.out, ".part");
    let pending_path = with_suffix(&plan.out, ".part.json");

    if plan.out.exists() {
        let actual = blake3_of(&plan.out)?;
        if actual == expected {
            return Ok(done(plan, &entry, &actual, None, 0, 0, "already present"));
        }
        return Err(Exit::usage(format!(
            "{} exists and is not this dataset's current version; move it away or pass --out",
            plan.out.display()
        )));
    }

    let pending = match read_pending(&pending_path) {
        Some(p) if p.blake3 == expected && p.size == size && !expired(&p.expires_at) => p,
        _ => {
            // No usable grant: anything partial is of unknown origin or an older version.
            remove(&part);
            remove(&pending_path);
            let body = GrantBody {
                org: plan.org.clone(),
                expires_in: None,
            };
            let grant: GrantView = typed(
                api.call(
                    reqwest::Method::POST,
                    &format!("/datasets/catalog/{}/download", encode(&plan.slug)),
                    Body::of(&body),
                )
                .await?,
            )?;
            let p = Pending {
                download_url: grant.download_url,
                expires_at: grant
                    .expires_at
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default(),
                blake3: expected.clone(),
                size,
                receipt_id: grant.receipt.receipt_id,
            };
            let text = serde_json::to_vec_pretty(&p).map_err(|e| Exit::usage(e.to_string()))?;
            write_private(&pending_path, &text)?;
            p
        }
    };

    let resumed_from = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    let bar = progress_bar(plan, size, resumed_from);
    let started = Instant::now();
    let attempts = fetch(&pending, &part, &pending_path, size, plan.retries, &bar).await;
    bar.finish_and_clear();
    let attempts = attempts?;

    let actual = blake3_of(&part)?;
    if actual != expected {
        remove(&part);
        remove(&pending_path);
        return Err(Exit::verify(format!(
            "BLAKE3 mismatch: the catalog says {expected}, the downloaded bytes hash to {actual}; \
             nothing was kept. Run the command again; if it repeats, report receipt {}",
            pending.receipt_id
        )));
    }
    std::fs::rename(&part, &plan.out).map_err(|e| Exit::io(&plan.out, e))?;
    remove(&pending_path);
    let rate = size.saturating_sub(resumed_from) as f64 / started.elapsed().as_secs_f64().max(1e-6);
    let mut out = done(
        plan,
        &entry,
        &actual,
        Some(&pending.receipt_id),
        resumed_from,
        attempts,
        "downloaded",
    );
    out.human.push_str(&format!(" at {}/s", bytes(rate as u64)));
    Ok(out)
}

fn done(
    plan: &Plan,
    entry: &DatasetView,
    digest: &str,
    receipt: Option<&str>,
    resumed_from: u64,
    attempts: u32,
    what: &str,
) -> Output {
    let size = u64::try_from(entry.size).unwrap_or(0);
    let resumed = if resumed_from > 0 {
        format!(", resumed from {}", bytes(resumed_from))
    } else {
        String::new()
    };
    Output::new(
        json!({
            "ok": true,
            "path": plan.out.display().to_string(),
            "slug": entry.slug,
            "version": entry.version,
            "size": size,
            "blake3": digest,
            "receipt_id": receipt,
            "resumed_from": resumed_from,
            "attempts": attempts,
        }),
        format!(
            "{what} {} ({}, BLAKE3 {digest} matches the catalog{resumed})",
            plan.out.display(),
            bytes(size)
        ),
    )
}

/// Writes a file only its owner can read: the saved link is a credential for the grant.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), Exit> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| Exit::io(path, e))?;
    file.write_all(bytes).map_err(|e| Exit::io(path, e))
}

fn read_pending(path: &Path) -> Option<Pending> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

fn expired(expires_at: &str) -> bool {
    // An unreadable time counts as expired: a new grant is safer than a dead link.
    let now = time::OffsetDateTime::now_utc();
    match time::OffsetDateTime::parse(expires_at, &time::format_description::well_known::Rfc3339) {
        Ok(t) => t <= now,
        Err(_) => true,
    }
}

fn progress_bar(plan: &Plan, size: u64, position: u64) -> ProgressBar {
    let target = if plan.progress {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(size), target);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(plan.slug.clone());
    bar.set_position(position);
    bar
}

/// Fetches the rest of the object into `part`, resuming after each broken transfer up to
/// `retries` times. Returns the number of requests made.
async fn fetch(
    pending: &Pending,
    part: &Path,
    pending_path: &Path,
    size: u64,
    retries: u32,
    bar: &ProgressBar,
) -> Result<u32, Exit> {
    // No bearer token goes to the link or to the object store; the link is the credential.
    crate::install_crypto_provider();
    let http = reqwest::Client::builder()
        .user_agent(concat!("defendable-cli/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| Exit::server(format!("cannot build an HTTP client: {e}")))?;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(part)
        .map_err(|e| Exit::io(part, e))?;
    let mut attempts = 0u32;
    loop {
        let have = file.metadata().map_err(|e| Exit::io(part, e))?.len();
        if have == size {
            return Ok(attempts);
        }
        if have > size {
            file.set_len(0).map_err(|e| Exit::io(part, e))?;
            continue;
        }
        attempts += 1;
        let mut req = http.get(&pending.download_url);
        if have > 0 {
            req = req.header(header::RANGE, format!("bytes={have}-"));
        }
        let broken = match req.send().await {
            Err(e) => root_cause(&e),
            Ok(res) => {
                let status = res.status();
                let start = match status {
                    StatusCode::PARTIAL_CONTENT => have,
                    StatusCode::OK => 0,
                    StatusCode::RANGE_NOT_SATISFIABLE => {
                        file.set_len(0).map_err(|e| Exit::io(part, e))?;
                        continue;
                    }
                    StatusCode::GONE => {
                        remove(pending_path);
                        return Err(Exit::usage(
                            "the grant has expired; run the command again to take a new one (one more unit of quota)",
                        ));
                    }
                    StatusCode::NOT_FOUND => {
                        remove(pending_path);
                        return Err(Exit::usage(
                            "the grant's link was revoked; run the command again to take a new grant",
                        ));
                    }
                    s => {
                        if attempts > retries {
                            return Err(Exit::server(format!(
                                "the download link answered {s}; the partial file is kept, run the same command again to resume"
                            )));
                        }
                        tokio::time::sleep(Duration::from_millis(500 * u64::from(attempts))).await;
                        continue;
                    }
                };
                if status == StatusCode::PARTIAL_CONTENT && range_start(&res) != Some(have) {
                    return Err(Exit::server(
                        "the object store answered a range that was not asked for; run the command again",
                    ));
                }
                file.set_len(start).map_err(|e| Exit::io(part, e))?;
                file.seek(SeekFrom::Start(start))
                    .map_err(|e| Exit::io(part, e))?;
                bar.set_position(start);
                match stream(res, &mut file, bar).await {
                    Ok(()) => {
                        file.flush().map_err(|e| Exit::io(part, e))?;
                        if file.metadata().map_err(|e| Exit::io(part, e))?.len() >= size {
                            continue;
                        }
                        "the answer ended before the object did".to_owned()
                    }
                    Err(StreamError::Disk(e)) => return Err(Exit::io(part, e)),
                    Err(StreamError::Network(e)) => e,
                }
            }
        };
        file.flush().map_err(|e| Exit::io(part, e))?;
        if attempts > retries {
            let have = file.metadata().map_err(|e| Exit::io(part, e))?.len();
            return Err(Exit::server(format!(
                "the transfer broke after {} of {} ({broken}); the partial file is kept, run the same command again to resume",
                bytes(have),
                bytes(size)
            )));
        }
        tokio::time::sleep(Duration::from_millis(250 * u64::from(attempts))).await;
    }
}

/// The first byte of a `Content-Range: bytes X-Y/Z` answer.
fn range_start(res: &reqwest::Response) -> Option<u64> {
    let v = res.headers().get(header::CONTENT_RANGE)?.to_str().ok()?;
    v.strip_prefix("bytes ")?.split('-').next()?.parse().ok()
}

enum StreamError {
    Network(String),
    Disk(std::io::Error),
}

async fn stream(
    mut res: reqwest::Response,
    file: &mut std::fs::File,
    bar: &ProgressBar,
) -> Result<(), StreamError> {
    loop {
        match res.chunk().await {
            Ok(Some(chunk)) => {
                file.write_all(&chunk).map_err(StreamError::Disk)?;
                bar.inc(chunk.len() as u64);
            }
            Ok(None) => return Ok(()),
            Err(e) => return Err(StreamError::Network(root_cause(&e))),
        }
    }
}
