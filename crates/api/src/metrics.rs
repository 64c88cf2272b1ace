//! This process's metrics, in the OpenMetrics text format at `/metrics` (written with
//! `prometheus-client`, the official Rust client). Everything here lives in memory, so a scrape
//! answers while the database is away. No label is unbounded: routes are patterns, not paths,
//! and nothing is labelled by organization or user.

use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

/// The content type of [`Metrics::render`].
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Seconds: the request-latency buckets (5 ms to 10 s).
const LATENCY_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Request {
    route: String,
    method: &'static str,
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Route {
    route: String,
    method: &'static str,
}

/// The method as a label without allocating: the standard methods by name, anything else as
/// `other` (a bounded label).
fn method_label(method: &str) -> &'static str {
    const KNOWN: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
    ];
    KNOWN.into_iter().find(|m| *m == method).unwrap_or("other")
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Action {
    action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Rule {
    rule: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Secret {
    secret: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Build {
    version: &'static str,
    commit: &'static str,
}

/// The pool figures a scrape reports, read from the pool at scrape time.
#[derive(Debug, Clone, Copy, Default)]
pub struct PoolFigures {
    /// Connections open.
    pub size: usize,
    /// Connections open and idle.
    pub available: usize,
    /// The most the pool opens.
    pub max_size: usize,
    /// Requests waiting for a connection.
    pub waiting: usize,
}

/// Counters, gauges and histograms kept by this process.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<Request, Counter>,
    latency: Family<Route, Histogram, fn() -> Histogram>,
    pool_wait: Histogram,
    pool_size: Gauge,
    pool_in_use: Gauge,
    pool_max: Gauge,
    pool_waiting: Gauge,
    append_batch: Histogram,
    receipt_hash_mismatches: Counter,
    webhook_signature_failures: Counter,
    public_projection_errors: Counter,
    storage_failures: Counter,
    break_glass_uses: Counter,
    break_glass_kept: Counter,
    break_glass_kept_seen: std::sync::atomic::AtomicU64,
    dataset_grants: Counter,
    dataset_quota_refusals: Counter,
    refusals: Family<Action, Counter>,
    rate_limit_refusals: Family<Rule, Counter>,
    previous_secret_uses: Family<Secret, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric (at zero).
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<Request, Counter>::default();
        registry.register(
            "defendable_http_requests",
            "HTTP responses by route pattern, method and status code.",
            requests.clone(),
        );
        let latency: Family<Route, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "defendable_http_request_duration_seconds",
            "Time from a request's arrival to its response headers, by route pattern and method.",
            latency.clone(),
        );
        let pool_wait = Histogram::new(exponential_buckets(0.0005, 4.0, 8));
        registry.register(
            "defendable_db_pool_wait_seconds",
            "Time requests waited for a pooled database connection (refused waits included).",
            pool_wait.clone(),
        );
        let gauge = |registry: &mut Registry, name: &str, help: &str| {
            let g = Gauge::default();
            registry.register(name, help, g.clone());
            g
        };
        let pool_size = gauge(
            &mut registry,
            "defendable_db_pool_connections",
            "Database connections the pool holds open.",
        );
        let pool_in_use = gauge(
            &mut registry,
            "defendable_db_pool_connections_in_use",
            "Database connections lent to requests or background tasks.",
        );
        let pool_max = gauge(
            &mut registry,
            "defendable_db_pool_max_connections",
            "The most connections the pool opens (DATABASE_POOL_SIZE).",
        );
        let pool_waiting = gauge(
            &mut registry,
            "defendable_db_pool_waiting",
            "Requests waiting for a database connection at scrape time.",
        );
        let append_batch = Histogram::new(exponential_buckets(1.0, 2.0, 10));
        registry.register(
            "defendable_ledger_append_batch_size",
            "Receipts committed together by one batch of the receipt appender.",
            append_batch.clone(),
        );
        let counter = |registry: &mut Registry, name: &str, help: &str| {
            let c = Counter::default();
            registry.register(name, help, c.clone());
            c
        };
        let receipt_hash_mismatches = counter(
            &mut registry,
            "defendable_receipt_hash_mismatches",
            "Receipt chains found broken by verification.",
        );
        let webhook_signature_failures = counter(
            &mut registry,
            "defendable_webhook_signature_failures",
            "Stripe webhook requests with a bad signature.",
        );
        let public_projection_errors = counter(
            &mut registry,
            "defendable_public_projection_errors",
            "Share links that could not be served.",
        );
        let storage_failures = counter(
            &mut registry,
            "defendable_object_storage_errors",
            "Object storage failures while serving downloads.",
        );
        let break_glass_uses = counter(
            &mut registry,
            "defendable_sso_break_glass_uses",
            "First uses of a break-glass owner's non-SSO session in an organization that enforces single sign-on (alerted on).",
        );
        let break_glass_kept = counter(
            &mut registry,
            "defendable_sso_break_glass_kept",
            "Identity-provider changes (sign-in mapping, SCIM) not applied because they would have removed the last break-glass owner of an organization that enforces single sign-on.",
        );
        let dataset_grants = counter(
            &mut registry,
            "defendable_dataset_grants",
            "Dataset download grants made.",
        );
        let dataset_quota_refusals = counter(
            &mut registry,
            "defendable_dataset_quota_refusals",
            "Dataset grants refused by a daily quota (the log names the organization).",
        );
        let refusals = Family::<Action, Counter>::default();
        registry.register(
            "defendable_refusals",
            "Refused anonymous and machine requests (unknown share links, bad webhook signatures, refused internal calls and scrapes), by audit action; the audit log keeps one per source and minute.",
            refusals.clone(),
        );
        let rate_limit_refusals = Family::<Rule, Counter>::default();
        registry.register(
            "defendable_rate_limit_refusals",
            "Requests refused by a rate limit, by rule.",
            rate_limit_refusals.clone(),
        );
        let previous_secret_uses = Family::<Secret, Counter>::default();
        // Present from the start, so a rotation can tell "no use yet" from "not reported".
        previous_secret_uses
            .get_or_create(&Secret {
                secret: "JWT_SECRET_PREVIOUS",
            })
            .get();
        registry.register(
            "defendable_previous_secret_uses",
            "Requests accepted with a _PREVIOUS secret during a rotation.",
            previous_secret_uses.clone(),
        );
        registry.register(
            "defendable_build",
            "The running build.",
            Info::new(Build {
                version: env!("CARGO_PKG_VERSION"),
                commit: option_env!("DEFENDABLE_COMMIT").unwrap_or("unknown"),
            }),
        );
        registry.register_collector(Box::new(Process));
        Metrics {
            registry,
            requests,
            latency,
            pool_wait,
            pool_size,
            pool_in_use,
            pool_max,
            pool_waiting,
            append_batch,
            receipt_hash_mismatches,
            webhook_signature_failures,
            public_projection_errors,
            storage_failures,
            break_glass_uses,
            break_glass_kept,
            break_glass_kept_seen: Default::default(),
            dataset_grants,
            dataset_quota_refusals,
            refusals,
            rate_limit_refusals,
            previous_secret_uses,
        }
    }

    /// Counts a response and its latency.
    pub fn response(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        let method = method_label(method);
        let mut key = Route {
            route: route.to_owned(),
            method,
        };
        self.latency
            .get_or_create(&key)
            .observe(elapsed.as_secs_f64());
        self.requests
            .get_or_create(&Request {
                route: std::mem::take(&mut key.route),
                method,
                code: status,
            })
            .inc();
    }

    /// The pool-wait histogram, handed to [`crate::db::Db`], which times every wait.
    pub fn pool_waits(&self) -> Histogram {
        self.pool_wait.clone()
    }

    /// The appender's batch-size histogram, handed to the appender as its observer.
    pub fn append_batch_observer(&self) -> std::sync::Arc<dyn Fn(usize) + Send + Sync> {
        let histogram = self.append_batch.clone();
        std::sync::Arc::new(move |n| histogram.observe(n as f64))
    }

    /// Counts one use of the previous JWT secret.
    pub fn jwt_previous_secret_used(&self) {
        let n = self.previous_secret_used_quietly("JWT_SECRET_PREVIOUS");
        tracing::info!(
            secret = "JWT_SECRET_PREVIOUS",
            uses = n,
            "a token signed with the previous secret was accepted"
        );
    }

    /// Counts one use of a `_PREVIOUS` secret during a rotation.
    pub fn previous_secret_used(&self, var: &'static str) {
        let n = self.previous_secret_used_quietly(var);
        tracing::info!(secret = var, uses = n, "a request used the previous secret");
    }

    fn previous_secret_used_quietly(&self, var: &'static str) -> u64 {
        self.previous_secret_uses
            .get_or_create(&Secret { secret: var })
            .inc()
            + 1
    }

    /// Counts and reports a chain that failed verification: an alert condition.
    pub fn receipt_hash_mismatch(
        &self,
        org: uuid::Uuid,
        failure: &defendable_ledger::VerifyFailure,
    ) {
        self.receipt_hash_mismatches.inc();
        tracing::error!(org_id = %org, seq = failure.seq, reason = %failure.reason, "receipt chain verification failed");
    }

    /// Counts a dataset grant (`granted`) or a quota refusal for `org` (named in the log only).
    pub fn dataset_grant(&self, org: uuid::Uuid, granted: bool) {
        if granted {
            self.dataset_grants.inc();
        } else {
            let n = self.dataset_quota_refusals.inc() + 1;
            tracing::warn!(org_id = %org, refusals = n, "dataset download quota refused a grant");
        }
    }

    /// Counts an object storage failure on a download.
    pub fn storage_failure(&self) {
        self.storage_failures.inc();
    }

    /// Counts a break-glass owner's first use of a non-SSO session in an enforcing organization.
    pub fn break_glass_use(&self) {
        self.break_glass_uses.inc();
    }

    /// Counts a Stripe webhook with a bad signature.
    pub fn webhook_signature_failure(&self) {
        self.webhook_signature_failures.inc();
    }

    /// Counts a share link that could not be served.
    pub fn public_projection_error(&self) {
        self.public_projection_errors.inc();
    }

    /// Counts a refused anonymous or machine request, by its audit action.
    pub fn refused(&self, action: &str) {
        self.refusals
            .get_or_create(&Action {
                action: action.to_owned(),
            })
            .inc();
    }

    /// Counts a rate-limit refusal.
    pub fn rate_limited(&self, rule: &'static str) {
        self.rate_limit_refusals.get_or_create(&Rule { rule }).inc();
    }

    /// The OpenMetrics text exposition of every metric, with the pool read at this moment.
    pub fn render(&self, pool: PoolFigures) -> String {
        let gauge = |g: &Gauge, v: usize| {
            g.set(i64::try_from(v).unwrap_or(i64::MAX));
        };
        gauge(&self.pool_size, pool.size);
        gauge(&self.pool_in_use, pool.size.saturating_sub(pool.available));
        gauge(&self.pool_max, pool.max_size);
        gauge(&self.pool_waiting, pool.waiting);
        // The SSO core counts what it kept; the counter takes what is new since the last scrape.
        let kept = defendable_sso::membership::break_glass_kept_total();
        let seen = self
            .break_glass_kept_seen
            .swap(kept, std::sync::atomic::Ordering::Relaxed);
        self.break_glass_kept.inc_by(kept.saturating_sub(seen));
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "could not encode the metrics");
        }
        out
    }
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// The standard `process_*` metrics, read from `/proc/self` at scrape time (Linux; elsewhere
/// nothing is reported).
#[derive(Debug)]
struct Process;

