//! Ingest-time payload analysis: every RX payload is distilled into the
//! attribute values payload history keeps and the CVEs it was seen exploiting
//! (`apiary-extract` does the parsing and matching).
//!
//! It runs on the ingesting thread, next to enrichment, before the batch goes
//! to the store's single writer: the writer then only merges sets. Sensors
//! cannot send these facts; the server derives them, so a sensor cannot claim
//! a CVE its payload did not carry.

use apiary_extract::{Attr, AttrName};
use apiary_model::{Event, EventKind, PayloadFacts, PayloadValue};

/// Fills in `facts` for every RX event that carries a payload.
pub fn analyze_payloads(events: &mut [Event]) {
    let mut cves = Vec::new();
    for e in events.iter_mut().filter(|e| e.kind == EventKind::Rx && !e.data.is_empty()) {
        let mut values: Vec<PayloadValue> = Vec::new();
        cves.clear();
        let mut keep = |a: Attr<'_>| {
            let attribute = (a.name != AttrName::Payload).then(|| a.name.as_str());
            let v = PayloadValue::new(attribute, a.value.to_owned(), a.truncated);
            // A header repeated in one request is one value, not two.
            if !values.iter().any(|seen| seen.md5 == v.md5 && seen.attribute == v.attribute) {
                values.push(v);
            }
        };
        apiary_extract::analyze_each(&e.service, &e.data, &mut keep, &mut cves);
        e.facts = PayloadFacts { values, cves: cves.clone() };
    }
}
