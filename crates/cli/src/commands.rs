//! What each command does: calls through [`Api`], results as [`Output`], failures as [`Exit`].

use std::io::BufRead;
use std::path::Path;

use reqwest::Method;
use serde_json::{json, Value};

use crate::cli::{Cli, Command, Datasets, Invites, Keys, Ledger, Members, Orgs, Receipts};
use crate::client::{encode, root_cause, typed, Api, Body};
use crate::credentials::{self, Credentials, Saved, Token, TokenSource};
use crate::download::{self, Plan};
use crate::monitor::{self, TrustOptions};
use crate::output::{bytes, count, table};
use crate::{Exit, Output};
use defendable_datasets::view::DatasetView;
use defendable_identity::view::{
    ApiKeyView, CreatedApiKeyView, InviteView, MeView, MemberView, MembershipView, OrgView,
    RoleView, SessionView,
};
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

async fn login(ctx: &mut Context<'_>, email: &str) -> Result<Output, Exit> {
    let anonymous = Api::new(&ctx.api, None)?;
    anonymous
        .call(
            Method::POST,
            "/auth/request",
            Body::Json(json!({ "email": email })),
        )
        .await?;
    eprintln!(
        "A sign-in link was mailed to {email}. Paste the link (or its token) and press Enter:"
    );
    let mut line = String::new();
    ctx.input
        .read_line(&mut line)
        .map_err(|e| Exit::usage(format!("reading the link: {e}")))?;
    let token = token_from_pasted(&line)?;
    let session: SessionView = typed(
        anonymous
            .call(
                Method::POST,
                "/auth/verify",
                Body::Json(json!({ "token": token })),
            )
            .await?,
    )?;
    save_session(ctx, session).await
}

/// Saves a new session for this server with a default organization (the one given, else the
/// personal one, else the first).
async fn save_session(ctx: &mut Context<'_>, session: SessionView) -> Result<Output, Exit> {
    let access = session.access_token;
    let api = Api::new(
        &ctx.api,
        Some(Token::new(access.clone(), TokenSource::File)),
    )?;
    let me: MeView = api.get_as("/me").await?;
    let email = me.user.email.clone();
    let org = ctx.org.clone().or_else(|| {
        me.memberships
            .iter()
            .find(|m| m.org.personal)
            .or(me.memberships.first())
            .map(|m| m.org.slug.clone())
    });
    let path = credentials::path()?;
    let mut saved = Credentials::load(&path)?;
    saved.servers.insert(
        ctx.api.clone(),
        Saved {
            token: access,
            email: email.clone(),
            org: org.clone(),
        },
    );
    saved.store(&path)?;
    let default = org
        .as_deref()
        .map(|o| format!("; default organization {o}"))
        .unwrap_or_default();
    Ok(Output::new(
        json!({"ok": true, "email": email, "user_id": me.user.id, "org": org,
               "credentials": path.display().to_string()}),
        format!(
            "signed in to {} as {email}{default} (session saved in {})",
            ctx.api,
            path.display()
        ),
    ))
}

async fn logout(ctx: &mut Context<'_>) -> Result<Output, Exit> {
    let api = ctx.authed()?;
    let token = api.require_token()?;
    if token.is_api_key() {
        return Err(Exit::usage(
            "DEFENDABLE_TOKEN holds an API key, which has no session; revoke it with `defendable keys revoke`",
        ));
    }
    let ended = match api.call(Method::POST, "/auth/logout", Body::None).await {
        Ok(_) => true,
        // Already expired or ended elsewhere: forgetting it here is all that is left.
        Err(e) if e.code == crate::EXIT_AUTH => false,
        Err(e) => return Err(e),
    };
    let mut forgot = false;
    if token.source == TokenSource::File {
        let path = credentials::path()?;
        let mut saved = Credentials::load(&path)?;
        forgot = saved.servers.remove(&ctx.api).is_some();
        saved.store(&path)?;
    }
    let human = match (ended, forgot) {
        (true, true) => "signed out; the session is ended on the server and forgotten here",
        (true, false) => "signed out; the session in DEFENDABLE_TOKEN is ended on the server",
        (false, _) => "the session had already ended; it is forgotten here",
    };
    Ok(Output::new(
        json!({"ok": true, "ended": ended, "forgotten": forgot}),
        human,
    ))
}

