//! The HTML pages people open from links (DESIGN §3): a share link's page, which verifies its
//! receipt in the browser, and the sign-in and invite pages, which never consume a token on
//! GET. Server-rendered with askama (templates checked at compile time, every value escaped);
//! one stylesheet and one script module embedded in the binary; no third-party assets.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpRequest, HttpResponse};
use askama::Template;
use serde_json::Value;

use crate::error::ApiError;

/// The pages' Content-Security-Policy: nothing but this server's own stylesheet, script module
/// and form posts; no framing, no `<base>`, no inline script or style.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                       form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// The embedded stylesheet.
pub const PAGE_CSS: &str = include_str!("../assets/page.css");
/// The embedded verifier module (the same file node runs against the test vectors).
pub const VERIFY_MJS: &str = include_str!("../assets/verify.mjs");

/// Whether the client asked for a page (a browser's `Accept` lists `text/html`).
pub fn wants_html(req: &HttpRequest) -> bool {
    req.headers()
        .get_all(header::ACCEPT)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            let mut parts = t.split(';').map(str::trim);
            let media = parts.next().unwrap_or("");
            // `q=0` (or 0.0…) means "not acceptable"; any other weight still asks for it.
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            media.eq_ignore_ascii_case("text/html") && !refused
        })
}

/// A page response with the pages' security headers: strict CSP, no framing, not stored, no
/// referrer (share and sign-in URLs carry tokens).
pub fn html(status: StatusCode, body: String) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .body(body)
}

/// Renders a template as a page; a template failure is an internal error.
pub fn render(status: StatusCode, page: &impl Template) -> Result<HttpResponse, ApiError> {
    Ok(html(status, page.render().map_err(ApiError::internal)?))
}

/// An error as a page: the problem's status and detail, for people rather than programs.
pub fn error_page(api: &str, e: &ApiError) -> HttpResponse {
    let page = ErrorPage {
        api,
        title: e.status().canonical_reason().unwrap_or("Error"),
        detail: e.detail().unwrap_or("Something went wrong."),
    };
    match page.render() {
        Ok(body) => html(e.status(), body),
        Err(_) => html(e.status(), String::new()),
    }
}

/// JSON for a `<script type="application/json">` block: `<`, `>` and `&` escaped so no value
/// can close the element or open a comment.
pub fn script_json(value: &impl serde::Serialize) -> Result<String, ApiError> {
    let text = serde_json::to_string(value).map_err(ApiError::internal)?;
    Ok(text
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026"))
}

/// Text for a public field's value: strings as they are, anything else as JSON (as the script
/// renders it).
pub fn field_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A receipt as the share page shows it.
#[derive(Debug)]
pub struct ReceiptFacts {
    /// `DCR-…`.
    pub id: String,
    /// Kind.
    pub kind: String,
    /// `created_at` as recorded.
    pub created_at: String,
    /// The receipt hash (hex).
    pub hash: String,
    /// Public fields, sorted by name.
    pub fields: Vec<(String, String)>,
    /// Whether a private part's digest is in the body.
    pub has_private: bool,
}

impl ReceiptFacts {
    /// The facts of a projection's body.
    pub fn of(p: &defendable_ledger::Projection) -> ReceiptFacts {
        let text = |k: &str| p.body.get(k).map(field_text).unwrap_or_default();
        let mut fields: Vec<(String, String)> = p
            .body
            .get("public")
            .and_then(Value::as_object)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), field_text(v))).collect())
            .unwrap_or_default();
        fields.sort();
        ReceiptFacts {
            id: p.receipt_id.clone(),
            kind: text("kind"),
            created_at: text("created_at"),
            hash: p.hash.clone(),
            fields,
            has_private: p.body.get("private_digest").is_some(),
        }
    }
}

/// The log a checkpoint speaks for.
#[derive(Debug)]
pub struct LogFacts {
    /// The origin line.
    pub origin: String,
    /// The tree size, or a note when unknown.
    pub size: String,
}

/// A dataset grant as the share page shows it (from the receipt's public fields).
#[derive(Debug)]
pub struct GrantFacts {
    /// `slug@version`.
    pub dataset: String,
    /// Human size with the exact byte count.
    pub size: String,
    /// BLAKE3 of the bytes.
    pub blake3: String,
    /// When the grant ends.
    pub expires: String,
}

