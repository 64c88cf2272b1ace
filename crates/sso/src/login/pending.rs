//! Sign-ins in progress: a row keyed by the hash of its `state`, bound to the browser that
//! started it (the hash of a cookie value) or to a CLI's loopback port and verifier, single use
//! and short-lived.

use deadpool_postgres::GenericClient;
use defendable_identity::InviteId;
use subtle::ConstantTimeEq as _;

use super::{refused, sha256};
use crate::domain::ConnectionId;
use crate::oidc::random_value;
use crate::store::{get_connection_by_id, Connection};
use crate::{Result, SsoError};

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
