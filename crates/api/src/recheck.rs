//! The shell of the daily domain re-check (`defendable_sso::recheck`): every process tries each
//! [`SSO_DOMAIN_RECHECK_TICK`](defendable_config::limits::SSO_DOMAIN_RECHECK_TICK) to claim a
//! round (one process at a time gets it, under the core's advisory lock), looks each claimed
//! domain up with no connection held, records the outcome, and mails the owners a warning on a
//! domain's first miss.

use actix_web::web;
use defendable_sso::recheck::{self, Recorded};

use defendable_sso::dns::TxtResolver;

use crate::mail::{LinkMail, Mailer};
use crate::AppState;

/// What a round needs from the process.
#[derive(Debug)]
pub struct Rechecker<'a> {
    /// The database.
    pub pool: &'a deadpool_postgres::Pool,
    /// The TXT lookups (`DNS_RESOLVER` or the system's).
    pub dns: &'a TxtResolver,
    /// Where warnings go.
    pub mailer: &'a Mailer,
    /// `API_BASE_URL`, for the link in the warning.
    pub api_base: String,
}

/// Starts the re-check loop on this process.
pub fn spawn(state: web::Data<AppState>) {
    actix_web::rt::spawn(async move {
        let mut tick = tokio::time::interval(defendable_config::limits::SSO_DOMAIN_RECHECK_TICK);
        loop {
            tick.tick().await;
            let rechecker = Rechecker {
                pool: state.db.pool(),
                dns: &state.dns,
                mailer: &state.mailer,
                api_base: state.config.api_base_url().to_string(),
            };
            if let Err(e) = rechecker.round(time::OffsetDateTime::now_utc()).await {
                tracing::warn!(error = %e, "the domain re-check round failed");
            }
        }
    });
}

impl Rechecker<'_> {
    /// One round at `now`: how many domains it looked at.
    pub async fn round(&self, now: time::OffsetDateTime) -> anyhow::Result<usize> {
        let due = {
            let mut client = self.pool.get().await?;
            recheck::claim_due(&mut client, now).await?
        };
        for d in &due {
            let seen = recheck::look(self.dns, d).await;
            let recorded = {
                let mut client = self.pool.get().await?;
                recheck::record(&mut client, d, &seen, now).await?
            };
            self.tell(d, recorded).await;
        }
        Ok(due.len())
    }

    async fn tell(&self, d: &recheck::Due, recorded: Recorded) {
        match recorded {
            Recorded::Nothing => {}
            Recorded::Warn { owners } => {
                tracing::warn!(org_id = %d.org, domain = %d.domain, "a verified domain's TXT challenge is missing; its owners are warned");
                let link = format!(
                    "{}/orgs/{}/domains",
                    self.api_base.trim_end_matches('/'),
                    d.org
                );
                let intro = format!(
                    "Defendable looked up {} and found no TXT record holding your organization's challenge for {}. Keep the record published: unless it is back, the domain is unverified after {} days of consecutive answers without it, and single sign-on stops routing its addresses until it is verified again.",
                    d.domain.challenge_name(),
                    d.domain,
                    recheck::UNVERIFY_AFTER.as_secs() / 86_400
                );
                let outro = format!("Publish {} and nothing else changes.", d.challenge);
                for owner in &owners {
                    let mail = LinkMail {
                        to: owner,
                        subject: "Your domain's verification record is missing",
                        intro: &intro,
                        link: &link,
                        outro: &outro,
                    };
                    if let Err(e) = self.mailer.send(mail).await {
                        tracing::warn!(error = %e, domain = %d.domain, "could not mail the domain warning");
                    }
                }
            }
            Recorded::Unverified { receipt } => {
                tracing::warn!(org_id = %d.org, domain = %d.domain, receipt, "a verified domain was unverified: its TXT challenge stayed missing");
            }
        }
    }
}
