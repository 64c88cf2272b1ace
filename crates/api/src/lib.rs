//! The Defendable HTTP API: a thin actix-web shell over the cores. Handlers parse, authorize,
//! call a core and map its result; everything HTTP-specific (status codes, problem documents,
//! headers) lives here and nowhere else.

pub mod auth;
pub mod bodies;
pub mod boot;
pub mod client_ip;
pub mod db;
pub mod error;
pub mod internal;
pub mod mail;
pub mod metrics;
pub mod middleware;
pub mod openapi;
pub mod pages;
pub mod proofs;
pub mod ratelimit;
pub mod recheck;
pub mod recording;
pub mod routes;
pub mod signin;
pub mod telemetry;

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::{web, App, HttpServer};
use anyhow::Context as _;
use deadpool_postgres::Pool;
use defendable_config::Config;
use defendable_identity::authn::Authenticator;
use defendable_identity::jwt::SessionKeys;
use defendable_ledger::note::LogSigner;
use defendable_ledger::store::{BatchAppender, ProvenReceipt, SharedConsistency, StoredReceipt};
use defendable_ledger::{LedgerName, PublicKey, SigningKey};
use secrecy::ExposeSecret;
use uuid::Uuid;

use crate::mail::Mailer;
use crate::metrics::Metrics;
use defendable_datasets::signed_url::UrlSigner;
use object_store::signer::Signer;
use object_store::ObjectStore;

/// What every handler can reach.
pub struct AppState {
    /// The configuration the server booted with.
    pub config: Config,
    /// The PostgreSQL pool, one connection per request at a time (see [`db`]).
    pub db: db::Db,
    /// The object store (datasets, exports).
    pub objects: Arc<dyn ObjectStore>,
    /// Bearer credential authentication.
    pub auth: Authenticator,
    /// Outgoing mail.
    pub mailer: Mailer,
    /// Process counters.
    pub metrics: Metrics,
    /// The batching receipt appender.
    pub ledger: BatchAppender,
    /// Counts rate-limited requests in PostgreSQL, concurrent ones in one statement.
    pub rate_counter: defendable_store::ratelimit::Counter,
    /// Resolves share tokens (hashes) to their receipts, concurrent reads in one statement.
    pub share_reads: defendable_store::loader::Loader<Vec<u8>, Arc<StoredReceipt>>,
    /// Resolves share tokens to their receipts with what proves them (the proof and the page),
    /// concurrent reads in one statement.
    pub share_proofs: defendable_store::loader::Loader<Vec<u8>, Arc<ProvenReceipt>>,
    /// Resolves (organization, receipt id) to the receipt with what proves it (a member's
    /// proof against the current tree), concurrent reads in one statement.
    pub receipt_proofs: defendable_store::loader::Loader<(Uuid, String), Arc<ProvenReceipt>>,
    /// Resolves share tokens with the size each holder proves from to what proves their log
    /// consistent, concurrent reads in one statement.
    pub share_consistency: defendable_store::loader::Loader<(Vec<u8>, u64), Arc<SharedConsistency>>,
    /// Signs checkpoints: the ledger key under `LEDGER_NAME`.
    pub log: LogSigner,
    /// The keys published at `/ledger/keys` (with their vkeys): current first, then earlier ones.
    pub published_keys: Vec<PublicKey>,
    /// Presigns S3 download URLs; `None` for the local backend.
    pub presigner: Option<Arc<dyn Signer>>,
    /// Signs the API's own object URLs (local backend).
    pub url_signer: UrlSigner,
    /// `/readyz`'s object-store probe, reused for a second.
    pub object_probe: routes::health::ObjectProbe,
    /// Seals SSO client secrets; `None` when SSO_SECRET_KEY is not configured.
    pub sso_keys: Option<Arc<defendable_sso::sealed::SecretKeys>>,
    /// Looks up domain verification records (DNS_RESOLVER or the system's).
    pub dns: defendable_sso::dns::TxtResolver,
    /// Talks to identity providers (no redirects, bounded time).
    pub oidc: defendable_sso::oidc::OidcClient,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("objects", &self.objects.to_string())
            .finish_non_exhaustive()
    }
}

/// The external services the API runs on, prepared by [`boot::prepare`] or by a test.
#[derive(Clone)]
pub struct Dependencies {
    /// A pool on a migrated database.
    pub pool: Pool,
    /// The object store.
    pub objects: Arc<dyn ObjectStore>,
    /// Presigns download URLs (S3); `None` makes the API sign and serve its own `/objects/` URLs.
    pub presigner: Option<Arc<dyn Signer>>,
}

