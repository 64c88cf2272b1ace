//! The OpenAPI 3.1 document, generated from the handlers' annotations.

use actix_web::web;
use utoipa::OpenApi;

use crate::error::Problem;
use crate::routes::health;

/// The API description served at `/openapi.json`.
#[derive(OpenApi, Debug)]
#[openapi(
    info(
        title = "Defendable API",
        description = "Security foundation of the Defendable proof vault: identity, hash-chained receipts, dataset grants.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(health::get_healthz, health::get_readyz, get_openapi),
    components(schemas(Problem, health::Health, health::Readiness)),
    tags(
        (name = "health", description = "Liveness and readiness"),
        (name = "meta", description = "This document"),
    )
)]
pub struct ApiDoc;

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "meta",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json")))]
pub async fn get_openapi() -> web::Json<utoipa::openapi::OpenApi> {
    web::Json(ApiDoc::openapi())
}
