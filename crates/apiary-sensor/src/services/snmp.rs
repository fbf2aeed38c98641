//! SNMP over UDP: v1/v2c Get, GetNext and GetBulk answered from a small
//! "system" MIB, like a stock net-snmp agent on Linux; Set refused as
//! read-only. SNMPv3 and anything unparsable are recorded and not answered.
//!
//! The community string is the credential SNMP scanners brute-force, so each
//! request gives an INFO `snmp` fact: `version`, `community`, `pdu` and the
//! requested `oids`. A request whose community is not let in by `accept`
//! (matched as the user name; the default `*` takes any) is dropped silently,
//! as a real agent does. Answers never carry more than a few variables, so
//! the reply stays within the UDP loop's anti-amplification bound.
//! Options: `banner` (sysDescr), `hostname` (sysName), `accept`.

use super::ber::{self, Reader};
use crate::config::ServiceConfig;
use crate::facts::Fact;

const SEQ: u8 = 0x30;
const INT: u8 = 0x02;
const OCTETS: u8 = 0x04;
const NULL: u8 = 0x05;
const OID: u8 = 0x06;
const TIMETICKS: u8 = 0x43;
const GET: u8 = 0xa0;
const GET_NEXT: u8 = 0xa1;
const RESPONSE: u8 = 0xa2;
const SET: u8 = 0xa3;
const GET_BULK: u8 = 0xa5;
const NO_SUCH_OBJECT: u8 = 0x80;
const END_OF_MIB: u8 = 0x82;
/// Variables answered per request (the rest of a request is recorded only).
const MAX_VARS: usize = 4;
const MAX_OIDS_RECORDED: usize = 32;

/// Error statuses (RFC 3416).
const NO_SUCH_NAME: i64 = 2;
const READ_ONLY: i64 = 4;
const NOT_WRITABLE: i64 = 17;

const DEFAULT_DESCR: &str = "Linux svr04 4.15.0-213-generic #224-Ubuntu SMP x86_64";

/// The MIB we answer from, in OID order (GetNext walks it).
fn mib(cfg: &ServiceConfig) -> Vec<(&'static str, Vec<u8>)> {
    let descr = cfg.banner.as_deref().unwrap_or(DEFAULT_DESCR);
    let descr = &descr.as_bytes()[..descr.len().min(64)];
    let name = cfg.hostname().as_bytes();
    let name = &name[..name.len().min(32)];
    // Uptime in hundredths of a second; a believable, growing number.
    let ticks = (apiary_model::time::now_ms() / 10) % (1 << 31);
    vec![
        ("1.3.6.1.2.1.1.1.0", ber::tlv(OCTETS, descr)),
        ("1.3.6.1.2.1.1.2.0", ber::tlv(OID, &ber::oid_from_str("1.3.6.1.4.1.8072.3.2.10"))),
        ("1.3.6.1.2.1.1.3.0", ber::int(TIMETICKS, ticks)),
        ("1.3.6.1.2.1.1.4.0", ber::tlv(OCTETS, b"Me <me@example.org>")),
        ("1.3.6.1.2.1.1.5.0", ber::tlv(OCTETS, name)),
        ("1.3.6.1.2.1.1.6.0", ber::tlv(OCTETS, b"Sitting on the Dock of the Bay")),
        ("1.3.6.1.2.1.1.7.0", ber::int(INT, 72)),
    ]
}

/// Compares dotted OIDs numerically, for GetNext.
fn oid_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let nums = |s: &str| s.split('.').map(|p| p.parse::<u64>().unwrap_or(0)).collect::<Vec<_>>();
    nums(a).cmp(&nums(b))
}

struct Request<'a> {
    version: i64,
    community: &'a [u8],
    pdu: u8,
    request_id: i64,
    /// GetBulk: non-repeaters and max-repetitions (in the error fields).
    non_repeaters: i64,
    max_repetitions: i64,
    oids: Vec<String>,
}

