//! Invites: single use, bound to an address, one pending per address and organization.

use super::*;

/// An invite from `id, email, role, invited_by, created_at, expires_at`.
fn row_invite(r: &tokio_postgres::Row) -> Invite {
    Invite {
        id: InviteId::from_uuid(r.get(0)),
        email: r.get(1),
        role: row_role(r, 2),
        invited_by: UserId::from_uuid(r.get(3)),
        created_at: r.get(4),
        expires_at: r.get(5),
    }
}

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
    let e = event(AuditAction::InviteCreate, actor, Some(org), ctx)
        .on(format!("invite:{id}"))
        .with(json!({"email": email.as_str(), "role": role.as_str(), "reused": reused}));
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
    let items = rows.iter().map(row_invite).collect();
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
        (AuditAction::InviteRevoke, format!("invite:{invite}")),
        actor,
        ctx,
    )
    .await
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
        record_invalid_token(&*client, AuditAction::InviteAccept, ctx).await?;
        return Err(IdentityError::InvalidToken);
    };
    let invite = InviteId::from_uuid(row.get(0));
    let org = OrgId::from_uuid(row.get(1));
    let email = Email::parse(row.get::<_, &str>(2))?;
    let role = row_role(&row, 3);
    if sso_enforced_for(&tx, org, &email).await? {
        // The invite stays unused: it is accepted by signing in through the connection.
        drop(tx);
        let e = event(AuditAction::InviteAccept, Actor::Anonymous, Some(org), ctx)
            .on(format!("invite:{invite}"))
            .with(json!({"outcome": "sso_required"}));
        record(&*client, &e).await?;
        return Err(IdentityError::SsoRequired(format!(
            "this organization signs in {} with single sign-on: accept the invite through POST /auth/sso/start {{\"invite\": …}}",
            email.domain()
        )));
    }
    let (user, _created) = upsert_user(&tx, &email).await?;
    if !add_member(&tx, org, user.id, role).await? {
        return Err(IdentityError::AlreadyMember);
    }
    let (session, expires_at) = create_session(&tx, user.id, session_ttl, None).await?;
    let e = event(AuditAction::InviteAccept, user.id, Some(org), ctx)
        .on(format!("invite:{invite}"))
        .with(json!({"outcome": "ok", "role": role.as_str()}));
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

/// Whether `org` has a connection that enforces single sign-on for `email`'s domain (one it
/// lists and the organization verified).
async fn sso_enforced_for(client: &impl GenericClient, org: OrgId, email: &Email) -> Result<bool> {
    let row = client
        .query_opt(
            &client
                .prepare_cached(
                    "SELECT 1 FROM sso_connections c
                     JOIN org_domains d ON d.org_id = c.org_id AND d.verified_at IS NOT NULL
                     WHERE c.org_id = $1 AND c.enforced AND d.domain = $2 AND d.domain = ANY(c.domains)",
                )
                .await?,
            &[&org.as_uuid(), &email.domain()],
        )
        .await?;
    Ok(row.is_some())
}

/// A pending invite as a single sign-on started from it sees it: unused, unrevoked, unexpired.
#[derive(Debug, Clone)]
pub struct PendingInvite {
    /// The invite.
    pub id: InviteId,
    /// The organization it joins.
    pub org: OrgId,
    /// The only address that may accept it.
    pub email: Email,
}

/// Looks up a pending invite by its token without using it (a single sign-on starts from it
/// and uses it when it completes, through [`use_invite`]).
pub async fn find_invite(
    client: &impl GenericClient,
    token: &OneTimeToken,
) -> Result<Option<PendingInvite>> {
    let row = client
        .query_opt(
            &client
                .prepare_cached(
                    "SELECT id, org_id, email FROM invites
                     WHERE token_hash = $1 AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > now()",
                )
                .await?,
            &[&token.hash().as_bytes()],
        )
        .await?;
    row.map(|r| {
        Ok(PendingInvite {
            id: InviteId::from_uuid(r.get(0)),
            org: OrgId::from_uuid(r.get(1)),
            email: Email::parse(r.get::<_, &str>(2))?,
        })
    })
    .transpose()
}

/// Uses a pending invite to `org` inside the caller's transaction for `user`, signed in as
/// `email` some other way than the invite's link (single sign-on): the invite must still be
/// pending and be for that address. Returns the role it grants and records `invite.accept`;
/// the caller adds the membership. [`IdentityError::InvalidToken`] when it is used, revoked,
/// expired or for another address.
pub async fn use_invite(
    tx: &Transaction<'_>,
    invite: InviteId,
    org: OrgId,
    email: &Email,
    user: UserId,
    ctx: &AuditContext,
) -> Result<Role> {
    let row = tx
        .query_opt(
            &tx.prepare_cached(
                "UPDATE invites SET accepted_at = now()
                 WHERE id = $1 AND org_id = $2 AND email = $3
                   AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > now()
                 RETURNING role",
            )
            .await?,
            &[&invite.as_uuid(), &org.as_uuid(), &email.as_str()],
        )
        .await?
        .ok_or(IdentityError::InvalidToken)?;
    let role = row_role(&row, 0);
    let e = event(AuditAction::InviteAccept, user, Some(org), ctx)
        .on(format!("invite:{invite}"))
        .with(json!({"outcome": "ok", "role": role.as_str(), "via": "sso"}));
    record(tx, &e).await?;
    Ok(role)
}
