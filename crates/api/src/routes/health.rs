//! Liveness and readiness.

use std::time::Duration;

use actix_web::{web, HttpResponse};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorCode, Problem};
use crate::AppState;

/// Liveness answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok` while the process serves requests.
    pub status: &'static str,
}

/// Readiness answer: each dependency and its state.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// `ready`.
    pub status: &'static str,
    /// `database`, `migrations` and `object_store`, each `ok`.
    #[schema(value_type = Object)]
    pub checks: serde_json::Value,
}

/// The process is alive. It touches no dependency.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "The process is alive", body = Health)))]
pub async fn get_healthz() -> web::Json<Health> {
    web::Json(Health { status: "ok" })
}

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a readiness probe of the object store is reused: a listing costs a request to S3,
/// and load balancers poll `/readyz` often.
const OBJECT_PROBE_TTL: Duration = Duration::from_secs(1);

/// The last object-store probe, reused for [`OBJECT_PROBE_TTL`].
#[derive(Debug, Default)]
pub struct ObjectProbe {
    last: std::sync::Mutex<Option<(std::time::Instant, String)>>,
}

impl ObjectProbe {
    /// "ok", "unreachable" or "timed out", probing at most once per [`OBJECT_PROBE_TTL`].
    pub async fn get(&self, objects: &std::sync::Arc<dyn object_store::ObjectStore>) -> String {
        if let Some((at, outcome)) = self.last.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            if at.elapsed() < OBJECT_PROBE_TTL {
                return outcome.clone();
            }
        }
        let outcome =
            match tokio::time::timeout(CHECK_TIMEOUT, objects.list_with_delimiter(None)).await {
                Ok(Ok(_)) => "ok".to_owned(),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "readiness: object store unreachable");
                    "unreachable".to_owned()
                }
                Err(_) => "timed out".to_owned(),
            };
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((std::time::Instant::now(), outcome.clone()));
        outcome
    }
}

/// Whether the service can do its work: database reachable, migrations current, object store
/// reachable.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "Ready to serve", body = Readiness),
        (status = 503, description = "A dependency is not ready; `checks` says which",
            body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let (database, migrations) =
        match tokio::time::timeout(CHECK_TIMEOUT, check_database(&state)).await {
            Ok(result) => result,
            Err(_) => ("timed out".to_owned(), "unknown".to_owned()),
        };
    let object_store = state.object_probe.get(&state.objects).await;
    let ready = [&database, &migrations, &object_store]
        .iter()
        .all(|s| *s == "ok");
    let checks =
        json!({ "database": database, "migrations": migrations, "object_store": object_store });
    if ready {
        Ok(HttpResponse::Ok().json(Readiness {
            status: "ready",
            checks,
        }))
    } else {
        Err(
            ApiError::new(ErrorCode::NotReady, "a dependency is not ready")
                .with_extra(json!({ "checks": checks })),
        )
    }
}

async fn check_database(state: &AppState) -> (String, String) {
    let client = match state.db.get().await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "readiness: database unreachable");
            return ("unreachable".into(), "unknown".into());
        }
    };
    match defendable_store::schema_version(&*client).await {
        Ok(Some(v)) if v == defendable_store::latest_version() => ("ok".into(), "ok".into()),
        Ok(v) => (
            "ok".into(),
            format!(
                "database at version {}, this build expects {}",
                v.unwrap_or(0),
                defendable_store::latest_version()
            ),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "readiness: schema query failed");
            ("unreachable".into(), "unknown".into())
        }
    }
}
