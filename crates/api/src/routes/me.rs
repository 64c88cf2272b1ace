//! The signed-in user.

use actix_web::web;
use defendable_identity::store::{self as identity, PageRequest};
use defendable_identity::view::MeView;

use crate::auth::Caller;
use crate::error::{ApiError, Problem};
use crate::AppState;

/// The signed-in user and their memberships.
#[utoipa::path(get, path = "/me", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller", body = MeView),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "API keys have no user", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_me(
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<web::Json<MeView>, ApiError> {
    let (user, _) = caller.session()?;
    let (me, orgs) = identity::user_with_orgs(
        &*state.db.reader().await?,
        user,
        PageRequest::new(None, Some(100)),
    )
    .await?;
    Ok(web::Json(MeView {
        user: me.into(),
        memberships: orgs.items.into_iter().map(Into::into).collect(),
    }))
}