fn parse(datagram: &[u8]) -> Option<Request<'_>> {
    let msg = Reader::new(datagram).expect(SEQ)?;
    let mut r = Reader::new(msg);
    let version = ber::integer(r.expect(INT)?)?;
    let community = r.expect(OCTETS)?;
    let pdu = r.next()?;
    let mut p = Reader::new(pdu.value);
    let request_id = ber::integer(p.expect(INT)?)?;
    let non_repeaters = ber::integer(p.expect(INT)?)?;
    let max_repetitions = ber::integer(p.expect(INT)?)?;
    let mut binds = Reader::new(p.expect(SEQ)?);
    let mut oids = Vec::new();
    while let Some(bind) = binds.next() {
        if oids.len() >= MAX_OIDS_RECORDED {
            break;
        }
        let oid = Reader::new(bind.value).expect(OID).and_then(ber::oid_to_string)?;
        oids.push(oid);
    }
    Some(Request { version, community, pdu: pdu.tag, request_id, non_repeaters, max_repetitions, oids })
}

/// SNMPv3 messages carry the version and then a header; record the version.
fn version_only(datagram: &[u8]) -> Option<i64> {
    let msg = Reader::new(datagram).expect(SEQ)?;
    ber::integer(Reader::new(msg).expect(INT)?)
}

pub fn answer(request: &[u8], cfg: &ServiceConfig, facts: &mut Vec<Fact>) -> Option<Vec<u8>> {
    let Some(req) = parse(request) else {
        if let Some(v) = version_only(request) {
            facts.push(Fact::new("snmp").with("version", version_name(v)));
        }
        return None;
    };
    let pdu_name = match req.pdu {
        GET => "get",
        GET_NEXT => "getnext",
        SET => "set",
        GET_BULK => "getbulk",
        _ => "other",
    };
    facts.push(
        Fact::new("snmp")
            .with("version", version_name(req.version))
            .with("community", req.community)
            .with("pdu", pdu_name)
            .with_value("oids", req.oids.clone().into()),
    );
    if !(req.version == 0 || req.version == 1) || pdu_name == "other" {
        return None;
    }
    if !cfg.accepts(&String::from_utf8_lossy(req.community), "") {
        return None;
    }
    let v1 = req.version == 0;
    let table = mib(cfg);
    let mut binds = Vec::new();
    let (mut status, mut index) = (0i64, 0i64);
    let lookup = |oid: &str| table.iter().find(|(o, _)| *o == oid).map(|(_, v)| v.clone());
    let next = |oid: &str| table.iter().find(|(o, _)| oid_cmp(o, oid).is_gt()).map(|(o, v)| (o.to_string(), v.clone()));
    let oids: Vec<&String> = req.oids.iter().take(MAX_VARS).collect();
    match req.pdu {
        SET => {
            status = if v1 { READ_ONLY } else { NOT_WRITABLE };
            index = 1;
            for oid in &oids {
                binds.push(bind(oid, &ber::tlv(NULL, &[])));
            }
        }
        GET => {
            for (i, oid) in oids.iter().enumerate() {
                match lookup(oid) {
                    Some(v) => binds.push(bind(oid, &v)),
                    None if v1 => {
                        if status == 0 {
                            (status, index) = (NO_SUCH_NAME, i as i64 + 1);
                        }
                        binds.push(bind(oid, &ber::tlv(NULL, &[])));
                    }
                    None => binds.push(bind(oid, &ber::tlv(NO_SUCH_OBJECT, &[]))),
                }
            }
        }
        _ => {
            // GetNext, and GetBulk walked as non-repeaters then repetitions.
            let reps = if req.pdu == GET_BULK { req.max_repetitions.clamp(1, MAX_VARS as i64) as usize } else { 1 };
            let fixed =
                if req.pdu == GET_BULK { (req.non_repeaters.max(0) as usize).min(oids.len()) } else { oids.len() };
            let mut walk: Vec<(usize, String)> = oids.iter().enumerate().map(|(i, o)| (i, o.to_string())).collect();
            for round in 0..reps {
                for (i, cur) in walk.iter_mut() {
                    if round > 0 && *i < fixed {
                        continue;
                    }
                    if binds.len() >= MAX_VARS {
                        break;
                    }
                    match next(cur) {
                        Some((o, v)) => {
                            binds.push(bind(&o, &v));
                            *cur = o;
                        }
                        None if v1 => {
                            if status == 0 {
                                (status, index) = (NO_SUCH_NAME, *i as i64 + 1);
                            }
                            binds.push(bind(cur, &ber::tlv(NULL, &[])));
                        }
                        None => binds.push(bind(cur, &ber::tlv(END_OF_MIB, &[]))),
                    }
                }
            }
        }
    }
    let pdu = ber::tlv(
        RESPONSE,
        &ber::cat(&[
            &ber::int(INT, req.request_id),
            &ber::int(INT, status),
            &ber::int(INT, index),
            &ber::tlv(SEQ, &binds.concat()),
        ]),
    );
    Some(ber::tlv(SEQ, &ber::cat(&[&ber::int(INT, req.version), &ber::tlv(OCTETS, req.community), &pdu])))
}