impl std::fmt::Debug for Dependencies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dependencies")
            .field("objects", &self.objects.to_string())
            .field("presigned", &self.presigner.is_some())
            .finish_non_exhaustive()
    }
}

/// A ledger error met by a batched read, as the loader reports it to every request of the batch.
fn loader_error(e: defendable_ledger::LedgerError) -> defendable_store::StoreError {
    match e {
        defendable_ledger::LedgerError::Store(e) => e,
        e => defendable_store::StoreError::Shared {
            message: e.to_string(),
            unavailable: false,
        },
    }
}

/// How often the tree integrator looks for receipts the Merkle tree does not cover yet.
const TREE_INTEGRATOR_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);
/// Receipts the integrator adds per transaction (the head lock is held that long).
const TREE_INTEGRATOR_CHUNK: u64 = 10_000;

/// Brings every lagging tree up to its chain: at boot (the migration that introduced the tree
/// leaves existing chains uncovered) and then every couple of seconds (receipts written by the
/// previous release during a deploy). Processes racing on one organization serialize on its
/// head lock; the loser finds nothing left to do.
fn spawn_tree_integrator(pool: Pool) {
    actix_web::rt::spawn(async move {
        let mut tick = tokio::time::interval(TREE_INTEGRATOR_INTERVAL);
        loop {
            tick.tick().await;
            match defendable_ledger::store::integrate_all(&pool, TREE_INTEGRATOR_CHUNK).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(leaves = n, "integrated receipts into the Merkle trees"),
                Err(e) => {
                    tracing::warn!(error = %e, "could not integrate receipts into the Merkle trees")
                }
            }
        }
    });
}

