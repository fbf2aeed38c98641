//! IP lists: generic plain/ipset/netset files, Tor exit lists, ThreatFox CSV,
//! Spamhaus DROP (text and NDJSON), DShield `block.txt` and Team Cymru bogons.
//!
//! All reduce to a set of ranges. Each parser is lenient about the odd bad line
//! (skipped) but refuses a file that is mostly unreadable (see `Tally`).

use std::net::{IpAddr, SocketAddr};

use serde::Deserialize;

use crate::error::ParseError;
use crate::net::{parse_ip_or_cidr, IpRange};
use crate::parse::{data_lines, text, Tally};

/// A parsed list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListData {
    /// Listed addresses (single IPs, CIDRs or ranges).
    pub ranges: Vec<IpRange>,
    /// The version the file states (date line, timestamp), if any.
    pub version: Option<String>,
}

/// Parses one list entry: an IP, a CIDR, or an `a-b` range (FireHOL ipsets).
pub fn parse_entry(token: &str) -> Option<IpRange> {
    if let Some(r) = parse_ip_or_cidr(token) {
        return Some(r);
    }
    let (a, b) = token.split_once('-')?;
    IpRange::new(a.trim().parse().ok()?, b.trim().parse().ok()?)
}

/// Generic list: one IP, CIDR or range per line; `#`/`;` comments (whole-line or
/// trailing, as in Spamhaus `1.2.3.0/24 ; SBL123`); CRLF; no final newline needed.
/// Covers FireHOL `.ipset`/`.netset`, Emerging Threats, CINS Army, blocklist.de,
/// pallebone, Cloudflare `ips-v4`/`ips-v6`, Spamhaus `drop.txt`, Team Cymru bogons,
/// `torbulkexitlist`.
pub fn parse_plain(bytes: &[u8]) -> Result<ListData, ParseError> {
    let body = text(bytes)?;
    let mut ranges = Vec::new();
    let mut tally = Tally::default();
    for (line, l) in data_lines(body) {
        let token = l.split(['#', ';']).next().unwrap_or("").split_whitespace().next().unwrap_or("");
        match parse_entry(token) {
            Some(r) => {
                tally.good += 1;
                ranges.push(r);
            }
            None => tally.bad(line, l),
        }
    }
    tally.finish("IP")?;
    Ok(ListData { ranges, version: header_version(body) })
}

/// Picks a version out of a comment banner: Team Cymru's `# last updated <epoch>`,
/// FireHOL/DShield `updated:` lines, Spamhaus `Last-Modified:`, ThreatFox
/// `Last updated:`.
fn header_version(body: &str) -> Option<String> {
    for l in body.lines().take(60) {
        let t = l.trim_start_matches(['#', ';', ' ']).trim();
        let lower = t.to_ascii_lowercase();
        for key in ["last updated", "last-modified:", "updated:", "last updated:"] {
            if let Some(rest) = lower.strip_prefix(key) {
                let v = t[t.len() - rest.len()..].trim_start_matches(':').trim_end_matches(['#', ' ']).trim();
                if !v.is_empty() {
                    return Some(v.to_string());
                }
            }
        }
    }
    None
}

/// TorDNSEL `exit-addresses`: stanzas of `ExitNode`, `Published`, `LastStatus` and
/// one or more `ExitAddress <ip> <date> <time>` lines. Every exit address counts
/// (older ones are still Tor exits seen recently).
pub fn parse_tor_exit_addresses(bytes: &[u8]) -> Result<ListData, ParseError> {
    let body = text(bytes)?;
    let mut ranges = Vec::new();
    let mut tally = Tally::default();
    let mut latest: Option<&str> = None;
    for (line, l) in data_lines(body) {
        let mut parts = l.split_whitespace();
        match parts.next() {
            Some("ExitAddress") => match parts.next().and_then(|s| s.parse::<IpAddr>().ok()) {
                Some(ip) => {
                    tally.good += 1;
                    ranges.push(IpRange::single(ip));
                }
                None => tally.bad(line, l),
            },
            Some("Published") => {
                let date = l["Published".len()..].trim();
                if latest.is_none_or(|p| date > p) {
                    latest = Some(date);
                }
            }
            Some("ExitNode" | "LastStatus") => {}
            _ => tally.bad(line, l),
        }
    }
    tally.finish("exit-addresses")?;
    Ok(ListData { ranges, version: latest.map(|d| format!("published {d}")) })
}

/// Splits one ThreatFox CSV line: quoted fields separated by `", "` (a space after
/// each comma), commas allowed inside quotes, doubled quotes as escapes.
fn split_quoted(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut field = String::new();
    let mut in_quotes = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if in_quotes {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    field.push('"');
                } else {
                    in_quotes = false;
                }
            } else {
                field.push(c);
            }
        } else if c == '"' {
            in_quotes = true;
        } else if c == ',' {
            out.push(field.trim().to_string());
            field.clear();
        } else {
            field.push(c);
        }
    }
    out.push(field.trim().to_string());
    out
}

