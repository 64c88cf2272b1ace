//! A release's server process on the drill's port, ready when `/readyz` answers 200.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::process::command;
use super::{DrillEnv, WAIT};

/// A release's server on the drill's port, stopped when dropped.
pub(super) struct Server {
    child: tokio::process::Child,
}

impl Server {
    pub(super) async fn start(
        dir: &Path,
        env: &DrillEnv,
        log: PathBuf,
    ) -> std::result::Result<Server, String> {
        let file = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        let err = file.try_clone().map_err(|e| e.to_string())?;
        let mut child = command(&dir.join("defendable-api"), &[], &env.server_vars())
            .stdout(file)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("{}: {e}", dir.join("defendable-api").display()))?;
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let tail = std::fs::read_to_string(&log).unwrap_or_default();
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
