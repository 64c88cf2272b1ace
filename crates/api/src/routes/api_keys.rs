//! Organization API keys (owners, by session only).

use actix_web::{web, HttpResponse};
use defendable_identity::store as identity;
use defendable_identity::ApiKeyId;
use uuid::Uuid;

use crate::auth::Caller;
use crate::bodies::{ApiKeyPage, PageQuery};
use crate::error::{ApiError, Problem};
use crate::AppState;
use defendable_identity::view::CreateApiKey;

/// A newly created key with its secret (the identity crate's shape).
pub type CreatedApiKey = defendable_identity::view::CreatedApiKeyView;

/// Creates an API key; the response carries its secret once.
#[utoipa::path(post, path = "/orgs/{org}/api-keys", tag = "api-keys", request_body = CreateApiKey, security(("bearer" = [])),
    params(("org" = String, Path, description = "Organization slug or id")),
    responses(
        (status = 201, description = "Created", body = CreatedApiKey),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an owner, or an API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization, or not a member", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid name or expiry", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn post_org_api_keys(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    body: web::Json<CreateApiKey>,
) -> Result<HttpResponse, ApiError> {
    let (access, user) = caller.owner(&state, &path).await?;
    let name = defendable_identity::ApiKeyName::parse(&body.name)?;
    let (key, secret) = identity::create_api_key(
        &mut *state.db.get().await?,
        user,
        access.org.id,
        &name,
        body.expires_at,
        &caller.ctx,
    )
    .await?;
    Ok(HttpResponse::Created().json(CreatedApiKey {
        key: key.into(),
        secret: secret.expose().to_owned(),
    }))
}

/// The organization's API keys, revoked ones included.
#[utoipa::path(get, path = "/orgs/{org}/api-keys", tag = "api-keys", security(("bearer" = [])),
    params(("org" = String, Path, description = "Organization slug or id"), PageQuery),
    responses(
        (status = 200, description = "A page of keys", body = ApiKeyPage),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an owner, or an API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization, or not a member", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_org_api_keys(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    query: web::Query<PageQuery>,
) -> Result<web::Json<ApiKeyPage>, ApiError> {
    let (access, _) = caller.owner(&state, &path).await?;
    let client = state.db.get().await?;
    Ok(web::Json(
        identity::list_api_keys(&*client, access.org.id, query.page())
            .await?
            .into(),
    ))
}

/// Revokes an API key on every server process.
#[utoipa::path(delete, path = "/orgs/{org}/api-keys/{id}", tag = "api-keys", security(("bearer" = [])),
    params(("org" = String, Path, description = "Organization slug or id"), ("id" = Uuid, Path, description = "API key id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an owner, or an API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization or active key", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete_org_api_key(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, Uuid)>,
) -> Result<HttpResponse, ApiError> {
    let (org, id) = path.into_inner();
    let (access, user) = caller.owner(&state, &org).await?;
    identity::revoke_api_key(
        &mut *state.db.get().await?,
        user,
        access.org.id,
        ApiKeyId::from_uuid(id),
        &caller.ctx,
    )
    .await?;
    state.auth.forget_api_keys();
    Ok(HttpResponse::NoContent().finish())
}
