//! Users: created by their first sign-in, read by id or with their organizations.

use super::*;

/// A user from `id, email, created_at` starting at column `offset`.
fn row_user(row: &tokio_postgres::Row, offset: usize) -> User {
    User {
        id: UserId::from_uuid(row.get(offset)),
        email: row.get(offset + 1),
        created_at: row.get(offset + 2),
    }
}

/// A user by id.
pub async fn user(client: &impl GenericClient, id: UserId) -> Result<User> {
    let row = client
        .query_opt(
            &client
                .prepare_cached("SELECT id, email, created_at FROM users WHERE id = $1")
                .await?,
            &[&id.as_uuid()],
        )
        .await?
        .ok_or(IdentityError::InvalidCredentials)?;
    Ok(row_user(&row, 0))
}

/// Finds or creates the user with `email` inside the caller's transaction (also used by SSO's
/// just-in-time provisioning); true when it was created.
pub async fn upsert_user(tx: &Transaction<'_>, email: &Email) -> Result<(User, bool)> {
    let row = tx
        .query_one(
            &tx.prepare_cached(
                "INSERT INTO users (id, email, last_login_at) VALUES ($1, $2, now())
             ON CONFLICT (email) DO UPDATE SET last_login_at = now()
             RETURNING id, email, created_at, (xmax = 0) AS created",
            )
            .await?,
            &[&Uuid::now_v7(), &email.as_str()],
        )
        .await?;
    Ok((row_user(&row, 0), row.get(3)))
}

/// A user and a page of their memberships, in one statement (`GET /me`).
pub async fn user_with_orgs(
    client: &impl GenericClient,
    id: UserId,
    page: PageRequest,
) -> Result<(User, Page<Membership>)> {
    let statement = client
        .prepare_cached(
            // The page walks `memberships_user_idx` in order under a lateral LIMIT: a plan of
            // index scans only, no sort or hash join to set up at every execution.
            "SELECT u.id, u.email, u.created_at, x.id, x.slug, x.name, x.personal, x.created_at, x.role
             FROM users u
             LEFT JOIN LATERAL (
                 SELECT o.id, o.slug, o.name, o.personal, o.created_at, m.role
                 FROM memberships m JOIN orgs o ON o.id = m.org_id
                 WHERE m.user_id = u.id AND m.org_id > $2
                 ORDER BY m.org_id LIMIT $3) x ON true
             WHERE u.id = $1",
        )
        .await?;
    let rows = client
        .query(&statement, &[&id.as_uuid(), &page.after(), &page.fetch()])
        .await?;
    let first = rows.first().ok_or(IdentityError::InvalidCredentials)?;
    let user = row_user(first, 0);
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
