//! Batched reads (the DataLoader pattern): concurrent lookups of one kind share one statement.
//!
//! A hot public read (a share link) costs PostgreSQL far more per statement than per row: every
//! statement pays for its protocol messages, a snapshot, executor start-up and shut-down. A
//! [`Loader`] collects the lookups that arrive while its previous statement is in flight and
//! answers them with one statement (`… WHERE key = ANY($1)`); the same key asked twice in a
//! batch is looked up once. Nothing is cached: every answer comes from a statement that started
//! after the lookup was asked, so a revocation committed before a request arrives is seen by it.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;

use deadpool_postgres::{Object, Pool};
use tokio::sync::{mpsc, oneshot};

use crate::StoreError;

/// Answers lookups by key in batches; see the module documentation.
///
/// A caller must not hold a pooled connection while it waits: the loader takes one from the pool
/// for each batch.
#[derive(Debug)]
pub struct Loader<K, V> {
    queue: mpsc::Sender<Pending<K, V>>,
}

impl<K, V> Clone for Loader<K, V> {
    fn clone(&self) -> Self {
        Loader {
            queue: self.queue.clone(),
        }
    }
}

/// Where one lookup's answer goes.
type Reply<V> = oneshot::Sender<Result<Option<V>, StoreError>>;

struct Pending<K, V> {
    key: K,
    reply: Reply<V>,
}

impl<K, V> std::fmt::Debug for Pending<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending").finish_non_exhaustive()
    }
}

impl<K, V> Loader<K, V>
where
    K: Eq + Hash + Clone + Send + 'static,
    V: Clone + Send + 'static,
{
    /// Starts the loading task on the current runtime. `load` answers one batch: it gets a
    /// pooled connection and the distinct keys (at most `max_batch`) and returns the pairs it
    /// found, in any order; a key it does not return is answered `None`.
    pub fn start<F, Fut>(pool: Pool, max_batch: usize, load: F) -> Loader<K, V>
    where
        F: Fn(Object, Vec<K>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Vec<(K, V)>, StoreError>> + Send + 'static,
    {
        let max_batch = max_batch.max(1);
        let (queue, rx) = mpsc::channel(max_batch * 4);
        tokio::spawn(load_batches(pool, rx, max_batch, load));
        Loader { queue }
    }

    /// The value for `key`, or `None` when the statement found none.
    pub async fn load(&self, key: K) -> Result<Option<V>, StoreError> {
        let stopped = || StoreError::Shared {
            message: "the batched reader stopped".into(),
            unavailable: true,
        };
        let (reply, rx) = oneshot::channel();
        self.queue
            .send(Pending { key, reply })
            .await
            .map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }
}

async fn load_batches<K, V, F, Fut>(
    pool: Pool,
    mut rx: mpsc::Receiver<Pending<K, V>>,
    max_batch: usize,
    load: F,
) where
    K: Eq + Hash + Clone,
    V: Clone,
    F: Fn(Object, Vec<K>) -> Fut,
    Fut: Future<Output = Result<Vec<(K, V)>, StoreError>>,
{
    // Each distinct key of the batch with everyone waiting for it, in arrival order.
    let mut waiting: HashMap<K, Vec<Reply<V>>> = HashMap::with_capacity(max_batch);
    while let Some(first) = rx.recv().await {
        let mut keys = vec![first.key.clone()];
        waiting.entry(first.key).or_default().push(first.reply);
        while keys.len() < max_batch {
            let Ok(p) = rx.try_recv() else { break };
            let replies = waiting.entry(p.key.clone()).or_default();
            if replies.is_empty() {
                keys.push(p.key);
            }
            replies.push(p.reply);
        }
        let loaded = match pool.get().await {
            Ok(client) => load(client, keys).await,
            Err(e) => Err(e.into()),
        };
        match loaded {
            Ok(found) => {
                for (key, value) in found {
                    for reply in waiting.remove(&key).unwrap_or_default() {
                        let _ = reply.send(Ok(Some(value.clone())));
                    }
                }
                for (_, replies) in waiting.drain() {
                    for reply in replies {
                        let _ = reply.send(Ok(None));
                    }
                }
            }
            Err(e) => {
                let (message, unavailable) = (e.to_string(), e.is_unavailable());
                for (_, replies) in waiting.drain() {
                    for reply in replies {
                        let _ = reply.send(Err(StoreError::Shared {
                            message: message.clone(),
                            unavailable,
                        }));
                    }
                }
            }
        }
    }
}
