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
