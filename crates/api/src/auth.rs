//! The one authorization point: [`Caller`] authenticates the bearer credential, and each handler
//! states what it needs with [`Caller::session`], [`Caller::member`] or [`Caller::owner`].

use std::future::Future;
use std::pin::Pin;

use actix_web::http::header;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use defendable_identity::authn::Principal;
use defendable_identity::jwt::KeyUsed;
use defendable_identity::store::{self as identity, Org};
use defendable_identity::{IdentityError, OrgRef, Role, SessionId, UserId};
use defendable_sso::scim::ScimToken;
use defendable_store::audit::{Actor, AuditContext};
use uuid::Uuid;

use crate::client_ip::client_ip;
use crate::error::{ApiError, ErrorCode};
use crate::middleware::RequestId;
use crate::AppState;

/// An authenticated caller and the request facts audit events need.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Who.
    pub principal: Principal,
    /// Request origin for audit events.
    pub ctx: AuditContext,
}

/// What a caller may do in one organization.
#[derive(Debug, Clone)]
pub struct OrgAccess {
    /// The organization.
    pub org: Org,
    /// The user's role; `None` for an API key (which acts as a member, never as an owner).
    pub role: Option<Role>,
}

impl Caller {
    /// The caller as an audit actor.
    pub fn actor(&self) -> Actor {
        match self.principal {
            Principal::User { user, .. } => Actor::User(user.as_uuid()),
            Principal::ApiKey { key, .. } => Actor::ApiKey(key.as_uuid()),
        }
    }

    /// A stable name for the principal, for per-principal counters: `user:<id>` or
    /// `api_key:<id>`.
    pub fn principal_key(&self) -> String {
        match self.principal {
            Principal::User { user, .. } => format!("user:{user}"),
            Principal::ApiKey { key, .. } => format!("api_key:{key}"),
        }
    }

    /// Requires a user session (API keys are refused with 403).
    pub fn session(&self) -> Result<(UserId, SessionId), ApiError> {
        match self.principal {
            Principal::User { user, session, .. } => Ok((user, session)),
            Principal::ApiKey { .. } => Err(ApiError::new(
                ErrorCode::SessionRequired,
                "this operation needs a signed-in user; API keys cannot perform it",
            )),
        }
    }

    /// Requires membership of `org` (a user member of any role, or an API key of that org).
    /// Anyone else gets 404, whether or not the organization exists.
    pub async fn member(&self, state: &AppState, org: &str) -> Result<OrgAccess, ApiError> {
        let org_ref = OrgRef::parse(org)?;
        let (user, principal) = match self.principal {
            Principal::User { user, .. } => (Some(user), user.as_uuid()),
            Principal::ApiKey { key, .. } => (None, key.as_uuid()),
        };
        // A grant this process looked up within the authentication cache period is reused
        // (revocations reach every process within that period); otherwise one round trip
        // fetches the organization and the caller's role in it.
        let access = match state.auth.cached_access(principal, org) {
            Some(access) => access,
            None => {
                let access = identity::org_with_role(&*state.db.get().await?, &org_ref, user)
                    .await?
                    .ok_or(IdentityError::NotFound)?;
                let granted = match self.principal {
                    Principal::User { .. } => access.role.is_some(),
                    Principal::ApiKey { org: key_org, .. } => key_org == access.org.id,
                };
                if granted {
                    state.auth.remember_access(principal, org, access.clone());
                }
                access
            }
        };
        match self.principal {
            Principal::User { user, session, sso } => {
                let role = access.role.ok_or(IdentityError::NotFound)?;
                self.sso_boundary(state, &access, user, session, sso)
                    .await?;
                Ok(OrgAccess {
                    org: access.org,
                    role: Some(role),
                })
            }
            // API keys keep working where SSO is enforced: they belong to the organization.
            Principal::ApiKey { org: key_org, .. } if key_org == access.org.id => Ok(OrgAccess {
                org: access.org,
                role: None,
            }),
            Principal::ApiKey { .. } => Err(IdentityError::NotFound.into()),
        }
    }

    /// Where the organization enforces single sign-on, admits only sessions from an enforcing
    /// connection, and a break-glass owner's other sessions, each such session's first use in
    /// the organization recorded (audit event, `sso.break_glass` receipt, warning log and
    /// metric for the alert).
    async fn sso_boundary(
        &self,
        state: &AppState,
        access: &identity::Access,
        user: UserId,
        session: SessionId,
        sso: Option<Uuid>,
    ) -> Result<(), ApiError> {
        if access.sso_enforced.is_empty() || sso.is_some_and(|c| access.sso_enforced.contains(&c)) {
            return Ok(());
        }
        if !(access.break_glass && access.role == Some(Role::Owner)) {
            return Err(ApiError::new(
                ErrorCode::SsoRequired,
                "this organization requires single sign-on: sign in through POST /auth/sso/start",
            ));
        }
        let first = defendable_sso::store::record_break_glass_use(
            &mut *state.db.get().await?,
            access.org.id,
            user,
            session.as_uuid(),
            &self.ctx,
        )
        .await?;
        if first {
            state.metrics.break_glass_use();
            tracing::warn!(
                alert = "sso_break_glass_use",
                org_id = %access.org.id,
                user_id = %user,
                "a break-glass owner entered an organization that enforces single sign-on without it"
            );
        }
        Ok(())
    }

    /// Requires an owner acting through a session.
    pub async fn owner(
        &self,
        state: &AppState,
        org: &str,
    ) -> Result<(OrgAccess, UserId), ApiError> {
        let access = self.member(state, org).await?;
        let (user, _) = self.session()?;
        if access.role != Some(Role::Owner) {
            return Err(
                IdentityError::Forbidden("only owners of this organization may do this").into(),
            );
        }
        Ok((access, user))
    }
}

/// Request facts for audit events, for handlers with or without a caller.
pub fn audit_context(req: &HttpRequest, state: &AppState) -> AuditContext {
    AuditContext {
        request_id: req.extensions().get::<RequestId>().map(|r| r.0.clone()),
        ip: client_ip(req, &state.config),
        user_agent: req
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(512).collect()),
    }
}

/// The identity-provider connection whose SCIM token the request carries, when that token is
/// one of the organization `org`'s connections (`None`: no token, another scheme, a malformed
/// token, or not this organization's). The scheme is matched as RFC 6750 says, ignoring case.
pub async fn scim_client(
    req: &HttpRequest,
    state: &AppState,
    org: &str,
) -> Result<Option<defendable_sso::store::Connection>, ApiError> {
    let (Some(token), Ok(org)) = (
        bearer(req).and_then(|t| ScimToken::parse(&t)),
        OrgRef::parse(org),
    ) else {
        return Ok(None);
    };
    Ok(defendable_sso::scim::store::authenticate(&*state.db.get().await?, &token, &org).await?)
}

/// The credential of an `Authorization: Bearer` header; the scheme is case-insensitive (RFC
/// 6750 §2.1, RFC 9110 §11.1).
fn bearer(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Caller, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = req
                .app_data::<web::Data<AppState>>()
                .ok_or_else(|| ApiError::internal("application state missing"))?
                .clone();
            let token = bearer(&req).ok_or(IdentityError::InvalidCredentials)?;
            // On a cache miss the lookup reads through a shared reader, under the request's
            // one-connection rule.
            let (principal, used) = state
                .auth
                .authenticate(|| state.db.reader(), state.db.pool(), &token)
                .await?;
            if used == Some(KeyUsed::Previous) {
                state.metrics.jwt_previous_secret_used();
            }
            Ok(Caller {
                principal,
                ctx: audit_context(&req, &state),
            })
        })
    }
}
