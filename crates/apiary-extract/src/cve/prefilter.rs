//! The anchor prefilter: which signatures have an anchor in the field they
//! test first, found in one pass over the payload.
//!
//! Why not Aho-Corasick: with ~330 case-insensitive anchors its DFA is over a
//! megabyte, and case-insensitive automata get no SIMD prefilter, so scanning
//! cost ~2 ns per byte and dominated the whole analysis (BENCH-NOTES.md).
//!
//! Here each anchor is keyed by a few windows of its bytes, chosen from
//! windows that ordinary traffic does not contain (see [`super::keys`]). One
//! pass over the payload looks up, at every other position, the 4-byte
//! window (hashed) and the 2-byte window in two byte tables; only positions
//! where one is a key, rare in ordinary payloads, get verified.
//!
//! Windows are *folded* (`| 0x20` on every byte) first. Folding maps both
//! ASCII cases to one value, so an anchor occurring in any case always finds
//! its key; it also merges a few unrelated bytes (`\r` with `-`), which only
//! costs a verification that then fails. Verification is an exact ASCII
//! case-insensitive comparison inside the anchor's field, so the result is
//! exactly "some anchor occurs in its field", as with the automaton before.

use std::ops::Range;

use super::keys::{fold, quad_hash, Key, Ordinary, FOLD, QUAD};
use super::Field;
use crate::proto::http::Request;
use crate::text::range_in;

/// One byte per possible index: the [`Field::bit`]s of the anchors keyed
/// there, zero for most. Bytes rather than bits: a plain byte load per
/// position measured ~4x faster than shifting bits out of words, and a
/// payload only touches a few hundred cache lines.
struct KeyTable(Box<[u8; 1 << 16]>);

impl KeyTable {
    fn new() -> Self {
        KeyTable(Box::new([0; 1 << 16]))
    }

    fn insert(&mut self, index: u16, field: Field) {
        self.0[usize::from(index)] |= field.bit();
    }

    #[inline]
    fn get(&self, index: u16) -> u8 {
        self.0[usize::from(index)]
    }
}

/// One anchor of one signature.
struct Anchor {
    /// Lowercased, for the case-insensitive comparison.
    bytes: Box<[u8]>,
    field: Field,
    sig: usize,
}

/// A key window of an anchor, as looked up on a hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    /// The folded window (a pair in the low half).
    window: u32,
    anchor: usize,
    /// Where the window starts relative to the anchor ([`Key::offset`]).
    offset: isize,
}

/// The byte ranges of the request's fields inside the payload; `None` when
/// the field does not exist (not an HTTP request, or an empty part).
#[derive(Debug, Clone, Default)]
pub(super) struct Spans {
    pub target: Option<Range<usize>>,
    pub head: Option<Range<usize>>,
    pub body: Option<Range<usize>>,
}

impl Spans {
    /// The spans of `req`, parsed from `payload` (its fields are located by
    /// address; a field not inside `payload` counts as absent).
    pub fn new(payload: &[u8], req: Option<&Request<'_>>) -> Spans {
        let locate = |part: &[u8]| range_in(payload, part).filter(|r| !r.is_empty());
        match req {
            Some(r) => Spans { target: locate(r.target), head: locate(r.head), body: locate(r.body) },
            None => Spans::default(),
        }
    }

    /// The [`Field::bit`]s of the fields an anchor keyed at `at` may lie in:
    /// those containing `at`, or starting just after it (a 2-byte anchor's
    /// key can start one byte before the anchor).
    #[cold]
    fn fields_near(&self, at: usize) -> u8 {
        let near = |span: &Option<Range<usize>>, field: Field| match span {
            Some(r) if r.start <= at + 1 && at < r.end => field.bit(),
            _ => 0,
        };
        Field::Payload.bit()
            | near(&self.target, Field::Target)
            | near(&self.head, Field::Head)
            | near(&self.body, Field::Body)
    }

    /// The range an anchor of `field` must lie in.
    fn of(&self, field: Field, payload_len: usize) -> Option<Range<usize>> {
        match field {
            Field::Target => self.target.clone(),
            Field::Head => self.head.clone(),
            Field::Body => self.body.clone(),
            Field::Payload => Some(0..payload_len),
        }
    }
}

