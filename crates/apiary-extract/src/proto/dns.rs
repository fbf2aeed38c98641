//! DNS: the names queried, read from the wire format (RFC 1035).

use crate::attr::AttrName;
use crate::sink::Sink;

/// Bounds on hostile packets: questions read, pointer jumps followed, name length.
const MAX_QUESTIONS: usize = 8;
const MAX_JUMPS: usize = 16;
const MAX_NAME: usize = 255;

/// Emits one `domain` per question of a query; `tcp` means a 2-byte length prefix
/// may lead. Returns whether any name was read.
pub(crate) fn extract(p: &[u8], tcp: bool, sink: &mut Sink<'_>) -> bool {
    let msg = strip_length_prefix(p, tcp);
    if msg.len() < 12 || msg[2] & 0x80 != 0 {
        return false; // too short, or a response
    }
    let qdcount = usize::from(u16::from_be_bytes([msg[4], msg[5]]));
    let mut pos = 12;
    let mut found = false;
    let mut name = Vec::with_capacity(64);
    for _ in 0..qdcount.min(MAX_QUESTIONS) {
        let Some(next) = read_name(msg, pos, &mut name) else { break };
        if name.is_empty() {
            sink.emit(AttrName::Domain, b".");
        } else {
            sink.emit(AttrName::Domain, &name);
        }
        found = true;
        pos = next + 4; // QTYPE, QCLASS
        if pos > msg.len() {
            break;
        }
    }
    found
}

fn strip_length_prefix(p: &[u8], tcp: bool) -> &[u8] {
    if p.len() >= 14 {
        let len = usize::from(u16::from_be_bytes([p[0], p[1]]));
        if tcp || len == p.len() - 2 {
            return &p[2..];
        }
    }
    p
}

/// Reads the name at `pos` into `out` (lowercased, dot-separated, dots inside
/// labels escaped); returns the offset after the name in the original stream.
fn read_name(msg: &[u8], mut pos: usize, out: &mut Vec<u8>) -> Option<usize> {
    out.clear();
    let mut end = None;
    let mut jumps = 0;
    loop {
        let len = *msg.get(pos)?;
        match len & 0xc0 {
            0x00 if len == 0 => return Some(end.unwrap_or(pos + 1)),
            0x00 => {
                let label = msg.get(pos + 1..pos + 1 + usize::from(len))?;
                if !out.is_empty() {
                    out.push(b'.');
                }
                for &b in label {
                    if b == b'.' || b == b'\\' {
                        out.push(b'\\');
                    }
                    out.push(b.to_ascii_lowercase());
                }
                if out.len() > MAX_NAME * 4 {
                    return None;
                }
                pos += 1 + usize::from(len);
            }
            0xc0 => {
                let target = usize::from(u16::from_be_bytes([len, *msg.get(pos + 1)?]) & 0x3fff);
                jumps += 1;
                if jumps > MAX_JUMPS {
                    return None;
                }
                end.get_or_insert(pos + 2);
                pos = target;
            }
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attr::Attr;

    fn names(p: &[u8], tcp: bool) -> Vec<String> {
        let mut v = Vec::new();
        let mut f = |a: Attr<'_>| v.push(a.value.to_owned());
        extract(p, tcp, &mut Sink::new(&mut f, p));
        v
    }

    #[test]
    fn reads_a_query() {
        let q = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07ExAmPlE\x03com\x00\x00\x01\x00\x01";
        assert_eq!(names(q, false), vec!["example.com"]);
        let mut tcp = vec![0, q.len() as u8];
        tcp.extend_from_slice(q);
        assert_eq!(names(&tcp, true), vec!["example.com"]);
    }

    #[test]
    fn survives_pointer_loops() {
        let q = b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01";
        assert!(names(q, false).is_empty());
    }
}
