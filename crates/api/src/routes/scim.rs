//! SCIM 2.0 (RFC 7644) at `/scim/v2/{org}/…` for identity providers, authenticated by a
//! connection's SCIM token, and the owners' routes that issue and revoke that token. The SCIM
//! routes answer `application/scim+json`, errors included (RFC 7644 §3.12 bodies, the stable
//! code in the `Defendable-Error-Code` header); they describe themselves through
//! `ServiceProviderConfig`, `ResourceTypes` and `Schemas` rather than the OpenAPI document
//! (docs/scim.md lists them).

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use defendable_config::limits::LimitKey;
use defendable_sso::scim::store::{self as directory, Stored};
use defendable_sso::scim::{self, Filter, GroupRecord, Kind, Page, ScimFault, UserRecord};
use defendable_sso::store::{Change, Connection};
use defendable_sso::view::ScimTokenView;
use defendable_sso::{ConnectionId, SsoError};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use crate::auth::{audit_context, Caller};
use crate::error::{ApiError, ErrorCode, Problem};
use crate::AppState;

/// The route pattern SCIM's rate limits are declared under.
pub const SCIM_ROUTE: &str = "/scim/v2/{org}/*";

/// Every SCIM route (method, pattern), for the docs and the route × principal test.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/scim/v2/{org}/ServiceProviderConfig"),
    ("GET", "/scim/v2/{org}/ResourceTypes"),
    ("GET", "/scim/v2/{org}/ResourceTypes/{id}"),
    ("GET", "/scim/v2/{org}/Schemas"),
    ("GET", "/scim/v2/{org}/Schemas/{id}"),
    ("GET", "/scim/v2/{org}/Users"),
    ("POST", "/scim/v2/{org}/Users"),
    ("GET", "/scim/v2/{org}/Users/{id}"),
    ("PUT", "/scim/v2/{org}/Users/{id}"),
    ("PATCH", "/scim/v2/{org}/Users/{id}"),
    ("DELETE", "/scim/v2/{org}/Users/{id}"),
    ("GET", "/scim/v2/{org}/Groups"),
    ("POST", "/scim/v2/{org}/Groups"),
    ("GET", "/scim/v2/{org}/Groups/{id}"),
    ("PUT", "/scim/v2/{org}/Groups/{id}"),
    ("PATCH", "/scim/v2/{org}/Groups/{id}"),
    ("DELETE", "/scim/v2/{org}/Groups/{id}"),
    ("POST", "/scim/v2/{org}/.search"),
];

/// Registers the SCIM routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    let only_get = || web::route().to(method_not_allowed);
    cfg.service(
        web::scope("/scim/v2/{org}")
            .service(
                web::resource("/ServiceProviderConfig")
                    .get(get_service_provider_config)
                    .default_service(only_get()),
            )
            .service(
                web::resource("/ResourceTypes")
                    .get(get_resource_types)
                    .default_service(only_get()),
            )
            .service(
                web::resource("/ResourceTypes/{id}")
                    .get(get_resource_type)
                    .default_service(only_get()),
            )
            .service(
                web::resource("/Schemas")
                    .get(get_schemas)
                    .default_service(only_get()),
            )
            .service(
                web::resource("/Schemas/{id}")
                    .get(get_schema)
                    .default_service(only_get()),
            )
            .configure(resource_routes::<UserRecord>("/Users"))
            .configure(resource_routes::<GroupRecord>("/Groups"))
            .service(web::resource("/.search").post(post_search))
            .default_service(web::route().to(unknown)),
    );
}

/// A resource type's routes: the collection at `path` and its entries at `path/{id}`.
fn resource_routes<R: Stored + 'static>(
    path: &'static str,
) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.service(
            web::resource(path)
                .get(list::<R>)
                .post(post::<R>)
                .default_service(web::route().to(method_not_allowed)),
        )
        .service(
            web::resource(format!("{path}/{{id}}"))
                .get(get::<R>)
                .put(put::<R>)
                .patch(patch::<R>)
                .delete(delete::<R>)
                .default_service(web::route().to(method_not_allowed)),
        );
    }
}

