//! Single sign-on, one call per use case: [`begin`] records a sign-in and answers where to send
//! the browser; [`finish`] takes the provider's answer back to a one-time link; [`accept_invite`]
//! accepts an invite, or begins the sign-in its organization requires.

mod complete;
mod pending;
mod routing;

pub use complete::{complete, Completed};
pub use pending::{prune, start, take, Binding, Pending, Started};
pub use routing::{connection_for_email, connection_for_invite, connection_for_org};

use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use deadpool_postgres::Object;
use defendable_identity::store::{self as identity, NewSession};
use defendable_identity::{Email, IdentityError, OneTimeToken};
use defendable_store::audit::AuditContext;
use url::Url;

use crate::oidc::{self, OidcClient};
use crate::sealed::SecretKeys;
use crate::view::{SsoCallback, SsoStarted, StartSso};
use crate::{identity_error, Result, SsoError};

fn sha256(s: &str) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, s.as_bytes())
        .as_ref()
        .to_vec()
}

fn refused(why: impl Into<String>) -> SsoError {
    SsoError::Refused(why.into())
}

/// What a deployment's sign-ins need besides the database; the shell builds it from its
/// configuration.
#[derive(Debug)]
pub struct Deployment<'a> {
    /// The identity-provider client (its egress guarded).
    pub oidc: &'a OidcClient,
    /// The keys that open connections' client secrets; `None` where `SSO_SECRET_KEY` is unset.
    pub keys: Option<&'a SecretKeys>,
    /// Whether `http://` issuers are allowed (never in production).
    pub allow_http_issuers: bool,
    /// The callback the providers send the browser back to (`API_BASE_URL/auth/sso/callback`).
    pub callback_url: String,
    /// The web app's page that redeems the one-time link (`APP_BASE_URL/auth/callback`).
    pub sign_in_page: Url,
    /// How long the one-time link lives (`MAGIC_LINK_TTL`).
    pub link_ttl: Duration,
    /// How long a single sign-on session lives at most (`SSO_SESSION_TTL`).
    pub session_ttl: Duration,
}

impl Deployment<'_> {
    fn keys(&self) -> Result<&SecretKeys> {
        self.keys.ok_or(SsoError::Unconfigured)
    }
}

/// A recorded sign-in: where to send the browser, and (browser sign-ins) the value of the
/// cookie that binds the sign-in to the browser, which the callback must come back with.
#[derive(Debug)]
pub struct Begun {
    /// The answer to the caller.
    pub started: SsoStarted,
    /// The browser binding's cookie value (none for a CLI's sign-in).
    pub browser: Option<String>,
}

/// Begins a single sign-on: finds the connection `input` names (exactly one of an address, an
/// organization with one connection, or an invite), records the sign-in bound to the browser
/// or to the CLI `input.cli` describes, and builds the provider's authorization URL (code flow,
/// PKCE S256, state, nonce). No connection is held while the provider answers discovery.
pub async fn begin<C, E, Fut>(
    connect: impl FnOnce() -> Fut,
    deployment: &Deployment<'_>,
    input: &StartSso,
) -> std::result::Result<Begun, E>
where
    C: Deref<Target = Object>,
    E: From<SsoError>,
    Fut: Future<Output = std::result::Result<C, E>>,
{
    let binding = match &input.cli {
        Some(cli) => Binding::cli(cli.port, &cli.code_challenge, &cli.state)?,
        None => Binding::Browser,
    };
    let (connection, started) = {
        let client = connect().await?;
        let (connection, invite) = routing::connection_for_start(&*client, input).await?;
        let started = start(&*client, connection.id, &binding, invite).await?;
        (connection, started)
    };
    let discovery = deployment
        .oidc
        .discover(&connection.issuer, deployment.allow_http_issuers)
        .await?;
    let mut url = Url::parse(&discovery.authorization_endpoint)
        .map_err(|e| SsoError::Provider(e.to_string()))?;
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", connection.client_id.as_str())
        .append_pair("redirect_uri", &deployment.callback_url)
        .append_pair("scope", connection.provider.scopes())
        .append_pair("state", &started.state)
        .append_pair("nonce", &started.nonce)
        .append_pair("code_challenge", &oidc::pkce_challenge(&started.verifier))
        .append_pair("code_challenge_method", "S256");
    Ok(Begun {
        started: SsoStarted {
            authorization_url: url.to_string(),
            expires_in: defendable_config::limits::SSO_LOGIN_TTL.as_secs(),
        },
        browser: started.browser,
    })
}

