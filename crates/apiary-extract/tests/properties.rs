//! Property tests: no input panics, every value respects the bounds, and
//! well-formed protocol messages round-trip through extraction.

use apiary_extract::{analyze, extract, match_cves, AttrName, Attribute, MAX_ATTRIBUTES, MAX_VALUE_BYTES};
use proptest::prelude::*;

const SERVICES: &[&str] = &[
    "HTTP",
    "HTTPS",
    "SSH",
    "Telnet",
    "Redis",
    "Memcached",
    "Memcached.udp",
    "FTP",
    "SMTP",
    "MySQL",
    "VNC",
    "SIP",
    "SIP.udp",
    "DNS.udp",
    "DNS.tcp",
    "Elasticsearch",
    "CouchDB",
    "ClickHouse",
    "Kubernetes",
    "RDP",
    "",
    "é.udp",
];

fn values(attrs: &[Attribute], name: AttrName) -> Vec<&str> {
    attrs.iter().filter(|a| a.name == name).map(|a| a.value.as_str()).collect()
}

/// Printable ASCII without spaces: tokens that survive trimming and splitting.
fn token() -> impl Strategy<Value = String> {
    "[!-~]{1,40}"
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn nothing_panics_and_values_are_bounded(
        svc in proptest::sample::select(SERVICES),
        payload in proptest::collection::vec(any::<u8>(), 0..3000),
    ) {
        let a = analyze(svc, &payload);
        prop_assert!(a.attributes.len() <= MAX_ATTRIBUTES);
        for attr in &a.attributes {
            prop_assert!(!attr.value.is_empty());
            prop_assert!(attr.value.len() <= MAX_VALUE_BYTES);
        }
        prop_assert_eq!(a.cves, match_cves(svc, &payload));
    }

    #[test]
    fn text_shaped_payloads_do_not_panic(
        svc in proptest::sample::select(SERVICES),
        payload in "(GET|POST|OPTIONS|\\*2|\\$3|USER|PASS|RFB|AUTH|EHLO)?[ -~\r\n\t\u{0}\u{ff}]{0,400}",
    ) {
        let _ = analyze(svc, payload.as_bytes());
    }

    #[test]
    fn http_requests_round_trip(
        method in "(GET|POST|PUT|HEAD|PROPFIND)",
        path in "/[a-zA-Z0-9/._~%-]{0,60}",
        query in "[a-zA-Z0-9=&%._-]{0,60}",
        host in "[a-z0-9.-]{1,30}",
        ua in "[ -~]{1,80}",
        tls in any::<bool>(),
    ) {
        let target = if query.is_empty() { path.clone() } else { format!("{path}?{query}") };
        let raw = format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {ua}\r\nAccept: */*\r\n\r\n");
        let attrs = extract(if tls { "HTTPS" } else { "HTTP" }, raw.as_bytes());
        prop_assert_eq!(values(&attrs, AttrName::HttpMethod), vec![method.as_str()]);
        prop_assert_eq!(values(&attrs, AttrName::HttpPath), vec![path.as_str()]);
        let q: Vec<&str> = if query.is_empty() { vec![] } else { vec![query.as_str()] };
        prop_assert_eq!(values(&attrs, AttrName::HttpQuery), q);
        prop_assert_eq!(values(&attrs, AttrName::HttpHost), vec![host.as_str()]);
        let ua_trimmed = ua.trim();
        let expected_ua: Vec<&str> = if ua_trimmed.is_empty() { vec![] } else { vec![ua_trimmed] };
        prop_assert_eq!(values(&attrs, AttrName::HttpUserAgent), expected_ua);
        prop_assert_eq!(values(&attrs, AttrName::HttpHeader), vec!["Accept: */*"]);
        prop_assert_eq!(values(&attrs, AttrName::HttpScheme), vec![if tls { "https" } else { "http" }]);
    }

    #[test]
    fn redis_resp_round_trips(args in proptest::collection::vec(token(), 1..6)) {
        let mut raw = format!("*{}\r\n", args.len());
        for a in &args {
            raw.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        let attrs = extract("Redis", raw.as_bytes());
        let joined = args.join(" ");
        prop_assert_eq!(values(&attrs, AttrName::RedisCommand), vec![joined.as_str()]);
    }

    #[test]
    fn dns_queries_round_trip(labels in proptest::collection::vec("[a-zA-Z0-9-]{1,20}", 1..5), id in any::<u16>()) {
        let mut raw = id.to_be_bytes().to_vec();
        raw.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        for l in &labels {
            raw.push(l.len() as u8);
            raw.extend_from_slice(l.as_bytes());
        }
        raw.extend_from_slice(&[0, 0, 1, 0, 1]);
        let name = labels.join(".").to_ascii_lowercase();
        let attrs = extract("DNS.udp", &raw);
        prop_assert_eq!(values(&attrs, AttrName::Domain), vec![name.as_str()]);
    }

    #[test]
    fn ftp_credentials_round_trip(user in token(), pass in token()) {
        let attrs = extract("FTP", format!("USER {user}\r\nPASS {pass}\r\n").as_bytes());
        prop_assert_eq!(values(&attrs, AttrName::Username), vec![user.as_str()]);
        prop_assert_eq!(values(&attrs, AttrName::Password), vec![pass.as_str()]);
    }

    /// Printable text that cannot start a request line (a method begins
    /// with a capital letter): an unknown service's request line is taken
    /// apart as HTTP instead.
    #[test]
    fn printable_fallback_is_kept_verbatim(payload in "[!-@a-~][ -~]{0,200}[!-~]") {
        let attrs = extract("RDP", payload.as_bytes());
        prop_assert_eq!(values(&attrs, AttrName::Payload), vec![payload.as_str()]);
    }

    #[test]
    fn long_values_are_truncated_and_flagged(len in (MAX_VALUE_BYTES + 1)..(3 * MAX_VALUE_BYTES)) {
        let attrs = extract("RDP", &vec![b'A'; len]);
        prop_assert_eq!(attrs.len(), 1);
        prop_assert!(attrs[0].truncated);
        prop_assert_eq!(attrs[0].value.len(), MAX_VALUE_BYTES);
    }
}

#[test]
fn header_bombs_are_capped() {
    let mut raw = String::from("GET / HTTP/1.1\r\n");
    for i in 0..10_000 {
        raw.push_str(&format!("X-H{i}: v\r\n"));
    }
    raw.push_str("\r\n");
    assert_eq!(extract("HTTP", raw.as_bytes()).len(), MAX_ATTRIBUTES);
}

#[test]
fn attribute_list_is_documented() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/ATTRIBUTES.md")).expect("ATTRIBUTES.md");
    for name in apiary_extract::ATTRIBUTE_NAMES {
        assert!(doc.contains(&format!("`{}`", name.as_str())), "{name} missing from ATTRIBUTES.md");
        assert_eq!(AttrName::from_name(name.as_str()), Some(*name));
    }
}
