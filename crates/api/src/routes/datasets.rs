//! Datasets: publishing (internal), the members-only catalog, grants under the daily quota,
//! and quota visibility.

use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use defendable_config::limits::LimitKey;
use defendable_datasets::store::{self as datasets, GrantRequest, Grantee, Publication};
use defendable_datasets::{Blake3Digest, DatasetSlug, DatasetVersion, DatasetsError, ObjectKey};
use defendable_identity::authn::Principal;
use defendable_identity::store::{self as identity, PageRequest};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::bodies::split_page;
use crate::error::{ApiError, ErrorCode, Problem};
use crate::AppState;
use defendable_datasets::view::GrantBody;
pub use defendable_datasets::view::{DatasetPage, DatasetView, GrantView, QuotaView};

/// Catalog filters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CatalogQuery {
    /// The previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// Page size, 1–100 (default 50).
    pub limit: Option<i64>,
    /// Text to find in slug, title or description.
    pub q: Option<String>,
}

/// `POST /internal/datasets` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishDataset {
    /// URL name.
    pub slug: String,
    /// Title.
    pub title: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Version label.
    pub version: String,
    /// License.
    pub license: String,
    /// Media type.
    pub media_type: String,
    /// Key of the object in storage (already uploaded).
    pub object_key: String,
    /// The stager's BLAKE3 (hex); refused if the bytes disagree.
    pub blake3: Option<String>,
}

const DEFAULT_GRANT: Duration = Duration::from_secs(24 * 3600);
const MAX_GRANT: Duration = Duration::from_secs(7 * 24 * 3600);

fn default_limit(state: &AppState) -> i64 {
    state
        .config
        .dataset_download_daily_limit
        .map(|l| l as i64)
        .unwrap_or(0)
}

/// Requires a member of some organization, or an API key.
async fn require_catalog_reader(state: &AppState, caller: &Caller) -> Result<(), ApiError> {
    if let Principal::User { user, .. } = caller.principal {
        let client = state.db.get().await?;
        let orgs = identity::list_orgs(&*client, user, PageRequest::new(None, Some(1))).await?;
        if orgs.items.is_empty() {
            return Err(defendable_identity::IdentityError::Forbidden(
                "the catalog is for members of an organization",
            )
            .into());
        }
    }
    Ok(())
}

/// Registers or updates a dataset version (stagers, with the internal key).
#[utoipa::path(post, path = "/internal/datasets", tag = "internal", request_body = PublishDataset,
    params(("X-Internal-Key" = String, Header, description = "INTERNAL_API_KEY")),
    responses(
        (status = 201, description = "Verified and listed", body = DatasetView),
        (status = 401, description = "Wrong or missing internal key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not from an allowed network", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, missing object, or a BLAKE3 that disagrees with the bytes", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Internal routes not configured, or storage unreachable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn post_internal_datasets(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Json<PublishDataset>,
) -> Result<HttpResponse, ApiError> {
    crate::internal::guard(&req, &state, "POST /internal/datasets").await?;
    let p = Publication {
        slug: DatasetSlug::parse(&body.slug)?,
        title: body.title.clone(),
        description: body.description.clone(),
        version: DatasetVersion::parse(&body.version)?,
        license: body.license.clone(),
        media_type: body.media_type.clone(),
        object_key: ObjectKey::parse(&body.object_key)?,
        blake3: body
            .blake3
            .as_deref()
            .map(Blake3Digest::parse)
            .transpose()?,
    };
    let entry = datasets::publish(&mut *state.db.get().await?, state.objects.as_ref(), &p).await?;
    Ok(HttpResponse::Created().json(entry))
}

/// The catalog (members of any organization, or API keys).
#[utoipa::path(get, path = "/datasets/catalog", tag = "datasets", params(CatalogQuery), security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of datasets", body = DatasetPage),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not a member of any organization", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_catalog(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<CatalogQuery>,
) -> Result<web::Json<DatasetPage>, ApiError> {
    require_catalog_reader(&state, &caller).await?;
    let limit = query.limit.unwrap_or(50).clamp(1, 100);
    let mut rows = datasets::catalog(
        &*state.db.get().await?,
        query.cursor.as_deref(),
        query.q.as_deref(),
        limit + 1,
    )
    .await?;
    let next_cursor = split_page(&mut rows, limit, |r| r.slug.clone());
    let principal = caller.principal_key();
    let org = match caller.principal {
        Principal::User { .. } => None,
        Principal::ApiKey { org, .. } => Some(org.as_uuid()),
    };
    datasets::record_catalog_view(
        &mut *state.db.get().await?,
        &principal,
        caller.actor(),
        org,
        &caller.ctx,
    )
    .await?;
    Ok(web::Json(DatasetPage {
        items: rows,
        next_cursor,
    }))
}

