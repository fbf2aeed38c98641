//! A fast path for the common shape of an ingested event: one flat JSON
//! object whose strings hold no escapes.
//!
//! Parsing was the largest single cost of a bulk load (about a sixth of its
//! CPU, most of it serde's field-by-field machinery). [`scan_flat`] reads
//! only a subset of JSON, and of it exactly what `serde_json` would read;
//! anything outside the subset (an escape, a nested value, a float, a
//! duplicate key, bad syntax) makes it give up, and the caller parses the
//! text with `serde_json`, which accepts or refuses it with its own words.
//! So the subset changes speed, never an answer.

/// A member's value, as far as the fast path tells them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scalar<'a> {
    /// A string without escapes, as written.
    Str(&'a str),
    /// An integer that fits in an `i64`.
    Int(i64),
    /// `true`, `false` or `null`: never a field's value on the fast path,
    /// but an unknown member may hold one.
    Literal,
}

/// Calls `member` with each key and value of the object `text`, in order;
/// `None` when `text` is not a flat object of the subset or `member` gives
/// up (returns `false`).
pub(crate) fn scan_flat<'a>(text: &'a str, mut member: impl FnMut(&'a str, Scalar<'a>) -> bool) -> Option<()> {
    let b = text.as_bytes();
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_ws(b, i + 1);
    if b.get(i) == Some(&b'}') {
        return (skip_ws(b, i + 1) == b.len()).then_some(());
    }
    loop {
        let (key, next) = string(text, i)?;
        i = skip_ws(b, next);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i = skip_ws(b, i + 1);
        let (value, next) = match b.get(i)? {
            b'"' => {
                let (s, next) = string(text, i)?;
                (Scalar::Str(s), next)
            }
            b'-' | b'0'..=b'9' => integer(b, i)?,
            b't' if b[i..].starts_with(b"true") => (Scalar::Literal, i + 4),
            b'f' if b[i..].starts_with(b"false") => (Scalar::Literal, i + 5),
            b'n' if b[i..].starts_with(b"null") => (Scalar::Literal, i + 4),
            _ => return None,
        };
        if !member(key, value) {
            return None;
        }
        i = skip_ws(b, next);
        match b.get(i)? {
            b',' => i = skip_ws(b, i + 1),
            b'}' => return (skip_ws(b, i + 1) == b.len()).then_some(()),
            _ => return None,
        }
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = b.get(i) {
        i += 1;
    }
    i
}

/// The string starting with the quote at `i`, and the index after its
/// closing quote; `None` if it holds an escape or a control character
/// (which JSON forbids unescaped).
fn string(text: &str, i: usize) -> Option<(&str, usize)> {
    let b = text.as_bytes();
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let start = i + 1;
    let end = start + first_special(&b[start..])?;
    if b[end] != b'"' {
        return None;
    }
    // Both ends are ASCII quotes, so the slice is on character boundaries.
    Some((&text[start..end], end + 1))
}

/// The index of the first quote, backslash or control character in `b`.
///
/// Eight bytes at a time (SWAR): most strings of an event are short, where
/// a `memchr` call costs more to set up than it saves, and the payload's
/// hex is long. `memchr2` and then a byte-by-byte check for control
/// characters took a tenth of a bulk load's CPU; this took 8 % off its time
/// (BENCHMARKS.md).
fn first_special(b: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    /// High bit set in each byte of `v` that is zero; exact up to the first
    /// such byte (a borrow only ever marks bytes above a true zero).
    fn zero_bytes(v: u64) -> u64 {
        v.wrapping_sub(ONES) & !v & HIGHS
    }
    let mut chunks = b.chunks_exact(8);
    let mut at = 0;
    for chunk in &mut chunks {
        let word = u64::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3], chunk[4], chunk[5], chunk[6], chunk[7]]);
        // Bytes below 0x20, as bytes below 0x20 minus 0x20 borrow: the same
        // formula with 0x20 in place of 1 (exact up to the first, as above).
        let special = zero_bytes(word ^ (ONES * u64::from(b'"')))
            | zero_bytes(word ^ (ONES * u64::from(b'\\')))
            | (word.wrapping_sub(ONES * 0x20) & !word & HIGHS);
        if special != 0 {
            return Some(at + special.trailing_zeros() as usize / 8);
        }
        at += 8;
    }
    chunks.remainder().iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20).map(|i| at + i)
}

