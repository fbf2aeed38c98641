//! Threat lists, Tor lists, cloud ranges and MISP scanner lists from the fixtures.

mod common;

use apiary_intel::parse::cloud::{
    parse_aws, parse_azure, parse_cloudflare, parse_gcp, parse_ibm_markdown, parse_oracle,
};
use apiary_intel::parse::lists::{
    parse_dshield_block, parse_plain, parse_spamhaus_drop, parse_threatfox_csv, parse_tor_exit_addresses,
};
use apiary_intel::parse::misp::parse_warning_list;
use apiary_intel::{Intel, IpRange};
use common::{ip, read};

fn single(s: &str) -> IpRange {
    IpRange::single(ip(s))
}

#[test]
fn plain_lists_of_every_flavour() {
    // FireHOL netset/ipset: comment banner, then entries.
    let drop = parse_plain(&read("feeds/firehol/spamhaus_drop.netset.head")).expect("netset");
    assert_eq!(drop.ranges.len(), 5);
    assert_eq!(drop.ranges[0], apiary_intel::net::parse_ip_or_cidr("1.4.0.0/17").expect("cidr"));
    let tor = parse_plain(&read("feeds/firehol/tor_exits.ipset.head")).expect("ipset");
    assert_eq!(tor.ranges.len(), 5);
    // Emerging Threats: no comments.
    let et = parse_plain(&read("feeds/emergingthreats/compromised-ips.txt")).expect("et");
    assert_eq!(et.ranges.len(), 296);
    // CINS Army.
    let ci = parse_plain(&read("feeds/ciarmy/ci-badguys.txt.head")).expect("ciarmy");
    assert_eq!(ci.ranges.len(), 500);
    // blocklist.de: IPv4 and IPv6 mixed, no final newline.
    let bl = parse_plain(&read("feeds/blocklist-de/all.txt.subset")).expect("blocklist.de");
    assert_eq!(bl.ranges.len(), 271);
    assert_eq!(bl.ranges.iter().filter(|r| matches!(r, IpRange::V6(..))).count(), 31);
    let last = String::from_utf8(read("feeds/blocklist-de/all.txt.subset")).expect("utf8");
    let last = last.lines().last().expect("last line").trim().to_string();
    assert_eq!(bl.ranges.last(), Some(&single(&last)));
    // pallebone: CRLF, `;date` markers, no final newline.
    let pb = parse_plain(&read("feeds/pallebone/BlockIP.txt.subset")).expect("pallebone");
    assert_eq!(pb.ranges.len(), 180 - 3);
    assert_eq!(pb.ranges[0], single("1.9.106.106"));
    // Spamhaus drop.txt: `;` header and trailing `; SBL` comments.
    let sd = parse_spamhaus_drop(&read("feeds/spamhaus/drop.txt.excerpt")).expect("drop.txt");
    assert_eq!(sd.ranges.len(), 9);
    assert_eq!(sd.version.as_deref(), Some("Tue, 22 Mar 2016 18:59:56 GMT"));
    // Spamhaus NDJSON with its metadata line.
    let sj = parse_spamhaus_drop(&read("feeds/spamhaus/drop_v4.json.subset")).expect("drop json");
    assert_eq!(sj.ranges.len(), 15);
    assert_eq!(sj.version.as_deref(), Some("1744682874"));
    // Cloudflare: no final newline.
    assert_eq!(parse_plain(&read("feeds/cloud/cloudflare/ips-v4")).expect("cf").ranges.len(), 15);
}

#[test]
fn dshield_block_list() {
    let d = parse_dshield_block(&read("feeds/dshield/block.txt")).expect("dshield");
    assert_eq!(d.ranges.len(), 15);
    assert_eq!(d.version.as_deref(), Some("Tue Sep 29 11:18:10 2015 UTC"));
    let intel = Intel::builder().threat_list("sansip", &d.ranges).build();
    assert_eq!(intel.on_list("sansip", ip("207.150.177.77")), Some(true));
    assert_eq!(intel.on_list("sansip", ip("218.65.30.255")), Some(true));
    assert_eq!(intel.on_list("sansip", ip("8.8.8.8")), Some(false));
    assert_eq!(intel.on_list("ciarmy", ip("8.8.8.8")), None);
}

