//! IP context, lists, internet scanners and data centres (spec "IP context" and
//! "Lists: ipinfo, internet scanners, datacenters"), answered from the
//! IP-intelligence snapshot in memory plus the store's IP history.
//!
//! Missing sources: HoneyDB's fixed shapes (`/ipinfo`, `/internet-scanner`,
//! `/ip-context`, `/ip/{ip}/<view>`) name them in the `x-apiary-missing-sources`
//! header; `/ip/{ip}`, whose shape is ours, also has a `missing_sources` member.

use std::net::IpAddr;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::{json, Map, Value};

use super::cve::Sighting;
use super::ip::{history_json, HistoryRow};
use apiary_intel::intel::{STANDARD_CLOUD_PROVIDERS, STANDARD_THREAT_LISTS};
use apiary_intel::{Geo, Intel};

use super::ip::parse_ip;
use super::netinfo::{answer, geolocation_of, json_response, missing, missing_header, to_json, Lookup};
use crate::ip_answers::{Inputs, Rendered};
use crate::{ApiError, AppState};
use apiary_store::{CveSighting, IpHistoryRow};

/// Sources `/ipinfo` consults (bogons are built in, never missing).
const IPINFO_SOURCES: &[&str] = &["tor", "threat:"];

/// A 404 that says what was not found (the JSON error shape).
fn not_found(message: String) -> Response {
    (StatusCode::NOT_FOUND, Json(json!({ "status": message }))).into_response()
}

/// `is_<name>` with `-` as `_` (`et-compromised` → `is_et_compromised`).
fn is_key(name: &str) -> String {
    IsKey(name).to_string()
}

/// [`is_key`] written straight into the output, without a `String` per key.
struct IsKey<'a>(&'a str);

impl std::fmt::Display for IsKey<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("is_")?;
        for (i, part) in self.0.split('-').enumerate() {
            if i > 0 {
                f.write_str("_")?;
            }
            f.write_str(part)?;
        }
        Ok(())
    }
}

impl Serialize for IsKey<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// `/ipinfo/{ip}`: `{"is_bogon","is_tor","is_threat","threat_lists":{"is_sansip",...}}`.
/// The seven HoneyDB lists always appear (false when not loaded, see the
/// missing-sources header); operator-configured extra lists follow them.
#[derive(Serialize)]
struct IpInfo<'a> {
    is_bogon: bool,
    is_tor: bool,
    is_threat: bool,
    threat_lists: ThreatLists<'a>,
}

/// The `threat_lists` object: `is_<list>` for every standard and configured list.
struct ThreatLists<'a> {
    intel: &'a Intel,
    on: Vec<&'a str>,
}

impl Serialize for ThreatLists<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let extra = self.intel.threat_list_names().filter(|n| !STANDARD_THREAT_LISTS.contains(n));
        let mut map = s.serialize_map(None)?;
        for name in STANDARD_THREAT_LISTS.iter().copied().chain(extra) {
            map.serialize_entry(&IsKey(name), &self.on.contains(&name))?;
        }
        map.end()
    }
}

fn ipinfo_of(intel: &Intel, ip: IpAddr) -> IpInfo<'_> {
    let on = intel.threat_lists_of(ip);
    IpInfo {
        is_bogon: intel.is_bogon(ip),
        is_tor: intel.is_tor(ip),
        is_threat: !on.is_empty(),
        threat_lists: ThreatLists { intel, on },
    }
}

/// `/internet-scanner/info/{ip}`: the organisation, or only `{"internet_scanner":false}`.
#[derive(Serialize)]
struct ScannerAnswer<'a> {
    #[serde(flatten)]
    info: Option<ScannerOrg<'a>>,
    internet_scanner: bool,
}

#[derive(Serialize)]
struct ScannerOrg<'a> {
    domain: &'a str,
    name: &'a str,
    url: &'a str,
    published_ip_list: &'a [String],
}

fn scanner_info_of(intel: &Intel, ip: IpAddr) -> ScannerAnswer<'_> {
    let info = intel.scanner(ip).map(|hit| ScannerOrg {
        domain: &hit.info.domain,
        name: &hit.info.name,
        url: &hit.info.url,
        published_ip_list: &hit.info.published_ip_list,
    });
    ScannerAnswer { internet_scanner: info.is_some(), info }
}

/// The cloud provider of an address, for `/ip/{ip}`: `null` when none.
#[derive(Serialize)]
struct Datacenter<'a> {
    provider: &'a str,
    prefix: String,
    region: Option<&'a str>,
    service: Option<&'a str>,
}

fn datacenter_of(intel: &Intel, ip: IpAddr) -> Option<Datacenter<'_>> {
    intel.cloud(ip).map(|hit| Datacenter {
        provider: hit.provider,
        prefix: hit.prefix.net.to_string(),
        region: hit.prefix.region.as_deref(),
        service: hit.prefix.service.as_deref(),
    })
}

