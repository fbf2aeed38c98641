//! SIP over UDP: answers OPTIONS (200 with the Allow list), challenges
//! REGISTER and INVITE with a Digest 401, and refuses authenticated attempts
//! with 403 after capturing the user name and digest (INFO `login`). The
//! method, URI and User-Agent are an INFO `sip` fact. No call is ever placed.
//! Options: `banner` (the `Server:` header).

use crate::config::ServiceConfig;
use crate::facts::Fact;

pub fn answer(req: &[u8], cfg: &ServiceConfig, facts: &mut Vec<Fact>) -> Option<Vec<u8>> {
    let text = String::from_utf8_lossy(req);
    let mut lines = text.split("\r\n").flat_map(|l| l.split('\n'));
    let request_line = lines.next()?;
    let mut parts = request_line.split_whitespace();
    let (method, uri, version) = (parts.next()?, parts.next()?, parts.next()?);
    if !version.starts_with("SIP/2.0") || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let mut copied = Vec::new();
    let mut user_agent = "";
    let mut authorization = None;
    for line in lines.take(64) {
        if line.is_empty() {
            break;
        }
        let Some((k, v)) = line.split_once(':') else { continue };
        let key = k.trim().to_ascii_lowercase();
        match key.as_str() {
            "via" | "v" | "from" | "f" | "call-id" | "i" | "cseq" => copied.push(line.to_owned()),
            "to" | "t" => {
                let mut to = line.to_owned();
                if !to.contains(";tag=") {
                    to.push_str(";tag=as5f1c0b3e");
                }
                copied.push(to)
            }
            "user-agent" => user_agent = v.trim(),
            "authorization" | "proxy-authorization" => authorization = Some(v.trim().to_owned()),
            _ => {}
        }
    }
    facts.push(Fact::new("sip").with("method", method).with("uri", uri).with("user_agent", user_agent));
    let (status, extra) = match method {
        "OPTIONS" => ("200 OK", "Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, SUBSCRIBE, NOTIFY, INFO, PUBLISH, MESSAGE\r\nAccept: application/sdp\r\n".to_owned()),
        "REGISTER" | "INVITE" | "SUBSCRIBE" | "MESSAGE" => match &authorization {
            Some(auth) => {
                let user = digest_param(auth, "username").unwrap_or_default();
                facts.push(
                    Fact::login(&user, "")
                        .with("method", "sip_digest")
                        .with("response", digest_param(auth, "response").unwrap_or_default())
                        .with("realm", digest_param(auth, "realm").unwrap_or_default()),
                );
                ("403 Forbidden", String::new())
            }
            None => {
                let nonce = format!("{:08x}", rand::random::<u32>());
                ("401 Unauthorized", format!("WWW-Authenticate: Digest algorithm=MD5, realm=\"asterisk\", nonce=\"{nonce}\"\r\n"))
            }
        },
        "ACK" => return None,
        "BYE" | "CANCEL" => ("200 OK", String::new()),
        _ => ("501 Not Implemented", String::new()),
    };
    let server = cfg.banner.as_deref().unwrap_or("Asterisk PBX 16.28.0");
    let mut out = format!("SIP/2.0 {status}\r\n");
    for h in copied {
        out.push_str(&h);
        out.push_str("\r\n");
    }
    out.push_str(&format!("Server: {server}\r\n{extra}Content-Length: 0\r\n\r\n"));
    Some(out.into_bytes())
}

fn digest_param(auth: &str, name: &str) -> Option<String> {
    auth.split(',').find_map(|p| {
        let p = p.trim().trim_start_matches("Digest ").trim();
        let (k, v) = p.split_once('=')?;
        (k.trim().eq_ignore_ascii_case(name)).then(|| v.trim().trim_matches('"').to_owned())
    })
}
