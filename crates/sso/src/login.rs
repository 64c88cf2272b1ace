//! OIDC sign-ins in progress and their completion. A sign-in is a row keyed by the hash of its
//! `state`, bound to the browser that started it (the hash of a cookie value), single use and
//! short-lived. Completing one provisions the user just in time and sets their role from the
//! connection's group mapping, each role change an audit event and a `member.role_change`
//! receipt in the organization's chain; the last-owner rule holds.

use deadpool_postgres::{GenericClient, Transaction};
use defendable_identity::store as identity;
use defendable_identity::{Email, OrgId, Role, UserId};
use defendable_ledger::{Draft, ReceiptKind};
use defendable_store::audit::{Actor, AuditAction, AuditContext, AuditEvent};
use serde_json::json;
use subtle::ConstantTimeEq as _;

use crate::domain::{ConnectionId, DomainName};
use crate::oidc::random_value;
use crate::store::{get_connection_by_id, receipt_with_event, Connection};
use crate::{Result, SsoError};

fn sha256(s: &str) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, s.as_bytes())
        .as_ref()
        .to_vec()
}

fn refused(why: impl Into<String>) -> SsoError {
    SsoError::Refused(why.into())
}

/// A started sign-in: what the authorization request carries and the browser cookie's value.
#[derive(Debug)]
pub struct Started {
    /// The `state` parameter.
    pub state: String,
    /// The `nonce` parameter.
    pub nonce: String,
    /// The PKCE verifier (its S256 challenge goes in the request).
    pub verifier: String,
    /// The value of the cookie that binds the sign-in to this browser.
    pub browser: String,
}

/// Records a new sign-in through `connection`.
pub async fn start(client: &impl GenericClient, connection: ConnectionId) -> Result<Started> {
    let started = Started {
        state: random_value(),
        nonce: random_value(),
        verifier: random_value(),
        browser: random_value(),
    };
    let ttl = defendable_config::limits::SSO_LOGIN_TTL.as_secs_f64();
    client
        .execute(
            &client
                .prepare_cached(
                    "INSERT INTO sso_logins (state_hash, connection_id, nonce, code_verifier, browser_hash, expires_at)
                     VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6))",
                )
                .await?,
            &[
                &sha256(&started.state),
                &connection.as_uuid(),
                &started.nonce,
                &started.verifier,
                &sha256(&started.browser),
                &ttl,
            ],
        )
        .await?;
    Ok(started)
}

/// A sign-in taken for completion.
#[derive(Debug)]
pub struct Pending {
    /// Its connection, as it is now.
    pub connection: Connection,
    /// The nonce the ID token must carry.
    pub nonce: String,
    /// The PKCE verifier for the token request.
    pub verifier: String,
}

/// Takes the sign-in `state` names, once: a second use, an expired one, or one started in
/// another browser (`browser` is the cookie the callback came with) is refused. It is consumed
/// whatever the outcome, so a forwarded callback URL is burnt.
pub async fn take(
    client: &impl GenericClient,
    state: &str,
    browser: Option<&str>,
) -> Result<Pending> {
    let row = client
        .query_opt(
            &client
                .prepare_cached(
                    "UPDATE sso_logins SET consumed_at = now()
                     WHERE state_hash = $1 AND consumed_at IS NULL AND expires_at > now()
                     RETURNING connection_id, nonce, code_verifier, browser_hash",
                )
                .await?,
            &[&sha256(state)],
        )
        .await?
        .ok_or_else(|| refused("unknown, used or expired state"))?;
    let expected: Vec<u8> = row.get(3);
    let same_browser = browser.is_some_and(|b| bool::from(sha256(b).ct_eq(&expected)));
    if !same_browser {
        return Err(refused(
            "the sign-in was started in another browser (its cookie is missing or different)",
        ));
    }
    let connection = get_connection_by_id(client, ConnectionId::from_uuid(row.get(0))).await?;
    Ok(Pending {
        connection,
        nonce: row.get(1),
        verifier: row.get(2),
    })
}

/// The connection a sign-in for `email` goes through: the one that lists the email's domain,
/// in the organization that verified it.
pub async fn connection_for_email(
    client: &impl GenericClient,
    email: &Email,
) -> Result<Connection> {
    let domain = email
        .as_str()
        .rsplit_once('@')
        .map(|(_, d)| d)
        .unwrap_or_default();
    let row = client
        .query_opt(
            &client
                .prepare_cached(
                    "SELECT c.id FROM sso_connections c
                     JOIN org_domains d ON d.org_id = c.org_id AND d.verified_at IS NOT NULL
                     WHERE d.domain = $1 AND d.domain = ANY(c.domains)",
                )
                .await?,
            &[&domain],
        )
        .await?
        .ok_or_else(|| {
            refused(format!(
                "no organization signs in {domain} with single sign-on"
            ))
        })?;
    get_connection_by_id(client, ConnectionId::from_uuid(row.get(0))).await
}

/// The organization's connection when it has exactly one.
pub async fn connection_for_org(client: &impl GenericClient, org: OrgId) -> Result<Connection> {
    let mut all = crate::store::list_connections(client, org).await?;
    match all.len() {
        1 => Ok(all.remove(0)),
        0 => Err(refused("the organization has no single sign-on connection")),
        _ => Err(refused(
            "the organization has several connections: start with your email address",
        )),
    }
}

/// What a completed sign-in decided.
#[derive(Debug)]
pub struct Completed {
    /// The user (created if new).
    pub user: UserId,
    /// Whether the user was created now.
    pub created: bool,
    /// Their role in the organization now.
    pub role: Role,
}