#[test]
fn threatfox_csv_reads_the_header_and_ip_port_values() {
    let t = parse_threatfox_csv(&read("feeds/threatfox/threatfox-full-export.excerpt.csv")).expect("threatfox");
    assert_eq!(
        t.ranges,
        vec![single("8.134.12.90"), single("172.245.184.135"), single("91.208.73.75"), single("8.223.20.63")]
    );
    assert_eq!(t.version.as_deref(), Some("2024-07-16 06:45:19 UTC"));
    // A newer export with an extra column after confidence_level still works.
    let newer = "# \"first_seen_utc\",\"ioc_id\",\"ioc_value\",\"ioc_type\",\"threat_type\",\"confidence_level\",\"is_compromised\"\n\
                 \"2024-07-16 05:25:36\", \"1\", \"[2001:db8::5]:443\", \"ip:port\", \"botnet_cc\", \"100\", \"0\"\n";
    let n = parse_threatfox_csv(newer.as_bytes()).expect("newer");
    assert_eq!(n.ranges, vec![single("2001:db8::5")]);
    assert!(parse_threatfox_csv(b"\"a\", \"b\"\n").is_err(), "no header");
}

#[test]
fn tor_exit_lists() {
    let bulk = parse_plain(&read("feeds/tor/torbulkexitlist")).expect("bulk");
    assert_eq!(bulk.ranges.len(), 1174);
    let ea = parse_tor_exit_addresses(&read("feeds/tor/exit-addresses.subset")).expect("exit-addresses");
    assert_eq!(ea.ranges.len(), 259);
    assert!(ea.version.as_deref().is_some_and(|v| v.starts_with("published 2024-03-")));
    let intel = Intel::builder().tor(&bulk.ranges).tor(&ea.ranges).build();
    assert!(intel.is_tor(ip("185.241.208.232")));
    assert!(intel.is_tor(ip("171.25.193.25")));
    assert!(!intel.is_tor(ip("8.8.8.8")));
    // Every ExitAddress of the multi-address stanzas counts.
    for r in &ea.ranges {
        assert!(intel.is_tor(r.start()));
    }
}

#[test]
fn cloud_ranges_of_every_provider() {
    let aws = parse_aws(&read("feeds/cloud/aws/ip-ranges.subset.json")).expect("aws");
    assert_eq!(aws.provider, "aws");
    assert_eq!(aws.prefixes.len(), 266 + 206);
    assert_eq!(aws.version.as_deref(), Some("1753388594"));

    let az = parse_azure(&read("feeds/cloud/azure/ServiceTags_Public_20251020.subset.json")).expect("azure");
    assert_eq!((az.provider.as_str(), az.version.as_deref()), ("azure", Some("374")));
    let cn = parse_azure(&read("feeds/cloud/azure/ServiceTags_China_20251020.subset.json")).expect("china");
    assert_eq!(cn.provider, "azure/china");
    let gov = parse_azure(&read("feeds/cloud/azure/ServiceTags_AzureGovernment_20251020.subset.json")).expect("gov");
    assert_eq!(gov.provider, "azure/gov");
    // Germany used the same format with its own cloud name.
    let de_json = String::from_utf8(read("feeds/cloud/azure/ServiceTags_Public_20251020.subset.json"))
        .expect("utf8")
        .replacen("\"Public\"", "\"AzureGermanCloud\"", 1);
    assert_eq!(parse_azure(de_json.as_bytes()).expect("germany").provider, "azure/germany");

    let gcp = parse_gcp(&read("feeds/cloud/gcp/cloud.json")).expect("gcp");
    assert_eq!(gcp.provider, "gcp");
    assert!(gcp.prefixes.len() > 500);
    let oci = parse_oracle(&read("feeds/cloud/oracle/public_ip_ranges.subset.json")).expect("oracle");
    assert_eq!(oci.version.as_deref(), Some("2025-07-21T07:13:25.457838"));
    let ibm = parse_ibm_markdown(&read("feeds/cloud/ibm/ips.md")).expect("ibm");
    assert_eq!(ibm.version.as_deref(), Some("2024-12-05"));
    // Only public ranges; multi-CIDR cells are split.
    assert!(ibm.prefixes.iter().all(|p| !p.net.to_string().starts_with("10.")));
    assert!(ibm
        .prefixes
        .iter()
        .any(|p| p.net.to_string() == "173.192.117.0/24" && p.region.as_deref() == Some("dal05")));
    let cf4 = parse_cloudflare(&read("feeds/cloud/cloudflare/ips-v4")).expect("cf4");
    let cf6 = parse_cloudflare(&read("feeds/cloud/cloudflare/ips-v6")).expect("cf6");

    let intel = Intel::builder()
        .cloud(&aws)
        .cloud(&az)
        .cloud(&cn)
        .cloud(&gov)
        .cloud(&gcp)
        .cloud(&oci)
        .cloud(&ibm)
        .cloud(&cf4)
        .cloud(&cf6)
        .build();

    // AWS: 3.5.140.0/22 is listed only under AMAZON.
    let hit = intel.cloud(ip("3.5.140.1")).expect("aws hit");
    assert_eq!((hit.provider, hit.prefix.region.as_deref()), ("aws", Some("ap-northeast-2")));
    // Where AWS lists a prefix under AMAZON and a specific service, the service wins.
    let raw: serde_json::Value = serde_json::from_slice(&read("feeds/cloud/aws/ip-ranges.subset.json")).expect("json");
    let prefixes = raw["prefixes"].as_array().expect("prefixes");
    let dup = prefixes.iter().find(|p| {
        p["service"] != "AMAZON"
            && prefixes.iter().any(|q| q["service"] == "AMAZON" && q["ip_prefix"] == p["ip_prefix"])
    });
    if let Some(p) = dup {
        let net: ipnet::IpNet = p["ip_prefix"].as_str().expect("prefix").parse().expect("net");
        let hit = intel.cloud(net.network()).expect("dup hit");
        assert_ne!(hit.prefix.service.as_deref(), Some("AMAZON"), "{net}");
    }
    // Azure regional tag.
    let eastus = az.prefixes.iter().find(|p| p.region.as_deref() == Some("eastus")).expect("eastus prefix");
    let hit = intel.cloud(eastus.net.network()).expect("azure hit");
    assert!(hit.provider.starts_with("azure"));
    // GCP, Oracle, IBM, Cloudflare v4 and v6.
    assert_eq!(
        intel.cloud(ip("34.35.0.1")).map(|h| (h.provider, h.prefix.region.clone())),
        Some(("gcp", Some("africa-south1".into())))
    );
    assert_eq!(intel.cloud(ip("129.80.0.1")).map(|h| h.provider), Some("oracle"));
    assert_eq!(intel.cloud(ip("159.8.198.1")).map(|h| h.provider), Some("ibm"));
    assert_eq!(intel.cloud(ip("173.245.48.1")).map(|h| h.provider), Some("cloudflare"));
    assert_eq!(intel.cloud(ip("2606:4700::1")).map(|h| h.provider), Some("cloudflare"));
    assert_eq!(intel.cloud(ip("192.168.1.1")), None);
    // Listing for /datacenter/{provider}: v4 and v6 feeds merged under one provider.
    assert_eq!(
        intel.cloud_prefixes("cloudflare").map(|c| c.prefixes.len()),
        Some(cf4.prefixes.len() + cf6.prefixes.len())
    );
    assert!(intel.cloud_prefixes("azure/germany").is_none());
    assert!(intel.missing().contains(&"cloud:azure/germany".to_string()));
}

