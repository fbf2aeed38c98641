//! LDAP: bind capture, a root DSE that names an OpenLDAP server, and empty
//! answers to searches.
//!
//! A simple bind is a login: INFO `login` with the bind DN as `username`,
//! the password, and method `simple` (or `sasl` with the mechanism). Binds
//! let in by `accept` (default `*`: all) get success, others
//! invalidCredentials (49); anonymous binds always succeed, as on a default
//! OpenLDAP. Searches are recorded as INFO `ldap_search` (base, scope) and
//! answered with no entries, except the root DSE (base "", scope base) that
//! scanners read to fingerprint the server. StartTLS and other extended
//! operations are refused.
//! Messages are BER, read whole with a size cap; anything else closes.
//! Options: `accept`, `hostname` (in the naming context).

use std::io;

use super::ber::{self, Reader};
use crate::config::ServiceConfig;
use crate::conn::Conn;
use crate::facts::Fact;

const SEQ: u8 = 0x30;
const INT: u8 = 0x02;
const OCTETS: u8 = 0x04;
const ENUM: u8 = 0x0a;
const SET: u8 = 0x31;
const BIND_REQ: u8 = 0x60;
const BIND_RESP: u8 = 0x61;
const UNBIND: u8 = 0x42;
const SEARCH_REQ: u8 = 0x63;
const SEARCH_ENTRY: u8 = 0x64;
const SEARCH_DONE: u8 = 0x65;
const EXTENDED_REQ: u8 = 0x77;
const EXTENDED_RESP: u8 = 0x78;
const SIMPLE: u8 = 0x80;
const SASL: u8 = 0xa3;

const SUCCESS: i64 = 0;
const PROTOCOL_ERROR: i64 = 2;
const UNAVAILABLE: i64 = 52;
const INVALID_CREDENTIALS: i64 = 49;
const NO_SUCH_OBJECT: i64 = 32;
const UNWILLING: i64 = 53;

/// Largest LDAP message read; binds and searches are far smaller.
const MAX_MESSAGE: usize = 64 * 1024;
const MAX_MESSAGES: usize = 200;

pub async fn handle(conn: &mut Conn, cfg: &ServiceConfig) -> io::Result<()> {
    for _ in 0..MAX_MESSAGES {
        let Some(msg) = read_message(conn).await? else { return Ok(()) };
        let Some(body) = Reader::new(&msg).expect(SEQ) else { return Ok(()) };
        let mut r = Reader::new(body);
        let Some(id) = r.expect(INT).and_then(ber::integer) else { return Ok(()) };
        let Some(op) = r.next() else { return Ok(()) };
        let reply = match op.tag {
            BIND_REQ => bind(conn, cfg, id, op.value).await,
            SEARCH_REQ => search(conn, cfg, id, op.value).await,
            UNBIND => return Ok(()),
            EXTENDED_REQ => {
                let oid = Reader::new(op.value).expect(0x80).unwrap_or_default();
                conn.info(Fact::new("command").with("command", "extended").with("oid", oid)).await;
                let code = if oid == b"1.3.6.1.4.1.1466.20037" { UNAVAILABLE } else { PROTOCOL_ERROR };
                result(id, EXTENDED_RESP, code, "")
            }
            // Abandon has no answer.
            0x50 => continue,
            // Anything else (modify, add, delete...) is refused, recorded in
            // RX; each response tag is its request's plus one, constructed.
            t => result(id, t.wrapping_add(1) | 0x20, UNWILLING, ""),
        };
        conn.write(&reply).await?;
    }
    Ok(())
}

/// One whole BER element off the wire, or `None` at EOF or on a frame that
/// is not an LDAP message.
async fn read_message(conn: &mut Conn) -> io::Result<Option<Vec<u8>>> {
    let mut head = Vec::new();
    loop {
        match ber::frame_len(&head) {
            Ok(Some(total)) if total <= MAX_MESSAGE => {
                let Some(rest) = conn.read_exact(total - head.len()).await? else { return Ok(None) };
                head.extend_from_slice(&rest);
                return Ok(Some(head));
            }
            Ok(Some(_)) | Err(()) => return Ok(None),
            Ok(None) => {
                let Some(b) = conn.read_exact(1).await? else { return Ok(None) };
                head.extend_from_slice(&b);
            }
        }
    }
}

