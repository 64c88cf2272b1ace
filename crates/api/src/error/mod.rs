//! The one mapping from failures to HTTP: `application/problem+json` (RFC 9457) with a stable
//! machine `code`. Internal failures are logged once here and answered without internals.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

mod cores;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

macro_rules! error_codes {
    ($($(#[doc = $doc:literal])* $variant:ident = $code:literal, $status:ident;)*) => {
        /// Every `code` this API answers with, and the status it comes with. Clients branch on
        /// the code; the OpenAPI document lists them all (`ErrorCode`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($(#[doc = $doc])* $variant,)*
        }

        impl ErrorCode {
            /// Every code, in the order declared.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),*];

            /// The stable string clients see.
            pub fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $code,)* }
            }

            /// The HTTP status this code is answered with.
            pub fn status(self) -> StatusCode {
                match self { $(ErrorCode::$variant => StatusCode::$status,)* }
            }

            /// What the code means, for the reference in `docs/errors.md`.
            pub fn description(self) -> &'static str {
                match self { $(ErrorCode::$variant => concat!($($doc),*),)* }
            }
        }
    };
}

error_codes! {
    /// The request could not be read (query, headers or body).
    BadRequest = "bad_request", BAD_REQUEST;
    /// The body is not valid JSON.
    MalformedJson = "malformed_json", BAD_REQUEST;
    /// A webhook's signature does not verify.
    InvalidSignature = "invalid_signature", BAD_REQUEST;
    /// No valid credential.
    Unauthorized = "unauthorized", UNAUTHORIZED;
    /// A single sign-on was refused; the detail names the check that failed.
    SsoRefused = "sso_refused", UNAUTHORIZED;
    /// A one-time token is unknown, used or expired.
    InvalidToken = "invalid_token", UNAUTHORIZED;
    /// The internal key or runner token is wrong or missing.
    InvalidInternalKey = "invalid_internal_key", UNAUTHORIZED;
    /// The caller may not do this.
    Forbidden = "forbidden", FORBIDDEN;
    /// The organization enforces single sign-on and this session did not come through it (or
    /// an invite to one of its single sign-on domains was not accepted through it).
    SsoRequired = "sso_required", FORBIDDEN;
    /// Only a person's session may do this, not an API key.
    SessionRequired = "session_required", FORBIDDEN;
    /// A sign-in or invite page's form did not come from the page this browser opened (its
    /// anti-forgery value or cookie is missing or does not match): open the link again.
    FormRefused = "form_refused", FORBIDDEN;
    /// The caller's network may not reach this route.
    NetworkNotAllowed = "network_not_allowed", FORBIDDEN;
    /// The runner token may not write to this organization (`RUNNER_ORGS`).
    RunnerOrgNotAllowed = "runner_org_not_allowed", FORBIDDEN;
    /// An object link is tampered with, expired or signed by an unknown key.
    InvalidLinkSignature = "invalid_signature", FORBIDDEN;
    /// No such resource (or not visible to the caller).
    NotFound = "not_found", NOT_FOUND;
    /// The route does not take this method.
    MethodNotAllowed = "method_not_allowed", METHOD_NOT_ALLOWED;
    /// No representation matches `Accept`.
    NotAcceptable = "not_acceptable", NOT_ACCEPTABLE;
    /// The request took too long to arrive.
    RequestTimeout = "request_timeout", REQUEST_TIMEOUT;
    /// The request conflicts with the resource's state.
    Conflict = "conflict", CONFLICT;
    /// The change would leave the organization without an owner.
    LastOwner = "last_owner", CONFLICT;
    /// The person is already a member.
    AlreadyMember = "already_member", CONFLICT;
    /// Another organization has this slug.
    SlugTaken = "slug_taken", CONFLICT;
    /// The organization already claims this domain.
    DomainExists = "domain_exists", CONFLICT;
    /// Another organization has verified this domain.
    DomainTaken = "domain_taken", CONFLICT;
    /// Enforcing single sign-on needs a break-glass owner, and the last one cannot go while it
    /// is enforced.
    BreakGlassRequired = "break_glass_required", CONFLICT;
    /// Another of the organization's SSO connections already routes this domain.
    DomainRouted = "domain_routed", CONFLICT;
    /// The dataset grant has expired.
    GrantExpired = "grant_expired", GONE;
    /// The body needs a length.
    LengthRequired = "length_required", LENGTH_REQUIRED;
    /// The body is over the route's size limit.
    PayloadTooLarge = "payload_too_large", PAYLOAD_TOO_LARGE;
    /// The request target is too long.
    UriTooLong = "uri_too_long", URI_TOO_LONG;
    /// The body's content type is not accepted.
    UnsupportedMediaType = "unsupported_media_type", UNSUPPORTED_MEDIA_TYPE;
    /// The `Range` lies outside the object.
    RangeNotSatisfiable = "range_not_satisfiable", RANGE_NOT_SATISFIABLE;
    /// Well-formed but not acceptable.
    Unprocessable = "unprocessable", UNPROCESSABLE_ENTITY;
    /// A SCIM request was refused; its `scimType` (invalidValue, invalidSyntax, invalidFilter,
    /// invalidPath, noTarget, mutability, tooMany) says why.
    ScimInvalid = "scim_invalid", BAD_REQUEST;
    /// A SCIM userName (or the account an address names) is taken in this directory.
    ScimUniqueness = "scim_uniqueness", CONFLICT;
    /// The SCIM operation is not supported (bulk, searching across types, sorting).
    NotImplemented = "not_implemented", NOT_IMPLEMENTED;
    /// The JSON body does not have the expected shape.
    InvalidBody = "invalid_body", UNPROCESSABLE_ENTITY;
    /// A field's value is not acceptable.
    InvalidInput = "invalid_input", UNPROCESSABLE_ENTITY;
    /// Not an email address.
    InvalidEmail = "invalid_email", UNPROCESSABLE_ENTITY;
    /// Not a valid organization slug.
    InvalidSlug = "invalid_slug", UNPROCESSABLE_ENTITY;
    /// Not a valid receipt kind.
    InvalidKind = "invalid_kind", UNPROCESSABLE_ENTITY;
    /// The receipt kind is written by the server only.
    ReservedKind = "reserved_kind", UNPROCESSABLE_ENTITY;
    /// A receipt part is not a JSON object.
    NotAnObject = "not_an_object", UNPROCESSABLE_ENTITY;
    /// A number cannot be represented exactly in canonical JSON.
    UnsafeNumber = "unsafe_number", UNPROCESSABLE_ENTITY;
    /// The sealed receipt is over the canonical size limit.
    BodyTooLarge = "body_too_large", UNPROCESSABLE_ENTITY;
    /// The Idempotency-Key was used with a different body.
    IdempotencyKeyReused = "idempotency_key_reused", UNPROCESSABLE_ENTITY;
    /// A sequence number or tree size lies outside the log.
    OutOfRange = "out_of_range", UNPROCESSABLE_ENTITY;
    /// The page cursor is not one this API issued.
    InvalidCursor = "invalid_cursor", UNPROCESSABLE_ENTITY;
    /// A share link's `expires_in` is outside the allowed range.
    InvalidExpiry = "invalid_expiry", UNPROCESSABLE_ENTITY;
    /// A grant's `expires_in` is outside 60 to 604800 seconds.
    InvalidExpiresIn = "invalid_expires_in", UNPROCESSABLE_ENTITY;
    /// The requested proof format is neither `json` nor `tlog-proof`.
    InvalidFormat = "invalid_format", UNPROCESSABLE_ENTITY;
    /// The caller belongs to several organizations and the request does not name one.
    OrgRequired = "org_required", UNPROCESSABLE_ENTITY;
    /// The object's BLAKE3 digest differs from the declared one.
    DigestMismatch = "digest_mismatch", UNPROCESSABLE_ENTITY;
    /// The object is not in storage.
    ObjectMissing = "object_missing", UNPROCESSABLE_ENTITY;
    /// The domain's TXT record does not hold its challenge (yet); the detail says what the
    /// lookup saw.
    DomainNotVerified = "domain_not_verified", UNPROCESSABLE_ENTITY;
    /// An SSO connection's issuer or client id changes only with its client secret in the same
    /// request.
    ClientSecretRequired = "client_secret_required", UNPROCESSABLE_ENTITY;
    /// A declared per-organization limit (domains, SSO connections, group mappings) is reached.
    LimitReached = "limit_reached", UNPROCESSABLE_ENTITY;
    /// A rate limit of `config::limits` refused the request.
    RateLimited = "rate_limited", TOO_MANY_REQUESTS;
    /// The daily dataset quota is used up.
    QuotaExhausted = "quota_exhausted", TOO_MANY_REQUESTS;
    /// The caller already runs the most concurrent exports allowed.
    TooManyExports = "too_many_exports", TOO_MANY_REQUESTS;
    /// An unexpected failure, logged with the request id.
    Internal = "internal", INTERNAL_SERVER_ERROR;
    /// The service cannot answer now.
    Unavailable = "unavailable", SERVICE_UNAVAILABLE;
    /// The database is away, saturated or too slow; retry after `Retry-After`.
    DatabaseUnavailable = "database_unavailable", SERVICE_UNAVAILABLE;
    /// Object storage is unreachable.
    StorageUnavailable = "storage_unavailable", SERVICE_UNAVAILABLE;
    /// Mail could not be sent.
    MailUnavailable = "mail_unavailable", SERVICE_UNAVAILABLE;
    /// A readiness check failed.
    NotReady = "not_ready", SERVICE_UNAVAILABLE;
    /// The receipt is not in the Merkle tree yet; retry shortly.
    NotYetIntegrated = "not_yet_integrated", SERVICE_UNAVAILABLE;
    /// `INTERNAL_API_KEY` (or the runner token) is not configured.
    InternalNotConfigured = "internal_not_configured", SERVICE_UNAVAILABLE;
    /// `STRIPE_WEBHOOK_SECRET` is not configured.
    WebhookNotConfigured = "webhook_not_configured", SERVICE_UNAVAILABLE;
    /// The identity provider could not be reached or answered nonsense.
    SsoProviderUnavailable = "sso_provider_unavailable", BAD_GATEWAY;
    /// `SSO_SECRET_KEY` is not configured, or no configured key opens a stored client secret.
    SsoUnavailable = "sso_unavailable", SERVICE_UNAVAILABLE;
    /// The DNS lookup itself failed (timeout, refused); retry shortly.
    DnsUnavailable = "dns_unavailable", SERVICE_UNAVAILABLE;
}