#[test]
fn misp_scanner_lists_with_curated_organisations() {
    let names = [
        "censys-scanning",
        "circl-ssh-scanning",
        "internet-census-nt-scanning",
        "onyphe-scanner",
        "rapid7-nt-scanning",
        "shadowserver-nt-scanning",
        "shadowserver",
        "shodan-nt-scanning",
        "shodan-scanning",
        "stretchoid-nt-scanning",
    ];
    let mut b = Intel::builder();
    let mut lists = Vec::new();
    for n in names {
        let l = parse_warning_list(&read(&format!("feeds/misp-warninglists/{n}.json"))).expect(n);
        assert_eq!(l.kind, "cidr");
        assert!(apiary_intel::scanners::known_scanner(n).is_some(), "{n} not curated");
        b = b.scanner_list(n, &l);
        lists.push((n, l));
    }
    let intel = b.build();
    for (n, l) in &lists {
        for r in &l.ranges {
            let hit = intel.scanner(r.start()).unwrap_or_else(|| panic!("{n}: {:?}", r.start()));
            // The same address can be on two lists of one organisation (shodan-scanning
            // and shodan-nt-scanning): the organisation must match.
            let want = apiary_intel::scanners::known_scanner(n).expect("curated");
            assert_eq!(hit.info.domain, want.domain, "{n} {:?}", r.start());
        }
    }
    let shodan = intel.scanner(ip("66.240.192.138")).expect("shodan");
    assert_eq!((shodan.info.name.as_str(), shodan.info.domain.as_str()), ("Shodan", "shodan.io"));
    assert_eq!(intel.scanner(ip("8.8.8.8")), None);

    // Non-scanner MISP lists parse too (cloud and RFC lists, mixed v4/v6).
    for n in [
        "amazon-aws",
        "cloudflare",
        "google-gcp",
        "microsoft-azure",
        "multicast",
        "oracle-oci",
        "rfc1918",
        "rfc3849",
        "rfc5735",
        "rfc6598",
    ] {
        let l = parse_warning_list(&read(&format!("feeds/misp-warninglists/{n}.json"))).expect(n);
        assert!(!l.ranges.is_empty(), "{n}");
    }
    // An operator list not in the curated table is described by its MISP name.
    let rfc = parse_warning_list(&read("feeds/misp-warninglists/rfc1918.json")).expect("rfc1918");
    let i2 = Intel::builder().scanner_list("my-list", &rfc).build();
    assert_eq!(i2.scanner(ip("10.0.0.1")).map(|h| h.info.name.clone()), Some(rfc.name.clone()));
}
