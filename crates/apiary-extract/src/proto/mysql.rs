//! MySQL: the user name in the client's handshake response packet.

use crate::attr::AttrName;
use crate::sink::Sink;

const CLIENT_PROTOCOL_41: u16 = 0x0200;

/// Emits `mysql-username` from the first handshake response found; returns
/// whether one was. Packets: 3-byte little-endian length, sequence id, body.
pub(crate) fn extract(p: &[u8], sink: &mut Sink<'_>) -> bool {
    let mut rest = p;
    while rest.len() >= 4 {
        let len = usize::from(rest[0]) | usize::from(rest[1]) << 8 | usize::from(rest[2]) << 16;
        let seq = rest[3];
        let body = &rest[4..rest.len().min(4 + len)];
        if seq == 1 {
            if let Some(user) = username(body) {
                sink.emit(AttrName::MysqlUsername, user);
                return true;
            }
        }
        rest = rest.get(4 + len..).unwrap_or(&[]);
    }
    false
}

fn username(body: &[u8]) -> Option<&[u8]> {
    let caps = u16::from_le_bytes([*body.first()?, *body.get(1)?]);
    // 4.1: caps(4) max-packet(4) charset(1) filler(23); 3.20: caps(2) max-packet(3).
    let start = if caps & CLIENT_PROTOCOL_41 != 0 { 32 } else { 5 };
    // A 32-byte 4.1 body is an SSL request: no user name follows.
    let rest = body.get(start..).filter(|r| !r.is_empty())?;
    let end = memchr::memchr(0, rest).unwrap_or(rest.len());
    Some(&rest[..end])
}