async fn whoami(ctx: &mut Context<'_>) -> Result<Output, Exit> {
    let api = ctx.authed()?;
    let token = api.require_token()?;
    let source = match token.source {
        TokenSource::Env => "DEFENDABLE_TOKEN",
        TokenSource::File => "the saved session",
    };
    if token.is_api_key() {
        // A key has no user; any route keys may use tells whether it is still valid.
        api.get("/datasets/catalog?limit=1").await?;
        let prefix: String = token.expose().chars().take(8).collect();
        return Ok(Output::new(
            json!({"ok": true, "principal": "api_key", "prefix": prefix, "source": source}),
            format!("an API key ({prefix}…) from {source}; it acts for the organization that created it"),
        ));
    }
    let me: MeView = api.get_as("/me").await?;
    let rows: Vec<Vec<String>> = me
        .memberships
        .iter()
        .map(|m| vec![m.org.slug.clone(), role(m.role).to_owned()])
        .collect();
    Ok(Output::new(
        json!({"ok": true, "principal": "user", "user": me.user, "memberships": me.memberships, "source": source}),
        format!(
            "{} (user {}), from {source}\n{}",
            me.user.email,
            me.user.id,
            table(&["ORG", "ROLE"], &rows)
        ),
    ))
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

async fn orgs(ctx: &mut Context<'_>, c: Orgs) -> Result<Output, Exit> {
    let api = ctx.authed()?;
    match c {
        Orgs::List => Ok(listed(
            api.all_pages_as::<MembershipView>("/orgs").await?,
            &["SLUG", "NAME", "ROLE", "PERSONAL", "ID"],
            |m| {
                vec![
                    m.org.slug.clone(),
                    m.org.name.clone(),
                    role(m.role).to_owned(),
                    m.org.personal.to_string(),
                    m.org.id.to_string(),
                ]
            },
        )),
        Orgs::Create { slug, name } => {
            let org: OrgView = typed(
                api.call(
                    Method::POST,
                    "/orgs",
                    Body::Json(json!({"slug": slug, "name": name})),
                )
                .await?,
            )?;
            let human = format!(
                "created organization {} ({}); you are its owner",
                org.slug, org.id
            );
            Ok(Output::of(&org, human))
        }
    }
}

/// `DELETE PATH/ID`.
async fn delete(api: &Api, path: &str, id: &str) -> Result<(), Exit> {
    api.call(
        Method::DELETE,
        &format!("{path}/{}", encode(id)),
        Body::None,
    )
    .await
    .map(|_| ())
}

/// A member's user id from an email (looked up among the members) or an id.
async fn user_id(api: &Api, members_path: &str, user: &str) -> Result<String, Exit> {
    if !user.contains('@') {
        return Ok(user.to_owned());
    }
    api.all_pages_as::<MemberView>(members_path)
        .await?
        .iter()
        .find(|m| m.email.eq_ignore_ascii_case(user))
        .map(|m| m.user_id.to_string())
        .ok_or_else(|| {
            Exit::usage(format!(
                "{user} is not a member; `defendable members list` shows who is"
            ))
        })
}

async fn members(ctx: &mut Context<'_>, c: Members) -> Result<Output, Exit> {
    let api = ctx.authed()?;
    let path = ctx.org_path("/members")?;
    match c {
        Members::List => Ok(listed(
            api.all_pages_as::<MemberView>(&path).await?,
            &["EMAIL", "ROLE", "JOINED", "USER ID"],
            |m| {
                vec![
                    m.email.clone(),
                    role(m.role).to_owned(),
                    when(&m.joined_at),
                    m.user_id.to_string(),
                ]
            },
        )),
        Members::SetRole { user, role } => {
            let id = user_id(&api, &path, &user).await?;
            let res: MemberView = typed(
                api.call(
                    Method::PATCH,
                    &format!("{path}/{}", encode(&id)),
                    Body::Json(json!({"role": role.as_str()})),
                )
                .await?,
            )?;
            Ok(Output::new(
                json!({"ok": true, "user_id": id, "role": role.as_str(), "member": res}),
                format!("{user} is now {}", role.as_str()),
            ))
        }
        Members::Remove { user } => {
            let id = user_id(&api, &path, &user).await?;
            delete(&api, &path, &id).await?;
            Ok(Output::new(
                json!({"ok": true, "user_id": id}),
                format!("removed {user}"),
            ))
        }
    }
}

async fn invites(ctx: &mut Context<'_>, c: Invites) -> Result<Output, Exit> {
    let api = ctx.authed()?;
    let path = ctx.org_path("/invites")?;
    match c {
        Invites::Create { email, role } => {
            let invite: InviteView = typed(
                api.call(
                    Method::POST,
                    &path,
                    Body::Json(json!({"email": email, "role": role.as_str()})),
                )
                .await?,
            )?;
            let human = format!(
                "invited {email} as {} (invite {}, expires {}); the link was mailed to them",
                role.as_str(),
                invite.id,
                when(&invite.expires_at)
            );
            Ok(Output::of(&invite, human))
        }
        Invites::List => Ok(listed(
            api.all_pages_as::<InviteView>(&path).await?,
            &["EMAIL", "ROLE", "EXPIRES", "ID"],
            |i| {
                vec![
                    i.email.clone(),
                    role(i.role).to_owned(),
                    when(&i.expires_at),
                    i.id.to_string(),
                ]
            },
        )),
        Invites::Revoke { id } => {
            delete(&api, &path, &id).await?;
            Ok(Output::new(
                json!({"ok": true, "id": id}),
                format!("revoked invite {id}"),
            ))
        }
    }
}

async fn keys(ctx: &mut Context<'_>, c: Keys) -> Result<Output, Exit> {
    let api = ctx.authed()?;
    let path = ctx.org_path("/api-keys")?;
    match c {
        Keys::Create { name, expires_at } => {
            let created: CreatedApiKeyView = typed(
                api.call(
                    Method::POST,
                    &path,
                    Body::Json(json!({"name": name, "expires_at": expires_at})),
                )
                .await?,
            )?;
            let human = format!(
                "created API key {name} ({}). Its secret is shown only now; store it as DEFENDABLE_TOKEN where it is used:\n{}",
                created.key.id, created.secret
            );
            Ok(Output::of(&created, human))
        }
        Keys::List => Ok(listed(
            api.all_pages_as::<ApiKeyView>(&path).await?,
            &["NAME", "KEY", "CREATED", "LAST USED", "REVOKED", "ID"],
            |k| {
                vec![
                    k.name.clone(),
                    format!("{}…{}", k.prefix, k.last4),
                    when(&k.created_at),
                    when_opt(&k.last_used_at),
                    when_opt(&k.revoked_at),
                    k.id.to_string(),
                ]
            },
        )),
        Keys::Revoke { id } => {
            delete(&api, &path, &id).await?;
            Ok(Output::new(
                json!({"ok": true, "id": id}),
                format!("revoked API key {id}; every server refuses it now"),
            ))
        }
    }
}

/// Reads a JSON object from a file or stdin, returning its text unchanged.
fn json_object_text(source: &str, input: &mut dyn BufRead) -> Result<String, Exit> {
    let text = if source == "-" {
        let mut s = String::new();
        input
            .read_to_string(&mut s)
            .map_err(|e| Exit::usage(format!("reading stdin: {e}")))?;
        s
    } else {
        std::fs::read_to_string(source).map_err(|e| Exit::io(Path::new(source), e))?
    };
    // Checked here for a clear message; sent as written, so the server judges every number.
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(_)) => Ok(text),
        Ok(_) => Err(Exit::usage(format!("{source}: expected a JSON object"))),
        Err(e) => Err(Exit::usage(format!("{source}: not JSON: {e}"))),
    }
}

