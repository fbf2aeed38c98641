//! Telnet and SSH session text: shell commands and credentials.
//!
//! What a payload holds decides what it yields:
//! - `username: x` / `password: y` lines (also `user=`, `login=`, `pass=`): a
//!   sensor-reported login attempt (INFO event) → `username` and `password`;
//! - a Telnet stream from the connection start (it begins with option
//!   negotiation, `IAC ...`): the first two lines answer the login and password
//!   prompts, later lines are `shell-command`s;
//! - any other text: every line is a `shell-command`;
//! - an SSH version banner (`SSH-2.0-...`): `payload` with the banner line;
//!   binary SSH packets (encrypted, or key exchange noise) yield nothing.

use crate::attr::AttrName;
use crate::sink::Sink;
use crate::text::{is_mostly_text, lines, starts_with_ci, trim};

const IAC: u8 = 0xff;
const SB: u8 = 0xfa;
const SE: u8 = 0xf0;

pub(crate) fn extract(p: &[u8], sink: &mut Sink<'_>) -> bool {
    if starts_with_ci(p, b"SSH-") {
        let line = lines(p).next().unwrap_or_default();
        sink.emit(AttrName::Payload, trim(line));
        return true;
    }
    let from_start = p.first() == Some(&IAC);
    let text = clean(p);
    if !is_mostly_text(&text) {
        return false;
    }
    if credentials(&text, sink) {
        return true;
    }
    let mut found = false;
    let mut login_lines: u8 = if from_start { 2 } else { 0 };
    for line in lines(&text) {
        if !sink.has_room() {
            break;
        }
        let line = trim(line);
        if line.is_empty() {
            continue;
        }
        match login_lines {
            2 => sink.emit(AttrName::Username, line),
            1 => sink.emit(AttrName::Password, line),
            _ => sink.emit(AttrName::ShellCommand, line),
        }
        login_lines = login_lines.saturating_sub(1);
        found = true;
    }
    found
}

/// Handles `key: value` credential reports; false when the text is not one.
fn credentials(text: &[u8], sink: &mut Sink<'_>) -> bool {
    let mut user: Option<&[u8]> = None;
    let mut pass: Option<&[u8]> = None;
    for line in lines(text) {
        let line = trim(line);
        if line.is_empty() {
            continue;
        }
        let Some(sep) = line.iter().position(|&b| b == b':' || b == b'=') else { return false };
        let key = trim(&line[..sep]);
        let value = trim(&line[sep + 1..]);
        let is = |names: &[&[u8]]| names.iter().any(|n| key.eq_ignore_ascii_case(n));
        if is(&[b"username", b"user", b"login"]) && user.is_none() {
            user = Some(value);
        } else if is(&[b"password", b"pass"]) && pass.is_none() {
            pass = Some(value);
        } else {
            return false;
        }
    }
    if user.is_none() && pass.is_none() {
        return false;
    }
    sink.emit(AttrName::Username, user.unwrap_or_default());
    sink.emit(AttrName::Password, pass.unwrap_or_default());
    true
}

/// Removes Telnet option negotiation and applies backspace/DEL, leaving what
/// the remote user typed.
pub(crate) fn clean(p: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(p.len());
    let mut i = 0;
    while i < p.len() {
        let b = p[i];
        if b == IAC {
            match p.get(i + 1) {
                Some(&IAC) => {
                    out.push(IAC);
                    i += 2;
                }
                Some(&SB) => {
                    // Subnegotiation runs to IAC SE.
                    i = memchr::memmem::find(&p[i + 2..], &[IAC, SE]).map_or(p.len(), |j| i + 2 + j + 2);
                }
                Some(0xfb..=0xfe) => i += 3,
                _ => i += 2,
            }
            continue;
        }
        match b {
            0x08 | 0x7f => {
                if out.last().is_some_and(|&c| c != b'\n') {
                    out.pop();
                }
            }
            _ => out.push(b),
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_negotiation_and_backspaces() {
        let raw = b"\xff\xfd\x01\xff\xfa\x18\x00xterm\xff\xf0roott\x08\r\n\xff\xffx";
        assert_eq!(clean(raw), b"root\r\n\xffx");
        assert_eq!(clean(b"\xff"), b"");
        assert_eq!(clean(b"\xff\xfa\x18"), b"");
    }
}
