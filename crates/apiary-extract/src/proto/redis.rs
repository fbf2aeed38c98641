//! Redis commands: RESP arrays of bulk strings and inline commands, pipelined.

use crate::attr::AttrName;
use crate::sink::Sink;
use crate::text::{is_mostly_text, lines, trim};

/// Most arguments kept per command, so `MSET` with 10⁵ keys stays cheap.
const MAX_ARGS: usize = 64;

/// Emits one `redis-command` per command; returns whether any was found.
pub(crate) fn extract(p: &[u8], sink: &mut Sink<'_>) -> bool {
    let mut found = false;
    let mut rest = p;
    let mut buf = Vec::new();
    while !rest.is_empty() && sink.has_room() {
        if rest[0] == b'*' {
            match parse_array(rest, &mut buf) {
                Some(next) => {
                    sink.emit(AttrName::RedisCommand, &buf);
                    found |= !buf.is_empty();
                    rest = next;
                }
                None => break,
            }
        } else {
            // Inline commands: one per line, only when the rest is text.
            if !is_mostly_text(rest) {
                break;
            }
            for line in lines(rest) {
                let line = trim(line);
                if !line.is_empty() && line[0] != b'*' {
                    sink.emit(AttrName::RedisCommand, line);
                    found = true;
                }
            }
            break;
        }
    }
    found
}

/// Parses `*N\r\n($len\r\nbytes\r\n)*` into `out` (args joined by spaces);
/// returns what follows, or `None` when malformed. A command cut short by the
/// end of the payload still yields the arguments read so far.
fn parse_array<'a>(p: &'a [u8], out: &mut Vec<u8>) -> Option<&'a [u8]> {
    out.clear();
    let (n, mut rest) = read_number(&p[1..])?;
    for i in 0..n {
        if rest.is_empty() {
            return Some(rest);
        }
        if rest[0] != b'$' {
            return None;
        }
        let (len, after) = read_number(&rest[1..])?;
        let len = usize::try_from(len).ok()?;
        let avail = len.min(after.len());
        if i < MAX_ARGS as u64 {
            if !out.is_empty() {
                out.push(b' ');
            }
            out.extend_from_slice(&after[..avail]);
        }
        rest = &after[avail..];
        rest = rest.strip_prefix(b"\r\n").unwrap_or(rest);
    }
    Some(rest)
}

/// Reads a decimal number ended by `\r\n` (or `\n`).
fn read_number(p: &[u8]) -> Option<(u64, &[u8])> {
    let end = memchr::memchr(b'\n', p)?;
    let digits = trim(&p[..end]);
    if digits.is_empty() || digits.len() > 10 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = digits.iter().fold(0u64, |acc, &d| acc * 10 + u64::from(d - b'0'));
    Some((n, &p[end + 1..]))
}