/// Completes a sign-in whose ID token validated: the email's domain must be one the connection
/// lists and its organization verified; the user is found or created; their role comes from
/// `groups` through the mapping (or the default role). A user no group maps and no default
/// covers is refused and loses a membership they had, unless they are its last owner; a mapping
/// never demotes the last owner.
pub async fn complete(
    tx: &Transaction<'_>,
    connection: &Connection,
    email: &Email,
    groups: &[String],
    ctx: &AuditContext,
) -> Result<Completed> {
    let domain = DomainName::parse(
        email
            .as_str()
            .rsplit_once('@')
            .map(|(_, d)| d)
            .unwrap_or_default(),
    )?;
    let verified = tx
        .query_opt(
            &tx.prepare_cached(
                "SELECT 1 FROM org_domains WHERE org_id = $1 AND domain = $2 AND verified_at IS NOT NULL",
            )
            .await?,
            &[&connection.org.as_uuid(), &domain.as_str()],
        )
        .await?;
    if verified.is_none() || !connection.domains.contains(&domain) {
        return Err(refused(format!(
            "{domain} is not a verified domain of this connection"
        )));
    }
    let org = connection.org.as_uuid();
    tx.execute(
        &tx.prepare_cached("SELECT 1 FROM orgs WHERE id = $1 FOR UPDATE")
            .await?,
        &[&org],
    )
    .await?;
    let (user, created) = identity::upsert_user(tx, email)
        .await
        .map_err(identity_error)?;
    // Where the directory (SCIM) knows the user, a deactivated entry refuses the sign-in and
    // the entry's groups count with the token's (Google's tokens carry none).
    let mut groups = groups.to_vec();
    if let Some(entry) = crate::scim::store::entry_of(tx, connection.id, user.id).await? {
        if !entry.active {
            return Err(refused(
                "your directory entry at the identity provider is deactivated",
            ));
        }
        groups.extend(entry.groups);
    }
    let current: Option<Role> = tx
        .query_opt(
            &tx.prepare_cached("SELECT role FROM memberships WHERE org_id = $1 AND user_id = $2")
                .await?,
            &[&org, &user.id.as_uuid()],
        )
        .await?
        .map(|r| Role::parse(r.get(0)).map_err(identity_error))
        .transpose()?;
    let owners: i64 = tx
        .query_one(
            &tx.prepare_cached(
                "SELECT count(*) FROM memberships WHERE org_id = $1 AND role = 'owner'",
            )
            .await?,
            &[&org],
        )
        .await?
        .get(0);
    let last_owner = current == Some(Role::Owner) && owners <= 1;
    let mapped = connection
        .group_roles
        .role_for(groups.iter().map(String::as_str))
        .or(connection.default_role);
    let target = match (mapped, current) {
        (Some(Role::Member), Some(Role::Owner)) if last_owner => Role::Owner,
        (Some(role), _) => role,
        (None, Some(_)) if last_owner => Role::Owner,
        (None, Some(role)) => {
            tx.execute(
                &tx.prepare_cached("DELETE FROM memberships WHERE org_id = $1 AND user_id = $2")
                    .await?,
                &[&org, &user.id.as_uuid()],
            )
            .await?;
            role_change(
                tx,
                connection,
                user.id,
                (Some(role), None),
                Source::SignIn,
                ctx,
            )
            .await?;
            return Err(refused(
                "no group of yours is mapped to a role in this organization (your membership was removed)",
            ));
        }
        (None, None) => {
            return Err(refused(
                "no group of yours is mapped to a role in this organization",
            ))
        }
    };
    if current != Some(target) {
        tx.execute(
            &tx.prepare_cached(
                "INSERT INTO memberships (org_id, user_id, role) VALUES ($1, $2, $3)
                 ON CONFLICT (org_id, user_id) DO UPDATE SET role = EXCLUDED.role",
            )
            .await?,
            &[&org, &user.id.as_uuid(), &target.as_str()],
        )
        .await?;
        role_change(
            tx,
            connection,
            user.id,
            (current, Some(target)),
            Source::SignIn,
            ctx,
        )
        .await?;
    }
    Ok(Completed {
        user: user.id,
        created,
        role: target,
    })
}

fn identity_error(e: defendable_identity::IdentityError) -> SsoError {
    match e {
        defendable_identity::IdentityError::Store(s) => SsoError::Store(s),
        other => SsoError::InvalidInput(other.to_string()),
    }
}

/// What set a role: a sign-in's ID token or the directory (SCIM).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// An OIDC sign-in (the user acts).
    SignIn,
    /// SCIM provisioning (the connection acts).
    Scim,
}

/// A role set by the identity provider: its audit event and `member.role_change` receipt.
pub(crate) async fn role_change(
    tx: &Transaction<'_>,
    connection: &Connection,
    user: UserId,
    (from, to): (Option<Role>, Option<Role>),
    source: Source,
    ctx: &AuditContext,
) -> Result<()> {
    let (source, actor) = match source {
        Source::SignIn => ("sso", Actor::User(user.as_uuid())),
        Source::Scim => ("scim", Actor::Scim(connection.id.as_uuid())),
    };
    let facts = json!({
        "from": from.map(Role::as_str),
        "to": to.map(Role::as_str),
        "source": source,
        "connection": connection.id.to_string(),
    });
    let draft = Draft::new(
        ReceiptKind::parse("member.role_change")?,
        facts.clone(),
        Some(json!({ "user": user.to_string() })),
    )?;
    let event = AuditEvent::new(AuditAction::parse("member.role_change")?, actor)
        .on(format!("user:{user}"))
        .with(facts);
    receipt_with_event(tx, connection.org, draft, event, ctx).await?;
    Ok(())
}