/// Clock ticks per second of `/proc/self/stat` (USER_HZ, 100 on every Linux target we build).
const TICKS_PER_SECOND: f64 = 100.0;
/// Bytes per page of `/proc/self/stat`'s resident set (4 KiB on the targets we build).
const PAGE_SIZE: i64 = 4096;

impl Collector for Process {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(stat) = ProcStat::read() else {
            return Ok(());
        };
        let cpu = ConstCounter::new(stat.cpu_ticks as f64 / TICKS_PER_SECOND);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds.",
            None,
            cpu.metric_type(),
        )?)?;
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                stat.rss_pages.saturating_mul(PAGE_SIZE),
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                stat.vsize,
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                stat.start_time_seconds(),
            ),
            (
                "process_open_fds",
                "Number of open file descriptors.",
                std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as i64),
            ),
            ("process_threads", "Number of OS threads.", stat.threads),
        ];
        for (name, help, value) in gauges {
            let g = ConstGauge::new(value);
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        Ok(())
    }
}

/// The fields of `/proc/self/stat` the process metrics report.
#[derive(Debug, Default, PartialEq)]
struct ProcStat {
    cpu_ticks: u64,
    threads: i64,
    start_ticks: u64,
    vsize: i64,
    rss_pages: i64,
}

impl ProcStat {
    fn read() -> Option<ProcStat> {
        ProcStat::parse(&std::fs::read_to_string("/proc/self/stat").ok()?)
    }

