//! SMTP: a Postfix-like server that accepts mail and relays nothing.
//!
//! AUTH PLAIN and AUTH LOGIN credentials become INFO `login`; each message's
//! envelope becomes INFO `mail`; the message itself is in the RX events and
//! is discarded. STARTTLS is declined (not advertised).
//! Options: `hostname`, `banner` (text after `220 <hostname> `), `accept`.

use std::io;

use crate::config::ServiceConfig;
use crate::conn::Conn;
use crate::facts::Fact;

const MAX_LINE: usize = 2048;
const MAX_COMMANDS: usize = 500;
const MAX_MESSAGE: usize = 256 * 1024;
const MAX_RCPT: usize = 100;

pub async fn handle(conn: &mut Conn, cfg: &ServiceConfig) -> io::Result<()> {
    let host = cfg.hostname().to_owned();
    let banner = cfg.banner.as_deref().unwrap_or("ESMTP Postfix (Ubuntu)");
    conn.write(format!("220 {host} {banner}\r\n").as_bytes()).await?;
    let mut from = String::new();
    let mut rcpt: Vec<String> = Vec::new();
    for _ in 0..MAX_COMMANDS {
        let Some(line) = conn.read_line(MAX_LINE).await? else { return Ok(()) };
        let text = String::from_utf8_lossy(&line).into_owned();
        let (verb, arg) = text.split_once(' ').unwrap_or((&text, ""));
        let verb = verb.to_ascii_uppercase();
        let reply: String = match verb.as_str() {
            "EHLO" => format!("250-{host}\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-AUTH PLAIN LOGIN\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250 SMTPUTF8"),
            "HELO" => format!("250 {host}"),
            "AUTH" => {
                let mut parts = arg.split_whitespace();
                let mech = parts.next().unwrap_or("").to_ascii_uppercase();
                let initial = parts.next().map(str::to_owned);
                match mech.as_str() {
                    "PLAIN" => {
                        let b64 = match initial {
                            Some(i) => i,
                            None => {
                                conn.write(b"334 \r\n").await?;
                                let Some(l) = conn.read_line(MAX_LINE).await? else { return Ok(()) };
                                String::from_utf8_lossy(&l).into_owned()
                            }
                        };
                        match base64_decode(&b64) {
                            Some(raw) => {
                                // authzid \0 authcid \0 password
                                let mut f = raw.split(|&b| b == 0);
                                let _authz = f.next();
                                let u = f.next().unwrap_or(&[]).to_vec();
                                let p = f.next().unwrap_or(&[]).to_vec();
                                auth_result(conn, cfg, &u, &p, "plain").await
                            }
                            None => "501 5.5.2 Syntax error".into(),
                        }
                    }
                    "LOGIN" => {
                        let u = match initial {
                            Some(i) => base64_decode(&i).unwrap_or_default(),
                            None => {
                                conn.write(b"334 VXNlcm5hbWU6\r\n").await?;
                                let Some(l) = conn.read_line(MAX_LINE).await? else { return Ok(()) };
                                base64_decode(&String::from_utf8_lossy(&l)).unwrap_or_default()
                            }
                        };
                        conn.write(b"334 UGFzc3dvcmQ6\r\n").await?;
                        let Some(l) = conn.read_line(MAX_LINE).await? else { return Ok(()) };
                        let p = base64_decode(&String::from_utf8_lossy(&l)).unwrap_or_default();
                        auth_result(conn, cfg, &u, &p, "login").await
                    }
                    _ => "504 5.5.4 Unrecognized authentication type".into(),
                }
            }
            "MAIL" => {
                from = arg.split_once(':').map_or("", |(_, a)| a).trim().to_owned();
                rcpt.clear();
                "250 2.1.0 Ok".into()
            }
            "RCPT" => {
                if rcpt.len() < MAX_RCPT {
                    rcpt.push(arg.split_once(':').map_or("", |(_, a)| a).trim().to_owned());
                }
                "250 2.1.5 Ok".into()
            }
            "DATA" => {
                if rcpt.is_empty() {
                    "554 5.5.1 Error: no valid recipients".into()
                } else {
                    conn.write(b"354 End data with <CR><LF>.<CR><LF>\r\n").await?;
                    let mut size = 0usize;
                    let mut subject = String::new();
                    loop {
                        let Some(l) = conn.read_line(MAX_LINE * 4).await? else { return Ok(()) };
                        if l == b"." {
                            break;
                        }
                        size += l.len() + 2;
                        if subject.is_empty() && l.len() > 9 && l[..9].eq_ignore_ascii_case(b"subject: ") {
                            subject = String::from_utf8_lossy(&l[9..]).into_owned();
                        }
                        if size > MAX_MESSAGE {
                            conn.write(b"552 5.3.4 Message size exceeds fixed limit\r\n").await?;
                            return Ok(());
                        }
                    }
                    let fact = Fact::new("mail")
                        .with("from", &from)
                        .with_value("to", serde_json::json!(rcpt))
                        .with("subject", &subject)
                        .with_value("size", size.into());
                    conn.info(fact).await;
                    rcpt.clear();
                    format!("250 2.0.0 Ok: queued as {}", queue_id())
                }
            }
            "RSET" => {
                rcpt.clear();
                "250 2.0.0 Ok".into()
            }
            "NOOP" => "250 2.0.0 Ok".into(),
            "VRFY" => "252 2.0.0 Cannot VRFY user".into(),
            "STARTTLS" => "454 4.7.0 TLS not available due to local problem".into(),
            "QUIT" => {
                conn.write(b"221 2.0.0 Bye\r\n").await?;
                return Ok(());
            }
            _ => "502 5.5.2 Error: command not recognized".into(),
        };
        conn.write(format!("{reply}\r\n").as_bytes()).await?;
    }
    Ok(())
}

async fn auth_result(conn: &mut Conn, cfg: &ServiceConfig, u: &[u8], p: &[u8], method: &str) -> String {
    conn.info(Fact::login(u, p).with("method", method)).await;
    if cfg.accepts(&String::from_utf8_lossy(u), &String::from_utf8_lossy(p)) {
        "235 2.7.0 Authentication successful".into()
    } else {
        "535 5.7.8 Error: authentication failed: authentication failure".into()
    }
}

fn queue_id() -> String {
    let n: u64 = rand::random();
    format!("{:010X}", n & 0xFF_FFFF_FFFF)
}

/// Standard base64 (padding optional); `None` on anything else.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.trim().bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64() {
        assert_eq!(super::base64_decode("AHVzZXIAcGFzcw==").unwrap(), b"\0user\0pass");
        assert_eq!(super::base64_decode("YWRtaW4").unwrap(), b"admin");
        assert!(super::base64_decode("**").is_none());
    }
}
