//! The OpenAPI 3.1 document, generated from the handlers' annotations.

use actix_web::web;
use utoipa::OpenApi;

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::Modify;

use crate::error::Problem;
use crate::routes::{
    api_keys, auth, datasets, health, invites, ledger, me, objects, ops, orgs, pages, receipts,
    scim, share, sso, wellknown,
};

/// The API description served at `/openapi.json`.
#[derive(OpenApi, Debug)]
#[openapi(
    info(
        title = "Defendable API",
        description = "Security foundation of the Defendable proof vault: identity, hash-chained receipts, dataset grants.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        health::get_healthz, health::get_readyz, get_openapi, wellknown::get_security_txt,
        pages::get_sign_in_page, pages::get_invite_page, pages::post_link_form, pages::get_asset,
        auth::post_auth_request, auth::post_auth_verify, auth::post_auth_accept_invite, auth::post_auth_logout,
        sso::post_auth_sso_start, sso::get_auth_sso_callback,
        me::get_me,
        orgs::post_orgs, orgs::get_orgs, orgs::get_org, orgs::get_org_members, orgs::patch_org_member, orgs::delete_org_member,
        invites::post_org_invites, invites::get_org_invites, invites::delete_org_invite,
        api_keys::post_org_api_keys, api_keys::get_org_api_keys, api_keys::delete_org_api_key,
        sso::post_org_domains, sso::get_org_domains, sso::post_org_domain_verify, sso::delete_org_domain,
        sso::post_org_sso_connections, sso::get_org_sso_connections, sso::get_org_sso_connection,
        sso::patch_org_sso_connection, sso::delete_org_sso_connection,
        sso::put_org_break_glass, sso::delete_org_break_glass,
        scim::post_org_scim_token, scim::delete_org_scim_token,
        receipts::post_org_receipts, receipts::get_org_receipts, receipts::get_org_receipt,
        receipts::post_receipt_share, receipts::delete_receipt_share, receipts::get_receipt_proof,
        ledger::get_ledger_verify, ledger::get_ledger_checkpoint, ledger::get_ledger_export, ledger::get_ledger_keys,
        ledger::get_ledger_consistency, ledger::get_ledger_tile,
        share::get_share, share::get_share_proof, share::get_share_consistency, share::get_share_download,
        datasets::post_internal_datasets, datasets::get_catalog, datasets::get_catalog_entry,
        datasets::post_catalog_download, datasets::get_org_quota, objects::get_object,
        ops::get_metrics, ops::post_internal_receipts, ops::post_stripe_webhook, ops::get_org_audit,
    ),
    components(schemas(Problem, health::Health, health::Readiness, crate::bodies::RoleView)),
    modifiers(&BearerAuth, &CommonResponses),
    tags(
        (name = "health", description = "Liveness and readiness"),
        (name = "meta", description = "This document"),
        (name = "auth", description = "Magic-link sign-in, invites, sessions"),
        (name = "pages", description = "HTML pages mailed links open (sign-in, invites) and their embedded assets; share pages are `GET /share/{token}` with `Accept: text/html`"),
        (name = "orgs", description = "Organizations and members"),
        (name = "invites", description = "Invites (owners)"),
        (name = "api-keys", description = "API keys (owners, by session)"),
        (name = "sso", description = "Enterprise SSO settings (owners, by session): verified domains and identity-provider connections, each change an `idp.config_change` receipt"),
        (name = "receipts", description = "Hash-chained receipts of an organization"),
        (name = "ledger", description = "Chain and tree verification, signed-note checkpoints, consistency proofs, tiles, export, keys"),
        (name = "share", description = "Public share links: the projection, its proof bundle, consistency proofs"),
        (name = "datasets", description = "Catalog, grants under the daily quota, signed object URLs"),
        (name = "internal", description = "Stager and runner routes: allowed networks and the internal key"),
    )
)]
pub struct ApiDoc;

/// Declares the bearer scheme: a session access token or an organization API key.
#[derive(Debug)]
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A session access token from /auth/verify, or an API key (dfd_…)",
                    ))
                    .build(),
            ),
        );
    }
}

/// Operations that never touch the database, so never answer `503 database_unavailable`.
const WITHOUT_DATABASE: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/openapi.json"),
    ("GET", "/.well-known/security.txt"),
    ("GET", "/ledger/keys"),
    ("GET", "/objects/{key}"),
    ("GET", "/auth/callback"),
    ("GET", "/auth/accept-invite"),
    ("GET", "/assets/{name}"),
];

/// Documents the answers every route of a kind can give, so that no status a client may see
/// is missing from the document: `400` (a malformed query or body) where there are parameters
/// or a body, `413`, `415` and `422` where there is a body, `429` where `config::limits` declares
/// a rate limit, and `503` (the database is unavailable, with `Retry-After`) wherever the
/// database is read. A handler's own description of a status is kept.
#[derive(Debug)]
struct CommonResponses;

impl Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let problem = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    crate::error::PROBLEM_JSON,
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("Problem")))
                        .build(),
                )
                .build()
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            let operations = [
                ("GET", &mut item.get),
                ("PUT", &mut item.put),
                ("POST", &mut item.post),
                ("DELETE", &mut item.delete),
                ("PATCH", &mut item.patch),
            ];
            for (method, operation) in operations {
                let Some(operation) = operation else {
                    continue;
                };
                let has_body = operation.request_body.is_some();
                let has_query = operation.parameters.as_ref().is_some_and(|ps| {
                    ps.iter().any(|p| {
                        !matches!(p.parameter_in, utoipa::openapi::path::ParameterIn::Path)
                    })
                });
                let mut add = |status: &str, description: &str| {
                    operation
                        .responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| problem(description).into());
                };
                if has_body || has_query {
                    add("400", "A malformed query, header or body");
                }
                if has_body {
                    add("413", "The body is larger than allowed");
                    add("415", "The body is not of the documented media type");
                    add("422", "The body is well-formed but not the expected shape");
                }
                let limited = defendable_config::limits::RATE_LIMITS
                    .iter()
                    .any(|r| r.method == method && r.route == path.as_str());
                if limited {
                    add(
                        "429",
                        "Rate limited (`rate_limited`, with Retry-After and RateLimit fields)",
                    );
                }
                if !WITHOUT_DATABASE.contains(&(method, path.as_str())) {
                    add(
                        "503",
                        "The database is unavailable or busy (`database_unavailable`, with Retry-After)",
                    );
                }
            }
        }
    }
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "meta",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json")))]
pub async fn get_openapi() -> web::Json<utoipa::openapi::OpenApi> {
    web::Json(ApiDoc::openapi())
}
