//! Which connection a sign-in goes through: the one that lists the address's verified domain,
//! the organization's only one, or the one an invite's address routes to.

use deadpool_postgres::GenericClient;
use defendable_identity::store as identity;
use defendable_identity::{Email, InviteId, OneTimeToken, OrgId, OrgRef};

use super::refused;
use crate::domain::ConnectionId;
use crate::identity_error;
use crate::store::{get_connection_by_id, Connection};
use crate::view::StartSso;
use crate::{Result, SsoError};

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

/// The connection a sign-in starts through, from exactly one of `start`'s address,
/// organization and invite (and the invite it accepts). An unknown or malformed organization or
/// invite is refused like one without a connection.
pub(crate) async fn connection_for_start(
    client: &impl GenericClient,
    start: &StartSso,
) -> Result<(Connection, Option<InviteId>)> {
    match (&start.email, &start.org, &start.invite) {
        (Some(email), None, None) => {
            let email = Email::parse(email).map_err(SsoError::Identity)?;
            Ok((connection_for_email(client, &email).await?, None))
        }
        (None, Some(org), None) => {
            let no_such = || refused("no such organization");
            let org = OrgRef::parse(org).map_err(|_| no_such())?;
            let org = identity::find_org(client, &org)
                .await
                .map_err(identity_error)?
                .ok_or_else(no_such)?;
            Ok((connection_for_org(client, org.id).await?, None))
        }
        (None, None, Some(invite)) => {
            let token = OneTimeToken::parse(invite)
                .map_err(|_| refused("the invite is invalid or has expired"))?;
            let (connection, invite) = connection_for_invite(client, &token).await?;
            Ok((connection, Some(invite)))
        }
        _ => Err(SsoError::InvalidInput(
            "send exactly one of `email`, `org` and `invite`".into(),
        )),
    }
}
