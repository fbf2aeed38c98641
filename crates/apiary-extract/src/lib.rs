//! Apiary's payload analysis: what attackers sent, distilled at ingest time.
//!
//! Two things are derived from each RX payload, both pure functions of
//! `(service, payload bytes)` with no I/O:
//!
//! - **attributes** ([`extract`], [`extract_each`]): HoneyDB-named values such as
//!   `http-path`, `http-user-agent`, `redis-command` or `domain`, for payload
//!   history (one record per distinct value per day). See `ATTRIBUTES.md` and
//!   [`ATTRIBUTE_NAMES`].
//! - **CVE sightings** ([`match_cves`], [`CveMatcher`]): which known exploits
//!   the payload carries, from the signature table in `data/cve-signatures.toml`.
//!
//! [`analyze`] does both with one HTTP parse; it is what ingest should call.
//! Nothing here panics on any input (fuzzed; see `FUZZING.md`).

mod attr;
pub mod cve;
mod extract;
pub mod proto;
mod service;
mod sink;
mod text;

pub use attr::{Attr, AttrName, Attribute, ATTRIBUTE_NAMES, MAX_ATTRIBUTES, MAX_VALUE_BYTES};
pub use cve::{match_cves, CveMatcher, Signature, TableError};
pub use extract::{extract, extract_each};
pub use service::Service;

use proto::http::Request;

/// Everything derived from one payload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Analysis {
    pub attributes: Vec<Attribute>,
    /// Distinct CVE ids, in signature-table order.
    pub cves: Vec<&'static str>,
}

/// Extracts attributes and matches CVEs in one pass over `payload`, the bytes
/// a remote host sent to `service` (a sensor's service name, e.g. `HTTP`).
pub fn analyze(service: &str, payload: &[u8]) -> Analysis {
    let mut analysis = Analysis::default();
    analyze_each(service, payload, &mut |a| analysis.attributes.push(a.to_owned()), &mut analysis.cves);
    analysis
}

/// The allocation-light form of [`analyze`]: attributes go to `visit`
/// (borrowed, valid during the call), CVE ids are appended to `cves`.
pub fn analyze_each(service: &str, payload: &[u8], visit: &mut dyn FnMut(Attr<'_>), cves: &mut Vec<&'static str>) {
    let svc = Service::parse(service);
    let req = Request::parse_http(payload);
    extract::extract_parsed(svc, service, payload, req.as_ref(), visit);
    if let Ok(m) = CveMatcher::global() {
        m.match_parsed(svc, payload, req.as_ref(), cves);
    }
}
