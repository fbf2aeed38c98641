//! VNC (RFB): the client's protocol version, chosen security type and auth response.

use crate::attr::AttrName;
use crate::sink::Sink;

/// Emits `remote-frame-buffer` values: `RFB 003.008`, `security-type 2`,
/// `auth-response <32 hex>`. Returns whether anything was recognised.
pub(crate) fn extract(p: &[u8], sink: &mut Sink<'_>) -> bool {
    let mut rest = p;
    let mut found = false;
    if rest.len() >= 11 && rest.starts_with(b"RFB ") {
        sink.emit(AttrName::RemoteFrameBuffer, &rest[..11]);
        rest = &rest[11..];
        rest = rest.strip_prefix(b"\n").unwrap_or(rest);
        found = true;
    }
    // After the version: one security-type byte (3.7+), then a 16-byte DES response.
    if rest.len() == 1 || rest.len() == 17 {
        sink.emit_str(AttrName::RemoteFrameBuffer, &format!("security-type {}", rest[0]));
        rest = &rest[1..];
        found = true;
    }
    if rest.len() == 16 {
        let mut s = String::with_capacity(14 + 32);
        s.push_str("auth-response ");
        for b in rest {
            s.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
            s.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
        }
        sink.emit_str(AttrName::RemoteFrameBuffer, &s);
        found = true;
    }
    found
}
