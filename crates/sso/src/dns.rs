//! DNS TXT lookups for domain verification, through `DNS_RESOLVER` (`ip[:port]`, tests point it
//! at a server on loopback) or the system's resolver configuration. Nothing is cached: a
//! verification sees the record as published now.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::TokioResolver;

use crate::domain::DomainName;
use crate::{Result, SsoError};

/// How long one lookup may take, all attempts included (config::limits).
pub const LOOKUP_TIMEOUT: Duration = defendable_config::limits::DNS_LOOKUP;

/// Looks up TXT records.
#[derive(Debug, Clone)]
pub struct TxtResolver {
    server: Option<SocketAddr>,
}

impl TxtResolver {
    /// The system's resolver (`/etc/resolv.conf`).
    pub fn system() -> TxtResolver {
        TxtResolver { server: None }
    }

    /// One name server: `ip` or `ip:port` (port 53 by default).
    pub fn parse(server: &str) -> Result<TxtResolver> {
        let addr = server
            .parse::<SocketAddr>()
            .or_else(|_| server.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
            .map_err(|_| {
                SsoError::InvalidInput(format!(
                    "DNS_RESOLVER: {server:?} is not an address such as 10.0.0.2 or 127.0.0.1:5353"
                ))
            })?;
        Ok(TxtResolver { server: Some(addr) })
    }

    fn resolver(&self) -> Result<TokioResolver> {
        let dns = |e: hickory_resolver::net::NetError| SsoError::Dns(e.to_string());
        let mut builder = match self.server {
            None => TokioResolver::builder_tokio().map_err(dns)?,
            Some(addr) => {
                let connections = [ConnectionConfig::udp(), ConnectionConfig::tcp()]
                    .into_iter()
                    .map(|mut c| {
                        c.port = addr.port();
                        c
                    })
                    .collect();
                TokioResolver::builder_with_config(
                    ResolverConfig::from_name_servers(vec![NameServerConfig::new(
                        addr.ip(),
                        true,
                        connections,
                    )]),
                    TokioRuntimeProvider::default(),
                )
            }
        };
        let opts = builder.options_mut();
        opts.timeout = LOOKUP_TIMEOUT / 2;
        opts.attempts = 2;
        opts.cache_size = 0;
        builder.build().map_err(dns)
    }

    /// The TXT strings at `_defendable-challenge.<domain>` (each record's strings joined, as
    /// RFC 7208 reads a long value split into several strings). No record: an empty list.
    pub async fn challenge_records(&self, domain: &DomainName) -> Result<Vec<String>> {
        let name = format!("{}.", domain.challenge_name());
        let lookup = match self.resolver()?.txt_lookup(name.as_str()).await {
            Ok(lookup) => lookup,
            Err(e) if e.is_no_records_found() || e.is_nx_domain() => return Ok(Vec::new()),
            Err(e) => return Err(SsoError::Dns(e.to_string())),
        };
        Ok(lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::TXT(txt) => Some(
                    txt.txt_data
                        .iter()
                        .map(|s| String::from_utf8_lossy(s).into_owned())
                        .collect::<String>(),
                ),
                _ => None,
            })
            .collect())
    }
}
