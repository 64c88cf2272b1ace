//! The shapes the API answers with for the catalog, quotas and grants, typed once here for the
//! server and its clients (the CLI reads them without the `postgres` feature). The `openapi`
//! feature derives their schemas under the names the API document has always used.

use serde::{Deserialize, Serialize};

/// A catalog entry: public fields, size and BLAKE3, never the object key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = DatasetDto))]
pub struct DatasetView {
    /// URL name.
    pub slug: String,
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Current verified version.
    pub version: String,
    /// License.
    pub license: String,
    /// Media type.
    pub media_type: String,
    /// Size in bytes.
    pub size: i64,
    /// BLAKE3 of the bytes (hex): check your download against it.
    pub blake3: String,
    /// When the API hashed this version.
    #[serde(with = "time::serde::rfc3339")]
    pub verified_at: time::OffsetDateTime,
}

/// A page of the catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DatasetPage {
    /// By slug.
    pub items: Vec<DatasetView>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// Quota today.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = QuotaDto))]
pub struct QuotaView {
    /// Grants made today (UTC).
    pub used: i64,
    /// Grants allowed per UTC day.
    pub limit: i64,
    /// The next UTC midnight.
    #[serde(with = "time::serde::rfc3339")]
    pub resets_at: time::OffsetDateTime,
}

#[cfg(feature = "postgres")]
impl From<crate::store::QuotaStatus> for QuotaView {
    fn from(q: crate::store::QuotaStatus) -> Self {
        QuotaView {
            used: q.used,
            limit: q.limit,
            resets_at: q.resets_at,
        }
    }
}

/// A grant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = GrantDto))]
pub struct GrantView {
    /// The `dataset.download` receipt (members' view).
    pub receipt: defendable_ledger::ReceiptView,
    /// Follow it to get a fresh short-lived object URL (302), until the grant expires.
    pub download_url: String,
    /// When the grant ends.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: time::OffsetDateTime,
    /// The organization's quota after this grant.
    pub quota: QuotaView,
}

/// `POST /datasets/catalog/{slug}/download` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct GrantBody {
    /// Organization (slug or id); required only when the caller belongs to several.
    pub org: Option<String>,
    /// Grant lifetime in seconds: default 86,400, at most 604,800.
    pub expires_in: Option<u64>,
}
