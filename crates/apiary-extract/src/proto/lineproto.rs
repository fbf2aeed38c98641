//! FTP and SMTP: line-oriented command protocols.

use crate::attr::AttrName;
use crate::sink::Sink;
use crate::text::{base64_decode, is_mostly_text, lines, split_word, trim};

/// A command verb: 3 to 10 ASCII letters (`USER`, `EHLO`, `STARTTLS`).
fn is_verb(w: &[u8]) -> bool {
    (3..=10).contains(&w.len()) && w.iter().all(u8::is_ascii_alphabetic)
}

/// Emits `ftp-command` per command line, plus `username`/`password` for USER/PASS.
pub(crate) fn extract_ftp(p: &[u8], sink: &mut Sink<'_>) -> bool {
    if !is_mostly_text(p) {
        return false;
    }
    let mut found = false;
    for line in lines(p) {
        if !sink.has_room() {
            break;
        }
        let line = trim(line);
        let (verb, arg) = split_word(line);
        if !is_verb(verb) {
            continue;
        }
        sink.emit(AttrName::FtpCommand, line);
        if verb.eq_ignore_ascii_case(b"USER") {
            sink.emit(AttrName::Username, arg);
        } else if verb.eq_ignore_ascii_case(b"PASS") {
            sink.emit(AttrName::Password, arg);
        }
        found = true;
    }
    found
}

#[derive(PartialEq)]
enum Smtp {
    Command,
    /// Inside DATA, until the lone `.` line.
    Data,
    /// AUTH LOGIN: the next base64 line is the username.
    LoginUser,
    /// AUTH LOGIN: the next base64 line is the password.
    LoginPass,
    /// AUTH PLAIN without an initial response: the next line is the token.
    Plain,
}

/// Emits `smtp-command` per command line (message data skipped, AUTH secrets
/// not repeated in the command), plus `username`/`password` from AUTH PLAIN/LOGIN.
pub(crate) fn extract_smtp(p: &[u8], sink: &mut Sink<'_>) -> bool {
    if !is_mostly_text(p) {
        return false;
    }
    let mut found = false;
    let mut state = Smtp::Command;
    for line in lines(p) {
        if !sink.has_room() {
            break;
        }
        let line = trim(line);
        match state {
            Smtp::Data => {
                if line == b"." {
                    state = Smtp::Command;
                }
                continue;
            }
            Smtp::LoginUser | Smtp::LoginPass | Smtp::Plain if line != b"*" => {
                let decoded = base64_decode(line);
                let value = decoded.as_deref().unwrap_or(line);
                state = match state {
                    Smtp::LoginUser => {
                        sink.emit(AttrName::Username, value);
                        Smtp::LoginPass
                    }
                    Smtp::LoginPass => {
                        sink.emit(AttrName::Password, value);
                        Smtp::Command
                    }
                    _ => {
                        plain(value, sink);
                        Smtp::Command
                    }
                };
                found = true;
                continue;
            }
            _ => state = Smtp::Command,
        }
        let (verb, arg) = split_word(line);
        if !is_verb(verb) {
            continue;
        }
        found = true;
        if verb.eq_ignore_ascii_case(b"AUTH") {
            let (mech, initial) = split_word(arg);
            let mut cmd = verb.to_vec();
            if !mech.is_empty() {
                cmd.push(b' ');
                cmd.extend_from_slice(mech);
            }
            sink.emit(AttrName::SmtpCommand, &cmd);
            let decoded = if initial.is_empty() { None } else { base64_decode(initial) };
            if mech.eq_ignore_ascii_case(b"PLAIN") {
                match decoded {
                    Some(token) => plain(&token, sink),
                    None => state = Smtp::Plain,
                }
            } else if mech.eq_ignore_ascii_case(b"LOGIN") {
                match decoded {
                    Some(user) => {
                        sink.emit(AttrName::Username, &user);
                        state = Smtp::LoginPass;
                    }
                    None => state = Smtp::LoginUser,
                }
            }
            continue;
        }
        sink.emit(AttrName::SmtpCommand, line);
        if verb.eq_ignore_ascii_case(b"DATA") {
            state = Smtp::Data;
        }
    }
    found
}

/// AUTH PLAIN token: `authzid \0 authcid \0 password`.
fn plain(token: &[u8], sink: &mut Sink<'_>) {
    let mut parts = token.splitn(3, |&b| b == 0);
    let _authz = parts.next();
    if let (Some(user), Some(pass)) = (parts.next(), parts.next()) {
        sink.emit(AttrName::Username, user);
        sink.emit(AttrName::Password, pass);
    }
}
