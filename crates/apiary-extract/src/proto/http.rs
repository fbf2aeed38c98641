//! HTTP (and SIP, which shares the request syntax) request parsing, zero-copy.
//!
//! One parse feeds both attribute extraction and CVE matching. The parser is
//! lenient on purpose: exploit requests are malformed (spaces in the target,
//! bare `\n`, missing version), and those are exactly the ones to record.

use std::sync::LazyLock;

use memchr::memmem::Finder;

use crate::attr::AttrName;
use crate::sink::Sink;
use crate::text::{lines, starts_with_ci, strip_cr, trim};

/// A request split into its parts; every field borrows the payload.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a [u8],
    /// The request target as sent (origin-form path and query, or absolute-form URI).
    pub target: &'a [u8],
    /// `HTTP/1.1`, `SIP/2.0`, or empty for an HTTP/0.9-style line.
    pub version: &'a [u8],
    /// Header lines, without the request line and the blank line.
    pub head: &'a [u8],
    pub body: &'a [u8],
}

impl<'a> Request<'a> {
    /// Parses an HTTP request; `None` when the payload does not start like one.
    pub fn parse_http(p: &'a [u8]) -> Option<Self> {
        parse(p, b"HTTP/", true)
    }

    /// Parses a SIP request (`OPTIONS sip:100@host SIP/2.0`).
    pub fn parse_sip(p: &'a [u8]) -> Option<Self> {
        parse(p, b"SIP/", false)
    }

    /// The target before `?`.
    pub fn path(&self) -> &'a [u8] {
        match memchr::memchr(b'?', self.target) {
            Some(i) => &self.target[..i],
            None => self.target,
        }
    }

    /// The target after `?` (empty when there is none).
    pub fn query(&self) -> &'a [u8] {
        match memchr::memchr(b'?', self.target) {
            Some(i) => &self.target[i + 1..],
            None => &[],
        }
    }

    /// Header lines split into (name, value), both trimmed; lines without a colon are skipped.
    pub fn headers(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> {
        lines(self.head).filter_map(|line| {
            let colon = memchr::memchr(b':', line)?;
            Some((trim(&line[..colon]), trim(&line[colon + 1..])))
        })
    }

    /// The value of the first header called `name` (case-insensitive).
    pub fn header(&self, name: &[u8]) -> Option<&'a [u8]> {
        self.headers().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v)
    }
}

/// A method as real ones are spelled (`GET`, `M-SEARCH`, `VERSION-CONTROL`):
/// a capital letter first, so that text such as `- /a` is not taken for a
/// request.
fn is_method(m: &[u8]) -> bool {
    (1..=24).contains(&m.len())
        && m[0].is_ascii_uppercase()
        && m.iter().all(|&b| b.is_ascii_uppercase() || b == b'-' || b == b'_')
}

fn parse<'a>(p: &'a [u8], proto: &[u8], allow_no_version: bool) -> Option<Request<'a>> {
    let line_end = memchr::memchr(b'\n', p).unwrap_or(p.len());
    let line = strip_cr(&p[..line_end]);
    let sp = memchr::memchr(b' ', line)?;
    let method = &line[..sp];
    if !is_method(method) {
        return None;
    }
    let rest = trim(&line[sp + 1..]);
    let (target, version) = match memchr::memrchr(b' ', rest) {
        Some(i) if starts_with_ci(trim(&rest[i + 1..]), proto) => (trim(&rest[..i]), trim(&rest[i + 1..])),
        _ if allow_no_version && rest.first() == Some(&b'/') => (rest, &rest[rest.len()..]),
        _ => return None,
    };
    if target.is_empty() {
        return None;
    }
    let after = p.get(line_end + 1..).unwrap_or(&[]);
    let (head, body) = split_head_body(after);
    Some(Request { method, target, version, head, body })
}

/// Built once: `memmem::find` would rebuild its searcher on every call.
static CRLF2: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\r\n\r\n"));
static LF2: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\n\n"));

/// Splits at the first empty line (`\r\n\r\n` or `\n\n`); all head when none.
fn split_head_body(after: &[u8]) -> (&[u8], &[u8]) {
    if after.starts_with(b"\r\n") {
        return (&[], &after[2..]);
    }
    if after.starts_with(b"\n") {
        return (&[], &after[1..]);
    }
    let crlf = CRLF2.find(after).map(|i| (i, i + 4));
    let lf = LF2.find(after).map(|i| (i, i + 2));
    match (crlf, lf) {
        (Some(a), Some(b)) => {
            let (end, start) = if a.0 <= b.0 { a } else { b };
            (&after[..end], &after[start..])
        }
        (Some((end, start)), None) | (None, Some((end, start))) => (&after[..end], &after[start..]),
        (None, None) => (after, &after[after.len()..]),
    }
}

