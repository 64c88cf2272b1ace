//! Completing a sign-in whose ID token validated: the user provisioned just in time, their role
//! set from the connection's group mapping, each role change an audit event and a
//! `member.role_change` receipt in the organization's chain; the last-owner rule holds.

use deadpool_postgres::Transaction;
use defendable_identity::store as identity;
use defendable_identity::{Email, InviteId, Role, UserId};
use defendable_store::audit::AuditContext;

use super::refused;
use crate::domain::DomainName;
use crate::identity_error;
use crate::membership::{deprovision, keep_break_glass, last_break_glass, role_change, Source};
use crate::store::{is_verified, verified_domain, Connection};
use crate::{Result, SsoError};

/// What a completed sign-in decided.
#[derive(Debug)]
pub struct Completed {
    /// The user (created if new).
    pub user: UserId,
    /// Whether the user was created now.
    pub created: bool,
    /// Their role in the organization now; `None` when their groups no longer map and nothing
    /// else covers them: this sign-in removed their membership and is refused.
    pub role: Option<Role>,
}

impl Completed {
    /// Why the sign-in is refused, when it is. The caller commits first: the removal stands.
    pub fn refusal(&self) -> Option<SsoError> {
        self.role.is_none().then(|| {
            refused(
                "no group of yours is mapped to a role in this organization (your membership was removed)",
            )
        })
    }
}

/// Completes a sign-in whose ID token validated: the email's domain must be one the connection
/// lists and its organization verified; the user is found or created; their role comes from
/// `groups` through the mapping (or the default role, or the invite the sign-in started from,
/// which it uses). A user no group maps and nothing else covers loses a membership they had,
/// unless they are its last owner, and [`Completed::refusal`] refuses them once the caller has
/// committed; a mapping never demotes the last owner.
///
/// At Google, whose issuer every Google account shares, the token must also carry `hd` (the
/// account's Workspace, its primary domain) naming one of the connection's verified domains: a
/// personal account registered with a company address carries none. The email's own domain is
/// checked beside it, since a Workspace user's address may be in one of its secondary domains.
#[allow(clippy::too_many_arguments)]
pub async fn complete(
    tx: &Transaction<'_>,
    connection: &Connection,
    email: &Email,
    groups: &[String],
    hd: Option<&str>,
    invite: Option<InviteId>,
    ctx: &AuditContext,
) -> Result<Completed> {
    if verified_domain(tx, connection, email).await?.is_none() {
        return Err(refused(format!(
            "{} is not a verified domain of this connection",
            email.domain()
        )));
    }
    if connection.provider == crate::domain::Provider::Google {
        let workspace = hd.and_then(|hd| DomainName::parse(hd).ok()).ok_or_else(|| {
            refused("Google: the ID token carries no Workspace domain (hd): a personal Google account, not one of this connection's Workspaces")
        })?;
        if !is_verified(tx, connection, &workspace).await? {
            return Err(refused(format!(
                "Google: the account's Workspace ({workspace}) is not a verified domain of this connection"
            )));
        }
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
    let membership = tx
        .query_opt(
            &tx.prepare_cached(
                "SELECT role, idp_managed FROM memberships WHERE org_id = $1 AND user_id = $2",
            )
            .await?,
            &[&org, &user.id.as_uuid()],
        )
        .await?;
    let current: Option<Role> = membership
        .as_ref()
        .map(|r| Role::parse(r.get(0)).map_err(identity_error))
        .transpose()?;
    let managed = membership.as_ref().is_some_and(|r| r.get::<_, bool>(1));
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
    // Only an owner can be the last break-glass owner: nobody else costs the lookup.
    let last_break_glass =
        current == Some(Role::Owner) && last_break_glass(tx, connection.org, user.id).await?;
    // A mapping never takes the owner role from the last owner, nor from the last break-glass
    // owner of an organization that enforces single sign-on (refusing the sign-in instead would
    // lock a legitimate person out).
    let last_owner = current == Some(Role::Owner) && (owners <= 1 || last_break_glass);
    let mut kept = false;
    let invited = match invite {
        Some(invite) => Some(
            identity::use_invite(tx, invite, connection.org, email, user.id, ctx)
                .await
                .map_err(|e| match e {
                    defendable_identity::IdentityError::InvalidToken => refused(
                        "the invite is for another address, or it was used, revoked or has expired",
                    ),
                    other => identity_error(other),
                })?,
        ),
        None => None,
    };
    let mapped = connection
        .group_roles
        .role_for(groups.iter().map(String::as_str))
        .or(connection.default_role);
    // (role, whether the identity provider gave it): the mapping or default role does; an
    // invite, a role an owner gave, and the last owner's kept role do not.
    let (target, from_idp) = match (mapped, invited, current) {
        (Some(Role::Member), _, Some(Role::Owner)) if last_owner => {
            kept = true;
            (Role::Owner, managed)
        }
        (Some(role), _, _) => (role, true),
        (None, Some(role), None) => (role, false),
        // Already a member (the invite predates the membership): the invite is used, the role
        // stays as it is.
        (None, Some(_), Some(role)) => (role, managed),
        // Groups that stop mapping remove only a membership the identity provider gave.
        (None, None, Some(role)) if !managed => (role, managed),
        (None, None, Some(role)) if last_owner => {
            kept = true;
            (role, managed)
        }
        (None, None, Some(role)) => {
            deprovision(tx, connection, user.id, Source::SignIn, ctx).await?;
            role_change(
                tx,
                connection,
                user.id,
                (Some(role), None),
                Source::SignIn,
                ctx,
            )
            .await?;
            return Ok(Completed {
                user: user.id,
                created,
                role: None,
            });
        }
        // Nothing to keep: the refusal rolls back the account a first sign-in would create.
        (None, None, None) => {
            return Err(refused(
                "no group of yours is mapped to a role in this organization",
            ))
        }
    };
    if kept && last_break_glass {
        keep_break_glass(tx, connection, user.id, Source::SignIn, ctx).await?;
    }
    if current != Some(target) || managed != from_idp {
        tx.execute(
            &tx.prepare_cached(
                "INSERT INTO memberships (org_id, user_id, role, idp_managed) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (org_id, user_id) DO UPDATE
                 SET role = EXCLUDED.role, idp_managed = EXCLUDED.idp_managed,
                     break_glass = memberships.break_glass AND EXCLUDED.role = 'owner'",
            )
            .await?,
            &[&org, &user.id.as_uuid(), &target.as_str(), &from_idp],
        )
        .await?;
    }
    if current != Some(target) {
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
        role: Some(target),
    })
}