/// A SCIM error: the API's error (status, stable code, headers such as `Retry-After`) in
/// RFC 7644 §3.12's shape, with its `scimType` where one applies.
#[derive(Debug)]
pub struct ScimError {
    api: ApiError,
    fault: Option<ScimFault>,
}

impl std::fmt::Display for ScimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.api.fmt(f)
    }
}

impl From<ApiError> for ScimError {
    fn from(api: ApiError) -> Self {
        ScimError { api, fault: None }
    }
}

impl From<SsoError> for ScimError {
    fn from(e: SsoError) -> Self {
        let fault = match &e {
            SsoError::Scim(fault, _) => Some(*fault),
            _ => None,
        };
        ScimError {
            api: e.into(),
            fault,
        }
    }
}

impl ResponseError for ScimError {
    fn status_code(&self) -> StatusCode {
        self.api.status()
    }

    fn error_response(&self) -> HttpResponse {
        let problem = self.api.error_response();
        let status = problem.status();
        let detail = self
            .api
            .detail()
            .map(str::to_owned)
            .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned());
        let mut res = HttpResponse::build(status)
            .content_type(scim::CONTENT_TYPE)
            .insert_header(("defendable-error-code", self.api.code().as_str()))
            .body(scim::error_body(status.as_u16(), self.fault, &detail).to_string());
        for (name, value) in problem.headers() {
            if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
                res.headers_mut().insert(name.clone(), value.clone());
            }
        }
        res
    }
}

type ScimResult = Result<HttpResponse, ScimError>;

fn ok(status: StatusCode, body: Value) -> HttpResponse {
    HttpResponse::build(status)
        .content_type(scim::CONTENT_TYPE)
        .body(body.to_string())
}

fn unauthorized() -> ScimError {
    ApiError::new(
        ErrorCode::Unauthorized,
        "a SCIM token of this organization's connection is required (Authorization: Bearer dscim_…)",
    )
    .into()
}

/// Authenticates the request's SCIM token for the organization in the path, counting the
/// request against SCIM's rate limits (per address before the lookup, per organization after).
async fn directory_of(
    req: &HttpRequest,
    state: &AppState,
) -> Result<(Connection, String), ScimError> {
    let org = req.match_info().get("org").unwrap_or_default().to_owned();
    crate::ratelimit::check(req, state, "*", SCIM_ROUTE, |k| match k {
        LimitKey::Ip => crate::client_ip::client_ip(req, &state.config).map(|ip| ip.to_string()),
        _ => None,
    })
    .await?;
    let connection = crate::auth::scim_client(req, state, &org)
        .await?
        .ok_or_else(unauthorized)?;
    crate::ratelimit::check(req, state, "*", SCIM_ROUTE, |k| match k {
        LimitKey::Org => Some(connection.org.to_string()),
        _ => None,
    })
    .await?;
    let base = format!(
        "{}/scim/v2/{org}",
        state.config.api_base_url().as_str().trim_end_matches('/')
    );
    Ok((connection, base))
}

fn body_json(body: &[u8]) -> Result<Value, ScimError> {
    serde_json::from_slice(body).map_err(|e| {
        ScimError::from(SsoError::Scim(
            ScimFault::InvalidSyntax,
            format!("the body is not JSON: {e}"),
        ))
    })
}

fn resource_id(req: &HttpRequest) -> Result<Uuid, ScimError> {
    req.match_info()
        .get("id")
        .and_then(|id| Uuid::parse_str(id).ok())
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such resource").into())
}

/// `attributes`, `excludedAttributes`, `filter`, `startIndex`, `count`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Query {
    attributes: Option<String>,
    excluded_attributes: Option<String>,
    filter: Option<String>,
    start_index: Option<i64>,
    count: Option<i64>,
    sort_by: Option<String>,
}

fn query(req: &HttpRequest) -> Result<Query, ScimError> {
    let q = web::Query::<Query>::from_query(req.query_string()).map_err(|e| {
        ScimError::from(SsoError::Scim(
            ScimFault::InvalidValue,
            format!("the query is malformed: {e}"),
        ))
    })?;
    if q.sort_by.is_some() {
        return Err(
            SsoError::Scim(ScimFault::NotImplemented, "sorting is not supported".into()).into(),
        );
    }
    Ok(q.into_inner())
}

