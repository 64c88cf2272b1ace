//! Authentication of a bearer credential (session token or API key) into a [`Principal`].
//!
//! Validity is decided by PostgreSQL rows, so a logout, revocation or expiry on one server
//! process holds on all of them. To keep the per-request cost in microseconds, each process
//! caches a row's state for at most [`CACHE_TTL`]; a revocation therefore takes effect everywhere
//! within that time (and at once on the process that made it, which evicts its own entry).

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::ops::Deref;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use deadpool_postgres::{GenericClient, Pool};
use time::OffsetDateTime;

use crate::jwt::{KeyUsed, SessionKeys};
use crate::store::{self, Access, ApiKeyRow, SessionRow};
use crate::{ApiKeyId, ApiKeySecret, IdentityError, OrgId, SessionId, UserId};
use uuid::Uuid;

/// How long a process trusts a cached session or key state.
pub const CACHE_TTL: Duration = Duration::from_secs(2);

/// Beyond this many entries a cache is cleared rather than grown.
const CACHE_MAX: usize = 100_000;

/// Who is calling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Principal {
    /// A signed-in user.
    User {
        /// The user.
        user: UserId,
        /// The session the token names.
        session: SessionId,
        /// The SSO connection the session came through, if any.
        sso: Option<Uuid>,
    },
    /// An organization API key; acts as a member of `org` only.
    ApiKey {
        /// The key.
        key: ApiKeyId,
        /// Its organization.
        org: OrgId,
    },
}

#[derive(Debug)]
struct Cached<V> {
    value: Option<V>,
    fetched: Instant,
}

#[derive(Debug)]
struct Cache<K, V> {
    map: Mutex<HashMap<K, Cached<V>>>,
}

impl<K: Eq + Hash, V: Clone> Cache<K, V> {
    fn new() -> Self {
        Cache {
            map: Mutex::new(HashMap::new()),
        }
    }

    fn get(&self, k: &K) -> Option<Option<V>> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(k)
            .filter(|c| c.fetched.elapsed() < CACHE_TTL)
            .map(|c| c.value.clone())
    }

    fn clear(&self) {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    fn put(&self, k: K, value: Option<V>) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= CACHE_MAX {
            map.clear();
        }
        map.insert(
            k,
            Cached {
                value,
                fetched: Instant::now(),
            },
        );
    }

    fn remove(&self, k: &K) {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).remove(k);
    }
}

#[derive(Debug, Clone, Copy)]
struct KeyState {
    row: ApiKeyRow,
}

/// Turns bearer credentials into principals.
#[derive(Debug)]
pub struct Authenticator {
    keys: SessionKeys,
    sessions: Cache<SessionId, SessionRow>,
    api_keys: Cache<[u8; 32], KeyState>,
    touched: Cache<ApiKeyId, ()>,
    access: Cache<(Uuid, String), Access>,
}

impl Authenticator {
    /// An authenticator with the given session keys.
    pub fn new(keys: SessionKeys) -> Authenticator {
        Authenticator {
            keys,
            sessions: Cache::new(),
            api_keys: Cache::new(),
            touched: Cache::new(),
            access: Cache::new(),
        }
    }

    /// A granted authorization lookup (`principal` in the organization named `org`), if this
    /// process made it within [`CACHE_TTL`]. Only grants are cached: a refusal is always
    /// looked up again, so a new member is never refused from the cache.
    pub fn cached_access(&self, principal: Uuid, org: &str) -> Option<Access> {
        self.access.get(&(principal, org.to_owned())).flatten()
    }

    /// Remembers a granted authorization lookup for [`CACHE_TTL`].
    pub fn remember_access(&self, principal: Uuid, org: &str, access: Access) {
        self.access.put((principal, org.to_owned()), Some(access));
    }

    /// Forgets every cached grant on this process (after a role change or a removal; other
    /// processes forget theirs within [`CACHE_TTL`]).
    pub fn forget_access(&self) {
        self.access.clear();
    }

    /// The session keys (to issue tokens).
    pub fn session_keys(&self) -> &SessionKeys {
        &self.keys
    }

    /// A started session as its holder receives it: its bearer token, signed now.
    pub fn session_view(&self, session: store::NewSession) -> crate::view::SessionView {
        let now = OffsetDateTime::now_utc();
        let token = self.keys.issue(
            session.user.id,
            session.session,
            now.unix_timestamp(),
            session.expires_at.unix_timestamp(),
        );
        crate::view::SessionView {
            access_token: token,
            token_type: "Bearer".to_owned(),
            expires_in: (session.expires_at - now).whole_seconds().max(0),
            user: session.user.into(),
        }
    }

