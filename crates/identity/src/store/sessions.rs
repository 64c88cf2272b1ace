//! Magic links, users and sessions.

use super::*;

/// Issues a magic link for `email`, superseding any older unused link. The same work happens
/// whether or not a user with that email exists.
pub async fn request_magic_link(
    client: &mut Client,
    email: &Email,
    ttl: Duration,
    ctx: &AuditContext,
) -> Result<IssuedLink> {
    issue_link(client, email, ttl, None, None, ctx).await
}

/// Issues, in `tx`, the one-time link a completed single sign-on hands to the browser: like a
/// magic link, but the session it starts remembers `connection` (an organization that enforces
/// SSO admits only such sessions), lives at most `session_max`, and, with `handoff` (the SHA-256
/// of a CLI's verifier), is redeemed only with that verifier.
pub async fn issue_sso_link(
    tx: &Transaction<'_>,
    email: &Email,
    ttl: Duration,
    connection: Uuid,
    session_max: Duration,
    handoff: Option<&[u8]>,
    ctx: &AuditContext,
) -> Result<IssuedLink> {
    link_in(
        tx,
        email,
        ttl,
        Some((connection, session_max)),
        handoff,
        ctx,
    )
    .await
}

async fn issue_link(
    client: &mut Client,
    email: &Email,
    ttl: Duration,
    sso: Option<(Uuid, Duration)>,
    handoff: Option<&[u8]>,
    ctx: &AuditContext,
) -> Result<IssuedLink> {
    let tx = client.transaction().await?;
    let link = link_in(&tx, email, ttl, sso, handoff, ctx).await?;
    tx.commit().await?;
    Ok(link)
}

/// Supersedes `email`'s unused links and stores a new one with its audit event, in `tx`.
async fn link_in(
    tx: &Transaction<'_>,
    email: &Email,
    ttl: Duration,
    sso: Option<(Uuid, Duration)>,
    handoff: Option<&[u8]>,
    ctx: &AuditContext,
) -> Result<IssuedLink> {
    let connection = sso.map(|(c, _)| c);
    let session_max = sso.map(|(_, max)| max.as_secs_f64());
    let token = OneTimeToken::generate();
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
                "INSERT INTO magic_links (id, email, token_hash, expires_at, sso_connection_id, session_max_secs, handoff_challenge)
             VALUES ($1, $2, $3, now() + make_interval(secs => $4), $5, $6, $7) RETURNING expires_at",
            )
            .await?,
            &[
                &Uuid::now_v7(),
                &email.as_str(),
                &token.hash().as_bytes(),
                &(ttl.as_secs_f64()),
                &connection,
                &session_max,
                &handoff,
            ],
        )
        .await?
        .get(0);
    let e = event(AuditAction::AuthRequest, Actor::Anonymous, None, ctx)
        .on(email.to_string())
        .with(match connection {
            Some(c) => json!({"via": "sso", "connection": c}),
            None => json!({}),
        });
    record(tx, &e).await?;
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
    redeem_link(client, token, None, session_ttl, ctx).await
}

/// [`verify_magic_link`] for a link that may have been handed to the CLI that started a
/// single sign-on: such a link is redeemed only with the verifier whose SHA-256 the CLI sent
/// when it started (RFC 7636 S256); without it, or with another, it is refused as unknown.
pub async fn redeem_link(
    client: &mut Client,
    token: &OneTimeToken,
    verifier: Option<&str>,
    session_ttl: Duration,
    ctx: &AuditContext,
) -> Result<NewSession> {
    let challenge = verifier.map(|v| {
        ring::digest::digest(&ring::digest::SHA256, v.as_bytes())
            .as_ref()
            .to_vec()
    });
    let tx = client.transaction().await?;
    let consumed = tx
        .query_opt(
            &tx.prepare_cached(
                "UPDATE magic_links SET consumed_at = now()
             WHERE token_hash = $1 AND consumed_at IS NULL AND superseded_at IS NULL
               AND expires_at > now()
               AND handoff_challenge IS NOT DISTINCT FROM $2
             RETURNING email, sso_connection_id, session_max_secs",
            )
            .await?,
            &[&token.hash().as_bytes(), &challenge],
        )
        .await?;
    let Some(row) = consumed else {
        drop(tx);
        record_invalid_token(&*client, AuditAction::AuthVerify, ctx).await?;
        return Err(IdentityError::InvalidToken);
    };
    let email = Email::parse(row.get::<_, &str>(0))?;
    let (user, created) = upsert_user(&tx, &email).await?;
    if created {
        create_personal_org(&tx, &user, &email, ctx).await?;
    }
    let sso: Option<Uuid> = row.get(1);
    let session_ttl = match row.get::<_, Option<f64>>(2) {
        Some(max) => session_ttl.min(Duration::from_secs_f64(max)),
        None => session_ttl,
    };
    let (session, expires_at) = create_session(&tx, user.id, session_ttl, sso).await?;
    let e = event(AuditAction::AuthVerify, user.id, None, ctx)
        .on(format!("session:{session}"))
        .with(json!({"outcome": "ok", "new_user": created}));
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
    action: AuditAction,
    ctx: &AuditContext,
) -> Result<()> {
    let e = event(action, Actor::Anonymous, None, ctx).with(json!({"outcome": "invalid_token"}));
    record(client, &e).await?;
    Ok(())
}

/// Records that a mail (a sign-in link or an invite, `purpose` names which) could not be
/// delivered to `to`; the link itself was stored before.
pub async fn record_mail_failure(
    client: &impl GenericClient,
    to: &Email,
    purpose: &str,
    ctx: &AuditContext,
) -> Result<()> {
    let e = event(AuditAction::MailFailure, Actor::System, None, ctx)
        .on(to.to_string())
        .with(json!({ "purpose": purpose }));
    record(client, &e).await?;
    Ok(())
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
            let e = event(AuditAction::OrgCreate, user.id, Some(org.id), ctx)
                .on(org.slug.clone())
                .with(json!({"personal": true}));
            record(tx, &e).await?;
            return Ok(org);
        }
    }
    Err(IdentityError::SlugTaken)
}

pub(super) async fn create_session(
    tx: &Transaction<'_>,
    user: UserId,
    ttl: Duration,
    sso: Option<Uuid>,
) -> Result<(SessionId, OffsetDateTime)> {
    let id = SessionId::generate();
    let expires_at = OffsetDateTime::now_utc() + pg_duration(ttl);
    tx.execute(
        &tx.prepare_cached(
            "INSERT INTO sessions (id, user_id, expires_at, sso_connection_id) VALUES ($1, $2, $3, $4)",
        )
        .await?,
        &[&id.as_uuid(), &user.as_uuid(), &expires_at, &sso],
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
    /// The SSO connection it came through (`None`: a magic link or an invite).
    pub sso_connection: Option<Uuid>,
}

/// Looks a session up.
pub async fn session(client: &impl GenericClient, id: SessionId) -> Result<Option<SessionRow>> {
    let row = client
        .query_opt(
            &client.prepare_cached("SELECT user_id, expires_at, revoked_at IS NOT NULL, sso_connection_id FROM sessions WHERE id = $1").await?,
            &[&id.as_uuid()],
        )
        .await?;
    Ok(row.map(|r| SessionRow {
        user: UserId::from_uuid(r.get(0)),
        expires_at: r.get(1),
        revoked: r.get(2),
        sso_connection: r.get(3),
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
    let e = event(AuditAction::SessionRevoke, user, None, ctx).on(format!("session:{id}"));
    record(&tx, &e).await?;
    tx.commit().await?;
    Ok(())
}