/// Emits the `http-*` attributes of a parsed request.
pub(crate) fn extract(req: &Request<'_>, tls: bool, sink: &mut Sink<'_>) {
    sink.emit(AttrName::HttpMethod, req.method);
    sink.emit(AttrName::HttpPath, req.path());
    sink.emit(AttrName::HttpQuery, req.query());
    sink.emit(AttrName::HttpVersion, req.version);
    let scheme = if starts_with_ci(req.target, b"https://") {
        "https"
    } else if starts_with_ci(req.target, b"http://") || !tls {
        "http"
    } else {
        "https"
    };
    sink.emit_str(AttrName::HttpScheme, scheme);
    for line in lines(req.head) {
        if !sink.has_room() {
            return;
        }
        let line = trim(line);
        let Some(colon) = memchr::memchr(b':', line) else {
            sink.emit(AttrName::HttpHeader, line);
            continue;
        };
        let name = trim(&line[..colon]);
        let value = trim(&line[colon + 1..]);
        if name.eq_ignore_ascii_case(b"host") {
            sink.emit(AttrName::HttpHost, value);
        } else if name.eq_ignore_ascii_case(b"user-agent") {
            sink.emit(AttrName::HttpUserAgent, value);
        } else {
            sink.emit(AttrName::HttpHeader, line);
        }
    }
    sink.emit(AttrName::HttpBody, req.body);
}

/// Emits the `sip-*` attributes of a parsed SIP request.
pub(crate) fn extract_sip(req: &Request<'_>, sink: &mut Sink<'_>) {
    sink.emit(AttrName::SipMethod, req.method);
    for line in lines(req.head) {
        if !sink.has_room() {
            return;
        }
        let line = trim(line);
        let Some(colon) = memchr::memchr(b':', line) else { continue };
        let name = trim(&line[..colon]);
        if name.eq_ignore_ascii_case(b"user-agent") {
            sink.emit(AttrName::SipHeaderUserAgent, trim(&line[colon + 1..]));
        } else {
            sink.emit(AttrName::SipHeader, line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_method_starts_with_a_capital_letter() {
        assert!(Request::parse_http(b"M-SEARCH * HTTP/1.1\r\n\r\n").is_some());
        assert!(Request::parse_http(b"- /a").is_none());
        assert!(Request::parse_http(b"_X /a HTTP/1.0\r\n\r\n").is_none());
    }

    #[test]
    fn parses_origin_form() {
        let r = Request::parse_http(b"GET /a/b?x=1&y HTTP/1.1\r\nHost: h\r\nUser-Agent: curl/8\r\n\r\nbody").unwrap();
        assert_eq!(r.method, b"GET");
        assert_eq!(r.path(), b"/a/b");
        assert_eq!(r.query(), b"x=1&y");
        assert_eq!(r.version, b"HTTP/1.1");
        assert_eq!(r.header(b"user-agent"), Some(&b"curl/8"[..]));
        assert_eq!(r.body, b"body");
    }

    #[test]
    fn keeps_spaces_inside_exploit_targets() {
        let r = Request::parse_http(b"GET /shell?cd /tmp;wget x HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(r.target, b"/shell?cd /tmp;wget x");
    }

    #[test]
    fn accepts_bare_lf_and_http09() {
        let r = Request::parse_http(b"GET /\n").unwrap();
        assert_eq!(r.target, b"/");
        assert!(r.version.is_empty());
        let r = Request::parse_http(b"POST /x HTTP/1.0\nA: b\n\nq=1").unwrap();
        assert_eq!(r.body, b"q=1");
        assert_eq!(r.head, b"A: b");
    }

    #[test]
    fn rejects_non_requests() {
        assert!(Request::parse_http(b"SSH-2.0-OpenSSH\r\n").is_none());
        assert!(Request::parse_http(b"get / HTTP/1.1\r\n").is_none());
        assert!(Request::parse_http(b"GET  HTTP/1.1").is_none());
        assert!(Request::parse_http(b"").is_none());
        assert!(Request::parse_sip(b"OPTIONS sip:a@b SIP/2.0\r\n").is_some());
        assert!(Request::parse_sip(b"OPTIONS sip:a@b HTTP/1.1\r\n").is_none());
    }
}