/// A bound, not yet running server.
pub struct Application {
    port: u16,
    server: Server,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Application {
    /// Binds `config.bind_addr` (port 0 picks a free port) and prepares the server.
    /// `JWT_SECRET` and `LEDGER_SIGNING_KEY` must be set (development fills them with
    /// [`defendable_boot::dev_secrets`]). Must run inside a Tokio runtime: it starts the receipt appender.
    pub fn build(config: Config, deps: Dependencies) -> anyhow::Result<Application> {
        let listener = TcpListener::bind(config.bind_addr)
            .with_context(|| format!("binding {}", config.bind_addr))?;
        Self::build_on(config, deps, listener)
    }

    /// [`Application::build`] on a socket already bound and listening: one a parent process
    /// handed down (socket activation), or one a test bound before it needed the port. No other
    /// process can take the port between the bind and the server's first accept.
    pub fn build_on(
        config: Config,
        deps: Dependencies,
        listener: TcpListener,
    ) -> anyhow::Result<Application> {
        defendable_store::install_crypto_provider();
        let jwt = config
            .jwt_secret
            .current
            .as_ref()
            .context("JWT_SECRET is not set")?;
        let keys = SessionKeys::new(
            jwt.expose_secret().as_bytes(),
            config
                .jwt_secret
                .previous
                .as_ref()
                .map(|p| p.expose_secret().as_bytes()),
            config.jwt_ttl,
        );
        let mailer = Mailer::from_config(&config)?;
        let signing_key = SigningKey::from_pkcs8(
            config
                .ledger_signing_key
                .as_ref()
                .context("LEDGER_SIGNING_KEY is not set")?
                .expose_secret(),
        )?;
        let name = LedgerName::parse(
            config
                .ledger_name
                .as_deref()
                .context("LEDGER_NAME is not set")?,
        )?;
        let mut published_keys = vec![signing_key.public_key().clone().named(&name)?];
        for old in &config.ledger_signing_keys_previous {
            published_keys.push(
                PublicKey::from_base64(old)
                    .and_then(|k| k.named(&name))
                    .context("LEDGER_SIGNING_KEYS_PREVIOUS")?,
            );
        }
        let log = LogSigner::new(name, signing_key)
            .with_checkpoint_cache(defendable_config::limits::CHECKPOINT_CACHE);
        let metrics = Metrics::new();
        let ledger = BatchAppender::start_observed(
            deps.pool.clone(),
            2,
            512,
            metrics.append_batch_observer(),
        );
        let rate_counter = defendable_store::ratelimit::Counter::start(
            deps.pool.clone(),
            defendable_config::limits::RATE_COUNT_BATCH,
        );
        let share_reads = defendable_store::loader::Loader::start(
            deps.pool.clone(),
            defendable_config::limits::SHARE_READ_BATCH,
            |client, hashes: Vec<Vec<u8>>| async move {
                let found = defendable_ledger::store::shared_receipts(&client, &hashes).await;
                Ok(found
                    .map_err(loader_error)?
                    .into_iter()
                    .map(|(h, r)| (h, Arc::new(r)))
                    .collect())
            },
        );
        let share_proofs = defendable_store::loader::Loader::start(
            deps.pool.clone(),
            defendable_config::limits::SHARE_READ_BATCH,
            |client, hashes: Vec<Vec<u8>>| async move {
                let found = defendable_ledger::store::shared_proofs(&client, &hashes).await;
                Ok(found
                    .map_err(loader_error)?
                    .into_iter()
                    .map(|(h, r)| (h, Arc::new(r)))
                    .collect())
            },
        );
        let receipt_proofs = defendable_store::loader::Loader::start(
            deps.pool.clone(),
            defendable_config::limits::SHARE_READ_BATCH,
            |client, keys: Vec<(Uuid, String)>| async move {
                let found = defendable_ledger::store::receipts_with_proofs(&client, &keys).await;
                Ok(found
                    .map_err(loader_error)?
                    .into_iter()
                    .map(|(k, r)| (k, Arc::new(r)))
                    .collect())
            },
        );
        let share_consistency = defendable_store::loader::Loader::start(
            deps.pool.clone(),
            defendable_config::limits::SHARE_READ_BATCH,
            |client, asks: Vec<(Vec<u8>, u64)>| async move {
                let found = defendable_ledger::store::shared_consistency(&client, &asks).await;
                Ok(found
                    .map_err(loader_error)?
                    .into_iter()
                    .map(|(k, c)| (k, Arc::new(c)))
                    .collect())
            },
        );
        let url_key = config
            .object_url_signing_key
            .current
            .as_ref()
            .context("OBJECT_URL_SIGNING_KEY is not set")?;
        let url_signer = UrlSigner::new(
            url_key.expose_secret().as_bytes(),
            config
                .object_url_signing_key
                .previous
                .as_ref()
                .map(|p| p.expose_secret().as_bytes()),
        );
        let sso_keys = config.sso_secret_key.current.as_ref().map(|current| {
            Arc::new(defendable_sso::sealed::SecretKeys::new(
                current.expose_secret(),
                config
                    .sso_secret_key
                    .previous
                    .as_ref()
                    .map(|p| p.expose_secret()),
            ))
        });
        let dns = match &config.dns_resolver {
            Some(server) => defendable_sso::dns::TxtResolver::parse(server)?,
            None => defendable_sso::dns::TxtResolver::system(),
        };
        let port = listener.local_addr()?.port();
        // Production reaches identity providers on public addresses only (and the networks
        // SSO_PROVIDER_ALLOWED_CIDRS lists); development also reaches the test provider on loopback.
        let oidc = defendable_sso::oidc::OidcClient::new(defendable_sso::egress::Egress {
            allow_internal: !config.app_env.is_production(),
            allowed: config.sso_provider_allowed_cidrs.clone(),
        })?;
        let state = web::Data::new(AppState {
            config,
            db: db::Db::new(deps.pool, metrics.pool_waits()),
            objects: deps.objects,
            auth: Authenticator::new(keys),
            mailer,
            metrics,
            ledger,
            rate_counter,
            share_reads,
            share_proofs,
            receipt_proofs,
            share_consistency,
            log,
            published_keys,
            presigner: deps.presigner,
            url_signer,
            object_probe: Default::default(),
            sso_keys,
            dns,
            oidc,
        });
        ratelimit::spawn_pruner(
            state.db.pool().clone(),
            state
                .config
                .rate_limits
                .iter()
                .map(|r| r.window)
                .max()
                .unwrap_or_default(),
        );
        spawn_tree_integrator(state.db.pool().clone());
        recheck::spawn(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .configure(routes::configure(&state.config))
                .wrap(routes::cors(&state.config))
                .wrap(actix_web::middleware::from_fn(middleware::edge))
        })
        .shutdown_timeout(10)
        .listen(listener)?
        .run();
        Ok(Application { port, server })
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until the process receives SIGINT/SIGTERM or the server is stopped.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}