/// Finishes a single sign-on from the provider's redirect: takes the sign-in (once, in the
/// browser that started it: `browser` is its cookie), then — holding no connection — runs
/// discovery, the code exchange, the key fetch and the ID token's validation (issuer, audience,
/// signature, expiry, nonce, a verified email), then in one transaction provisions the user
/// just in time with the role the group mapping gives and issues the one-time link. Answers
/// where to send the browser: the web app's sign-in page, or the loopback port of the CLI that
/// started the sign-in, with the link (and the CLI's state).
pub async fn finish<C, E, Fut>(
    connect: impl Fn() -> Fut,
    deployment: &Deployment<'_>,
    callback: &SsoCallback,
    browser: Option<&str>,
    ctx: &AuditContext,
) -> std::result::Result<Url, E>
where
    C: DerefMut<Target = Object>,
    E: From<SsoError>,
    Fut: Future<Output = std::result::Result<C, E>>,
{
    if let Some(error) = &callback.error {
        return Err(refused(format!("the identity provider answered {error}")).into());
    }
    let (Some(code), Some(state)) = (&callback.code, &callback.state) else {
        return Err(refused("the callback carries no code or state").into());
    };
    let pending = take(&*connect().await?, state, browser).await?;
    let connection = &pending.connection;
    if callback
        .iss
        .as_deref()
        .is_some_and(|iss| iss != connection.issuer.as_str())
    {
        return Err(refused("wrong issuer (iss)").into());
    }
    let (email, claims) = validated_email(deployment, &pending, code).await?;
    let link = {
        let mut client = connect().await?;
        let tx = client.transaction().await.map_err(SsoError::from)?;
        let completed = complete(
            &tx,
            connection,
            &email,
            &claims.groups,
            claims.hd.as_deref(),
            pending.invite,
            ctx,
        )
        .await?;
        if let Some(refusal) = completed.refusal() {
            // The removal of a membership the groups no longer grant stands.
            tx.commit().await.map_err(SsoError::from)?;
            return Err(refusal.into());
        }
        let link = identity::issue_sso_link(
            &tx,
            &email,
            deployment.link_ttl,
            connection.id.as_uuid(),
            deployment.session_ttl,
            match &pending.binding {
                Binding::Cli { challenge, .. } => Some(challenge.as_slice()),
                Binding::Browser => None,
            },
            ctx,
        )
        .await
        .map_err(identity_error)?;
        tx.commit().await.map_err(SsoError::from)?;
        link
    };
    Ok(hand_off(deployment, &pending.binding, &link.token)?)
}

/// The provider's part of a callback, with no connection held: discovery, the code exchange,
/// the key fetch and the ID token's validation; answers its verified email and its claims.
async fn validated_email(
    deployment: &Deployment<'_>,
    pending: &Pending,
    code: &str,
) -> Result<(Email, oidc::IdClaims)> {
    let connection = &pending.connection;
    let allow_http = deployment.allow_http_issuers;
    let discovery = deployment
        .oidc
        .discover(&connection.issuer, allow_http)
        .await?;
    let secret = connection.client_secret(deployment.keys()?)?;
    let id_token = deployment
        .oidc
        .exchange(
            &discovery,
            connection.client_id.as_str(),
            secret.expose(),
            code,
            &pending.verifier,
            &deployment.callback_url,
            allow_http,
        )
        .await?;
    let jwks = deployment.oidc.jwks(&discovery, allow_http).await?;
    let claims = oidc::validate_id_token(
        &id_token,
        &jwks,
        &connection.issuer,
        connection.client_id.as_str(),
        &pending.nonce,
    )?;
    let email =
        Email::parse(claims.verified_email(connection.provider)?).map_err(identity_error)?;
    Ok((email, claims))
}

/// Where the one-time link goes: the web app's sign-in page, or the loopback port of the CLI
/// that started the sign-in with the state it takes the link by.
fn hand_off(deployment: &Deployment<'_>, binding: &Binding, token: &OneTimeToken) -> Result<Url> {
    let (mut target, cli_state) = match binding {
        Binding::Cli { port, state, .. } => (
            Url::parse(&format!("http://127.0.0.1:{port}/"))
                .map_err(|e| SsoError::InvalidInput(e.to_string()))?,
            state.as_deref(),
        ),
        Binding::Browser => (deployment.sign_in_page.clone(), None),
    };
    {
        let mut query = target.query_pairs_mut();
        query.append_pair("token", token.expose());
        if let Some(cli_state) = cli_state {
            query.append_pair("state", cli_state);
        }
    }
    Ok(target)
}

/// What accepting an invite led to.
#[derive(Debug)]
pub enum InviteAccepted {
    /// The membership and a session.
    Joined(NewSession),
    /// The organization accepts this address only through single sign-on: the sign-in begun,
    /// carrying the invite (a browser's).
    ContinueSso(Begun),
}

/// Accepts an invite by its token: the membership and a session in one transaction, or, where
/// the organization's connection enforces single sign-on for the invited address, a browser
/// sign-in that accepts it when it completes.
pub async fn accept_invite<C, E, Fut>(
    connect: impl Fn() -> Fut,
    deployment: &Deployment<'_>,
    token: &OneTimeToken,
    session_ttl: Duration,
    ctx: &AuditContext,
) -> std::result::Result<InviteAccepted, E>
where
    C: DerefMut<Target = Object>,
    E: From<SsoError>,
    Fut: Future<Output = std::result::Result<C, E>>,
{
    let accepted = {
        let mut client = connect().await?;
        identity::accept_invite(&mut client, token, session_ttl, ctx).await
    };
    match accepted {
        Ok((session, _)) => Ok(InviteAccepted::Joined(session)),
        Err(IdentityError::SsoRequired(_)) => {
            let start = StartSso {
                invite: Some(token.expose().to_owned()),
                ..StartSso::default()
            };
            Ok(InviteAccepted::ContinueSso(
                begin(connect, deployment, &start).await?,
            ))
        }
        Err(e) => Err(SsoError::Identity(e).into()),
    }
}