/// ThreatFox CSV export. The header is a comment line (`# "first_seen_utc",...`),
/// read to find the `ioc_value`/`ioc_type` columns (newer exports add columns).
/// Only `ip:port` (and `ip`) IOCs give addresses; URLs, domains and hashes are
/// skipped as not applicable rather than as errors.
pub fn parse_threatfox_csv(bytes: &[u8]) -> Result<ListData, ParseError> {
    let body = text(bytes)?;
    let mut value_col = None;
    let mut type_col = None;
    let mut version = None;
    let mut ranges = Vec::new();
    let mut tally = Tally::default();
    let mut rows = 0usize;
    for (i, raw) in body.lines().enumerate() {
        let line = i + 1;
        let l = raw.trim();
        if l.is_empty() {
            continue;
        }
        if let Some(c) = l.strip_prefix('#') {
            let c = c.trim();
            if c.contains("\"ioc_value\"") || c.starts_with("\"first_seen") {
                let cols = split_quoted(c);
                value_col = cols.iter().position(|h| h == "ioc_value");
                type_col = cols.iter().position(|h| h == "ioc_type");
            } else if let Some(v) = c.strip_prefix("Last updated:") {
                version = Some(v.trim_end_matches(['#', ' ']).trim().to_string());
            }
            continue;
        }
        let (Some(vc), Some(tc)) = (value_col, type_col) else {
            return Err(ParseError::line(line, "data before the ThreatFox header line (# \"first_seen_utc\",...)"));
        };
        rows += 1;
        let cols = split_quoted(l);
        let (Some(value), Some(kind)) = (cols.get(vc), cols.get(tc)) else {
            tally.bad(line, l);
            continue;
        };
        match kind.as_str() {
            "ip:port" | "ip" => match parse_ip_port(value) {
                Some(ip) => {
                    tally.good += 1;
                    ranges.push(IpRange::single(ip));
                }
                None => tally.bad(line, l),
            },
            _ => tally.good += 1,
        }
    }
    if value_col.is_none() {
        return Err(ParseError::Format("no ThreatFox header line with ioc_value/ioc_type".into()));
    }
    if rows == 0 {
        return Err(ParseError::Empty("no ThreatFox rows".into()));
    }
    tally.finish("ThreatFox")?;
    Ok(ListData { ranges, version })
}

/// `1.2.3.4:443`, `[2001:db8::1]:443`, or a bare address.
fn parse_ip_port(v: &str) -> Option<IpAddr> {
    if let Ok(sa) = v.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    if let Ok(ip) = v.parse::<IpAddr>() {
        return Some(ip);
    }
    let (host, _) = v.rsplit_once(':')?;
    host.trim_matches(['[', ']']).parse().ok()
}

#[derive(Deserialize)]
struct DropJsonLine {
    #[serde(default)]
    cidr: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    timestamp: Option<u64>,
}

/// Spamhaus DROP: `drop.txt` (`<CIDR> ; SBL<id>`) or the NDJSON `drop_v4.json` /
/// `drop_v6.json` (one object per line, ending with a `"type":"metadata"` line).
pub fn parse_spamhaus_drop(bytes: &[u8]) -> Result<ListData, ParseError> {
    let body = text(bytes)?;
    if !body.trim_start().starts_with('{') {
        return parse_plain(bytes);
    }
    let mut ranges = Vec::new();
    let mut version = None;
    let mut tally = Tally::default();
    for (line, l) in data_lines(body) {
        let rec: DropJsonLine = match serde_json::from_str(l) {
            Ok(r) => r,
            Err(_) => {
                tally.bad(line, l);
                continue;
            }
        };
        if rec.kind.as_deref() == Some("metadata") {
            version = rec.timestamp.map(|t| t.to_string());
            continue;
        }
        match rec.cidr.as_deref().and_then(parse_ip_or_cidr) {
            Some(r) => {
                tally.good += 1;
                ranges.push(r);
            }
            None => tally.bad(line, l),
        }
    }
    tally.finish("Spamhaus DROP")?;
    Ok(ListData { ranges, version })
}

/// DShield `block.txt`: tab separated `Start End Netblock Attacks [Name Country
/// email]` after a comment banner and a `Start` header row; trailing columns are
/// often missing.
pub fn parse_dshield_block(bytes: &[u8]) -> Result<ListData, ParseError> {
    let body = text(bytes)?;
    let mut ranges = Vec::new();
    let mut tally = Tally::default();
    for (line, l) in data_lines(body) {
        if l.starts_with("Start") {
            continue;
        }
        let mut cols = l.split('\t');
        let start = cols.next().and_then(|s| s.trim().parse::<IpAddr>().ok());
        let end = cols.next().and_then(|s| s.trim().parse::<IpAddr>().ok());
        match start.zip(end).and_then(|(s, e)| IpRange::new(s, e)) {
            Some(r) => {
                tally.good += 1;
                ranges.push(r);
            }
            None => tally.bad(line, l),
        }
    }
    tally.finish("DShield block")?;
    Ok(ListData { ranges, version: header_version(body) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_split() {
        let v = split_quoted(r#""a", "b,c", "", "d""e""#);
        assert_eq!(v, vec!["a", "b,c", "", "d\"e"]);
        let v = split_quoted(r#""first_seen_utc","ioc_id","ioc_value""#);
        assert_eq!(v, vec!["first_seen_utc", "ioc_id", "ioc_value"]);
    }

    #[test]
    fn entries() {
        assert_eq!(parse_entry("1.2.3.4-1.2.3.5"), IpRange::new([1, 2, 3, 4].into(), [1, 2, 3, 5].into()));
        assert_eq!(parse_ip_port("[2001:db8::1]:80"), "2001:db8::1".parse().ok());
        assert_eq!(parse_ip_port("8.134.12.90:7777"), "8.134.12.90".parse().ok());
    }

    #[test]
    fn mostly_garbage_is_refused() {
        assert!(parse_plain(b"hello\nworld\n1.2.3.4\n").is_err());
        assert!(parse_plain(b"# only comments\n").is_err());
        let ok = parse_plain(b"1.2.3.4\nbad\n5.6.7.0/24").expect("lenient");
        assert_eq!(ok.ranges.len(), 2);
    }
}