/// `docs/errors.md`: every code with its status and meaning (a test keeps the file current).
pub fn error_reference() -> String {
    let mut out = String::from(
        "# Error codes\n\n\
         Every error is an `application/problem+json` document (RFC 9457) whose `code` is one of\n\
         these; clients branch on `code`, never on `title` or `detail`. The OpenAPI document lists\n\
         them as the `ErrorCode` schema. Generated from `crates/api/src/error/mod.rs`\n\
         (`UPDATE_DOCS=1 cargo test -p defendable-api --test it error_reference` rewrites it).\n\n\
         | Code | Status | Meaning |\n|---|---|---|\n",
    );
    for code in ErrorCode::ALL {
        out.push_str(&format!(
            "| `{}` | {} | {} |\n",
            code.as_str(),
            code.status().as_u16(),
            code.description().trim()
        ));
    }
    out
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Reads a code back (clients and tests read problems as the typed [`Problem`]); a string that
/// names no code is an error.
impl<'de> serde::Deserialize<'de> for ErrorCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ErrorCode::ALL
            .iter()
            .copied()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown error code {s:?}")))
    }
}

impl utoipa::PartialSchema for ErrorCode {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let mut codes: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        codes.sort_unstable();
        codes.dedup();
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::Type::String)
            .description(Some(
                "A stable machine-readable code; clients branch on this, never on `title` or `detail`.",
            ))
            .enum_values(Some(codes))
            .into()
    }
}

