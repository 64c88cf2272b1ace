//! Organizations and memberships: the last-owner rule is held under the organization's lock.

use super::*;

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

/// Inserts an organization; `None` when the slug is taken.
pub(super) async fn insert_org(
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

pub(super) async fn add_member(
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
