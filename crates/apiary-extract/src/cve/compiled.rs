//! One signature compiled: where it applies and its regexes.

use regex::bytes::{Regex, RegexBuilder};

use super::table::{Signature, TableError};
use crate::proto::http::Request;
use crate::service::Service;

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

/// Where a signature's anchors are searched: the first field it tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Field {
    Target,
    Head,
    Body,
    Payload,
}

impl Field {
    /// A distinct bit per field, for sets of fields.
    pub fn bit(self) -> u8 {
        match self {
            Field::Target => 1,
            Field::Head => 2,
            Field::Body => 4,
            Field::Payload => 8,
        }
    }
}

/// A signature ready to test: where it applies, the field its anchors must
/// occur in, and its patterns compiled.
pub(super) struct Compiled {
    family: Family,
    /// The field its anchors must occur in.
    pub field: Field,
    methods: Vec<String>,
    path: Option<Regex>,
    header: Option<Regex>,
    body: Option<Regex>,
    payload: Option<Regex>,
}

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

impl Compiled {
    /// Compiles a validated signature.
    pub fn new(sig: &Signature) -> Result<Compiled, TableError> {
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
        let field = if sig.path.is_some() {
            Field::Target
        } else if sig.header.is_some() {
            Field::Head
        } else if sig.body.is_some() {
            Field::Body
        } else {
            Field::Payload
        };
        Ok(Compiled {
            family,
            field,
            methods: sig.methods.clone(),
            path: regex(&sig.cve, "path", &sig.path)?,
            header: regex(&sig.cve, "header", &sig.header)?,
            body: regex(&sig.cve, "body", &sig.body)?,
            payload: regex(&sig.cve, "payload", &sig.payload)?,
        })
    }

    /// Whether the signature can apply to this payload at all, before any
    /// regex: the cheap test run on every anchor hit.
    pub fn applies(&self, svc: Service, is_request: bool) -> bool {
        match self.family {
            Family::Any => true,
            Family::Only(s) => s == svc,
            Family::Http => is_request,
        }
    }

    /// The full test: methods and every regex given (anchors already found).
    pub fn matches(&self, svc: Service, payload: &[u8], req: Option<&Request<'_>>) -> bool {
        if !self.applies(svc, req.is_some()) {
            return false;
        }
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
