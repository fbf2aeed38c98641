//! CVE sightings: which known exploits a payload carries.
//!
//! The table is compiled once (on first use) into an anchor prefilter plus
//! per-signature regexes. A signature's anchors must occur in the field it
//! tests first (request target, header block, body, or whole payload); one
//! pass of the prefilter over the payload finds them all (see `prefilter.rs`
//! for why that is not Aho-Corasick). Only signatures whose anchor occurred
//! run their regexes, so the common no-match case stays cheap and allocates
//! nothing.

mod compiled;
mod keys;
mod prefilter;
mod table;

use std::sync::OnceLock;

use crate::proto::http::Request;
use crate::service::Service;
use compiled::{Compiled, Field};
use prefilter::{Prefilter, Spans};
pub use table::{Signature, TableError, SIGNATURES_TOML};

/// The compiled signature table.
pub struct CveMatcher {
    signatures: Vec<Signature>,
    compiled: Vec<Compiled>,
    prefilter: Prefilter,
}

static GLOBAL: OnceLock<Result<CveMatcher, TableError>> = OnceLock::new();

impl CveMatcher {
    /// The matcher for the embedded table, compiled on first use. An error
    /// here is a broken data file (the test suite loads it, so it cannot ship).
    pub fn global() -> Result<&'static CveMatcher, &'static TableError> {
        GLOBAL.get_or_init(|| CveMatcher::from_toml(SIGNATURES_TOML)).as_ref()
    }

    /// Compiles a table from TOML text.
    pub fn from_toml(text: &str) -> Result<CveMatcher, TableError> {
        let file: table::File = toml::from_str(text)?;
        let mut compiled = Vec::with_capacity(file.signature.len());
        for sig in &file.signature {
            sig.validate()?;
            compiled.push(Compiled::new(sig)?);
        }
        let anchors = file
            .signature
            .iter()
            .zip(&compiled)
            .enumerate()
            .flat_map(|(i, (sig, c))| sig.anchors.iter().map(move |a| (a.as_str(), c.field, i)));
        let prefilter = Prefilter::new(anchors);
        Ok(CveMatcher { signatures: file.signature, compiled, prefilter })
    }

    /// Every signature, in file order.
    pub fn signatures(&self) -> &[Signature] {
        &self.signatures
    }

    /// The distinct CVE ids of the table, sorted.
    pub fn cve_ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self.signatures.iter().map(|s| s.cve.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Appends to `out` the CVEs whose signatures match (each once, in table order).
    pub fn match_into<'s>(&'s self, service: &str, payload: &[u8], out: &mut Vec<&'s str>) {
        let svc = Service::parse(service);
        self.match_parsed(svc, payload, None, out);
    }

    /// The matching proper; `req` is the request when the caller already
    /// parsed it (from this same `payload`: its fields are located by address).
    pub(crate) fn match_parsed<'s>(
        &'s self,
        svc: Service,
        payload: &[u8],
        req: Option<&Request<'_>>,
        out: &mut Vec<&'s str>,
    ) {
        if payload.is_empty() {
            return;
        }
        let parsed;
        let req = match req {
            Some(r) => Some(r),
            None => {
                parsed = Request::parse_http(payload);
                parsed.as_ref()
            }
        };
        let spans = Spans::new(payload, req);
        // Signature indices with an anchor in their field. Empty (so never
        // allocated) for most payloads.
        let mut hits: Vec<usize> = Vec::new();
        self.prefilter.scan(payload, &spans, &mut |sig| {
            if self.compiled.get(sig).is_some_and(|c| c.applies(svc, req.is_some())) {
                hits.push(sig);
            }
        });
        if hits.is_empty() {
            return;
        }
        hits.sort_unstable();
        hits.dedup();
        for i in hits {
            let (Some(sig), Some(c)) = (self.signatures.get(i), self.compiled.get(i)) else { continue };
            if !out.contains(&sig.cve.as_str()) && c.matches(svc, payload, req) {
                out.push(&sig.cve);
            }
        }
    }
}

/// The CVEs whose signatures match `payload` sent to `service`; empty if the
/// table failed to load (which the test suite rules out).
pub fn match_cves(service: &str, payload: &[u8]) -> Vec<&'static str> {
    let mut out = Vec::new();
    if let Ok(m) = CveMatcher::global() {
        m.match_into(service, payload, &mut out);
    }
    out
}
