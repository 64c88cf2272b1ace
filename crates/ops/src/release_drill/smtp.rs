//! The drill's mail capture: a minimal SMTP server on loopback (port 0, bound here) that keeps
//! every message, so the drill's sign-in mail never leaves the machine.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::{OpsError, Result};

/// A minimal SMTP server on loopback that keeps every message it is given (the drill's mail
/// never leaves the machine).
#[derive(Clone)]
pub(super) struct SmtpCapture {
    pub(super) port: u16,
    messages: Arc<Mutex<Vec<String>>>,
}

impl SmtpCapture {
    pub(super) async fn start() -> Result<SmtpCapture> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| OpsError::Setup(format!("the SMTP capture server: {e}")))?;
        let port = listener
            .local_addr()
            .map_err(|e| OpsError::Setup(e.to_string()))?
            .port();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let kept = messages.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let kept = kept.clone();
                tokio::spawn(async move {
                    let _ = smtp_session(socket, kept).await;
                });
            }
        });
        Ok(SmtpCapture { port, messages })
    }

    /// The sign-in link in the newest message to `to`, quoted-printable decoded.
    pub(super) fn link_to(&self, to: &str) -> Option<String> {
        let messages = self.messages.lock().unwrap_or_else(|p| p.into_inner());
        let text = messages.iter().rev().find(|m| m.contains(to))?;
        let plain = text.replace("=\r\n", "").replace("=3D", "=");
        let start = plain.find("http")?;
        let link: String = plain[start..]
            .chars()
            .take_while(|c| !c.is_whitespace() && *c != '"' && *c != '<')
            .collect();
        link.contains("token=").then_some(link)
    }
}

async fn smtp_session(
    socket: tokio::net::TcpStream,
    kept: Arc<Mutex<Vec<String>>>,
) -> std::io::Result<()> {
    let (read, mut write) = socket.into_split();
    let mut lines = BufReader::new(read).lines();
    write.write_all(b"220 drill.invalid capture\r\n").await?;
    let mut message = String::new();
    let mut in_data = false;
    while let Some(line) = lines.next_line().await? {
        if in_data {
            if line == "." {
                in_data = false;
                kept.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(std::mem::take(&mut message));
                write.write_all(b"250 kept\r\n").await?;
            } else {
                message.push_str(line.strip_prefix('.').unwrap_or(&line));
                message.push_str("\r\n");
            }
            continue;
        }
        let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" | "HELO" => b"250 drill.invalid\r\n",
            "DATA" => {
                in_data = true;
                b"354 end with .\r\n"
            }
            "QUIT" => {
                write.write_all(b"221 bye\r\n").await?;
                return Ok(());
            }
            _ => b"250 ok\r\n",
        };
        write.write_all(reply).await?;
    }
    Ok(())
}
