//! Extraction over real honeypot logs (../shared/fixtures/honeypot-logs): each
//! test rebuilds the raw bytes a logged event describes and checks that the
//! extractor recovers what the honeypot recorded.

use std::collections::BTreeSet;
use std::path::PathBuf;

use apiary_extract::{extract, match_cves, AttrName, Attribute};
use serde_json::Value;

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/honeypot-logs").join(rel)
}

/// JSON lines of a fixture; `None` (test skipped with a note) when the shared
/// fixtures are not checked out beside the repository.
fn json_lines(rel: &str) -> Option<Vec<Value>> {
    let path = fixture(rel);
    let Ok(text) = std::fs::read_to_string(&path) else {
        eprintln!("skipping: {} not found", path.display());
        return None;
    };
    Some(
        text.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).expect("fixture JSON")).collect(),
    )
}

/// qeeqbox lines are JSON strings whose content is JSON.
fn qeeqbox(rel: &str) -> Option<Vec<Value>> {
    Some(
        json_lines(rel)?
            .into_iter()
            .map(|v| serde_json::from_str(v.as_str().expect("string line")).expect("inner JSON"))
            .collect(),
    )
}

fn values(attrs: &[Attribute], name: AttrName) -> Vec<String> {
    attrs.iter().filter(|a| a.name == name).map(|a| a.value.clone()).collect()
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// Decodes a Python bytes repr such as `b'GET / HTTP/1.0\r\n\r\n'`.
fn python_bytes(repr: &str) -> Vec<u8> {
    let inner = repr.strip_prefix("b'").and_then(|r| r.strip_suffix('\'')).unwrap_or(repr);
    let b = inner.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            let (byte, used) = match b[i + 1] {
                b'r' => (b'\r', 2),
                b'n' => (b'\n', 2),
                b't' => (b'\t', 2),
                b'x' => (u8::from_str_radix(&inner[i + 2..i + 4], 16).expect("hex escape"), 4),
                other => (other, 2),
            };
            out.push(byte);
            i += used;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// A sensor's report of one login attempt (INFO event payload convention).
fn login_report(user: &str, pass: &str) -> Vec<u8> {
    format!("username: {user}\npassword: {pass}\n").into_bytes()
}

#[test]
fn cowrie_logins_commands_and_forwarded_http() {
    let Some(events) = json_lines("cowrie/cowrie.json.subset") else { return };
    let mut logins = 0;
    for e in &events {
        let service = if s(e, "protocol") == "telnet" { "Telnet" } else { "SSH" };
        match s(e, "eventid") {
            "cowrie.login.failed" | "cowrie.login.success" => {
                let (user, pass) = (s(e, "username"), s(e, "password"));
                let attrs = extract(service, &login_report(user, pass));
                if !user.trim().is_empty() {
                    assert_eq!(values(&attrs, AttrName::Username), vec![user.trim()], "{e}");
                }
                if !pass.trim().is_empty() {
                    assert_eq!(values(&attrs, AttrName::Password), vec![pass.trim()], "{e}");
                }
                logins += 1;
            }
            "cowrie.command.input" | "cowrie.command.failed" => {
                let input = s(e, "input");
                let attrs = extract(service, format!("{input}\r\n").as_bytes());
                let expected: Vec<&str> = if input.trim().is_empty() { vec![] } else { vec![input.trim()] };
                assert_eq!(values(&attrs, AttrName::ShellCommand), expected, "{e}");
            }
            "cowrie.direct-tcpip.data" => {
                let raw = python_bytes(s(e, "data"));
                let attrs = extract("HTTP", &raw);
                assert_eq!(values(&attrs, AttrName::HttpMethod), vec!["GET"]);
                assert_eq!(values(&attrs, AttrName::HttpPath), vec!["/"]);
                assert_eq!(values(&attrs, AttrName::HttpVersion), vec!["HTTP/1.0"]);
            }
            "cowrie.client.version" => {
                let attrs = extract("SSH", format!("{}\r\n", s(e, "version")).as_bytes());
                assert_eq!(values(&attrs, AttrName::Payload), vec![s(e, "version")]);
            }
            _ => {}
        }
    }
    assert!(logins > 400, "expected the subset's ~460 login events, saw {logins}");
}

/// Cowrie TTY logs: records `<iLiiLL` (op, tty, length, direction, sec, usec)
/// then data; op 3 = write, direction 1 = what the attacker typed.
fn tty_input(name: &str) -> Option<Vec<u8>> {
    let raw = std::fs::read(fixture(&format!("cowrie/tty/{name}"))).ok()?;
    let mut input = Vec::new();
    let mut i = 0;
    while i + 24 <= raw.len() {
        let word = |o: usize| i32::from_le_bytes([raw[i + o], raw[i + o + 1], raw[i + o + 2], raw[i + o + 3]]);
        let (op, len, dir) = (word(0), word(8) as usize, word(12));
        let data = raw.get(i + 24..i + 24 + len)?;
        if op == 3 && dir == 1 {
            input.extend_from_slice(data);
        }
        i += 24 + len;
    }
    Some(input)
}

#[test]
fn cowrie_tty_sessions_yield_the_logged_commands() {
    let Some(events) = json_lines("cowrie/cowrie.json.subset") else { return };
    let mut checked = 0;
    for closed in events.iter().filter(|e| s(e, "eventid") == "cowrie.log.closed") {
        let session = s(closed, "session");
        let Some(name) = s(closed, "ttylog").rsplit('/').next() else { continue };
        let Some(input) = tty_input(name) else { continue };
        let logged: Vec<String> = events
            .iter()
            .filter(|e| s(e, "session") == session && s(e, "eventid") == "cowrie.command.input")
            .map(|e| s(e, "input").trim().to_owned())
            .filter(|c| !c.is_empty())
            .collect();
        let service = if s(closed, "protocol") == "telnet" { "Telnet" } else { "SSH" };
        let attrs = extract(service, &input);
        let commands = values(&attrs, AttrName::ShellCommand);
        if !logged.is_empty() && !input.is_empty() {
            assert_eq!(commands, logged, "session {session}");
            checked += 1;
        }
    }
    assert!(checked >= 2, "expected at least two TTY sessions with commands, checked {checked}");
}

#[test]
fn opencanary_services() {
    let Some(events) = json_lines("opencanary/opencanary.log.subset") else { return };
    let mut seen = BTreeSet::new();
    for e in &events {
        let d = &e["logdata"];
        let logtype = e["logtype"].as_i64().unwrap_or_default();
        match logtype {
            3000 | 3001 => {
                let raw = format!(
                    "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: {}\r\n\r\n",
                    s(d, "PATH"),
                    s(d, "HOSTNAME"),
                    s(d, "USERAGENT")
                );
                let attrs = extract("HTTP", raw.as_bytes());
                assert_eq!(values(&attrs, AttrName::HttpPath), vec![s(d, "PATH")]);
                assert_eq!(values(&attrs, AttrName::HttpUserAgent), vec![s(d, "USERAGENT")]);
                assert_eq!(values(&attrs, AttrName::HttpHost), vec![s(d, "HOSTNAME")]);
                assert!(match_cves("HTTP", raw.as_bytes()).is_empty(), "benign tool traffic matched a CVE: {raw}");
            }
            2000 => {
                let raw = format!("USER {}\r\nPASS {}\r\n", s(d, "USERNAME"), s(d, "PASSWORD"));
                let attrs = extract("FTP", raw.as_bytes());
                assert_eq!(values(&attrs, AttrName::Username), vec![s(d, "USERNAME")]);
                assert_eq!(values(&attrs, AttrName::Password), vec![s(d, "PASSWORD")]);
                assert_eq!(values(&attrs, AttrName::FtpCommand).len(), 2);
            }
            6001 => {
                // Telnet credentials keep the client's `\r`; the stream opens with negotiation.
                let mut raw = b"\xff\xfd\x03\xff\xfb\x18".to_vec();
                raw.extend_from_slice(format!("{}\n{}\n", s(d, "USERNAME"), s(d, "PASSWORD")).as_bytes());
                let attrs = extract("Telnet", &raw);
                assert_eq!(values(&attrs, AttrName::Username), vec![s(d, "USERNAME").trim()]);
                assert_eq!(values(&attrs, AttrName::Password), vec![s(d, "PASSWORD").trim()]);
            }
            4002 => {
                let attrs = extract("SSH", &login_report(s(d, "USERNAME"), s(d, "PASSWORD")));
                assert_eq!(values(&attrs, AttrName::Username), vec![s(d, "USERNAME")]);
            }
            8001 => {
                // MySQL 4.1 handshake response: caps, max packet, charset, 23 zero bytes, user NUL.
                let user = s(d, "USERNAME");
                let mut body = vec![0x85, 0xa6, 0x03, 0x00, 0, 0, 0, 1, 0x21];
                body.extend_from_slice(&[0; 23]);
                body.extend_from_slice(user.as_bytes());
                body.push(0);
                body.push(20);
                body.extend_from_slice(&[0xaa; 20]);
                let mut raw = vec![body.len() as u8, 0, 0, 1];
                raw.extend_from_slice(&body);
                assert_eq!(values(&extract("MySQL", &raw), AttrName::MysqlUsername), vec![user]);
            }
            12001 => {
                let hex = s(d, "VNC Client Response");
                let mut raw = b"RFB 003.008\n\x02".to_vec();
                raw.extend((0..hex.len() / 2).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap_or(0)));
                let got = values(&extract("VNC", &raw), AttrName::RemoteFrameBuffer);
                assert_eq!(
                    got,
                    vec!["RFB 003.008".to_owned(), "security-type 2".to_owned(), format!("auth-response {hex}")]
                );
            }
            15001 => {
                let headers = d["HEADERS"].as_object().expect("SIP headers");
                let cseq = headers.get("cseq").and_then(|v| v[0].as_str()).unwrap_or("1 OPTIONS");
                let method = cseq.split(' ').nth(1).unwrap_or("OPTIONS");
                let mut raw = format!("{method} sip:100@127.0.0.1 SIP/2.0\r\n");
                for (name, vals) in headers {
                    raw.push_str(&format!("{name}: {}\r\n", vals[0].as_str().unwrap_or_default()));
                }
                raw.push_str("\r\n");
                let attrs = extract("SIP.udp", raw.as_bytes());
                assert_eq!(values(&attrs, AttrName::SipMethod), vec![method]);
                assert_eq!(values(&attrs, AttrName::SipHeaderUserAgent), vec!["friendly-scanner"]);
                assert_eq!(values(&attrs, AttrName::SipHeader).len(), headers.len() - 1);
            }
            17001 => {
                let cmd = s(d, "CMD");
                // Some entries hold a TLS hello the honeypot decoded as a command; skip those.
                if cmd.is_empty() || !cmd.bytes().all(|b| (0x20..0x7f).contains(&b)) {
                    continue;
                }
                let mut words: Vec<&str> = cmd.split(' ').collect();
                words.extend(s(d, "ARGS").split(' ').filter(|a| !a.is_empty()));
                let mut raw = format!("*{}\r\n", words.len());
                for w in &words {
                    raw.push_str(&format!("${}\r\n{w}\r\n", w.len()));
                }
                assert_eq!(values(&extract("Redis", raw.as_bytes()), AttrName::RedisCommand), vec![words.join(" ")]);
            }
            18001 => {
                // A raw TCP banner service: no parser, so the printable fallback.
                let raw = python_bytes(s(d, "DATA"));
                let attrs = extract("TCP-banner", &raw);
                assert!(!values(&attrs, AttrName::Payload).is_empty() || raw.is_empty());
            }
            _ => continue,
        }
        seen.insert(logtype);
    }
    for t in [2000, 3000, 4002, 6001, 8001, 12001, 15001, 17001] {
        assert!(seen.contains(&t), "no OpenCanary logtype {t} was checked");
    }
}

#[test]
fn qeeqbox_services() {
    let cases: &[(&str, &str)] = &[
        ("ssh.jsonl", "SSH"),
        ("telnet.jsonl.subset", "Telnet"),
        ("ftp.jsonl.subset", "FTP"),
        ("redis.jsonl.subset", "Redis"),
        ("mysql.jsonl", "MySQL"),
        ("memcache.jsonl", "Memcached"),
        ("smtp.jsonl", "SMTP"),
        ("sip.jsonl", "SIP"),
        ("http.jsonl.subset", "HTTP"),
    ];
    let mut checked = 0;
    for (file, service) in cases {
        let Some(events) = qeeqbox(file) else { return };
        for e in &events {
            let action = s(e, "action");
            let (raw, name, expected): (Vec<u8>, AttrName, String) = match (*service, action) {
                ("FTP", "login") => (
                    format!("USER {}\r\nPASS {}\r\n", s(e, "username"), s(e, "password")).into_bytes(),
                    AttrName::Username,
                    s(e, "username").to_owned(),
                ),
                ("MySQL", "login") => {
                    let user = s(e, "username");
                    let mut body = vec![0x85, 0xa6, 0x03, 0x00, 0, 0, 0, 1, 0x21];
                    body.extend_from_slice(&[0; 23]);
                    body.extend_from_slice(user.as_bytes());
                    body.push(0);
                    let mut raw = vec![body.len() as u8, 0, 0, 1];
                    raw.extend_from_slice(&body);
                    (raw, AttrName::MysqlUsername, user.to_owned())
                }
                ("Redis", "login") => {
                    let pass = s(e, "password");
                    (
                        format!("*2\r\n$4\r\nAUTH\r\n${}\r\n{pass}\r\n", pass.len()).into_bytes(),
                        AttrName::RedisCommand,
                        format!("AUTH {pass}"),
                    )
                }
                (_, "login") => {
                    (login_report(s(e, "username"), s(e, "password")), AttrName::Password, s(e, "password").to_owned())
                }
                ("Memcached", "version" | "stats") => {
                    (format!("{action}\r\n").into_bytes(), AttrName::MemcachedCommand, action.to_owned())
                }
                ("SMTP", "connection") if e.get("data").is_some() => {
                    let d = &e["data"];
                    let (cmd, arg) = (s(d, "command"), s(d, "arg"));
                    let line = if arg == "None" { cmd.to_owned() } else { format!("{cmd} {arg}") };
                    (format!("{line}\r\n").into_bytes(), AttrName::SmtpCommand, line)
                }
                ("SIP", "request") => {
                    let d = e["data"].as_object().expect("sip data");
                    let mut raw = "OPTIONS sip:100@127.0.0.1 SIP/2.0\r\n".to_owned();
                    for (k, v) in d {
                        raw.push_str(&format!("{k}: {}\r\n", v.as_str().unwrap_or_default()));
                    }
                    (
                        raw.into_bytes(),
                        AttrName::SipHeaderUserAgent,
                        s(d.get("user-agent").unwrap_or(&Value::Null), "").to_owned(),
                    )
                }
                ("HTTP", "GET" | "POST") => (
                    format!("{action} / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").into_bytes(),
                    AttrName::HttpMethod,
                    action.to_owned(),
                ),
                _ => continue,
            };
            if expected.is_empty() {
                continue;
            }
            let got = values(&extract(service, &raw), name);
            assert!(got.contains(&expected), "{service} {action}: {expected:?} not in {got:?}");
            checked += 1;
        }
    }
    assert!(checked > 100, "checked only {checked} qeeqbox events");
}

#[test]
fn elasticpot_requests() {
    let Some(events) = json_lines("elasticpot/elasticpot.json.head") else { return };
    for e in &events {
        let url = s(e, "url");
        let raw = format!(
            "{} {url} HTTP/1.1\r\nHost: 192.0.2.2:9200\r\nUser-Agent: {}\r\n\r\n",
            s(e, "request"),
            s(e, "user_agent")
        );
        let attrs = extract("Elasticsearch", raw.as_bytes());
        let (path, query) = url.split_once('?').unwrap_or((url, ""));
        assert_eq!(values(&attrs, AttrName::HttpPath), vec![path]);
        let expected_query: Vec<&str> = if query.is_empty() { vec![] } else { vec![query] };
        assert_eq!(values(&attrs, AttrName::HttpQuery), expected_query);
        assert_eq!(values(&attrs, AttrName::HttpUserAgent), vec![s(e, "user_agent")]);
        assert!(match_cves("Elasticsearch", raw.as_bytes()).is_empty(), "recon request matched a CVE: {url}");
    }
}

#[test]
fn heralding_credentials() {
    let Some(sessions) = json_lines("heralding/log_session.json.subset") else { return };
    let mut checked = 0;
    for session in &sessions {
        let protocol = s(session, "protocol");
        let service = match protocol {
            "ssh" => "SSH",
            "telnet" => "Telnet",
            "ftp" => "FTP",
            _ => continue,
        };
        for attempt in session["auth_attempts"].as_array().into_iter().flatten() {
            let (user, pass) = (s(attempt, "username"), s(attempt, "password"));
            if user.trim().is_empty() || pass.trim().is_empty() {
                continue;
            }
            let raw = if service == "FTP" {
                format!("USER {user}\r\nPASS {pass}\r\n").into_bytes()
            } else {
                login_report(user, pass)
            };
            let attrs = extract(service, &raw);
            assert_eq!(values(&attrs, AttrName::Username), vec![user.trim()]);
            assert_eq!(values(&attrs, AttrName::Password), vec![pass.trim()]);
            checked += 1;
        }
    }
    assert!(checked > 50, "checked only {checked} Heralding attempts");
}