impl GrantFacts {
    /// The grant facts of a `dataset.download` receipt, if it is one.
    pub fn of(p: &defendable_ledger::Projection) -> Option<GrantFacts> {
        if p.body.get("kind").and_then(Value::as_str) != Some("dataset.download") {
            return None;
        }
        let public = p.body.get("public")?;
        let text = |k: &str| public.get(k).map(field_text).unwrap_or_default();
        let bytes = public.get("size").and_then(Value::as_u64).unwrap_or(0);
        Some(GrantFacts {
            dataset: format!("{}@{}", text("slug"), text("version")),
            size: human_size(bytes),
            blake3: text("blake3"),
            expires: text("grant_expires_at"),
        })
    }
}

fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{v:.1} {} ({bytes} bytes)", UNITS[unit])
    }
}

/// `GET /share/{token}` for a browser.
#[derive(Debug, Template)]
#[template(path = "share.html")]
pub struct SharePage<'a> {
    /// This API's base URL (footer).
    pub api: &'a str,
    /// The share token (relative links to its proof and download).
    pub token: &'a str,
    /// The receipt.
    pub receipt: ReceiptFacts,
    /// Its log.
    pub log: LogFacts,
    /// Grant facts, for a dataset grant.
    pub grant: Option<GrantFacts>,
    /// The v2 proof bundle for the script, when the receipt is in the tree.
    pub bundle_json: Option<String>,
    /// Why there is no bundle.
    pub bundle_error: String,
    /// The published verifier keys for the script.
    pub vkeys_json: String,
    /// The offline check.
    pub command: String,
}

/// `GET /auth/callback` and `GET /auth/accept-invite`.
#[derive(Debug, Template)]
#[template(path = "sign_in.html")]
pub struct SignInPage<'a> {
    /// This API's base URL (footer).
    pub api: &'a str,
    /// Page title.
    pub heading: &'a str,
    /// What the link does.
    pub intro: &'a str,
    /// The button's label.
    pub button: &'a str,
    /// The token, carried to the form (empty: the link was cut short).
    pub token: &'a str,
    /// The form's anti-forgery value: bound to this page's token and to the cookie the page
    /// sets in this browser.
    pub csrf: String,
    /// `sign-in` or `invite`.
    pub link: &'a str,
    /// Whether to offer the link for `defendable login`.
    pub offers_cli: bool,
    /// The whole link, for the CLI.
    pub full_link: String,
}

/// A session as the sign-in result shows it (its Debug form omits the token).
pub struct SessionFacts {
    /// Who signed in.
    pub email: String,
    /// When the session ends.
    pub expires: String,
    /// The bearer token.
    pub token: String,
}

impl std::fmt::Debug for SessionFacts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionFacts")
            .field("email", &self.email)
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

/// The result of pressing the button.
#[derive(Debug, Template)]
#[template(path = "signed_in.html")]
pub struct SignedInPage<'a> {
    /// This API's base URL (footer).
    pub api: &'a str,
    /// Page title.
    pub heading: &'a str,
    /// The session, on success.
    pub session: Option<SessionFacts>,
    /// Whether an invite was accepted.
    pub joined: Option<&'a str>,
    /// Why not, on failure.
    pub problem: String,
    /// For an invite the organization accepts only through single sign-on: the identity
    /// provider's authorization URL to continue at (a link: the pages' `form-action 'self'`
    /// would stop a form's redirect to another site).
    pub continue_sso: Option<String>,
}

/// An error as a page.
#[derive(Debug, Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    api: &'a str,
    title: &'a str,
    detail: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_json_cannot_close_its_element() {
        let v = serde_json::json!({"x": "</script><!-- & >"});
        let s = script_json(&v).expect("json");
        assert!(
            !s.contains('<') && !s.contains('>') && !s.contains('&'),
            "{s}"
        );
        let back: Value = serde_json::from_str(&s).expect("still JSON");
        assert_eq!(back, v);
    }

    #[test]
    fn a_page_is_for_clients_that_accept_html_with_any_weight_but_zero() {
        let asks = |accept: &str| {
            let req = actix_web::test::TestRequest::default()
                .insert_header(("accept", accept))
                .to_http_request();
            wants_html(&req)
        };
        assert!(asks("text/html,application/xhtml+xml,*/*;q=0.8"));
        assert!(asks("application/json, text/html;q=0.5"));
        assert!(!asks("text/html;q=0, application/json"));
        assert!(!asks("text/html; q=0.0"));
        assert!(!asks("*/*"));
        assert!(!asks("application/json"));
    }

    #[test]
    fn sizes_read_as_people_read_them() {
        assert_eq!(human_size(512), "512 bytes");
        assert_eq!(human_size(1536), "1.5 KiB (1536 bytes)");
    }
}
