//! Route table: one module per resource, one small handler per operation.

pub mod api_keys;
pub mod auth;
pub mod datasets;
pub mod health;
pub mod invites;
pub mod ledger;
pub mod me;
pub mod objects;
pub mod ops;
pub mod orgs;
pub mod pages;
pub mod receipts;
pub mod scim;
pub mod share;
pub mod sso;
pub mod wellknown;

use actix_cors::Cors;
use actix_web::http::{header, Method};
use actix_web::web;
use defendable_config::Config;

use crate::error::{json_error, ApiError};
use crate::middleware::{path_error, query_error};
use crate::openapi;

/// Registers every route and the extractor error handlers.
pub fn configure(config: &Config) -> impl FnOnce(&mut web::ServiceConfig) + '_ {
    move |cfg: &mut web::ServiceConfig| {
        cfg.app_data(web::PayloadConfig::new(config.json_body_limit))
            .app_data(
                web::JsonConfig::default()
                    .limit(config.json_body_limit)
                    .error_handler(|err, _req| json_error(err).into()),
            )
            .app_data(web::PathConfig::default().error_handler(|err, _req| path_error(err).into()))
            .app_data(
                web::QueryConfig::default().error_handler(|err, _req| query_error(err).into()),
            )
            // The busiest routes first: the router tries dynamic patterns in this order, one regex
            // each, and no other route has these shapes (the route matrix walks every route).
            .service(
                web::resource("/orgs/{org}/receipts")
                    .post(receipts::post_org_receipts)
                    .get(receipts::get_org_receipts),
            )
            .service(web::resource("/share/{token}").get(share::get_share))
            .service(web::resource("/healthz").get(health::get_healthz))
            .service(web::resource("/readyz").get(health::get_readyz))
            .service(web::resource("/openapi.json").get(openapi::get_openapi))
            .service(web::resource("/.well-known/security.txt").get(wellknown::get_security_txt))
            .service(web::resource("/auth/request").post(auth::post_auth_request))
            .service(web::resource("/auth/verify").post(auth::post_auth_verify))
            .service(
                web::resource("/auth/accept-invite")
                    .get(pages::get_invite_page)
                    .post(auth::post_auth_accept_invite),
            )
            .service(
                web::resource("/auth/callback")
                    .get(pages::get_sign_in_page)
                    .post(pages::post_link_form),
            )
            .service(web::resource("/assets/{name}").get(pages::get_asset))
            .service(web::resource("/auth/sso/start").post(sso::post_auth_sso_start))
            .service(web::resource("/auth/sso/callback").get(sso::get_auth_sso_callback))
            .service(web::resource("/auth/logout").post(auth::post_auth_logout))
            .service(web::resource("/me").get(me::get_me))
            .service(
                web::resource("/orgs")
                    .post(orgs::post_orgs)
                    .get(orgs::get_orgs),
            )
            .service(web::resource("/orgs/{org}").get(orgs::get_org))
            .service(web::resource("/orgs/{org}/members").get(orgs::get_org_members))
            .service(
                web::resource("/orgs/{org}/members/{user}")
                    .patch(orgs::patch_org_member)
                    .delete(orgs::delete_org_member),
            )
            .service(
                web::resource("/orgs/{org}/invites")
                    .post(invites::post_org_invites)
                    .get(invites::get_org_invites),
            )
            .service(web::resource("/orgs/{org}/invites/{id}").delete(invites::delete_org_invite))
            .service(
                web::resource("/orgs/{org}/api-keys")
                    .post(api_keys::post_org_api_keys)
                    .get(api_keys::get_org_api_keys),
            )
            .service(
                web::resource("/orgs/{org}/api-keys/{id}").delete(api_keys::delete_org_api_key),
            )
            .service(
                web::resource("/orgs/{org}/domains")
                    .post(sso::post_org_domains)
                    .get(sso::get_org_domains),
            )
            .service(web::resource("/orgs/{org}/domains/{domain}").delete(sso::delete_org_domain))
            .service(
                web::resource("/orgs/{org}/domains/{domain}/verify")
                    .post(sso::post_org_domain_verify),
            )
            .service(
                web::resource("/orgs/{org}/sso/connections")
                    .post(sso::post_org_sso_connections)
                    .get(sso::get_org_sso_connections),
            )
            .service(
                web::resource("/orgs/{org}/sso/connections/{id}")
                    .get(sso::get_org_sso_connection)
                    .patch(sso::patch_org_sso_connection)
                    .delete(sso::delete_org_sso_connection),
            )
            .service(
                web::resource("/orgs/{org}/sso/connections/{id}/scim-token")
                    .post(scim::post_org_scim_token)
                    .delete(scim::delete_org_scim_token),
            )
            .configure(scim::configure)
            .service(
                web::resource("/orgs/{org}/sso/break-glass/{user}")
                    .put(sso::put_org_break_glass)
                    .delete(sso::delete_org_break_glass),
            )
            .service(web::resource("/orgs/{org}/receipts/{id}").get(receipts::get_org_receipt))
            .service(
                web::resource("/orgs/{org}/receipts/{id}/proof").get(receipts::get_receipt_proof),
            )
            .service(
                web::resource("/orgs/{org}/receipts/{id}/share")
                    .post(receipts::post_receipt_share)
                    .delete(receipts::delete_receipt_share),
            )
            .service(web::resource("/orgs/{org}/ledger/verify").get(ledger::get_ledger_verify))
            .service(
                web::resource("/orgs/{org}/ledger/checkpoint").get(ledger::get_ledger_checkpoint),
            )
            .service(web::resource("/orgs/{org}/ledger/export").get(ledger::get_ledger_export))
            .service(
                web::resource("/orgs/{org}/ledger/consistency").get(ledger::get_ledger_consistency),
            )
            .service(
                web::resource("/orgs/{org}/ledger/tile/{tile:.*}").get(ledger::get_ledger_tile),
            )
            .service(web::resource("/ledger/keys").get(ledger::get_ledger_keys))
            .service(web::resource("/share/{token}/proof").get(share::get_share_proof))
            .service(web::resource("/share/{token}/consistency").get(share::get_share_consistency))
            .service(web::resource("/share/{token}/download").get(share::get_share_download))
            .service(web::resource("/internal/datasets").post(datasets::post_internal_datasets))
            .service(web::resource("/datasets/catalog").get(datasets::get_catalog))
            .service(web::resource("/datasets/catalog/{slug}").get(datasets::get_catalog_entry))
            .service(
                web::resource("/datasets/catalog/{slug}/download")
                    .post(datasets::post_catalog_download),
            )
            .service(web::resource("/orgs/{org}/datasets/quota").get(datasets::get_org_quota))
            .service(web::resource("/objects/{key:.*}").get(objects::get_object))
            .service(web::resource("/metrics").get(ops::get_metrics))
            .service(web::resource("/internal/receipts").post(ops::post_internal_receipts))
            .service(web::resource("/webhooks/stripe").post(ops::post_stripe_webhook))
            .service(web::resource("/orgs/{org}/audit").get(ops::get_org_audit))
            .default_service(web::to(not_found));
    }
}

async fn not_found() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::not_found())
}

/// CORS for the configured origins only; no credentials cookies, bearer tokens only.
pub fn cors(config: &Config) -> Cors {
    let mut cors = Cors::default()
        .allowed_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE])
        .allowed_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::HeaderName::from_static("idempotency-key"),
            header::HeaderName::from_static("x-request-id"),
        ])
        .expose_headers([
            header::HeaderName::from_static("x-request-id"),
            header::RETRY_AFTER,
            header::HeaderName::from_static("ratelimit"),
            header::HeaderName::from_static("ratelimit-policy"),
        ])
        .max_age(600);
    for origin in config.cors_origins() {
        cors = cors.allowed_origin(&origin);
    }
    cors
}
