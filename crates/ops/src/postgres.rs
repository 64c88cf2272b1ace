//! PostgreSQL's own programs (`pg_dump`, `pg_restore`): the password goes in `PGPASSWORD`,
//! never on a command line other users can read.

use std::process::Command;

use defendable_store::conninfo;

use crate::{OpsError, Result};

pub use conninfo::describe;

/// Where Debian keeps the system's trusted CAs, for libpq's `verify-full` (PostgreSQL 15's libpq
/// has no `sslrootcert=system`).
const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// A command for `program` connected to `url`, the password passed in the environment. A server
/// on another machine is reached with `sslmode=verify-full` against the system's CAs, unless
/// `PGSSLROOTCERT` names the operator's own CA.
pub fn command(program: &str, url: &str) -> Result<Command> {
    let (conn, password, verify) = conninfo::for_programs(url)?;
    let mut cmd = Command::new(defendable_store::cluster::program(program)?);
    cmd.arg(format!("--dbname={conn}"));
    if let Some(p) = password {
        cmd.env("PGPASSWORD", p);
    }
    if verify
        && std::env::var_os("PGSSLROOTCERT").is_none()
        && std::path::Path::new(SYSTEM_ROOTS).exists()
    {
        cmd.env("PGSSLROOTCERT", SYSTEM_ROOTS);
    }
    Ok(cmd)
}

/// A running PostgreSQL program whose standard error is collected on a thread, so a chatty
/// program never blocks on a full pipe.
pub struct Running {
    program: &'static str,
    /// The child; take its stdin or stdout before waiting.
    pub child: std::process::Child,
    errors: std::thread::JoinHandle<String>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("program", &self.program)
            .finish()
    }
}

/// The failure of `program`.
pub fn tool_error(program: &str, detail: impl std::fmt::Display) -> OpsError {
    OpsError::Tool {
        program: program.to_owned(),
        detail: detail.to_string(),
    }
}

impl Running {
    /// Starts `cmd` (made by [`command`] for `program`) with standard error piped.
    pub fn spawn(program: &'static str, mut cmd: Command) -> Result<Running> {
        cmd.stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| tool_error(program, e))?;
        let mut stderr = child
            .stderr
            .take()
            .ok_or_else(|| tool_error(program, "no stderr"))?;
        let errors = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
            s
        });
        Ok(Running {
            program,
            child,
            errors,
        })
    }

    /// Waits; a non-zero exit becomes an error carrying what the program printed.
    pub fn finish(mut self) -> Result<()> {
        let status = self.child.wait().map_err(|e| tool_error(self.program, e))?;
        let stderr = self.errors.join().unwrap_or_default();
        if status.success() {
            Ok(())
        } else {
            Err(tool_error(
                self.program,
                format!("{status}: {}", stderr.trim()),
            ))
        }
    }
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
