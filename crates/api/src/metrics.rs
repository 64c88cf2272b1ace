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
    /// Responses by route pattern and status.
    pub responses: std::sync::Mutex<std::collections::BTreeMap<(String, u16), u64>>,
    /// Requests refused by a rate limit, by rule id.
    pub rate_limit_refusals: std::sync::Mutex<std::collections::BTreeMap<&'static str, u64>>,
    /// Stripe webhook signature failures.
    pub webhook_signature_failures: AtomicU64,
    /// Share links that could not be served (unknown, revoked, expired).
    pub public_projection_errors: AtomicU64,
    /// Refused anonymous and machine requests (aggregated in the audit log), by audit action.
    pub refusals: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
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

impl Metrics {
    /// Counts a response.
    pub fn response(&self, route: &str, status: u16) {
        let mut map = self.responses.lock().unwrap_or_else(|p| p.into_inner());
        *map.entry((route.to_owned(), status)).or_insert(0) += 1;
    }

    /// Counts a refused anonymous or machine request, by its audit action.
    pub fn refused(&self, action: &str) {
        let mut map = self.refusals.lock().unwrap_or_else(|p| p.into_inner());
        *map.entry(action.to_owned()).or_insert(0) += 1;
    }

    /// Counts a rate-limit refusal.
    pub fn rate_limited(&self, rule: &'static str) {
        let mut map = self
            .rate_limit_refusals
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *map.entry(rule).or_insert(0) += 1;
    }

    /// The Prometheus text exposition of every counter.
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, samples: Vec<(String, u64)>| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        counter(
            "defendable_http_responses_total",
            "HTTP responses by route pattern and status.",
            lock(&self.responses)
                .iter()
                .map(|((route, status), n)| {
                    (
                        format!("{{route=\"{}\",status=\"{status}\"}}", esc(route)),
                        *n,
                    )
                })
                .collect(),
        );
        counter(
            "defendable_receipt_hash_mismatches_total",
            "Receipt chains found broken by verification.",
            vec![(
                String::new(),
                self.receipt_hash_mismatches.load(Ordering::Relaxed),
            )],
        );
        counter(
            "defendable_webhook_signature_failures_total",
            "Stripe webhook requests with a bad signature.",
            vec![(
                String::new(),
                self.webhook_signature_failures.load(Ordering::Relaxed),
            )],
        );
        counter(
            "defendable_public_projection_errors_total",
            "Share links that could not be served.",
            vec![(
                String::new(),
                self.public_projection_errors.load(Ordering::Relaxed),
            )],
        );
        counter(
            "defendable_object_storage_errors_total",
            "Object storage failures while serving downloads.",
            vec![(String::new(), self.storage_failures.load(Ordering::Relaxed))],
        );
        let grants = lock(&self.dataset_grants);
        counter(
            "defendable_dataset_grants_total",
            "Dataset download grants, by organization.",
            grants
                .iter()
                .map(|(org, (g, _))| (format!("{{org=\"{org}\"}}"), *g))
                .collect(),
        );
        counter(
            "defendable_dataset_quota_refusals_total",
            "Grants refused by the daily quota, by organization.",
            grants
                .iter()
                .map(|(org, (_, r))| (format!("{{org=\"{org}\"}}"), *r))
                .collect(),
        );
        drop(grants);
        counter(
            "defendable_refusals_total",
            "Refused anonymous and machine requests (unknown share links, bad webhook signatures, refused internal calls), by audit action; the audit log keeps one per source and minute.",
            lock(&self.refusals)
                .iter()
                .map(|(action, n)| (format!("{{action=\"{}\"}}", esc(action)), *n))
                .collect(),
        );
        counter(
            "defendable_rate_limit_refusals_total",
            "Requests refused by a rate limit, by rule.",
            lock(&self.rate_limit_refusals)
                .iter()
                .map(|(rule, n)| (format!("{{rule=\"{rule}\"}}"), *n))
                .collect(),
        );
        let mut old: Vec<(String, u64)> = lock(&self.previous_secret_uses)
            .iter()
            .map(|(var, n)| (format!("{{secret=\"{var}\"}}"), *n))
            .collect();
        old.push((
            "{secret=\"JWT_SECRET_PREVIOUS\"}".to_owned(),
            self.jwt_previous_secret_uses.load(Ordering::Relaxed),
        ));
        counter(
            "defendable_previous_secret_uses_total",
            "Requests accepted with a _PREVIOUS secret during a rotation.",
            old,
        );
        out
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
