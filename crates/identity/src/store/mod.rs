//! Identity's PostgreSQL operations. Each write runs in one transaction with its audit event.

use std::time::Duration;

use deadpool_postgres::{Client, GenericClient, Transaction};
use defendable_store::audit::{record, Actor, AuditAction, AuditContext, AuditEvent};
use serde::Serialize;
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{
    ApiKeyId, ApiKeySecret, Email, IdentityError, InviteId, OneTimeToken, OrgId, OrgName, OrgRef,
    OrgSlug, Role, SecretHash, SessionId, UserId,
};

type Result<T> = std::result::Result<T, IdentityError>;

mod api_keys;
mod invites;
mod members;
mod orgs;
mod sessions;
mod users;

pub use api_keys::*;
pub use invites::*;
pub use members::*;
pub use orgs::*;
pub use sessions::*;
pub use users::*;

/// A user.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct User {
    /// Id.
    pub id: UserId,
    /// Normalized email.
    pub email: String,
    /// When the user first signed in.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// An organization.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Org {
    /// Id.
    pub id: OrgId,
    /// URL name.
    pub slug: String,
    /// Display name.
    pub name: String,
    /// Whether it was created as a user's personal organization.
    pub personal: bool,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// An organization seen through one user's membership.
#[derive(Debug, Clone, Serialize)]
pub struct Membership {
    /// The organization.
    pub org: Org,
    /// The user's role in it.
    pub role: Role,
}

/// A member as listed to other members.
#[derive(Debug, Clone, Serialize)]
pub struct Member {
    /// The user's id.
    pub user_id: UserId,
    /// The user's email.
    pub email: String,
    /// Their role.
    pub role: Role,
    /// When they joined.
    #[serde(with = "time::serde::rfc3339")]
    pub joined_at: OffsetDateTime,
}

/// A pending invite.
#[derive(Debug, Clone, Serialize)]
pub struct Invite {
    /// Id.
    pub id: InviteId,
    /// Invited address.
    pub email: String,
    /// Role granted on acceptance.
    pub role: Role,
    /// Who invited.
    pub invited_by: UserId,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Expiry.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// An API key's public facts (never its secret).
#[derive(Debug, Clone, Serialize)]
pub struct ApiKey {
    /// Id.
    pub id: ApiKeyId,
    /// Owner-chosen name.
    pub name: String,
    /// The fixed key prefix.
    pub prefix: String,
    /// The key's last four characters.
    pub last4: String,
    /// Who created it.
    pub created_by: UserId,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Last use, updated at most once a minute.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
    /// Optional expiry.
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    /// Revocation time, if revoked.
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
}

/// A session just created by a sign-in.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// The signed-in user.
    pub user: User,
    /// The session id (to be carried by the access token).
    pub session: SessionId,
    /// When the session ends.
    pub expires_at: OffsetDateTime,
}

/// A magic link issued for delivery.
#[derive(Debug)]
pub struct IssuedLink {
    /// Where to send it.
    pub email: Email,
    /// The one-time token (delivered once, by mail).
    pub token: OneTimeToken,
    /// Expiry.
    pub expires_at: OffsetDateTime,
}

/// One page of a list and the cursor of the next page.
#[derive(Debug, Clone, Serialize)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<Uuid>,
}

/// A page request: items after `cursor`, at most `limit` (1–100).
#[derive(Debug, Clone, Copy)]
pub struct PageRequest {
    /// Exclusive lower bound.
    pub cursor: Option<Uuid>,
    /// Page size.
    pub limit: i64,
}

impl PageRequest {
    /// Clamps the limit to 1–100, default 50.
    pub fn new(cursor: Option<Uuid>, limit: Option<i64>) -> PageRequest {
        PageRequest {
            cursor,
            limit: limit.unwrap_or(50).clamp(1, 100),
        }
    }

    fn finish<T>(&self, mut items: Vec<T>, key: impl Fn(&T) -> Uuid) -> Page<T> {
        let next_cursor = if items.len() as i64 > self.limit {
            items.truncate(self.limit as usize);
            items.last().map(&key)
        } else {
            None
        };
        Page { items, next_cursor }
    }

    fn after(&self) -> Uuid {
        self.cursor.unwrap_or(Uuid::nil())
    }

    fn fetch(&self) -> i64 {
        self.limit + 1
    }
}

/// The one way identity starts an audit event: `name` by `actor` in `org`, with the request's
/// context; `.on(target)` and `.with(details)` complete it, and the caller records it in the
/// transaction of the change it describes.
fn event(
    action: AuditAction,
    actor: impl Into<Actor>,
    org: Option<OrgId>,
    ctx: &AuditContext,
) -> AuditEvent {
    let mut e = AuditEvent::new(action, actor.into());
    e.org_id = org.map(|o| o.as_uuid());
    e.context = ctx.clone();
    e
}

impl From<UserId> for Actor {
    fn from(user: UserId) -> Actor {
        Actor::User(user.as_uuid())
    }
}

fn pg_duration(d: Duration) -> time::Duration {
    time::Duration::try_from(d).unwrap_or(time::Duration::MAX)
}

fn row_org(row: &tokio_postgres::Row, offset: usize) -> Org {
    Org {
        id: OrgId::from_uuid(row.get(offset)),
        slug: row.get(offset + 1),
        name: row.get(offset + 2),
        personal: row.get(offset + 3),
        created_at: row.get(offset + 4),
    }
}

fn row_role(row: &tokio_postgres::Row, idx: usize) -> Role {
    Role::parse(row.get::<_, &str>(idx)).expect("the role column is constrained")
}

/// Runs one revoking `UPDATE … WHERE id = $1 AND org_id = $2` with its audit event, in one
/// transaction; [`IdentityError::NotFound`] when nothing was left to revoke.
async fn revoke(
    client: &mut Client,
    sql: &str,
    id: Uuid,
    org: OrgId,
    (action, target): (AuditAction, String),
    actor: UserId,
    ctx: &AuditContext,
) -> Result<()> {
    let tx = client.transaction().await?;
    if tx.execute(sql, &[&id, &org.as_uuid()]).await? == 0 {
        return Err(IdentityError::NotFound);
    }
    let e = event(action, actor, Some(org), ctx).on(target);
    record(&tx, &e).await?;
    tx.commit().await?;
    Ok(())
}