/// One dataset.
#[utoipa::path(get, path = "/datasets/catalog/{slug}", tag = "datasets", security(("bearer" = [])),
    params(("slug" = String, Path, description = "Dataset slug")),
    responses(
        (status = 200, description = "The dataset", body = DatasetView),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not a member of any organization", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such dataset", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_catalog_entry(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<web::Json<DatasetView>, ApiError> {
    require_catalog_reader(&state, &caller).await?;
    let slug = DatasetSlug::parse(&path).map_err(|_| ApiError::not_found())?;
    let client = state.db.get().await?;
    let entry = datasets::entry(&*client, &slug)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(web::Json(entry))
}

/// Grants a download: takes one unit of the organization's daily quota and mints a
/// `dataset.download` receipt, in one transaction.
#[utoipa::path(post, path = "/datasets/catalog/{slug}/download", tag = "datasets",
    request_body(content = Option<GrantBody>, description = "Optional; no body or `{}`: the only organization, a 24-hour grant"),
    security(("bearer" = [])),
    params(("slug" = String, Path, description = "Dataset slug")),
    responses(
        (status = 201, description = "Granted", body = GrantView),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such dataset or organization", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`org` needed (several memberships), or a bad `expires_in`", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Daily quota used up; Retry-After says until when", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn post_catalog_download(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let body: GrantBody = crate::bodies::optional_body(&body, "grant request")?;
    let slug = DatasetSlug::parse(&path).map_err(|_| ApiError::not_found())?;
    let expires_in = grant_lifetime(body.expires_in)?;
    let (org, grantee) = grantee(&state, &caller, body.org.as_deref()).await?;
    limit_downloads(&req, &state, &caller, org).await?;
    let request = GrantRequest {
        org,
        slug,
        expires_in,
        grantee,
        client_ip: caller.ctx.ip,
        default_limit: default_limit(&state),
        context: caller.ctx.clone(),
    };
    let granted = datasets::grant(&mut *state.db.get().await?, &request).await;
    count_grant(&state, org, &granted);
    let grant = granted?;
    let api = state.config.api_base_url();
    Ok(HttpResponse::Created().json(GrantView {
        receipt: grant.receipt.member_view(),
        download_url: format!(
            "{}/share/{}/download",
            api.as_str().trim_end_matches('/'),
            grant.share_token.expose()
        ),
        expires_at: grant.expires_at,
        quota: grant.quota.into(),
    }))
}

/// Counts a grant request against the download route's limits (per organization and address).
async fn limit_downloads(
    req: &HttpRequest,
    state: &AppState,
    caller: &Caller,
    org: uuid::Uuid,
) -> Result<(), ApiError> {
    let ip = caller.ctx.ip.map(|ip| ip.to_string());
    let key = |k: LimitKey| match k {
        LimitKey::Org => Some(org.to_string()),
        LimitKey::Ip => ip.clone(),
        _ => None,
    };
    crate::ratelimit::check(req, state, "POST", DOWNLOAD_ROUTE, key).await
}

/// The download route, as its rate limits name it.
const DOWNLOAD_ROUTE: &str = "/datasets/catalog/{slug}/download";

/// Counts a grant made, or refused by a quota, in the metrics.
fn count_grant<T>(state: &AppState, org: uuid::Uuid, granted: &Result<T, DatasetsError>) {
    match granted {
        Ok(_) => state.metrics.dataset_grant(org, true),
        Err(DatasetsError::QuotaExhausted { .. }) => state.metrics.dataset_grant(org, false),
        Err(_) => {}
    }
}

/// A grant's lifetime: the default, or 60 seconds to seven days.
fn grant_lifetime(expires_in: Option<u64>) -> Result<Duration, ApiError> {
    match expires_in {
        None => Ok(DEFAULT_GRANT),
        Some(s) if s >= 60 && Duration::from_secs(s) <= MAX_GRANT => Ok(Duration::from_secs(s)),
        Some(_) => Err(ApiError::new(
            ErrorCode::InvalidExpiresIn,
            "expires_in must be 60 to 604800 seconds",
        )),
    }
}

/// Who a grant is for and which organization's quota it counts against: an API key's own
/// organization (a named one must be its own), or the organization a person names, or the only
/// one they belong to. Whichever it is, the organization boundary ([`Caller::member`]: membership
/// and single sign-on enforcement) admits the caller before anything is spent.
async fn grantee(
    state: &AppState,
    caller: &Caller,
    named: Option<&str>,
) -> Result<(uuid::Uuid, Grantee), ApiError> {
    let org = match (caller.principal, named) {
        (_, Some(named)) => named.to_owned(),
        (Principal::ApiKey { org, .. }, None) => org.to_string(),
        (Principal::User { user, .. }, None) => only_org(state, user).await?,
    };
    let access = caller.member(state, &org).await?;
    let grantee = match caller.principal {
        Principal::ApiKey { key, .. } => Grantee::ApiKey { id: key.as_uuid() },
        Principal::User { user, .. } => Grantee::User {
            id: user.as_uuid(),
            email: identity::user(&*state.db.get().await?, user).await?.email,
        },
    };
    Ok((access.org.id.as_uuid(), grantee))
}

/// The one organization a user belongs to (a download names none).
async fn only_org(state: &AppState, user: defendable_identity::UserId) -> Result<String, ApiError> {
    let orgs = identity::list_orgs(
        &*state.db.get().await?,
        user,
        PageRequest::new(None, Some(2)),
    )
    .await?;
    match orgs.items.as_slice() {
        [only] => Ok(only.org.id.to_string()),
        [] => Err(defendable_identity::IdentityError::Forbidden(
            "downloads are for members of an organization",
        )
        .into()),
        _ => Err(ApiError::new(
            ErrorCode::OrgRequired,
            "you belong to several organizations: name one in `org`",
        )),
    }
}

/// The organization's dataset quota today.
#[utoipa::path(get, path = "/orgs/{org}/datasets/quota", tag = "datasets", security(("bearer" = [])),
    params(("org" = String, Path, description = "Organization slug or id")),
    responses(
        (status = 200, description = "Quota", body = QuotaView),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization, or not a member", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_org_quota(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<web::Json<QuotaView>, ApiError> {
    let access = caller.member(&state, &path).await?;
    let client = state.db.get().await?;
    let q = datasets::quota(
        &*client,
        access.org.id.as_uuid(),
        default_limit(&state),
        time::OffsetDateTime::now_utc(),
    )
    .await?;
    Ok(web::Json(q.into()))
}
