//! Connection strings in either form PostgreSQL accepts (`postgres://…` URLs and `key=value`
//! conninfo), rewritten without losing quoting: another database on the same server, a form
//! without the password for PostgreSQL's own programs (which get it from `PGPASSWORD`), and a
//! description with no credentials for logs and records.

use std::str::FromStr;

use tokio_postgres::config::{Host, SslMode};

use crate::StoreError;

fn parse(url: &str) -> Result<tokio_postgres::Config, StoreError> {
    tokio_postgres::Config::from_str(url).map_err(|e| StoreError::Invalid {
        what: "database URL",
        why: e.to_string(),
    })
}

fn host(cfg: &tokio_postgres::Config) -> String {
    cfg.get_hosts()
        .first()
        .map(|h| match h {
            Host::Tcp(h) => h.clone(),
            Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_else(|| "127.0.0.1".into())
}

/// Whether `cfg` reaches a server on another machine (a TCP host that is not loopback).
fn remote(cfg: &tokio_postgres::Config) -> bool {
    cfg.get_hosts().iter().any(|h| match h {
        Host::Tcp(h) => {
            h != "localhost"
                && !h
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        Host::Unix(_) => false,
    })
}

/// The `key=value` form of `cfg`, values quoted so any character survives.
fn conninfo(cfg: &tokio_postgres::Config, with_password: bool) -> String {
    conninfo_with(cfg, with_password, None)
}

fn conninfo_with(
    cfg: &tokio_postgres::Config,
    with_password: bool,
    force_ssl: Option<&str>,
) -> String {
    let quote = |v: &str| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"));
    let mut out = format!(
        "host={} port={} user={} dbname={}",
        quote(&host(cfg)),
        cfg.get_ports().first().copied().unwrap_or(5432),
        quote(cfg.get_user().unwrap_or("postgres")),
        quote(cfg.get_dbname().unwrap_or("postgres")),
    );
    let ssl = force_ssl.or(match cfg.get_ssl_mode() {
        SslMode::Disable => Some("disable"),
        SslMode::Require => Some("require"),
        _ => None,
    });
    if let Some(mode) = ssl {
        out.push_str(&format!(" sslmode={mode}"));
    }
    if with_password {
        if let Some(pw) = cfg.get_password() {
            out.push_str(&format!(
                " password={}",
                quote(&String::from_utf8_lossy(pw))
            ));
        }
    }
    out
}

/// `url` naming database `db` instead.
pub fn with_database(url: &str, db: &str) -> Result<String, StoreError> {
    let mut cfg = parse(url)?;
    cfg.dbname(db);
    Ok(conninfo(&cfg, true))
}

/// `url` without its password, and the password.
pub fn without_password(url: &str) -> Result<(String, Option<String>), StoreError> {
    let cfg = parse(url)?;
    let password = cfg
        .get_password()
        .map(|p| String::from_utf8_lossy(p).into_owned());
    Ok((conninfo(&cfg, false), password))
}

/// `url` for PostgreSQL's own programs (libpq): without its password, and for a server on
/// another machine with `sslmode=verify-full`. libpq's `require` encrypts but checks no
/// certificate (unlike the server's own connections, which always do), so a dump or restore over
/// the network insists on the certificate and the host name. Returns the connection string,
/// the password, and whether it verifies the server.
pub fn for_programs(url: &str) -> Result<(String, Option<String>, bool), StoreError> {
    let cfg = parse(url)?;
    let password = cfg
        .get_password()
        .map(|p| String::from_utf8_lossy(p).into_owned());
    let verify = remote(&cfg);
    Ok((
        conninfo_with(&cfg, false, verify.then_some("verify-full")),
        password,
        verify,
    ))
}

/// `host:port/database`: no user, no password.
pub fn describe(url: &str) -> String {
    match parse(url) {
        Ok(cfg) => format!(
            "{}:{}/{}",
            host(&cfg),
            cfg.get_ports().first().copied().unwrap_or(5432),
            cfg.get_dbname().unwrap_or("postgres")
        ),
        Err(_) => "(unparsable database URL)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_change_database_and_lose_credentials_where_asked() {
        let url = "postgres://ops:s%40cr'et@db.example:6543/defendable?sslmode=require";
        assert_eq!(describe(url), "db.example:6543/defendable");
        let other = with_database(url, "drill_1").expect("url");
        assert_eq!(describe(&other), "db.example:6543/drill_1");
        let (bare, pw) = without_password(&other).expect("split");
        assert_eq!(pw.as_deref(), Some("s@cr'et"));
        assert!(
            !bare.contains("password") && bare.contains("sslmode=require"),
            "{bare}"
        );
        let kv = "host=127.0.0.1 port=5433 user=postgres dbname=x password='a b'";
        assert_eq!(
            describe(&with_database(kv, "y").expect("kv")),
            "127.0.0.1:5433/y"
        );
        assert_eq!(without_password(kv).expect("kv").1.as_deref(), Some("a b"));
    }

    #[test]
    fn programs_verify_the_certificate_of_a_server_on_another_machine() {
        for url in [
            "postgres://ops:pw@db.example:5432/defendable?sslmode=require",
            "postgres://ops:pw@10.1.2.3/defendable",
            "host=db.example user=ops dbname=x sslmode=prefer",
        ] {
            let (conn, _, verify) = for_programs(url).expect("url");
            assert!(
                verify && conn.ends_with("sslmode=verify-full"),
                "{url}: {conn}"
            );
            assert!(!conn.contains("pw"), "{conn}");
        }
        for url in [
            "postgres://ops:pw@127.0.0.1:5433/defendable",
            "postgres://ops:pw@localhost/defendable?sslmode=disable",
            "host=/var/run/postgresql user=ops dbname=x",
        ] {
            let (conn, pw, verify) = for_programs(url).expect("url");
            assert!(!verify && !conn.contains("verify-full"), "{url}: {conn}");
            assert_eq!(pw.is_some(), url.contains("pw"));
        }
    }
}
