//! `/.well-known/security.txt` (RFC 9116): where to report a vulnerability.

use actix_web::{http::header, web, HttpResponse};
use time::format_description::well_known::Rfc3339;

use crate::AppState;

/// How far ahead `Expires` points; RFC 9116 advises less than a year.
const VALIDITY: time::Duration = time::Duration::days(180);

/// Where to report a vulnerability (RFC 9116).
#[utoipa::path(get, path = "/.well-known/security.txt", tag = "health",
    responses((status = 200, description = "The security contact", content_type = "text/plain")))]
pub async fn get_security_txt(state: web::Data<AppState>) -> HttpResponse {
    let expires = (time::OffsetDateTime::now_utc() + VALIDITY)
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default();
    let api = state.config.api_base_url();
    let app = state.config.app_base_url();
    let body = format!(
        "Contact: {}\nExpires: {expires}\nPreferred-Languages: en\nCanonical: {}/.well-known/security.txt\nPolicy: {}/security\n",
        state.config.security_contact,
        api.as_str().trim_end_matches('/'),
        app.as_str().trim_end_matches('/'),
    );
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/plain; charset=utf-8"))
        .body(body)
}
