//! Parsers, one module per source format.
//!
//! Each parser takes the raw bytes of one file and returns typed records or a
//! [`ParseError`]. Shared rules live here: byte-order marks are stripped, CRLF and
//! a missing final newline are accepted, and any input that is really an HTML or
//! XML document (the classic "saved the 404 page as ip-ranges.json" accident) is
//! refused before the format parser runs, with the page's title or error code as
//! the reason.

pub mod asn;
pub mod cloud;
pub mod iana;
pub mod lists;
pub mod misp;
pub mod mmdb;

use crate::error::ParseError;

/// A short, stable fingerprint of content (FNV-1a 64), used as the version of
/// feeds that carry no version of their own.
pub fn content_hash(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("fnv1a64:{h:016x}")
}

/// Strips a UTF-8 byte-order mark.
pub(crate) fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes)
}

/// Refuses empty input and HTML/XML documents. `binary` formats (MMDB) are only
/// refused for an unmistakable markup start, since their first byte is arbitrary.
pub fn sniff(bytes: &[u8], binary: bool) -> Result<(), ParseError> {
    let body = strip_bom(bytes);
    let trimmed = trim_ascii_start(body);
    if trimmed.is_empty() {
        return Err(ParseError::Empty("no content".into()));
    }
    let head: Vec<u8> = trimmed.iter().take(512).map(|b| b.to_ascii_lowercase()).collect();
    let markup = head.starts_with(b"<!doctype")
        || head.starts_with(b"<html")
        || head.starts_with(b"<?xml")
        || head.starts_with(b"<head")
        || head.starts_with(b"<error");
    if markup || (!binary && trimmed.first() == Some(&b'<')) {
        return Err(ParseError::ErrorPage(describe_markup(trimmed)));
    }
    Ok(())
}

fn trim_ascii_start(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|c| c.is_ascii_whitespace()).count();
    &b[n..]
}

/// The most telling part of an error page: `<title>`, `<Code>` or `<h1>`.
fn describe_markup(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(8192)]);
    let lower = text.to_ascii_lowercase();
    for tag in ["title", "code", "h1"] {
        let open = format!("<{tag}>");
        let close = format!("</{tag}>");
        if let Some(s) = lower.find(&open) {
            let from = s + open.len();
            if let Some(e) = lower[from..].find(&close) {
                // Byte offsets are valid in `text` too: lowercasing ASCII keeps lengths.
                let inner = text.get(from..from + e).unwrap_or("").split_whitespace().collect::<Vec<_>>().join(" ");
                if !inner.is_empty() {
                    return format!("{tag} {inner:?}");
                }
            }
        }
    }
    let first: String = text.chars().take(60).collect();
    format!("starts with {:?}", first.trim())
}

/// Decodes text input: BOM stripped, error pages refused, invalid UTF-8 refused
/// with the byte position.
pub(crate) fn text(bytes: &[u8]) -> Result<&str, ParseError> {
    sniff(bytes, false)?;
    std::str::from_utf8(strip_bom(bytes))
        .map_err(|e| ParseError::Format(format!("not UTF-8 text (at byte {})", e.valid_up_to())))
}

/// Non-empty, non-comment lines with their 1-based numbers. Comments start with
/// `#` or `;` (FireHOL, Spamhaus, pallebone's `;date` markers); CR is trimmed.
pub(crate) fn data_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().filter_map(|(i, l)| {
        let l = l.trim();
        if l.is_empty() || l.starts_with('#') || l.starts_with(';') || l.starts_with("//") {
            None
        } else {
            Some((i + 1, l))
        }
    })
}

/// Tracks unreadable lines of lenient parsers. Real lists carry the odd bad line,
/// which is skipped; but a file where most lines are unreadable is the wrong
/// format or a mangled download and is refused as a whole.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub good: usize,
    pub bad: usize,
    pub first_bad: Option<(usize, String)>,
}

impl Tally {
    pub fn bad(&mut self, line: usize, text: &str) {
        self.bad += 1;
        if self.first_bad.is_none() {
            let t: String = text.chars().take(80).collect();
            self.first_bad = Some((line, t));
        }
    }

    /// Fails when there is nothing good, or more bad lines than good ones.
    pub fn finish(&self, what: &str) -> Result<(), ParseError> {
        if self.good == 0 && self.bad == 0 {
            return Err(ParseError::Empty(format!("no {what} entries")));
        }
        if self.bad > self.good {
            let (line, text) = self.first_bad.clone().unwrap_or((0, String::new()));
            return Err(ParseError::line(
                line,
                format!("{} of {} lines are not {what} entries, e.g. {text:?}", self.bad, self.bad + self.good),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniff_refuses_markup_and_empty() {
        assert!(matches!(sniff(b"", false), Err(ParseError::Empty(_))));
        assert!(matches!(sniff(b"  \r\n", false), Err(ParseError::Empty(_))));
        let e = sniff(b"\xEF\xBB\xBF<?xml version=\"1.0\"?><Error><Code>ServerBusy</Code></Error>", false);
        match e {
            Err(ParseError::ErrorPage(m)) => assert!(m.contains("ServerBusy"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(sniff(b"1.2.3.4\n", false).is_ok());
        assert!(sniff(b"<\x01\x02binary", true).is_ok());
    }

    #[test]
    fn lines_skip_comments_and_crlf() {
        let v: Vec<_> = data_lines("# c\r\n;2024\r\n1.2.3.4\r\n\r\n5.6.7.8").collect();
        assert_eq!(v, vec![(3, "1.2.3.4"), (5, "5.6.7.8")]);
    }
}
