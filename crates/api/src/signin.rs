//! The sign-in steps several routes share — the JSON routes, the pages' button and the single
//! sign-on routes: redeeming a link, accepting an invite (or beginning the single sign-on its
//! organization requires), the links mailed into the web app, the browser binding cookie of a
//! single sign-on, and the deployment settings the SSO core's sign-ins take.

use actix_web::http::header;
use actix_web::HttpRequest;
use defendable_config::limits::LimitKey;
use defendable_identity::store as identity;
use defendable_identity::{Email, OneTimeToken};
use defendable_sso::login::{self, Begun, Deployment, InviteAccepted};
use defendable_store::audit::{AuditAction, AuditContext};

use crate::auth::audit_context;
use crate::bodies::SessionView;
use crate::error::ApiError;
use crate::AppState;

/// The cookie that binds a single sign-on to the browser that started it.
pub const SSO_COOKIE: &str = "__Host-defendable-sso";

/// The `Set-Cookie` value binding a single sign-on to this browser (`value`), or clearing it.
pub fn sso_cookie(value: Option<&str>) -> String {
    let (value, max_age) = match value {
        Some(v) => (v, defendable_config::limits::SSO_LOGIN_TTL.as_secs()),
        None => ("", 0),
    };
    format!("{SSO_COOKIE}={value}; Path=/; Max-Age={max_age}; HttpOnly; Secure; SameSite=Lax")
}

/// The value of the request's cookie `name`.
pub fn cookie(req: &HttpRequest, name: &str) -> Option<String> {
    req.headers()
        .get_all(header::COOKIE)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// What this deployment's single sign-ons need besides the database.
pub fn deployment(state: &AppState) -> Deployment<'_> {
    let base = state.config.api_base_url();
    let mut sign_in_page = state.config.app_base_url();
    sign_in_page.set_path("/auth/callback");
    Deployment {
        oidc: &state.oidc,
        keys: state.sso_keys.as_deref(),
        allow_http_issuers: !state.config.app_env.is_production(),
        callback_url: format!("{}/auth/sso/callback", base.as_str().trim_end_matches('/')),
        sign_in_page,
        link_ttl: state.config.magic_link_ttl,
        session_ttl: state.config.sso_session_ttl,
    }
}

/// Records a delivery failure (its own audit event; the link itself was already stored).
pub async fn mail_failed(
    state: &AppState,
    ctx: &AuditContext,
    to: &Email,
    purpose: &str,
    e: crate::mail::MailError,
) {
    tracing::error!(error = %e, purpose, "mail delivery failed");
    let recorded = match state.db.get().await {
        Ok(client) => identity::record_mail_failure(&*client, to, purpose, ctx)
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = recorded {
        tracing::error!(error = %e, "could not record the mail failure");
    }
}

/// A link into the web app carrying a token.
pub fn app_link(state: &AppState, path: &str, token: &str) -> String {
    let mut url = state.config.app_base_url();
    let base = url.path().trim_end_matches('/').to_owned();
    url.set_path(&format!("{base}{path}"));
    url.query_pairs_mut().clear().append_pair("token", token);
    url.to_string()
}

/// Counts a sign-in request (`method route`) against its per-address limits.
pub async fn limit_by_ip(
    req: &HttpRequest,
    state: &AppState,
    (method, route): (&str, &str),
    ctx: &AuditContext,
) -> Result<(), ApiError> {
    let ip = ctx.ip.map(|ip| ip.to_string());
    crate::ratelimit::check(req, state, method, route, |k| match k {
        LimitKey::Ip => ip.clone(),
        _ => None,
    })
    .await
}

/// Parses a one-time token; a malformed one is audited and refused like any other bad token.
async fn parse_token(
    state: &AppState,
    raw: &str,
    action: AuditAction,
    ctx: &AuditContext,
) -> Result<OneTimeToken, ApiError> {
    match OneTimeToken::parse(raw) {
        Ok(t) => Ok(t),
        Err(e) => {
            let client = state.db.get().await?;
            identity::record_invalid_token(&*client, action, ctx).await?;
            Err(e.into())
        }
    }
}

/// The request's context and its one-time token, once the request passed the route's per-address
/// limit; a malformed token is audited as `action` and refused.
async fn limited_token(
    req: &HttpRequest,
    state: &AppState,
    (route, action): (&str, AuditAction),
    raw: &str,
) -> Result<(AuditContext, OneTimeToken), ApiError> {
    let ctx = audit_context(req, state);
    limit_by_ip(req, state, ("POST", route), &ctx).await?;
    let token = parse_token(state, raw, action, &ctx).await?;
    Ok((ctx, token))
}

/// Consumes a magic-link token (the JSON route and the sign-in page's button): limited per IP,
/// audited, one session.
pub async fn sign_in(
    req: &HttpRequest,
    state: &AppState,
    raw: &str,
    verifier: Option<&str>,
) -> Result<SessionView, ApiError> {
    let (ctx, token) =
        limited_token(req, state, ("/auth/verify", AuditAction::AuthVerify), raw).await?;
    let session = identity::redeem_link(
        &mut *state.db.get().await?,
        &token,
        verifier,
        state.config.jwt_ttl,
        &ctx,
    )
    .await?;
    Ok(state.auth.session_view(session))
}

/// Consumes an invite token (the JSON route): limited per IP,
/// audited, membership and session in one transaction.
pub async fn accept_invite(
    req: &HttpRequest,
    state: &AppState,
    raw: &str,
) -> Result<SessionView, ApiError> {
    let (ctx, token) = limited_token(
        req,
        state,
        ("/auth/accept-invite", AuditAction::InviteAccept),
        raw,
    )
    .await?;
    let (session, _org) = identity::accept_invite(
        &mut *state.db.get().await?,
        &token,
        state.config.jwt_ttl,
        &ctx,
    )
    .await?;
    Ok(state.auth.session_view(session))
}

/// What the invite page's button led to.
#[derive(Debug)]
pub enum InviteOutcome {
    /// The membership and a session.
    Joined(SessionView),
    /// The organization accepts the address only through single sign-on: the sign-in begun.
    ContinueSso(Begun),
}

/// Consumes an invite token from the invite page's button: limited per IP and audited like the
/// JSON route; where the organization requires single sign-on for the address, the browser
/// sign-in that accepts the invite begins instead.
pub async fn accept_invite_or_sso(
    req: &HttpRequest,
    state: &AppState,
    raw: &str,
) -> Result<InviteOutcome, ApiError> {
    let (ctx, token) = limited_token(
        req,
        state,
        ("/auth/accept-invite", AuditAction::InviteAccept),
        raw,
    )
    .await?;
    let accepted = login::accept_invite(
        || state.db.get(),
        &deployment(state),
        &token,
        state.config.jwt_ttl,
        &ctx,
    )
    .await?;
    Ok(match accepted {
        InviteAccepted::Joined(session) => InviteOutcome::Joined(state.auth.session_view(session)),
        InviteAccepted::ContinueSso(begun) => InviteOutcome::ContinueSso(begun),
    })
}
