//! Every statement on a hot route is prepared once per connection (issue 14, part 2): the
//! server reaches PostgreSQL through a proxy that counts the frontend messages that make the
//! server parse SQL (Parse and simple Query). After a warm-up, repeating the hot routes must
//! send none.
//!
//! The proxy also records which prepared statement each execution (Bind) runs, so that a test
//! can hold the proof routes to the statements their design allows (issue 34).

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::helpers::{config, path_of, TestApp};

/// Counts Parse ('P') and simple Query ('Q') messages from clients to PostgreSQL, keeping
/// their SQL for the failure message. Transaction control sent as a simple query is not
/// counted. Also keeps the SQL of every execution of a prepared statement (Bind).
#[derive(Clone, Default)]
struct Parses(
    Arc<AtomicU64>,
    Arc<std::sync::Mutex<Vec<String>>>,
    Arc<std::sync::Mutex<Vec<String>>>,
);

/// One line of SQL, whitespace collapsed.
fn one_line(sql: &[u8]) -> String {
    String::from_utf8_lossy(sql)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

impl Parses {
    fn take(&self) -> (u64, Vec<String>) {
        let sql = std::mem::take(&mut *self.1.lock().expect("lock"));
        (self.0.swap(0, Ordering::SeqCst), sql)
    }

    /// The SQL of the statements executed since the last call.
    fn take_executed(&self) -> Vec<String> {
        std::mem::take(&mut *self.2.lock().expect("lock"))
    }

    fn executed(&self, sql: String) {
        self.2.lock().expect("lock").push(sql);
    }

    fn count(&self, message: &[u8]) {
        // Parse: name\0 query\0 …; Query: query\0.
        let body = message.get(5..).unwrap_or_default();
        let text = if message[0] == b'P' {
            body.splitn(3, |b| *b == 0).nth(1).unwrap_or_default()
        } else {
            body.split(|b| *b == 0).next().unwrap_or_default()
        };
        let sql = one_line(text);
        // tokio-postgres opens and ends transactions with simple queries; they carry no
        // statement of ours to prepare.
        let control = message[0] == b'Q'
            && matches!(
                sql.as_str(),
                "START TRANSACTION" | "BEGIN" | "COMMIT" | "ROLLBACK"
            );
        if control {
            return;
        }
        self.0.fetch_add(1, Ordering::SeqCst);
        self.1
            .lock()
            .expect("lock")
            .push(sql.chars().take(160).collect());
    }
}

/// Reads one frontend message into `buf`: untyped (startup, SSL or cancel request) or typed.
async fn frontend_message(
    from: &mut tokio::net::tcp::OwnedReadHalf,
    typed: bool,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<u8>> {
    buf.clear();
    let kind = if typed {
        let mut k = [0u8; 1];
        from.read_exact(&mut k).await?;
        buf.push(k[0]);
        Some(k[0])
    } else {
        None
    };
    let mut len = [0u8; 4];
    from.read_exact(&mut len).await?;
    buf.extend_from_slice(&len);
    let body = (u32::from_be_bytes(len) as usize).saturating_sub(4);
    let start = buf.len();
    buf.resize(start + body, 0);
    from.read_exact(&mut buf[start..]).await?;
    Ok(kind)
}

async fn relay(client: TcpStream, upstream: std::net::SocketAddr, parses: Parses) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up = async move {
        let mut buf = Vec::new();
        // The startup message has no type byte (an SSL request would be followed by another).
        loop {
            if frontend_message(&mut cr, false, &mut buf).await.is_err() {
                return;
            }
            let code = buf
                .get(4..8)
                .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
            if sw.write_all(&buf).await.is_err() {
                return;
            }
            if code != Some(80_877_103) {
                break;
            }
        }
        // Prepared statements of this connection, by name.
        let mut prepared = std::collections::HashMap::<Vec<u8>, String>::new();
        loop {
            match frontend_message(&mut cr, true, &mut buf).await {
                Ok(Some(kind @ (b'P' | b'Q'))) => {
                    parses.count(&buf);
                    if kind == b'P' {
                        // Parse: name\0 query\0 …
                        let mut parts = buf[5..].splitn(3, |b| *b == 0);
                        let name = parts.next().unwrap_or_default().to_vec();
                        prepared.insert(name, one_line(parts.next().unwrap_or_default()));
                    }
                }
                Ok(Some(b'B')) => {
                    // Bind: portal\0 statement\0 …
                    let name = buf[5..].split(|b| *b == 0).nth(1).unwrap_or_default();
                    let sql = prepared.get(name).cloned();
                    parses.executed(sql.unwrap_or_else(|| "<unknown statement>".into()));
                }
                Ok(_) => {}
                Err(_) => return,
            }
            if sw.write_all(&buf).await.is_err() {
                return;
            }
        }
    };
    let down = async move {
        let _ = tokio::io::copy(&mut sr, &mut cw).await;
    };
    tokio::select! {
        _ = up => {}
        _ = down => {}
    }
}

/// Starts the proxy in front of the database at `url`; returns a connection string through it
/// and the counter. Synchronous, so that it can run while the server is being built.
fn proxy(url: &str, parses: Parses) -> String {
    use std::net::ToSocketAddrs as _;
    let config = tokio_postgres::Config::from_str(url).expect("url");
    let host = match &config.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        other => panic!("a TCP database is needed, not {other:?}"),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let upstream = (host.as_str(), port)
        .to_socket_addrs()
        .expect("resolve")
        .next()
        .expect("an address");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let local = listener.local_addr().expect("addr");
    let listener = TcpListener::from_std(listener).expect("tokio listener");
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(relay(client, upstream, parses.clone()));
        }
    });
    let mut conninfo = format!(
        "host=127.0.0.1 port={} dbname={} user={} sslmode=disable",
        local.port(),
        config.get_dbname().expect("dbname"),
        config.get_user().expect("user"),
    );
    if let Some(p) = config.get_password() {
        conninfo.push_str(&format!(
            " password='{}'",
            String::from_utf8_lossy(p)
                .replace('\\', "\\\\")
                .replace('\'', "\\'")
        ));
    }
    conninfo
}

