//! Where parsers put what they find: turns raw byte slices into bounded,
//! printable values and hands them to the caller's visitor.
//!
//! Keeping escaping and the size limit here means no parser can forget them,
//! and the common case (short printable ASCII) costs no allocation at all.

use crate::attr::{Attr, AttrName, MAX_ATTRIBUTES, MAX_VALUE_BYTES};
use crate::text::range_in;

pub(crate) struct Sink<'f> {
    visit: &'f mut dyn FnMut(Attr<'_>),
    /// The payload as text, when all of it is valid UTF-8. Most values are
    /// cut from the payload, and validating each on its own cost more than
    /// validating the payload once (`from_utf8` on short slices is mostly
    /// call overhead; BENCH-NOTES.md).
    text: Option<&'f str>,
    scratch: String,
    emitted: usize,
}

impl<'f> Sink<'f> {
    /// A sink for the values of `payload` (values may also come from elsewhere).
    pub(crate) fn new(visit: &'f mut dyn FnMut(Attr<'_>), payload: &'f [u8]) -> Self {
        Sink { visit, text: std::str::from_utf8(payload).ok(), scratch: String::new(), emitted: 0 }
    }

    /// `raw` as text, when it was cut from the validated payload.
    fn already_text(&self, raw: &[u8]) -> Option<&'f str> {
        let text = self.text?;
        text.get(range_in(text.as_bytes(), raw)?)
    }

    /// False once [`MAX_ATTRIBUTES`] values were emitted; parsers stop early then.
    pub(crate) fn has_room(&self) -> bool {
        self.emitted < MAX_ATTRIBUTES
    }

    /// Emits `raw` as a value of `name`. Empty values are skipped: they carry
    /// nothing and would all share one hash.
    pub(crate) fn emit(&mut self, name: AttrName, raw: &[u8]) {
        self.emit_with(name, raw, None);
    }

    /// Emits an already-built string (e.g. a lowercased DNS name, or a constant).
    pub(crate) fn emit_str(&mut self, name: AttrName, value: &str) {
        self.emit_with(name, value.as_bytes(), Some(value));
    }

    /// [`Self::emit`], with `raw` as text when the caller has it: checking
    /// UTF-8 again costs more than the rest for short values.
    fn emit_with(&mut self, name: AttrName, raw: &[u8], text: Option<&str>) {
        if raw.is_empty() || !self.has_room() {
            return;
        }
        self.emitted += 1;
        if is_printable_ascii(raw) {
            // Printable ASCII is always UTF-8 (the last fallback is
            // unreachable) and can be cut at any byte.
            let text = text.or_else(|| self.already_text(raw)).or_else(|| std::str::from_utf8(raw).ok());
            let text = text.unwrap_or_default();
            let value = text.get(..MAX_VALUE_BYTES).unwrap_or(text);
            (self.visit)(Attr { name, value, truncated: value.len() < text.len() });
            return;
        }
        let truncated = escape_into(raw, &mut self.scratch);
        (self.visit)(Attr { name, value: &self.scratch, truncated });
    }
}

/// Whether every byte is printable ASCII (`0x20..0x7f`). Written without an
/// early exit so that it compiles to SIMD compares: most values pass, and a
/// byte-at-a-time loop was the single hottest spot of extraction.
fn is_printable_ascii(raw: &[u8]) -> bool {
    !raw.iter().fold(false, |bad, &b| bad | (b.wrapping_sub(0x20) >= 0x5f))
}

/// Writes `raw` into `out` as printable text: valid UTF-8 stays as it is,
/// control characters become `\r`, `\n`, `\t` or `\xNN`, and invalid bytes
/// become `\xNN`. Stops at [`MAX_VALUE_BYTES`]; returns whether it was cut.
pub(crate) fn escape_into(raw: &[u8], out: &mut String) -> bool {
    out.clear();
    // One allocation: escaping at most quadruples a byte.
    out.reserve(raw.len().saturating_mul(4).min(MAX_VALUE_BYTES + 4));
    for chunk in raw.utf8_chunks() {
        for c in chunk.valid().chars() {
            let before = out.len();
            match c {
                '\r' => out.push_str("\\r"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                c if c.is_control() => {
                    let mut buf = [0u8; 4];
                    for &b in c.encode_utf8(&mut buf).as_bytes() {
                        push_hex(out, b);
                    }
                }
                c => out.push(c),
            }
            if out.len() > MAX_VALUE_BYTES {
                out.truncate(before);
                return true;
            }
        }
        for &b in chunk.invalid() {
            let before = out.len();
            push_hex(out, b);
            if out.len() > MAX_VALUE_BYTES {
                out.truncate(before);
                return true;
            }
        }
    }
    false
}

/// Appends `\xNN` (lowercase hex). By hand: `write!` took a third of the
/// time of escaping a Telnet negotiation.
fn push_hex(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push_str("\\x");
    out.push(char::from(HEX[usize::from(b >> 4)]));
    out.push(char::from(HEX[usize::from(b & 0xf)]));
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
        let mut sink = Sink::new(&mut f, b"");
        sink.emit(AttrName::Payload, b"");
        sink.emit(AttrName::Payload, &vec![b'a'; MAX_VALUE_BYTES + 5]);
        drop(sink);
        assert_eq!(seen.len(), 1);
        assert!(seen[0].truncated);
        assert_eq!(seen[0].value.len(), MAX_VALUE_BYTES);
    }
}
