//! OIDC sign-ins in progress and their completion. A sign-in is a row keyed by the hash of its
//! `state`, bound to the browser that started it (the hash of a cookie value), single use and
//! short-lived. Completing one provisions the user just in time and sets their role from the
//! connection's group mapping, each role change an audit event and a `member.role_change`
//! receipt in the organization's chain; the last-owner rule holds.

use deadpool_postgres::{GenericClient, Transaction};
use defendable_identity::store as identity;
use defendable_identity::{Email, InviteId, OrgId, Role, UserId};
use defendable_store::audit::AuditContext;
use subtle::ConstantTimeEq as _;

use crate::domain::{ConnectionId, DomainName};
use crate::membership::{deprovision, keep_break_glass, last_break_glass, role_change, Source};
use crate::oidc::random_value;
use crate::store::{get_connection_by_id, Connection};
use crate::{Result, SsoError};

fn sha256(s: &str) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, s.as_bytes())
        .as_ref()
        .to_vec()
}

fn refused(why: impl Into<String>) -> SsoError {
    SsoError::Refused(why.into())
}

/// What a sign-in is bound to, so that only whoever started it can finish it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binding {
    /// The browser that started it: a cookie whose value's hash the sign-in keeps.
    Browser,
    /// The CLI that started it (RFC 8252): the callback sends the browser to
    /// `http://127.0.0.1:{port}/` with a one-time link and the CLI's `state`, and the link is
    /// redeemed only with the verifier whose SHA-256 is `challenge` (RFC 7636 S256).
    Cli {
        /// The CLI's loopback port.
        port: u16,
        /// SHA-256 of the CLI's verifier.
        challenge: [u8; 32],
        /// The value the CLI takes the link with: a request to its port without it is not
        /// the server's (`None` only for sign-ins started before the CLI sent one).
        state: Option<String>,
    },
}

impl Binding {
    /// A CLI binding from its loopback `port`, its S256 `code_challenge` (base64url of the
    /// SHA-256 of a verifier only the CLI holds) and the `state` it takes the link with
    /// (22–128 base64url characters: at least 128 random bits).
    pub fn cli(port: u16, code_challenge: &str, state: &str) -> Result<Binding> {
        use base64::Engine as _;
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(code_challenge)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| {
                SsoError::InvalidInput(
                    "code_challenge must be the base64url (no padding) SHA-256 of a verifier"
                        .into(),
                )
            })?;
        if port == 0 {
            return Err(SsoError::InvalidInput(
                "port must be the CLI's loopback port (1–65535)".into(),
            ));
        }
        let state_ok = (22..=128).contains(&state.len())
            && state
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !state_ok {
            return Err(SsoError::InvalidInput(
                "state must be 22 to 128 base64url characters the CLI chose at random".into(),
            ));
        }
        Ok(Binding::Cli {
            port,
            challenge,
            state: Some(state.to_owned()),
        })
    }
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
    /// The value of the cookie that binds the sign-in to this browser (browser sign-ins).
    pub browser: Option<String>,
}

/// Records a new sign-in through `connection`, bound to `binding`, using `invite` when it
/// completes.
pub async fn start(
    client: &impl GenericClient,
    connection: ConnectionId,
    binding: &Binding,
    invite: Option<InviteId>,
) -> Result<Started> {
    let started = Started {
        state: random_value(),
        nonce: random_value(),
        verifier: random_value(),
        browser: (*binding == Binding::Browser).then(random_value),
    };
    let (port, challenge, cli_state) = match binding {
        Binding::Browser => (None, None, None),
        Binding::Cli {
            port,
            challenge,
            state,
        } => (
            Some(i32::from(*port)),
            Some(challenge.to_vec()),
            state.as_deref(),
        ),
    };
    let ttl = defendable_config::limits::SSO_LOGIN_TTL.as_secs_f64();
    client
        .execute(
            &client
                .prepare_cached(
                    "INSERT INTO sso_logins (state_hash, connection_id, nonce, code_verifier, browser_hash, expires_at, invite_id, cli_port, cli_challenge, cli_state)
                     VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6), $7, $8, $9, $10)",
                )
                .await?,
            &[
                &sha256(&started.state),
                &connection.as_uuid(),
                &started.nonce,
                &started.verifier,
                &started.browser.as_deref().map(sha256),
                &ttl,
                &invite.map(|i| i.as_uuid()),
                &port,
                &challenge,
                &cli_state,
            ],
        )
        .await?;
    Ok(started)
}

