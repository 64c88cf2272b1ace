//! `cargo xtask rotation-receipt`: the last step of a secret rotation
//! (docs/protocols/secret-rotation.md). It runs with the environment after the old secret was
//! removed, and records a `secret.rotation` receipt carrying the new secret's fingerprint (never
//! the value) and how often the old secret was still used when it was revoked.

use defendable_config::{fingerprint, vars};
use secrecy::ExposeSecret;
use serde_json::json;

use crate::record::{record_operation, Operation};
use crate::{now_rfc3339, Deployment, OpsError, Result};

/// Where the old secret's use count comes from.
#[derive(Debug, Clone)]
pub enum OldUses {
    /// Counted by the operator.
    Given(u64),
    /// Summed from each server process's `/metrics` (`defendable_previous_secret_uses_total`).
    Metrics(Vec<String>),
}

/// A recorded rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    /// The receipt.
    pub receipt_id: String,
    /// The secret rotated.
    pub secret: String,
    /// The new secret's fingerprint.
    pub fingerprint: String,
    /// Uses of the old secret at revocation.
    pub old_uses: u64,
}

/// The counter family (OpenMetrics names the family without `_total`, its samples with it).
const OLD_USES_FAMILY: &str = "defendable_previous_secret_uses";
const OLD_USES: &str = "defendable_previous_secret_uses_total";

/// Uses of `SECRET_PREVIOUS` in a Prometheus text exposition: its counter line, 0 when the
/// family is exposed without it (a process that never accepted the old secret), None when the
/// text is not this service's metrics.
pub fn previous_uses(metrics: &str, secret: &str) -> Option<u64> {
    let prefix = format!("{OLD_USES}{{secret=\"{secret}_PREVIOUS\"}} ");
    if let Some(v) = metrics.lines().find_map(|l| l.strip_prefix(&prefix)) {
        return v.trim().parse::<f64>().ok().map(|v| v as u64);
    }
    metrics
        .lines()
        .any(|l| {
            l.starts_with(&format!("# TYPE {OLD_USES_FAMILY} "))
                || l.starts_with(&format!("# TYPE {OLD_USES} "))
        })
        .then_some(0)
}

async fn count_from_metrics(dep: &Deployment, urls: &[String], secret: &str) -> Result<u64> {
    let key = dep
        .config
        .internal_api_key
        .current
        .as_ref()
        .ok_or_else(|| OpsError::Setup("INTERNAL_API_KEY is needed to read /metrics".into()))?;
    defendable_store::install_crypto_provider();
    let http = reqwest::Client::new();
    let mut total = 0;
    for url in urls {
        let res = http
            .get(url)
            .header("x-internal-key", key.expose_secret())
            .send()
            .await
            .map_err(|e| OpsError::Http(format!("{url}: {e}")))?;
        if !res.status().is_success() {
            return Err(OpsError::Http(format!("{url} answered {}", res.status())));
        }
        let text = res
            .text()
            .await
            .map_err(|e| OpsError::Http(format!("{url}: {e}")))?;
        total += previous_uses(&text, secret).ok_or_else(|| {
            OpsError::Http(format!(
                "{url} is not a Defendable /metrics exposition ({OLD_USES} missing)"
            ))
        })?;
    }
    Ok(total)
}

/// Records the rotation of `secret` (a critical secret's name).
pub async fn rotation_receipt(dep: &Deployment, secret: &str, old: &OldUses) -> Result<Rotation> {
    let var = vars::find(secret)
        .filter(|v| v.critical && !v.name.ends_with("_PREVIOUS"))
        .ok_or_else(|| {
            let names: Vec<&str> = vars::VARS
                .iter()
                .filter(|v| v.critical && !v.name.ends_with("_PREVIOUS"))
                .map(|v| v.name)
                .collect();
            OpsError::Setup(format!(
                "{secret} is not a critical secret; one of: {}",
                names.join(", ")
            ))
        })?;
    let secrets = dep.config.critical_secrets();
    let value = secrets
        .iter()
        .find(|(n, _)| *n == var.name)
        .map(|(_, v)| *v)
        .ok_or_else(|| OpsError::Setup(format!("{} is not set in this environment", var.name)))?;
    let previous = format!("{}_PREVIOUS", var.name);
    if secrets.iter().any(|(n, _)| *n == previous) {
        return Err(OpsError::Setup(format!(
            "{previous} is still set: the old secret is not revoked yet. Remove it, redeploy, check its use count (step 4), then record the rotation"
        )));
    }
    let (operator, _) = dep.operator_org().await?;
    let old_uses = match old {
        OldUses::Given(n) => *n,
        OldUses::Metrics(urls) => count_from_metrics(dep, urls, var.name).await?,
    };
    let print = fingerprint(value);
    let mut public = json!({
        "secret": var.name,
        "new_fingerprint": print,
        "old_secret_uses_at_revocation": old_uses,
        "rotated_at": now_rfc3339(),
        "protocol": "docs/protocols/secret-rotation.md",
    });
    if var.name == "LEDGER_SIGNING_KEY" {
        public["new_key_id"] = json!(dep.signing_key()?.public_key().kid);
    }
    let receipt_id = record_operation(
        dep,
        operator,
        Operation {
            kind: "secret.rotation",
            action: defendable_store::audit::AuditAction::OpsSecretRotation,
            public,
            private: Some(json!({
                "operator": std::env::var("USER").unwrap_or_default(),
                "host": crate::drill::hostname(),
            })),
        },
    )
    .await?;
    Ok(Rotation {
        receipt_id,
        secret: var.name.to_owned(),
        fingerprint: print,
        old_uses,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_old_secret_count_is_read_from_the_exposition() {
        let text = "# TYPE defendable_previous_secret_uses_total counter\n\
                    defendable_previous_secret_uses_total{secret=\"JWT_SECRET_PREVIOUS\"} 7\n\
                    defendable_previous_secret_uses_total{secret=\"RUNNER_TOKEN_PREVIOUS\"} 0\n";
        assert_eq!(previous_uses(text, "JWT_SECRET"), Some(7));
        assert_eq!(previous_uses(text, "RUNNER_TOKEN"), Some(0));
        assert_eq!(previous_uses(text, "INTERNAL_API_KEY"), Some(0));
        assert_eq!(previous_uses("<html>login</html>", "JWT_SECRET"), None);
    }

    #[test]
    fn the_old_secret_count_is_read_from_openmetrics() {
        // What the API writes since /metrics moved to prometheus-client.
        let text =
            "# HELP defendable_previous_secret_uses Requests accepted with a _PREVIOUS secret.\n\
                    # TYPE defendable_previous_secret_uses counter\n\
                    defendable_previous_secret_uses_total{secret=\"JWT_SECRET_PREVIOUS\"} 3\n\
                    # EOF\n";
        assert_eq!(previous_uses(text, "JWT_SECRET"), Some(3));
        assert_eq!(previous_uses(text, "STRIPE_WEBHOOK_SECRET"), Some(0));
    }
}
