//! A release's server process on the drill's port, ready when `/readyz` answers 200. The drill
//! binds the port once and hands the listening socket to each server (`LISTEN_FDS=1`, the
//! socket as descriptor 3, as systemd's socket activation does), so the port is never free for
//! another process to take between a pick and a bind.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use command_fds::{CommandFdExt as _, FdMapping};

use super::process::command;
use super::{DrillEnv, WAIT};

/// A release's server on the drill's port, stopped when dropped.
pub(super) struct Server {
    child: tokio::process::Child,
}

impl Server {
    /// Starts the release in `dir` on the drill's socket. A release from before servers took a
    /// socket handed down binds `BIND_ADDR` itself and fails on the port the drill holds: the
    /// drill then gives the socket up and starts it again the old way (picked port, then bound
    /// by the child), for that release only.
    pub(super) async fn start(
        dir: &Path,
        env: &DrillEnv,
        log: PathBuf,
    ) -> std::result::Result<Server, String> {
        match Self::start_once(dir, env, &log).await {
            Err(e) if e.contains("Address already in use") && env.give_up_socket() => {
                Self::start_once(dir, env, &log).await
            }
            other => other,
        }
    }

    async fn start_once(
        dir: &Path,
        env: &DrillEnv,
        log: &Path,
    ) -> std::result::Result<Server, String> {
        let file = std::fs::File::create(log).map_err(|e| e.to_string())?;
        let err = file.try_clone().map_err(|e| e.to_string())?;
        let program = dir.join("defendable-api");
        let mut cmd = command(&program, &[], &env.server_vars());
        cmd.stdout(file).stderr(err);
        if let Some(socket) = env.socket()? {
            cmd.env("LISTEN_FDS", "1")
                .fd_mappings(vec![FdMapping {
                    parent_fd: socket,
                    child_fd: 3,
                }])
                .map_err(|e| e.to_string())?;
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("{}: {e}", program.display()))?;
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let tail = std::fs::read_to_string(log).unwrap_or_default();
                let tail: Vec<&str> = tail.lines().rev().take(5).collect();
                return Err(format!(
                    "the server exited {status} at boot: {}",
                    tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                ));
            }
            let ready = env.http.get(format!("{}/readyz", env.base)).send().await;
            if ready.is_ok_and(|r| r.status() == 200) {
                return Ok(Server { child });
            }
            if Instant::now() > deadline {
                let _ = child.kill().await;
                return Err(format!("/readyz was not 200 within {} s", WAIT.as_secs()));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub(super) async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

impl DrillEnv {
    /// A copy of the drill's server socket for a child, while the drill still holds it.
    fn socket(&self) -> std::result::Result<Option<std::os::fd::OwnedFd>, String> {
        let held = self
            .listener
            .lock()
            .map_err(|_| "the socket lock is poisoned")?;
        held.as_ref()
            .map(|l| l.try_clone().map(std::os::fd::OwnedFd::from))
            .transpose()
            .map_err(|e| format!("handing the server socket down: {e}"))
    }

    /// Gives the server socket up (closes the drill's copy); true if it held one.
    fn give_up_socket(&self) -> bool {
        self.listener
            .lock()
            .map(|mut held| held.take().is_some())
            .unwrap_or(false)
    }
}
