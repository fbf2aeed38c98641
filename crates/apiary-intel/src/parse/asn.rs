//! ASN range tables: ip-location-db's CSV and iptoasn's TSV.
//!
//! Both give inclusive `start,end` ranges (not CIDRs). ip-location-db quotes
//! organisation names that contain a comma (`"Cloudflare, Inc."`), so it is read
//! with a real CSV reader; iptoasn is tab separated with the country code in the
//! fourth column and lists unrouted space with AS number 0, which is dropped (it
//! means "no ASN", not an AS called "Not routed").

use std::net::IpAddr;

use crate::error::ParseError;
use crate::net::IpRange;
use crate::parse::{data_lines, text, Tally};

/// One row of an ASN table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsnRow {
    /// Covered addresses.
    pub range: IpRange,
    /// AS number (never 0).
    pub asn: u32,
    /// AS organisation / description as the source spells it (may be empty).
    pub name: String,
    /// Registration country, where the source has it (iptoasn).
    pub country: Option<String>,
}

/// Parses ip-location-db `asn-ipv4.csv` / `asn-ipv6.csv` (no header:
/// `ip_range_start,ip_range_end,autonomous_system_number,autonomous_system_organization`).
pub fn parse_ip_location_db_csv(bytes: &[u8]) -> Result<Vec<AsnRow>, ParseError> {
    let body = text(bytes)?;
    let mut rdr = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(body.as_bytes());
    let mut rows = Vec::new();
    let mut tally = Tally::default();
    for (i, rec) in rdr.records().enumerate() {
        let line = i + 1;
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                tally.bad(line, &e.to_string());
                continue;
            }
        };
        let field = |n: usize| rec.get(n).map(str::trim).unwrap_or("");
        let range =
            field(0).parse::<IpAddr>().ok().zip(field(1).parse::<IpAddr>().ok()).and_then(|(s, e)| IpRange::new(s, e));
        let asn = field(2).trim_start_matches("AS").parse::<u32>().ok();
        match (range, asn) {
            (Some(range), Some(asn)) => {
                tally.good += 1;
                if asn != 0 {
                    rows.push(AsnRow { range, asn, name: field(3).to_string(), country: None });
                }
            }
            _ => tally.bad(line, &rec.iter().collect::<Vec<_>>().join(",")),
        }
    }
    tally.finish("ASN CSV")?;
    Ok(rows)
}

/// Parses iptoasn `ip2asn-v4.tsv` / `ip2asn-v6.tsv` / `ip2asn-combined.tsv`
/// (`range_start range_end AS_number country_code AS_description`).
pub fn parse_iptoasn_tsv(bytes: &[u8]) -> Result<Vec<AsnRow>, ParseError> {
    let body = text(bytes)?;
    let mut rows = Vec::new();
    let mut tally = Tally::default();
    for (line, l) in data_lines(body) {
        let cols: Vec<&str> = l.split('\t').collect();
        let range = cols
            .first()
            .and_then(|s| s.trim().parse::<IpAddr>().ok())
            .zip(cols.get(1).and_then(|s| s.trim().parse::<IpAddr>().ok()))
            .and_then(|(s, e)| IpRange::new(s, e));
        let asn = cols.get(2).and_then(|s| s.trim().parse::<u32>().ok());
        match (range, asn) {
            (Some(range), Some(asn)) => {
                tally.good += 1;
                if asn == 0 {
                    continue;
                }
                let country = cols
                    .get(3)
                    .map(|c| c.trim())
                    .filter(|c| c.len() == 2 && *c != "None" && *c != "??")
                    .map(str::to_string);
                let name = cols.get(4).map(|s| s.trim()).filter(|s| *s != "Not routed").unwrap_or("").to_string();
                rows.push(AsnRow { range, asn, name, country });
            }
            _ => tally.bad(line, l),
        }
    }
    tally.finish("iptoasn TSV")?;
    Ok(rows)
}
