//! Cloud provider ranges, each from the provider's own published format: AWS
//! `ip-ranges.json`, Azure Service Tags, GCP `cloud.json`, IBM's documentation page
//! (Markdown), Oracle `public_ip_ranges.json` and Cloudflare `ips-v4`/`ips-v6`.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::error::ParseError;
use crate::parse::lists::parse_plain;
use crate::parse::text;

/// One published prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CloudPrefix {
    /// The prefix.
    pub net: IpNet,
    /// Region / scope / data center, where the source gives one.
    pub region: Option<String>,
    /// Service / tag, where the source gives one.
    pub service: Option<String>,
}

/// A provider's ranges.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CloudData {
    /// Provider key as used by `/datacenter/{provider}`: `aws`, `azure`,
    /// `azure/china`, `azure/gov`, `azure/germany`, `gcp`, `ibm`, `oracle`,
    /// `cloudflare`.
    pub provider: String,
    /// Version the file states (syncToken, changeNumber, timestamp).
    pub version: Option<String>,
    /// Prefixes in file order.
    pub prefixes: Vec<CloudPrefix>,
}

fn net(s: &str) -> Option<IpNet> {
    let s = s.trim();
    if s.contains('/') {
        s.parse::<IpNet>().ok().map(|n| n.trunc())
    } else {
        s.parse::<IpAddr>().ok().map(IpNet::from)
    }
}

fn opt(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

fn non_empty(provider: &str, version: Option<String>, prefixes: Vec<CloudPrefix>) -> Result<CloudData, ParseError> {
    if prefixes.is_empty() {
        return Err(ParseError::Empty(format!("no {provider} prefixes")));
    }
    Ok(CloudData { provider: provider.to_string(), version, prefixes })
}

#[derive(Deserialize)]
struct AwsFile {
    #[serde(rename = "syncToken", default)]
    sync_token: Option<String>,
    #[serde(rename = "createDate", default)]
    create_date: Option<String>,
    prefixes: Vec<AwsPrefix>,
    #[serde(default)]
    ipv6_prefixes: Vec<AwsPrefix>,
}

#[derive(Deserialize)]
struct AwsPrefix {
    #[serde(default)]
    ip_prefix: Option<String>,
    #[serde(default)]
    ipv6_prefix: Option<String>,
    #[serde(default)]
    region: String,
    #[serde(default)]
    service: String,
}

/// AWS `ip-ranges.json`.
pub fn parse_aws(bytes: &[u8]) -> Result<CloudData, ParseError> {
    let f: AwsFile = serde_json::from_str(text(bytes)?)?;
    let mut out = Vec::new();
    for p in f.prefixes.iter().chain(&f.ipv6_prefixes) {
        let Some(n) = p.ip_prefix.as_deref().or(p.ipv6_prefix.as_deref()).and_then(net) else {
            return Err(ParseError::Format("AWS prefix without a valid ip_prefix/ipv6_prefix".into()));
        };
        out.push(CloudPrefix { net: n, region: opt(&p.region), service: opt(&p.service) });
    }
    non_empty("aws", f.sync_token.or(f.create_date), out)
}

#[derive(Deserialize)]
struct AzureFile {
    #[serde(rename = "changeNumber", default)]
    change_number: Option<u64>,
    #[serde(default)]
    cloud: String,
    values: Vec<AzureValue>,
}

#[derive(Deserialize)]
struct AzureValue {
    name: String,
    properties: AzureProps,
}

#[derive(Deserialize)]
struct AzureProps {
    #[serde(default)]
    region: String,
    #[serde(rename = "systemService", default)]
    system_service: String,
    #[serde(rename = "addressPrefixes", default)]
    address_prefixes: Vec<String>,
}

/// Maps the file's `cloud` field to the provider key. Azure Germany (retired)
/// used the same format; its files said `AzureGermanCloud`.
pub fn azure_provider(cloud: &str) -> &'static str {
    match cloud.to_ascii_lowercase().as_str() {
        "china" | "azurechinacloud" => "azure/china",
        "azuregovernment" | "usgovernment" | "azureusgovernment" => "azure/gov",
        "germany" | "azuregermancloud" | "azuregermany" => "azure/germany",
        _ => "azure",
    }
}

/// Azure Service Tags (`ServiceTags_Public_*.json`, China, US Government, Germany).
/// The service is the tag's `systemService`, or the tag name before the dot
/// (`AzureCloud.eastus` → `AzureCloud`).
pub fn parse_azure(bytes: &[u8]) -> Result<CloudData, ParseError> {
    let f: AzureFile = serde_json::from_str(text(bytes)?)?;
    let provider = azure_provider(&f.cloud);
    let mut out = Vec::new();
    for v in &f.values {
        let service = opt(&v.properties.system_service).or_else(|| opt(v.name.split('.').next().unwrap_or(&v.name)));
        for p in &v.properties.address_prefixes {
            let n = net(p).ok_or_else(|| ParseError::Format(format!("bad prefix {p:?} in tag {}", v.name)))?;
            out.push(CloudPrefix { net: n, region: opt(&v.properties.region), service: service.clone() });
        }
    }
    non_empty(provider, f.change_number.map(|c| c.to_string()), out)
}

#[derive(Deserialize)]
struct GcpFile {
    #[serde(rename = "syncToken", default)]
    sync_token: Option<String>,
    prefixes: Vec<GcpPrefix>,
}