impl ToSchema for ErrorCode {}

/// An RFC 9457 problem document.
#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema)]
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
    pub code: ErrorCode,
    /// Extra members for this problem type (for example readiness checks).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub extra: Option<serde_json::Value>,
}

/// An error a handler returns; rendered as a [`Problem`].
#[derive(Debug, Clone)]
pub struct ApiError {
    code: ErrorCode,
    detail: Option<String>,
    extra: Option<serde_json::Value>,
    retry_after: Option<u64>,
    headers: Vec<(&'static str, String)>,
}

impl ApiError {
    /// A problem with a stable code (which fixes the status) and a human detail.
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        ApiError {
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
        Self::new(ErrorCode::BadRequest, detail)
    }

    /// 404 with code `not_found`.
    pub fn not_found() -> Self {
        Self::new(ErrorCode::NotFound, "no such resource")
    }

    /// A 500 for an unexpected failure: logged here, with the cause, and answered generically.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            ErrorCode::Internal,
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
            ErrorCode::DatabaseUnavailable,
            "the database is unavailable or busy; try again shortly",
        )
        .with_retry_after(defendable_config::limits::DB_RETRY_AFTER_SECS)
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.code.status()
    }

    /// The human detail, if any.
    pub fn detail(&self) -> Option<&str> {
        self.detail.as_deref()
    }

    /// The stable code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status().as_u16(), self.code)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status()
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = problem_response(
            self.status(),
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
        if self.status() == StatusCode::UNAUTHORIZED {
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        res
    }
}

