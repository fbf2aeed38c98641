//! ASN tables (ip-location-db CSV, iptoasn TSV) and bogons (every IANA
//! special-purpose block, Team Cymru full bogons).

mod common;

use apiary_intel::parse::asn::{parse_ip_location_db_csv, parse_iptoasn_tsv};
use apiary_intel::parse::iana::{builtin, parse_special_registry, Reachability};
use apiary_intel::parse::lists::parse_plain;
use apiary_intel::{Intel, IpRange, NetInfo};
use common::{ip, read};
use ipnet::IpNet;

fn ip_location_db() -> Intel {
    let mut rows = parse_ip_location_db_csv(&read("geo/ip-location-db-asn/asn-ipv4.subset.csv")).expect("v4 csv");
    assert_eq!(rows.len(), 1905);
    let v6 = parse_ip_location_db_csv(&read("geo/ip-location-db-asn/asn-ipv6.subset.csv")).expect("v6 csv");
    assert_eq!(v6.len(), 501);
    rows.extend(v6);
    Intel::builder().asn(&rows).build()
}

#[test]
fn fixture_asn_rows_for_well_known_addresses() {
    let intel = ip_location_db();

    let g = intel.asn(ip("8.8.8.8")).expect("8.8.8.8");
    assert_eq!((g.asn, g.name), (15169, "Google LLC"));
    assert_eq!(g.network, "8.8.8.0/24".parse::<IpNet>().expect("net"));
    let n = g.netinfo();
    assert_eq!(n, NetInfo::of("8.8.8.0/24".parse().expect("net")));
    assert_eq!(
        (n.netmask, n.broadcast, n.hostmask, n.size),
        (ip("255.255.255.0"), ip("8.8.8.255"), ip("0.0.0.255"), 256)
    );

    let c = intel.asn(ip("1.1.1.1")).expect("1.1.1.1");
    // The quoted name with a comma is read whole.
    assert_eq!((c.asn, c.name), (13335, "Cloudflare, Inc."));
    assert_eq!(c.network.to_string(), "1.1.1.0/24");

    let g6 = intel.asn(ip("2001:4860:4860::8888")).expect("v6");
    assert_eq!((g6.asn, g6.name), (15169, "Google LLC"));
    // Its row, 2001:4860:480d::-2001:4860:ffff:…, is not CIDR aligned: the routed
    // prefix is the largest CIDR inside the row that holds the address.
    assert!(g6.network.contains(&ip("2001:4860:4860::8888")));
    assert_eq!(g6.network.to_string(), "2001:4860:4840::/42");

    // Other rows around the subset's probe points.
    assert_eq!(intel.asn(ip("1.0.64.1")).map(|a| a.name), Some("Enecom,Inc."));
    assert!(intel.asn(ip("45.33.32.156")).is_some());
    assert!(intel.asn(ip("185.220.101.1")).is_some());
    // A gap between subset blocks.
    assert_eq!(intel.asn(ip("100.0.0.1")), None);
    // IPv4-mapped IPv6 answers as IPv4.
    assert_eq!(intel.asn(ip("::ffff:8.8.8.8")).map(|a| a.asn), Some(15169));
}

#[test]
fn overlapping_rows_resolve_to_the_more_specific_later_row() {
    let intel = ip_location_db();
    // 214.95.0.0-215.0.255.255 AS749, then 215.0.0.0-215.1.3.255 AS721.
    assert_eq!(intel.asn(ip("214.95.0.1")).map(|a| a.asn), Some(749));
    assert_eq!(intel.asn(ip("214.255.255.255")).map(|a| a.asn), Some(749));
    assert_eq!(intel.asn(ip("215.0.0.0")).map(|a| a.asn), Some(721));
    assert_eq!(intel.asn(ip("215.0.255.255")).map(|a| a.asn), Some(721));
    assert_eq!(intel.asn(ip("215.1.3.255")).map(|a| a.asn), Some(721));
    assert_eq!(intel.asn(ip("215.1.2.3")).map(|a| a.network.to_string()), Some("215.1.0.0/22".into()));
}

#[test]
fn prefixes_and_names_of_an_asn() {
    let intel = ip_location_db();
    assert_eq!(intel.as_name(15169), Some("Google LLC"));
    assert_eq!(intel.as_name(64512), None);
    let p = intel.prefixes(15169);
    assert!(p.contains(&"8.8.8.0/24".parse().expect("net")), "{p:?}");
    assert!(p.iter().any(|n| n.contains(&ip("2001:4860:4860::8888"))));
    // Sorted, IPv4 first, none covering another.
    assert!(p.iter().position(|n| matches!(n, IpNet::V6(_))) > p.iter().rposition(|n| matches!(n, IpNet::V4(_))));
    for w in p.windows(2) {
        assert!(!w[0].contains(&w[1]));
    }
    assert!(intel.prefixes(64512).is_empty());
}

#[test]
fn iptoasn_tsv() {
    let rows = parse_iptoasn_tsv(&read("feeds/iptoasn/ip2asn-v4.tsv.head")).expect("tsv");
    assert_eq!(rows.len(), 400);
    assert_eq!(rows[0].country.as_deref(), Some("US"));
    let intel = Intel::builder().asn(&rows).build();
    let one = intel.asn(ip("1.1.1.1")).expect("1.1.1.1");
    assert_eq!((one.asn, one.name), (7497, "CSTNET-AS-AP Computer Network Information Center"));
    assert_eq!(one.network.to_string(), "1.1.1.1/32");
    assert_eq!(intel.asn(ip("1.1.1.0")).map(|a| a.asn), Some(13335));
    assert_eq!(intel.asn(ip("1.1.1.2")).map(|a| a.asn), Some(13335));
    assert_eq!(intel.asn(ip("74.125.139.7")).map(|a| a.name), Some("GOOGLE - Google LLC"));
    // AS 0 ("Not routed") rows carry no ASN.
    let unrouted = parse_iptoasn_tsv(
        b"0.0.0.0\t0.255.255.255\t0\tNone\tNot routed\n1.0.0.0\t1.0.0.255\t13335\tUS\tCLOUDFLARENET\n",
    )
    .expect("tsv");
    assert_eq!(unrouted.len(), 1);
}