#[derive(Deserialize)]
struct GcpPrefix {
    #[serde(rename = "ipv4Prefix", default)]
    ipv4: Option<String>,
    #[serde(rename = "ipv6Prefix", default)]
    ipv6: Option<String>,
    #[serde(default)]
    service: String,
    #[serde(default)]
    scope: String,
}

/// Google Cloud `cloud.json`.
pub fn parse_gcp(bytes: &[u8]) -> Result<CloudData, ParseError> {
    let f: GcpFile = serde_json::from_str(text(bytes)?)?;
    let mut out = Vec::new();
    for p in &f.prefixes {
        let n = p
            .ipv4
            .as_deref()
            .or(p.ipv6.as_deref())
            .and_then(net)
            .ok_or_else(|| ParseError::Format("GCP prefix without ipv4Prefix/ipv6Prefix".into()))?;
        out.push(CloudPrefix { net: n, region: opt(&p.scope), service: opt(&p.service) });
    }
    non_empty("gcp", f.sync_token, out)
}

#[derive(Deserialize)]
struct OracleFile {
    #[serde(default)]
    last_updated_timestamp: Option<String>,
    regions: Vec<OracleRegion>,
}

#[derive(Deserialize)]
struct OracleRegion {
    region: String,
    cidrs: Vec<OracleCidr>,
}

#[derive(Deserialize)]
struct OracleCidr {
    cidr: String,
    #[serde(default)]
    tags: Vec<String>,
}

/// Oracle Cloud `public_ip_ranges.json`; the service is the tags joined (`OCI`,
/// `OSN`, `OBJECT_STORAGE`).
pub fn parse_oracle(bytes: &[u8]) -> Result<CloudData, ParseError> {
    let f: OracleFile = serde_json::from_str(text(bytes)?)?;
    let mut out = Vec::new();
    for r in &f.regions {
        for c in &r.cidrs {
            let n = net(&c.cidr).ok_or_else(|| ParseError::Format(format!("bad cidr {:?}", c.cidr)))?;
            out.push(CloudPrefix { net: n, region: opt(&r.region), service: opt(&c.tags.join(",")) });
        }
    }
    non_empty("oracle", f.last_updated_timestamp, out)
}

/// Cloudflare `ips-v4` / `ips-v6` (plain CIDR lists).
pub fn parse_cloudflare(bytes: &[u8]) -> Result<CloudData, ParseError> {
    let list = parse_plain(bytes)?;
    let mut out = Vec::new();
    for r in list.ranges {
        for n in r.to_cidrs() {
            out.push(CloudPrefix { net: n, region: None, service: None });
        }
    }
    non_empty("cloudflare", list.version, out)
}

/// Whether a prefix is private/shared space (IBM's page lists its back-end
/// networks, which say nothing about where Internet traffic comes from).
fn is_private(n: &IpNet) -> bool {
    match n {
        IpNet::V4(v) => {
            let a = v.network();
            let shared: ipnet::Ipv4Net = ipnet::Ipv4Net::new([100, 64, 0, 0].into(), 10).unwrap_or_default();
            a.is_private() || a.is_loopback() || a.is_link_local() || shared.contains(&a)
        }
        IpNet::V6(v) => (v.network().segments()[0] & 0xfe00) == 0xfc00,
    }
}

/// Removes `{{...}}` template tokens and `{: ...}` attribute lists.
fn strip_templates(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("{{") {
        out.push_str(&rest[..i]);
        match rest[i..].find("}}") {
            Some(j) => rest = &rest[i + j + 2..],
            None => {
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// IBM Cloud's "IP ranges" documentation page in Markdown: pipe tables mixed with
/// template tokens. Every table with an `IP range` column is read; the `Data
/// center` column gives the region and the section heading the service. Cells may
/// hold several CIDRs separated by `\n` markers. Private (back-end) space is left
/// out.
pub fn parse_ibm_markdown(bytes: &[u8]) -> Result<CloudData, ParseError> {
    let body = text(bytes)?;
    let mut out = Vec::new();
    let mut heading = String::new();
    let mut cols: Option<(usize, Option<usize>)> = None;
    let mut in_table = false;
    let mut version = None;
    for raw in body.lines() {
        let l = raw.trim();
        if let Some(v) = l.strip_prefix("lastupdated:") {
            version = Some(v.trim().trim_matches('"').to_string());
        }
        if !l.starts_with('|') {
            in_table = false;
            cols = None;
            if l.starts_with('#') {
                heading = strip_templates(l.trim_start_matches('#'));
            }
            continue;
        }
        let cells: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
        if !in_table {
            in_table = true;
            let find = |name: &str| cells.iter().position(|c| c.to_ascii_lowercase().contains(name));
            cols = find("ip range").map(|ip| (ip, find("data center")));
            continue;
        }
        if cells.iter().all(|c| c.chars().all(|ch| ch == '-' || ch == ':')) {
            continue;
        }
        let Some((ip_col, dc_col)) = cols else { continue };
        let Some(cell) = cells.get(ip_col) else { continue };
        let region = dc_col.and_then(|c| cells.get(c)).and_then(|s| opt(s));
        for token in cell.split(|c: char| c.is_whitespace() || c == ',').flat_map(|t| t.split("\\n")) {
            let Some(n) = net(token) else { continue };
            if is_private(&n) {
                continue;
            }
            out.push(CloudPrefix { net: n, region: region.clone(), service: opt(&heading) });
        }
    }
    non_empty("ibm", version, out)
}
