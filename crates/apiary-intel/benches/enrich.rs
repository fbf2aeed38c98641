//! Full single-IP enrichment throughput, with the raw `maxminddb` City lookup
//! beside it as the reference.
//!
//! Sources: every fixture format (City test database, ip-location-db country
//! mmdb, Tor lists, all threat lists, cloud ranges, scanner lists), plus a
//! synthetic ASN table of full production size (411,961 IPv4 + 103,197 IPv6 rows,
//! the row counts of `@ip-location-db/asn`) so the ASN binary search has real
//! depth. Run with `cargo bench -p apiary-intel --bench enrich`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::time::Duration;

use apiary_intel::parse::asn::{parse_ip_location_db_csv, AsnRow};
use apiary_intel::parse::cloud::{parse_aws, parse_azure, parse_cloudflare, parse_gcp, parse_oracle};
use apiary_intel::parse::lists::{parse_dshield_block, parse_plain, parse_threatfox_csv, parse_tor_exit_addresses};
use apiary_intel::parse::misp::parse_warning_list;
use apiary_intel::parse::mmdb::GeoDb;
use apiary_intel::{Intel, IpRange};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn read(rel: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures").join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Deterministic pseudo-random numbers (no extra dependency).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 11
    }
}

/// A full-size synthetic ASN table: contiguous ranges of random length.
fn synthetic_asn() -> Vec<AsnRow> {
    let mut rng = Lcg(42);
    let mut rows = Vec::with_capacity(520_000);
    let v4_rows = 411_961u64;
    let step = (u64::from(u32::MAX) / v4_rows) as u32;
    let mut start: u32 = 1 << 24;
    for _ in 0..v4_rows {
        let len = 1 + (rng.next() as u32 % step.max(2));
        let end = start.saturating_add(len - 1);
        if let Some(range) = IpRange::new(Ipv4Addr::from(start).into(), Ipv4Addr::from(end).into()) {
            rows.push(AsnRow { range, asn: 1 + (rng.next() % 80_000) as u32, name: String::new(), country: None });
        }
        start = end.saturating_add(1 + (rng.next() % 64) as u32);
    }
    let mut s6: u128 = 0x2000u128 << 112;
    for _ in 0..103_197u32 {
        let len = 1u128 << (80 + rng.next() % 16);
        if let Some(range) = IpRange::new(Ipv6Addr::from(s6).into(), Ipv6Addr::from(s6 + len - 1).into()) {
            rows.push(AsnRow { range, asn: 1 + (rng.next() % 80_000) as u32, name: String::new(), country: None });
        }
        s6 += len << 1;
    }
    rows
}

