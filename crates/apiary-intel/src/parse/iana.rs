//! IANA IPv4/IPv6 Special-Purpose Address Registries (CSV export).
//!
//! Gotchas of the real export: footnote markers inside cells (`192.0.0.0/24 [2]`,
//! `False [1]`, `N/A [2]`), one cell with two CIDRs (`192.0.0.170/32,
//! 192.0.0.171/32`), multi-line quoted RFC cells, and deprecated rows whose
//! boolean columns are empty. Columns are found by header name.
//!
//! The registries are compiled into the binary ([`builtin`]) so bogon answers
//! never depend on a download.

use ipnet::IpNet;
use serde::Serialize;

use crate::error::ParseError;
use crate::parse::text;

/// The registry's "Globally Reachable" column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reachability {
    /// `True`: the block is routable on the Internet (e.g. AS112, PCP anycast).
    Yes,
    /// `False`: never legitimately seen on the Internet: a bogon.
    No,
    /// `N/A`: the property does not apply (Teredo, 6to4): treated as routable.
    NotApplicable,
    /// Empty (deprecated/terminated rows): inherits from the enclosing block.
    Unspecified,
}

/// One block of the registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpecialBlock {
    /// The block.
    pub net: IpNet,
    /// Registry name, outer quotes removed (`This network`).
    pub name: String,
    /// Globally Reachable.
    pub reachable: Reachability,
    /// Whether the row has a termination date (deprecated block).
    pub terminated: bool,
}

/// Removes footnote markers such as ` [2]`.
fn strip_footnotes(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut depth = 0;
    for c in s.chars() {
        match c {
            '[' => depth += 1,
            ']' if depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out.trim().to_string()
}

/// Parses one registry CSV (either family).
pub fn parse_special_registry(bytes: &[u8]) -> Result<Vec<SpecialBlock>, ParseError> {
    let body = text(bytes)?;
    let mut rdr = csv::ReaderBuilder::new().flexible(true).from_reader(body.as_bytes());
    let headers = rdr.headers()?.clone();
    let col = |name: &str| headers.iter().position(|h| h.trim().eq_ignore_ascii_case(name));
    let (Some(c_block), Some(c_name), Some(c_reach)) = (col("Address Block"), col("Name"), col("Globally Reachable"))
    else {
        return Err(ParseError::Format(
            "missing header columns (Address Block, Name, Globally Reachable): not an IANA special-purpose registry"
                .into(),
        ));
    };
    let c_term = col("Termination Date");
    let mut out = Vec::new();
    for (i, rec) in rdr.records().enumerate() {
        let rec = rec?;
        let line = i + 2;
        let name = rec.get(c_name).unwrap_or("").trim().trim_matches('"').to_string();
        let reach = strip_footnotes(rec.get(c_reach).unwrap_or(""));
        let reachable = match reach.to_ascii_lowercase().as_str() {
            "true" => Reachability::Yes,
            "false" => Reachability::No,
            "n/a" => Reachability::NotApplicable,
            "" => Reachability::Unspecified,
            other => return Err(ParseError::line(line, format!("unexpected Globally Reachable value {other:?}"))),
        };
        let terminated =
            c_term.and_then(|c| rec.get(c)).map(strip_footnotes).is_some_and(|t| !t.is_empty() && t != "N/A");
        for part in rec.get(c_block).unwrap_or("").split(',') {
            let cidr = strip_footnotes(part);
            if cidr.is_empty() {
                continue;
            }
            let net: IpNet = cidr.parse().map_err(|_| ParseError::line(line, format!("bad address block {cidr:?}")))?;
            out.push(SpecialBlock { net, name: name.clone(), reachable, terminated });
        }
    }
    if out.is_empty() {
        return Err(ParseError::Empty("no registry rows".into()));
    }
    Ok(out)
}

/// The built-in registries (IPv4 then IPv6), as shipped in `data/`.
pub fn builtin() -> Vec<SpecialBlock> {
    const V4: &str = include_str!("../../data/iana-ipv4-special-registry-1.csv");
    const V6: &str = include_str!("../../data/iana-ipv6-special-registry-1.csv");
    let mut v = Vec::new();
    for src in [V4, V6] {
        match parse_special_registry(src.as_bytes()) {
            Ok(b) => v.extend(b),
            // The data is compiled in and covered by tests; an error here is a
            // packaging bug, logged rather than taking the server down.
            Err(e) => tracing::error!("built-in IANA registry unreadable: {e}"),
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_registry_reads_all_rows_and_gotchas() {
        let b = builtin();
        // 25 IPv4 rows (one with two CIDRs) + 25 IPv6 rows.
        let v4 = b.iter().filter(|x| matches!(x.net, IpNet::V4(_))).count();
        let v6 = b.len() - v4;
        assert_eq!(v4, 26);
        assert_eq!(v6, 25);
        let find = |s: &str| b.iter().find(|x| x.net.to_string() == s).cloned().expect(s);
        assert_eq!(find("192.0.0.0/24").reachable, Reachability::No);
        assert_eq!(find("192.0.0.171/32").name, "NAT64/DNS64 Discovery");
        assert_eq!(find("127.0.0.0/8").reachable, Reachability::No);
        assert_eq!(find("0.0.0.0/8").name, "This network");
        let dep = find("192.88.99.0/24");
        assert_eq!(dep.reachable, Reachability::Unspecified);
        assert!(dep.terminated);
        assert_eq!(find("2002::/16").reachable, Reachability::NotApplicable);
        assert_eq!(find("2001::/32").reachable, Reachability::NotApplicable);
        assert_eq!(find("fc00::/7").reachable, Reachability::No);
        assert_eq!(find("255.255.255.255/32").reachable, Reachability::No);
    }
}
