//! The feed manager: bad copies rejected with a clear reason while the last good
//! copy stays in service, collapse detection, restart from the state directory,
//! TOML configuration, and a full enrichment over every fixture source.

mod common;

use std::path::Path;

use apiary_intel::feeds::FeedState;
use apiary_intel::{FeedConfig, FeedError, FeedKind, FeedManager, FileFetcher, IntelConfig, ParseError};
use common::{fixture, ip, read};

fn config(state: &Path, feeds: Vec<FeedConfig>) -> IntelConfig {
    IntelConfig { state_dir: state.to_path_buf(), min_ratio: 0.5, feeds }
}

fn manager(state: &Path, feeds: Vec<FeedConfig>) -> FeedManager {
    FeedManager::new(config(state, feeds), Box::new(FileFetcher)).expect("manager")
}

#[test]
fn bad_downloads_are_rejected_and_the_good_copy_stays() {
    let dir = tempfile::tempdir().expect("tmp");
    let m = manager(
        dir.path(),
        vec![
            FeedConfig::file(
                "azure",
                FeedKind::AzureServiceTags,
                fixture("feeds/cloud/azure/ServiceTags_Public_20251020.subset.json"),
            ),
            FeedConfig::file(
                "oracle",
                FeedKind::OracleIpRanges,
                fixture("feeds/cloud/oracle/public_ip_ranges.subset.json"),
            ),
        ],
    );
    assert!(m.intel().cloud_prefixes("azure").is_none());
    m.refresh("azure").expect("good azure");
    m.refresh("oracle").expect("good oracle");
    let good_azure = m.intel().cloud_prefixes("azure").map(|c| c.prefixes.len()).expect("azure loaded");
    let probe = ip("129.80.0.1");
    assert_eq!(m.intel().cloud(probe).map(|h| h.provider), Some("oracle"));

    for (feed, bad, expect) in [
        ("azure", "feeds/bad/microsoft-azure-ip-ranges.404-html.json", "404"),
        ("azure", "feeds/bad/microsoft-azure-ip-ranges.serverbusy-xml-bom.json", "ServerBusy"),
        ("oracle", "feeds/bad/oracle-cloud-ip-ranges.502-bad-gateway.json", "502 Bad Gateway"),
    ] {
        let err = m.ingest(feed, read(bad)).expect_err(bad);
        match &err {
            FeedError::Rejected { reason: ParseError::ErrorPage(msg), .. } => {
                assert!(msg.contains(expect), "{bad}: {msg}")
            }
            other => panic!("{bad}: unexpected {other:?}"),
        }
        assert!(err.to_string().contains("HTML/XML error page"), "{err}");
        // Still serving the good copy.
        assert_eq!(m.intel().cloud_prefixes("azure").map(|c| c.prefixes.len()), Some(good_azure));
        assert_eq!(m.intel().cloud(probe).map(|h| h.provider), Some("oracle"));
        let st = m.status().into_iter().find(|s| s.name == feed).expect("status");
        assert_eq!(st.state, FeedState::Stale);
        assert!(st.last_error.as_deref().is_some_and(|e| e.contains(expect)), "{st:?}");
        // The saved copy on disk is still the good one.
        let saved = std::fs::read(dir.path().join(format!("{feed}.data"))).expect("saved");
        assert!(!saved.starts_with(b"<") && !saved.starts_with(b"\xEF\xBB\xBF<"));
    }

    // Empty files are refused too.
    let err = m.ingest("oracle", Vec::new()).expect_err("empty");
    assert!(matches!(err, FeedError::Rejected { reason: ParseError::Empty(_), .. }), "{err:?}");
    // A good copy clears the error.
    m.refresh("oracle").expect("good again");
    let st = m.status().into_iter().find(|s| s.name == "oracle").expect("status");
    assert_eq!((st.state, st.last_error), (FeedState::Ok, None));
}

