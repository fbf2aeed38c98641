//! Byte-slice helpers shared by the line-oriented parsers.

/// Splits on `\n`, `\r\n`, a lone `\r` (SSH terminals send bare CR) or a Telnet
/// `\r\0`. A final unterminated line is yielded too: payloads are often cut mid-line.
pub(crate) fn lines(p: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = p;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (line, next) = match memchr::memchr2(b'\r', b'\n', rest) {
            Some(i) => {
                let skip = match (rest[i], rest.get(i + 1)) {
                    (b'\r', Some(b'\n' | 0)) => 2,
                    _ => 1,
                };
                (&rest[..i], &rest[i + skip..])
            }
            None => (rest, &rest[rest.len()..]),
        };
        rest = next;
        Some(strip_cr(line))
    })
}

/// Where `part`, a subslice of `whole` (as the parsers return), lies in it,
/// found by address; `None` when it is not inside `whole`.
pub(crate) fn range_in(whole: &[u8], part: &[u8]) -> Option<std::ops::Range<usize>> {
    let start = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    let end = start.checked_add(part.len())?;
    (end <= whole.len()).then_some(start..end)
}

/// Removes trailing `\r` and NUL bytes.
pub(crate) fn strip_cr(mut line: &[u8]) -> &[u8] {
    while let [head @ .., b'\r' | 0] = line {
        line = head;
    }
    line
}

pub(crate) fn trim(b: &[u8]) -> &[u8] {
    b.trim_ascii()
}

/// Splits at the first ASCII space/tab: (`word`, rest trimmed).
pub(crate) fn split_word(line: &[u8]) -> (&[u8], &[u8]) {
    let line = trim(line);
    match line.iter().position(|&b| b == b' ' || b == b'\t') {
        Some(i) => (&line[..i], trim(&line[i + 1..])),
        None => (line, &[]),
    }
}

/// Whether the slice starts with `prefix`, ASCII case-insensitively.
pub(crate) fn starts_with_ci(s: &[u8], prefix: &[u8]) -> bool {
    s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// Whether most of the payload is text, to tell line protocols from binary noise.
pub(crate) fn is_mostly_text(p: &[u8]) -> bool {
    if p.is_empty() {
        return false;
    }
    let text = p.iter().filter(|&&b| b == b'\r' || b == b'\n' || b == b'\t' || (0x20..0x7f).contains(&b)).count();
    text * 10 >= p.len() * 9
}

/// Decodes standard base64 (padding optional); `None` on any other byte.
/// Only used on short SMTP AUTH tokens, so a small hand-rolled decoder beats a dependency.
pub(crate) fn base64_decode(s: &[u8]) -> Option<Vec<u8>> {
    fn val(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let s = trim(s);
    let s = match s.iter().position(|&b| b == b'=') {
        Some(i) if s[i..].iter().all(|&b| b == b'=') => &s[..i],
        Some(_) => return None,
        None => s,
    };
    if s.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    for chunk in s.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= val(c)? << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lines_of_all_endings() {
        let v: Vec<&[u8]> = lines(b"a\r\nb\nc\r\0d\re").collect();
        assert_eq!(v, vec![&b"a"[..], b"b", b"c", b"d", b"e"]);
        assert_eq!(lines(b"a\n").count(), 1);
        assert_eq!(lines(b"").count(), 0);
    }

    #[test]
    fn locates_subslices_by_address() {
        let whole = b"GET /x HTTP/1.1";
        assert_eq!(range_in(whole, &whole[4..6]), Some(4..6));
        assert_eq!(range_in(whole, &whole[15..]), Some(15..15));
        assert_eq!(range_in(&whole[4..], &whole[..3]), None);
        assert_eq!(range_in(&whole[..3], &whole[2..6]), None);
    }

    #[test]
    fn decodes_base64() {
        assert_eq!(base64_decode(b"AHJvb3QAdG9vcg==").as_deref(), Some(&b"\0root\0toor"[..]));
        assert_eq!(base64_decode(b"cm9vdA").as_deref(), Some(&b"root"[..]));
        assert_eq!(base64_decode(b"a=b"), None);
        assert_eq!(base64_decode(b"abcde"), None);
    }
}