/// The compiled anchors of a signature table.
pub(super) struct Prefilter {
    anchors: Vec<Anchor>,
    /// Indexed by [`quad_hash`] of 4-byte windows.
    quads: KeyTable,
    /// Indexed by folded 2-byte windows (no hashing needed).
    pairs: KeyTable,
    /// Sorted by window: the anchors to verify when a key is seen.
    quad_keys: Vec<Entry>,
    pair_keys: Vec<Entry>,
}

impl Prefilter {
    /// Builds the filter from `(anchor, field, signature index)`. Table
    /// validation guarantees anchors of at least 2 bytes.
    pub fn new<'a>(anchors: impl IntoIterator<Item = (&'a str, Field, usize)>) -> Self {
        let ordinary = Ordinary::new();
        let mut pf = Prefilter {
            anchors: Vec::new(),
            quads: KeyTable::new(),
            pairs: KeyTable::new(),
            quad_keys: Vec::new(),
            pair_keys: Vec::new(),
        };
        for (text, field, sig) in anchors {
            let bytes: Box<[u8]> = text.as_bytes().to_ascii_lowercase().into();
            let anchor = pf.anchors.len();
            for Key { quad, window, offset } in ordinary.keys(&bytes) {
                let entry = Entry { window, anchor, offset };
                if quad {
                    pf.quads.insert(quad_hash(window), field);
                    pf.quad_keys.push(entry);
                } else {
                    pf.pairs.insert(window as u16, field);
                    pf.pair_keys.push(entry);
                }
            }
            pf.anchors.push(Anchor { bytes, field, sig });
        }
        pf.quad_keys.sort_unstable();
        pf.pair_keys.sort_unstable();
        pf
    }

    /// Calls `hit(signature)` for every anchor occurring inside its field
    /// (possibly more than once per signature).
    pub fn scan(&self, payload: &[u8], spans: &Spans, hit: &mut impl FnMut(usize)) {
        // Every other position (each anchor has a key at both parities):
        // full windows first, a plain unaligned load each, then the last
        // even position or two, zero-padded.
        let full = payload.len().saturating_sub(QUAD - 1);
        for (i, w) in payload.windows(QUAD).step_by(2).enumerate() {
            let folded = u32::from_le_bytes([w[0], w[1], w[2], w[3]]) | FOLD;
            self.test(folded, 2 * i, payload, spans, hit);
        }
        for at in (full.next_multiple_of(2)..payload.len()).step_by(2) {
            self.test(fold(payload, at), at, payload, spans, hit);
        }
    }

    #[inline]
    fn test(&self, folded: u32, at: usize, payload: &[u8], spans: &Spans, hit: &mut impl FnMut(usize)) {
        let pair = folded as u16;
        let (quad, short) = (self.quads.get(quad_hash(folded)), self.pairs.get(pair));
        // One branch for both lookups: it is almost never taken.
        if quad | short == 0 {
            return;
        }
        // Keys of anchors that cannot lie here (a target anchor's key in a
        // header, say) need no verification.
        let here = spans.fields_near(at);
        if quad & here != 0 {
            self.verify(&self.quad_keys, folded, at, payload, spans, hit);
        }
        if short & here != 0 {
            self.verify(&self.pair_keys, u32::from(pair), at, payload, spans, hit);
        }
    }

    /// Checks the anchors keyed by `window` for an occurrence whose key is at `at`.
    #[cold]
    #[inline(never)]
    fn verify(
        &self,
        keys: &[Entry],
        window: u32,
        at: usize,
        payload: &[u8],
        spans: &Spans,
        hit: &mut impl FnMut(usize),
    ) {
        let from = keys.partition_point(|e| e.window < window);
        for e in keys[from..].iter().take_while(|e| e.window == window) {
            let Some(a) = self.anchors.get(e.anchor) else { continue };
            let Some(start) = at.checked_add_signed(-e.offset) else { continue };
            let end = start + a.bytes.len();
            let Some(span) = spans.of(a.field, payload.len()) else { continue };
            if start >= span.start
                && end <= span.end
                && payload.get(start..end).is_some_and(|s| s.eq_ignore_ascii_case(&a.bytes))
            {
                hit(a.sig);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cve::CveMatcher;

    /// The reference: every anchor occurrence (ASCII case-insensitive) inside its field.
    fn naive(anchors: &[(&str, Field, usize)], payload: &[u8], spans: &Spans) -> Vec<usize> {
        let mut out: Vec<usize> = anchors
            .iter()
            .filter(|(a, field, _)| {
                let Some(span) = spans.of(*field, payload.len()) else { return false };
                payload[span].windows(a.len()).any(|w| w.eq_ignore_ascii_case(a.as_bytes()))
            })
            .map(|&(_, _, sig)| sig)
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    fn scanned(pf: &Prefilter, payload: &[u8], spans: &Spans) -> Vec<usize> {
        let mut out = Vec::new();
        pf.scan(payload, spans, &mut |s| out.push(s));
        out.sort_unstable();
        out.dedup();
        out
    }

    fn spans(p: &[u8]) -> Spans {
        Spans::new(p, Request::parse_http(p).as_ref())
    }

    const ANCHORS: &[(&str, Field, usize)] = &[
        ("${", Field::Payload, 0),
        ("jndi:", Field::Payload, 1),
        ("?-d", Field::Target, 2),
        ("/cgi-bin/;", Field::Target, 3),
        ("x-f5-auth-token", Field::Head, 4),
        ("() {", Field::Head, 5),
        (":)", Field::Payload, 6),
        ("Accept: ../", Field::Head, 7),
        ("unix", Field::Body, 8),
    ];

    #[test]
    fn finds_exactly_what_a_naive_search_finds() {
        let pf = Prefilter::new(ANCHORS.iter().copied());
        let payloads: &[&[u8]] = &[
            b"GET /index.php?-d+allow_url_include HTTP/1.1\r\nX-F5-Auth-Token: a\r\nAccept: ../../etc\r\n\r\n${JNDI:x}",
            b"GET /cgi-bin/;id HTTP/1.1\r\nUser-Agent: () { :; }\r\n\r\nUNIX",
            b"GET / HTTP/1.1\r\nHost: ?-d\r\n\r\n/cgi-bin/;",
            b"USER a:)\r\n",
            b"USER ab:)",
            b"$",
            b"${",
            b"x${",
            b"x:)",
            b":",
            b"",
            b"JNDI:",
            b"xJNDI:",
        ];
        for p in payloads {
            let spans = spans(p);
            assert_eq!(scanned(&pf, p, &spans), naive(ANCHORS, p, &spans), "{:?}", String::from_utf8_lossy(p));
        }
    }

    #[test]
    fn anchors_outside_their_field_do_not_count() {
        let pf = Prefilter::new(ANCHORS.iter().copied());
        let p = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n?-d /cgi-bin/; x-f5-auth-token";
        assert!(scanned(&pf, p, &spans(p)).is_empty());
    }

    /// Every anchor of the real table, planted at every offset parity, in
    /// random case, in every part of a request and in raw payloads: the
    /// prefilter agrees with the naive search.
    #[test]
    fn agrees_with_a_naive_search_on_the_real_table() {
        let Ok(m) = CveMatcher::global() else { panic!("table does not load") };
        let anchors: Vec<(&str, Field, usize)> = m
            .signatures
            .iter()
            .zip(&m.compiled)
            .enumerate()
            .flat_map(|(i, (s, c))| s.anchors.iter().map(move |a| (a.as_str(), c.field, i)))
            .collect();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rng = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n.max(1) as u64) as usize
        };
        let filler = b"aZ/.%${}()[]:;-_ \r\n\x00\xff?=&#";
        for round in 0..4000 {
            let mut parts: [Vec<u8>; 3] = Default::default();
            for part in parts.iter_mut() {
                for _ in 0..rng(3) {
                    for _ in 0..rng(6) {
                        part.push(filler[rng(filler.len())]);
                    }
                    let (a, _, _) = anchors[rng(anchors.len())];
                    part.extend(a.bytes().map(|b| if rng(2) == 0 { b.to_ascii_uppercase() } else { b }));
                }
                part.insert(0, b'/');
            }
            let [target, head, body] = parts;
            let mut p = Vec::new();
            if round % 3 != 0 {
                p.extend_from_slice(b"GET ");
                p.extend_from_slice(&target);
                p.extend_from_slice(b" HTTP/1.1\r\nX: ");
                p.extend_from_slice(&head);
                p.extend_from_slice(b"\r\n\r\n");
                p.extend_from_slice(&body);
            } else {
                p = [target, head, body].concat();
            }
            p.truncate(p.len() - rng(3));
            let spans = spans(&p);
            assert_eq!(
                scanned(&m.prefilter, &p, &spans),
                naive(&anchors, &p, &spans),
                "{:?}",
                String::from_utf8_lossy(&p)
            );
        }
    }
}