#[actix_web::test]
async fn hot_routes_send_no_unprepared_statement_after_warm_up() {
    let parses = Parses::default();
    let counter = parses.clone();
    // One connection, so that a warm-up prepares every statement on the connection the
    // measured requests use.
    let app = TestApp::spawn_through(
        config(&[(
            "RATE_LIMITS",
            "share-view-ip=1000000/1h,share-view-token=1000000/1h,share-proof-ip=1000000/1h,share-proof-token=1000000/1h",
        )]),
        defendable_store::PoolSettings {
            wait: Duration::from_secs(30),
            ..defendable_boot::server_pool_settings(1)
        },
        move |url| proxy(url, counter),
    )
    .await;
    let (token, slug, _) = app.sign_in_to_org("prepared@example.com").await;
    let key = app.api_key(&token, &slug).await;
    let (_, first) = app
        .call(
            "POST",
            &format!("/orgs/{slug}/receipts"),
            Some(&key),
            Some(json!({"kind": "note", "public": {"n": 0}})),
        )
        .await;
    let id = first["receipt_id"].as_str().expect("id").to_owned();
    let share = app.share(&token, &slug, &id, None).await;
    let share_path = path_of(&share.url);
    crate::datasets_http::publish(&app, "census", "raw/census.csv", b"a,b\n1,2\n").await;

    let mut n = 0;
    let mut round = || {
        n += 1;
        let calls: Vec<(&str, String, Option<String>, Option<Value>)> = vec![
            ("GET", "/me".into(), Some(token.clone()), None),
            (
                "GET",
                format!("/orgs/{slug}/receipts?limit=10"),
                Some(key.clone()),
                None,
            ),
            (
                "GET",
                format!("/orgs/{slug}/receipts/{id}"),
                Some(key.clone()),
                None,
            ),
            (
                "POST",
                format!("/orgs/{slug}/receipts"),
                Some(key.clone()),
                Some(json!({"kind": "note", "public": {"n": n}})),
            ),
            ("GET", share_path.clone(), None, None),
            ("GET", format!("{share_path}/proof"), None, None),
            (
                "GET",
                format!("/orgs/{slug}/ledger/checkpoint"),
                Some(key.clone()),
                None,
            ),
            (
                "GET",
                "/datasets/catalog?q=cens".into(),
                Some(token.clone()),
                None,
            ),
            (
                "GET",
                "/datasets/catalog/census".into(),
                Some(token.clone()),
                None,
            ),
        ];
        calls
    };
    for pass in 0..6 {
        if pass == 3 {
            // Warm: every statement has been prepared on the one connection.
            parses.take();
        }
        for (method, path, bearer, body) in round() {
            let (s, res) = app.call(method, &path, bearer.as_deref(), body).await;
            assert!(s.is_success(), "{method} {path}: {s} {res}");
        }
        // The same Idempotency-Key every pass: the first is created on the fast path, the
        // retries fall back to the locking path, whose statements must be prepared too.
        let res = app
            .http
            .post(app.url(&format!("/orgs/{slug}/receipts")))
            .bearer_auth(&key)
            .header("idempotency-key", "warm-retry")
            .json(&json!({"kind": "note", "public": {"n": -1}}))
            .send()
            .await
            .expect("retry");
        assert_eq!(res.status(), if pass == 0 { 201 } else { 200 });
    }
    let (count, sql) = parses.take();
    assert_eq!(
        count, 0,
        "statements parsed again after the warm-up (hot-route SQL not prepared once per connection): {sql:#?}"
    );
}

