//! The API's own signed object URLs (local-filesystem storage): the signature is checked in
//! constant time before storage is touched; bytes are streamed with `Range` support.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use defendable_datasets::ObjectKey;
use futures_util::StreamExt;
use object_store::path::Path;
use object_store::ObjectStoreExt as _;
use object_store::{GetOptions, GetRange};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::error::{ApiError, ErrorCode, Problem};
use crate::AppState;

/// The signature of an object URL.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Signature {
    /// Unix seconds after which the link is refused.
    pub expires: i64,
    /// Signing key id.
    pub kid: String,
    /// HMAC-SHA256, base64url.
    pub sig: String,
}

fn refused() -> ApiError {
    ApiError::new(
        ErrorCode::InvalidLinkSignature,
        "this link is invalid or has expired; ask for a new one",
    )
}

/// Parses a single `bytes=` range.
fn parse_range(value: &str) -> Option<GetRange> {
    let spec = value.strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    match (a.trim(), b.trim()) {
        ("", n) => n.parse().ok().map(GetRange::Suffix),
        (a, "") => a.parse().ok().map(GetRange::Offset),
        (a, b) => {
            let (a, b): (u64, u64) = (a.parse().ok()?, b.parse().ok()?);
            // `bytes=0-18446744073709551615` would overflow: not satisfiable, never a wrap.
            (a <= b).then_some(GetRange::Bounded(a..b.checked_add(1)?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_or_are_refused_without_overflow() {
        assert_eq!(parse_range("bytes=0-9"), Some(GetRange::Bounded(0..10)));
        assert_eq!(parse_range("bytes=5-"), Some(GetRange::Offset(5)));
        assert_eq!(parse_range("bytes=-5"), Some(GetRange::Suffix(5)));
        for bad in [
            "bytes=0-18446744073709551615",
            "bytes=0-18446744073709551616",
            "bytes=9-0",
            "bytes=0-1,2-3",
            "items=0-9",
            "bytes=a-b",
            "bytes=",
        ] {
            assert_eq!(parse_range(bad), None, "{bad}");
        }
        assert_eq!(
            parse_range("bytes=18446744073709551614-18446744073709551614"),
            Some(GetRange::Bounded(u64::MAX - 1..u64::MAX))
        );
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(1024))]

            /// Any header value parses or is refused without panicking.
            #[test]
            fn outside_range_values_never_panic(v in any::<String>()) {
                let _ = parse_range(&v);
                let _ = parse_range(&format!("bytes={v}"));
            }

            /// A bounded range is exactly the bytes it names, and never wraps.
            #[test]
            fn bounded_ranges_are_exact(a in any::<u64>(), b in any::<u64>()) {
                let got = parse_range(&format!("bytes={a}-{b}"));
                match got {
                    Some(GetRange::Bounded(r)) => {
                        prop_assert!(a <= b && b < u64::MAX);
                        prop_assert_eq!((r.start, r.end), (a, b + 1));
                    }
                    None => prop_assert!(a > b || b == u64::MAX),
                    Some(other) => prop_assert!(false, "{other:?}"),
                }
            }
        }
    }
}

/// Streams an object behind a signed link.
#[utoipa::path(get, path = "/objects/{key}", tag = "datasets",
    params(("key" = String, Path, description = "Object key"), Signature,
           ("Range" = Option<String>, Header, description = "bytes=start-end")),
    responses(
        (status = 200, description = "The object", content_type = "application/octet-stream"),
        (status = 206, description = "The requested range", content_type = "application/octet-stream"),
        (status = 403, description = "Tampered, expired or unknown-key link", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such object", body = Problem, content_type = "application/problem+json"),
        (status = 416, description = "Range not satisfiable", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Storage unreachable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_object(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    sig: Option<web::Query<Signature>>,
) -> Result<HttpResponse, ApiError> {
    let Some(sig) = sig else {
        return Err(refused());
    };
    let key = ObjectKey::parse(&path).map_err(|_| refused())?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    state
        .url_signer
        .verify(key.as_str(), sig.expires, &sig.kid, &sig.sig, now)
        .map_err(|_| refused())?;
    if sig.kid != state.url_signer.current_kid() {
        state
            .metrics
            .previous_secret_used("OBJECT_URL_SIGNING_KEY_PREVIOUS");
    }
    let range = requested_range(&req)?;
    let location = Path::from(key.as_str());
    let storage_error = |e| storage_error(&state, e);
    if let Some(r) = &range {
        check_range_inside(&state, &location, r).await?;
    }
    let options = GetOptions {
        range: range.clone(),
        ..Default::default()
    };
    let result = state
        .objects
        .get_opts(&location, options)
        .await
        .map_err(storage_error)?;
    streamed(result, range.is_some())
}

/// The one `Range` a download asks for, if any.
fn requested_range(req: &HttpRequest) -> Result<Option<GetRange>, ApiError> {
    match req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
    {
        Some(v) => Ok(Some(parse_range(v).ok_or_else(|| {
            ApiError::new(
                ErrorCode::RangeNotSatisfiable,
                "send one range as bytes=start-end",
            )
        })?)),
        None => Ok(None),
    }
}

/// A missing object is 404; any other storage failure is counted, logged and 503.
fn storage_error(state: &AppState, e: object_store::Error) -> ApiError {
    match e {
        object_store::Error::NotFound { .. } => ApiError::not_found(),
        other => {
            state.metrics.storage_failure();
            tracing::error!(error = %other, "object storage failure while serving a signed link");
            ApiError::new(
                ErrorCode::StorageUnavailable,
                "object storage is unreachable; try again shortly",
            )
        }
    }
}

/// Refuses a range that starts outside the object, before reading it.
async fn check_range_inside(
    state: &AppState,
    location: &Path,
    range: &GetRange,
) -> Result<(), ApiError> {
    let size = state
        .objects
        .head(location)
        .await
        .map_err(|e| storage_error(state, e))?
        .size;
    let starts_inside = match range {
        GetRange::Bounded(b) => b.start < size,
        GetRange::Offset(o) => *o < size,
        GetRange::Suffix(n) => *n > 0,
    };
    if starts_inside {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::RangeNotSatisfiable,
            "the range is outside the object",
        ))
    }
}

/// The object's bytes (or the requested range of them) as a streamed response.
fn streamed(result: object_store::GetResult, partial: bool) -> Result<HttpResponse, ApiError> {
    let total = result.meta.size;
    let served = result.range.clone();
    let etag = result
        .meta
        .e_tag
        .clone()
        .unwrap_or_else(|| format!("{:x}-{:x}", total, result.meta.last_modified.timestamp()));
    let mut res = if partial {
        HttpResponse::PartialContent()
    } else {
        HttpResponse::Ok()
    };
    res.insert_header((header::CONTENT_TYPE, "application/octet-stream"))
        .insert_header((header::ACCEPT_RANGES, "bytes"))
        .insert_header((header::ETAG, format!("\"{}\"", etag.trim_matches('"'))))
        .insert_header((header::CACHE_CONTROL, "private, no-store"));
    if partial {
        res.insert_header((
            header::CONTENT_RANGE,
            format!(
                "bytes {}-{}/{total}",
                served.start,
                served.end.saturating_sub(1)
            ),
        ));
    }
    let body = result
        .into_stream()
        .map(|chunk| chunk.map_err(|e| actix_web::error::ErrorInternalServerError(e.to_string())));
    Ok(res.no_chunking(served.end - served.start).streaming(body))
}