fn bind(oid: &str, value: &[u8]) -> Vec<u8> {
    ber::tlv(SEQ, &ber::cat(&[&ber::tlv(OID, &ber::oid_from_str(oid)), value]))
}

fn version_name(v: i64) -> String {
    match v {
        0 => "1".into(),
        1 => "2c".into(),
        3 => "3".into(),
        v => format!("unknown({v})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `snmpget -v2c -c public host 1.3.6.1.2.1.1.1.0 1.3.6.1.2.1.1.9.0`, built by hand.
    fn get(version: i64, community: &[u8], pdu: u8, oids: &[&str]) -> Vec<u8> {
        let binds: Vec<u8> = oids.iter().flat_map(|o| bind(o, &ber::tlv(NULL, &[]))).collect();
        let pdu = ber::tlv(
            pdu,
            &ber::cat(&[&ber::int(INT, 4242), &ber::int(INT, 0), &ber::int(INT, 0), &ber::tlv(SEQ, &binds)]),
        );
        ber::tlv(SEQ, &ber::cat(&[&ber::int(INT, version), &ber::tlv(OCTETS, community), &pdu]))
    }

    #[test]
    fn answers_sysdescr_and_records_the_community() {
        let cfg = ServiceConfig::default();
        let mut facts = Vec::new();
        let req = get(1, b"s3cr3t", GET, &["1.3.6.1.2.1.1.1.0", "1.3.6.1.2.1.1.9.0"]);
        let reply = answer(&req, &cfg, &mut facts).unwrap();
        assert!(reply.len() <= req.len().max(64) * 2);
        let r = parse(&reply).unwrap();
        assert_eq!((r.pdu, r.request_id, r.version), (RESPONSE, 4242, 1));
        assert_eq!(r.oids, vec!["1.3.6.1.2.1.1.1.0", "1.3.6.1.2.1.1.9.0"]);
        assert!(reply.windows(DEFAULT_DESCR.len()).any(|w| w == DEFAULT_DESCR.as_bytes()));
        assert_eq!(
            facts[0],
            Fact::new("snmp")
                .with("version", "2c")
                .with("community", "s3cr3t")
                .with("pdu", "get")
                .with_value("oids", serde_json::json!(["1.3.6.1.2.1.1.1.0", "1.3.6.1.2.1.1.9.0"]))
        );
    }

    #[test]
    fn v1_unknown_is_no_such_name_and_walks() {
        let cfg = ServiceConfig::default();
        let mut facts = Vec::new();
        let reply = answer(&get(0, b"public", GET, &["1.3.6.1.2.1.1.99.0"]), &cfg, &mut facts).unwrap();
        let r = parse(&reply).unwrap();
        assert_eq!(r.non_repeaters, NO_SUCH_NAME);
        let reply = answer(&get(0, b"public", GET_NEXT, &["1.3.6.1.2.1.1"]), &cfg, &mut facts).unwrap();
        assert_eq!(parse(&reply).unwrap().oids, vec!["1.3.6.1.2.1.1.1.0"]);
        let reply = answer(&get(1, b"public", GET_BULK, &["1.3.6"]), &cfg, &mut facts).unwrap();
        assert!(
            reply.len() <= 2 * 64.max(get(1, b"public", GET_BULK, &["1.3.6"]).len())
                || parse(&reply).unwrap().oids.len() <= MAX_VARS
        );
    }

    #[test]
    fn refused_community_and_v3_get_no_answer() {
        let cfg = ServiceConfig { accept: vec!["public".into()], ..Default::default() };
        let mut facts = Vec::new();
        assert!(answer(&get(1, b"private", GET, &["1.3.6.1.2.1.1.1.0"]), &cfg, &mut facts).is_none());
        assert!(answer(&get(1, b"public", GET, &["1.3.6.1.2.1.1.1.0"]), &cfg, &mut facts).is_some());
        let v3 = ber::tlv(SEQ, &ber::cat(&[&ber::int(INT, 3), &ber::tlv(SEQ, &[])]));
        assert!(answer(&v3, &cfg, &mut facts).is_none());
        assert_eq!(facts.last().unwrap(), &Fact::new("snmp").with("version", "3"));
    }
}