/// Expected bogon status of a registry block: `False` → bogon; `True`/`N/A` →
/// not; empty (deprecated) → whatever encloses it.
fn expected_bogon(intel: &Intel, block: &apiary_intel::parse::iana::SpecialBlock) -> bool {
    match block.reachable {
        Reachability::No => true,
        Reachability::Yes | Reachability::NotApplicable => false,
        Reachability::Unspecified => {
            // Deprecated: 192.88.99.0/24 has no enclosing block, 2001:10::/28 sits in 2001::/23.
            let _ = intel;
            matches!(block.net, IpNet::V6(_))
        }
    }
}

#[test]
fn bogon_status_of_every_iana_special_purpose_block() {
    let intel = Intel::default();
    let blocks = builtin();
    assert_eq!(blocks.len(), 51);
    // The shipped copies are the fixture files, byte for byte.
    let v4 = parse_special_registry(&read("feeds/iana/iana-ipv4-special-registry-1.csv")).expect("v4");
    let v6 = parse_special_registry(&read("feeds/iana/iana-ipv6-special-registry-1.csv")).expect("v6");
    assert_eq!([v4, v6].concat(), blocks);

    for b in &blocks {
        let want = expected_bogon(&intel, b);
        // Each block's first and last address, unless a more specific block with a
        // different status covers that address.
        for probe in [b.net.network(), b.net.broadcast()] {
            let most_specific = blocks
                .iter()
                .filter(|o| o.net.contains(&probe) && o.reachable != Reachability::Unspecified)
                .max_by_key(|o| o.net.prefix_len());
            let expect = match most_specific {
                Some(o) if o.net.prefix_len() > b.net.prefix_len() => expected_bogon(&intel, o),
                _ => want,
            };
            assert_eq!(intel.is_bogon(probe), expect, "{probe} in {} ({})", b.net, b.name);
        }
    }

    // Spot checks of the interesting cases.
    for (addr, bogon) in [
        ("0.0.0.0", true),
        ("10.1.2.3", true),
        ("100.64.0.1", true),
        ("127.0.0.1", true),
        ("169.254.1.1", true),
        ("172.16.0.1", true),
        ("192.0.0.8", true),
        ("192.0.0.9", false),  // PCP anycast: globally reachable inside a False /24
        ("192.0.0.10", false), // TURN anycast
        ("192.0.0.170", true), // the cell with two CIDRs
        ("192.0.0.171", true),
        ("192.0.2.1", true),
        ("192.31.196.1", false),
        ("192.88.99.1", false), // deprecated 6to4 relay, no enclosing block
        ("192.88.99.2", true),  // 6a44 relay: False
        ("192.168.1.1", true),
        ("198.18.0.1", true),
        ("203.0.113.5", true),
        ("240.0.0.1", true),
        ("255.255.255.255", true),
        ("8.8.8.8", false),
        ("::", true),
        ("::1", true),
        ("::ffff:10.0.0.1", true),
        ("::ffff:8.8.8.8", false),
        ("64:ff9b::1", false),
        ("64:ff9b:1::1", true),
        ("100::1", true),
        ("2001::1", false),   // Teredo: N/A
        ("2001:1::1", false), // PCP anycast inside the False /23
        ("2001:1::4", true),
        ("2001:10::1", true),  // deprecated ORCHID inside 2001::/23
        ("2001:20::1", false), // ORCHIDv2
        ("2001:db8::1", true),
        ("2002::1", false), // 6to4
        ("3fff::1", true),
        ("fc00::1", true),
        ("fe80::1", true),
        ("2001:4860:4860::8888", false),
    ] {
        assert_eq!(intel.is_bogon(ip(addr)), bogon, "{addr}");
    }
    assert_eq!(intel.special_block(ip("192.0.0.9")).map(|b| b.name.as_str()), Some("Port Control Protocol Anycast"));
}

#[test]
fn team_cymru_full_bogons_extend_the_registry() {
    let v4 = parse_plain(&read("feeds/team-cymru/fullbogons-ipv4.txt")).expect("cymru v4");
    let v6 = parse_plain(&read("feeds/team-cymru/fullbogons-ipv6.txt.head")).expect("cymru v6");
    assert_eq!(v4.version.as_deref(), Some("1647435002 (Wed Mar 16 12:50:02 2022 GMT)"));
    assert_eq!(v6.ranges.len(), 299);
    let intel = Intel::builder().bogons(&v4.ranges).bogons(&v6.ranges).build();
    let without = Intel::default();
    let sample = v4
        .ranges
        .iter()
        .map(IpRange::start)
        .find(|a| !without.is_bogon(*a))
        .expect("a Cymru bogon that IANA does not list");
    assert!(intel.is_bogon(sample), "{sample}");
    for r in v4.ranges.iter().chain(&v6.ranges) {
        let a = r.start();
        // Explicitly reachable IANA blocks stay non-bogons even inside Cymru ranges.
        if without.special_block(a).is_some_and(|b| b.reachable != Reachability::No) {
            continue;
        }
        assert!(intel.is_bogon(a), "{a}");
        assert!(intel.is_bogon(r.end()), "{}", r.end());
    }
    assert!(!intel.is_bogon(ip("8.8.8.8")));
}