#[test]
fn collapse_in_entry_count_is_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let m = manager(
        dir.path(),
        vec![FeedConfig::file("ciarmy", FeedKind::PlainList, fixture("feeds/ciarmy/ci-badguys.txt.head"))],
    );
    let st = m.refresh("ciarmy").expect("good");
    assert_eq!(st.entries, 500);
    // 10 lines out of 500: a truncated download.
    let truncated: Vec<u8> = String::from_utf8(read("feeds/ciarmy/ci-badguys.txt.head"))
        .expect("utf8")
        .lines()
        .take(10)
        .collect::<Vec<_>>()
        .join("\n")
        .into_bytes();
    let err = m.ingest("ciarmy", truncated.clone()).expect_err("collapse");
    assert!(matches!(err, FeedError::Collapse { previous: 500, new: 10, .. }), "{err:?}");
    assert_eq!(m.status()[0].entries, 500);
    assert_eq!(m.status()[0].state, FeedState::Stale);
    let first = String::from_utf8(read("feeds/ciarmy/ci-badguys.txt.head")).expect("utf8");
    let first = ip(first.lines().next().expect("line").trim());
    let last_line = first.to_string();
    assert_eq!(m.intel().on_list("ciarmy", first), Some(true), "{last_line}");

    // A per-feed ratio of 0 accepts any shrink.
    let mut cfg = FeedConfig::file("ciarmy", FeedKind::PlainList, fixture("feeds/ciarmy/ci-badguys.txt.head"));
    cfg.min_ratio = Some(0.0);
    let m2 = manager(dir.path(), vec![cfg]);
    assert!(m2.load_state().is_empty());
    assert_eq!(m2.ingest("ciarmy", truncated).expect("accepted").entries, 10);
}

#[test]
fn restart_serves_the_last_good_copy_immediately() {
    let dir = tempfile::tempdir().expect("tmp");
    let src = tempfile::tempdir().expect("src");
    let feed_path = src.path().join("et.txt");
    std::fs::copy(fixture("feeds/emergingthreats/compromised-ips.txt"), &feed_path).expect("copy");
    let feeds = vec![
        FeedConfig::file("et", FeedKind::PlainList, &feed_path).with_list("et-compromised"),
        FeedConfig::file("geo", FeedKind::GeoMmdb, fixture("geo/maxmind/test-data/GeoIP2-City-Test.mmdb")),
    ];
    let et_ip = {
        let m = manager(dir.path(), feeds.clone());
        for (name, r) in m.refresh_all() {
            r.unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let text = String::from_utf8(read("feeds/emergingthreats/compromised-ips.txt")).expect("utf8");
        let a = ip(text.lines().next().expect("line").trim());
        assert_eq!(m.intel().on_list("et-compromised", a), Some(true));
        a
    };
    // The source disappears (network down, file removed): a new process still serves.
    std::fs::remove_file(&feed_path).expect("rm");
    let m = manager(dir.path(), feeds);
    assert!(m.load_state().is_empty());
    let intel = m.intel();
    assert_eq!(intel.on_list("et-compromised", et_ip), Some(true));
    assert_eq!(intel.geo(ip("81.2.69.160")).and_then(|g| g.city), Some("London"));
    let st = m.status();
    assert_eq!(st[0].entries, 296);
    assert!(st[0].version.as_deref().is_some_and(|v| v.starts_with("fnv1a64:")));
    assert!(st[1].version.as_deref().is_some_and(|v| v.starts_with("GeoIP2-City build ")));
    // Refreshing now fails (source gone) but keeps serving.
    let err = m.refresh("et").expect_err("gone");
    assert!(matches!(err, FeedError::Fetch { .. }), "{err:?}");
    assert_eq!(m.intel().on_list("et-compromised", et_ip), Some(true));
    assert_eq!(m.status()[0].state, FeedState::Stale);
    // Due-ness follows the interval.
    let now = apiary_intel::feeds::now_secs();
    assert!(m.refresh_due(now).iter().all(|(n, _)| n == "geo"));
}

#[test]
fn network_urls_are_never_fetched_by_the_file_fetcher() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut cfg = FeedConfig::file("x", FeedKind::PlainList, "/nonexistent");
    cfg.path = None;
    cfg.url = Some("https://example.invalid/list.txt".into());
    let m = manager(dir.path(), vec![cfg]);
    let err = m.refresh("x").expect_err("no network");
    assert!(err.to_string().contains("no network fetcher"), "{err}");
    assert!(matches!(m.refresh("nope"), Err(FeedError::UnknownFeed(_))));
    // Names must be safe file names.
    let bad = IntelConfig {
        state_dir: dir.path().into(),
        min_ratio: 0.5,
        feeds: vec![FeedConfig::file("../evil", FeedKind::PlainList, "/x")],
    };
    assert!(FeedManager::new(bad, Box::new(FileFetcher)).is_err());
}

