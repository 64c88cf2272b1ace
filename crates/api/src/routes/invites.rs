//! Organization invites (owners only).

use actix_web::{web, HttpRequest, HttpResponse};
use defendable_config::limits::LimitKey;
use defendable_identity::store as identity;
use defendable_identity::{Email, InviteId};
use uuid::Uuid;

use crate::auth::Caller;
use crate::bodies::{InvitePage, InviteView, PageQuery};
use crate::error::{ApiError, ErrorCode, Problem};
use crate::mail::LinkMail;
use crate::signin::{app_link, mail_failed};
use crate::AppState;
use defendable_identity::view::CreateInvite;

/// Invites an address; it receives a single-use link bound to it.
#[utoipa::path(post, path = "/orgs/{org}/invites", tag = "invites", request_body = CreateInvite, security(("bearer" = [])),
    params(("org" = String, Path, description = "Organization slug or id")),
    responses(
        (status = 201, description = "Invited and mailed", body = InviteView),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an owner, or an API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization, or not a member", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already a member", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid email", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many invites from this organization or to this address today", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Mail could not be sent", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn post_org_invites(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    body: web::Json<CreateInvite>,
) -> Result<HttpResponse, ApiError> {
    let (access, user) = caller.owner(&state, &path).await?;
    let email = Email::parse(&body.email)?;
    crate::ratelimit::check(&req, &state, "POST", "/orgs/{org}/invites", |k| match k {
        LimitKey::Org => Some(access.org.id.to_string()),
        LimitKey::Email => Some(email.as_str().to_owned()),
        _ => None,
    })
    .await?;
    let (invite, token) = identity::create_invite(
        &mut *state.db.get().await?,
        user,
        access.org.id,
        &email,
        body.role.into(),
        state.config.invite_ttl,
        &caller.ctx,
    )
    .await?;
    if let Err(e) = mail_invite(&state, &access.org.name, &email, &token).await {
        mail_failed(&state, &caller.ctx, &email, "invite.create", e).await;
        return Err(ApiError::new(
            ErrorCode::MailUnavailable,
            "the invite was created but could not be mailed; revoke it and try again",
        ));
    }
    Ok(HttpResponse::Created().json(InviteView::from(invite)))
}

/// Mails the invite link to `email`.
async fn mail_invite(
    state: &AppState,
    org_name: &str,
    email: &Email,
    token: &defendable_identity::OneTimeToken,
) -> Result<(), crate::mail::MailError> {
    let url = app_link(state, "/auth/accept-invite", token.expose());
    let intro = format!(
        "You are invited to join {org_name} on Defendable. The link works once, for this address only, and expires in {} days.",
        state.config.invite_ttl.as_secs() / 86400
    );
    state
        .mailer
        .send(LinkMail {
            to: email,
            subject: "You are invited to Defendable",
            intro: &intro,
            link: &url,
            outro: "If you were not expecting this, ignore this message.",
        })
        .await
}

/// Pending invites.
#[utoipa::path(get, path = "/orgs/{org}/invites", tag = "invites", security(("bearer" = [])),
    params(("org" = String, Path, description = "Organization slug or id"), PageQuery),
    responses(
        (status = 200, description = "A page of pending invites", body = InvitePage),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an owner, or an API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization, or not a member", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_org_invites(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    query: web::Query<PageQuery>,
) -> Result<web::Json<InvitePage>, ApiError> {
    let (access, _) = caller.owner(&state, &path).await?;
    let client = state.db.get().await?;
    Ok(web::Json(
        identity::list_invites(&*client, access.org.id, query.page())
            .await?
            .into(),
    ))
}

/// Revokes a pending invite.
#[utoipa::path(delete, path = "/orgs/{org}/invites/{id}", tag = "invites", security(("bearer" = [])),
    params(("org" = String, Path, description = "Organization slug or id"), ("id" = Uuid, Path, description = "Invite id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an owner, or an API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization or pending invite", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete_org_invite(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, Uuid)>,
) -> Result<HttpResponse, ApiError> {
    let (org, id) = path.into_inner();
    let (access, user) = caller.owner(&state, &org).await?;
    identity::revoke_invite(
        &mut *state.db.get().await?,
        user,
        access.org.id,
        InviteId::from_uuid(id),
        &caller.ctx,
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}
