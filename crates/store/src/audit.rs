//! The append-only audit log: one function records an event inside the caller's transaction,
//! and writes the same event as a structured log line.

use std::fmt;
use std::net::IpAddr;

use deadpool_postgres::GenericClient;
use uuid::Uuid;

use crate::StoreError;

/// Declares the closed set of audit actions: each variant's stored name, and the lookup both
/// ways (the way `api::error::ErrorCode` declares error codes).
macro_rules! audit_actions {
    ($($(#[$doc:meta])* $variant:ident = $name:literal,)*) => {
        /// What an audit event records: a closed set, so a misspelt or new action is a compile
        /// error, not a runtime one. The stored name is dotted lowercase (`auth.verify`); the
        /// audit listing returns stored names as text, so a name an older release wrote still
        /// lists after its variant is gone.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum AuditAction {
            $($(#[$doc])* $variant,)*
        }

        impl AuditAction {
            /// Every action, in declaration order.
            pub const ALL: &'static [AuditAction] = &[$(AuditAction::$variant,)*];

            /// The stored name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(AuditAction::$variant => $name,)*
                }
            }

            /// The action a stored name denotes, if this release knows it.
            pub fn from_name(name: &str) -> Option<AuditAction> {
                match name {
                    $($name => Some(AuditAction::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

audit_actions! {
    /// A sign-in link was requested (mailed or, for single sign-on, handed to the browser).
    AuthRequest = "auth.request",
    /// A sign-in link was redeemed, or an invalid one was presented.
    AuthVerify = "auth.verify",
    /// A session ended (logout).
    SessionRevoke = "session.revoke",
    /// An organization was created.
    OrgCreate = "org.create",
    /// A member's role changed.
    MemberRoleChange = "member.role_change",
    /// A member was removed.
    MemberRemove = "member.remove",
    /// An address was invited.
    InviteCreate = "invite.create",
    /// An invite was accepted, refused or presented invalid.
    InviteAccept = "invite.accept",
    /// An invite was revoked.
    InviteRevoke = "invite.revoke",
    /// An API key was created.
    ApiKeyCreate = "api_key.create",
    /// An API key was revoked.
    ApiKeyRevoke = "api_key.revoke",
    /// A receipt was recorded through the API.
    ReceiptCreate = "receipt.create",
    /// A share link was created.
    ShareCreate = "share.create",
    /// A receipt's share links were revoked.
    ShareRevoke = "share.revoke",
    /// A share link was refused (unknown, revoked, or its grant expired); aggregated.
    ShareAccessError = "share.access_error",
    /// A dataset version was published to the catalog.
    DatasetCatalog = "dataset.catalog",
    /// A dataset download was granted or redirected.
    DatasetDownload = "dataset.download",
    /// An organization's plan changed (billing webhook).
    BillingPlanChange = "billing.plan_change",
    /// Object storage failed while serving a download.
    StorageFailure = "storage.failure",
    /// Unreferenced objects were swept from storage.
    StorageSweep = "storage.sweep",
    /// A mail could not be delivered.
    MailFailure = "mail.failure",
    /// A call to an internal route, or a refused one (aggregated).
    InternalCall = "internal.call",
    /// A webhook's signature did not verify (aggregated).
    WebhookSignatureFailure = "webhook.signature_failure",
    /// A restore drill ran.
    OpsRestoreDrill = "ops.restore_drill",
    /// A release was recorded.
    OpsRelease = "ops.release",
    /// A release drill ran.
    OpsReleaseDrill = "ops.release_drill",
    /// A secret was rotated.
    OpsSecretRotation = "ops.secret_rotation",
    /// A domain was claimed.
    SsoDomainAdd = "sso.domain.add",
    /// A domain was verified.
    SsoDomainVerify = "sso.domain.verify",
    /// A claimed domain was removed.
    SsoDomainRemove = "sso.domain.remove",
    /// The daily re-check unverified a domain whose record stayed missing.
    SsoDomainUnverify = "sso.domain.unverify",
    /// The daily re-check missed a verified domain's record (owners warned).
    SsoDomainRecheckWarning = "sso.domain.recheck_warning",
    /// An identity-provider connection was created.
    SsoConnectionCreate = "sso.connection.create",
    /// An identity-provider connection changed.
    SsoConnectionUpdate = "sso.connection.update",
    /// An identity-provider connection was deleted.
    SsoConnectionDelete = "sso.connection.delete",
    /// An owner became a break-glass owner.
    SsoBreakGlassGrant = "sso.break_glass.grant",
    /// An owner stopped being a break-glass owner.
    SsoBreakGlassRevoke = "sso.break_glass.revoke",
    /// A break-glass session's first use where single sign-on is enforced.
    SsoBreakGlassUse = "sso.break_glass_use",
    /// A mapping would have demoted the last break-glass owner; the role was kept.
    SsoBreakGlassKept = "sso.break_glass_kept",
    /// A connection's SCIM token was issued or replaced.
    SsoScimTokenRotate = "sso.scim_token.rotate",
    /// A connection's SCIM token was revoked.
    SsoScimTokenRevoke = "sso.scim_token.revoke",
    /// A sign-in removed a membership the identity provider no longer grants.
    SsoDeprovision = "sso.deprovision",
    /// The directory removed a membership.
    ScimDeprovision = "scim.deprovision",
    /// The directory created a user.
    ScimUserCreate = "scim.user_create",
    /// The directory replaced a user.
    ScimUserReplace = "scim.user_replace",
    /// The directory patched a user.
    ScimUserPatch = "scim.user_patch",
    /// The directory deleted a user.
    ScimUserDelete = "scim.user_delete",
    /// The directory created a group.
    ScimGroupCreate = "scim.group_create",
    /// The directory replaced a group.
    ScimGroupReplace = "scim.group_replace",
    /// The directory patched a group.
    ScimGroupPatch = "scim.group_patch",
    /// The directory deleted a group.
    ScimGroupDelete = "scim.group_delete",
}

impl fmt::Display for AuditAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who acted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// An unauthenticated caller.
    Anonymous,
    /// A signed-in user.
    User(Uuid),
    /// An organization API key.
    ApiKey(Uuid),
    /// A caller holding the internal API key.
    Internal,
    /// A runner holding RUNNER_TOKEN.
    Runner,
    /// A signed webhook (e.g. Stripe).
    Webhook,
    /// The service itself (jobs, boot, xtask).
    System,
    /// An identity provider provisioning through SCIM with a connection's token (the id is
    /// the connection's).
    Scim(Uuid),
}

impl Actor {
    fn kind(self) -> &'static str {
        match self {
            Actor::Anonymous => "anonymous",
            Actor::User(_) => "user",
            Actor::ApiKey(_) => "api_key",
            Actor::Internal => "internal",
            Actor::Runner => "runner",
            Actor::Webhook => "webhook",
            Actor::System => "system",
            Actor::Scim(_) => "scim",
        }
    }

    fn id(self) -> Option<Uuid> {
        match self {
            Actor::User(id) | Actor::ApiKey(id) | Actor::Scim(id) => Some(id),
            _ => None,
        }
    }
}

/// Where a request came from; filled by the HTTP shell, empty for jobs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditContext {
    /// The request's `X-Request-Id`.
    pub request_id: Option<String>,
    /// The client address (after trusted-proxy resolution).
    pub ip: Option<IpAddr>,
    /// The client's `User-Agent`, truncated.
    pub user_agent: Option<String>,
}

/// One event to record.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    /// What happened.
    pub action: AuditAction,
    /// Who did it.
    pub actor: Actor,
    /// The organization concerned, if any.
    pub org_id: Option<Uuid>,
    /// What it was done to (an id or slug), if anything.
    pub target: Option<String>,
    /// Request origin.
    pub context: AuditContext,
    /// Extra structured facts. Never a secret, token or key.
    pub details: serde_json::Value,
}

impl AuditEvent {
    /// An event with no org, target, context or details.
    pub fn new(action: AuditAction, actor: Actor) -> Self {
        AuditEvent {
            action,
            actor,
            org_id: None,
            target: None,
            context: AuditContext::default(),
            details: serde_json::json!({}),
        }
    }

    /// The same event, naming what it was done to.
    pub fn on(mut self, target: impl Into<String>) -> Self {
        self.target = Some(target.into());
        self
    }

    /// The same event, with its structured facts.
    pub fn with(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }

    /// The same event, in the request's context.
    pub fn within(mut self, context: &AuditContext) -> Self {
        self.context = context.clone();
        self
    }

    /// The same event, in organization `org`.
    pub fn in_org(mut self, org: Uuid) -> Self {
        self.org_id = Some(org);
        self
    }

    /// A refusal of anonymous or machine traffic (an unknown share link, a webhook whose
    /// signature does not verify, a refused internal call), recorded aggregated per source and
    /// minute by [`record_refusal`].
    pub fn refusal(
        action: AuditAction,
        actor: Actor,
        context: &AuditContext,
        details: serde_json::Value,
    ) -> Self {
        AuditEvent::new(action, actor).within(context).with(details)
    }

    /// A call to an internal route (`route`) by `actor`, and its outcome (`allowed` or the
    /// refusal's error code).
    pub fn internal_call(actor: Actor, route: &str, outcome: &str, context: &AuditContext) -> Self {
        AuditEvent::new(AuditAction::InternalCall, actor)
            .within(context)
            .on(route)
            .with(serde_json::json!({ "outcome": outcome }))
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Refuses details that are not a JSON object (the table's CHECK, said before the round trip).
fn check_details(event: &AuditEvent) -> Result<(), StoreError> {
    if event.details.is_object() {
        Ok(())
    } else {
        Err(StoreError::Invalid {
            what: "audit details",
            why: "must be a JSON object".into(),
        })
    }
}

/// The log line of a recorded event (`audit_id` when it is known).
fn log_recorded(event: &AuditEvent, id: Option<i64>) {
    tracing::info!(
        target: "audit",
        audit_id = id,
        action = event.action.as_str(),
        actor_kind = event.actor.kind(),
        actor_id = event.actor.id().map(|u| u.to_string()),
        org_id = event.org_id.map(|u| u.to_string()),
        target = event.target.as_deref().map(|t| truncate(t, 256)),
        request_id = event.context.request_id.as_deref().map(|r| truncate(r, 128)),
        "audit event recorded"
    );
}

/// Records `event` through `client`, which should be the transaction of the change it
/// describes, and logs it. Returns the event's id.
pub async fn record(client: &impl GenericClient, event: &AuditEvent) -> Result<i64, StoreError> {
    check_details(event)?;
    let target = event.target.as_deref().map(|t| truncate(t, 256));
    let request_id = event
        .context
        .request_id
        .as_deref()
        .map(|r| truncate(r, 128));
    let user_agent = event
        .context
        .user_agent
        .as_deref()
        .map(|u| truncate(u, 512));
    let row = client
        .query_one(
            &client
                .prepare_cached(
                    "INSERT INTO audit_events
                 (action, actor_kind, actor_id, org_id, target, request_id, ip, user_agent, details)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             RETURNING id",
                )
                .await?,
            &[
                &event.action.as_str(),
                &event.actor.kind(),
                &event.actor.id(),
                &event.org_id,
                &target,
                &request_id,
                &event.context.ip,
                &user_agent,
                &event.details,
            ],
        )
        .await?;
    let id: i64 = row.get(0);
    log_recorded(event, Some(id));
    Ok(id)
}

/// Audit events as column arrays, for a statement that inserts many at once with `unnest`
/// (in this order: action, actor_kind, actor_id, org_id, target, request_id, ip, user_agent,
/// details), truncated as [`record`] truncates.
#[derive(Debug, Default)]
pub struct AuditColumns {
    /// `action`.
    pub action: Vec<String>,
    /// `actor_kind`.
    pub actor_kind: Vec<&'static str>,
    /// `actor_id`.
    pub actor_id: Vec<Option<Uuid>>,
    /// `org_id`.
    pub org_id: Vec<Option<Uuid>>,
    /// `target`.
    pub target: Vec<Option<String>>,
    /// `request_id`.
    pub request_id: Vec<Option<String>>,
    /// `ip`.
    pub ip: Vec<Option<std::net::IpAddr>>,
    /// `user_agent`.
    pub user_agent: Vec<Option<String>>,
    /// `details`.
    pub details: Vec<serde_json::Value>,
}

impl AuditColumns {
    /// Adds an event; refuses details that are not an object.
    pub fn push(&mut self, event: &AuditEvent) -> Result<(), StoreError> {
        check_details(event)?;
        let owned = |s: Option<&str>, max| s.map(|s| truncate(s, max).to_owned());
        self.action.push(event.action.as_str().to_owned());
        self.actor_kind.push(event.actor.kind());
        self.actor_id.push(event.actor.id());
        self.org_id.push(event.org_id);
        self.target.push(owned(event.target.as_deref(), 256));
        self.request_id
            .push(owned(event.context.request_id.as_deref(), 128));
        self.ip.push(event.context.ip);
        self.user_agent
            .push(owned(event.context.user_agent.as_deref(), 512));
        self.details.push(event.details.clone());
        Ok(())
    }
}

/// Logs events that a batched statement recorded (after its commit).
pub fn log_batch_recorded<'a>(events: impl IntoIterator<Item = &'a AuditEvent>) {
    for event in events {
        log_recorded(event, None);
    }
}

/// Records a refusal of anonymous or machine traffic, aggregated: counts it for `source` (an
/// action and a client, e.g. `share.access_error:203.0.113.7`) in the current minute, and writes
/// `event` only for the source's first refusal of that minute (its details gain
/// `"aggregated": "per source and minute"`). Returns the count so far this minute. Hostile
/// traffic therefore adds at most one audit row per source per minute; the counts stay in
/// `refusal_counts` (pruned with the rate-limit counters).
pub async fn record_refusal(
    client: &impl GenericClient,
    event: &AuditEvent,
    source: &str,
) -> Result<i64, StoreError> {
    let statement = client
        .prepare_cached(
            "INSERT INTO refusal_counts (source, minute, hits) VALUES ($1, date_trunc('minute', now()), 1)
             ON CONFLICT (source, minute) DO UPDATE SET hits = refusal_counts.hits + 1
             RETURNING hits",
        )
        .await?;
    let hits: i64 = client.query_one(&statement, &[&source]).await?.get(0);
    if hits == 1 {
        let mut event = event.clone();
        if let Some(details) = event.details.as_object_mut() {
            details.insert(
                "aggregated".to_owned(),
                serde_json::Value::from("per source and minute"),
            );
        }
        record(client, &event).await?;
    }
    Ok(hits)
}

/// Forgets refusal counts older than `older_than_secs`.
pub async fn prune_refusals(
    client: &impl GenericClient,
    older_than_secs: i64,
) -> Result<u64, StoreError> {
    Ok(client
        .execute(
            &client
                .prepare_cached(
                    "DELETE FROM refusal_counts WHERE minute < now() - make_interval(secs => $1)",
                )
                .await?,
            &[&(older_than_secs as f64)],
        )
        .await?)
}

/// Which events of an organization's audit log to list, newest first.
#[derive(Debug, Clone)]
pub struct AuditFilter {
    /// The organization.
    pub org: Uuid,
    /// Only events with a smaller id (the previous page's cursor).
    pub before: Option<i64>,
    /// Only this action.
    pub action: Option<String>,
    /// Only events at or after this time.
    pub since: Option<time::OffsetDateTime>,
    /// Only events before this time.
    pub until: Option<time::OffsetDateTime>,
    /// At most this many.
    pub limit: i64,
}

/// An audit event as stored.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = AuditEventDto))]
pub struct StoredAuditEvent {
    /// Id (increasing; the API lists newest first).
    pub id: i64,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: time::OffsetDateTime,
    /// What.
    pub action: String,
    /// Who: anonymous, user, api_key, internal, runner, webhook, system.
    pub actor_kind: String,
    /// The user or key, when there is one.
    pub actor_id: Option<Uuid>,
    /// What it was done to.
    pub target: Option<String>,
    /// The request's id.
    pub request_id: Option<String>,
    /// The client address.
    pub ip: Option<String>,
    /// The client's User-Agent.
    pub user_agent: Option<String>,
    /// Extra facts.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub details: serde_json::Value,
}

/// An organization's audit events matching `filter`, newest first.
pub async fn list(
    client: &impl GenericClient,
    filter: &AuditFilter,
) -> Result<Vec<StoredAuditEvent>, StoreError> {
    let statement = client
        .prepare_cached(
            "SELECT id, occurred_at, action, actor_kind, actor_id, target, request_id, host(ip), user_agent, details
             FROM audit_events
             WHERE org_id = $1 AND id < $2 AND ($3::text IS NULL OR action = $3)
               AND ($4::timestamptz IS NULL OR occurred_at >= $4) AND ($5::timestamptz IS NULL OR occurred_at < $5)
             ORDER BY id DESC LIMIT $6",
        )
        .await?;
    let rows = client
        .query(
            &statement,
            &[
                &filter.org,
                &filter.before.unwrap_or(i64::MAX),
                &filter.action,
                &filter.since,
                &filter.until,
                &filter.limit,
            ],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| StoredAuditEvent {
            id: r.get(0),
            occurred_at: r.get(1),
            action: r.get(2),
            actor_kind: r.get(3),
            actor_id: r.get(4),
            target: r.get(5),
            request_id: r.get(6),
            ip: r.get(7),
            user_agent: r.get(8),
            details: r.get(9),
        })
        .collect())
}
