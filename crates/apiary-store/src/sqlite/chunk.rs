//! The byte encoding of the payload-history chunk logs (see `payload.rs`):
//! lists of IP addresses, lists of value ids, and the (value, day, host)
//! facts of one transaction's `host_fact_log` row. Decoding never trusts
//! the bytes: a malformed chunk is an error, never a panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[derive(Debug, thiserror::Error)]
#[error("corrupt payload-history chunk: {0}")]
pub(crate) struct CorruptChunk(&'static str);

/// An address as a key: 4 bytes for IPv4, 16 for IPv6.
pub(crate) fn ip_key(ip: IpAddr) -> Vec<u8> {
    IpKey::of(ip).as_bytes().to_vec()
}

/// [`ip_key`] without an allocation, for keys sorted by the thousand.
#[derive(Clone, Copy)]
pub(crate) struct IpKey {
    bytes: [u8; 16],
    len: usize,
}

impl IpKey {
    pub(crate) fn of(ip: IpAddr) -> IpKey {
        match ip {
            IpAddr::V4(v4) => {
                let mut bytes = [0; 16];
                bytes[..4].copy_from_slice(&v4.octets());
                IpKey { bytes, len: 4 }
            }
            IpAddr::V6(v6) => IpKey { bytes: v6.octets(), len: 16 },
        }
    }

    /// The key's bytes; slices compare as SQLite compares the BLOBs.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Addresses as a length byte (4 or 16) and the octets, one after another.
pub(crate) fn encode_hosts(hosts: &[IpAddr]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hosts.len() * 5);
    for ip in hosts {
        push_host(&mut out, *ip);
    }
    out
}

fn push_host(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            out.push(4);
            out.extend_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            out.push(16);
            out.extend_from_slice(&v6.octets());
        }
    }
}

/// Takes one address (length byte and octets) off the front of `bytes`.
fn take_host(bytes: &mut &[u8]) -> Result<IpAddr, CorruptChunk> {
    let (&len, rest) = bytes.split_first().ok_or(CorruptChunk("missing address"))?;
    let len = usize::from(len);
    let octets = rest.get(..len).ok_or(CorruptChunk("truncated address"))?;
    let ip = match len {
        4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(octets).map_err(|_| CorruptChunk("address"))?)),
        16 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(octets).map_err(|_| CorruptChunk("address"))?)),
        _ => return Err(CorruptChunk("address length")),
    };
    *bytes = &rest[len..];
    Ok(ip)
}

pub(crate) fn decode_hosts(mut bytes: &[u8]) -> Result<Vec<IpAddr>, CorruptChunk> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        out.push(take_host(&mut bytes)?);
    }
    Ok(out)
}

/// One LEB128 varint (an i64 goes as its 64 bits). Event blocks use the
/// same encoding (`block.rs`).
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Takes one varint off the front of `bytes`.
fn take_varint(bytes: &mut &[u8]) -> Result<i64, CorruptChunk> {
    let (mut v, mut shift) = (0u64, 0u32);
    for (i, &b) in bytes.iter().enumerate() {
        if shift > 63 {
            return Err(CorruptChunk("varint too long"));
        }
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            *bytes = &bytes[i + 1..];
            return Ok(v as i64);
        }
        shift += 7;
    }
    Err(CorruptChunk("truncated varint"))
}

/// Value ids as LEB128 varints.
pub(crate) fn encode_ids(ids: &[i64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ids.len() * 3);
    for &id in ids {
        put_varint(&mut out, id as u64);
    }
    out
}

pub(crate) fn decode_ids(mut bytes: &[u8]) -> Result<Vec<i64>, CorruptChunk> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        out.push(take_varint(&mut bytes)?);
    }
    Ok(out)
}

/// (value id, day, host) facts: two varints and an address each.
pub(crate) fn encode_facts(facts: &[(i64, i64, IpAddr)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(facts.len() * 10);
    for &(value, day, host) in facts {
        put_varint(&mut out, value as u64);
        put_varint(&mut out, day as u64);
        push_host(&mut out, host);
    }
    out
}

pub(crate) fn decode_facts(mut bytes: &[u8]) -> Result<Vec<(i64, i64, IpAddr)>, CorruptChunk> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let value = take_varint(&mut bytes)?;
        let day = take_varint(&mut bytes)?;
        out.push((value, day, take_host(&mut bytes)?));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let hosts: Vec<IpAddr> = vec!["192.0.2.1".parse().unwrap(), "2001:db8::7".parse().unwrap()];
        assert_eq!(decode_hosts(&encode_hosts(&hosts)).unwrap(), hosts);
        let ids = vec![1, 127, 128, 300, i64::MAX, -1];
        assert_eq!(decode_ids(&encode_ids(&ids)).unwrap(), ids);
        let facts = vec![(7, 20_419, hosts[0]), (300, -2, hosts[1]), (i64::MAX, 0, hosts[0])];
        assert_eq!(decode_facts(&encode_facts(&facts)).unwrap(), facts);
    }

    #[test]
    fn corrupt_bytes_are_errors() {
        assert!(decode_hosts(&[4, 1, 2]).is_err());
        assert!(decode_hosts(&[5, 1, 2, 3, 4, 5]).is_err());
        assert!(decode_ids(&[0x80]).is_err());
        assert!(decode_ids(&[0xff; 11]).is_err());
        let whole = encode_facts(&[(7, 20_419, "192.0.2.1".parse().unwrap())]);
        for cut in 1..whole.len() {
            assert!(decode_facts(&whole[..cut]).is_err(), "cut at {cut}");
        }
    }
}
