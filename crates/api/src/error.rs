//! The one mapping from failures to HTTP: `application/problem+json` (RFC 9457) with a stable
//! machine `code`. Internal failures are logged once here and answered without internals.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem document.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// Always `about:blank`: the title is the HTTP status phrase and `code` names the problem.
    #[serde(rename = "type")]
    pub type_: String,
    /// A short, human-readable summary of the problem type.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What happened in this occurrence, readable by a person.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// A stable machine-readable code; clients branch on this, never on `title` or `detail`.
    pub code: String,
    /// Extra members for this problem type (for example readiness checks).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub extra: Option<serde_json::Value>,
}

/// An error a handler returns; rendered as a [`Problem`].
#[derive(Debug, Clone)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    detail: Option<String>,
    extra: Option<serde_json::Value>,
    retry_after: Option<u64>,
    headers: Vec<(&'static str, String)>,
}

impl ApiError {
    /// A problem with a status, a stable code and a human detail.
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            detail: Some(detail.into()),
            extra: None,
            retry_after: None,
            headers: Vec::new(),
        }
    }

    /// Adds response headers (rate-limit fields).
    pub fn with_headers(mut self, headers: Vec<(&'static str, String)>) -> Self {
        self.headers = headers;
        self
    }

    /// Adds `Retry-After` (seconds) to the response.
    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// Adds extension members to the problem document.
    pub fn with_extra(mut self, extra: serde_json::Value) -> Self {
        self.extra = Some(extra);
        self
    }

    /// 400 with code `bad_request`.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", detail)
    }

    /// 404 with code `not_found`.
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such resource")
    }

    /// A 500 for an unexpected failure: logged here, with the cause, and answered generically.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "an internal error occurred; it has been logged with this request's id",
        )
    }

    /// A storage failure: 503 `database_unavailable` with `Retry-After` when the database is
    /// away, saturated or too slow (a retry may succeed), otherwise a logged 500.
    pub fn store(e: impl Into<defendable_store::StoreError>) -> Self {
        let e = e.into();
        if e.is_unavailable() {
            Self::database_unavailable(e)
        } else {
            Self::internal(e)
        }
    }

    /// 503 `database_unavailable` with `Retry-After`: the database is away, saturated or too
    /// slow; `cause` is logged.
    pub fn database_unavailable(cause: impl std::fmt::Display) -> Self {
        tracing::warn!(error = %cause, "database unavailable");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "database_unavailable",
            "the database is unavailable or busy; try again shortly",
        )
        .with_retry_after(defendable_config::limits::DB_RETRY_AFTER_SECS)
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        self.code
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.code)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = problem_response(
            self.status,
            self.code,
            self.detail.clone(),
            self.extra.clone(),
        );
        for (name, value) in &self.headers {
            if let Ok(v) = HeaderValue::from_str(value) {
                res.headers_mut()
                    .insert(header::HeaderName::from_static(name), v);
            }
        }
        if let Some(secs) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                res.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        res
    }
}

/// The stable code for a bare status, used when a response left the framework without one.
pub fn code_for_status(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        406 => "not_acceptable",
        408 => "request_timeout",
        409 => "conflict",
        411 => "length_required",
        413 => "payload_too_large",
        414 => "uri_too_long",
        415 => "unsupported_media_type",
        422 => "unprocessable",
        429 => "rate_limited",
        503 => "unavailable",
        s if s >= 500 => "internal",
        _ => "error",
    }
}

/// Builds a problem+json response.
pub fn problem_response(
    status: StatusCode,
    code: &str,
    detail: Option<String>,
    extra: Option<serde_json::Value>,
) -> HttpResponse {
    let problem = Problem {
        type_: "about:blank".to_owned(),
        title: status.canonical_reason().unwrap_or("Error").to_owned(),
        status: status.as_u16(),
        detail,
        code: code.to_owned(),
        extra,
    };
    let body = serde_json::to_vec(&problem).unwrap_or_else(|_| b"{}".to_vec());
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON)))
        .body(body)
}

/// Maps JSON body extraction failures: 413 too large, 415 wrong media type, 400 malformed,
/// 422 well-formed but not the expected shape.
pub fn json_error(err: actix_web::error::JsonPayloadError) -> ApiError {
    use actix_web::error::JsonPayloadError as E;
    match err {
        E::Overflow { limit } | E::OverflowKnownLength { limit, .. } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the JSON body is larger than {limit} bytes"),
        ),
        E::ContentType => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as application/json",
        ),
        E::Deserialize(e) if e.is_data() => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            format!("the JSON body does not have the expected shape: {e}"),
        ),
        E::Deserialize(e) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("the body is not valid JSON: {e}"),
        ),
        other => ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("the request body could not be read: {other}"),
        ),
    }
}

impl From<defendable_identity::IdentityError> for ApiError {
    fn from(e: defendable_identity::IdentityError) -> Self {
        use defendable_identity::IdentityError as E;
        let detail = e.to_string();
        match e {
            E::InvalidEmail(_) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_email", detail)
            }
            E::InvalidSlug(_) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_slug", detail)
            }
            E::InvalidInput(_) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", detail)
            }
            E::InvalidToken => Self::new(StatusCode::UNAUTHORIZED, "invalid_token", detail),
            E::InvalidCredentials => Self::new(StatusCode::UNAUTHORIZED, "unauthorized", detail),
            E::Forbidden(_) => Self::new(StatusCode::FORBIDDEN, "forbidden", detail),
            E::NotFound => Self::not_found(),
            E::LastOwner => Self::new(StatusCode::CONFLICT, "last_owner", detail),
            E::AlreadyMember => Self::new(StatusCode::CONFLICT, "already_member", detail),
            E::SlugTaken => Self::new(StatusCode::CONFLICT, "slug_taken", detail),
            E::Store(inner) => Self::store(inner),
        }
    }
}
