//! Event lines, written straight into bytes.
//!
//! Every event becomes one line of JSON in the [`apiary_model::WireEvent`]
//! shape, on the connection's own task. Going through `Event` → `WireEvent` →
//! serde costs about twenty small allocations, a chrono format and a hex
//! string per event; at thousands of connections a second, four or more events
//! each, that was the largest user-space cost of a connection. Here what never
//! changes within a session (node, session id, service, addresses) is encoded
//! once when the session starts, the date and time once per second per thread,
//! and each event only appends its id, time, kind and payload (hex, and the
//! MD5 of that hex, as HoneyDB defines `data_hash`) to one buffer.
//!
//! The output is byte for byte what `serde_json::to_string(&event.to_wire())`
//! gives; the tests below hold the two together.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;

use apiary_model::{canonical_ip, EventKind, Protocol};
use md5::{Digest, Md5};
use rand::Rng;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The parts of a session's event lines that are the same for every event.
#[derive(Debug, Clone)]
pub struct Template {
    /// `,"node":…,"session":…` up to `split`, then
    /// `,"service":…,"local_host":…,"local_port":…,"remote_host":…,"remote_port":…`
    /// (one allocation per session).
    text: String,
    split: usize,
    /// `,"protocol":"TCP"`
    protocol: &'static str,
}

/// Appends `s` as a JSON string literal. Node ids, UUIDs, service names and
/// IP addresses never need escaping and are copied as they are; anything
/// else goes through serde, so the result is always exact.
fn push_json_str(out: &mut String, s: &str) {
    if s.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\') {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into()));
    }
}

impl Template {
    pub fn new(
        node: &str,
        session: &str,
        service: &str,
        protocol: Protocol,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Template {
        let mut text = String::with_capacity(224);
        text.push_str(",\"node\":");
        push_json_str(&mut text, node);
        text.push_str(",\"session\":");
        push_json_str(&mut text, session);
        let split = text.len();
        text.push_str(",\"service\":");
        push_json_str(&mut text, service);
        // An IP address's text needs no escaping.
        text.push_str(",\"local_host\":\"");
        push_ip(&mut text, canonical_ip(local.ip()));
        text.push_str("\",\"local_port\":");
        push_port(&mut text, local.port());
        text.push_str(",\"remote_host\":\"");
        push_ip(&mut text, canonical_ip(remote.ip()));
        text.push_str("\",\"remote_port\":");
        push_port(&mut text, remote.port());
        let protocol = match protocol {
            Protocol::Tcp => ",\"protocol\":\"TCP\"",
            Protocol::Udp => ",\"protocol\":\"UDP\"",
        };
        Template { text, split, protocol }
    }

    /// One event's line, without the trailing newline.
    #[cfg(test)]
    pub fn encode(&self, id: &str, ts_ms: i64, kind: EventKind, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out, id.as_bytes(), ts_ms, kind, data);
        out
    }

    /// Appends one event's line, without the trailing newline, to `out`
    /// (a buffer the caller reuses, so an event costs no allocation).
    pub fn encode_into(&self, out: &mut Vec<u8>, id: &[u8], ts_ms: i64, kind: EventKind, data: &[u8]) {
        let (ident, place) = self.text.split_at(self.split);
        out.reserve(self.text.len() + 2 * data.len() + 220);
        out.extend_from_slice(b"{\"id\":\"");
        out.extend_from_slice(id);
        out.push(b'"');
        out.extend_from_slice(ident.as_bytes());
        push_time(out, ts_ms);
        out.extend_from_slice(self.protocol.as_bytes());
        out.extend_from_slice(b",\"event\":\"");
        out.extend_from_slice(kind.as_str().as_bytes());
        out.push(b'"');
        out.extend_from_slice(place.as_bytes());
        out.extend_from_slice(b",\"data\":\"");
        let hex_at = out.len();
        for &b in data {
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 15)]);
        }
        let digest = if data.is_empty() { None } else { Some(Md5::digest(&out[hex_at..])) };
        out.extend_from_slice(b"\",\"bytes\":");
        push_uint(out, (2 * data.len()) as u64);
        out.extend_from_slice(b",\"data_hash\":\"");
        match digest {
            Some(digest) => {
                for b in digest {
                    out.push(HEX[usize::from(b >> 4)]);
                    out.push(HEX[usize::from(b & 15)]);
                }
            }
            // Every CONNECT: no need to hash nothing each time.
            None => out.extend_from_slice(EMPTY_MD5),
        }
        out.extend_from_slice(b"\"}");
    }
}