async fn method_not_allowed() -> ScimResult {
    Err(ApiError::new(
        ErrorCode::MethodNotAllowed,
        "this SCIM endpoint does not take this method",
    )
    .into())
}

async fn unknown(req: HttpRequest, state: web::Data<AppState>) -> ScimResult {
    directory_of(&req, &state).await?;
    Err(ApiError::new(ErrorCode::NotFound, "no such SCIM endpoint").into())
}

async fn post_search(req: HttpRequest, state: web::Data<AppState>) -> ScimResult {
    directory_of(&req, &state).await?;
    Err(SsoError::Scim(
        ScimFault::NotImplemented,
        "searching across resource types is not supported: use GET /Users or /Groups with a filter"
            .into(),
    )
    .into())
}

async fn get_service_provider_config(req: HttpRequest, state: web::Data<AppState>) -> ScimResult {
    let (_, base) = directory_of(&req, &state).await?;
    Ok(ok(StatusCode::OK, scim::service_provider_config(&base)))
}

async fn get_resource_types(req: HttpRequest, state: web::Data<AppState>) -> ScimResult {
    let (_, base) = directory_of(&req, &state).await?;
    let all = scim::resource_types(&base);
    Ok(ok(
        StatusCode::OK,
        scim::list_response(all.len() as i64, Page::new(None, None), all),
    ))
}

async fn get_resource_type(req: HttpRequest, state: web::Data<AppState>) -> ScimResult {
    let (_, base) = directory_of(&req, &state).await?;
    let id = req.match_info().get("id").unwrap_or_default();
    scim::resource_types(&base)
        .into_iter()
        .find(|t| t["id"] == id)
        .map(|t| ok(StatusCode::OK, t))
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such resource type").into())
}

async fn get_schemas(req: HttpRequest, state: web::Data<AppState>) -> ScimResult {
    let (_, base) = directory_of(&req, &state).await?;
    let all = scim::schemas(&base);
    Ok(ok(
        StatusCode::OK,
        scim::list_response(all.len() as i64, Page::new(None, None), all),
    ))
}

async fn get_schema(req: HttpRequest, state: web::Data<AppState>) -> ScimResult {
    let (_, base) = directory_of(&req, &state).await?;
    let id = req.match_info().get("id").unwrap_or_default();
    scim::schemas(&base)
        .into_iter()
        .find(|s| s["id"] == id)
        .map(|s| ok(StatusCode::OK, s))
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such schema").into())
}

fn answer(kind: Kind, status: StatusCode, q: &Query, resource: Value) -> HttpResponse {
    let location = resource["meta"]["location"].as_str().map(str::to_owned);
    let body = scim::project(
        kind,
        resource,
        q.attributes.as_deref(),
        q.excluded_attributes.as_deref(),
    );
    let mut res = ok(status, body);
    if let Some(l) = location.and_then(|l| header::HeaderValue::from_str(&l).ok()) {
        res.headers_mut().insert(header::LOCATION, l);
    }
    res
}

fn page_of(kind: Kind, q: &Query, total: i64, resources: Vec<Value>) -> HttpResponse {
    let page = Page::new(q.start_index, q.count);
    let resources = resources
        .into_iter()
        .map(|r| {
            scim::project(
                kind,
                r,
                q.attributes.as_deref(),
                q.excluded_attributes.as_deref(),
            )
        })
        .collect();
    ok(StatusCode::OK, scim::list_response(total, page, resources))
}

/// A page of a resource type's entries (`GET /Users`, `GET /Groups`).
async fn list<R: Stored>(req: HttpRequest, state: web::Data<AppState>) -> ScimResult {
    let q = query(&req)?;
    let (connection, base) = directory_of(&req, &state).await?;
    let filter = q
        .filter
        .as_deref()
        .map(|f| Filter::parse(R::KIND, f))
        .transpose()?;
    let page = Page::new(q.start_index, q.count);
    let (total, found) =
        directory::list::<R>(&*state.db.get().await?, &connection, filter.as_ref(), page).await?;
    let resources = found.iter().map(|r| r.to_json(&base)).collect();
    Ok(page_of(R::KIND, &q, total, resources))
}

