//! Outgoing mail with lettre: an SMTP relay (`SMTP_URL`, or Resend's relay with
//! `RESEND_API_KEY`) or, in development, the outbox directory (one `.eml` file per message).

use std::path::PathBuf;

use anyhow::Context as _;
use defendable_config::Config;
use defendable_identity::Email;
use lettre::message::Mailbox;
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;

/// A message carrying one link.
#[derive(Debug)]
pub struct LinkMail<'a> {
    /// Recipient.
    pub to: &'a Email,
    /// Subject line.
    pub subject: &'a str,
    /// Text before the link.
    pub intro: &'a str,
    /// The link (contains a secret token).
    pub link: &'a str,
    /// Text after the link.
    pub outro: &'a str,
}

/// Why a message was not sent. Never contains the link.
#[derive(Debug, thiserror::Error)]
#[error("mail delivery failed: {0}")]
pub struct MailError(String);

enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Outbox(AsyncFileTransport<Tokio1Executor>, PathBuf),
}

/// Sends mail through the configured transport.
pub struct Mailer {
    transport: Transport,
    from: Mailbox,
    log_links: bool,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.transport {
            Transport::Smtp(_) => "smtp",
            Transport::Outbox(..) => "outbox",
        };
        f.debug_struct("Mailer")
            .field("transport", &kind)
            .finish_non_exhaustive()
    }
}

const RESEND_RELAY: &str = "smtp.resend.com";

impl Mailer {
    /// The transport `config` names: SMTP_URL, else Resend's relay, else the outbox.
    pub fn from_config(config: &Config) -> anyhow::Result<Mailer> {
        let from: Mailbox = config.email_from.parse().with_context(|| {
            format!("EMAIL_FROM {:?} is not a valid mailbox", config.email_from)
        })?;
        let transport = if let Some(url) = &config.smtp_url {
            // The URL carries credentials: never echo it.
            let builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose_secret())
                .map_err(|e| anyhow::anyhow!("SMTP_URL is not a valid SMTP URL: {e}"))?;
            Transport::Smtp(
                builder
                    .timeout(Some(std::time::Duration::from_secs(10)))
                    .build(),
            )
        } else if let Some(key) = &config.resend_api_key {
            let builder = AsyncSmtpTransport::<Tokio1Executor>::relay(RESEND_RELAY)
                .map_err(|e| anyhow::anyhow!("Resend relay: {e}"))?;
            Transport::Smtp(
                builder
                    .credentials(lettre::transport::smtp::authentication::Credentials::new(
                        "resend".into(),
                        key.expose_secret().to_owned(),
                    ))
                    .timeout(Some(std::time::Duration::from_secs(10)))
                    .build(),
            )
        } else {
            let dir = config.data_dir.join("outbox");
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            Transport::Outbox(AsyncFileTransport::new(&dir), dir)
        };
        Ok(Mailer {
            transport,
            from,
            log_links: config.dev_log_mail_links && !config.app_env.is_production(),
        })
    }

    /// Sends one message.
    pub async fn send(&self, mail: LinkMail<'_>) -> Result<(), MailError> {
        let to: Mailbox = mail
            .to
            .as_str()
            .parse()
            .map_err(|e| MailError(format!("recipient: {e}")))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject)
            .header(lettre::message::header::ContentType::TEXT_PLAIN)
            .body(format!(
                "{}\n\n{}\n\n{}\n",
                mail.intro, mail.link, mail.outro
            ))
            .map_err(|e| MailError(format!("building the message: {e}")))?;
        match &self.transport {
            Transport::Smtp(smtp) => {
                smtp.send(message)
                    .await
                    .map_err(|e| MailError(e.to_string()))?;
            }
            Transport::Outbox(file, dir) => {
                let id = file
                    .send(message)
                    .await
                    .map_err(|e| MailError(e.to_string()))?;
                if self.log_links {
                    tracing::info!(
                        outbox = %dir.join(format!("{id}.eml")).display(),
                        link = mail.link,
                        "development mail written to the outbox"
                    );
                } else {
                    tracing::info!(outbox = %dir.join(format!("{id}.eml")).display(), "mail written to the outbox");
                }
            }
        }
        Ok(())
    }
}
