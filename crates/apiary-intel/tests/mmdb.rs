//! MaxMind DB parsing, checked against MaxMind's own source JSON of the test
//! databases, plus the corrupt files of bad-data/ and the flat ip-location-db file.

mod common;

use std::net::IpAddr;
use std::path::Path;

use apiary_intel::parse::mmdb::{parse_asn_mmdb, GeoDb, GeoSchema};
use apiary_intel::{Intel, IpRange};
use common::{fixture, ip, read};
use ipnet::IpNet;
use serde_json::Value;

/// `[{"<cidr>": {record}}, ...]` → `(net, record)`.
fn source_records(rel: &str) -> Vec<(IpNet, Value)> {
    let v: Value = serde_json::from_slice(&read(rel)).expect("source json");
    let mut out = Vec::new();
    for obj in v.as_array().expect("array") {
        for (k, rec) in obj.as_object().expect("object") {
            out.push((k.parse::<IpNet>().expect("cidr"), rec.clone()));
        }
    }
    out
}

/// Records whose network overlaps no other record (the expected answer is then unambiguous).
fn unambiguous(recs: &[(IpNet, Value)]) -> Vec<(IpNet, Value)> {
    recs.iter()
        .filter(|(n, _)| recs.iter().filter(|(m, _)| m.contains(&n.network()) || n.contains(&m.network())).count() == 1)
        .cloned()
        .collect()
}

/// The addresses to probe for a source network: first and last, and for `::a.b.c.d/…`
/// (how the source JSON writes IPv4 networks) the IPv4 form too.
fn probes(n: &IpNet) -> Vec<IpAddr> {
    let mut v = vec![n.network(), n.broadcast()];
    if let IpNet::V6(v6) = n {
        if v6.prefix_len() >= 96 && (u128::from(v6.network()) >> 32) == 0 {
            v.push(IpAddr::V4((u128::from(v6.network()) as u32).into()));
        }
    }
    v
}

#[test]
fn asn_test_database_matches_source_json() {
    let (rows, version) = parse_asn_mmdb(read("geo/maxmind/test-data/GeoLite2-ASN-Test.mmdb")).expect("asn mmdb");
    assert!(version.starts_with("GeoLite2-ASN"), "{version}");
    let intel = Intel::builder().asn(&rows).build();
    let recs = source_records("geo/maxmind/source-data/GeoLite2-ASN-Test.json");
    assert_eq!(recs.len(), 720);
    let mut checked = 0;
    for (net, rec) in unambiguous(&recs) {
        let want_asn = rec["autonomous_system_number"].as_u64().expect("asn") as u32;
        let want_org = rec.get("autonomous_system_organization").and_then(Value::as_str);
        for p in probes(&net) {
            let got = intel.asn(p).unwrap_or_else(|| panic!("{p} ({net}) not found"));
            assert_eq!(got.asn, want_asn, "{p} in {net}");
            if let Some(org) = want_org {
                assert_eq!(got.name, org, "{p} in {net}");
                assert!(intel.as_name(want_asn).is_some_and(|n| !n.is_empty()), "AS{want_asn}");
            }
            // The routed prefix holds the address (the writer may merge adjacent
            // networks with equal data, so it can be larger than the source network).
            assert!(got.network.contains(&p.to_canonical()) || IpRange::from_net(got.network).contains(p), "{net}");
            checked += 1;
        }
    }
    assert!(checked > 1400, "{checked}");
    let telstra = intel.asn(ip("1.128.0.1")).expect("1.128.0.1");
    assert_eq!(telstra.asn, 1221);
    assert_eq!(telstra.name, "Telstra Pty Ltd");
}

fn en<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(*p)?;
    }
    cur.as_str()
}

fn check_city_db(mmdb: &str, json: &str) -> usize {
    let db = GeoDb::from_bytes(read(mmdb)).expect("city mmdb");
    assert_eq!(db.schema(), GeoSchema::GeoIp2);
    let recs = source_records(json);
    let mut checked = 0;
    for (net, rec) in unambiguous(&recs) {
        let has_geo = ["city", "country", "registered_country", "location", "postal", "subdivisions"]
            .iter()
            .any(|k| rec.get(*k).is_some());
        for p in probes(&net) {
            if !has_geo {
                // e.g. `214.1.1.0/24 {"traits": {"is_anycast": true}}`: nothing to report.
                assert_eq!(db.lookup(p), None, "{p} in {net}");
                continue;
            }
            let g = db.lookup(p).unwrap_or_else(|| panic!("{p} ({net}) not found in {mmdb}"));
            let country = rec.get("country").or_else(|| rec.get("registered_country"));
            assert_eq!(g.country_iso, country.and_then(|c| en(c, &["iso_code"])), "{p} in {net}");
            if let Some(name) = country.and_then(|c| en(c, &["names", "en"])) {
                assert_eq!(g.country_name, Some(name), "{p}");
            }
            assert_eq!(g.city, en(&rec, &["city", "names", "en"]), "{p} in {net}");
            assert_eq!(g.postal_code, en(&rec, &["postal", "code"]), "{p}");
            assert_eq!(g.latitude, rec.pointer("/location/latitude").and_then(Value::as_f64), "{p}");
            assert_eq!(g.longitude, rec.pointer("/location/longitude").and_then(Value::as_f64), "{p}");
            assert_eq!(g.region_iso, rec.pointer("/subdivisions/0/iso_code").and_then(Value::as_str), "{p}");
            assert_eq!(g.region_name, rec.pointer("/subdivisions/0/names/en").and_then(Value::as_str), "{p}");
            checked += 1;
        }
    }
    checked
}

