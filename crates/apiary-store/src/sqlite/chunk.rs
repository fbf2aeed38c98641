//! The byte encoding of the payload-history chunk logs (see `payload.rs`):
//! lists of IP addresses and lists of value ids. Decoding never trusts the
//! bytes: a malformed chunk is an error, never a panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[derive(Debug, thiserror::Error)]
#[error("corrupt payload-history chunk: {0}")]
pub(crate) struct CorruptChunk(&'static str);

/// An address as a key: 4 bytes for IPv4, 16 for IPv6.
pub(crate) fn ip_key(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

/// Addresses as a length byte (4 or 16) and the octets, one after another.
pub(crate) fn encode_hosts(hosts: &[IpAddr]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hosts.len() * 5);
    for ip in hosts {
        let key = ip_key(*ip);
        out.push(key.len() as u8);
        out.extend_from_slice(&key);
    }
    out
}

pub(crate) fn decode_hosts(mut bytes: &[u8]) -> Result<Vec<IpAddr>, CorruptChunk> {
    let mut out = Vec::new();
    while let Some((&len, rest)) = bytes.split_first() {
        let len = usize::from(len);
        let octets = rest.get(..len).ok_or(CorruptChunk("truncated address"))?;
        out.push(match len {
            4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(octets).map_err(|_| CorruptChunk("address"))?)),
            16 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(octets).map_err(|_| CorruptChunk("address"))?)),
            _ => return Err(CorruptChunk("address length")),
        });
        bytes = &rest[len..];
    }
    Ok(out)
}

/// Value ids as LEB128 varints.
pub(crate) fn encode_ids(ids: &[i64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ids.len() * 3);
    for &id in ids {
        let mut v = id as u64;
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    out
}

pub(crate) fn decode_ids(bytes: &[u8]) -> Result<Vec<i64>, CorruptChunk> {
    let mut out = Vec::new();
    let (mut v, mut shift) = (0u64, 0u32);
    for &b in bytes {
        if shift > 63 {
            return Err(CorruptChunk("varint too long"));
        }
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            out.push(v as i64);
            (v, shift) = (0, 0);
        } else {
            shift += 7;
        }
    }
    if shift != 0 {
        return Err(CorruptChunk("truncated varint"));
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
        let ids = vec![1, 127, 128, 300, i64::MAX];
        assert_eq!(decode_ids(&encode_ids(&ids)).unwrap(), ids);
    }

    #[test]
    fn corrupt_bytes_are_errors() {
        assert!(decode_hosts(&[4, 1, 2]).is_err());
        assert!(decode_hosts(&[5, 1, 2, 3, 4, 5]).is_err());
        assert!(decode_ids(&[0x80]).is_err());
        assert!(decode_ids(&[0xff; 11]).is_err());
    }
}
