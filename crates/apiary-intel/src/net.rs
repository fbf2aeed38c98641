//! Address arithmetic shared by parsers and lookup tables.
//!
//! Everything is reduced to inclusive integer ranges (`u32` for IPv4, `u128` for
//! IPv6) because every source format can be expressed that way: single addresses,
//! CIDRs and the arbitrary `start,end` ranges of the ASN tables.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::Serialize;

/// An inclusive range of addresses of one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IpRange {
    /// IPv4 `start..=end`.
    V4(u32, u32),
    /// IPv6 `start..=end`.
    V6(u128, u128),
}

impl IpRange {
    /// A range from two addresses of the same family with `start <= end`.
    pub fn new(start: IpAddr, end: IpAddr) -> Option<Self> {
        match (canonical(start), canonical(end)) {
            (IpAddr::V4(a), IpAddr::V4(b)) if u32::from(a) <= u32::from(b) => Some(IpRange::V4(a.into(), b.into())),
            (IpAddr::V6(a), IpAddr::V6(b)) if u128::from(a) <= u128::from(b) => Some(IpRange::V6(a.into(), b.into())),
            _ => None,
        }
    }

    /// The range of one address.
    pub fn single(ip: IpAddr) -> Self {
        match canonical(ip) {
            IpAddr::V4(a) => IpRange::V4(a.into(), a.into()),
            IpAddr::V6(a) => IpRange::V6(a.into(), a.into()),
        }
    }

    /// The range a CIDR covers (IPv4-mapped IPv6 networks become IPv4).
    pub fn from_net(net: IpNet) -> Self {
        match net {
            IpNet::V4(n) => IpRange::V4(n.network().into(), n.broadcast().into()),
            IpNet::V6(n) => {
                let start: u128 = n.network().into();
                let end: u128 = n.broadcast().into();
                // ::ffff:a.b.c.d/(96+k), k > 0, is really an IPv4 network and lookups
                // canonicalise mapped addresses, so store it as IPv4. The whole
                // ::ffff:0:0/96 stays IPv6: read as IPv4 it would mean "all of IPv4"
                // (the IANA registry lists it as not globally reachable).
                if n.prefix_len() > 96 && (start >> 32) == 0xffff {
                    IpRange::V4(start as u32, end as u32)
                } else {
                    IpRange::V6(start, end)
                }
            }
        }
    }

    /// First address.
    pub fn start(&self) -> IpAddr {
        match *self {
            IpRange::V4(s, _) => IpAddr::V4(Ipv4Addr::from(s)),
            IpRange::V6(s, _) => IpAddr::V6(Ipv6Addr::from(s)),
        }
    }

    /// Last address.
    pub fn end(&self) -> IpAddr {
        match *self {
            IpRange::V4(_, e) => IpAddr::V4(Ipv4Addr::from(e)),
            IpRange::V6(_, e) => IpAddr::V6(Ipv6Addr::from(e)),
        }
    }

