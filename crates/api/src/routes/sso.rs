//! Enterprise SSO: its settings (owners, by session) — verified domains and identity-provider
//! connections, every change an `idp.config_change` receipt in the organization's chain — and
//! the OIDC sign-in (`/auth/sso/start`, `/auth/sso/callback`).

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use defendable_config::limits::LimitKey;
use defendable_sso::login;
use defendable_sso::store::{self as sso, Change};
use defendable_sso::view::{
    ClaimDomain, ConnectionList, ConnectionView, CreateConnection, DomainList, DomainView,
    PatchConnection, SsoCallback, SsoStarted, StartSso,
};
use defendable_sso::SsoError;
use defendable_sso::{ConnectionId, DomainName};
use uuid::Uuid;

use crate::auth::{audit_context, Caller};
use crate::error::{ApiError, Problem};
use crate::signin;
use crate::AppState;

/// Claims a domain; the answer names the DNS TXT record that proves it.
#[utoipa::path(post, path = "/orgs/{org}/domains", tag = "sso", request_body = ClaimDomain, security(("bearer" = [])),
    params(("org" = String, Path, description = "Organization slug or id")),
    responses(
        (status = 201, description = "Claimed; publish the TXT record, then verify", body = DomainView),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an owner, or an API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization, or not a member", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already claimed here (`domain_exists`) or verified by another organization (`domain_taken`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a domain name, or the organization claims 50 already", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn post_org_domains(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    body: web::Json<ClaimDomain>,
) -> Result<HttpResponse, ApiError> {
    let (access, user) = caller.owner(&state, &path).await?;
    let domain = DomainName::parse(&body.domain)?;
    let change = Change {
        org: access.org.id,
        actor: user,
        ctx: &caller.ctx,
    };
    let claim = sso::add_domain(&mut *state.db.get().await?, change, &domain).await?;
    Ok(HttpResponse::Created().json(DomainView::from(claim)))
}

/// The organization's claimed domains with their TXT records.
#[utoipa::path(get, path = "/orgs/{org}/domains", tag = "sso", security(("bearer" = [])),
    params(("org" = String, Path, description = "Organization slug or id")),
    responses(
        (status = 200, description = "Every claimed domain (at most 50)", body = DomainList),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an owner, or an API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization, or not a member", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_org_domains(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<web::Json<DomainList>, ApiError> {
    let (access, _) = caller.owner(&state, &path).await?;
    let claims = sso::list_domains(&*state.db.get().await?, access.org.id).await?;
    Ok(web::Json(DomainList {
        items: claims.into_iter().map(DomainView::from).collect(),
    }))
}

const VERIFY_ROUTE: &str = "/orgs/{org}/domains/{domain}/verify";

/// Looks the domain's TXT record up (through `DNS_RESOLVER`) and verifies the domain when it
/// holds the challenge. Verifying a verified domain answers it unchanged.
#[utoipa::path(post, path = "/orgs/{org}/domains/{domain}/verify", tag = "sso", security(("bearer" = [])),
    params(("org" = String, Path, description = "Organization slug or id"), ("domain" = String, Path, description = "A claimed domain")),
    responses(
        (status = 200, description = "Verified", body = DomainView),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an owner, or an API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization or claimed domain", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Another organization verified it first (`domain_taken`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The TXT record does not hold the challenge (`domain_not_verified`; the detail says what was seen)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The DNS lookup failed (`dns_unavailable`), or the database is unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn post_org_domain_verify(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<web::Json<DomainView>, ApiError> {
    let (org, domain) = path.into_inner();
    let (access, user) = caller.owner(&state, &org).await?;
    let domain = DomainName::parse(&domain)?;
    crate::ratelimit::check(&req, &state, "POST", VERIFY_ROUTE, |k| match k {
        LimitKey::Org => Some(access.org.id.to_string()),
        _ => None,
    })
    .await?;
    let claim = sso::get_domain(&*state.db.get().await?, access.org.id, &domain).await?;
    if claim.verified_at.is_some() {
        return Ok(web::Json(claim.into()));
    }
    // No database connection is held while DNS answers.
    let found = state.dns.challenge_records(&domain).await?;
    sso::challenge_found(&claim, &found)?;
    let change = Change {
        org: access.org.id,
        actor: user,
        ctx: &caller.ctx,
    };
    let verified = sso::mark_verified(&mut *state.db.get().await?, change, &domain).await?;
    Ok(web::Json(verified.into()))
}

/// Removes a claimed domain; connections that list it stop routing it.
#[utoipa::path(delete, path = "/orgs/{org}/domains/{domain}", tag = "sso", security(("bearer" = [])),
    params(("org" = String, Path, description = "Organization slug or id"), ("domain" = String, Path, description = "A claimed domain")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an owner, or an API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization or claimed domain", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a domain name", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete_org_domain(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (org, domain) = path.into_inner();
    let (access, user) = caller.owner(&state, &org).await?;
    let domain = DomainName::parse(&domain)?;
    let change = Change {
        org: access.org.id,
        actor: user,
        ctx: &caller.ctx,
    };
    sso::remove_domain(&mut *state.db.get().await?, change, &domain).await?;
    Ok(HttpResponse::NoContent().finish())
}

fn allow_http_issuers(state: &AppState) -> bool {
    !state.config.app_env.is_production()
}

fn keys(state: &AppState) -> Result<&defendable_sso::sealed::SecretKeys, ApiError> {
    Ok(state.sso_keys.as_deref().ok_or(SsoError::Unconfigured)?)
}

/// Creates a connection; the receipt names what was set, never the secret.
#[utoipa::path(post, path = "/orgs/{org}/sso/connections", tag = "sso", request_body = CreateConnection, security(("bearer" = [])),
    params(("org" = String, Path, description = "Organization slug or id")),
    responses(
        (status = 201, description = "Created", body = ConnectionView),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an owner, or an API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization, or not a member", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A domain already routes to another connection (`domain_routed`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "An invalid setting, or the organization has 10 connections", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "SSO_SECRET_KEY is not configured (`sso_unavailable`), or the database is unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn post_org_sso_connections(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    body: web::Json<CreateConnection>,
) -> Result<HttpResponse, ApiError> {
    let (access, user) = caller.owner(&state, &path).await?;
    let new = body.parse(allow_http_issuers(&state))?;
    let change = Change {
        org: access.org.id,
        actor: user,
        ctx: &caller.ctx,
    };
    let created =
        sso::create_connection(&mut *state.db.get().await?, keys(&state)?, change, new).await?;
    // Enforcement travels with cached grants: this process forgets them now, others within
    // the authentication cache period.
    state.auth.forget_access();
    Ok(HttpResponse::Created().json(ConnectionView::from(created)))
}

/// The organization's connections, without secrets.
#[utoipa::path(get, path = "/orgs/{org}/sso/connections", tag = "sso", security(("bearer" = [])),
    params(("org" = String, Path, description = "Organization slug or id")),
    responses(
        (status = 200, description = "Every connection (at most 10)", body = ConnectionList),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an owner, or an API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization, or not a member", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_org_sso_connections(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<web::Json<ConnectionList>, ApiError> {
    let (access, _) = caller.owner(&state, &path).await?;
    let list = sso::list_connections(&*state.db.get().await?, access.org.id).await?;
    Ok(web::Json(ConnectionList {
        items: list.into_iter().map(ConnectionView::from).collect(),
    }))
}

/// One connection, without its secret.
#[utoipa::path(get, path = "/orgs/{org}/sso/connections/{id}", tag = "sso", security(("bearer" = [])),
    params(("org" = String, Path, description = "Organization slug or id"), ("id" = Uuid, Path, description = "Connection id")),
    responses(
        (status = 200, description = "The connection", body = ConnectionView),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an owner, or an API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization or connection", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_org_sso_connection(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, Uuid)>,
) -> Result<web::Json<ConnectionView>, ApiError> {
    let (org, id) = path.into_inner();
    let (access, _) = caller.owner(&state, &org).await?;
    let c = sso::get_connection(
        &*state.db.get().await?,
        access.org.id,
        ConnectionId::from_uuid(id),
    )
    .await?;
    Ok(web::Json(c.into()))
}

/// Changes a connection; the receipt names the settings that changed.
#[utoipa::path(patch, path = "/orgs/{org}/sso/connections/{id}", tag = "sso", request_body = PatchConnection, security(("bearer" = [])),
    params(("org" = String, Path, description = "Organization slug or id"), ("id" = Uuid, Path, description = "Connection id")),
    responses(
        (status = 200, description = "The connection as it is now", body = ConnectionView),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an owner, or an API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization or connection", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A domain already routes to another connection (`domain_routed`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "An invalid setting", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "SSO_SECRET_KEY is not configured or opens no stored secret (`sso_unavailable`), or the database is unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn patch_org_sso_connection(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, Uuid)>,
    body: web::Json<PatchConnection>,
) -> Result<web::Json<ConnectionView>, ApiError> {
    let (org, id) = path.into_inner();
    let (access, user) = caller.owner(&state, &org).await?;
    let patch = body.parse(allow_http_issuers(&state))?;
    let change = Change {
        org: access.org.id,
        actor: user,
        ctx: &caller.ctx,
    };
    let updated = sso::update_connection(
        &mut *state.db.get().await?,
        keys(&state)?,
        change,
        ConnectionId::from_uuid(id),
        patch,
    )
    .await?;
    state.auth.forget_access();
    Ok(web::Json(updated.into()))
}

/// Deletes a connection (its sign-ins stop; sessions it made are the users' like any other).
#[utoipa::path(delete, path = "/orgs/{org}/sso/connections/{id}", tag = "sso", security(("bearer" = [])),
    params(("org" = String, Path, description = "Organization slug or id"), ("id" = Uuid, Path, description = "Connection id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an owner, or an API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization or connection", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete_org_sso_connection(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, Uuid)>,
) -> Result<HttpResponse, ApiError> {
    let (org, id) = path.into_inner();
    let (access, user) = caller.owner(&state, &org).await?;
    let change = Change {
        org: access.org.id,
        actor: user,
        ctx: &caller.ctx,
    };
    sso::delete_connection(
        &mut *state.db.get().await?,
        change,
        ConnectionId::from_uuid(id),
    )
    .await?;
    state.auth.forget_access();
    Ok(HttpResponse::NoContent().finish())
}

const START_ROUTE: &str = "/auth/sso/start";
const CALLBACK_ROUTE: &str = "/auth/sso/callback";

/// Starts a single sign-on: answers the provider's authorization URL and sets a cookie that
/// binds the sign-in to this browser (the callback must come back with it). A CLI sends
/// `cli` instead and gets no cookie: its sign-in is bound to its loopback port and verifier.
#[utoipa::path(post, path = "/auth/sso/start", tag = "auth", request_body = StartSso,
    responses(
        (status = 200, description = "Go to `authorization_url` in this browser", body = SsoStarted,
            headers(("Set-Cookie" = String, description = "`__Host-defendable-sso`: binds the sign-in to this browser (not set for `cli`)"))),
        (status = 401, description = "No connection signs this address, organization or invite in (`sso_refused`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not exactly one of `email`, `org` and `invite`, or a malformed one", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The identity provider is unreachable (`sso_provider_unavailable`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn post_auth_sso_start(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Json<StartSso>,
) -> Result<HttpResponse, ApiError> {
    let ctx = audit_context(&req, &state);
    signin::limit_by_ip(&req, &state, ("POST", START_ROUTE), &ctx).await?;
    let begun = login::begin(|| state.db.get(), &signin::deployment(&state), &body).await?;
    let mut response = HttpResponse::Ok();
    if let Some(browser) = begun.browser.as_deref() {
        response.insert_header((header::SET_COOKIE, signin::sso_cookie(Some(browser))));
    }
    Ok(response.json(begun.started))
}

/// Completes a single sign-on: the state (once, in the browser that started it), the code
/// exchange, the ID token (issuer, audience, signature, expiry, nonce), a verified email in one
/// of the connection's verified domains, and the role from the group mapping. Then redirects the
/// browser to the sign-in page with a one-time link, as a mailed link would.
#[utoipa::path(get, path = "/auth/sso/callback", tag = "auth", params(SsoCallback),
    responses(
        (status = 303, description = "Signed in: to `APP_BASE_URL/auth/callback?token=…`, or for a CLI's sign-in to `http://127.0.0.1:{port}/?token=…&state=…` (the CLI's state)"),
        (status = 401, description = "Refused (`sso_refused`; the detail names the check)", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The identity provider is unreachable (`sso_provider_unavailable`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_auth_sso_callback(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<SsoCallback>,
) -> Result<HttpResponse, ApiError> {
    let ctx = audit_context(&req, &state);
    signin::limit_by_ip(&req, &state, ("GET", CALLBACK_ROUTE), &ctx).await?;
    let browser = signin::cookie(&req, signin::SSO_COOKIE);
    let target = login::finish(
        || state.db.get(),
        &signin::deployment(&state),
        &query,
        browser.as_deref(),
        &ctx,
    )
    .await?;
    Ok(HttpResponse::SeeOther()
        .insert_header((header::LOCATION, target.to_string()))
        .insert_header((header::SET_COOKIE, signin::sso_cookie(None)))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .finish())
}

/// Makes an owner a break-glass owner: they keep access without single sign-on where it is
/// enforced, each such session's first use audited, receipted and alerted.
#[utoipa::path(put, path = "/orgs/{org}/sso/break-glass/{user}", tag = "sso", security(("bearer" = [])),
    params(("org" = String, Path, description = "Organization slug or id"), ("user" = Uuid, Path, description = "An owner's user id")),
    responses(
        (status = 204, description = "The owner is a break-glass owner"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an owner, or an API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization or member", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not an owner, or the organization has two break-glass owners", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn put_org_break_glass(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, Uuid)>,
) -> Result<HttpResponse, ApiError> {
    set_break_glass(state, caller, path, true).await
}

/// Withdraws break-glass status (the last one stays while single sign-on is enforced).
#[utoipa::path(delete, path = "/orgs/{org}/sso/break-glass/{user}", tag = "sso", security(("bearer" = [])),
    params(("org" = String, Path, description = "Organization slug or id"), ("user" = Uuid, Path, description = "A member's user id")),
    responses(
        (status = 204, description = "Not a break-glass owner (any more)"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an owner, or an API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization or member", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The last break-glass owner while single sign-on is enforced (`break_glass_required`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete_org_break_glass(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, Uuid)>,
) -> Result<HttpResponse, ApiError> {
    set_break_glass(state, caller, path, false).await
}

async fn set_break_glass(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, Uuid)>,
    on: bool,
) -> Result<HttpResponse, ApiError> {
    let (org, user) = path.into_inner();
    let (access, actor) = caller.owner(&state, &org).await?;
    let change = Change {
        org: access.org.id,
        actor,
        ctx: &caller.ctx,
    };
    sso::set_break_glass(
        &mut *state.db.get().await?,
        change,
        defendable_identity::UserId::from_uuid(user),
        on,
    )
    .await?;
    state.auth.forget_access();
    Ok(HttpResponse::NoContent().finish())
}
