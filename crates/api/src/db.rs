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

use std::cell::Cell;
use std::future::Future;
use std::ops::{Deref, DerefMut};

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
    /// Wraps a pool; every wait for a connection is observed in `waits`.
    pub fn new(pool: Pool, waits: Histogram) -> Db {
        Db { pool, waits }
    }

    /// The pool itself, for background tasks that run outside any request.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// A connection for this request. Refused when the request already holds one; a
    /// saturated or unreachable database is 503 with `Retry-After` after a bounded wait.
    pub async fn get(&self) -> Result<Conn, ApiError> {
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
        let release = Release { tracked };
        let started = std::time::Instant::now();
        let object = self.pool.get().await;
        self.waits.observe(started.elapsed().as_secs_f64());
        let object = object.map_err(|e| ApiError::store(defendable_store::StoreError::Pool(e)))?;
        Ok(Conn {
            object,
            _release: release,
        })
    }
}

/// Gives the request's slot back when the connection is dropped (or when the wait failed).
#[derive(Debug)]
struct Release {
    tracked: bool,
}

impl Drop for Release {
    fn drop(&mut self) {
        if self.tracked {
            let _ = HELD.try_with(|held| held.set(held.get().saturating_sub(1)));
        }
    }
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
