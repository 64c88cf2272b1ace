//! Organizations, members, invites and API keys.

use super::*;

pub(super) async fn orgs(ctx: &mut Context<'_>, c: Orgs) -> Result<Output, Exit> {
    let api = ctx.authed()?;
    match c {
        Orgs::List => Ok(listed(
            api.all_pages_as::<MembershipView>("/orgs").await?,
            &["SLUG", "NAME", "ROLE", "PERSONAL", "ID"],
            |m| {
                vec![
                    m.org.slug.clone(),
                    m.org.name.clone(),
                    role(m.role).to_owned(),
                    m.org.personal.to_string(),
                    m.org.id.to_string(),
                ]
            },
        )),
        Orgs::Create { slug, name } => {
            let org: OrgView = typed(
                api.call(
                    Method::POST,
                    "/orgs",
                    Body::of(&CreateOrg {
                        slug: slug.clone(),
                        name: name.clone(),
                    }),
                )
                .await?,
            )?;
            let human = format!(
                "created organization {} ({}); you are its owner",
                org.slug, org.id
            );
            Ok(Output::of(&org, human))
        }
    }
}

/// `DELETE PATH/ID`.
pub(super) async fn delete(api: &Api, path: &str, id: &str) -> Result<(), Exit> {
    api.call(
        Method::DELETE,
        &format!("{path}/{}", encode(id)),
        Body::None,
    )
    .await
    .map(|_| ())
}

/// A member's user id from an email (looked up among the members) or an id.
pub(super) async fn user_id(api: &Api, members_path: &str, user: &str) -> Result<String, Exit> {
    if !user.contains('@') {
        return Ok(user.to_owned());
    }
    api.all_pages_as::<MemberView>(members_path)
        .await?
        .iter()
        .find(|m| m.email.eq_ignore_ascii_case(user))
        .map(|m| m.user_id.to_string())
        .ok_or_else(|| {
            Exit::usage(format!(
                "{user} is not a member; `defendable members list` shows who is"
            ))
        })
}

pub(super) async fn members(ctx: &mut Context<'_>, c: Members) -> Result<Output, Exit> {
    let api = ctx.authed()?;
    let path = ctx.org_path("/members")?;
    match c {
        Members::List => Ok(listed(
            api.all_pages_as::<MemberView>(&path).await?,
            &["EMAIL", "ROLE", "JOINED", "USER ID"],
            |m| {
                vec![
                    m.email.clone(),
                    role(m.role).to_owned(),
                    when(&m.joined_at),
                    m.user_id.to_string(),
                ]
            },
        )),
        Members::SetRole { user, role } => {
            let id = user_id(&api, &path, &user).await?;
            let res: MemberView = typed(
                api.call(
                    Method::PATCH,
                    &format!("{path}/{}", encode(&id)),
                    Body::of(&SetRole { role: role.view() }),
                )
                .await?,
            )?;
            Ok(Output::new(
                json!({"ok": true, "user_id": id, "role": role.as_str(), "member": res}),
                format!("{user} is now {}", role.as_str()),
            ))
        }
        Members::Remove { user } => {
            let id = user_id(&api, &path, &user).await?;
            delete(&api, &path, &id).await?;
            Ok(Output::new(
                json!({"ok": true, "user_id": id}),
                format!("removed {user}"),
            ))
        }
    }
}

pub(super) async fn invites(ctx: &mut Context<'_>, c: Invites) -> Result<Output, Exit> {
    let api = ctx.authed()?;
    let path = ctx.org_path("/invites")?;
    match c {
        Invites::Create { email, role } => {
            let invite: InviteView = typed(
                api.call(
                    Method::POST,
                    &path,
                    Body::of(&CreateInvite {
                        email: email.clone(),
                        role: role.view(),
                    }),
                )
                .await?,
            )?;
            let human = format!(
                "invited {email} as {} (invite {}, expires {}); the link was mailed to them",
                role.as_str(),
                invite.id,
                when(&invite.expires_at)
            );
            Ok(Output::of(&invite, human))
        }
        Invites::List => Ok(listed(
            api.all_pages_as::<InviteView>(&path).await?,
            &["EMAIL", "ROLE", "EXPIRES", "ID"],
            |i| {
                vec![
                    i.email.clone(),
                    role(i.role).to_owned(),
                    when(&i.expires_at),
                    i.id.to_string(),
                ]
            },
        )),
        Invites::Revoke { id } => {
            delete(&api, &path, &id).await?;
            Ok(Output::new(
                json!({"ok": true, "id": id}),
                format!("revoked invite {id}"),
            ))
        }
    }
}

pub(super) async fn keys(ctx: &mut Context<'_>, c: Keys) -> Result<Output, Exit> {
    let api = ctx.authed()?;
    let path = ctx.org_path("/api-keys")?;
    match c {
        Keys::Create { name, expires_at } => {
            let created: CreatedApiKeyView = typed(
                api.call(
                    Method::POST,
                    &path,
                    Body::of(&CreateApiKey {
                        name: name.clone(),
                        expires_at: expires_at.as_deref().map(parse_expiry).transpose()?,
                    }),
                )
                .await?,
            )?;
            let human = format!(
                "created API key {name} ({}). Its secret is shown only now; store it as DEFENDABLE_TOKEN where it is used:\n{}",
                created.key.id, created.secret
            );
            Ok(Output::of(&created, human))
        }
        Keys::List => Ok(listed(
            api.all_pages_as::<ApiKeyView>(&path).await?,
            &["NAME", "KEY", "CREATED", "LAST USED", "REVOKED", "ID"],
            |k| {
                vec![
                    k.name.clone(),
                    format!("{}…{}", k.prefix, k.last4),
                    when(&k.created_at),
                    when_opt(&k.last_used_at),
                    when_opt(&k.revoked_at),
                    k.id.to_string(),
                ]
            },
        )),
        Keys::Revoke { id } => {
            delete(&api, &path, &id).await?;
            Ok(Output::new(
                json!({"ok": true, "id": id}),
                format!("revoked API key {id}; every server refuses it now"),
            ))
        }
    }
}
