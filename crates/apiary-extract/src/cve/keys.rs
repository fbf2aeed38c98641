//! Choosing the key windows by which the prefilter finds each anchor.
//!
//! The prefilter tests windows at every *other* position (half the table
//! lookups), so each anchor is keyed by two consecutive windows: whether an
//! occurrence starts at an even or an odd offset, one of the two lands on a
//! tested position. Anchors of 5 bytes or more are keyed by two 4-byte
//! windows ("quads"), shorter ones by two 2-byte windows ("pairs"); a 2-byte
//! anchor `ab` has only one pair, so it is keyed by `ab` and by every pair
//! `?a` (or every `b?`, whichever byte is rarer).
//!
//! The cost on ordinary traffic is how often ordinary traffic contains a key,
//! since each such position is verified. An anchor such as `accept: ../` must
//! not be keyed by `acce`, which every HTTP request has, but by ` ../`. Which
//! windows are ordinary is learnt from a sample of ordinary traffic kept as
//! data (`data/ordinary-traffic.txt`): each anchor takes the windows that
//! sample contains least often (directly, or through a hash collision), then
//! those of the rarest bytes. This only steers speed: any choice of windows
//! finds every occurrence.

use std::collections::HashMap;

/// Width of the long keys.
pub(super) const QUAD: usize = 4;
/// Width of the short keys.
pub(super) const PAIR: usize = 2;

/// Browsers, scanners, SIP, SMTP, FTP, Redis, shells: what honeypots mostly see.
const ORDINARY_TRAFFIC: &str = include_str!("../../data/ordinary-traffic.txt");

/// Sets bit 5 of every byte: ASCII upper and lower case agree afterwards
/// (and a few unrelated bytes merge, e.g. `\r` with `-`).
pub(super) const FOLD: u32 = 0x2020_2020;

/// The folded little-endian window of 4 bytes at `at`, zero bytes past the end.
#[inline]
pub(super) fn fold(hay: &[u8], at: usize) -> u32 {
    let byte = |i: usize| hay.get(at + i).copied().unwrap_or(0);
    u32::from_le_bytes([byte(0), byte(1), byte(2), byte(3)]) | FOLD
}

/// The folded 2-byte window at `at`: the low half of [`fold`].
pub(super) fn fold_pair(hay: &[u8], at: usize) -> u16 {
    fold(hay, at) as u16
}

/// The prefilter's 16-bit hash of a folded 4-byte window (multiplicative:
/// the top bits of a product with an odd constant).
#[inline]
pub(super) fn quad_hash(folded: u32) -> u16 {
    (folded.wrapping_mul(0x9e37_79b1) >> 16) as u16
}

/// One key of an anchor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Key {
    /// A quad (4 bytes) or a pair (2 bytes, in the low half).
    pub quad: bool,
    /// The folded window.
    pub window: u32,
    /// Where the window starts relative to the anchor's first byte (-1 for
    /// the `?a` keys of a 2-byte anchor).
    pub offset: isize,
}

/// How often windows and bytes occur in ordinary traffic (as sent: `\r\n` line ends).
pub(super) struct Ordinary {
    quads: HashMap<u32, u32>,
    /// Counts per [`quad_hash`]: a key sharing its hash with a common
    /// window gets verified as often as if it were that window.
    hashes: HashMap<u16, u32>,
    pairs: HashMap<u16, u32>,
    bytes: [u32; 256],
}

impl Ordinary {
    pub fn new() -> Self {
        let text = ORDINARY_TRAFFIC.replace('\n', "\r\n");
        let text = text.as_bytes();
        let mut o = Ordinary { quads: HashMap::new(), hashes: HashMap::new(), pairs: HashMap::new(), bytes: [0; 256] };
        for (at, &b) in text.iter().enumerate() {
            let w = fold(text, at);
            *o.quads.entry(w).or_default() += 1;
            *o.hashes.entry(quad_hash(w)).or_default() += 1;
            *o.pairs.entry(w as u16).or_default() += 1;
            o.bytes[usize::from(b | 0x20)] += 1;
        }
        o
    }

