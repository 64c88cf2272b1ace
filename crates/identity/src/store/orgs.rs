//! Organizations: creation, lookup by id or slug, and the one-statement authorization lookup.

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
    let e = event(AuditAction::OrgCreate, owner, Some(org.id), ctx).on(org.slug.clone());
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

/// What the authorization lookup finds: the organization, the user's role and break-glass flag
/// in it, and the SSO connections that enforce sign-in there.
#[derive(Debug, Clone)]
pub struct Access {
    /// The organization.
    pub org: Org,
    /// The user's role (`None`: not a member, or no user given).
    pub role: Option<Role>,
    /// Whether the user is a break-glass owner (keeps access without SSO where it is enforced).
    pub break_glass: bool,
    /// The connections whose sessions alone the organization admits (empty: any session).
    pub sso_enforced: Vec<Uuid>,
}

/// An organization by slug or id, with `user`'s role in it (`None` when not a member, or when
/// no user is given), in one statement: the authorization lookup of every org-scoped request.
/// The organization's SSO enforcement travels in the same round trip; `sso_connections` is
/// defendable-sso's table, read here only for this.
pub async fn org_with_role(
    client: &impl GenericClient,
    org: &OrgRef,
    user: Option<UserId>,
) -> Result<Option<Access>> {
    const SELECT: &str = "SELECT o.id, o.slug, o.name, o.personal, o.created_at, m.role,
                                 coalesce(m.break_glass, false),
                                 ARRAY(SELECT c.id FROM sso_connections c WHERE c.org_id = o.id AND c.enforced)
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
        Access {
            org: row_org(&r, 0),
            role,
            break_glass: r.get(6),
            sso_enforced: r.get(7),
        }
    }))
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
