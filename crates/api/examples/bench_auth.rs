//! Authentication benchmark (run with `cargo xtask bench auth`).
//!
//! Prints, from one run on one fresh database:
//! - the in-process cost of authenticating a request by API key and by session, warm (cached),
//!   beside two baselines: one SHA-256 of a key (the floor) and one PostgreSQL round trip
//!   (what an uncached check costs);
//! - requests/s and latency of an authenticated `GET /me` over HTTP, beside unauthenticated
//!   `GET /healthz` on the same server.

#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use defendable_api::{Application, Dependencies};
use defendable_config::{Config, Env};
use defendable_identity::authn::Authenticator;
use defendable_identity::jwt::SessionKeys;
use defendable_identity::store::{self, PageRequest};
use defendable_identity::{Email, SecretHash};
use defendable_store::audit::AuditContext;
use defendable_testkit::bench::http_load;
use defendable_testkit::TestDb;

const SECRET: &str = "bench-jwt-K7q2Lm9Xr4Tz8Vw1Ny6Pb3Hc5Jd0Fg";

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "{name:<44} p50 {:>9.2} µs   p99 {:>9.2} µs   ({} samples)",
        percentile(&samples, 0.50).as_secs_f64() * 1e6,
        percentile(&samples, 0.99).as_secs_f64() * 1e6,
        samples.len()
    );
}