    /// How common the window of `width` bytes at `at` is: (times seen, then
    /// how common its bytes are).
    fn cost(&self, anchor: &[u8], at: usize, width: usize) -> (u32, u32) {
        let bytes = anchor.get(at..at + width).unwrap_or_default();
        let common: u32 = bytes.iter().map(|&b| self.bytes[usize::from(b | 0x20)]).sum();
        let count = |m: Option<&u32>| m.copied().unwrap_or(0);
        let seen = if width == QUAD {
            let w = fold(anchor, at);
            count(self.quads.get(&w)) + count(self.hashes.get(&quad_hash(w)))
        } else {
            count(self.pairs.get(&fold_pair(anchor, at)))
        };
        (seen, common)
    }

    /// The keys of `anchor` (lowercase). Table validation rejects anchors
    /// under 2 bytes; such an anchor would get no keys and never be found.
    pub fn keys(&self, anchor: &[u8]) -> Vec<Key> {
        match anchor.len() {
            0 | 1 => return Vec::new(),
            2 => return self.two_byte_keys(anchor),
            _ => {}
        }
        let width = if anchor.len() > QUAD { QUAD } else { PAIR };
        // The cheapest two consecutive windows.
        let at = (0..anchor.len() - width)
            .min_by_key(|&at| {
                let (a, b) = (self.cost(anchor, at, width), self.cost(anchor, at + 1, width));
                (a.0 + b.0, a.1 + b.1)
            })
            .unwrap_or(0);
        [at, at + 1]
            .into_iter()
            .map(|at| {
                let w = fold(anchor, at);
                Key { quad: width == QUAD, window: if width == QUAD { w } else { w & 0xffff }, offset: at as isize }
            })
            .collect()
    }

    /// `ab` itself, plus every `?a` (offset -1) or every `b?` (offset 0 from
    /// the anchor's second byte, so 1): one of them is at a tested position.
    fn two_byte_keys(&self, anchor: &[u8]) -> Vec<Key> {
        let pair = u32::from(fold_pair(anchor, 0));
        let (a, b) = (pair & 0xff, pair >> 8);
        let mut keys = vec![Key { quad: false, window: pair, offset: 0 }];
        // Every folded byte value has bit 5 set: 128 of them.
        let any = (0..=0xffu32).filter(|x| x & 0x20 != 0);
        if self.bytes[a as usize] <= self.bytes[b as usize] {
            keys.extend(any.map(|x| Key { quad: false, window: x | a << 8, offset: -1 }));
        } else {
            keys.extend(any.map(|y| Key { quad: false, window: b | y << 8, offset: 1 }));
        }
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_ignores_ascii_case_and_pads() {
        assert_eq!(fold(b"JnDi:", 0), fold(b"jndi", 0));
        assert_eq!(fold(b"ab", 0), fold(b"AB\0\0", 0));
        assert_eq!(fold(b"ab", 5), fold(b"", 0));
        assert_eq!(fold_pair(b"${x", 0), fold_pair(b"${", 0));
    }

    #[test]
    fn keys_are_two_consecutive_windows_avoiding_ordinary_ones() {
        let o = Ordinary::new();
        let keys = o.keys(b"accept: ../");
        assert_eq!(keys.len(), 2);
        assert!(keys.iter().all(|k| k.quad));
        assert_eq!(keys[1].offset, keys[0].offset + 1);
        assert!(keys[0].offset > 0, "keyed by `acce`");
        let keys = o.keys(b"?-d");
        assert_eq!((keys.len(), keys[0].quad, keys[0].offset, keys[1].offset), (2, false, 0, 1));
    }

    #[test]
    fn two_byte_anchors_are_keyed_at_both_parities() {
        let keys = Ordinary::new().keys(b"${");
        assert_eq!(keys.len(), 1 + 128);
        assert!(keys.iter().any(|k| k.offset == 0 && k.window == u32::from(fold_pair(b"${", 0))));
    }
}