    /// Parses `/proc/<pid>/stat` (proc(5)): the command name may hold spaces and parentheses,
    /// so fields are counted after its last `)`.
    fn parse(text: &str) -> Option<ProcStat> {
        let rest = &text[text.rfind(')')? + 1..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        // After the name, field 3 (state) is f[0]; utime is field 14, so f[11].
        let n = |i: usize| f.get(i).and_then(|s| s.parse::<i64>().ok());
        Some(ProcStat {
            cpu_ticks: (n(11)? + n(12)?) as u64,
            threads: n(17)?,
            start_ticks: n(19)? as u64,
            vsize: n(20)?,
            rss_pages: n(21)?,
        })
    }

    /// The start time as Unix seconds: boot time (`btime` in `/proc/stat`) plus start ticks.
    fn start_time_seconds(&self) -> i64 {
        let btime = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<i64>().ok())
            })
            .unwrap_or(0);
        btime + (self.start_ticks as f64 / TICKS_PER_SECOND) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_parses_names_with_spaces_and_parentheses() {
        let line = "4242 (tokio (worker) 1) S 1 4242 4242 0 -1 4194560 1000 0 0 0 \
                    250 50 0 0 20 0 7 0 123456 104857600 2560 18446744073709551615";
        let stat = ProcStat::parse(line).expect("parses");
        assert_eq!(
            stat,
            ProcStat {
                cpu_ticks: 300,
                threads: 7,
                start_ticks: 123_456,
                vsize: 104_857_600,
                rss_pages: 2560,
            }
        );
        assert_eq!(ProcStat::parse("garbage"), None);
    }

    #[test]
    fn a_scrape_names_every_family_once_and_ends_with_eof() {
        let m = Metrics::new();
        m.response(
            "/orgs/{org}/receipts",
            "POST",
            201,
            Duration::from_millis(3),
        );
        m.rate_limited("share-view-ip");
        m.dataset_grant(uuid::Uuid::nil(), false);
        let text = m.render(PoolFigures {
            size: 4,
            available: 1,
            max_size: 16,
            waiting: 2,
        });
        assert!(text.contains(
            "defendable_http_requests_total{route=\"/orgs/{org}/receipts\",method=\"POST\",code=\"201\"} 1"
        ));
        assert!(text.contains(
            "defendable_http_request_duration_seconds_bucket{le=\"0.005\",route=\"/orgs/{org}/receipts\",method=\"POST\"} 1"
        ), "{text}");
        assert!(text.contains("defendable_db_pool_connections_in_use 3"));
        assert!(text.contains("defendable_db_pool_max_connections 16"));
        assert!(text.contains("defendable_rate_limit_refusals_total{rule=\"share-view-ip\"} 1"));
        assert!(text.contains("defendable_dataset_quota_refusals_total 1"));
        assert!(text.contains("defendable_build_info{version=\""));
        assert!(text
            .contains("defendable_previous_secret_uses_total{secret=\"JWT_SECRET_PREVIOUS\"} 0"));
        if cfg!(target_os = "linux") {
            assert!(text.contains("# TYPE process_resident_memory_bytes gauge"));
            assert!(text.contains("process_cpu_seconds_total "));
        }
        assert!(!text.contains("org="), "no label is unbounded");
        m.response("unmatched", "BREW", 405, Duration::ZERO);
        assert!(m.render(PoolFigures::default()).contains(
            "defendable_http_requests_total{route=\"unmatched\",method=\"other\",code=\"405\"} 1"
        ));
        assert!(text.ends_with("# EOF\n"));
    }
}
