//! Where parsers put what they find: turns raw byte slices into bounded,
//! printable values and hands them to the caller's visitor.
//!
//! Keeping escaping and the size limit here means no parser can forget them,
//! and the common case (short printable ASCII) costs no allocation at all.

use crate::attr::{Attr, AttrName, MAX_ATTRIBUTES, MAX_VALUE_BYTES};

pub(crate) struct Sink<'f> {
    visit: &'f mut dyn FnMut(Attr<'_>),
    scratch: String,
    emitted: usize,
}

impl<'f> Sink<'f> {
    pub(crate) fn new(visit: &'f mut dyn FnMut(Attr<'_>)) -> Self {
        Sink { visit, scratch: String::new(), emitted: 0 }
    }

    /// False once [`MAX_ATTRIBUTES`] values were emitted; parsers stop early then.
    pub(crate) fn has_room(&self) -> bool {
        self.emitted < MAX_ATTRIBUTES
    }

    /// Emits `raw` as a value of `name`. Empty values are skipped: they carry
    /// nothing and would all share one hash.
    pub(crate) fn emit(&mut self, name: AttrName, raw: &[u8]) {
        if raw.is_empty() || !self.has_room() {
            return;
        }
        self.emitted += 1;
        if raw.iter().all(|&b| (0x20..0x7f).contains(&b)) {
            let truncated = raw.len() > MAX_VALUE_BYTES;
            let raw = if truncated { &raw[..MAX_VALUE_BYTES] } else { raw };
            // Printable ASCII is always UTF-8; the fallback arm is unreachable.
            let value = std::str::from_utf8(raw).unwrap_or_default();
            (self.visit)(Attr { name, value, truncated });
            return;
        }
        let truncated = escape_into(raw, &mut self.scratch);
        (self.visit)(Attr { name, value: &self.scratch, truncated });
    }

    /// Emits an already-built string (e.g. a lowercased DNS name).
    pub(crate) fn emit_str(&mut self, name: AttrName, value: &str) {
        self.emit(name, value.as_bytes());
    }
}

/// Writes `raw` into `out` as printable text: valid UTF-8 stays as it is,
/// control characters become `\r`, `\n`, `\t` or `\xNN`, and invalid bytes
/// become `\xNN`. Stops at [`MAX_VALUE_BYTES`]; returns whether it was cut.
pub(crate) fn escape_into(raw: &[u8], out: &mut String) -> bool {
    use std::fmt::Write;
    out.clear();
    for chunk in raw.utf8_chunks() {
        for c in chunk.valid().chars() {
            let before = out.len();
            match c {
                '\r' => out.push_str("\\r"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                c if c.is_control() => {
                    let mut buf = [0u8; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        let _ = write!(out, "\\x{b:02x}");
                    }
                }
                c => out.push(c),
            }
            if out.len() > MAX_VALUE_BYTES {
                out.truncate(before);
                return true;
            }
        }
        for b in chunk.invalid() {
            let before = out.len();
            let _ = write!(out, "\\x{b:02x}");
            if out.len() > MAX_VALUE_BYTES {
                out.truncate(before);
                return true;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(raw: &[u8]) -> (String, bool) {
        let mut s = String::new();
        let t = escape_into(raw, &mut s);
        (s, t)
    }

    #[test]
    fn escapes_controls_and_invalid_bytes() {
        assert_eq!(escaped(b"a\r\nb\x00\xff"), ("a\\r\\nb\\x00\\xff".to_owned(), false));
        assert_eq!(escaped("héllo".as_bytes()), ("héllo".to_owned(), false));
    }

    #[test]
    fn cuts_long_values_on_a_char_boundary() {
        let raw = "é".repeat(MAX_VALUE_BYTES);
        let (s, t) = escaped(raw.as_bytes());
        assert!(t);
        assert!(s.len() <= MAX_VALUE_BYTES);
    }

    #[test]
    fn sink_truncates_ascii_and_skips_empty() {
        let mut seen = Vec::new();
        let mut f = |a: Attr<'_>| seen.push(a.to_owned());
        let mut sink = Sink::new(&mut f);
        sink.emit(AttrName::Payload, b"");
        sink.emit(AttrName::Payload, &vec![b'a'; MAX_VALUE_BYTES + 5]);
        drop(sink);
        assert_eq!(seen.len(), 1);
        assert!(seen[0].truncated);
        assert_eq!(seen[0].value.len(), MAX_VALUE_BYTES);
    }
}
