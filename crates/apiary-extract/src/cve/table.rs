//! The signature table: its TOML schema and validation.
//!
//! The table is data (`data/cve-signatures.toml`), compiled into the binary with
//! `include_str!`, so a new signature needs no code change and every entry
//! carries the examples that prove it right.

use serde::Deserialize;

/// The signature file, embedded at compile time.
pub const SIGNATURES_TOML: &str = include_str!("../../data/cve-signatures.toml");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct File {
    pub signature: Vec<Signature>,
}

/// One entry of the table, as written in the data file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    /// `CVE-YYYY-NNNN...`
    pub cve: String,
    /// What was exploited, for people reading sightings.
    pub title: String,
    /// `http` (any payload that parses as an HTTP request, whatever the
    /// service), `any` (every payload), or a service name (`redis`, `smtp`, `ftp`, ...).
    pub service: String,
    /// Public reference: NVD, vendor advisory, Nuclei template, ET/Suricata rule, Exploit-DB.
    pub source: String,
    /// Literals (ASCII case-insensitive, at least 2 bytes; prefer longer), one
    /// of which must occur before the patterns are tried. They are searched in
    /// the first field the signature tests (`path` → request target, then
    /// `header`, `body`, `payload`), so they should be literals of that regex.
    /// They are the prefilter that keeps the no-match case cheap: each is
    /// found by a few of its 2- or 4-byte windows, the ones least seen in
    /// ordinary traffic (`src/cve/keys.rs`), so an anchor made only of
    /// ordinary text (`/api/`) costs a check wherever such text appears.
    pub anchors: Vec<String>,
    /// HTTP methods allowed (exact, upper case); empty means any.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Regex over the HTTP request target (path and query as sent).
    pub path: Option<String>,
    /// Regex over the HTTP header block (use `(?m)^name:` to anchor a header).
    pub header: Option<String>,
    /// Regex over the HTTP body.
    pub body: Option<String>,
    /// Regex over the whole payload (non-HTTP protocols, or "anywhere").
    pub payload: Option<String>,
    /// A payload that must match (TOML escapes: `\r\n`, `\u0000`).
    pub match_example: String,
    /// A similar, benign payload that must not match.
    pub near_miss: String,
}

/// Why the table could not be loaded; each names the offending entry.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("signature file is not valid TOML: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("{cve}: {field} is not a valid regex: {error}")]
    Regex { cve: String, field: &'static str, error: String },
    #[error("{cve}: {problem}")]
    Invalid { cve: String, problem: String },
}

impl Signature {
    /// Checks what serde cannot: id shape, anchors, at least one condition.
    pub(crate) fn validate(&self) -> Result<(), TableError> {
        let bad = |problem: &str| Err(TableError::Invalid { cve: self.cve.clone(), problem: problem.to_owned() });
        let id_ok = self.cve.strip_prefix("CVE-").and_then(|r| r.split_once('-')).is_some_and(|(y, n)| {
            y.len() == 4 && n.len() >= 4 && y.bytes().chain(n.bytes()).all(|b| b.is_ascii_digit())
        });
        if !id_ok {
            return bad("id is not CVE-YYYY-NNNN");
        }
        if self.anchors.is_empty() || self.anchors.iter().any(|a| a.len() < 2) {
            return bad("needs anchors of at least 2 bytes");
        }
        if self.path.is_none() && self.header.is_none() && self.body.is_none() && self.payload.is_none() {
            return bad("needs at least one of path, header, body, payload");
        }
        let http_only = self.path.is_some() || self.header.is_some() || self.body.is_some() || !self.methods.is_empty();
        if http_only && self.service != "http" {
            return bad("path/header/body/methods need service = \"http\"");
        }
        if self.source.trim().is_empty() || self.title.trim().is_empty() {
            return bad("needs a title and a source");
        }
        Ok(())
    }
}
