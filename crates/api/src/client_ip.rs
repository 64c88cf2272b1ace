//! The client's address: the TCP peer, unless the peer is a trusted proxy, in which case the
//! proxy's forwarding headers are believed.

use std::net::IpAddr;

use actix_web::HttpRequest;
use defendable_config::{ClientIpHeader, Config};
use ipnet::IpNet;

/// The client address for `req` under the configured trusted proxies and header.
pub fn client_ip(req: &HttpRequest, config: &Config) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip();
    resolve(
        peer,
        req.headers(),
        &config.trusted_proxies,
        config.client_ip_header,
    )
}

fn is_trusted(ip: &IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|n| n.contains(ip))
}

/// Pure resolution, separated for tests.
pub fn resolve(
    peer: IpAddr,
    headers: &actix_web::http::header::HeaderMap,
    trusted: &[IpNet],
    believed: ClientIpHeader,
) -> Option<IpAddr> {
    if !is_trusted(&peer, trusted) {
        return Some(peer);
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    // Only the configured proxy writes CF-Connecting-IP; behind any other proxy a client could
    // send it and pass straight through.
    if believed == ClientIpHeader::CfConnectingIp {
        if let Some(ip) = header("cf-connecting-ip").and_then(|v| v.trim().parse().ok()) {
            return Some(ip);
        }
    }
    if let Some(xff) = header("x-forwarded-for") {
        // Walk from the nearest hop outwards; the first address that is not one of our proxies
        // is the client. Addresses further left were written by the client and are not believed.
        for hop in xff.rsplit(',') {
            match hop.trim().parse::<IpAddr>() {
                Ok(ip) if is_trusted(&ip, trusted) => continue,
                Ok(ip) => return Some(ip),
                Err(_) => break,
            }
        }
    }
    Some(peer)
}
