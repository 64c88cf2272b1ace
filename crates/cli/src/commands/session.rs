//! Signing in and out: mailed links, the saved session, `whoami`.

use super::*;

pub(super) async fn login(ctx: &mut Context<'_>, email: &str) -> Result<Output, Exit> {
    let anonymous = Api::new(&ctx.api, None)?;
    anonymous
        .call(
            Method::POST,
            "/auth/request",
            Body::of(&AuthRequest {
                email: email.to_owned(),
            }),
        )
        .await?;
    eprintln!(
        "A sign-in link was mailed to {email}. Paste the link (or its token) and press Enter:"
    );
    let mut line = String::new();
    ctx.input
        .read_line(&mut line)
        .map_err(|e| Exit::usage(format!("reading the link: {e}")))?;
    let token = token_from_pasted(&line)?;
    let session: SessionView = typed(
        anonymous
            .call(
                Method::POST,
                "/auth/verify",
                Body::of(&VerifyBody {
                    token,
                    code_verifier: None,
                }),
            )
            .await?,
    )?;
    save_session(ctx, session).await
}

/// Saves a new session for this server with a default organization (the one given, else the
/// personal one, else the first).
pub(super) async fn save_session(
    ctx: &mut Context<'_>,
    session: SessionView,
) -> Result<Output, Exit> {
    let access = session.access_token;
    let api = Api::new(
        &ctx.api,
        Some(Token::new(access.clone(), TokenSource::File)),
    )?;
    let me: MeView = api.get_as("/me").await?;
    let email = me.user.email.clone();
    let org = ctx.org.clone().or_else(|| {
        me.memberships
            .iter()
            .find(|m| m.org.personal)
            .or(me.memberships.first())
            .map(|m| m.org.slug.clone())
    });
    let path = credentials::path()?;
    let mut saved = Credentials::load(&path)?;
    saved.servers.insert(
        ctx.api.clone(),
        Saved {
            token: access,
            email: email.clone(),
            org: org.clone(),
        },
    );
    saved.store(&path)?;
    let default = org
        .as_deref()
        .map(|o| format!("; default organization {o}"))
        .unwrap_or_default();
    Ok(Output::new(
        json!({"ok": true, "email": email, "user_id": me.user.id, "org": org,
               "credentials": path.display().to_string()}),
        format!(
            "signed in to {} as {email}{default} (session saved in {})",
            ctx.api,
            path.display()
        ),
    ))
}

pub(super) async fn logout(ctx: &mut Context<'_>) -> Result<Output, Exit> {
    let api = ctx.authed()?;
    let token = api.require_token()?;
    if token.is_api_key() {
        return Err(Exit::usage(
            "DEFENDABLE_TOKEN holds an API key, which has no session; revoke it with `defendable keys revoke`",
        ));
    }
    let ended = match api.call(Method::POST, "/auth/logout", Body::None).await {
        Ok(_) => true,
        // Already expired or ended elsewhere: forgetting it here is all that is left.
        Err(e) if e.code == crate::EXIT_AUTH => false,
        Err(e) => return Err(e),
    };
    let mut forgot = false;
    if token.source == TokenSource::File {
        let path = credentials::path()?;
        let mut saved = Credentials::load(&path)?;
        forgot = saved.servers.remove(&ctx.api).is_some();
        saved.store(&path)?;
    }
    let human = match (ended, forgot) {
        (true, true) => "signed out; the session is ended on the server and forgotten here",
        (true, false) => "signed out; the session in DEFENDABLE_TOKEN is ended on the server",
        (false, _) => "the session had already ended; it is forgotten here",
    };
    Ok(Output::new(
        json!({"ok": true, "ended": ended, "forgotten": forgot}),
        human,
    ))
}

pub(super) async fn whoami(ctx: &mut Context<'_>) -> Result<Output, Exit> {
    let api = ctx.authed()?;
    let token = api.require_token()?;
    let source = match token.source {
        TokenSource::Env => "DEFENDABLE_TOKEN",
        TokenSource::File => "the saved session",
    };
    if token.is_api_key() {
        // A key has no user; any route keys may use tells whether it is still valid.
        api.get("/datasets/catalog?limit=1").await?;
        let prefix: String = token.expose().chars().take(8).collect();
        return Ok(Output::new(
            json!({"ok": true, "principal": "api_key", "prefix": prefix, "source": source}),
            format!("an API key ({prefix}…) from {source}; it acts for the organization that created it"),
        ));
    }
    let me: MeView = api.get_as("/me").await?;
    let rows: Vec<Vec<String>> = me
        .memberships
        .iter()
        .map(|m| vec![m.org.slug.clone(), role(m.role).to_owned()])
        .collect();
    Ok(Output::new(
        json!({"ok": true, "principal": "user", "user": me.user, "memberships": me.memberships, "source": source}),
        format!(
            "{} (user {}), from {source}\n{}",
            me.user.email,
            me.user.id,
            table(&["ORG", "ROLE"], &rows)
        ),
    ))
}
