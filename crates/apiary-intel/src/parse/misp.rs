//! MISP warning lists (`lists/<name>/list.json`): `name`, `description`,
//! `version`, `type`, `list`, `matching_attributes`. Only CIDR/IP entries are
//! used; the internet-scanner lists are of type `cidr`.

use serde::Deserialize;

use crate::error::ParseError;
use crate::net::{parse_ip_or_cidr, IpRange};
use crate::parse::text;

/// A parsed warning list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WarningList {
    /// The list's human name (`Shodan IP Ranges Used for Scanning`).
    pub name: String,
    /// Description.
    pub description: String,
    /// Version as stated (a date-like number or a counter).
    pub version: String,
    /// List type (`cidr`, `string`, ...).
    pub kind: String,
    /// Address entries.
    pub ranges: Vec<IpRange>,
}

#[derive(Deserialize)]
struct Raw {
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    version: serde_json::Value,
    #[serde(rename = "type", default)]
    kind: String,
    list: Vec<serde_json::Value>,
}

/// Parses one `list.json`. Non-address entries are skipped; a list with no
/// address at all is refused (it cannot be an IP list).
pub fn parse_warning_list(bytes: &[u8]) -> Result<WarningList, ParseError> {
    let raw: Raw = serde_json::from_str(text(bytes)?)?;
    let ranges: Vec<IpRange> = raw.list.iter().filter_map(|v| v.as_str()).filter_map(parse_ip_or_cidr).collect();
    if ranges.is_empty() {
        return Err(ParseError::Empty(format!("warning list {:?} has no IP/CIDR entries", raw.name)));
    }
    let version = match raw.version {
        serde_json::Value::String(s) => s,
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    };
    Ok(WarningList { name: raw.name, description: raw.description, version, kind: raw.kind, ranges })
}
