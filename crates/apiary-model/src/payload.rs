//! What ingest derives from a payload: the values kept in payload history and
//! the CVEs the payload was seen exploiting.
//!
//! The analysis itself lives in `apiary-extract`; this is only its result, in
//! a form the store can keep without knowing how it was found. It travels on
//! the [`crate::Event`] it came from, like [`crate::Origin`], and is never part
//! of the wire form: a sensor cannot claim attributes or CVEs, the server
//! derives them.

use std::cell::RefCell;

use md5::{Digest, Md5};
use rustc_hash::FxHashMap;

/// One distinct value found in a payload.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PayloadValue {
    /// HoneyDB's attribute name (`http-path`, `domain`, ...); `None` for a
    /// payload kept whole because no parser knows its service.
    pub attribute: Option<&'static str>,
    /// Printable text, already cut to the size limit.
    pub value: String,
    /// The value was cut to the size limit; the record keeps the first part.
    pub truncated: bool,
    /// MD5 of `value` as stored: what a client can recompute from the text.
    pub md5: [u8; 16],
}

impl PayloadValue {
    pub fn new(attribute: Option<&'static str>, value: String, truncated: bool) -> PayloadValue {
        let md5 = md5_of(&value);
        PayloadValue { attribute, value, truncated, md5 }
    }
}

/// Values up to this long have their digests remembered by [`md5_of`].
const MAX_REMEMBERED_LEN: usize = 256;
/// Digests each thread remembers at most (about 300 bytes each at worst);
/// past it the memory starts over.
const MAX_REMEMBERED: usize = 4096;

thread_local! {
    static DIGESTS: RefCell<FxHashMap<Box<str>, [u8; 16]>> = RefCell::new(FxHashMap::default());
}

/// MD5 of `value`. Honeypot traffic repeats itself (the same paths, user
/// agents and logins from thousands of hosts), so the digests of short
/// values are remembered per thread: a hash lookup costs a fraction of an
/// MD5, which was a tenth of payload analysis.
fn md5_of(value: &str) -> [u8; 16] {
    let digest = |v: &str| -> [u8; 16] { Md5::digest(v.as_bytes()).into() };
    if value.len() > MAX_REMEMBERED_LEN {
        return digest(value);
    }
    DIGESTS.with_borrow_mut(|known| {
        if let Some(md5) = known.get(value) {
            return *md5;
        }
        if known.len() >= MAX_REMEMBERED {
            known.clear();
        }
        let md5 = digest(value);
        known.insert(value.into(), md5);
        md5
    })
}

/// Everything derived from one event's payload; empty for events without one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PayloadFacts {
    pub values: Vec<PayloadValue>,
    /// CVE ids (`CVE-2021-44228`) whose signature matched the payload.
    pub cves: Vec<&'static str>,
}

impl PayloadFacts {
    pub fn is_empty(&self) -> bool {
        self.values.is_empty() && self.cves.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_digests_are_of_their_own_value() {
        // Past the limit the memory starts over; every digest stays right.
        for round in 0..2 {
            for i in 0..MAX_REMEMBERED + 10 {
                let value = format!("value {i}");
                let v = PayloadValue::new(None, value.clone(), false);
                assert_eq!(v.md5, <[u8; 16]>::from(Md5::digest(value.as_bytes())), "round {round}, value {i}");
            }
        }
        let long = "x".repeat(MAX_REMEMBERED_LEN + 1);
        assert_eq!(PayloadValue::new(None, long.clone(), false).md5, <[u8; 16]>::from(Md5::digest(long.as_bytes())));
    }

    #[test]
    fn md5_is_of_the_stored_text() {
        let v = PayloadValue::new(Some("http-path"), "/".into(), false);
        assert_eq!(hex::encode(v.md5), "6666cd76f96956469e7be39d750cc7d9");
    }
}