/// `/ip/{ip}`: every view in one object.
#[derive(Serialize)]
struct IpContext<'a> {
    ip: IpAddr,
    netinfo: Lookup<'a>,
    geo: Geo<'a>,
    threatinfo: IpInfo<'a>,
    internet_scanner: ScannerAnswer<'a>,
    datacenter: Option<Datacenter<'a>>,
    history: Vec<HistoryRow<'a>>,
    /// The CVEs this host was seen exploiting, by date.
    cve: Vec<Sighting<'a>>,
    missing_sources: &'a [String],
}

pub(crate) async fn ip(State(state): State<AppState>, Path(ip): Path<String>) -> Result<Response, ApiError> {
    let ip = parse_ip(&ip)?;
    let (history, cves) = state.read_now(|s| Ok((s.ip_history(ip)?, s.host_cves(ip)?)))?;
    let intel = state.intel();
    let inputs = Inputs { intel: &intel, history: &history, cves: &cves };
    let rendered = match state.ip_answers.get(ip, &inputs) {
        Some(rendered) => rendered,
        None => {
            let rendered = render_ip(ip, &intel, &history, &cves)?;
            state.ip_answers.insert(ip, &inputs, rendered.clone());
            rendered
        }
    };
    Ok(json_response(rendered.body, rendered.missing))
}

/// The `/ip/{ip}` answer from its three inputs (see `crate::ip_answers`).
fn render_ip(ip: IpAddr, intel: &Intel, history: &[IpHistoryRow], cves: &[CveSighting]) -> Result<Rendered, ApiError> {
    let missing = intel.missing();
    let geo = geolocation_of(intel, ip);
    let context = IpContext {
        ip,
        netinfo: Lookup::with_geo(intel, ip, geo),
        geo,
        threatinfo: ipinfo_of(intel, ip),
        internet_scanner: scanner_info_of(intel, ip),
        datacenter: datacenter_of(intel, ip),
        history: history_json(history),
        cve: super::cve::sightings_json(cves),
        missing_sources: missing,
    };
    Ok(Rendered { body: to_json(&context)?.into(), missing: missing_header(missing) })
}

pub(crate) async fn ip_geo(State(state): State<AppState>, Path(ip): Path<String>) -> Result<Response, ApiError> {
    super::netinfo::geolocation(State(state), Path(ip)).await
}

pub(crate) async fn ip_netinfo(State(state): State<AppState>, Path(ip): Path<String>) -> Result<Response, ApiError> {
    super::netinfo::lookup(State(state), Path(ip)).await
}

pub(crate) async fn ip_threatinfo(State(state): State<AppState>, Path(ip): Path<String>) -> Result<Response, ApiError> {
    ipinfo(State(state), Path(ip)).await
}

pub(crate) async fn ip_internet_scanner(
    State(state): State<AppState>,
    Path(ip): Path<String>,
) -> Result<Response, ApiError> {
    internet_scanner_info(State(state), Path(ip)).await
}

/// `/ip-context/{ip}` (legacy): `{"network_info","threat_info","internet_scanner":bool,"ip_history"}`.
pub(crate) async fn ip_context(State(state): State<AppState>, Path(ip): Path<String>) -> Result<Response, ApiError> {
    let ip = parse_ip(&ip)?;
    let rows = state.read_now(|s| s.ip_history(ip))?;
    let history = history_json(&rows);
    let intel = state.intel();
    #[derive(Serialize)]
    struct Legacy<'a> {
        network_info: Lookup<'a>,
        threat_info: IpInfo<'a>,
        internet_scanner: bool,
        ip_history: Vec<HistoryRow<'a>>,
    }
    let body = Legacy {
        network_info: Lookup::of(&intel, ip),
        threat_info: ipinfo_of(&intel, ip),
        internet_scanner: intel.scanner(ip).is_some(),
        ip_history: history,
    };
    Ok(answer(body, &missing(&intel, &["asn", "geo", "tor", "threat:", "scanners"])))
}

pub(crate) async fn ipinfo(State(state): State<AppState>, Path(ip): Path<String>) -> Result<Response, ApiError> {
    let ip = parse_ip(&ip)?;
    let intel = state.intel();
    Ok(answer(ipinfo_of(&intel, ip), &missing(&intel, IPINFO_SOURCES)))
}

