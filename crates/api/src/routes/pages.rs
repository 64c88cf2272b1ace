//! The sign-in and invite pages mailed links land on, and the pages' embedded assets. A GET
//! never consumes a token (mail scanners and link previews fetch links); only the button's
//! POST does, through the same code, limits and audit events as the JSON routes.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use time::format_description::well_known::Rfc3339;
use utoipa::{IntoParams, ToSchema};

use crate::bodies::SessionView;
use crate::error::{ApiError, ErrorCode};
use crate::pages::{self, SessionFacts, SignInPage, SignedInPage};
use crate::signin::{self, app_link, InviteOutcome};
use crate::AppState;

/// The token of a mailed link.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LinkQuery {
    /// The one-time token the link carries.
    pub token: Option<String>,
}

/// Which kind of mailed link a form carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum LinkKind {
    /// A magic sign-in link.
    SignIn,
    /// An invite.
    Invite,
}

/// The sign-in page's form (`application/x-www-form-urlencoded`).
#[derive(Debug, Deserialize, ToSchema)]
pub struct LinkForm {
    /// The one-time token.
    pub token: String,
    /// `sign-in` or `invite`.
    pub link: LinkKind,
    /// The page's anti-forgery value: only the page this browser opened (which set the
    /// `__Host-defendable-form` cookie) carries the one that matches.
    pub csrf: Option<String>,
}

/// The cookie the pages set; the form's `csrf` is bound to its value and to the page's token.
const FORM_COOKIE: &str = "__Host-defendable-form";

/// The form value for a page showing `token` to the browser holding cookie value `key`:
/// base64url(SHA-256("defendable-form" 0 key 0 token)). Another site cannot read the cookie
/// (HttpOnly) nor have the browser send it with a cross-site post (SameSite=Strict), so it
/// cannot forge a form that passes: no sign-in as someone else through this page (login CSRF).
fn form_binding(key: &str, token: &str) -> String {
    use base64::Engine as _;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for part in [
        b"defendable-form".as_slice(),
        b"\0",
        key.as_bytes(),
        b"\0",
        token.as_bytes(),
    ] {
        ctx.update(part);
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(ctx.finish())
}

/// Whether the form came from the page this browser opened.
fn form_is_genuine(req: &HttpRequest, form: &LinkForm) -> bool {
    use subtle::ConstantTimeEq as _;
    match (signin::cookie(req, FORM_COOKIE), &form.csrf) {
        (Some(key), Some(sent)) => bool::from(
            form_binding(&key, &form.token)
                .as_bytes()
                .ct_eq(sent.as_bytes()),
        ),
        _ => false,
    }
}

fn link_page<'a>(
    state: &'a AppState,
    api: &'a str,
    kind: LinkKind,
    token: &'a str,
    csrf: String,
) -> SignInPage<'a> {
    let (heading, intro, button, path) = match kind {
        LinkKind::SignIn => (
            "Sign in to Defendable",
            "This link signs you in once. Press the button to use it here, or open “Use in the CLI instead” if you started from defendable login.",
            "Sign in here",
            "/auth/callback",
        ),
        LinkKind::Invite => (
            "Join an organization on Defendable",
            "This invitation adds you to an organization and signs you in. It works once.",
            "Accept the invitation and sign in",
            "/auth/accept-invite",
        ),
    };
    SignInPage {
        api,
        heading,
        intro,
        button,
        token,
        csrf,
        link: match kind {
            LinkKind::SignIn => "sign-in",
            LinkKind::Invite => "invite",
        },
        offers_cli: kind == LinkKind::SignIn,
        full_link: app_link(state, path, token),
    }
}

fn show_link(
    state: &AppState,
    kind: LinkKind,
    query: &LinkQuery,
) -> Result<HttpResponse, ApiError> {
    let api = state.config.api_base_url().to_string();
    let token = query.token.as_deref().unwrap_or("");
    if token.is_empty() {
        return pages::render(
            StatusCode::BAD_REQUEST,
            &link_page(state, &api, kind, token, String::new()),
        );
    }
    // A fresh key per page view: the cookie holds it, the form carries its binding to the token.
    let key = defendable_sso::oidc::random_value();
    let csrf = form_binding(&key, token);
    let mut response = pages::render(StatusCode::OK, &link_page(state, &api, kind, token, csrf))?;
    let max_age = state.config.magic_link_ttl.as_secs().max(60);
    response.headers_mut().insert(
        header::SET_COOKIE,
        header::HeaderValue::from_str(&format!(
            "{FORM_COOKIE}={key}; Path=/; Max-Age={max_age}; HttpOnly; Secure; SameSite=Strict"
        ))
        .map_err(ApiError::internal)?,
    );
    Ok(response)
}

/// The page a magic link opens: a button that signs in, and the link for `defendable login`.
/// Opening it consumes nothing.
#[utoipa::path(get, path = "/auth/callback", tag = "pages", params(LinkQuery),
    responses(
        (status = 200, description = "The sign-in page (the token is not used until its button is pressed)", content_type = "text/html", body = String),
        (status = 400, description = "The link has no token", content_type = "text/html", body = String),
    ))]
pub async fn get_sign_in_page(
    state: web::Data<AppState>,
    query: web::Query<LinkQuery>,
) -> Result<HttpResponse, ApiError> {
    show_link(&state, LinkKind::SignIn, &query)
}