/// The MD5 of no bytes, in hex.
const EMPTY_MD5: &[u8; 32] = b"d41d8cd98f00b204e9800998ecf8427e";

/// Appends an address as `Display` writes it; IPv4 (nearly every session)
/// without going through `core::fmt`, which was most of a session's set-up.
fn push_ip(text: &mut String, ip: std::net::IpAddr) {
    match ip {
        std::net::IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    text.push('.');
                }
                push_port(text, u16::from(octet));
            }
        }
        std::net::IpAddr::V6(v6) => {
            use std::fmt::Write as _;
            let _ = write!(text, "{v6}");
        }
    }
}

/// Appends a decimal number.
fn push_port(text: &mut String, n: u16) {
    let mut buf = [0u8; 20];
    for &d in decimal(u64::from(n), &mut buf) {
        text.push(char::from(d));
    }
}

fn push_uint(out: &mut Vec<u8>, n: u64) {
    let mut buf = [0u8; 20];
    out.extend_from_slice(decimal(n, &mut buf));
}

/// The ASCII decimal digits of `n`, written at the end of `buf`, without
/// `core::fmt` (event encoding writes several numbers per event).
fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

/// `,"date":"YYYY-MM-DD","time":"HH:MM:SS"` of one second, as
/// [`apiary_model::time::date_parts`] writes it.
struct SecondCache {
    second: i64,
    text: String,
}

thread_local! {
    static SECOND: RefCell<SecondCache> = const { RefCell::new(SecondCache { second: i64::MIN, text: String::new() }) };
}

/// Appends the date, time and millisecond fields of `ts_ms`. The date and time
/// are formatted (by the model's own function) once per second per thread.
fn push_time(out: &mut Vec<u8>, ts_ms: i64) {
    let second = ts_ms.div_euclid(1000);
    SECOND.with(|cell| {
        let mut cache = cell.borrow_mut();
        if cache.second != second {
            let (date, time, _) = apiary_model::time::date_parts(ts_ms);
            cache.text.clear();
            cache.text.push_str(",\"date\":");
            push_json_str(&mut cache.text, &date);
            cache.text.push_str(",\"time\":");
            push_json_str(&mut cache.text, &time);
            cache.second = second;
        }
        out.extend_from_slice(cache.text.as_bytes());
    });
    let ms = ts_ms.rem_euclid(1000);
    out.extend_from_slice(b",\"millisecond\":\"");
    out.extend_from_slice(&[b'0' + (ms / 100) as u8, b'0' + (ms / 10 % 10) as u8, b'0' + (ms % 10) as u8]);
    out.push(b'"');
}

thread_local! {
    /// This thread's id sequence: a random 128-bit start (from the thread's
    /// CSPRNG, drawn at the first id) and the count of ids made since.
    static IDS: Cell<Option<(u64, u64)>> = const { Cell::new(None) };
}

/// A v4 UUID in its hyphenated lowercase form. Ids only need to be unique
/// (they are the server's idempotency keys, and a sensor key is needed to
/// send any), not unpredictable: each thread draws one random 128-bit start
/// from its CSPRNG and then counts up from it in the low 64 bits, so an id
/// costs an addition rather than a CSPRNG draw (five or more per
/// connection). Two threads' (or sensors') sequences meet only if their
/// random upper 58 bits are equal. On the stack: an event's id is copied
/// into its line and needs no allocation of its own.
pub fn uuid_text() -> [u8; uuid::fmt::Hyphenated::LENGTH] {
    let (hi, lo) = IDS.with(|ids| {
        let (hi, lo) = ids.get().unwrap_or_else(|| {
            let r: [u64; 2] = rand::rng().random();
            (r[0], r[1])
        });
        // The top two bits of `lo` become the variant bits below, so the
        // low 62 bits are what counts: they repeat after 2^62 ids.
        let next = (hi, lo.wrapping_add(1));
        ids.set(Some(next));
        next
    });
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&hi.to_be_bytes());
    bytes[8..].copy_from_slice(&lo.to_be_bytes());
    let id = uuid::Builder::from_random_bytes(bytes).into_uuid();
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    id.hyphenated().encode_lower(&mut buf);
    buf
}