fn result(id: i64, tag: u8, code: i64, message: &str) -> Vec<u8> {
    let op = ber::tlv(
        tag,
        &ber::cat(&[&ber::int(ENUM, code), &ber::tlv(OCTETS, b""), &ber::tlv(OCTETS, message.as_bytes())]),
    );
    ber::tlv(SEQ, &ber::cat(&[&ber::int(INT, id), &op]))
}

async fn bind(conn: &mut Conn, cfg: &ServiceConfig, id: i64, op: &[u8]) -> Vec<u8> {
    let mut r = Reader::new(op);
    let (Some(_version), Some(dn), Some(auth)) = (r.expect(INT), r.expect(OCTETS), r.next()) else {
        return result(id, BIND_RESP, PROTOCOL_ERROR, "");
    };
    let (dn_s, fact, password) = match auth.tag {
        SIMPLE => {
            let f = Fact::login(dn, auth.value).with("method", "simple");
            (String::from_utf8_lossy(dn).into_owned(), f, String::from_utf8_lossy(auth.value).into_owned())
        }
        SASL => {
            let mut s = Reader::new(auth.value);
            let mech = s.expect(OCTETS).unwrap_or_default();
            let cred = s.expect(OCTETS).unwrap_or_default();
            let f = Fact::login(dn, cred).with("method", "sasl").with("mechanism", mech);
            conn.info(f).await;
            return result(id, BIND_RESP, 7, "SASL(-4): no mechanism available");
            // authMethodNotSupported
        }
        _ => return result(id, BIND_RESP, PROTOCOL_ERROR, ""),
    };
    let anonymous = dn.is_empty() && auth.value.is_empty();
    if !anonymous {
        conn.info(fact).await;
    }
    if anonymous || cfg.accepts(&dn_s, &password) {
        result(id, BIND_RESP, SUCCESS, "")
    } else {
        result(id, BIND_RESP, INVALID_CREDENTIALS, "")
    }
}

async fn search(conn: &mut Conn, cfg: &ServiceConfig, id: i64, op: &[u8]) -> Vec<u8> {
    let mut r = Reader::new(op);
    let base = r.expect(OCTETS).unwrap_or_default();
    let scope = r.expect(ENUM).and_then(ber::integer).unwrap_or(-1);
    conn.info(Fact::new("ldap_search").with("base", base).with_value("scope", scope.into())).await;
    let suffix = format!("dc={},dc=local", cfg.hostname());
    if base.is_empty() && scope == 0 {
        let attr = |name: &str, values: &[&str]| {
            let vals: Vec<u8> = values.iter().flat_map(|v| ber::tlv(OCTETS, v.as_bytes())).collect();
            ber::tlv(SEQ, &ber::cat(&[&ber::tlv(OCTETS, name.as_bytes()), &ber::tlv(SET, &vals)]))
        };
        let attrs = ber::cat(&[
            &attr("objectClass", &["top", "OpenLDAProotDSE"]),
            &attr("namingContexts", &[&suffix]),
            &attr("supportedLDAPVersion", &["3"]),
            &attr("supportedSASLMechanisms", &["DIGEST-MD5", "CRAM-MD5"]),
            &attr("supportedExtension", &["1.3.6.1.4.1.4203.1.11.1", "1.3.6.1.4.1.4203.1.11.3"]),
        ]);
        let entry = ber::tlv(SEARCH_ENTRY, &ber::cat(&[&ber::tlv(OCTETS, b""), &ber::tlv(SEQ, &attrs)]));
        let mut out = ber::tlv(SEQ, &ber::cat(&[&ber::int(INT, id), &entry]));
        out.extend(result(id, SEARCH_DONE, SUCCESS, ""));
        return out;
    }
    let base_s = String::from_utf8_lossy(base).to_ascii_lowercase();
    let code = if base_s.ends_with(&suffix) { SUCCESS } else { NO_SUCH_OBJECT };
    result(id, SEARCH_DONE, code, "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_parse_back() {
        let r = result(7, BIND_RESP, INVALID_CREDENTIALS, "");
        let body = Reader::new(&r).expect(SEQ).unwrap();
        let mut m = Reader::new(body);
        assert_eq!(ber::integer(m.expect(INT).unwrap()), Some(7));
        let op = m.next().unwrap();
        assert_eq!(op.tag, BIND_RESP);
        assert_eq!(ber::integer(Reader::new(op.value).expect(ENUM).unwrap()), Some(49));
    }
}
