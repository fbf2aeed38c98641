//! Memcached commands: text protocol lines (storage data skipped) and binary opcodes.

use crate::attr::AttrName;
use crate::sink::Sink;
use crate::text::{is_mostly_text, split_word, trim};

/// Emits one `memcached-command` per command; returns whether any was found.
pub(crate) fn extract(p: &[u8], sink: &mut Sink<'_>) -> bool {
    let p = strip_udp_frame(p);
    if p.first() == Some(&0x80) {
        return extract_binary(p, sink);
    }
    if !is_mostly_text(p) {
        return false;
    }
    let mut found = false;
    let mut rest = p;
    while !rest.is_empty() && sink.has_room() {
        let (line, next) = match memchr::memchr(b'\n', rest) {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        rest = next;
        let line = trim(line);
        if line.is_empty() {
            continue;
        }
        sink.emit(AttrName::MemcachedCommand, line);
        found = true;
        let (verb, args) = split_word(line);
        let is_storage = [&b"set"[..], b"add", b"replace", b"append", b"prepend", b"cas"]
            .iter()
            .any(|v| verb.eq_ignore_ascii_case(v));
        if is_storage {
            // `set <key> <flags> <exptime> <bytes>`: skip the data block and its CRLF.
            let bytes = args.split(|&b| b == b' ').filter(|a| !a.is_empty()).nth(3);
            let n = bytes.and_then(|b| std::str::from_utf8(b).ok()?.parse::<usize>().ok()).unwrap_or(0);
            rest = rest.get(n..).unwrap_or(&[]);
            rest = rest.strip_prefix(b"\r\n").unwrap_or(rest);
        }
    }
    found
}

/// UDP requests carry an 8-byte frame header (id, sequence, count, reserved=0).
fn strip_udp_frame(p: &[u8]) -> &[u8] {
    if p.len() > 8 && p[6] == 0 && p[7] == 0 && p[4] == 0 && (p[8].is_ascii_alphabetic() || p[8] == 0x80) {
        &p[8..]
    } else {
        p
    }
}

fn extract_binary(mut p: &[u8], sink: &mut Sink<'_>) -> bool {
    let mut found = false;
    while p.len() >= 24 && p[0] == 0x80 && sink.has_room() {
        let name = opcode_name(p[1]);
        sink.emit(AttrName::MemcachedCommand, name.as_bytes());
        found = true;
        let body = u32::from_be_bytes([p[8], p[9], p[10], p[11]]) as usize;
        p = p.get(24usize.saturating_add(body)..).unwrap_or(&[]);
    }
    found
}

fn opcode_name(op: u8) -> &'static str {
    match op {
        0x00 => "get",
        0x01 => "set",
        0x02 => "add",
        0x03 => "replace",
        0x04 => "delete",
        0x05 => "increment",
        0x06 => "decrement",
        0x07 => "quit",
        0x08 => "flush",
        0x09 => "getq",
        0x0a => "noop",
        0x0b => "version",
        0x0c => "getk",
        0x0d => "getkq",
        0x0e => "append",
        0x0f => "prepend",
        0x10 => "stat",
        0x20 => "sasl-list-mechs",
        0x21 => "sasl-auth",
        _ => "binary-unknown",
    }
}
