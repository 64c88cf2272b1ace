//! Operations leave receipts: one transaction appends the receipt to the operator
//! organization's chain and records its audit event, so neither exists without the other.

use defendable_ledger::{Draft, ReceiptKind};
use defendable_store::audit::{self, Actor, AuditAction, AuditEvent};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::{Deployment, Result};

/// An operation to record.
#[derive(Debug, Clone)]
pub struct Operation {
    /// Receipt kind (`restore_drill`, `secret.rotation`).
    pub kind: &'static str,
    /// Audit action (`ops.restore_drill`, …).
    pub action: AuditAction,
    /// What anyone holding a share link may see.
    pub public: Value,
    /// What only members see: hosts, paths, operators.
    pub private: Option<Value>,
}

/// Appends the operation's receipt to `org`'s chain with its audit event; returns the receipt id.
pub async fn record_operation(dep: &Deployment, org: Uuid, op: Operation) -> Result<String> {
    let mut client = dep.pool.get().await?;
    let tx = client.transaction().await?;
    let draft = Draft::new(ReceiptKind::parse(op.kind)?, op.public, op.private)?;
    let sealed = defendable_ledger::store::append_in(&tx, org, draft).await?;
    let mut event = AuditEvent::new(op.action, Actor::System);
    event.org_id = Some(org);
    event.target = Some(sealed.id.clone());
    event.details = json!({ "receipt_id": sealed.id, "kind": op.kind, "via": "xtask" });
    audit::record(&tx, &event).await?;
    tx.commit().await?;
    Ok(sealed.id)
}