/// Deletes sign-ins that expired more than `older_than` ago (used or not: an expired one can
/// never be taken). Returns how many went.
pub async fn prune(client: &impl GenericClient, older_than: std::time::Duration) -> Result<u64> {
    Ok(client
        .execute(
            &client
                .prepare_cached(
                    "DELETE FROM sso_logins WHERE expires_at < now() - make_interval(secs => $1)",
                )
                .await?,
            &[&older_than.as_secs_f64()],
        )
        .await?)
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
    /// The invite it accepts, if it started from one.
    pub invite: Option<InviteId>,
    /// What it is bound to (a browser's was checked when it was taken).
    pub binding: Binding,
}

/// Takes the sign-in `state` names, once: a second use, an expired one, or a browser sign-in
/// coming back in another browser (`browser` is the cookie the callback came with) is refused.
/// It is consumed whatever the outcome, so a forwarded callback URL is burnt. A CLI sign-in
/// needs no cookie: its link goes back to the CLI's loopback port and is redeemed only with
/// the CLI's verifier.
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
                     RETURNING connection_id, nonce, code_verifier, browser_hash, invite_id, cli_port, cli_challenge, cli_state",
                )
                .await?,
            &[&sha256(state)],
        )
        .await?
        .ok_or_else(|| refused("unknown, used or expired state"))?;
    let binding = match (
        row.get::<_, Option<i32>>(5),
        row.get::<_, Option<Vec<u8>>>(6),
    ) {
        (Some(port), Some(challenge)) => Binding::Cli {
            port: u16::try_from(port).map_err(|_| refused("a malformed sign-in"))?,
            challenge: <[u8; 32]>::try_from(challenge)
                .map_err(|_| refused("a malformed sign-in"))?,
            state: row.get(7),
        },
        _ => Binding::Browser,
    };
    if binding == Binding::Browser {
        let expected: Option<Vec<u8>> = row.get(3);
        let same_browser = browser
            .zip(expected)
            .is_some_and(|(b, expected)| bool::from(sha256(b).ct_eq(&expected)));
        if !same_browser {
            return Err(refused(
                "the sign-in was started in another browser (its cookie is missing or different)",
            ));
        }
    }
    let connection = get_connection_by_id(client, ConnectionId::from_uuid(row.get(0))).await?;
    Ok(Pending {
        connection,
        nonce: row.get(1),
        verifier: row.get(2),
        invite: row.get::<_, Option<uuid::Uuid>>(4).map(InviteId::from_uuid),
        binding,
    })
}

/// The connection a sign-in for `email` goes through: the one that lists the email's domain,
/// in the organization that verified it.
pub async fn connection_for_email(
    client: &impl GenericClient,
    email: &Email,
) -> Result<Connection> {
    let domain = email.domain();
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

/// The connection an invite is accepted through, and the invite: it must be pending and its
/// address in a domain that one of the inviting organization's connections lists and the
/// organization verified.
pub async fn connection_for_invite(
    client: &impl GenericClient,
    token: &defendable_identity::OneTimeToken,
) -> Result<(Connection, InviteId)> {
    let invite = identity::find_invite(client, token)
        .await
        .map_err(identity_error)?
        .ok_or_else(|| refused("the invite is invalid or has expired; ask for a new one"))?;
    let connection = connection_for_email(client, &invite.email)
        .await
        .ok()
        .filter(|c| c.org == invite.org)
        .ok_or_else(|| {
            refused("the organization does not sign this invite's address in with single sign-on: accept it with its link")
        })?;
    Ok((connection, invite.id))
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

/// The domain of `email` when `connection` lists it and its organization verified it: the rule
/// for which addresses a connection speaks for, at sign-in and in the directory alike.
pub(crate) async fn verified_domain(
    client: &impl GenericClient,
    connection: &Connection,
    email: &Email,
) -> Result<Option<DomainName>> {
    let Ok(domain) = DomainName::parse(email.domain()) else {
        return Ok(None);
    };
    Ok(is_verified(client, connection, &domain)
        .await?
        .then_some(domain))
}

/// Whether `domain` is one of the connection's domains and its organization verified it.
async fn is_verified(
    client: &impl GenericClient,
    connection: &Connection,
    domain: &DomainName,
) -> Result<bool> {
    if !connection.domains.contains(domain) {
        return Ok(false);
    }
    let verified = client
        .query_opt(
            &client
                .prepare_cached(
                    "SELECT 1 FROM org_domains WHERE org_id = $1 AND domain = $2 AND verified_at IS NOT NULL",
                )
                .await?,
            &[&connection.org.as_uuid(), &domain.as_str()],
        )
        .await?;
    Ok(verified.is_some())
}

/// An identity error as this crate reports it.
pub(crate) fn identity_error(e: defendable_identity::IdentityError) -> SsoError {
    match e {
        defendable_identity::IdentityError::Store(s) => SsoError::Store(s),
        other => SsoError::InvalidInput(other.to_string()),
    }
}
