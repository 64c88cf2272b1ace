//! What each command does: calls through [`Api`], results as [`Output`], failures as [`Exit`].

use std::io::BufRead;
use std::path::Path;

use reqwest::Method;
use serde_json::{json, Value};

mod datasets;
mod ledger;
mod orgs;
mod receipts;
mod session;
mod verify;

use datasets::datasets;
use ledger::ledger;
use orgs::{invites, keys, members, orgs};
use receipts::receipts;
use session::{login, logout, save_session, whoami};
use verify::run_verify;

use crate::cli::{Cli, Command, Datasets, Invites, Keys, Ledger, Members, Orgs, Receipts};
use crate::client::{encode, root_cause, typed, Api, Body};
use crate::credentials::{self, Credentials, Saved, Token, TokenSource};
use crate::download::{self, Plan};
use crate::monitor::{self, TrustOptions};
use crate::output::{bytes, count, table};
use crate::{Exit, Output};
use defendable_datasets::view::DatasetView;
use defendable_identity::view::{
    ApiKeyView, AuthRequest, CreateApiKey, CreateInvite, CreateOrg, CreatedApiKeyView, InviteView,
    MeView, MemberView, MembershipView, OrgView, RoleView, SessionView, SetRole, VerifyBody,
};
use defendable_ledger::view::ShareRequest;
use defendable_ledger::{BodyFields, ChainCheck, ReceiptPage, ReceiptView, ShareLink};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// What every command knows: the parsed flags, the token from the environment and stdin.
pub struct Context<'a> {
    /// API base URL without a trailing slash.
    pub api: String,
    /// `--org` / `DEFENDABLE_ORG`.
    pub org: Option<String>,
    /// `--json`.
    pub json: bool,
    /// `DEFENDABLE_TOKEN`.
    pub env_token: Option<String>,
    /// Where pasted links and `--public -` come from.
    pub input: &'a mut dyn BufRead,
}

impl std::fmt::Debug for Context<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("api", &self.api)
            .field("org", &self.org)
            .field("json", &self.json)
            .finish_non_exhaustive()
    }
}

impl Context<'_> {
    fn client(&self) -> Result<Api, Exit> {
        let token = credentials::token_for(&self.api, self.env_token.clone())?;
        Api::new(&self.api, token)
    }

    fn authed(&self) -> Result<Api, Exit> {
        let api = self.client()?;
        api.require_token()?;
        Ok(api)
    }

    /// `--org`, else the organization saved at login.
    fn org(&self) -> Result<String, Exit> {
        if let Some(o) = &self.org {
            return Ok(o.clone());
        }
        let env_token = self
            .env_token
            .as_deref()
            .is_some_and(|t| !t.trim().is_empty());
        if !env_token {
            let saved = Credentials::load(&credentials::path()?)?;
            if let Some(org) = saved.servers.get(&self.api).and_then(|s| s.org.clone()) {
                return Ok(org);
            }
        }
        Err(Exit::usage(
            "name an organization with --org (or DEFENDABLE_ORG); `defendable orgs list` shows yours",
        ))
    }

    fn org_path(&self, rest: &str) -> Result<String, Exit> {
        Ok(format!("/orgs/{}{rest}", encode(&self.org()?)))
    }
}