/// `/ipinfo/{source}/{ip}` → `{"is_<source>": bool}`. `source` is one of HoneyDB's
/// nine or an operator-configured threat list; anything else is a 404.
pub(crate) async fn ipinfo_source(
    State(state): State<AppState>,
    Path((source, ip)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let intel = state.intel();
    let known = matches!(source.as_str(), "bogon" | "tor")
        || STANDARD_THREAT_LISTS.contains(&source.as_str())
        || intel.threat_list_names().any(|n| n == source);
    if !known {
        return Ok(not_found(format!(
            "Unknown ipinfo source {source:?}; expected one of bogon, tor, {}",
            STANDARD_THREAT_LISTS.join(", ")
        )));
    }
    let ip = parse_ip(&ip)?;
    let (value, miss) = match source.as_str() {
        "bogon" => (intel.is_bogon(ip), Vec::new()),
        "tor" => (intel.is_tor(ip), missing(&intel, &["tor"])),
        list => (intel.on_list(list, ip).unwrap_or(false), missing(&intel, &[&format!("threat:{list}")])),
    };
    let mut body = Map::new();
    body.insert(is_key(&source), Value::Bool(value));
    Ok(answer(body, &miss))
}

pub(crate) async fn internet_scanner(
    State(state): State<AppState>,
    Path(ip): Path<String>,
) -> Result<Response, ApiError> {
    let ip = parse_ip(&ip)?;
    let intel = state.intel();
    Ok(answer(json!({"internet_scanner": intel.scanner(ip).is_some()}), &missing(&intel, &["scanners"])))
}

pub(crate) async fn internet_scanner_info(
    State(state): State<AppState>,
    Path(ip): Path<String>,
) -> Result<Response, ApiError> {
    let ip = parse_ip(&ip)?;
    let intel = state.intel();
    Ok(answer(scanner_info_of(&intel, ip), &missing(&intel, &["scanners"])))
}

/// `/datacenter/{provider}` → `[{"prefix":"3.5.140.0/22","region":"ap-northeast-2","service":"AMAZON"}]`,
/// in the provider file's order, `region`/`service` `null` where the source has none.
/// A known provider whose feed is not loaded is `200 []` (header names it);
/// an unknown provider is a 404.
fn datacenter_answer(state: &AppState, provider: &str) -> Result<Response, ApiError> {
    let intel = state.intel();
    let loaded = intel.cloud_prefixes(provider);
    if loaded.is_none() && !STANDARD_CLOUD_PROVIDERS.contains(&provider) {
        return Ok(not_found(format!(
            "Unknown datacenter provider {provider:?}; expected one of {}",
            STANDARD_CLOUD_PROVIDERS.join(", ")
        )));
    }
    let rows: Vec<Value> = loaded
        .map(|c| {
            c.prefixes
                .iter()
                .map(|p| json!({"prefix": p.net.to_string(), "region": p.region, "service": p.service}))
                .collect()
        })
        .unwrap_or_default();
    Ok(answer(rows, &missing(&intel, &[&format!("cloud:{provider}")])))
}

pub(crate) async fn datacenter(
    State(state): State<AppState>,
    Path(provider): Path<String>,
) -> Result<Response, ApiError> {
    datacenter_answer(&state, &provider)
}

/// `/datacenter/azure/china` and the other sub-providers (literal slash).
pub(crate) async fn datacenter_sub(
    State(state): State<AppState>,
    Path((provider, sub)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    datacenter_answer(&state, &format!("{provider}/{sub}"))
}

/// `/attributions` (no credentials needed): what the data licences require us to show.
pub(crate) async fn attributions(State(state): State<AppState>) -> Json<Value> {
    let intel = state.intel();
    Json(json!({
        "attributions": ATTRIBUTIONS.iter().map(|(source, licence, text, url)| json!({
            "source": source, "license": licence, "attribution": text, "url": url,
        })).collect::<Vec<_>>(),
        "loaded_sources": intel.versions(),
    }))
}

/// `(source, licence, required attribution, URL)`.
pub const ATTRIBUTIONS: &[(&str, &str, &str, &str)] = &[
    ("DB-IP Lite", "CC BY 4.0", "IP Geolocation by DB-IP", "https://db-ip.com"),
    (
        "MaxMind GeoLite2",
        "GeoLite2 End User License Agreement",
        "This product includes GeoLite2 data created by MaxMind, available from https://www.maxmind.com.",
        "https://www.maxmind.com",
    ),
    (
        "ip-location-db",
        "per database: CC BY 4.0 (DB-IP), CC0 (geo-whois-asn-country), Routeviews/NRO terms (asn)",
        "IP data from ip-location-db by sapics",
        "https://github.com/sapics/ip-location-db",
    ),
    ("iptoasn", "Public Domain (PDDL)", "IP to ASN data from iptoasn.com", "https://iptoasn.com"),
    (
        "Emerging Threats compromised IPs",
        "BSD",
        "Copyright (c) 2003-2024, Emerging Threats. All rights reserved. Redistributed under the ET BSD licence.",
        "https://rules.emergingthreats.net",
    ),
    (
        "IANA special-purpose address registries",
        "IANA public registry",
        "IANA IPv4 and IPv6 Special-Purpose Address Registries",
        "https://www.iana.org/assignments/iana-ipv4-special-registry",
    ),
    (
        "MISP warning lists",
        "CC0 1.0",
        "Internet-scanner ranges from the MISP warning lists",
        "https://github.com/MISP/misp-warninglists",
    ),
];
