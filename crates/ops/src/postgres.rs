//! PostgreSQL's own programs (`pg_dump`, `pg_restore`): the password goes in `PGPASSWORD`,
//! never on a command line other users can read.

use std::process::Command;

use defendable_store::conninfo;

use crate::Result;

pub use conninfo::describe;

/// A command for `program` connected to `url`, the password passed in the environment.
pub fn command(program: &str, url: &str) -> Result<Command> {
    let (bare, password) = conninfo::without_password(url)?;
    let mut cmd = Command::new(defendable_store::cluster::program(program)?);
    cmd.arg(format!("--dbname={bare}"));
    if let Some(p) = password {
        cmd.env("PGPASSWORD", p);
    }
    Ok(cmd)
}

/// `url` naming another database on the same server.
pub fn with_database(url: &str, database: &str) -> Result<String> {
    Ok(conninfo::with_database(url, database)?)
}

/// Connects one client (TLS as the pool does) and drives its connection in the background.
pub async fn connect(url: &str) -> Result<deadpool_postgres::Object> {
    let pool = defendable_store::pool(url, 1)?;
    Ok(pool.get().await?)
}
