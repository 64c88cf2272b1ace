//! Running the drilled release's programs: a clean environment (only the given variables and
//! `PATH`), bounded waits, and what went wrong in one line.

use std::path::Path;
use std::process::Stdio;

use tokio::io::AsyncWriteExt;

use super::WAIT;

/// A command with only the given environment (and PATH), so nothing of the deployment the drill
/// runs from leaks into the drilled processes.
pub(super) fn command(
    program: &Path,
    args: &[&str],
    vars: &[(String, String)],
) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Runs a program to completion; its standard output, or what went wrong.
pub(super) async fn run(
    program: &Path,
    args: &[&str],
    vars: &[(String, String)],
    stdin: Option<&str>,
) -> std::result::Result<String, String> {
    let name = program
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let what = format!("{name} {}", args.join(" "));
    let mut cmd = command(program, args, vars);
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = cmd.spawn().map_err(|e| format!("{what}: {e}"))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .await
            .map_err(|e| format!("{what}: {e}"))?;
    }
    let out = tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .map_err(|_| format!("{what} did not finish in {} s", WAIT.as_secs()))?
        .map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        // A command that reports on standard output (storage-check) says why there.
        let stderr = String::from_utf8_lossy(&out.stderr);
        let said = if stderr.trim().is_empty() {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::trim)
                .collect::<Vec<_>>()
                .join("; ")
        } else {
            stderr.trim().to_owned()
        };
        Err(format!("`{what}` exited {}: {said}", out.status))
    }
}