#[test]
fn config_reads_from_toml() {
    let text = r#"
        state_dir = "/var/lib/apiary/intel"

        [[feeds]]
        name = "ciarmy"
        kind = "plain_list"
        url = "https://cinsscore.com/list/ci-badguys.txt"
        refresh_secs = 3600

        [[feeds]]
        name = "shodan-scanning"
        kind = "misp_warning_list"
        path = "/srv/misp/shodan.json"

        [[feeds]]
        name = "azure-gov"
        kind = "azure_service_tags"
        path = "/srv/azure/gov.json"
        provider = "azure/gov"
        min_ratio = 0.8
        enabled = false
    "#;
    let cfg: IntelConfig = toml::from_str(text).expect("toml");
    assert_eq!(cfg.min_ratio, 0.5);
    assert_eq!(cfg.feeds.len(), 3);
    assert_eq!(cfg.feeds[0].kind, FeedKind::PlainList);
    assert_eq!(cfg.feeds[0].refresh_secs, 3600);
    assert_eq!(cfg.feeds[1].refresh_secs, 86_400);
    assert!(cfg.feeds[1].enabled);
    assert_eq!(cfg.feeds[2].provider.as_deref(), Some("azure/gov"));
    assert!(!cfg.feeds[2].enabled);
}

/// Every fixture source configured at once, as a server would; then one full
/// enrichment per kind of answer.
#[test]
fn full_enrichment_over_all_fixture_sources() {
    let dir = tempfile::tempdir().expect("tmp");
    let f = |name: &str, kind, rel: &str| FeedConfig::file(name, kind, fixture(rel));
    let feeds = vec![
        f("asn-v4", FeedKind::AsnCsv, "geo/ip-location-db-asn/asn-ipv4.subset.csv"),
        f("asn-v6", FeedKind::AsnCsv, "geo/ip-location-db-asn/asn-ipv6.subset.csv"),
        f("asn-mmdb", FeedKind::AsnMmdb, "geo/maxmind/test-data/GeoLite2-ASN-Test.mmdb"),
        f("city", FeedKind::GeoMmdb, "geo/maxmind/test-data/GeoIP2-City-Test.mmdb"),
        f("country", FeedKind::GeoMmdb, "geo/ip-location-db-geo-whois-asn-country/geo-whois-asn-country-ipv4.mmdb"),
        f("cymru-v4", FeedKind::TeamCymruBogons, "feeds/team-cymru/fullbogons-ipv4.txt"),
        f("tor-bulk", FeedKind::TorBulkExitList, "feeds/tor/torbulkexitlist"),
        f("tor-exits", FeedKind::TorExitAddresses, "feeds/tor/exit-addresses.subset"),
        f("firehol-tor", FeedKind::PlainList, "feeds/firehol/tor_exits.ipset.head").with_list("tor"),
        f("sansip", FeedKind::DshieldBlock, "feeds/dshield/block.txt"),
        f("ciarmy", FeedKind::PlainList, "feeds/ciarmy/ci-badguys.txt.head"),
        f("et", FeedKind::PlainList, "feeds/emergingthreats/compromised-ips.txt").with_list("et-compromised"),
        f("pallebone", FeedKind::PlainList, "feeds/pallebone/BlockIP.txt.subset"),
        f("threatfox", FeedKind::ThreatfoxCsv, "feeds/threatfox/threatfox-full-export.excerpt.csv"),
        f("blocklist_net_ua", FeedKind::PlainList, "feeds/blocklist-de/all.txt.subset"),
        f("drop", FeedKind::SpamhausDrop, "feeds/spamhaus/drop.txt.excerpt").with_list("spamhaus-drop"),
        f("aws", FeedKind::AwsIpRanges, "feeds/cloud/aws/ip-ranges.subset.json"),
        f("azure", FeedKind::AzureServiceTags, "feeds/cloud/azure/ServiceTags_Public_20251020.subset.json"),
        f("gcp", FeedKind::GcpCloudJson, "feeds/cloud/gcp/cloud.json"),
        f("cf4", FeedKind::CloudflareIps, "feeds/cloud/cloudflare/ips-v4"),
        f("shodan-scanning", FeedKind::MispWarningList, "feeds/misp-warninglists/shodan-scanning.json"),
        f("shadow", FeedKind::MispWarningList, "feeds/misp-warninglists/shadowserver-nt-scanning.json")
            .with_scanner("shadowserver-nt-scanning"),
    ];
    let m = manager(dir.path(), feeds);
    for (name, r) in m.refresh_all() {
        r.unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let intel = m.intel();

    let e = intel.enrich(ip("8.8.8.8"));
    let asn = e.asn.expect("asn");
    assert_eq!((asn.asn, asn.name, asn.network.to_string()), (15169, "Google LLC", "8.8.8.0/24".to_string()));
    let geo = e.geo.expect("geo from the country file");
    assert_eq!((geo.country_iso, geo.country_name, geo.city), (Some("US"), Some("United States"), None));
    assert!(!e.is_bogon && !e.is_tor && !e.is_threat());
    assert_eq!(e.cloud, None);

    // City database first, then the country fallback.
    assert_eq!(intel.enrich(ip("81.2.69.160")).geo.and_then(|g| g.city), Some("London"));
    // ASN from the MaxMind test database where the CSV subset has nothing.
    assert_eq!(intel.asn(ip("1.128.0.1")).map(|a| a.asn), Some(1221));

    let tor = intel.enrich(ip("185.241.208.232"));
    assert!(tor.is_tor);
    // A generic list routed to the Tor set (FireHOL's tor_exits.ipset of 2015).
    let firehol = apiary_intel::parse::lists::parse_plain(&read("feeds/firehol/tor_exits.ipset.head")).expect("ipset");
    assert!(firehol.ranges.iter().all(|r| intel.is_tor(r.start())));
    assert_eq!(intel.on_list("tor", ip("185.241.208.232")), None, "tor is not a threat list");
    let tf = intel.enrich(ip("8.134.12.90"));
    assert!(tf.is_threat() && tf.on_list("threatfox"), "{tf:?}");
    let pb = intel.enrich(ip("1.9.106.106"));
    assert!(pb.on_list("pallebone"));
    assert!(intel.enrich(ip("207.150.177.1")).on_list("sansip"));
    assert!(intel.enrich(ip("1.4.0.1")).on_list("spamhaus-drop"));
    assert!(intel.enrich(ip("10.0.0.1")).is_bogon);
    let sc = intel.enrich(ip("66.240.192.138")).scanner.expect("shodan");
    assert_eq!((sc.list, sc.info.name.as_str()), ("shodan-scanning", "Shodan"));
    let cf = intel.enrich(ip("173.245.48.1")).cloud.expect("cloudflare");
    assert_eq!(cf.provider, "cloudflare");

    // Missing sources are reported; loaded ones are not.
    let missing = intel.missing();
    assert!(missing.contains(&"threat:project-honeypot".to_string()), "{missing:?}");
    assert!(missing.contains(&"cloud:oracle".to_string()));
    for loaded in ["asn", "geo", "tor", "scanners", "threat:sansip", "threat:threatfox", "cloud:aws"] {
        assert!(!missing.contains(&loaded.to_string()), "{loaded}");
    }
    assert!(intel.versions().get("aws").is_some_and(|v| v == "1753388594"));
    // The enrichment serialises (the API shapes it further).
    let json = serde_json::to_value(intel.enrich(ip("8.134.12.90"))).expect("json");
    assert_eq!(json["threat_lists"][0], "threatfox");

    // With nothing loaded at all, lookups still work and say what is missing.
    let empty = apiary_intel::Intel::default();
    let e = empty.enrich(ip("8.8.8.8"));
    assert!(e.asn.is_none() && e.geo.is_none() && !e.is_bogon);
    assert!(empty.missing().contains(&"asn".to_string()) && empty.missing().contains(&"geo".to_string()));
}