    /// Authenticates a bearer credential. Returns which JWT key verified a session token, so the
    /// caller can count uses of a previous secret.
    ///
    /// `connect` gives the connection a lookup reads with, asked only when the caches miss: the
    /// server passes its request-path source (a shared reader, under its one-connection rule).
    /// `touches` is the pool the background write of an API key's last use takes a connection
    /// from, outside the request.
    pub async fn authenticate<C, E, Fut>(
        &self,
        connect: impl FnOnce() -> Fut,
        touches: &Pool,
        bearer: &str,
    ) -> Result<(Principal, Option<KeyUsed>), E>
    where
        C: Deref,
        C::Target: GenericClient + Sized,
        E: From<IdentityError>,
        Fut: Future<Output = Result<C, E>>,
    {
        if ApiKeySecret::looks_like(bearer) {
            let secret = ApiKeySecret::parse(bearer)?;
            let row = self.api_key(connect, touches, secret).await?;
            return Ok((
                Principal::ApiKey {
                    key: row.id,
                    org: row.org,
                },
                None,
            ));
        }
        let (claims, used) = self.keys.verify(bearer)?;
        let session = SessionId::from_uuid(claims.sid);
        let row = match self.sessions.get(&session) {
            Some(cached) => cached,
            None => {
                let client = connect().await?;
                let row = store::session(&*client, session).await?;
                self.sessions.put(session, row);
                row
            }
        };
        match row {
            Some(r)
                if !r.revoked
                    && r.expires_at > OffsetDateTime::now_utc()
                    && r.user.as_uuid() == claims.sub =>
            {
                Ok((
                    Principal::User {
                        user: r.user,
                        session,
                        sso: r.sso_connection,
                    },
                    Some(used),
                ))
            }
            _ => Err(IdentityError::InvalidCredentials.into()),
        }
    }

    /// [`Authenticator::authenticate`] with every connection from `pool` (tools, benchmarks and
    /// tests outside a server).
    pub async fn authenticate_pooled(
        &self,
        pool: &Pool,
        bearer: &str,
    ) -> Result<(Principal, Option<KeyUsed>), IdentityError> {
        self.authenticate(
            || async { Ok::<_, IdentityError>(Box::new(pool.get().await?)) },
            pool,
            bearer,
        )
        .await
    }

    async fn api_key<C, E, Fut>(
        &self,
        connect: impl FnOnce() -> Fut,
        touches: &Pool,
        secret: ApiKeySecret,
    ) -> Result<ApiKeyRow, E>
    where
        C: Deref,
        C::Target: GenericClient + Sized,
        E: From<IdentityError>,
        Fut: Future<Output = Result<C, E>>,
    {
        let hash = secret.hash();
        let mut hash_bytes = [0u8; 32];
        hash_bytes.copy_from_slice(hash.as_bytes());
        let state = match self.api_keys.get(&hash_bytes) {
            Some(cached) => cached,
            None => {
                let client = connect().await?;
                let row = store::api_key_by_hash(&*client, &hash).await?;
                let state = row.map(|row| KeyState { row });
                self.api_keys.put(hash_bytes, state);
                state
            }
        };
        let row = match state {
            Some(s)
                if !s.row.revoked
                    && s.row
                        .expires_at
                        .is_none_or(|t| t > OffsetDateTime::now_utc()) =>
            {
                s.row
            }
            _ => return Err(IdentityError::InvalidCredentials.into()),
        };
        // Last use is written at most once per cache period per process, and at most once a
        // minute in the database; it never delays the request.
        if self.touched.get(&row.id).is_none() {
            self.touched.put(row.id, Some(()));
            let pool = touches.clone();
            tokio::spawn(async move {
                if let Ok(client) = pool.get().await {
                    if let Err(e) = store::touch_api_key(&client, row.id).await {
                        tracing::warn!(error = %e, key_id = %row.id, "could not record API key use");
                    }
                }
            });
        }
        Ok(row)
    }

    /// Forgets a session at once on this process (after logout).
    pub fn forget_session(&self, session: SessionId) {
        self.sessions.remove(&session);
    }

    /// Forgets every cached API key state on this process (after a revocation).
    pub fn forget_api_keys(&self) {
        self.api_keys
            .map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}
