//! The little of ASN.1 BER that SNMP and LDAP need: reading definite-length
//! TLVs from attacker bytes (never panicking, never trusting a length) and
//! writing them.

/// One element: its tag byte and contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tlv<'a> {
    pub tag: u8,
    pub value: &'a [u8],
}

/// Reads elements one after another from a byte slice.
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { rest: bytes }
    }

    /// The next element, or `None` if the bytes do not hold a whole one.
    /// Multi-byte tags and indefinite lengths are not used by either protocol
    /// here and are refused.
    pub fn next(&mut self) -> Option<Tlv<'a>> {
        let (&tag, rest) = self.rest.split_first()?;
        if tag & 0x1f == 0x1f {
            return None;
        }
        let (len, used) = length(rest)?;
        let value = rest.get(used..used.checked_add(len)?)?;
        self.rest = &rest[used + len..];
        Some(Tlv { tag, value })
    }

    /// The next element if it has this tag.
    pub fn expect(&mut self, tag: u8) -> Option<&'a [u8]> {
        let t = self.next()?;
        (t.tag == tag).then_some(t.value)
    }
}

/// A length field: (length, bytes it took). Up to 4 length bytes.
pub fn length(b: &[u8]) -> Option<(usize, usize)> {
    let first = *b.first()?;
    if first < 0x80 {
        return Some((first as usize, 1));
    }
    let n = (first & 0x7f) as usize;
    if n == 0 || n > 4 {
        return None;
    }
    let bytes = b.get(1..1 + n)?;
    let len = bytes.iter().fold(0usize, |acc, &x| (acc << 8) | x as usize);
    Some((len, 1 + n))
}

/// A whole element's size from its first bytes, once the header is in:
/// `Ok(Some(total))`, `Ok(None)` if more header bytes are needed, `Err` if
/// the header is not one we accept.
pub fn frame_len(b: &[u8]) -> Result<Option<usize>, ()> {
    let Some(&tag) = b.first() else { return Ok(None) };
    if tag & 0x1f == 0x1f {
        return Err(());
    }
    match b.get(1) {
        None => Ok(None),
        Some(&l) if l >= 0x80 && (l == 0x80 || l > 0x84) => Err(()),
        Some(&l) if l >= 0x80 && b.len() < 2 + (l & 0x7f) as usize => Ok(None),
        Some(_) => {
            let (len, used) = length(&b[1..]).ok_or(())?;
            Ok(Some(1 + used + len))
        }
    }
}

/// A non-negative INTEGER's value (at most 8 bytes; longer is refused).
pub fn integer(v: &[u8]) -> Option<i64> {
    if v.is_empty() || v.len() > 8 {
        return None;
    }
    let neg = v[0] & 0x80 != 0;
    let init: i64 = if neg { -1 } else { 0 };
    Some(v.iter().fold(init, |acc, &x| (acc << 8) | x as i64))
}

/// An OBJECT IDENTIFIER as dotted text, e.g. "1.3.6.1.2.1.1.1.0".
pub fn oid_to_string(v: &[u8]) -> Option<String> {
    let (&first, rest) = v.split_first()?;
    let mut parts = vec![(first / 40).min(2) as u64, (first as u64).saturating_sub(40 * (first / 40).min(2) as u64)];
    let mut acc: u64 = 0;
    for &b in rest {
        if acc > (u64::MAX >> 7) {
            return None;
        }
        acc = (acc << 7) | (b & 0x7f) as u64;
        if b & 0x80 == 0 {
            parts.push(acc);
            acc = 0;
        }
    }
    if rest.last().is_some_and(|b| b & 0x80 != 0) {
        return None;
    }
    Some(parts.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("."))
}

/// Dotted text to OID contents (for our own table; inputs are constants).
pub fn oid_from_str(s: &str) -> Vec<u8> {
    let parts: Vec<u64> = s.split('.').filter_map(|p| p.parse().ok()).collect();
    let mut out = Vec::new();
    if parts.len() < 2 {
        return out;
    }
    out.push((parts[0] * 40 + parts[1]) as u8);
    for &p in &parts[2..] {
        let mut stack = vec![(p & 0x7f) as u8];
        let mut rest = p >> 7;
        while rest > 0 {
            stack.push((rest & 0x7f) as u8 | 0x80);
            rest >>= 7;
        }
        out.extend(stack.iter().rev());
    }
    out
}

/// Writes one element.
pub fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 6);
    out.push(tag);
    let n = value.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes = (n as u32).to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (4 - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(value);
    out
}

/// A minimal two's-complement INTEGER (or ENUMERATED) element.
pub fn int(tag: u8, v: i64) -> Vec<u8> {
    let bytes = v.to_be_bytes();
    let mut start = 0;
    while start < 7 {
        let (b, next) = (bytes[start], bytes[start + 1]);
        if (b == 0 && next & 0x80 == 0) || (b == 0xff && next & 0x80 != 0) {
            start += 1;
        } else {
            break;
        }
    }
    tlv(tag, &bytes[start..])
}

/// Concatenation, for building SEQUENCEs.
pub fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrips() {
        let oid = "1.3.6.1.2.1.1.1.0";
        assert_eq!(oid_to_string(&oid_from_str(oid)).unwrap(), oid);
        assert_eq!(oid_to_string(&oid_from_str("1.3.6.1.4.1.8072.3.2.10")).unwrap(), "1.3.6.1.4.1.8072.3.2.10");
        for v in [0i64, 1, 127, 128, 255, 256, -1, -129, 1 << 40] {
            let e = int(2, v);
            let t = Reader::new(&e).next().unwrap();
            assert_eq!(integer(t.value), Some(v));
        }
        let long = tlv(4, &[7u8; 300]);
        assert_eq!(frame_len(&long), Ok(Some(long.len())));
        assert_eq!(Reader::new(&long).next().unwrap().value.len(), 300);
    }

    #[test]
    fn hostile_lengths() {
        assert!(Reader::new(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff, 0]).next().is_none());
        assert!(Reader::new(&[0x30, 0x85, 1, 1, 1, 1, 1]).next().is_none());
        assert!(Reader::new(&[0x30, 0x80]).next().is_none());
        assert!(Reader::new(&[0x1f, 0x01, 0]).next().is_none());
        assert_eq!(frame_len(&[0x30]), Ok(None));
        assert_eq!(frame_len(&[0x30, 0x82, 1]), Ok(None));
        assert_eq!(frame_len(&[0x30, 0x80]), Err(()));
        assert!(oid_to_string(&[0x2b, 0xff]).is_none());
        assert!(integer(&[]).is_none());
        for i in 0..3000u32 {
            let noise: Vec<u8> =
                (0..(i % 40)).map(|j| (i.wrapping_mul(2654435761).wrapping_add(j * 97) >> 3) as u8).collect();
            let mut r = Reader::new(&noise);
            while let Some(t) = r.next() {
                let _ = oid_to_string(t.value);
                let _ = integer(t.value);
            }
            let _ = frame_len(&noise);
        }
    }
}
