//! The deployment an operation acts on, opened the way the server opens it: the same
//! configuration, database (DATABASE_URL or the development cluster), development secrets and
//! object store. Opening applies no migration.

use std::str::FromStr;
use std::sync::Arc;

use deadpool_postgres::Pool;
use defendable_boot as boot;
use defendable_config::{Config, Env};
use defendable_ledger::note::LogSigner;
use defendable_ledger::{LedgerName, PublicKey, SigningKey, Vkeys};
use defendable_store::cluster::Cluster;
use object_store::ObjectStore;
use secrecy::ExposeSecret;
use uuid::Uuid;

use crate::{OpsError, Result};

/// An opened deployment.
pub struct Deployment {
    /// Its configuration (development secrets filled in).
    pub config: Config,
    /// The database URL (it may hold a password: never print it).
    database_url: String,
    /// A small pool on it.
    pub pool: Pool,
    /// Its object store.
    pub objects: Arc<dyn ObjectStore>,
    /// The development cluster, when there is no DATABASE_URL (left running).
    _cluster: Option<Cluster>,
}

impl std::fmt::Debug for Deployment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deployment")
            .field("app_env", &self.config.app_env)
            .finish_non_exhaustive()
    }
}

fn setup(e: impl std::fmt::Display) -> OpsError {
    OpsError::Setup(e.to_string())
}

impl Deployment {
    /// Opens the deployment the process environment describes. The server's production boot
    /// rules are not applied (a drill host has no mail settings, say); each operation checks
    /// the settings it needs and names what is missing.
    pub async fn from_env() -> Result<Deployment> {
        let config = Config::parse(&Env::from_process()).map_err(setup)?;
        Deployment::open(config).await
    }

    /// Opens the deployment `config` describes.
    pub async fn open(mut config: Config) -> Result<Deployment> {
        boot::dev_secrets(&mut config).map_err(setup)?;
        let (database_url, cluster) = boot::database(&config).await.map_err(setup)?;
        let pool = defendable_store::pool(&database_url, 8)?;
        let (objects, _) = boot::object_store(&config).map_err(setup)?;
        Ok(Deployment {
            config,
            database_url,
            pool,
            objects,
            _cluster: cluster,
        })
    }

    /// The database URL, for PostgreSQL's own programs.
    pub fn database_url(&self) -> &str {
        &self.database_url
    }

    /// The checkpoint signing key.
    pub fn signing_key(&self) -> Result<SigningKey> {
        let key = self
            .config
            .ledger_signing_key
            .as_ref()
            .ok_or_else(|| setup("LEDGER_SIGNING_KEY is not set"))?;
        Ok(SigningKey::from_pkcs8(key.expose_secret())?)
    }

    /// `LEDGER_NAME`: the key name of every signed checkpoint.
    pub fn ledger_name(&self) -> Result<LedgerName> {
        let name = self
            .config
            .ledger_name
            .as_deref()
            .ok_or_else(|| setup("LEDGER_NAME is not set: use the deployment's log name"))?;
        Ok(LedgerName::parse(name)?)
    }

    /// The log signer: the checkpoint key under `LEDGER_NAME`.
    pub fn log_signer(&self) -> Result<LogSigner> {
        Ok(LogSigner::new(self.ledger_name()?, self.signing_key()?))
    }

    /// The published verification keys, each with its name and vkey: the current key's public
    /// half when LEDGER_SIGNING_KEY is set, and LEDGER_SIGNING_KEYS_PREVIOUS. A drill host needs
    /// no private key: list the public keys of `/ledger/keys` in LEDGER_SIGNING_KEYS_PREVIOUS
    /// there.
    pub fn published_keys(&self) -> Result<Vec<PublicKey>> {
        let name = self.ledger_name()?;
        let mut keys = Vec::new();
        if self.config.ledger_signing_key.is_some() {
            keys.push(self.signing_key()?.public_key().clone().named(&name)?);
        }
        for old in &self.config.ledger_signing_keys_previous {
            keys.push(PublicKey::from_base64(old)?.named(&name)?);
        }
        if keys.is_empty() {
            return Err(setup(
                "no checkpoint verification key: set LEDGER_SIGNING_KEYS_PREVIOUS to the public keys listed at /ledger/keys",
            ));
        }
        Ok(keys)
    }

