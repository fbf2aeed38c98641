//! CVE sightings: which known exploits a payload carries.
//!
//! The table is compiled once (on first use) into Aho-Corasick automata over
//! the signatures' anchors plus per-signature regexes. Anchors are searched in
//! the field a signature tests first (request target, header block, body, or
//! whole payload), one small automaton per field: small automata stay in
//! cache, and the target is short. Only signatures whose anchor occurred run
//! their regexes, so the common no-match case stays cheap.

mod table;

use std::sync::OnceLock;

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use regex::bytes::{Regex, RegexBuilder};

use crate::proto::http::Request;
use crate::service::Service;
pub use table::{Signature, TableError, SIGNATURES_TOML};

/// Where a signature applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    /// Payloads that parse as HTTP requests, on any service.
    Http,
    /// Every payload.
    Any,
    /// Payloads of one service.
    Only(Service),
}

struct Compiled {
    family: Family,
    methods: Vec<String>,
    path: Option<Regex>,
    header: Option<Regex>,
    body: Option<Regex>,
    payload: Option<Regex>,
}

/// Where a signature's anchors are searched: the first field it tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Target = 0,
    Head = 1,
    Body = 2,
    Payload = 3,
}

/// Most anchors per automaton. One automaton per field measured fastest;
/// splitting into Teddy-sized groups (48) measured ~1.5x slower (BENCH-NOTES.md).
const ANCHORS_PER_SCAN: usize = 4096;

/// One automaton over some anchors of the signatures that start with one field.
struct Scan {
    field: Field,
    anchors: AhoCorasick,
    /// Anchor pattern index → signature index.
    anchor_sig: Vec<usize>,
}

/// The compiled signature table.
pub struct CveMatcher {
    signatures: Vec<Signature>,
    compiled: Vec<Compiled>,
    scans: Vec<Scan>,
}

static GLOBAL: OnceLock<Result<CveMatcher, TableError>> = OnceLock::new();

fn regex(cve: &str, field: &'static str, pat: &Option<String>) -> Result<Option<Regex>, TableError> {
    let Some(pat) = pat else { return Ok(None) };
    RegexBuilder::new(pat)
        .unicode(false)
        .size_limit(1 << 20)
        .dfa_size_limit(1 << 20)
        .build()
        .map(Some)
        .map_err(|e| TableError::Regex { cve: cve.to_owned(), field, error: e.to_string() })
}

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
        let mut patterns: [Vec<&[u8]>; 4] = Default::default();
        let mut anchor_sig: [Vec<usize>; 4] = Default::default();
        for (i, sig) in file.signature.iter().enumerate() {
            sig.validate()?;
            let family = match sig.service.as_str() {
                "http" => Family::Http,
                "any" => Family::Any,
                other => match Service::parse(other) {
                    Service::Other => {
                        return Err(TableError::Invalid {
                            cve: sig.cve.clone(),
                            problem: format!("unknown service {other:?}"),
                        })
                    }
                    svc => Family::Only(svc),
                },
            };
            compiled.push(Compiled {
                family,
                methods: sig.methods.clone(),
                path: regex(&sig.cve, "path", &sig.path)?,
                header: regex(&sig.cve, "header", &sig.header)?,
                body: regex(&sig.cve, "body", &sig.body)?,
                payload: regex(&sig.cve, "payload", &sig.payload)?,
            });
            let field = if sig.path.is_some() {
                Field::Target
            } else if sig.header.is_some() {
                Field::Head
            } else if sig.body.is_some() {
                Field::Body
            } else {
                Field::Payload
            };
            for a in &sig.anchors {
                patterns[field as usize].push(a.as_bytes());
                anchor_sig[field as usize].push(i);
            }
        }
        let fields = [Field::Target, Field::Head, Field::Body, Field::Payload];
        let mut scans = Vec::new();
        for ((pats, sigs), field) in patterns.iter().zip(anchor_sig).zip(fields) {
            for (chunk, chunk_sigs) in pats.chunks(ANCHORS_PER_SCAN).zip(sigs.chunks(ANCHORS_PER_SCAN)) {
                let anchors = AhoCorasick::builder()
                    .ascii_case_insensitive(true)
                    .match_kind(MatchKind::Standard)
                    .kind(Some(AhoCorasickKind::DFA))
                    .build(chunk)
                    .map_err(|e| TableError::Invalid { cve: "(anchors)".into(), problem: e.to_string() })?;
                scans.push(Scan { field, anchors, anchor_sig: chunk_sigs.to_vec() });
            }
        }
        Ok(CveMatcher { signatures: file.signature, compiled, scans })
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

    /// The matching proper; `req` is the request when the caller already parsed it.
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
        let mut hits: Vec<usize> = Vec::new();
        let fields: [&[u8]; 4] = match req {
            Some(r) => [r.target, r.head, r.body, payload],
            None => [&[], &[], &[], payload],
        };
        for scan in &self.scans {
            let (ac, hay) = (&scan.anchors, fields[scan.field as usize]);
            // The plain search is the fast, specialised one: it settles the
            // common no-match case before the slower overlapping pass.
            if hay.is_empty() || !ac.is_match(hay) {
                continue;
            }
            for m in ac.find_overlapping_iter(hay) {
                hits.push(scan.anchor_sig[m.pattern().as_usize()]);
            }
        }
        if hits.is_empty() {
            return;
        }
        hits.sort_unstable();
        hits.dedup();
        for i in hits {
            let (sig, c) = (&self.signatures[i], &self.compiled[i]);
            if !out.contains(&sig.cve.as_str()) && c.matches(svc, payload, req) {
                out.push(&sig.cve);
            }
        }
    }
}

impl Compiled {
    fn matches(&self, svc: Service, payload: &[u8], req: Option<&Request<'_>>) -> bool {
        let req = match self.family {
            Family::Any => req,
            Family::Only(s) if s == svc => req,
            Family::Only(_) => return false,
            Family::Http => match req {
                Some(r) => Some(r),
                None => return false,
            },
        };
        let test = |re: &Option<Regex>, hay: Option<&[u8]>| match (re, hay) {
            (None, _) => true,
            (Some(re), Some(h)) => re.is_match(h),
            (Some(_), None) => false,
        };
        if !self.methods.is_empty() {
            let Some(r) = req else { return false };
            if !self.methods.iter().any(|m| m.as_bytes() == r.method) {
                return false;
            }
        }
        test(&self.path, req.map(|r| r.target))
            && test(&self.header, req.map(|r| r.head))
            && test(&self.body, req.map(|r| r.body))
            && test(&self.payload, Some(payload))
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