/// [`uuid_text`] as a `String`.
#[cfg(test)]
pub fn new_uuid() -> String {
    // Hyphenated hex digits are ASCII.
    String::from_utf8_lossy(&uuid_text()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use apiary_model::Event;

    /// The line the serde path writes for the same event.
    fn reference(
        t: (&str, &str, &str, Protocol, SocketAddr, SocketAddr),
        id: &str,
        ts_ms: i64,
        kind: EventKind,
        data: &[u8],
    ) -> String {
        let (node, session, service, protocol, local, remote) = t;
        let event = Event {
            id: id.into(),
            node: node.into(),
            session: session.into(),
            ts_ms,
            protocol,
            kind,
            service: service.into(),
            local_host: canonical_ip(local.ip()),
            local_port: local.port(),
            remote_host: canonical_ip(remote.ip()),
            remote_port: remote.port(),
            data: data.to_vec(),
            origin: Default::default(),
            facts: Default::default(),
        };
        serde_json::to_string(&event.to_wire()).unwrap()
    }

    #[test]
    fn same_bytes_as_the_serde_path() {
        let node = "0123456789abcdef0123456789abcdef";
        let session = new_uuid();
        let mapped: SocketAddr = "[::ffff:192.0.2.7]:50123".parse().unwrap();
        let v6: SocketAddr = "[2001:db8::1]:23".parse().unwrap();
        let v4: SocketAddr = "127.0.0.1:6379".parse().unwrap();
        let v4b: SocketAddr = "203.0.113.255:0".parse().unwrap();
        let v4c: SocketAddr = "0.10.100.9:65535".parse().unwrap();
        let payloads: [&[u8]; 5] =
            [b"", b"PING\r\n", &[0, 255, 0x7f, b'"', b'\\'], &[0xab; 3000], "é\u{1F41D}".as_bytes()];
        let times = [0, 999, 1_000, 1_764_197_999_999, 1_764_198_000_000, 4_102_444_800_123, 951_782_400_000];
        let mut n = 0;
        for (service, protocol, local, remote) in [
            ("Telnet", Protocol::Tcp, v4, mapped),
            ("DNS", Protocol::Udp, v6, v6),
            ("Elasticsearch", Protocol::Tcp, mapped, v4),
            ("Redis", Protocol::Tcp, v4b, v4c),
        ] {
            let t = Template::new(node, &session, service, protocol, local, remote);
            for kind in [EventKind::Connect, EventKind::Rx, EventKind::Tx, EventKind::Info] {
                for data in payloads {
                    for ts in times {
                        let id = new_uuid();
                        let ours = String::from_utf8(t.encode(&id, ts, kind, data)).unwrap();
                        let theirs = reference((node, &session, service, protocol, local, remote), &id, ts, kind, data);
                        assert_eq!(ours, theirs);
                        n += 1;
                    }
                }
            }
        }
        assert_eq!(n, 4 * 4 * 5 * 7);
    }

    #[test]
    fn lines_parse_and_validate_as_events() {
        let local: SocketAddr = "127.0.0.1:2323".parse().unwrap();
        let remote: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let t = Template::new("0123456789abcdef0123456789abcdef", &new_uuid(), "Telnet", Protocol::Tcp, local, remote);
        let now = apiary_model::time::now_ms();
        let mut body = Vec::new();
        for data in [&b""[..], b"root\r\n"] {
            body.extend(t.encode(&new_uuid(), now, EventKind::Rx, data));
            body.push(b'\n');
        }
        let batch = apiary_model::parse_batch(&body, 10, now).unwrap();
        assert!(batch.rejected.is_empty(), "{:?}", batch.rejected);
        assert_eq!(batch.events.len(), 2);
        assert_eq!(batch.events[1].data, b"root\r\n");
    }

    #[test]
    fn strings_that_need_escaping_are_escaped() {
        let mut out = String::new();
        push_json_str(&mut out, "a\"b\\c\u{1}é");
        assert_eq!(out, serde_json::to_string("a\"b\\c\u{1}é").unwrap());
    }

    #[test]
    fn uuids_are_v4_and_distinct() {
        let a = new_uuid();
        let parsed = uuid::Uuid::parse_str(&a).unwrap();
        assert_eq!(parsed.get_version_num(), 4);
        assert_eq!(a, parsed.hyphenated().to_string());
        let many: std::collections::HashSet<String> = (0..10_000).map(|_| new_uuid()).collect();
        assert_eq!(many.len(), 10_000);
    }
}