fn receipt_row(r: &ReceiptView) -> Vec<String> {
    vec![
        r.seq().map(|s| s.to_string()).unwrap_or_default(),
        r.receipt_id.clone(),
        r.kind().unwrap_or_default().to_owned(),
        r.created_at().unwrap_or_default().to_owned(),
    ]
}

async fn receipts(ctx: &mut Context<'_>, c: Receipts) -> Result<Output, Exit> {
    let api = ctx.authed()?;
    let path = ctx.org_path("/receipts")?;
    match c {
        Receipts::Record {
            kind,
            public,
            private,
            idempotency_key,
        } => {
            let public = json_object_text(&public, ctx.input)?;
            let private = match private {
                Some(p) => json_object_text(&p.display().to_string(), ctx.input)?,
                None => "null".to_owned(),
            };
            let kind_json = serde_json::to_string(&kind).map_err(|e| Exit::usage(e.to_string()))?;
            let body = format!(r#"{{"kind":{kind_json},"public":{public},"private":{private}}}"#);
            let key = idempotency_key.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            let receipt: ReceiptView = typed(record_with_retries(&api, &path, &body, &key).await?)?;
            let human = format!(
                "recorded {} (seq {}, kind {kind}) in {}",
                receipt.receipt_id,
                receipt.seq().map(|s| s.to_string()).unwrap_or_default(),
                ctx.org()?
            );
            Ok(Output::of(&receipt, human))
        }
        Receipts::List { kind, after, limit } => {
            let mut query = format!("?limit={limit}");
            if let Some(a) = after {
                query.push_str(&format!("&after={a}"));
            }
            if let Some(k) = kind {
                query.push_str(&format!("&kind={}", encode(&k)));
            }
            let page: ReceiptPage = api.get_as(&format!("{path}{query}")).await?;
            let rows: Vec<Vec<String>> = page.items.iter().map(receipt_row).collect();
            let mut human = table(&["SEQ", "ID", "KIND", "CREATED"], &rows);
            if let Some(next) = page.next_cursor {
                human.push_str(&format!("\nmore: --after {next}"));
            }
            Ok(Output::of(&page, human))
        }
        Receipts::Show { id } => {
            let r: ReceiptView = api.get_as(&format!("{path}/{}", encode(&id))).await?;
            let human = serde_json::to_string_pretty(&r).unwrap_or_default();
            Ok(Output::of(&r, human))
        }
        Receipts::Share {
            id,
            revoke,
            expires_in,
        } => {
            let share_path = format!("{path}/{}/share", encode(&id));
            if revoke {
                api.call(Method::DELETE, &share_path, Body::None).await?;
                return Ok(Output::new(
                    json!({"ok": true, "receipt_id": id}),
                    format!("every share link of {id} now answers 404"),
                ));
            }
            let body = match expires_in {
                Some(d) => Body::Json(json!({ "expires_in": d.as_secs() })),
                None => Body::None,
            };
            let share: ShareLink = typed(api.call(Method::POST, &share_path, body).await?)?;
            let url = &share.url;
            let expiry = match &share.expires_at {
                Some(at) => format!("\nexpires at {at}"),
                None => String::new(),
            };
            let human = format!(
                "share link: {url}\nproof bundle: {}{expiry}\nanyone can check it: defendable verify {url}",
                share.proof_url
            );
            Ok(Output::of(&share, human))
        }
    }
}

/// Records with one Idempotency-Key, retrying network and server failures, so a receipt is
/// recorded once however often the request is sent.
async fn record_with_retries(api: &Api, path: &str, body: &str, key: &str) -> Result<Value, Exit> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let sent = api
            .send(
                Method::POST,
                path,
                Body::RawJson(body.to_owned()),
                &[("idempotency-key", key)],
                false,
            )
            .await;
        match sent {
            Ok(res) => return crate::client::json_of(res).await,
            Err(e) if e.code == crate::EXIT_SERVER && attempt < 3 => {
                eprintln!("{}; retrying with the same Idempotency-Key", e.message);
                tokio::time::sleep(std::time::Duration::from_millis(500 * attempt)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

async fn ledger(ctx: &mut Context<'_>, c: Ledger) -> Result<Output, Exit> {
    let api = ctx.authed()?;
    let org = ctx.org()?;
    match c {
        Ledger::Watch {
            vkeys,
            trust_new_keys,
        } => {
            let opts = TrustOptions {
                keys: Vec::new(),
                vkeys,
                trust_new_keys,
            };
            monitor::watch(&api, &org, &opts).await
        }
        Ledger::Verify => {
            let v: ChainCheck = api.get_as(&ctx.org_path("/ledger/verify")?).await?;
            if !v.valid {
                let (seq, reason) = v
                    .failure
                    .map(|f| (f.seq.to_string(), f.reason))
                    .unwrap_or_else(|| ("-".to_owned(), "-".to_owned()));
                return Err(Exit::verify(format!(
                    "the chain of {org} fails at receipt seq {seq}: {reason}"
                )));
            }
            let human = format!(
                "the chain and tree of {org} verify: {}, head {}, tree size {}",
                count(v.checked, "receipt"),
                v.head,
                v.tree_size
            );
            Ok(Output::of(&v, human))
        }
        Ledger::Export { out } => {
            let res = api
                .send(
                    Method::GET,
                    &ctx.org_path("/ledger/export")?,
                    Body::None,
                    &[],
                    true,
                )
                .await?;
            let lines = save_stream(res, &out).await?;
            let receipts = lines.saturating_sub(1);
            Ok(Output::new(
                json!({"ok": true, "path": out.display().to_string(), "receipts": receipts}),
                format!(
                    "exported {} of {org} and a signed checkpoint to {}; check it offline with `defendable verify {}`",
                    count(receipts, "receipt"),
                    out.display(),
                    out.display()
                ),
            ))
        }
    }
}

/// Streams a response into `out` through a temporary file; returns the number of lines.
async fn save_stream(mut res: reqwest::Response, out: &Path) -> Result<u64, Exit> {
    use std::io::Write;
    let mut tmp_name = out.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp_name);
    let mut file =
        std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(|e| Exit::io(&tmp, e))?);
    let mut lines = 0u64;
    loop {
        match res.chunk().await {
            Ok(Some(chunk)) => {
                lines += chunk.iter().filter(|b| **b == b'\n').count() as u64;
                file.write_all(&chunk).map_err(|e| Exit::io(&tmp, e))?;
            }
            Ok(None) => break,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(Exit::server(format!(
                    "the export broke off ({}); nothing was saved, run it again",
                    root_cause(&e)
                )));
            }
        }
    }
    file.flush().map_err(|e| Exit::io(&tmp, e))?;
    drop(file);
    std::fs::rename(&tmp, out).map_err(|e| Exit::io(out, e))?;
    Ok(lines)
}

async fn datasets(ctx: &mut Context<'_>, c: Datasets) -> Result<Output, Exit> {
    let api = ctx.authed()?;
    match c {
        Datasets::List { query } => {
            let path = match query {
                Some(q) => format!("/datasets/catalog?q={}", encode(&q)),
                None => "/datasets/catalog".to_owned(),
            };
            Ok(listed(
                api.all_pages_as::<DatasetView>(&path).await?,
                &["SLUG", "VERSION", "SIZE", "LICENSE", "TITLE"],
                |d| {
                    vec![
                        d.slug.clone(),
                        d.version.clone(),
                        bytes(u64::try_from(d.size).unwrap_or(0)),
                        d.license.clone(),
                        d.title.clone(),
                    ]
                },
            ))
        }
        Datasets::Show { slug } => {
            let d: DatasetView = api
                .get_as(&format!("/datasets/catalog/{}", encode(&slug)))
                .await?;
            let human = [
                ("slug", d.slug.clone()),
                ("title", d.title.clone()),
                ("description", d.description.clone()),
                ("version", d.version.clone()),
                ("license", d.license.clone()),
                ("media_type", d.media_type.clone()),
                ("size", d.size.to_string()),
                ("blake3", d.blake3.clone()),
                ("verified_at", when(&d.verified_at)),
            ]
            .iter()
            .map(|(k, v)| format!("{k:<12} {v}"))
            .collect::<Vec<_>>()
            .join("\n");
            Ok(Output::of(&d, human))
        }
        Datasets::Download(args) => {
            // The grant's org: --org, else the saved default, else the server's choice.
            let org = ctx.org().ok();
            let plan = Plan {
                out: args.out.unwrap_or_else(|| args.slug.clone().into()),
                slug: args.slug,
                org,
                retries: args.retries,
                progress: !ctx.json,
            };
            download::download(&api, &plan).await
        }
    }
}

async fn run_verify(ctx: &Context<'_>, target: &str, opts: &TrustOptions) -> Result<Output, Exit> {
    if let Some(i) = target.find("/share/") {
        let token = target[i + "/share/".len()..]
            .split(['/', '?', '#'])
            .next()
            .unwrap_or_default();
        return monitor::verify_share(&target[..i], token, opts).await;
    }
    if Path::new(target).exists() {
        // Proving a file's checkpoint consistent with a saved one uses member access, if any.
        let member = ctx.client()?;
        let signed_in = member.token().is_some();
        return monitor::verify_file(
            Path::new(target),
            &ctx.api,
            Some((&member, signed_in)),
            opts,
        )
        .await;
    }
    if target.len() == 43
        && target
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return monitor::verify_share(&ctx.api, target, opts).await;
    }
    Err(Exit::usage(format!(
        "{target:?} is neither a share URL, a share token nor a file"
    )))
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