/// The integer starting at `i` (JSON's grammar: no leading zeros, no plus
/// sign); `None` for a fraction, an exponent, `-0` or an overflow.
fn integer(b: &[u8], i: usize) -> Option<(Scalar<'static>, usize)> {
    let digits_start = if b[i] == b'-' { i + 1 } else { i };
    let mut end = digits_start;
    while end < b.len() && b[end].is_ascii_digit() {
        end += 1;
    }
    let digits = &b[digits_start..end];
    if digits.is_empty() || (digits.len() > 1 && digits[0] == b'0') {
        return None;
    }
    // serde_json reads `-0` as the float -0.0, which no field takes.
    if digits_start > i && digits == b"0" {
        return None;
    }
    if let Some(b'.' | b'e' | b'E') = b.get(end) {
        return None;
    }
    // Accumulated towards the sign, so that i64::MIN fits; an overflow is
    // not a number any field takes, as with `str::parse`. (Through
    // `from_utf8` and `parse`, this cost a tenth as much as the scanner.)
    let negative = digits_start > i;
    let mut n: i64 = 0;
    for &d in digits {
        let d = i64::from(d - b'0');
        n = n.checked_mul(10)?;
        n = if negative { n.checked_sub(d)? } else { n.checked_add(d)? };
    }
    Some((Scalar::Int(n), end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_read_as_str_parse_reads_them() {
        let mut cases: Vec<String> =
            ["0", "7", "-7", "42", "65535", "-0", "01", "-", "12a"].iter().map(|s| s.to_string()).collect();
        for n in [i64::MAX, i64::MIN, i64::MAX - 1, i64::MIN + 1, 1 << 40, -(1 << 40)] {
            cases.push(n.to_string());
        }
        // One past either end overflows.
        cases.push("9223372036854775808".into());
        cases.push("-9223372036854775809".into());
        cases.push("99999999999999999999".into());
        for case in cases {
            let got = integer(case.as_bytes(), 0).filter(|&(_, end)| end == case.len()).map(|(v, _)| v);
            let leading_zero = case.trim_start_matches('-').len() > 1 && case.trim_start_matches('-').starts_with('0');
            let want = case.parse::<i64>().ok().filter(|_| case != "-0" && !leading_zero).map(Scalar::Int);
            assert_eq!(got, want, "{case:?}");
        }
    }

    fn members(text: &str) -> Option<Vec<(&str, Scalar<'_>)>> {
        let mut out = Vec::new();
        scan_flat(text, |k, v| {
            out.push((k, v));
            true
        })?;
        Some(out)
    }

    #[test]
    fn reads_the_subset() {
        assert_eq!(
            members(r#" {"a":"x y", "b" : -12,"c":true,"d":null ,"e":0} "#),
            Some(vec![
                ("a", Scalar::Str("x y")),
                ("b", Scalar::Int(-12)),
                ("c", Scalar::Literal),
                ("d", Scalar::Literal),
                ("e", Scalar::Int(0))
            ])
        );
        assert_eq!(members("{}"), Some(vec![]));
        assert_eq!(members(r#"{"ü":"☃"}"#), Some(vec![("ü", Scalar::Str("☃"))]));
    }

    #[test]
    fn finds_the_first_quote_backslash_or_control_character() {
        for len in 0..130 {
            for special in [b'"', b'\\', 0x00, 0x1f, b'\n'] {
                for at in 0..len {
                    // Bytes around the specials' values that are not special.
                    let mut b: Vec<u8> =
                        (0..len).map(|i| [b'a', 0x20, 0x21, 0x23, 0x5b, 0x5d, 0xff, 0x80][i % 8]).collect();
                    b[at] = special;
                    if at + 1 < len {
                        b[at + 1] = b'"';
                    }
                    assert_eq!(first_special(&b), Some(at), "{b:?}");
                }
            }
            let plain: Vec<u8> = (0..len).map(|i| [b'x', 0x20, 0x7f, 0xc3, 0xa9, b'!', b'#', b'~'][i % 8]).collect();
            assert_eq!(first_special(&plain), None, "{plain:?}");
        }
    }

    #[test]
    fn gives_up_outside_it() {
        for text in [
            r#"{"a":"x\"y"}"#,
            r#"{"a":"x\ny"}"#,
            "{\"a\":\"x\ty\"}",
            r#"{"a":{"b":1}}"#,
            r#"{"a":[1]}"#,
            r#"{"a":1.5}"#,
            r#"{"a":1e3}"#,
            r#"{"a":01}"#,
            r#"{"a":-0}"#,
            r#"{"a":-}"#,
            r#"{"a":99999999999999999999}"#,
            r#"{"a":1,}"#,
            r#"{"a":1} x"#,
            r#"{"a":1"#,
            r#"{"a" 1}"#,
            r#"{a:1}"#,
            r#"{"a":tru}"#,
            r#"["a"]"#,
            "",
        ] {
            assert_eq!(members(text), None, "{text}");
        }
    }
}
