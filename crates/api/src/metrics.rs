//! Process counters. They are exposed in Prometheus text format once `/metrics` lands; today
//! each increment is also logged so operators can watch a rotation.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters kept by this process.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Session tokens verified with JWT_SECRET_PREVIOUS.
    pub jwt_previous_secret_uses: AtomicU64,
    /// Chains found broken by any verification.
    pub receipt_hash_mismatches: AtomicU64,
    /// Uses of a `_PREVIOUS` secret other than JWT's, by variable.
    pub previous_secret_uses: std::sync::Mutex<std::collections::BTreeMap<&'static str, u64>>,
    /// Dataset grants and quota refusals, by organization.
    pub dataset_grants: std::sync::Mutex<std::collections::HashMap<uuid::Uuid, (u64, u64)>>,
    /// Object storage failures on downloads.
    pub storage_failures: AtomicU64,
}

impl Metrics {
    /// Counts one use of the previous JWT secret.
    pub fn jwt_previous_secret_used(&self) {
        let n = self
            .jwt_previous_secret_uses
            .fetch_add(1, Ordering::Relaxed)
            + 1;
        tracing::info!(
            secret = "JWT_SECRET_PREVIOUS",
            uses = n,
            "a token signed with the previous secret was accepted"
        );
    }
}

impl Metrics {
    /// Counts and reports a chain that failed verification: an alert condition.
    pub fn receipt_hash_mismatch(
        &self,
        org: uuid::Uuid,
        failure: &defendable_ledger::VerifyFailure,
    ) {
        self.receipt_hash_mismatches.fetch_add(1, Ordering::Relaxed);
        tracing::error!(org_id = %org, seq = failure.seq, reason = %failure.reason, "receipt chain verification failed");
    }
}

impl Metrics {
    /// Counts one use of a `_PREVIOUS` secret during a rotation.
    pub fn previous_secret_used(&self, var: &'static str) {
        let mut map = self
            .previous_secret_uses
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let n = map.entry(var).or_insert(0);
        *n += 1;
        tracing::info!(
            secret = var,
            uses = *n,
            "a request used the previous secret"
        );
    }

    /// Counts a dataset grant (`granted`) or a quota refusal for `org`.
    pub fn dataset_grant(&self, org: uuid::Uuid, granted: bool) {
        let mut map = self
            .dataset_grants
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let entry = map.entry(org).or_insert((0, 0));
        if granted {
            entry.0 += 1;
        } else {
            entry.1 += 1;
            tracing::warn!(org_id = %org, refusals = entry.1, "dataset download quota refused a grant");
        }
    }

    /// Counts an object storage failure on a download.
    pub fn storage_failure(&self) {
        self.storage_failures.fetch_add(1, Ordering::Relaxed);
    }
}
