//! Organizations and their members.

use actix_web::{web, HttpRequest, HttpResponse};
use defendable_config::limits::LimitKey;
use defendable_identity::store as identity;
use defendable_identity::{OrgName, OrgSlug, UserId};
use uuid::Uuid;

use crate::auth::Caller;
use crate::bodies::{MemberPage, MemberView, MembershipPage, OrgView, PageQuery};
use crate::error::{ApiError, Problem};
use crate::AppState;
use defendable_identity::view::{CreateOrg, SetRole};

/// Creates an organization owned by the caller.
#[utoipa::path(post, path = "/orgs", tag = "orgs", request_body = CreateOrg, security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = OrgView),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "API keys cannot create organizations", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Slug taken", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid slug or name", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many organizations created by this user today", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn post_orgs(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<CreateOrg>,
) -> Result<HttpResponse, ApiError> {
    let (user, _) = caller.session()?;
    let slug = OrgSlug::parse(&body.slug)?;
    let name = OrgName::parse(&body.name)?;
    crate::ratelimit::check(&req, &state, "POST", "/orgs", |k| {
        (k == LimitKey::User).then(|| user.to_string())
    })
    .await?;
    let org =
        identity::create_org(&mut *state.db.get().await?, user, &slug, &name, &caller.ctx).await?;
    Ok(HttpResponse::Created().json(OrgView::from(org)))
}

/// The caller's organizations.
#[utoipa::path(get, path = "/orgs", tag = "orgs", params(PageQuery), security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of memberships", body = MembershipPage),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "API keys have no memberships", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_orgs(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<PageQuery>,
) -> Result<web::Json<MembershipPage>, ApiError> {
    let (user, _) = caller.session()?;
    let client = state.db.get().await?;
    let page = identity::list_orgs(&*client, user, query.page()).await?;
    Ok(web::Json(page.into()))
}

/// One organization (members and the organization's API keys).
#[utoipa::path(get, path = "/orgs/{org}", tag = "orgs", security(("bearer" = [])),
    params(("org" = String, Path, description = "Organization slug or id")),
    responses(
        (status = 200, description = "The organization", body = OrgView),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization, or not a member", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_org(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<web::Json<OrgView>, ApiError> {
    let access = caller.member(&state, &path).await?;
    Ok(web::Json(access.org.into()))
}

/// Members of an organization.
#[utoipa::path(get, path = "/orgs/{org}/members", tag = "orgs", security(("bearer" = [])),
    params(("org" = String, Path, description = "Organization slug or id"), PageQuery),
    responses(
        (status = 200, description = "A page of members", body = MemberPage),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization, or not a member", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_org_members(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    query: web::Query<PageQuery>,
) -> Result<web::Json<MemberPage>, ApiError> {
    let access = caller.member(&state, &path).await?;
    let client = state.db.get().await?;
    let page = identity::list_members(&*client, access.org.id, query.page()).await?;
    Ok(web::Json(page.into()))
}

/// Changes a member's role (owners only). An organization always keeps one owner.
#[utoipa::path(patch, path = "/orgs/{org}/members/{user}", tag = "orgs", request_body = SetRole, security(("bearer" = [])),
    params(("org" = String, Path, description = "Organization slug or id"), ("user" = Uuid, Path, description = "Member's user id")),
    responses(
        (status = 200, description = "Updated", body = MemberView),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an owner, or an API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization or member", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Would leave no owner", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn patch_org_member(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, Uuid)>,
    body: web::Json<SetRole>,
) -> Result<web::Json<MemberView>, ApiError> {
    let (org, target) = path.into_inner();
    let (access, user) = caller.owner(&state, &org).await?;
    let member = identity::set_role(
        &mut *state.db.get().await?,
        user,
        access.org.id,
        UserId::from_uuid(target),
        body.role.into(),
        &caller.ctx,
    )
    .await?;
    // Cached grants of this process are forgotten at once; others within their period.
    state.auth.forget_access();
    Ok(web::Json(member.into()))
}

/// Removes a member (owners; a member may remove itself). An organization always keeps one owner.
/// The API keys the member created in the organization are revoked with the membership.
#[utoipa::path(delete, path = "/orgs/{org}/members/{user}", tag = "orgs", security(("bearer" = [])),
    params(("org" = String, Path, description = "Organization slug or id"), ("user" = Uuid, Path, description = "Member's user id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an owner (and not yourself), or an API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization or member", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Would leave no owner", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete_org_member(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, Uuid)>,
) -> Result<HttpResponse, ApiError> {
    let (org, target) = path.into_inner();
    let access = caller.member(&state, &org).await?;
    let (user, _) = caller.session()?;
    identity::remove_member(
        &mut *state.db.get().await?,
        user,
        access.org.id,
        UserId::from_uuid(target),
        &caller.ctx,
    )
    .await?;
    // The member's API keys were revoked with the removal; this process forgets them at once,
    // others within their cache period.
    state.auth.forget_api_keys();
    state.auth.forget_access();
    Ok(HttpResponse::NoContent().finish())
}