/// Whether a statement reads the log: receipts, share links or the tree. The integrator's scan
/// for lagging trees runs in the background every few seconds and is not a request's.
fn reads_log(sql: &str) -> bool {
    ["receipts", "receipt_shares", "ledger_heads", "ledger_nodes"]
        .iter()
        .any(|t| sql.contains(t))
        && !sql.contains("tree_size < seq + 1")
}

/// The proof routes read the log in the statements their design allows (issue 34): a share
/// link's bundle and page, one statement that resolves the link with its receipt and the whole
/// proof (the head's edge, the leaf's block and the stored siblings, from one snapshot; batched
/// with concurrent requests); a member's receipt proof, one for the receipt with its proof; the
/// checkpoint, one; a share link's consistency proof, one that resolves the link with its proof. The log has 70 receipts so
/// that proofs use stored nodes as well as folded leaves.
#[actix_web::test]
async fn proof_routes_read_the_log_in_the_statements_the_design_allows() {
    let parses = Parses::default();
    let counter = parses.clone();
    let app = TestApp::spawn_through(
        config(&[(
            "RATE_LIMITS",
            "share-view-ip=1000000/1h,share-view-token=1000000/1h,share-proof-ip=1000000/1h,share-proof-token=1000000/1h,share-consistency-ip=1000000/1h,share-consistency-token=1000000/1h",
        )]),
        defendable_store::PoolSettings {
            wait: Duration::from_secs(30),
            ..defendable_boot::server_pool_settings(8)
        },
        move |url| proxy(url, counter),
    )
    .await;
    let (token, slug, _) = app.sign_in_to_org("statements@example.com").await;
    let key = app.api_key(&token, &slug).await;
    let mut ids = Vec::new();
    for n in 0..70 {
        let (s, r) = app
            .call(
                "POST",
                &format!("/orgs/{slug}/receipts"),
                Some(&key),
                Some(json!({"kind": "note", "public": {"n": n}})),
            )
            .await;
        assert!(s.is_success(), "{s} {r}");
        ids.push(r["receipt_id"].as_str().expect("id").to_owned());
    }
    let id = &ids[37];
    let share = app.share(&token, &slug, id, None).await;
    let share_path = path_of(&share.url);
    let routes: [(&str, String, Option<&str>, bool, usize); 5] = [
        ("share proof", format!("{share_path}/proof"), None, false, 1),
        ("share page", share_path.clone(), None, true, 1),
        (
            "receipt proof",
            format!("/orgs/{slug}/receipts/{id}/proof"),
            Some(&key),
            false,
            1,
        ),
        (
            "checkpoint",
            format!("/orgs/{slug}/ledger/checkpoint"),
            Some(&key),
            false,
            1,
        ),
        (
            "share consistency",
            format!("{share_path}/consistency?from=20"),
            None,
            false,
            1,
        ),
    ];
    let get = |path: String, bearer: Option<String>, page: bool| {
        let mut req = app.http.get(app.url(&path));
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        if page {
            req = req.header("accept", "text/html");
        }
        async move {
            let res = req.send().await.expect("request");
            assert!(res.status().is_success(), "{path}: {}", res.status());
            res.bytes().await.expect("body")
        }
    };
    // Warm-up: every statement prepared on every connection the routes may use.
    for _ in 0..4 {
        for (_, path, bearer, page, _) in &routes {
            get(path.clone(), bearer.map(str::to_owned), *page).await;
        }
    }
    const REQUESTS: usize = 5;
    for (name, path, bearer, page, allowed) in &routes {
        parses.take_executed();
        for _ in 0..REQUESTS {
            get(path.clone(), bearer.map(str::to_owned), *page).await;
        }
        let executed: Vec<String> = parses
            .take_executed()
            .into_iter()
            .filter(|sql| reads_log(sql))
            .collect();
        assert!(
            executed.len() <= allowed * REQUESTS,
            "{name}: {} statements read the log for {REQUESTS} requests, the design allows {allowed} each:\n{executed:#?}",
            executed.len()
        );
        assert!(
            executed.len() >= REQUESTS,
            "{name}: the proxy saw {} log reads for {REQUESTS} requests: it is not counting",
            executed.len()
        );
    }
}
