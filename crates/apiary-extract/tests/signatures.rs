//! The signature table proves itself: every entry's example matches, every
//! near-miss does not, and ordinary traffic matches nothing.

use apiary_extract::{match_cves, CveMatcher, Signature};

fn matcher() -> &'static CveMatcher {
    match CveMatcher::global() {
        Ok(m) => m,
        Err(e) => panic!("signature table does not load: {e}"),
    }
}

/// The service a sensor would report for this entry's traffic.
fn service_for(sig: &Signature) -> &str {
    match sig.service.as_str() {
        "http" | "any" => "HTTP",
        other => other,
    }
}

#[test]
fn table_has_at_least_150_cves() {
    let ids = matcher().cve_ids();
    assert!(ids.len() >= 150, "only {} distinct CVEs", ids.len());
}

#[test]
fn every_example_matches_and_every_near_miss_does_not() {
    let mut failures = Vec::new();
    for sig in matcher().signatures() {
        let service = service_for(sig);
        let hits = match_cves(service, sig.match_example.as_bytes());
        if !hits.contains(&sig.cve.as_str()) {
            failures.push(format!("{} ({}): example does not match", sig.cve, sig.title));
        }
        let hits = match_cves(service, sig.near_miss.as_bytes());
        if hits.contains(&sig.cve.as_str()) {
            failures.push(format!("{} ({}): near-miss matches", sig.cve, sig.title));
        }
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn http_examples_parse_as_http() {
    for sig in matcher().signatures().iter().filter(|s| s.path.is_some() || s.header.is_some() || s.body.is_some()) {
        assert!(
            apiary_extract::proto::http::Request::parse_http(sig.match_example.as_bytes()).is_some(),
            "{}: example is not an HTTP request",
            sig.cve
        );
    }
}

#[test]
fn sources_name_a_public_reference() {
    for sig in matcher().signatures() {
        let s = &sig.source;
        assert!(
            s.contains("NVD") || s.contains("Exploit-DB") || s.contains("Nuclei") || s.contains("advisory"),
            "{}: source {s:?} names no public reference",
            sig.cve
        );
    }
}

const BROWSER: &str = "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36\r\nAccept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\nAccept-Language: en-US,en;q=0.9\r\nAccept-Encoding: gzip, deflate, br\r\nConnection: keep-alive\r\nUpgrade-Insecure-Requests: 1\r\n";

fn browser_get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: www.example.com\r\n{BROWSER}\r\n")
}

/// Ordinary requests a web server sees every minute; none may carry a CVE.
fn benign_corpus() -> Vec<(String, String)> {
    let mut corpus: Vec<(String, String)> = [
        "/",
        "/index.html",
        "/index.php",
        "/favicon.ico",
        "/robots.txt",
        "/sitemap.xml",
        "/wp-login.php",
        "/wp-login.php?redirect_to=https%3A%2F%2Fwww.example.com%2Fwp-admin%2F&reauth=1",
        "/wp-admin/",
        "/wp-json/wp/v2/posts?per_page=10",
        "/wp-content/themes/twentytwentyfour/style.css?ver=1.1",
        "/.well-known/security.txt",
        "/.well-known/acme-challenge/abc123",
        "/search?q=log4j+jndi+tutorial&page=2",
        "/search?q=%24%7Bprice%7D",
        "/api/v1/users?limit=20&offset=40",
        "/static/js/app.3f2a1b.js",
        "/images/logo.png",
        "/cgi-bin/luci",
        "/login?next=%2Fdashboard",
        "/owa/auth/logon.aspx",
        "/remote/login?lang=en",
        "/vpn/index.html",
        "/jenkins/login?from=%2F",
        "/solr/admin/cores?action=STATUS&wt=json",
        "/_cat/indices?v",
        "/_all_dbs",
        "/api/v2/cmdb/system/status",
        "/console/login/LoginForm.jsp",
        "/manager/html",
        "/phpmyadmin/index.php?lang=en",
        "/geoserver/web/",
        "/actuator/health",
        "/server-status",
        "/.env",
        "/.git/config",
        "/HNAP1/",
        "/boaform/admin/formLogin",
        "/user/login?destination=/node/1",
        "/shell.html",
    ]
    .iter()
    .map(|p| ("HTTP".to_owned(), browser_get(p)))
    .collect();
    let posts = [
        ("/wp-login.php", "log=admin&pwd=password&wp-submit=Log+In&redirect_to=%2Fwp-admin%2F&testcookie=1"),
        ("/login", "username=alice&password=hunter2&remember=on"),
        ("/api/graphql", "{\"query\":\"{ user(id: 1) { name } }\"}"),
        ("/api/render", "{\"template\":\"Hello ${name}\",\"vars\":{\"name\":\"Bob\"}}"),
        ("/xmlrpc.php", "<?xml version=\"1.0\"?><methodCall><methodName>system.listMethods</methodName></methodCall>"),
        ("/comment", "text=function() { return 1; } is JavaScript&author=x"),
        ("/_search", "{\"query\":{\"match\":{\"title\":\"elasticsearch\"}},\"size\":10}"),
    ];
    for (path, body) in posts {
        corpus.push((
            "HTTP".to_owned(),
            format!(
                "POST {path} HTTP/1.1\r\nHost: www.example.com\r\n{BROWSER}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nCookie: session=abc123; rememberMe=deleteMe\r\n\r\n{body}",
                body.len()
            ),
        ));
    }
    let others = [
        ("SSH", "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n"),
        ("Telnet", "root\r\nadmin\r\nenable\r\nsystem\r\nshell\r\nsh\r\n/bin/busybox ECCHI\r\n"),
        ("Redis", "*1\r\n$4\r\nPING\r\n*3\r\n$6\r\nCONFIG\r\n$3\r\nGET\r\n$3\r\ndir\r\n"),
        ("Redis", "*3\r\n$4\r\neval\r\n$33\r\nreturn redis.call('get','package')\r\n$1\r\n0\r\n"),
        ("FTP", "USER anonymous\r\nPASS guest@example.com\r\nSYST\r\nPWD\r\nLIST\r\nQUIT\r\n"),
        ("SMTP", "EHLO mail.example.com\r\nMAIL FROM:<alice@example.com>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\nSubject: hi\r\n\r\nhello ${name}\r\n.\r\nQUIT\r\n"),
        ("SIP", "OPTIONS sip:100@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bK-1\r\nFrom: <sip:100@192.0.2.9>;tag=1\r\nTo: <sip:100@192.0.2.1>\r\nCall-ID: 1@192.0.2.9\r\nCSeq: 1 OPTIONS\r\nUser-Agent: friendly-scanner\r\nContent-Length: 0\r\n\r\n"),
        ("Memcached", "stats\r\nversion\r\nget foo\r\n"),
        ("MySQL", "\u{20}\u{0}\u{0}\u{1}\u{85}\u{a6}\u{3}\u{0}"),
    ];
    corpus.extend(others.iter().map(|(s, p)| (s.to_string(), p.to_string())));
    corpus
}

#[test]
fn benign_traffic_matches_nothing() {
    for (service, payload) in benign_corpus() {
        let hits = match_cves(&service, payload.as_bytes());
        assert!(hits.is_empty(), "{service} payload matched {hits:?}:\n{payload}");
    }
}

#[test]
fn a_broken_table_is_an_error_not_a_panic() {
    assert!(CveMatcher::from_toml("[[signature]]\ncve = 1").is_err());
    let bad_regex = r#"[[signature]]
cve = "CVE-2000-0001"
title = "t"
service = "http"
source = "NVD"
anchors = ["abc"]
path = "("
match_example = "x"
near_miss = "y"
"#;
    assert!(CveMatcher::from_toml(bad_regex).is_err());
}