async fn time_async<F, Fut>(n: usize, mut f: F) -> Vec<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f().await;
        out.push(t.elapsed());
    }
    out
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        let db = TestDb::new().await;
        let ctx = AuditContext::default();
        let email = Email::parse("bench@example.com").expect("email");
        let link = store::request_magic_link(
            &mut db.pool.get().await.expect("client"),
            &email,
            Duration::from_secs(60),
            &ctx,
        )
        .await
        .expect("link");
        let session = store::verify_magic_link(
            &mut db.pool.get().await.expect("client"),
            &link.token,
            Duration::from_secs(3600),
            &ctx,
        )
        .await
        .expect("session");
        let client = db.pool.get().await.expect("client");
        let org = store::list_orgs(&client, session.user.id, PageRequest::new(None, None))
            .await
            .expect("orgs")
            .items[0]
            .org
            .id;
        let (_, key) = store::create_api_key(
            &mut db.pool.get().await.expect("client"),
            session.user.id,
            org,
            &defendable_identity::ApiKeyName::parse("bench").expect("name"),
            None,
            &ctx,
        )
        .await
        .expect("key");
        let keys = SessionKeys::new(SECRET.as_bytes(), None, Duration::from_secs(3600));
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let jwt = keys.issue(
            session.user.id,
            session.session,
            now,
            session.expires_at.unix_timestamp(),
        );
        let auth = Authenticator::new(keys);

        println!("== in-process authentication (warm; cache refreshed every 2 s)");
        let n = 50_000;
        // Warm both caches and the pool.
        auth.authenticate_pooled(&db.pool, key.expose())
            .await
            .expect("key");
        auth.authenticate_pooled(&db.pool, &jwt).await.expect("jwt");
        report(
            "baseline: SHA-256 of a key",
            (0..n)
                .map(|_| {
                    let t = Instant::now();
                    std::hint::black_box(SecretHash::of(key.expose()));
                    t.elapsed()
                })
                .collect(),
        );
        report(
            "baseline: PostgreSQL round trip (SELECT 1)",
            time_async(2_000, || async {
                client.query_one("SELECT 1", &[]).await.expect("select");
            })
            .await,
        );
        report(
            "authenticate API key",
            time_async(n, || async {
                auth.authenticate_pooled(&db.pool, key.expose())
                    .await
                    .expect("key");
            })
            .await,
        );
        report(
            "authenticate session JWT",
            time_async(n, || async {
                auth.authenticate_pooled(&db.pool, &jwt).await.expect("jwt");
            })
            .await,
        );

        println!("\n== rate limiting (one statement per checked request)");
        let buckets = vec![
            defendable_store::ratelimit::Bucket {
                name: "bench-email:0123".into(),
                window_secs: 600,
            },
            defendable_store::ratelimit::Bucket {
                name: "bench-ip:4567".into(),
                window_secs: 600,
            },
        ];
        report(
            "rate-limit check, 2 buckets (PostgreSQL)",
            time_async(2_000, || async {
                defendable_store::ratelimit::hit(&client, &buckets)
                    .await
                    .expect("hit");
            })
            .await,
        );

        // A shared receipt for the rate-limited public download route.
        let share = defendable_identity::OneTimeToken::generate();
        {
            let mut c = db.pool.get().await.expect("client");
            let tx = c.transaction().await.expect("tx");
            let draft = defendable_ledger::Draft::new(
                defendable_ledger::ReceiptKind::parse("run").expect("kind"),
                serde_json::json!({"bench": true}),
                None,
            )
            .expect("draft");
            let r = defendable_ledger::store::append_in(&tx, org.as_uuid(), draft)
                .await
                .expect("receipt");
            defendable_ledger::store::create_share(
                &tx,
                org.as_uuid(),
                r.seq,
                share.hash().as_bytes(),
                None,
                None,
            )
            .await
            .expect("share");
            tx.commit().await.expect("commit");
        }

        println!("\n== HTTP on this machine (server and load generator share the 2 cores)");
        let mut pairs = vec![
            ("BIND_ADDR", "127.0.0.1:0"),
            ("JWT_SECRET", SECRET),
            ("RUST_LOG", "warn"),
        ];
        pairs.push(("DEV_LOG_MAIL_LINKS", "false"));
        // Limits raised so the load measures the check, not refusals.
        pairs.push((
            "RATE_LIMITS",
            "share-download-token=1000000000/1h,share-download-ip=1000000000/1h,share-view-ip=1000000000/1h,share-view-token=1000000000/1h",
        ));
        let ledger_key = defendable_ledger::SigningKey::generate().expect("key").1;
        pairs.push(("LEDGER_SIGNING_KEY", &ledger_key));
        pairs.push((
            "OBJECT_URL_SIGNING_KEY",
            "bench-url-Pq8Wn3Ez5Rt7Yu1Io4As6Df9Gh2Jk0",
        ));
        let config = Config::parse(&Env::from_pairs(pairs)).expect("config");
        let deps = Dependencies {
            pool: db.another_pool(16),
            objects: Arc::new(object_store::memory::InMemory::new()),
            presigner: None,
        };
        let app = Application::build(config, deps).expect("server");
        let base = format!("http://127.0.0.1:{}", app.port());
        tokio::task::spawn_local(app.run_until_stopped());
        tokio::time::sleep(Duration::from_millis(200)).await;
        let share_path = format!("/share/{}", share.expose());
        let download_path = format!("/share/{}/download", share.expose());
        for (name, path, bearer) in [
            ("baseline: GET /healthz (no auth, no DB)", "/healthz", None),
            (
                "GET /share/{token} (public projection)",
                share_path.as_str(),
                None,
            ),
            (
                "GET /share/{token}/download (rate-limited)",
                download_path.as_str(),
                None,
            ),
            (
                "GET /me (session auth + 2 queries)",
                "/me",
                Some(jwt.as_str()),
            ),
        ] {
            let url = [format!("{base}{path}")];
            let _ = http_load(&url, bearer, 8, Duration::from_secs(1)).await;
            let (rps, lat) = http_load(&url, bearer, 32, Duration::from_secs(5)).await;
            println!(
                "{name:<44} {rps:>9.0} req/s   p50 {:>6.2} ms   p99 {:>6.2} ms",
                percentile(&lat, 0.5).as_secs_f64() * 1e3,
                percentile(&lat, 0.99).as_secs_f64() * 1e3
            );
        }
    });
}
