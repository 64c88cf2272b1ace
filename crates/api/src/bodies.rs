//! Response and request bodies shared by several resources, with their OpenAPI schemas.

use defendable_identity::store as identity;
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

/// Cursor pagination: items after `cursor`, at most `limit` (1–100, default 50).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// The `next_cursor` of the previous page.
    pub cursor: Option<Uuid>,
    /// Page size, 1–100.
    pub limit: Option<i64>,
}

impl PageQuery {
    /// The core's page request.
    pub fn page(&self) -> identity::PageRequest {
        identity::PageRequest::new(self.cursor, self.limit)
    }
}

/// Parses an optional JSON body: no body (or only blanks) is the default; anything else must
/// be the expected object exactly (unknown members refused), never silently ignored. Malformed
/// JSON is 400; JSON of another shape is 422 `invalid_body`.
pub fn optional_body<T: serde::de::DeserializeOwned + Default>(
    body: &[u8],
    what: &str,
) -> Result<T, crate::error::ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| crate::error::ApiError::bad_request(format!("invalid {what}: {e}")))?;
    let shape =
        |detail: String| crate::error::ApiError::new(crate::error::ErrorCode::InvalidBody, detail);
    if !value.is_object() {
        return Err(shape(format!("the {what} must be a JSON object")));
    }
    serde_json::from_value(value).map_err(|e| shape(format!("invalid {what}: {e}")))
}

/// Cuts a fetch of `limit + 1` rows down to `limit` and returns the next page's cursor (the key
/// of the last row kept), or `None` when there is no further page.
pub fn split_page<T, C>(rows: &mut Vec<T>, limit: i64, key: impl Fn(&T) -> C) -> Option<C> {
    if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(key)
    } else {
        None
    }
}

pub use defendable_identity::view::{
    ApiKeyPage, ApiKeyView, InvitePage, InviteView, MemberPage, MemberView, MembershipPage,
    MembershipView, OrgView, RoleView, SessionView, UserView,
};
