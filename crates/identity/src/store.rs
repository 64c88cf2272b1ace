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

fn action(name: &str) -> AuditAction {
    AuditAction::parse(name).expect("identity's action names are valid")
}

fn event(name: &str, actor: Actor, org: Option<OrgId>, ctx: &AuditContext) -> AuditEvent {
    let mut e = AuditEvent::new(action(name), actor);
    e.org_id = org.map(|o| o.as_uuid());
    e.context = ctx.clone();
    e
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

// ---------------------------------------------------------------------------------------------
// Magic links and sessions

/// Issues a magic link for `email`, superseding any older unused link. The same work happens
/// whether or not a user with that email exists.
pub async fn request_magic_link(
    client: &mut Client,
    email: &Email,
    ttl: Duration,
    ctx: &AuditContext,
) -> Result<IssuedLink> {
    let token = OneTimeToken::generate();
    let tx = client.transaction().await?;
    tx.execute(
        &tx.prepare_cached(
            "UPDATE magic_links SET superseded_at = now()
         WHERE email = $1 AND consumed_at IS NULL AND superseded_at IS NULL",
        )
        .await?,
        &[&email.as_str()],
    )
    .await?;
    let expires_at: OffsetDateTime = tx
        .query_one(
            &tx.prepare_cached(
                "INSERT INTO magic_links (id, email, token_hash, expires_at)
             VALUES ($1, $2, $3, now() + make_interval(secs => $4)) RETURNING expires_at",
            )
            .await?,
            &[
                &Uuid::now_v7(),
                &email.as_str(),
                &token.hash().as_bytes(),
                &(ttl.as_secs_f64()),
            ],
        )
        .await?
        .get(0);
    let mut e = event("auth.request", Actor::Anonymous, None, ctx);
    e.target = Some(email.to_string());
    record(&tx, &e).await?;
    tx.commit().await?;
    Ok(IssuedLink {
        email: email.clone(),
        token,
        expires_at,
    })
}

/// Consumes a magic link (one atomic statement, so concurrent verifies yield one session) and
/// starts a session. The first sign-in of an email creates the user and a personal organization.
pub async fn verify_magic_link(
    client: &mut Client,
    token: &OneTimeToken,
    session_ttl: Duration,
    ctx: &AuditContext,
) -> Result<NewSession> {
    let tx = client.transaction().await?;
    let consumed = tx
        .query_opt(
            &tx.prepare_cached(
                "UPDATE magic_links SET consumed_at = now()
             WHERE token_hash = $1 AND consumed_at IS NULL AND superseded_at IS NULL
               AND expires_at > now()
             RETURNING email",
            )
            .await?,
            &[&token.hash().as_bytes()],
        )
        .await?;
    let Some(row) = consumed else {
        drop(tx);
        record_invalid_token(&*client, "auth.verify", ctx).await?;
        return Err(IdentityError::InvalidToken);
    };
    let email = Email::parse(row.get::<_, &str>(0))?;
    let (user, created) = upsert_user(&tx, &email).await?;
    if created {
        create_personal_org(&tx, &user, &email, ctx).await?;
    }
    let (session, expires_at) = create_session(&tx, user.id, session_ttl).await?;
    let mut e = event("auth.verify", Actor::User(user.id.as_uuid()), None, ctx);
    e.target = Some(format!("session:{session}"));
    e.details = json!({"outcome": "ok", "new_user": created});
    record(&tx, &e).await?;
    tx.commit().await?;
    Ok(NewSession {
        user,
        session,
        expires_at,
    })
}

/// Records a failed use of a one-time token (`auth.verify` or `invite.accept`), including tokens
/// too malformed to look up, and returns the error every such failure gets.
pub async fn record_invalid_token(
    client: &impl GenericClient,
    action_name: &'static str,
    ctx: &AuditContext,
) -> Result<()> {
    let mut e = event(action_name, Actor::Anonymous, None, ctx);
    e.details = json!({"outcome": "invalid_token"});
    record(client, &e).await?;
    Ok(())
}

async fn upsert_user(tx: &Transaction<'_>, email: &Email) -> Result<(User, bool)> {
    let row = tx
        .query_one(
            &tx.prepare_cached(
                "INSERT INTO users (id, email, last_login_at) VALUES ($1, $2, now())
             ON CONFLICT (email) DO UPDATE SET last_login_at = now()
             RETURNING id, email, created_at, (xmax = 0) AS created",
            )
            .await?,
            &[&Uuid::now_v7(), &email.as_str()],
        )
        .await?;
    Ok((
        User {
            id: UserId::from_uuid(row.get(0)),
            email: row.get(1),
            created_at: row.get(2),
        },
        row.get(3),
    ))
}

async fn create_personal_org(
    tx: &Transaction<'_>,
    user: &User,
    email: &Email,
    ctx: &AuditContext,
) -> Result<Org> {
    let name = OrgName::parse(&format!("{}'s organization", email.local_part()))
        .or_else(|_| OrgName::parse("Personal organization"))?;
    // The random tail makes a collision unlikely; a taken slug simply gets another tail.
    for _ in 0..5 {
        let slug = OrgSlug::personal(email);
        if let Some(org) = insert_org(tx, &slug, &name, true).await? {
            add_member(tx, org.id, user.id, Role::Owner).await?;
            let mut e = event(
                "org.create",
                Actor::User(user.id.as_uuid()),
                Some(org.id),
                ctx,
            );
            e.target = Some(org.slug.clone());
            e.details = json!({"personal": true});
            record(tx, &e).await?;
            return Ok(org);
        }
    }
    Err(IdentityError::SlugTaken)
}

/// Inserts an organization; `None` when the slug is taken.
async fn insert_org(
    client: &impl GenericClient,
    slug: &OrgSlug,
    name: &OrgName,
    personal: bool,
) -> Result<Option<Org>> {
    let row = client
        .query_opt(
            &client
                .prepare_cached(
                    "INSERT INTO orgs (id, slug, name, personal) VALUES ($1, $2, $3, $4)
             ON CONFLICT (slug) DO NOTHING
             RETURNING id, slug, name, personal, created_at",
                )
                .await?,
            &[&Uuid::now_v7(), &slug.as_str(), &name.as_str(), &personal],
        )
        .await?;
    Ok(row.map(|r| row_org(&r, 0)))
}

async fn add_member(
    client: &impl GenericClient,
    org: OrgId,
    user: UserId,
    role: Role,
) -> Result<bool> {
    let n = client
        .execute(
            &client
                .prepare_cached(
                    "INSERT INTO memberships (org_id, user_id, role) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
                )
                .await?,
            &[&org.as_uuid(), &user.as_uuid(), &role.as_str()],
        )
        .await?;
    Ok(n == 1)
}

async fn create_session(
    tx: &Transaction<'_>,
    user: UserId,
    ttl: Duration,
) -> Result<(SessionId, OffsetDateTime)> {
    let id = SessionId::generate();
    let expires_at = OffsetDateTime::now_utc() + pg_duration(ttl);
    tx.execute(
        &tx.prepare_cached("INSERT INTO sessions (id, user_id, expires_at) VALUES ($1, $2, $3)")
            .await?,
        &[&id.as_uuid(), &user.as_uuid(), &expires_at],
    )
    .await?;
    Ok((id, expires_at))
}

/// A session's state as stored.
#[derive(Debug, Clone, Copy)]
pub struct SessionRow {
    /// The user.
    pub user: UserId,
    /// Expiry.
    pub expires_at: OffsetDateTime,
    /// Whether it was revoked.
    pub revoked: bool,
}

/// Looks a session up.
pub async fn session(client: &impl GenericClient, id: SessionId) -> Result<Option<SessionRow>> {
    let row = client
        .query_opt(
            &client.prepare_cached("SELECT user_id, expires_at, revoked_at IS NOT NULL FROM sessions WHERE id = $1").await?,
            &[&id.as_uuid()],
        )
        .await?;
    Ok(row.map(|r| SessionRow {
        user: UserId::from_uuid(r.get(0)),
        expires_at: r.get(1),
        revoked: r.get(2),
    }))
}

/// Revokes a session (logout).
pub async fn revoke_session(
    client: &mut Client,
    user: UserId,
    id: SessionId,
    ctx: &AuditContext,
) -> Result<()> {
    let tx = client.transaction().await?;
    tx.execute(
        &tx.prepare_cached("UPDATE sessions SET revoked_at = now() WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL").await?,
        &[&id.as_uuid(), &user.as_uuid()],
    )
    .await?;
    let mut e = event("session.revoke", Actor::User(user.as_uuid()), None, ctx);
    e.target = Some(format!("session:{id}"));
    record(&tx, &e).await?;
    tx.commit().await?;
    Ok(())
}

/// A user by id.
pub async fn user(client: &impl GenericClient, id: UserId) -> Result<User> {
    let row = client
        .query_opt(
            &client
                .prepare_cached("SELECT id, email, created_at FROM users WHERE id = $1")
                .await?,
            &[&id.as_uuid()],
        )
        .await?
        .ok_or(IdentityError::InvalidCredentials)?;
    Ok(User {
        id: UserId::from_uuid(row.get(0)),
        email: row.get(1),
        created_at: row.get(2),
    })
}

// ---------------------------------------------------------------------------------------------
// Organizations and memberships

/// Creates an organization with `owner` as its first owner.
pub async fn create_org(
    client: &mut Client,
    owner: UserId,
    slug: &OrgSlug,
    name: &OrgName,
    ctx: &AuditContext,
) -> Result<Org> {
    let tx = client.transaction().await?;
    let org = insert_org(&tx, slug, name, false)
        .await?
        .ok_or(IdentityError::SlugTaken)?;
    add_member(&tx, org.id, owner, Role::Owner).await?;
    let mut e = event(
        "org.create",
        Actor::User(owner.as_uuid()),
        Some(org.id),
        ctx,
    );
    e.target = Some(org.slug.clone());
    record(&tx, &e).await?;
    tx.commit().await?;
    Ok(org)
}

/// The organizations a user belongs to, by org id.
pub async fn list_orgs(
    client: &impl GenericClient,
    user: UserId,
    page: PageRequest,
) -> Result<Page<Membership>> {
    let rows = client
        .query(
            &client
                .prepare_cached(
                    "SELECT o.id, o.slug, o.name, o.personal, o.created_at, m.role
             FROM memberships m JOIN orgs o ON o.id = m.org_id
             WHERE m.user_id = $1 AND o.id > $2 ORDER BY o.id LIMIT $3",
                )
                .await?,
            &[&user.as_uuid(), &page.after(), &page.fetch()],
        )
        .await?;
    let items = rows
        .iter()
        .map(|r| Membership {
            org: row_org(r, 0),
            role: row_role(r, 5),
        })
        .collect();
    Ok(page.finish(items, |m: &Membership| m.org.id.as_uuid()))
}

/// Finds an organization by id or slug.
pub async fn find_org(client: &impl GenericClient, org: &OrgRef) -> Result<Option<Org>> {
    let row =
        match org {
            OrgRef::Id(id) => client
                .query_opt(
                    &client
                        .prepare_cached(
                            "SELECT id, slug, name, personal, created_at FROM orgs WHERE id = $1",
                        )
                        .await?,
                    &[&id.as_uuid()],
                )
                .await?,
            OrgRef::Slug(slug) => client
                .query_opt(
                    &client
                        .prepare_cached(
                            "SELECT id, slug, name, personal, created_at FROM orgs WHERE slug = $1",
                        )
                        .await?,
                    &[&slug.as_str()],
                )
                .await?,
        };
    Ok(row.map(|r| row_org(&r, 0)))
}

/// A user and a page of their memberships, in one statement (`GET /me`).
pub async fn user_with_orgs(
    client: &impl GenericClient,
    id: UserId,
    page: PageRequest,
) -> Result<(User, Page<Membership>)> {
    let statement = client
        .prepare_cached(
            "SELECT u.id, u.email, u.created_at, o.id, o.slug, o.name, o.personal, o.created_at, m.role
             FROM users u
             LEFT JOIN (memberships m JOIN orgs o ON o.id = m.org_id AND o.id > $2)
                 ON m.user_id = u.id
             WHERE u.id = $1
             ORDER BY o.id LIMIT $3",
        )
        .await?;
    let rows = client
        .query(&statement, &[&id.as_uuid(), &page.after(), &page.fetch()])
        .await?;
    let first = rows.first().ok_or(IdentityError::InvalidCredentials)?;
    let user = User {
        id: UserId::from_uuid(first.get(0)),
        email: first.get(1),
        created_at: first.get(2),
    };
    let items = rows
        .iter()
        .filter(|r| r.get::<_, Option<Uuid>>(3).is_some())
        .map(|r| Membership {
            org: row_org(r, 3),
            role: row_role(r, 8),
        })
        .collect();
    Ok((
        user,
        page.finish(items, |m: &Membership| m.org.id.as_uuid()),
    ))
}

/// An organization by slug or id, with `user`'s role in it (`None` when not a member, or when
/// no user is given), in one statement: the authorization lookup of every org-scoped request.
pub async fn org_with_role(
    client: &impl GenericClient,
    org: &OrgRef,
    user: Option<UserId>,
) -> Result<Option<(Org, Option<Role>)>> {
    const SELECT: &str = "SELECT o.id, o.slug, o.name, o.personal, o.created_at, m.role
                          FROM orgs o LEFT JOIN memberships m ON m.org_id = o.id AND m.user_id = $2";
    let user = user.map(|u| u.as_uuid());
    let row = match org {
        OrgRef::Id(id) => {
            let statement = client
                .prepare_cached(&format!("{SELECT} WHERE o.id = $1"))
                .await?;
            client
                .query_opt(&statement, &[&id.as_uuid(), &user])
                .await?
        }
        OrgRef::Slug(slug) => {
            let statement = client
                .prepare_cached(&format!("{SELECT} WHERE o.slug = $1"))
                .await?;
            client
                .query_opt(&statement, &[&slug.as_str(), &user])
                .await?
        }
    };
    Ok(row.map(|r| {
        let role = r
            .get::<_, Option<&str>>(5)
            .map(|role| Role::parse(role).expect("the role column is constrained"));
        (row_org(&r, 0), role)
    }))
}

/// A user's role in an organization, if they are a member.
pub async fn role_of(
    client: &impl GenericClient,
    org: OrgId,
    user: UserId,
) -> Result<Option<Role>> {
    let row = client
        .query_opt(
            &client
                .prepare_cached("SELECT role FROM memberships WHERE org_id = $1 AND user_id = $2")
                .await?,
            &[&org.as_uuid(), &user.as_uuid()],
        )
        .await?;
    Ok(row.map(|r| row_role(&r, 0)))
}

/// Members of an organization, by user id.
pub async fn list_members(
    client: &impl GenericClient,
    org: OrgId,
    page: PageRequest,
) -> Result<Page<Member>> {
    let rows = client
        .query(
            &client
                .prepare_cached(
                    "SELECT u.id, u.email, m.role, m.created_at
             FROM memberships m JOIN users u ON u.id = m.user_id
             WHERE m.org_id = $1 AND u.id > $2 ORDER BY u.id LIMIT $3",
                )
                .await?,
            &[&org.as_uuid(), &page.after(), &page.fetch()],
        )
        .await?;
    let items = rows
        .iter()
        .map(|r| Member {
            user_id: UserId::from_uuid(r.get(0)),
            email: r.get(1),
            role: row_role(r, 2),
            joined_at: r.get(3),
        })
        .collect();
    Ok(page.finish(items, |m: &Member| m.user_id.as_uuid()))
}

/// Locks the organization row: every membership change of one org runs one at a time, so the
/// at-least-one-owner rule cannot be broken by two concurrent changes.
async fn lock_org(tx: &Transaction<'_>, org: OrgId) -> Result<()> {
    tx.query_opt(
        &tx.prepare_cached("SELECT 1 FROM orgs WHERE id = $1 FOR UPDATE")
            .await?,
        &[&org.as_uuid()],
    )
    .await?
    .ok_or(IdentityError::NotFound)?;
    Ok(())
}

async fn owner_count(tx: &Transaction<'_>, org: OrgId) -> Result<i64> {
    Ok(tx
        .query_one(
            &tx.prepare_cached(
                "SELECT count(*) FROM memberships WHERE org_id = $1 AND role = 'owner'",
            )
            .await?,
            &[&org.as_uuid()],
        )
        .await?
        .get(0))
}

/// Changes a member's role. `actor` must still be an owner when the change runs.
pub async fn set_role(
    client: &mut Client,
    actor: UserId,
    org: OrgId,
    target: UserId,
    role: Role,
    ctx: &AuditContext,
) -> Result<Member> {
    let tx = client.transaction().await?;
    lock_org(&tx, org).await?;
    if role_of(&tx, org, actor).await? != Some(Role::Owner) {
        return Err(IdentityError::Forbidden("only owners may change roles"));
    }
    let from = role_of(&tx, org, target)
        .await?
        .ok_or(IdentityError::NotFound)?;
    if from == Role::Owner && role != Role::Owner && owner_count(&tx, org).await? <= 1 {
        return Err(IdentityError::LastOwner);
    }
    let row = tx
        .query_one(
            &tx.prepare_cached(
                "UPDATE memberships m SET role = $3 FROM users u
             WHERE m.org_id = $1 AND m.user_id = $2 AND u.id = m.user_id
             RETURNING u.id, u.email, m.role, m.created_at",
            )
            .await?,
            &[&org.as_uuid(), &target.as_uuid(), &role.as_str()],
        )
        .await?;
    let mut e = event(
        "member.role_change",
        Actor::User(actor.as_uuid()),
        Some(org),
        ctx,
    );
    e.target = Some(format!("user:{target}"));
    e.details = json!({"from": from.as_str(), "to": role.as_str()});
    record(&tx, &e).await?;
    tx.commit().await?;
    Ok(Member {
        user_id: UserId::from_uuid(row.get(0)),
        email: row.get(1),
        role: row_role(&row, 2),
        joined_at: row.get(3),
    })
}

/// Removes a member. Owners may remove anyone; a member may remove itself. The API keys the
/// member created in the organization are revoked in the same transaction, each with an
/// `api_key.revoke` event (`reason: creator_left`).
pub async fn remove_member(
    client: &mut Client,
    actor: UserId,
    org: OrgId,
    target: UserId,
    ctx: &AuditContext,
) -> Result<()> {
    let tx = client.transaction().await?;
    lock_org(&tx, org).await?;
    let actor_role = role_of(&tx, org, actor)
        .await?
        .ok_or(IdentityError::NotFound)?;
    if actor != target && actor_role != Role::Owner {
        return Err(IdentityError::Forbidden(
            "only owners may remove other members",
        ));
    }
    let target_role = role_of(&tx, org, target)
        .await?
        .ok_or(IdentityError::NotFound)?;
    if target_role == Role::Owner && owner_count(&tx, org).await? <= 1 {
        return Err(IdentityError::LastOwner);
    }
    tx.execute(
        &tx.prepare_cached("DELETE FROM memberships WHERE org_id = $1 AND user_id = $2")
            .await?,
        &[&org.as_uuid(), &target.as_uuid()],
    )
    .await?;
    let mut e = event(
        "member.remove",
        Actor::User(actor.as_uuid()),
        Some(org),
        ctx,
    );
    e.target = Some(format!("user:{target}"));
    e.details = json!({"role": target_role.as_str(), "self": actor == target});
    record(&tx, &e).await?;
    // The keys they created leave with them, as personal tokens do on a code host.
    let revoked = tx
        .query(
            &tx.prepare_cached(
                "UPDATE api_keys SET revoked_at = now()
             WHERE org_id = $1 AND created_by = $2 AND revoked_at IS NULL RETURNING id",
            )
            .await?,
            &[&org.as_uuid(), &target.as_uuid()],
        )
        .await?;
    for row in &revoked {
        let key: Uuid = row.get(0);
        let mut e = event(
            "api_key.revoke",
            Actor::User(actor.as_uuid()),
            Some(org),
            ctx,
        );
        e.target = Some(format!("api_key:{key}"));
        e.details = json!({"reason": "creator_left", "creator": format!("user:{target}")});
        record(&tx, &e).await?;
    }
    tx.commit().await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Invites

/// Creates an invite and returns it with the token to mail. A pending invite to the same
/// address in the organization is reused (same id, new link, role and expiry), never multiplied.
pub async fn create_invite(
    client: &mut Client,
    actor: UserId,
    org: OrgId,
    email: &Email,
    role: Role,
    ttl: Duration,
    ctx: &AuditContext,
) -> Result<(Invite, OneTimeToken)> {
    let token = OneTimeToken::generate();
    let tx = client.transaction().await?;
    let already = tx
        .query_opt(
            &tx.prepare_cached(
                "SELECT 1 FROM memberships m JOIN users u ON u.id = m.user_id
             WHERE m.org_id = $1 AND u.email = $2",
            )
            .await?,
            &[&org.as_uuid(), &email.as_str()],
        )
        .await?;
    if already.is_some() {
        return Err(IdentityError::AlreadyMember);
    }
    // A pending invite to the same address is reused: same id, a fresh link (the old one stops
    // working), the new role and expiry. The partial unique index makes this race-free.
    let row = tx
        .query_one(
            &tx.prepare_cached(
                "INSERT INTO invites (id, org_id, email, role, token_hash, invited_by, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7))
             ON CONFLICT (org_id, email) WHERE accepted_at IS NULL AND revoked_at IS NULL
             DO UPDATE SET role = EXCLUDED.role, token_hash = EXCLUDED.token_hash,
                 invited_by = EXCLUDED.invited_by, expires_at = EXCLUDED.expires_at
             RETURNING created_at, expires_at, id, (xmax <> 0) AS reused",
            )
            .await?,
            &[
                &InviteId::generate().as_uuid(),
                &org.as_uuid(),
                &email.as_str(),
                &role.as_str(),
                &token.hash().as_bytes(),
                &actor.as_uuid(),
                &(ttl.as_secs_f64()),
            ],
        )
        .await?;
    let id = InviteId::from_uuid(row.get(2));
    let reused: bool = row.get(3);
    let mut e = event(
        "invite.create",
        Actor::User(actor.as_uuid()),
        Some(org),
        ctx,
    );
    e.target = Some(format!("invite:{id}"));
    e.details = json!({"email": email.as_str(), "role": role.as_str(), "reused": reused});
    record(&tx, &e).await?;
    tx.commit().await?;
    Ok((
        Invite {
            id,
            email: email.to_string(),
            role,
            invited_by: actor,
            created_at: row.get(0),
            expires_at: row.get(1),
        },
        token,
    ))
}

/// Pending invites (not accepted, revoked or expired), by id.
pub async fn list_invites(
    client: &impl GenericClient,
    org: OrgId,
    page: PageRequest,
) -> Result<Page<Invite>> {
    let rows = client
        .query(
            &client
                .prepare_cached(
                    "SELECT id, email, role, invited_by, created_at, expires_at FROM invites
             WHERE org_id = $1 AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > now()
               AND id > $2
             ORDER BY id LIMIT $3",
                )
                .await?,
            &[&org.as_uuid(), &page.after(), &page.fetch()],
        )
        .await?;
    let items = rows
        .iter()
        .map(|r| Invite {
            id: InviteId::from_uuid(r.get(0)),
            email: r.get(1),
            role: row_role(r, 2),
            invited_by: UserId::from_uuid(r.get(3)),
            created_at: r.get(4),
            expires_at: r.get(5),
        })
        .collect();
    Ok(page.finish(items, |i: &Invite| i.id.as_uuid()))
}

/// Revokes a pending invite.
pub async fn revoke_invite(
    client: &mut Client,
    actor: UserId,
    org: OrgId,
    invite: InviteId,
    ctx: &AuditContext,
) -> Result<()> {
    revoke(
        client,
        "UPDATE invites SET revoked_at = now()
         WHERE id = $1 AND org_id = $2 AND accepted_at IS NULL AND revoked_at IS NULL",
        invite.as_uuid(),
        org,
        ("invite.revoke", format!("invite:{invite}")),
        actor,
        ctx,
    )
    .await
}

/// Runs one revoking `UPDATE … WHERE id = $1 AND org_id = $2` with its audit event, in one
/// transaction; [`IdentityError::NotFound`] when nothing was left to revoke.
async fn revoke(
    client: &mut Client,
    sql: &str,
    id: Uuid,
    org: OrgId,
    (action_name, target): (&str, String),
    actor: UserId,
    ctx: &AuditContext,
) -> Result<()> {
    let tx = client.transaction().await?;
    if tx.execute(sql, &[&id, &org.as_uuid()]).await? == 0 {
        return Err(IdentityError::NotFound);
    }
    let mut e = event(action_name, Actor::User(actor.as_uuid()), Some(org), ctx);
    e.target = Some(target);
    record(&tx, &e).await?;
    tx.commit().await?;
    Ok(())
}

/// Accepts an invite: the token proves the email. Creates the user if needed, adds the
/// membership and starts a session. An existing member gets [`IdentityError::AlreadyMember`]
/// and the invite stays unused.
pub async fn accept_invite(
    client: &mut Client,
    token: &OneTimeToken,
    session_ttl: Duration,
    ctx: &AuditContext,
) -> Result<(NewSession, OrgId)> {
    let tx = client.transaction().await?;
    let row = tx
        .query_opt(
            &tx.prepare_cached("UPDATE invites SET accepted_at = now()
             WHERE token_hash = $1 AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > now()
             RETURNING id, org_id, email, role").await?,
            &[&token.hash().as_bytes()],
        )
        .await?;
    let Some(row) = row else {
        drop(tx);
        record_invalid_token(&*client, "invite.accept", ctx).await?;
        return Err(IdentityError::InvalidToken);
    };
    let invite = InviteId::from_uuid(row.get(0));
    let org = OrgId::from_uuid(row.get(1));
    let email = Email::parse(row.get::<_, &str>(2))?;
    let role = row_role(&row, 3);
    let (user, _created) = upsert_user(&tx, &email).await?;
    if !add_member(&tx, org, user.id, role).await? {
        return Err(IdentityError::AlreadyMember);
    }
    let (session, expires_at) = create_session(&tx, user.id, session_ttl).await?;
    let mut e = event(
        "invite.accept",
        Actor::User(user.id.as_uuid()),
        Some(org),
        ctx,
    );
    e.target = Some(format!("invite:{invite}"));
    e.details = json!({"outcome": "ok", "role": role.as_str()});
    record(&tx, &e).await?;
    tx.commit().await?;
    Ok((
        NewSession {
            user,
            session,
            expires_at,
        },
        org,
    ))
}

// ---------------------------------------------------------------------------------------------
// API keys

/// Creates an API key and returns it with its secret, shown exactly once.
pub async fn create_api_key(
    client: &mut Client,
    actor: UserId,
    org: OrgId,
    name: &str,
    expires_at: Option<OffsetDateTime>,
    ctx: &AuditContext,
) -> Result<(ApiKey, ApiKeySecret)> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(IdentityError::InvalidInput(
            "name must be 1-100 characters without control characters".into(),
        ));
    }
    if expires_at.is_some_and(|t| t <= OffsetDateTime::now_utc()) {
        return Err(IdentityError::InvalidInput(
            "expires_at must be in the future".into(),
        ));
    }
    let secret = ApiKeySecret::generate();
    let id = ApiKeyId::generate();
    let tx = client.transaction().await?;
    let created_at: OffsetDateTime = tx
        .query_one(
            &tx.prepare_cached("INSERT INTO api_keys (id, org_id, name, prefix, last4, secret_hash, created_by, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING created_at").await?,
            &[
                &id.as_uuid(),
                &org.as_uuid(),
                &name,
                &ApiKeySecret::PREFIX,
                &secret.last4(),
                &secret.hash().as_bytes(),
                &actor.as_uuid(),
                &expires_at,
            ],
        )
        .await?
        .get(0);
    let mut e = event(
        "api_key.create",
        Actor::User(actor.as_uuid()),
        Some(org),
        ctx,
    );
    e.target = Some(format!("api_key:{id}"));
    e.details = json!({"name": name, "last4": secret.last4()});
    record(&tx, &e).await?;
    tx.commit().await?;
    Ok((
        ApiKey {
            id,
            name: name.to_owned(),
            prefix: ApiKeySecret::PREFIX.to_owned(),
            last4: secret.last4(),
            created_by: actor,
            created_at,
            last_used_at: None,
            expires_at,
            revoked_at: None,
        },
        secret,
    ))
}

/// An organization's API keys, revoked ones included, by id.
pub async fn list_api_keys(
    client: &impl GenericClient,
    org: OrgId,
    page: PageRequest,
) -> Result<Page<ApiKey>> {
    let rows = client
        .query(
            &client.prepare_cached("SELECT id, name, prefix, last4, created_by, created_at, last_used_at, expires_at, revoked_at
             FROM api_keys WHERE org_id = $1 AND id > $2 ORDER BY id LIMIT $3").await?,
            &[&org.as_uuid(), &page.after(), &page.fetch()],
        )
        .await?;
    let items = rows
        .iter()
        .map(|r| ApiKey {
            id: ApiKeyId::from_uuid(r.get(0)),
            name: r.get(1),
            prefix: r.get(2),
            last4: r.get(3),
            created_by: UserId::from_uuid(r.get(4)),
            created_at: r.get(5),
            last_used_at: r.get(6),
            expires_at: r.get(7),
            revoked_at: r.get(8),
        })
        .collect();
    Ok(page.finish(items, |k: &ApiKey| k.id.as_uuid()))
}

/// Revokes an API key of `org`.
pub async fn revoke_api_key(
    client: &mut Client,
    actor: UserId,
    org: OrgId,
    key: ApiKeyId,
    ctx: &AuditContext,
) -> Result<()> {
    revoke(
        client,
        "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND org_id = $2 AND revoked_at IS NULL",
        key.as_uuid(),
        org,
        ("api_key.revoke", format!("api_key:{key}")),
        actor,
        ctx,
    )
    .await
}

/// An API key's state as stored, looked up by the hash of the presented secret.
#[derive(Debug, Clone, Copy)]
pub struct ApiKeyRow {
    /// The key.
    pub id: ApiKeyId,
    /// Its organization.
    pub org: OrgId,
    /// Expiry.
    pub expires_at: Option<OffsetDateTime>,
    /// Whether it was revoked.
    pub revoked: bool,
}

/// Looks a key up by hash.
pub async fn api_key_by_hash(
    client: &impl GenericClient,
    hash: &SecretHash,
) -> Result<Option<ApiKeyRow>> {
    let row = client
        .query_opt(
            &client.prepare_cached("SELECT id, org_id, expires_at, revoked_at IS NOT NULL FROM api_keys WHERE secret_hash = $1").await?,
            &[&hash.as_bytes()],
        )
        .await?;
    Ok(row.map(|r| ApiKeyRow {
        id: ApiKeyId::from_uuid(r.get(0)),
        org: OrgId::from_uuid(r.get(1)),
        expires_at: r.get(2),
        revoked: r.get(3),
    }))
}

/// Records a key's use, at most once a minute.
pub async fn touch_api_key(client: &impl GenericClient, key: ApiKeyId) -> Result<()> {
    client
        .execute(
            &client.prepare_cached("UPDATE api_keys SET last_used_at = now()
             WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')").await?,
            &[&key.as_uuid()],
        )
        .await?;
    Ok(())
}
