//! Turns a [`Config`] into the server's running dependencies: the database and its
//! migrations, the pool and the object store, wired by `defendable-boot` (which the operations
//! tool shares).

use anyhow::{Context, Result};
use defendable_boot::{database, object_store, server_pool_settings};
use defendable_config::Config;
use defendable_store::cluster::Cluster;

use crate::Dependencies;

/// Prepares everything the server needs. Returns the development cluster when one was
/// started, so the caller can stop it on shutdown.
pub async fn prepare(config: &Config) -> Result<(Dependencies, Option<Cluster>)> {
    let (url, cluster) = database(config).await?;
    // Migrations run on a patient pool of their own: a long index build must not meet the
    // server's statement timeout.
    let migrator = defendable_store::pool(&url, 1)?;
    defendable_store::migrate(&migrator)
        .await
        .context("applying migrations")?;
    migrator.close();
    let pool = defendable_store::pool_with(&url, server_pool_settings(config.database_pool_size))?;
    let (objects, presigner) = object_store(config)?;
    Ok((
        Dependencies {
            pool,
            objects,
            presigner,
        },
        cluster,
    ))
}