/// Creates an entry (`POST /Users`, `POST /Groups`).
async fn post<R: Stored>(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> ScimResult {
    let q = query(&req)?;
    let (connection, base) = directory_of(&req, &state).await?;
    let input = R::parse(&body_json(&body)?)?;
    let ctx = audit_context(&req, &state);
    let created =
        directory::create::<R>(&mut *state.db.get().await?, &connection, &input, &ctx).await?;
    Ok(answer(
        R::KIND,
        StatusCode::CREATED,
        &q,
        created.to_json(&base),
    ))
}

/// One entry.
async fn get<R: Stored>(req: HttpRequest, state: web::Data<AppState>) -> ScimResult {
    let q = query(&req)?;
    let (connection, base) = directory_of(&req, &state).await?;
    let id = resource_id(&req)?;
    let found = directory::get::<R>(&*state.db.get().await?, &connection, id).await?;
    Ok(answer(R::KIND, StatusCode::OK, &q, found.to_json(&base)))
}

/// Replaces an entry (PUT).
async fn put<R: Stored>(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> ScimResult {
    let q = query(&req)?;
    let (connection, base) = directory_of(&req, &state).await?;
    let id = resource_id(&req)?;
    let input = R::parse(&body_json(&body)?)?;
    let ctx = audit_context(&req, &state);
    let db = &mut *state.db.get().await?;
    let replaced = directory::replace::<R>(db, &connection, id, &input, &ctx).await?;
    Ok(answer(R::KIND, StatusCode::OK, &q, replaced.to_json(&base)))
}

/// Applies a PatchOp to an entry.
async fn patch<R: Stored>(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> ScimResult {
    let q = query(&req)?;
    let (connection, base) = directory_of(&req, &state).await?;
    let id = resource_id(&req)?;
    let ops = body_json(&body)?;
    let ctx = audit_context(&req, &state);
    let db = &mut *state.db.get().await?;
    let patched = directory::patch::<R>(db, &connection, id, &ops, &ctx).await?;
    Ok(answer(R::KIND, StatusCode::OK, &q, patched.to_json(&base)))
}

/// Deletes an entry.
async fn delete<R: Stored>(req: HttpRequest, state: web::Data<AppState>) -> ScimResult {
    let (connection, _) = directory_of(&req, &state).await?;
    let id = resource_id(&req)?;
    let ctx = audit_context(&req, &state);
    directory::delete::<R>(&mut *state.db.get().await?, &connection, id, &ctx).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Issues the connection's SCIM token, replacing the previous one (which stops working at
/// once); the answer shows it once, with the SCIM base URL to give the identity provider.
#[utoipa::path(post, path = "/orgs/{org}/sso/connections/{id}/scim-token", tag = "sso", security(("bearer" = [])),
    params(("org" = String, Path, description = "Organization slug or id"), ("id" = Uuid, Path, description = "Connection id")),
    responses(
        (status = 201, description = "The new token, shown once", body = ScimTokenView),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an owner, or an API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization or connection", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn post_org_scim_token(
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
    let (token, created_at) = directory::rotate_token(
        &mut *state.db.get().await?,
        change,
        ConnectionId::from_uuid(id),
    )
    .await?;
    Ok(HttpResponse::Created().json(ScimTokenView {
        token: token.expose().to_owned(),
        base_url: format!(
            "{}/scim/v2/{}",
            state.config.api_base_url().as_str().trim_end_matches('/'),
            access.org.slug
        ),
        created_at,
    }))
}

/// Revokes the connection's SCIM token: provisioning stops; the directory's entries stay.
#[utoipa::path(delete, path = "/orgs/{org}/sso/connections/{id}/scim-token", tag = "sso", security(("bearer" = [])),
    params(("org" = String, Path, description = "Organization slug or id"), ("id" = Uuid, Path, description = "Connection id")),
    responses(
        (status = 204, description = "Revoked (or there was none)"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an owner, or an API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization or connection", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete_org_scim_token(
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
    directory::revoke_token(
        &mut *state.db.get().await?,
        change,
        ConnectionId::from_uuid(id),
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}