    /// Whether `ip` (canonicalised) lies in the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self, canonical(ip)) {
            (IpRange::V4(s, e), IpAddr::V4(a)) => (*s..=*e).contains(&u32::from(a)),
            (IpRange::V6(s, e), IpAddr::V6(a)) => (*s..=*e).contains(&u128::from(a)),
            _ => false,
        }
    }

    /// The minimal list of CIDRs covering exactly this range.
    pub fn to_cidrs(&self) -> Vec<IpNet> {
        let mut out = Vec::new();
        match *self {
            IpRange::V4(s, e) => {
                for (a, len) in split_cidrs(u128::from(s), u128::from(e), 32) {
                    if let Ok(n) = Ipv4Net::new(Ipv4Addr::from(a as u32), len) {
                        out.push(IpNet::V4(n));
                    }
                }
            }
            IpRange::V6(s, e) => {
                for (a, len) in split_cidrs(s, e, 128) {
                    if let Ok(n) = Ipv6Net::new(Ipv6Addr::from(a), len) {
                        out.push(IpNet::V6(n));
                    }
                }
            }
        }
        out
    }

    /// The largest CIDR inside this range that contains `ip`: the "routed prefix"
    /// of an ASN row whose range is not CIDR-aligned.
    pub fn cidr_containing(&self, ip: IpAddr) -> Option<IpNet> {
        match (*self, canonical(ip)) {
            (IpRange::V4(s, e), IpAddr::V4(a)) => {
                let (net, len) = cidr_around(u128::from(s), u128::from(e), u128::from(u32::from(a)), 32)?;
                Ipv4Net::new(Ipv4Addr::from(net as u32), len).ok().map(IpNet::V4)
            }
            (IpRange::V6(s, e), IpAddr::V6(a)) => {
                let (net, len) = cidr_around(s, e, u128::from(a), 128)?;
                Ipv6Net::new(Ipv6Addr::from(net), len).ok().map(IpNet::V6)
            }
            _ => None,
        }
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`, what a dual-stack socket reports
/// for an IPv4 peer) are looked up as the IPv4 address they carry.
#[inline]
pub fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// Splits `[s, e]` (in a `bits`-wide space) into maximal aligned blocks.
fn split_cidrs(mut s: u128, e: u128, bits: u8) -> Vec<(u128, u8)> {
    let mut out = Vec::new();
    loop {
        // Largest block aligned at s.
        let align = if s == 0 { u32::from(bits) } else { s.trailing_zeros().min(u32::from(bits)) };
        let mut size_log = align;
        // Shrink until the block fits in [s, e].
        while size_log > 0 {
            let last = if size_log >= 128 { u128::MAX } else { s | ((1u128 << size_log) - 1) };
            if last <= e {
                break;
            }
            size_log -= 1;
        }
        out.push((s, bits - size_log as u8));
        let last = if size_log >= 128 { u128::MAX } else { s | ((1u128 << size_log) - 1) };
        if last >= e {
            break;
        }
        s = last + 1;
    }
    out
}

/// Largest aligned block inside `[s, e]` containing `a`.
fn cidr_around(s: u128, e: u128, a: u128, bits: u8) -> Option<(u128, u8)> {
    if a < s || a > e {
        return None;
    }
    let mut best = (a, bits);
    for host_bits in 1..=u32::from(bits) {
        let mask = if host_bits >= 128 { u128::MAX } else { (1u128 << host_bits) - 1 };
        let net = a & !mask;
        let last = net | mask;
        if net < s || last > e {
            break;
        }
        best = (net, bits - host_bits as u8);
    }
    Some(best)
}

/// Parses an address or CIDR as written in feeds: `1.2.3.4`, `1.2.3.0/24`,
/// `2001:db8::/32`, tolerating surrounding whitespace. A CIDR with host bits set
/// (`8.8.8.8/24`) is truncated to its network, as routers would.
pub fn parse_ip_or_cidr(s: &str) -> Option<IpRange> {
    let s = s.trim();
    if s.contains('/') {
        let net: IpNet = s.parse().ok()?;
        Some(IpRange::from_net(net.trunc()))
    } else {
        let ip: IpAddr = s.parse().ok()?;
        Some(IpRange::single(ip))
    }
}

/// The netinfo view of a routed prefix, as served by `/netinfo/lookup`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct NetInfo {
    /// The prefix itself (`8.8.8.0/24`).
    pub network: IpNet,
    /// Netmask (`255.255.255.0`).
    pub netmask: IpAddr,
    /// Last address of the prefix (`8.8.8.255`).
    pub broadcast: IpAddr,
    /// Inverse of the netmask (`0.0.0.255`).
    pub hostmask: IpAddr,
    /// Number of addresses; `u128` because an IPv6 `/0` has 2^128 (saturated).
    pub size: u128,
}

impl NetInfo {
    /// Computes the view for `net` (host bits are cleared first).
    pub fn of(net: IpNet) -> Self {
        let net = net.trunc();
        let host_bits = u32::from(net.max_prefix_len() - net.prefix_len());
        let size = if host_bits >= 128 { u128::MAX } else { 1u128 << host_bits };
        NetInfo { network: net, netmask: net.netmask(), broadcast: net.broadcast(), hostmask: net.hostmask(), size }
    }
}

/// `ip_hex` as HoneyDB prints it: lower-case, unpadded, `0x` prefix
/// (`8.8.8.8` → `0x8080808`).
pub fn ip_hex(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => format!("{:#x}", u32::from(a)),
        IpAddr::V6(a) => format!("{:#x}", u128::from(a)),
    }
}

/// Error of [`network_addresses`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("network {net} has {size} addresses, more than the limit of {limit}")]
pub struct TooLarge {
    /// The network asked for.
    pub net: IpNet,
    /// Its size (saturated).
    pub size: u128,
    /// The limit.
    pub limit: u128,
}

/// All addresses of `net`, refusing networks larger than `limit` so a request for
/// `/8` cannot allocate gigabytes.
pub fn network_addresses(net: IpNet, limit: u128) -> Result<Vec<IpAddr>, TooLarge> {
    let info = NetInfo::of(net);
    if info.size > limit {
        return Err(TooLarge { net, size: info.size, limit });
    }
    Ok(all_addresses(net.trunc()))
}

/// Every address of `net`, network and broadcast included (unlike `IpNet::hosts`).
fn all_addresses(net: IpNet) -> Vec<IpAddr> {
    match net {
        IpNet::V4(n) => {
            (u32::from(n.network())..=u32::from(n.broadcast())).map(|a| IpAddr::V4(Ipv4Addr::from(a))).collect()
        }
        IpNet::V6(n) => {
            (u128::from(n.network())..=u128::from(n.broadcast())).map(|a| IpAddr::V6(Ipv6Addr::from(a))).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test ip")
    }

    #[test]
    fn cidrs_of_ranges() {
        let r = IpRange::new(ip("215.0.0.0"), ip("215.1.3.255")).expect("range");
        let v: Vec<String> = r.to_cidrs().iter().map(|n| n.to_string()).collect();
        assert_eq!(v, ["215.0.0.0/16", "215.1.0.0/22"]);
        let all = IpRange::new(ip("0.0.0.0"), ip("255.255.255.255")).expect("range");
        assert_eq!(all.to_cidrs(), vec!["0.0.0.0/0".parse::<IpNet>().expect("net")]);
        let all6 = IpRange::new(ip("::"), ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")).expect("range");
        assert_eq!(all6.to_cidrs(), vec!["::/0".parse::<IpNet>().expect("net")]);
    }

    #[test]
    fn routed_prefix_inside_range() {
        let r = IpRange::new(ip("8.8.8.0"), ip("8.8.8.255")).expect("range");
        assert_eq!(r.cidr_containing(ip("8.8.8.8")), Some("8.8.8.0/24".parse().expect("net")));
        let r = IpRange::new(ip("215.0.0.0"), ip("215.1.3.255")).expect("range");
        assert_eq!(r.cidr_containing(ip("215.1.2.3")), Some("215.1.0.0/22".parse().expect("net")));
        assert_eq!(r.cidr_containing(ip("216.0.0.0")), None);
    }

    #[test]
    fn netinfo_matches_spec_example() {
        let n = NetInfo::of("8.8.8.0/24".parse().expect("net"));
        assert_eq!(n.netmask, ip("255.255.255.0"));
        assert_eq!(n.broadcast, ip("8.8.8.255"));
        assert_eq!(n.hostmask, ip("0.0.0.255"));
        assert_eq!(n.size, 256);
        assert_eq!(ip_hex(ip("8.8.8.8")), "0x8080808");
    }

    #[test]
    fn network_addresses_capped() {
        let v = network_addresses("8.8.8.8/24".parse().expect("net"), 65536).expect("small");
        assert_eq!(v.len(), 256);
        assert_eq!(v[0], ip("8.8.8.0"));
        assert_eq!(v[255], ip("8.8.8.255"));
        assert!(network_addresses("10.0.0.0/8".parse().expect("net"), 65536).is_err());
        assert_eq!(network_addresses("2001:db8::/126".parse().expect("net"), 10).expect("v6").len(), 4);
    }

    #[test]
    fn mapped_addresses_are_ipv4() {
        assert_eq!(parse_ip_or_cidr("::ffff:1.2.3.4"), parse_ip_or_cidr("1.2.3.4"));
        assert_eq!(parse_ip_or_cidr("::ffff:1.2.3.0/120"), parse_ip_or_cidr("1.2.3.0/24"));
        assert!(matches!(parse_ip_or_cidr("::ffff:0:0/96"), Some(IpRange::V6(..))));
        assert_eq!(parse_ip_or_cidr(" 10.1.2.3/8 "), parse_ip_or_cidr("10.0.0.0/8"));
        assert_eq!(parse_ip_or_cidr("nonsense"), None);
    }
}