fn build_intel() -> Intel {
    let mut asn = parse_ip_location_db_csv(&read("geo/ip-location-db-asn/asn-ipv4.subset.csv")).expect("csv");
    asn.extend(parse_ip_location_db_csv(&read("geo/ip-location-db-asn/asn-ipv6.subset.csv")).expect("csv6"));
    let synthetic = synthetic_asn();
    let city = GeoDb::from_bytes(read("geo/maxmind/test-data/GeoIP2-City-Test.mmdb")).expect("city");
    let country = GeoDb::from_bytes(read("geo/ip-location-db-geo-whois-asn-country/geo-whois-asn-country-ipv4.mmdb"))
        .expect("cc");
    let list = |rel: &str| parse_plain(&read(rel)).expect(rel).ranges;
    let mut b = Intel::builder()
        .asn(&synthetic)
        .asn(&asn)
        .geo(city.into())
        .geo(country.into())
        .bogons(&list("feeds/team-cymru/fullbogons-ipv4.txt"))
        .tor(&list("feeds/tor/torbulkexitlist"))
        .tor(&parse_tor_exit_addresses(&read("feeds/tor/exit-addresses.subset")).expect("tor").ranges)
        .threat_list("sansip", &parse_dshield_block(&read("feeds/dshield/block.txt")).expect("dshield").ranges)
        .threat_list("ciarmy", &list("feeds/ciarmy/ci-badguys.txt.head"))
        .threat_list("et-compromised", &list("feeds/emergingthreats/compromised-ips.txt"))
        .threat_list("pallebone", &list("feeds/pallebone/BlockIP.txt.subset"))
        .threat_list(
            "threatfox",
            &parse_threatfox_csv(&read("feeds/threatfox/threatfox-full-export.excerpt.csv")).expect("tf").ranges,
        )
        .threat_list("blocklist_net_ua", &list("feeds/blocklist-de/all.txt.subset"))
        .threat_list("project-honeypot", &list("feeds/firehol/spamhaus_drop.netset.head"))
        .cloud(&parse_aws(&read("feeds/cloud/aws/ip-ranges.subset.json")).expect("aws"))
        .cloud(&parse_azure(&read("feeds/cloud/azure/ServiceTags_Public_20251020.subset.json")).expect("azure"))
        .cloud(&parse_gcp(&read("feeds/cloud/gcp/cloud.json")).expect("gcp"))
        .cloud(&parse_oracle(&read("feeds/cloud/oracle/public_ip_ranges.subset.json")).expect("oci"))
        .cloud(&parse_cloudflare(&read("feeds/cloud/cloudflare/ips-v4")).expect("cf"));
    for n in ["shodan-scanning", "censys-scanning", "shadowserver-nt-scanning", "stretchoid-nt-scanning"] {
        b = b.scanner_list(n, &parse_warning_list(&read(&format!("feeds/misp-warninglists/{n}.json"))).expect(n));
    }
    b.build()
}

/// Addresses with a City record (first address of every network in the source JSON).
fn city_hits() -> Vec<IpAddr> {
    let v: serde_json::Value =
        serde_json::from_slice(&read("geo/maxmind/source-data/GeoIP2-City-Test.json")).expect("json");
    let mut out = Vec::new();
    for obj in v.as_array().expect("array") {
        for k in obj.as_object().expect("obj").keys() {
            let net: ipnet::IpNet = k.parse().expect("net");
            let a = net.network();
            out.push(match a {
                IpAddr::V6(v6) if (u128::from(v6) >> 32) == 0 => IpAddr::V4((u128::from(v6) as u32).into()),
                other => other,
            });
        }
    }
    out
}

fn random_v4(n: usize) -> Vec<IpAddr> {
    let mut rng = Lcg(7);
    (0..n).map(|_| IpAddr::V4(Ipv4Addr::from(rng.next() as u32))).collect()
}

fn bench(c: &mut Criterion) {
    let intel = build_intel();
    let hits = city_hits();
    let random = random_v4(4096);
    let city = GeoDb::from_bytes(read("geo/maxmind/test-data/GeoIP2-City-Test.mmdb")).expect("city");
    let reader = city.reader();

    let mut g = c.benchmark_group("single_ip");
    g.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    g.bench_function("enrich_city_hits", |b| {
        b.iter(|| {
            i = (i + 1) % hits.len();
            black_box(intel.enrich(black_box(hits[i])))
        })
    });
    let mut j = 0usize;
    g.bench_function("enrich_random_v4", |b| {
        b.iter(|| {
            j = (j + 1) % random.len();
            black_box(intel.enrich(black_box(random[j])))
        })
    });
    let mut k = 0usize;
    g.bench_function("raw_maxminddb_city_decode", |b| {
        b.iter(|| {
            k = (k + 1) % hits.len();
            let r = reader.lookup(black_box(hits[k])).ok();
            black_box(r.and_then(|r| r.decode::<maxminddb::geoip2::City<'_>>().ok().flatten()))
        })
    });
    let mut l = 0usize;
    g.bench_function("geo_only_city_hits", |b| {
        b.iter(|| {
            l = (l + 1) % hits.len();
            black_box(city.lookup(black_box(hits[l])))
        })
    });
    let mut m = 0usize;
    g.bench_function("asn_only_random_v4", |b| {
        b.iter(|| {
            m = (m + 1) % random.len();
            black_box(intel.asn(black_box(random[m])))
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    targets = bench
}
criterion_main!(benches);