/// The code for a bare error status, used when a response left the framework without one. The
/// problem keeps the framework's status; a status without a code of its own is `bad_request`
/// (4xx) or `internal` (5xx).
pub fn code_for_status(status: StatusCode) -> ErrorCode {
    match status.as_u16() {
        401 => ErrorCode::Unauthorized,
        403 => ErrorCode::Forbidden,
        404 => ErrorCode::NotFound,
        405 => ErrorCode::MethodNotAllowed,
        406 => ErrorCode::NotAcceptable,
        408 => ErrorCode::RequestTimeout,
        409 => ErrorCode::Conflict,
        411 => ErrorCode::LengthRequired,
        413 => ErrorCode::PayloadTooLarge,
        414 => ErrorCode::UriTooLong,
        415 => ErrorCode::UnsupportedMediaType,
        416 => ErrorCode::RangeNotSatisfiable,
        422 => ErrorCode::Unprocessable,
        429 => ErrorCode::RateLimited,
        503 => ErrorCode::Unavailable,
        s if s >= 500 => ErrorCode::Internal,
        _ => ErrorCode::BadRequest,
    }
}

/// Builds a problem+json response.
pub fn problem_response(
    status: StatusCode,
    code: ErrorCode,
    detail: Option<String>,
    extra: Option<serde_json::Value>,
) -> HttpResponse {
    let problem = Problem {
        type_: "about:blank".to_owned(),
        title: status.canonical_reason().unwrap_or("Error").to_owned(),
        status: status.as_u16(),
        detail,
        code,
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
            ErrorCode::PayloadTooLarge,
            format!("the JSON body is larger than {limit} bytes"),
        ),
        E::ContentType => ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "send the body as application/json",
        ),
        E::Deserialize(e) if e.is_data() => ApiError::new(
            ErrorCode::InvalidBody,
            format!("the JSON body does not have the expected shape: {e}"),
        ),
        E::Deserialize(e) => ApiError::new(
            ErrorCode::MalformedJson,
            format!("the body is not valid JSON: {e}"),
        ),
        other => ApiError::new(
            ErrorCode::BadRequest,
            format!("the request body could not be read: {other}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_code_has_one_status_but_the_signature_pair() {
        let mut seen: std::collections::HashMap<&str, StatusCode> = Default::default();
        for code in ErrorCode::ALL {
            if let Some(before) = seen.insert(code.as_str(), code.status()) {
                // A webhook's bad signature is Stripe's 400; a bad object link is 403. Both
                // predate the enum and keep their statuses.
                assert_eq!(
                    code.as_str(),
                    "invalid_signature",
                    "{code} has two statuses"
                );
                assert_ne!(before, code.status());
            }
            assert!(code.status().is_client_error() || code.status().is_server_error());
            assert!(!code.description().is_empty());
        }
    }

    #[test]
    fn a_problem_renders_its_code_as_a_string() {
        let res = ApiError::new(ErrorCode::QuotaExhausted, "used up")
            .with_retry_after(5)
            .error_response();
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            res.headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()),
            Some("5")
        );
        let problem = serde_json::to_value(Problem {
            type_: "about:blank".into(),
            title: "Too Many Requests".into(),
            status: 429,
            detail: None,
            code: ErrorCode::QuotaExhausted,
            extra: None,
        })
        .expect("json");
        assert_eq!(problem["code"], "quota_exhausted");
    }
}
