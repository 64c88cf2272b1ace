//! Sign-in: magic links, invite acceptance, logout.

use actix_web::{web, HttpRequest, HttpResponse};
use defendable_config::limits::LimitKey;
use defendable_identity::store::{self as identity};
use defendable_identity::Email;
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::{audit_context, Caller};
use crate::bodies::SessionView;
use crate::error::{ApiError, ErrorCode, Problem};
use crate::mail::LinkMail;
use crate::signin;
use crate::AppState;
use defendable_identity::view::{AuthRequest, TokenBody, VerifyBody};

/// The one answer to every well-formed sign-in request.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuthRequested {
    /// Always the same text, whether or not the address has an account.
    pub message: &'static str,
}

const REQUESTED: &str = "If this address can receive mail, a sign-in link is on its way.";

/// Mails a one-time sign-in link. The answer is the same whether or not the address is known.
#[utoipa::path(post, path = "/auth/request", tag = "auth", request_body = AuthRequest,
    responses(
        (status = 202, description = "Accepted; a link was mailed", body = AuthRequested),
        (status = 422, description = "Not an email address", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Mail could not be sent", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn post_auth_request(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Json<AuthRequest>,
) -> Result<HttpResponse, ApiError> {
    let email = Email::parse(&body.email)?;
    let ctx = audit_context(&req, &state);
    let ip = ctx.ip.map(|ip| ip.to_string());
    crate::ratelimit::check(&req, &state, "POST", "/auth/request", |k| match k {
        LimitKey::Email => Some(email.as_str().to_owned()),
        LimitKey::Ip => ip.clone(),
        _ => None,
    })
    .await?;
    let link = identity::request_magic_link(
        &mut *state.db.get().await?,
        &email,
        state.config.magic_link_ttl,
        &ctx,
    )
    .await?;
    if let Err(e) = mail_sign_in_link(&state, &email, &link.token).await {
        signin::mail_failed(&state, &ctx, &email, "auth.request", e).await;
        return Err(ApiError::new(
            ErrorCode::MailUnavailable,
            "the sign-in link could not be sent; try again shortly",
        ));
    }
    Ok(HttpResponse::Accepted().json(AuthRequested { message: REQUESTED }))
}

/// Mails the sign-in link to `email`.
async fn mail_sign_in_link(
    state: &AppState,
    email: &Email,
    token: &defendable_identity::OneTimeToken,
) -> Result<(), crate::mail::MailError> {
    let url = signin::app_link(state, "/auth/callback", token.expose());
    let intro = format!(
        "Use this link to sign in to Defendable. It works once and expires in {} minutes.",
        state.config.magic_link_ttl.as_secs().div_ceil(60)
    );
    state
        .mailer
        .send(LinkMail {
            to: email,
            subject: "Your Defendable sign-in link",
            intro: &intro,
            link: &url,
            outro: "If you did not ask for it, ignore this message.",
        })
        .await
}

/// Consumes a magic-link token and starts a session. The first sign-in of an address creates
/// the user and a personal organization they own.
#[utoipa::path(post, path = "/auth/verify", tag = "auth", request_body = VerifyBody,
    responses(
        (status = 200, description = "Signed in", body = SessionView),
        (status = 401, description = "Invalid, used or expired token", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn post_auth_verify(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Json<VerifyBody>,
) -> Result<web::Json<SessionView>, ApiError> {
    Ok(web::Json(
        signin::sign_in(&req, &state, &body.token, body.code_verifier.as_deref()).await?,
    ))
}

/// Accepts an invite: the token proves the invited address. Creates the user if needed, adds the
/// membership and starts a session. An invite to an address in a domain whose connection
/// enforces single sign-on is accepted only by signing in through it.
#[utoipa::path(post, path = "/auth/accept-invite", tag = "auth", request_body = TokenBody,
    responses(
        (status = 200, description = "Joined and signed in", body = SessionView),
        (status = 401, description = "Invalid, used, expired or revoked invite", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The address is in a domain whose connection enforces single sign-on: accept through `POST /auth/sso/start {\"invite\": …}` (`sso_required`; the invite stays unused)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already a member", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn post_auth_accept_invite(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Json<TokenBody>,
) -> Result<web::Json<SessionView>, ApiError> {
    Ok(web::Json(
        signin::accept_invite(&req, &state, &body.token).await?,
    ))
}

/// Ends the caller's session on every server process.
#[utoipa::path(post, path = "/auth/logout", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 204, description = "Signed out"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "API keys have no session", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn post_auth_logout(
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let (user, session) = caller.session()?;
    identity::revoke_session(&mut *state.db.get().await?, user, session, &caller.ctx).await?;
    state.auth.forget_session(session);
    Ok(HttpResponse::NoContent().finish())
}
