//! Where the server may send a request to an identity provider: public (global) addresses only,
//! unless the deployment allows internal ones (development, for the test provider) or lists an
//! on-premises provider's network (`SSO_PROVIDER_ALLOWED_CIDRS`). The check runs in the HTTP
//! client's resolver, on the addresses it then connects to (no check-then-connect, so DNS
//! rebinding gains nothing), and on addresses written literally in a URL, which skip the
//! resolver.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;

/// The networks identity providers may be reached on.
#[derive(Debug, Clone, Default)]
pub struct Egress {
    /// Development: every address (the test provider runs on loopback).
    pub allow_internal: bool,
    /// Non-global networks allowed anyway (on-premises identity providers).
    pub allowed: Vec<IpNet>,
}

impl Egress {
    /// Whether a request may connect to `ip`; the refusal names the rule.
    pub fn check(&self, ip: IpAddr) -> Result<(), Refused> {
        if self.allow_internal || self.allowed.iter().any(|n| n.contains(&ip)) {
            return Ok(());
        }
        match non_global(ip) {
            None => Ok(()),
            Some(rule) => Err(Refused(rule)),
        }
    }
}

/// A connection refused by [`Egress`]: the rule that refused it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused(pub &'static str);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the identity provider's address is {} and not public (SSO_PROVIDER_ALLOWED_CIDRS lists on-premises providers' networks)",
            self.0
        )
    }
}

impl std::error::Error for Refused {}

/// Why `ip` is not a global address, if it is not.
pub fn non_global(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => non_global_v4(v4),
        IpAddr::V6(v6) => non_global_v6(v6),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn non_global_v4(ip: Ipv4Addr) -> Option<&'static str> {
    const RULES: &[([u8; 4], u32, &str)] = &[
        ([0, 0, 0, 0], 8, "unspecified (0.0.0.0/8)"),
        ([10, 0, 0, 0], 8, "private (10.0.0.0/8)"),
        (
            [100, 64, 0, 0],
            10,
            "shared address space (CGNAT, 100.64.0.0/10)",
        ),
        ([127, 0, 0, 0], 8, "loopback (127.0.0.0/8)"),
        (
            [169, 254, 0, 0],
            16,
            "link-local, cloud metadata included (169.254.0.0/16)",
        ),
        ([172, 16, 0, 0], 12, "private (172.16.0.0/12)"),
        (
            [192, 0, 0, 0],
            24,
            "IETF protocol assignments (192.0.0.0/24)",
        ),
        ([192, 0, 2, 0], 24, "documentation (192.0.2.0/24)"),
        ([192, 88, 99, 0], 24, "6to4 relay anycast (192.88.99.0/24)"),
        ([192, 168, 0, 0], 16, "private (192.168.0.0/16)"),
        ([198, 18, 0, 0], 15, "benchmarking (198.18.0.0/15)"),
        ([198, 51, 100, 0], 24, "documentation (198.51.100.0/24)"),
        ([203, 0, 113, 0], 24, "documentation (203.0.113.0/24)"),
        ([224, 0, 0, 0], 4, "multicast (224.0.0.0/4)"),
        ([240, 0, 0, 0], 4, "reserved or broadcast (240.0.0.0/4)"),
    ];
    RULES
        .iter()
        .find(|(net, prefix, _)| in_v4(ip, *net, *prefix))
        .map(|(_, _, rule)| *rule)
}

fn non_global_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    if ip.is_unspecified() {
        return Some("unspecified (::)");
    }
    if ip.is_loopback() {
        return Some("loopback (::1)");
    }
    if s[..5] == [0; 5] && s[5] == 0xffff {
        return Some("an IPv4-mapped IPv6 address (::ffff:0:0/96)");
    }
    if s[..6] == [0; 6] {
        return Some("an IPv4-compatible IPv6 address (::/96)");
    }
    if s[0] == 0x64 && s[1] == 0xff9b {
        return Some("NAT64 (64:ff9b::/96, 64:ff9b:1::/48)");
    }
    if s[0] == 0x0100 && s[1..4] == [0; 3] {
        return Some("discard-only (100::/64)");
    }
    if s[0] == 0x2001 && s[1] < 0x0200 {
        return Some("IETF protocol assignments, Teredo included (2001::/23)");
    }
    if s[0] == 0x2001 && s[1] == 0x0db8 {
        return Some("documentation (2001:db8::/32)");
    }
    if s[0] == 0x2002 {
        return Some("6to4 (2002::/16)");
    }
    if s[0] & 0xfe00 == 0xfc00 {
        return Some("unique-local, cloud metadata included (fc00::/7)");
    }
    if s[0] & 0xffc0 == 0xfe80 {
        return Some("link-local (fe80::/10)");
    }
    if s[0] & 0xffc0 == 0xfec0 {
        return Some("site-local (fec0::/10)");
    }
    if s[0] & 0xff00 == 0xff00 {
        return Some("multicast (ff00::/8)");
    }
    None
}

/// The HTTP client's resolver: the system's lookup, then only the addresses [`Egress`]
/// permits; none left is an error naming the rule.
#[derive(Debug, Clone)]
pub(crate) struct GuardedResolver {
    pub(crate) egress: Arc<Egress>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let egress = self.egress.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refused = None;
            let kept: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| match egress.check(a.ip()) {
                    Ok(()) => true,
                    Err(r) => {
                        refused.get_or_insert(r);
                        false
                    }
                })
                .collect();
            match (kept.is_empty(), refused) {
                (true, Some(r)) => Err(Box::new(r) as Box<dyn std::error::Error + Send + Sync>),
                _ => Ok(Box::new(kept.into_iter()) as reqwest::dns::Addrs),
            }
        })
    }
}

/// The egress refusal somewhere in an error's chain, if that is what failed.
pub(crate) fn refusal_in(e: &(dyn std::error::Error + 'static)) -> Option<Refused> {
    let mut current = Some(e);
    while let Some(err) = current {
        if let Some(r) = err.downcast_ref::<Refused>() {
            return Some(*r);
        }
        current = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_non_global_range_is_refused_and_public_addresses_pass() {
        let strict = Egress::default();
        for refused in [
            "127.0.0.1",
            "10.1.2.3",
            "172.31.255.255",
            "192.168.0.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.254",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "192.0.2.1",
            "198.18.0.1",
            "::1",
            "::",
            "::ffff:127.0.0.1",
            "::ffff:8.8.8.8",
            "fd00:ec2::254",
            "fc00::1",
            "fe80::1",
            "ff02::1",
            "2001:db8::1",
            "64:ff9b::a00:1",
            "2002:a00:1::1",
            "2001::1",
        ] {
            let ip: IpAddr = refused.parse().expect(refused);
            assert!(strict.check(ip).is_err(), "{refused} must be refused");
        }
        for public in [
            "8.8.8.8",
            "1.1.1.1",
            "100.128.0.1",
            "172.32.0.1",
            "2606:4700::1111",
            "2a00:1450::1",
        ] {
            let ip: IpAddr = public.parse().expect(public);
            assert_eq!(strict.check(ip), Ok(()), "{public} is public");
        }
        let on_premises = Egress {
            allow_internal: false,
            allowed: vec!["10.20.0.0/16".parse().expect("cidr")],
        };
        assert_eq!(on_premises.check("10.20.1.1".parse().expect("ip")), Ok(()));
        assert!(on_premises.check("10.21.1.1".parse().expect("ip")).is_err());
        let development = Egress {
            allow_internal: true,
            allowed: vec![],
        };
        assert_eq!(development.check("127.0.0.1".parse().expect("ip")), Ok(()));
    }
}
