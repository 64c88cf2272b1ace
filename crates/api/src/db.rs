//! The server's one way to a database connection: [`Db::get`] hands out at most one pooled
//! connection per request at a time.
//!
//! A request that holds a connection and waits for a second one can deadlock the pool: with as
//! many such requests as connections, each holds one and waits for another until the wait
//! timeout. So the rule is enforced, not just followed: [`scope`] (a middleware around every
//! request) counts the connections its request holds, and asking for a second while holding
//! one is refused at once as a bug (logged, 500) instead of waiting. Tests running routes with a
//! pool of two and many callers find any path that breaks the rule.
//!
//! Every wait is bounded (`config::limits::DB_POOL_WAIT`, `DB_CONNECT`, `DB_STATEMENT`,
//! `DB_LOCK`); a database that is away or saturated is a 503 with `Retry-After`
//! ([`ApiError::store`]).
//!
//! Hot read-only routes use [`Db::reader`] instead: a few connections shared by every request
//! for single statements (never a transaction). tokio-postgres pipelines the statements of
//! concurrent requests on one connection, so PostgreSQL wakes once for many of them instead of
//! once per request. A shared connection that closed is replaced on the next use.

use std::cell::Cell;
use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use deadpool_postgres::{Object, Pool};
use prometheus_client::metrics::histogram::Histogram;

use crate::error::ApiError;

tokio::task_local! {
    static HELD: Cell<u32>;
}

/// Runs `fut` (one request) with its own count of held connections.
pub fn scope<F: Future>(fut: F) -> impl Future<Output = F::Output> {
    HELD.scope(Cell::new(0), fut)
}

/// The server's pool, behind the one-connection-per-request rule.
#[derive(Clone)]
pub struct Db {
    pool: Pool,
    waits: Histogram,
    readers: Arc<Readers>,
}

/// The shared read connections: slots filled from the pool on first use and kept.
struct Readers {
    slots: Vec<Mutex<Option<Arc<Object>>>>,
    next: AtomicUsize,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = self.pool.status();
        f.debug_struct("Db")
            .field("size", &status.size)
            .field("available", &status.available)
            .finish()
    }
}

impl Db {
    /// Wraps a pool; every wait for a connection is observed in `waits`. Up to
    /// `config::limits::DB_SHARED_READERS` of its connections (a quarter of the pool at most)
    /// become shared read connections as they are first needed.
    pub fn new(pool: Pool, waits: Histogram) -> Db {
        let shared = defendable_config::limits::DB_SHARED_READERS.min(pool.status().max_size / 4);
        let readers = Readers {
            slots: (0..shared).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
        };
        Db {
            pool,
            waits,
            readers: Arc::new(readers),
        }
    }

    /// The pool itself, for background tasks that run outside any request.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// A connection for this request. Refused when the request already holds one; a
    /// saturated or unreachable database is 503 with `Retry-After` after a bounded wait.
    pub async fn get(&self) -> Result<Conn, ApiError> {
        let release = Release::track()?;
        let object = self.pooled().await?;
        Ok(Conn {
            object,
            _release: release,
        })
    }

    /// A connection for one or more single read-only statements (no transaction), shared with
    /// concurrent requests so that their statements are pipelined. It counts as the request's
    /// one connection while held. Without shared slots (a pool under four), a pooled one.
    pub async fn reader(&self) -> Result<Reader, ApiError> {
        let release = Release::track()?;
        let slots = &self.readers.slots;
        if slots.is_empty() {
            return Ok(Reader {
                object: Shared::Own(Box::new(self.pooled().await?)),
                _release: release,
            });
        }
        let slot = &slots[self.readers.next.fetch_add(1, Ordering::Relaxed) % slots.len()];
        let live = |s: &Option<Arc<Object>>| s.as_ref().filter(|o| !o.is_closed()).cloned();
        if let Some(object) = live(&slot.lock().expect("reader slot")) {
            return Ok(Reader {
                object: Shared::Shared(object),
                _release: release,
            });
        }
        // Empty or closed: fill it from the pool (no lock held while waiting). A closed
        // connection goes back to the pool, which discards it.
        let fresh = Arc::new(self.pooled().await?);
        let object = {
            let mut held = slot.lock().expect("reader slot");
            match live(&held) {
                Some(other) => other,
                None => {
                    *held = Some(fresh.clone());
                    fresh
                }
            }
        };
        Ok(Reader {
            object: Shared::Shared(object),
            _release: release,
        })
    }

    /// The request's one connection slot, without a connection: for waiting on a task that takes
    /// pooled connections itself (the rate-limit counter). Refused when the request holds a
    /// connection; while it is held, the request cannot take one.
    pub fn slot(&self) -> Result<Slot, ApiError> {
        Ok(Slot {
            _release: Release::track()?,
        })
    }

    async fn pooled(&self) -> Result<Object, ApiError> {
        let started = std::time::Instant::now();
        let object = self.pool.get().await;
        self.waits.observe(started.elapsed().as_secs_f64());
        object.map_err(|e| ApiError::store(defendable_store::StoreError::Pool(e)))
    }
}

/// Gives the request's slot back when the connection is dropped (or when the wait failed).
#[derive(Debug)]
struct Release {
    tracked: bool,
}

impl Release {
    /// Takes the request's one slot; refused when it is taken (outside a request, untracked).
    fn track() -> Result<Release, ApiError> {
        let tracked = HELD
            .try_with(|held| {
                if held.get() > 0 {
                    return Err(ApiError::internal(
                        "a request asked for a second database connection while holding one",
                    ));
                }
                held.set(held.get() + 1);
                Ok(())
            })
            .map_or(Ok(false), |r| r.map(|()| true))?;
        Ok(Release { tracked })
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        if self.tracked {
            let _ = HELD.try_with(|held| held.set(held.get().saturating_sub(1)));
        }
    }
}

/// The request's connection slot, held without a connection ([`Db::slot`]).
#[derive(Debug)]
pub struct Slot {
    _release: Release,
}

/// A pooled connection, returned to the pool on drop.
#[derive(Debug)]
pub struct Conn {
    object: Object,
    _release: Release,
}

impl Deref for Conn {
    type Target = Object;
    fn deref(&self) -> &Object {
        &self.object
    }
}

impl DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut Object {
        &mut self.object
    }
}

/// A read connection: shared with concurrent requests, or the request's own.
#[derive(Debug)]
enum Shared {
    Shared(Arc<Object>),
    Own(Box<Object>),
}

/// A connection for single read-only statements ([`Db::reader`]); no `&mut`, so no transaction.
#[derive(Debug)]
pub struct Reader {
    object: Shared,
    _release: Release,
}

impl Deref for Reader {
    type Target = Object;
    fn deref(&self) -> &Object {
        match &self.object {
            Shared::Shared(o) => o,
            Shared::Own(o) => o,
        }
    }
}