    /// The published keys as signed-note verifiers.
    pub fn vkeys(&self) -> Result<Vkeys> {
        let vkeys: Vec<String> = self.published_keys()?.into_iter().map(|k| k.vkey).collect();
        Ok(Vkeys::parse(&vkeys)?)
    }

    fn development_identity(&self) -> Result<age::x25519::Identity> {
        let text = boot::kept_secret(&self.config.data_dir, "backup_identity", || {
            Ok(age::x25519::Identity::generate()
                .to_string()
                .expose_secret()
                .to_owned())
        })
        .map_err(setup)?;
        age::x25519::Identity::from_str(text.trim())
            .map_err(|e| setup(format!("the development backup identity: {e}")))
    }

    /// The key that signs backup manifests ([`crate::manifest::backup_key`]).
    pub fn backup_key(&self) -> Result<defendable_ledger::SigningKey> {
        crate::manifest::backup_key(&self.config)
    }

    /// The backup-signing vkeys a drill pins ([`crate::manifest::backup_vkeys`]).
    pub fn backup_vkeys(&self) -> Result<defendable_ledger::Vkeys> {
        crate::manifest::backup_vkeys(&self.config)
    }

    /// The recipient backups are encrypted to: BACKUP_RECIPIENT, or in development the public
    /// half of a generated identity.
    pub fn recipient(&self) -> Result<age::x25519::Recipient> {
        match &self.config.backup_recipient {
            Some(r) => age::x25519::Recipient::from_str(r.trim()).map_err(|e| {
                setup(format!("BACKUP_RECIPIENT is not an age X25519 recipient (age1…): {e}"))
            }),
            None if !self.config.app_env.is_production() => {
                Ok(self.development_identity()?.to_public())
            }
            None => Err(setup(
                "BACKUP_RECIPIENT is not set: generate a key pair with `age-keygen -o backup.key` on the drill host and set BACKUP_RECIPIENT to its public key (age1…)",
            )),
        }
    }

    /// The identity drills decrypt with: BACKUP_IDENTITY_FILE, or in development the
    /// generated identity.
    pub fn identity(&self) -> Result<age::x25519::Identity> {
        match &self.config.backup_identity_file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| OpsError::io(path, e))?;
                let line = text
                    .lines()
                    .map(str::trim)
                    .find(|l| l.starts_with("AGE-SECRET-KEY-"))
                    .ok_or_else(|| {
                        setup(format!("{} holds no AGE-SECRET-KEY-… line", path.display()))
                    })?;
                age::x25519::Identity::from_str(line)
                    .map_err(|e| setup(format!("{}: {e}", path.display())))
            }
            None if !self.config.app_env.is_production() => self.development_identity(),
            None => Err(setup(
                "BACKUP_IDENTITY_FILE is not set: point it at the age identity whose public key is BACKUP_RECIPIENT",
            )),
        }
    }

    /// The organization whose chain records operations (OPERATOR_ORG), as id and slug.
    pub async fn operator_org(&self) -> Result<(Uuid, String)> {
        let named = self.config.operator_org.as_deref().ok_or_else(|| {
            setup(
                "OPERATOR_ORG is not set: name the organization whose chain records operations \
                 (for example create one with `defendable orgs create --slug operations --name Operations`)",
            )
        })?;
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT id, slug FROM orgs WHERE slug = $1 OR id::text = $1",
                &[&named],
            )
            .await?
            .ok_or_else(|| setup(format!("OPERATOR_ORG {named:?} names no organization")))?;
        Ok((row.get(0), row.get(1)))
    }
}