#[test]
fn city_test_databases_match_source_json() {
    let a =
        check_city_db("geo/maxmind/test-data/GeoIP2-City-Test.mmdb", "geo/maxmind/source-data/GeoIP2-City-Test.json");
    let b = check_city_db(
        "geo/maxmind/test-data/GeoLite2-City-Test.mmdb",
        "geo/maxmind/source-data/GeoLite2-City-Test.json",
    );
    assert!(a > 400 && b > 400, "{a} {b}");

    let db = GeoDb::from_bytes(read("geo/maxmind/test-data/GeoIP2-City-Test.mmdb")).expect("city");
    let london = db.lookup(ip("81.2.69.160")).expect("81.2.69.160");
    assert_eq!(london.city, Some("London"));
    assert_eq!(london.country_iso, Some("GB"));
    assert_eq!(london.country_name, Some("United Kingdom"));
    assert_eq!(london.region_iso, Some("ENG"));
    assert_eq!(london.region_name, Some("England"));
    // IPv4-mapped form of the same address answers the same.
    assert_eq!(db.lookup(ip("::ffff:81.2.69.160")), Some(london));
    // Not in the test database.
    assert_eq!(db.lookup(ip("8.8.8.8")), None);
}

#[test]
fn country_test_database_reads() {
    let db = GeoDb::from_bytes(read("geo/maxmind/test-data/GeoLite2-Country-Test.mmdb")).expect("country");
    assert_eq!(db.schema(), GeoSchema::GeoIp2);
    let g = db.lookup(ip("81.2.69.160")).expect("gb");
    assert_eq!(g.country_iso, Some("GB"));
    assert_eq!(g.city, None);
}

#[test]
fn flat_ip_location_db_country_file() {
    let db = GeoDb::from_bytes(read("geo/ip-location-db-geo-whois-asn-country/geo-whois-asn-country-ipv4.mmdb"))
        .expect("flat mmdb");
    assert_eq!(db.schema(), GeoSchema::Flat);
    assert!(db.database_type().starts_with("country"), "{}", db.database_type());
    assert_eq!(db.build_epoch(), 1781725910);
    let g = db.lookup(ip("8.8.8.8")).expect("8.8.8.8");
    assert_eq!(g.country_iso, Some("US"));
    assert_eq!(g.country_name, Some("United States"));
    assert_eq!(g.city, None);
    assert_eq!(g.latitude, None);
    // An IPv6 address in an IPv4-only database: no answer, no error.
    assert_eq!(db.lookup(ip("2001:4860::1")), None);
}

#[test]
fn asn_database_is_not_a_geo_database_and_vice_versa() {
    let e = GeoDb::from_bytes(read("geo/maxmind/test-data/GeoLite2-ASN-Test.mmdb")).expect_err("asn as geo");
    assert!(e.to_string().contains("ASN database"), "{e}");
    let e = parse_asn_mmdb(read("geo/maxmind/test-data/GeoIP2-City-Test.mmdb")).expect_err("city as asn");
    assert!(e.to_string().contains("no ASN records"), "{e}");
}

fn bad_files() -> Vec<std::path::PathBuf> {
    let mut v = Vec::new();
    let root = fixture("geo/maxmind/bad-data");
    for dir in std::fs::read_dir(&root).expect("bad-data") {
        let dir = dir.expect("entry").path();
        if dir.is_dir() {
            for f in std::fs::read_dir(&dir).expect("dir") {
                let f = f.expect("file").path();
                if f.extension().and_then(|e| e.to_str()) == Some("mmdb") {
                    v.push(f);
                }
            }
        }
    }
    v.sort();
    v
}

fn name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

#[test]
fn corrupt_databases_give_errors_not_panics() {
    let files = bad_files();
    assert_eq!(files.len(), 21, "{files:?}");
    for f in &files {
        let bytes = std::fs::read(f).expect("read");
        let n = name(f);
        let geo = GeoDb::from_bytes(bytes.clone());
        let asn = parse_asn_mmdb(bytes);
        if n == "libmaxminddb-uint64-max-epoch.mmdb" {
            // Structurally valid; whatever it holds, the epoch must not overflow anything.
            if let Ok(db) = &geo {
                assert_eq!(db.build_epoch(), u64::MAX);
                let _ = db.version();
            }
            continue;
        }
        assert!(geo.is_err(), "{n} opened as geo");
        assert!(asn.is_err(), "{n} opened as asn");
        let msg = geo.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(!msg.is_empty(), "{n}");
    }
}