/// Runs a parsed command line.
pub async fn run(cli: Cli, ctx: &mut Context<'_>) -> Result<Output, Exit> {
    match cli.command {
        Command::Login {
            email, sso: false, ..
        } => login(ctx, email.as_deref().unwrap_or_default()).await,
        Command::Login {
            email,
            invite,
            no_browser,
            ..
        } => {
            let by = match (email, invite, ctx.org.clone()) {
                (Some(email), false, _) => crate::sso::By::Email(email),
                (None, true, _) => {
                    eprintln!("Paste the invite link (or its token) and press Enter:");
                    let mut line = String::new();
                    ctx.input
                        .read_line(&mut line)
                        .map_err(|e| Exit::usage(format!("reading the invite link: {e}")))?;
                    crate::sso::By::Invite(token_from_pasted(&line)?)
                }
                (None, false, Some(org)) => crate::sso::By::Org(org),
                _ => {
                    return Err(Exit::usage(
                        "with --sso, give --email, --invite or --org (an organization with one connection)",
                    ))
                }
            };
            let session = crate::sso::sign_in(&ctx.api, by, !no_browser).await?;
            save_session(ctx, session).await
        }
        Command::Logout => logout(ctx).await,
        Command::Whoami => whoami(ctx).await,
        Command::Orgs(c) => orgs(ctx, c).await,
        Command::Members(c) => members(ctx, c).await,
        Command::Invites(c) => invites(ctx, c).await,
        Command::Keys(c) => keys(ctx, c).await,
        Command::Receipts(c) => receipts(ctx, c).await,
        Command::Ledger(c) => ledger(ctx, c).await,
        Command::Datasets(c) => datasets(ctx, c).await,
        Command::Verify {
            target,
            vkeys,
            trust_new_keys,
            keys,
        } => {
            let opts = TrustOptions {
                keys,
                vkeys,
                trust_new_keys,
            };
            run_verify(ctx, &target, &opts).await
        }
        Command::Completions { shell } => Ok(completions(shell)),
    }
}

/// The completion script for `shell`, generated from the command line's own definition.
fn completions(shell: clap_complete::Shell) -> Output {
    use clap::CommandFactory as _;
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "defendable", &mut script);
    let script = String::from_utf8_lossy(&script).trim_end().to_owned();
    Output {
        json: json!({ "shell": shell.to_string(), "script": script }),
        human: script,
    }
}

/// The token in a pasted sign-in link (its `token` parameter), or a pasted bare token.
pub fn token_from_pasted(pasted: &str) -> Result<String, Exit> {
    let pasted = pasted.trim();
    let token = match pasted.find("token=") {
        Some(i) => pasted[i + "token=".len()..]
            .split(['&', '#', ' '])
            .next()
            .unwrap_or(""),
        None => pasted,
    };
    if token.is_empty()
        || !token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(Exit::usage(
            "that is neither a sign-in link nor a token; paste the whole link from the email",
        ));
    }
    Ok(token.to_owned())
}

fn listed<T: serde::Serialize>(
    items: Vec<T>,
    headers: &[&str],
    row: impl Fn(&T) -> Vec<String>,
) -> Output {
    let rows: Vec<Vec<String>> = items.iter().map(row).collect();
    Output::new(json!({ "items": items }), table(headers, &rows))
}

/// A time as the API writes it (RFC 3339).
fn when(t: &OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// An optional time, `-` when absent (as tables show a null).
fn when_opt(t: &Option<OffsetDateTime>) -> String {
    t.as_ref().map(when).unwrap_or_else(|| "-".to_owned())
}

/// A role's name.
fn role(r: RoleView) -> &'static str {
    defendable_identity::Role::from(r).as_str()
}

/// An API key's expiry as given on the command line (RFC 3339).
fn parse_expiry(raw: &str) -> Result<OffsetDateTime, Exit> {
    OffsetDateTime::parse(raw, &Rfc3339).map_err(|e| {
        Exit::usage(format!(
            "--expires-at must be an RFC 3339 time such as 2027-01-31T00:00:00Z: {e}"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pasted_link_or_token_gives_the_token() {
        let t = "Ab3_-xYz";
        assert_eq!(token_from_pasted(t).expect("bare"), t);
        assert_eq!(
            token_from_pasted(&format!("https://app.example/auth?token={t}&next=/\n"))
                .expect("link"),
            t
        );
        assert_eq!(
            token_from_pasted("").expect_err("empty").code,
            crate::EXIT_USAGE
        );
        assert!(token_from_pasted("not a <token>").is_err());
    }
}
