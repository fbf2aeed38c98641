//! What ingest derives from a payload: the values kept in payload history and
//! the CVEs the payload was seen exploiting.
//!
//! The analysis itself lives in `apiary-extract`; this is only its result, in
//! a form the store can keep without knowing how it was found. It travels on
//! the [`crate::Event`] it came from, like [`crate::Origin`], and is never part
//! of the wire form: a sensor cannot claim attributes or CVEs, the server
//! derives them.

use md5::{Digest, Md5};

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
        let md5 = Md5::digest(value.as_bytes()).into();
        PayloadValue { attribute, value, truncated, md5 }
    }
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
    fn md5_is_of_the_stored_text() {
        let v = PayloadValue::new(Some("http-path"), "/".into(), false);
        assert_eq!(hex::encode(v.md5), "6666cd76f96956469e7be39d750cc7d9");
    }
}