/// The page an invite link opens: a button that accepts. Opening it consumes nothing.
#[utoipa::path(get, path = "/auth/accept-invite", tag = "pages", params(LinkQuery),
    responses(
        (status = 200, description = "The invite page (the token is not used until its button is pressed)", content_type = "text/html", body = String),
        (status = 400, description = "The link has no token", content_type = "text/html", body = String),
    ))]
pub async fn get_invite_page(
    state: web::Data<AppState>,
    query: web::Query<LinkQuery>,
) -> Result<HttpResponse, ApiError> {
    show_link(&state, LinkKind::Invite, &query)
}

fn session_facts(s: SessionView) -> SessionFacts {
    let expires = time::OffsetDateTime::now_utc() + time::Duration::seconds(s.expires_in);
    SessionFacts {
        email: s.user.email,
        expires: expires
            .replace_nanosecond(0)
            .ok()
            .and_then(|t| t.format(&Rfc3339).ok())
            .unwrap_or_default(),
        token: s.access_token,
    }
}

/// The pages' button: uses the link (sign-in or invite) exactly as `POST /auth/verify` or
/// `POST /auth/accept-invite` would, with the same per-IP limit and audit event, and shows the
/// outcome. A used, expired or unknown link gets 401 and says so.
#[utoipa::path(post, path = "/auth/callback", tag = "pages",
    request_body(content = LinkForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Signed in: the outcome page; or, for an invite the organization accepts only through single sign-on, a page linking to the identity provider, with the `__Host-defendable-sso` cookie binding that sign-in (which uses the invite)", content_type = "text/html", body = String),
        (status = 401, description = "The link was used, has expired or is invalid", content_type = "text/html", body = String),
        (status = 403, description = "The form did not come from the page this browser opened (`form_refused`: its `csrf` value or the `__Host-defendable-form` cookie the page set is missing or does not match)", content_type = "text/html", body = String),
        (status = 409, description = "Already a member (invites)", content_type = "text/html", body = String),
        (status = 429, description = "Rate limited", content_type = "text/html", body = String),
    ))]
pub async fn post_link_form(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<LinkForm>,
) -> Result<HttpResponse, ApiError> {
    // A form another site made (login CSRF) is refused before the token is looked at.
    let outcome = if !form_is_genuine(&req, &form) {
        Err(ApiError::new(
            ErrorCode::FormRefused,
            "this form did not come from the page this browser opened: open the link from your message again",
        ))
    } else {
        match form.link {
            LinkKind::SignIn => signin::sign_in(&req, &state, &form.token, None)
                .await
                .map(InviteOutcome::Joined),
            LinkKind::Invite => signin::accept_invite_or_sso(&req, &state, &form.token).await,
        }
    };
    outcome_page(&state, form.link, outcome)
}

/// The page that shows what the button led to: signed in; for an invite the organization
/// accepts only through single sign-on, a link to the identity provider with the cookie that
/// binds the sign-in (which uses the invite) to this browser; or the problem.
fn outcome_page(
    state: &AppState,
    link: LinkKind,
    outcome: Result<InviteOutcome, ApiError>,
) -> Result<HttpResponse, ApiError> {
    let api = state.config.api_base_url().to_string();
    let mut page = SignedInPage {
        api: &api,
        heading: "You are signed in",
        session: None,
        joined: None,
        problem: String::new(),
        continue_sso: None,
    };
    let (status, sso_cookie) = match outcome {
        Ok(InviteOutcome::Joined(session)) => {
            page.session = Some(session_facts(session));
            page.joined = (link == LinkKind::Invite).then_some("the organization");
            (StatusCode::OK, None)
        }
        Ok(InviteOutcome::ContinueSso(begun)) => {
            page.heading = "Continue with single sign-on";
            page.continue_sso = Some(begun.started.authorization_url);
            (StatusCode::OK, begun.browser)
        }
        Err(e) => {
            page.heading = "This link did not sign you in";
            page.problem = link_problem(&e);
            (e.status(), None)
        }
    };
    let mut response = pages::render(status, &page)?;
    if let Some(browser) = sso_cookie {
        let cookie = signin::sso_cookie(Some(&browser));
        let value = header::HeaderValue::from_str(&cookie).map_err(ApiError::internal)?;
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

/// What a person is told when the button fails.
fn link_problem(e: &ApiError) -> String {
    match e.status() {
        StatusCode::UNAUTHORIZED => {
            "This link has already been used, has expired, or is not valid. Each link works once."
                .to_owned()
        }
        _ => e.detail().unwrap_or("Something went wrong.").to_owned(),
    }
}

/// The pages' stylesheet and verifier module, embedded in the binary.
#[utoipa::path(get, path = "/assets/{name}", tag = "pages",
    params(("name" = String, Path, description = "`page.css` or `verify.mjs`")),
    responses(
        (status = 200, description = "The asset", content_type = "text/css", body = String),
        (status = 404, description = "No such asset", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_asset(path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let (content_type, body) = match path.as_str() {
        "page.css" => ("text/css; charset=utf-8", pages::PAGE_CSS),
        "verify.mjs" => ("text/javascript; charset=utf-8", pages::VERIFY_MJS),
        _ => return Err(ApiError::not_found()),
    };
    Ok(HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .insert_header((header::CONTENT_SECURITY_POLICY, pages::CSP))
        .body(body))
}
