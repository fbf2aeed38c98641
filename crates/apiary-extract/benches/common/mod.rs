//! The benchmarks' payload stream, shared by `extract.rs` (criterion, wall
//! time) and `cpu.rs` (thread CPU time), so both measure the same traffic.

use apiary_extract::CveMatcher;

const UAS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    "curl/7.88.1",
    "python-requests/2.31.0",
    "Mozilla/5.0 zgrab/0.x",
    "Go-http-client/1.1",
    "Mozilla/5.0 (compatible; CensysInspect/1.1; +https://about.censys.io/)",
];
const PATHS: &[&str] = &[
    "/",
    "/favicon.ico",
    "/robots.txt",
    "/.env",
    "/wp-login.php",
    "/admin/config.php",
    "/.git/config",
    "/cgi-bin/luci",
    "/boaform/admin/formLogin",
    "/HNAP1/",
    "/solr/admin/info/system?wt=json",
    "/actuator/env",
    "/owa/auth/logon.aspx",
    "/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php",
    "/index.php?s=/index/\\think\\app/invokefunction&function=call_user_func_array&vars[0]=md5&vars[1][]=1",
];

/// ~60% HTTP (a tenth of it exploit traffic from the signature examples),
/// the rest SSH/Telnet credentials and commands, Redis, SIP, DNS, FTP, SMTP,
/// memcached and unknown-service payloads.
pub fn stream() -> Vec<(&'static str, Vec<u8>)> {
    let examples: Vec<Vec<u8>> = CveMatcher::global()
        .map(|m| {
            m.signatures()
                .iter()
                .filter(|s| s.service == "http")
                .map(|s| s.match_example.clone().into_bytes())
                .collect()
        })
        .unwrap_or_default();
    let mut out = Vec::new();
    for i in 0..2000usize {
        let item: (&'static str, Vec<u8>) = match i % 20 {
            0..=10 => {
                let raw = format!(
                    "GET {} HTTP/1.1\r\nHost: 203.0.113.{}\r\nUser-Agent: {}\r\nAccept: */*\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n",
                    PATHS[i % PATHS.len()],
                    i % 250,
                    UAS[i % UAS.len()]
                );
                ("HTTP", raw.into_bytes())
            }
            11 if !examples.is_empty() => ("HTTP", examples[i % examples.len()].clone()),
            11 | 12 => ("HTTPS", format!("POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 29\r\n\r\nusername=admin&password=1234{}", i % 10).into_bytes()),
            13 => ("SSH", format!("username: root\npassword: pass{}\n", i % 97).into_bytes()),
            14 => ("Telnet", b"\xff\xfd\x01\xff\xfb\x18admin\r\nadmin\r\nenable\r\nsystem\r\nshell\r\nsh\r\n/bin/busybox MIRAI\r\n".to_vec()),
            15 => ("Redis", b"*3\r\n$6\r\nCONFIG\r\n$3\r\nSET\r\n$3\r\ndir\r\n*1\r\n$4\r\nINFO\r\n".to_vec()),
            16 => ("SIP.udp", b"OPTIONS sip:100@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bK-1\r\nFrom: \"sipvicious\"<sip:100@1.1.1.1>;tag=1\r\nTo: \"sipvicious\"<sip:100@1.1.1.1>\r\nCall-ID: 1@192.0.2.9\r\nCSeq: 1 OPTIONS\r\nUser-Agent: friendly-scanner\r\nContent-Length: 0\r\n\r\n".to_vec()),
            17 => ("DNS.udp", b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x01\x03www\x07example\x03com\x00\x00\xff\x00\x01\x00\x00\x29\x10\x00\x00\x00\x00\x00\x00\x00".to_vec()),
            18 => ("FTP", format!("USER anonymous\r\nPASS guest{}\r\nSYST\r\nLIST\r\n", i % 7).into_bytes()),
            _ => match i % 3 {
                0 => ("SMTP", b"EHLO x\r\nAUTH LOGIN\r\nYWRtaW4=\r\ncGFzc3dvcmQ=\r\nQUIT\r\n".to_vec()),
                1 => ("Memcached.udp", b"\x00\x01\x00\x00\x00\x01\x00\x00stats\r\n".to_vec()),
                _ => ("RDP", b"\x03\x00\x00\x2b\x26\xe0\x00\x00\x00\x00\x00Cookie: mstshash=hello\r\n\x01\x00\x08\x00\x03\x00\x00\x00".to_vec()),
            },
        };
        out.push(item);
    }
    out
}
