//! netinfo helpers and the ASN views (spec "netinfo helpers"), answered from the
//! IP-intelligence snapshot in memory.
//!
//! HoneyDB's shapes are fixed here, so sources that are not loaded are named in
//! the `x-apiary-missing-sources` response header (comma-separated keys of
//! [`apiary_intel::Intel::missing`], e.g. `asn,geo`), never in the body.

use std::net::IpAddr;

use axum::extract::{Path, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use ipnet::IpNet;
use serde::Serialize;

use apiary_intel::{ip_hex, network_addresses, Geo, Intel};

use super::ip::parse_ip;
use crate::{ApiError, AppState};

/// Response header naming the sources an answer could not consult.
pub(crate) const MISSING_HEADER: HeaderName = HeaderName::from_static("x-apiary-missing-sources");

/// Most addresses `/netinfo/network-addresses` and `/ip/cidr` list.
pub(crate) const MAX_NETWORK_ADDRESSES: u128 = 65_536;

/// The missing sources among `keys`; a key ending in `:` matches a family
/// (`threat:` → every missing threat list).
pub(crate) fn missing(intel: &Intel, keys: &[&str]) -> Vec<String> {
    intel
        .missing()
        .iter()
        .filter(|m| keys.iter().any(|k| if k.ends_with(':') { m.starts_with(k) } else { m.as_str() == *k }))
        .cloned()
        .collect()
}

/// A JSON answer, with the missing-sources header when something was missing.
pub(crate) fn answer<T: Serialize>(body: T, missing: &[String]) -> Response {
    match to_json(&body) {
        Ok(json) => json_response(json, missing_header(missing)),
        Err(e) => e.into_response(),
    }
}

/// `body` as JSON bytes, in a buffer sized for a whole `/ip/{ip}` answer up
/// front: `Json` starts at 128 bytes and regrows several times per answer.
pub(crate) fn to_json<T: Serialize>(body: &T) -> Result<Vec<u8>, ApiError> {
    let mut buf = Vec::with_capacity(2048);
    serde_json::to_writer(&mut buf, body)
        .map_err(|e| ApiError::Internal(format!("encoding the answer failed: {e}")))?;
    Ok(buf)
}

/// A response of JSON bytes, with the missing-sources header if given.
pub(crate) fn json_response(json: impl Into<axum::body::Body>, missing: Option<HeaderValue>) -> Response {
    let mut response = ([(CONTENT_TYPE, HeaderValue::from_static("application/json"))], json.into()).into_response();
    if let Some(v) = missing {
        response.headers_mut().insert(MISSING_HEADER, v);
    }
    response
}

/// The `x-apiary-missing-sources` value naming `missing`, if any is.
pub(crate) fn missing_header(missing: &[String]) -> Option<HeaderValue> {
    if missing.is_empty() {
        return None;
    }
    HeaderValue::from_str(&missing.join(",")).ok()
}

/// `/netinfo/lookup/{ip}`: ASN, routed prefix and geolocation. Keys in HoneyDB's
/// (alphabetical) order; numbers are JSON numbers; `network_size` is exact even
/// for IPv6 prefixes beyond 2^64.
#[derive(Serialize)]
pub(crate) struct Lookup<'a> {
    as_name: Option<&'a str>,
    as_num: Option<u32>,
    city: Option<&'a str>,
    country_iso: Option<&'a str>,
    country_name: Option<&'a str>,
    ip: IpAddr,
    ip_hex: String,
    ip_version: u8,
    latitude: Option<f64>,
    longitude: Option<f64>,
    network: Option<String>,
    network_broadcast: Option<IpAddr>,
    network_hostmask: Option<IpAddr>,
    network_netmask: Option<IpAddr>,
    network_size: Option<u128>,
    postal_code: Option<&'a str>,
    region_iso: Option<&'a str>,
    region_name: Option<&'a str>,
}

const LOOKUP_SOURCES: &[&str] = &["asn", "geo"];

impl<'a> Lookup<'a> {
    pub(crate) fn of(intel: &'a Intel, ip: IpAddr) -> Lookup<'a> {
        Self::with_geo(intel, ip, geolocation_of(intel, ip))
    }

    /// The same, with the address's geolocation already looked up.
    pub(crate) fn with_geo(intel: &'a Intel, ip: IpAddr, geo: Geo<'a>) -> Lookup<'a> {
        let asn = intel.asn(ip);
        let net = asn.map(|a| a.netinfo());
        Lookup {
            as_name: asn.map(|a| a.name),
            as_num: asn.map(|a| a.asn),
            city: geo.city,
            country_iso: geo.country_iso,
            country_name: geo.country_name,
            ip,
            ip_hex: ip_hex(ip),
            ip_version: if ip.is_ipv4() { 4 } else { 6 },
            latitude: geo.latitude,
            longitude: geo.longitude,
            network: net.map(|n| n.network.to_string()),
            network_broadcast: net.map(|n| n.broadcast),
            network_hostmask: net.map(|n| n.hostmask),
            network_netmask: net.map(|n| n.netmask),
            network_size: net.map(|n| n.size),
            postal_code: geo.postal_code,
            region_iso: geo.region_iso,
            region_name: geo.region_name,
        }
    }
}

/// `/netinfo/geolocation/{ip}`: all keys always present, `null` when unknown.
pub(crate) fn geolocation_of(intel: &Intel, ip: IpAddr) -> Geo<'_> {
    intel.geo(ip).unwrap_or_default()
}

pub(crate) async fn lookup(State(state): State<AppState>, Path(ip): Path<String>) -> Result<Response, ApiError> {
    let ip = parse_ip(&ip)?;
    let intel = state.intel();
    Ok(answer(Lookup::of(&intel, ip), &missing(&intel, LOOKUP_SOURCES)))
}

pub(crate) async fn geolocation(State(state): State<AppState>, Path(ip): Path<String>) -> Result<Response, ApiError> {
    let ip = parse_ip(&ip)?;
    let intel = state.intel();
    Ok(answer(geolocation_of(&intel, ip), &missing(&intel, &["geo"])))
}

/// An AS number as given in a path: `15169`, `AS15169` or `as15169`.
pub(crate) fn parse_asn(s: &str) -> Result<u32, ApiError> {
    let digits = s.strip_prefix("AS").or_else(|| s.strip_prefix("as")).unwrap_or(s);
    digits
        .parse::<u32>()
        .ok()
        .filter(|_| !digits.starts_with('+'))
        .ok_or_else(|| ApiError::BadRequest(format!("Invalid AS number {s:?}; expected e.g. 15169 or AS15169")))
}

/// `{"as_name":"Google LLC","as_num":"15169"}`: `as_num` is a string here (spec);
/// `as_name` is the ASN source's own spelling, `null` for an unknown AS.
#[derive(Serialize)]
struct AsName<'a> {
    as_name: Option<&'a str>,
    as_num: String,
}

/// `{"as_num":15169,"count":2,"prefixes":[...]}` (numbers).
#[derive(Serialize)]
struct Prefixes {
    as_num: u32,
    count: usize,
    prefixes: Vec<String>,
}

pub(crate) async fn as_name(State(state): State<AppState>, Path(asn): Path<String>) -> Result<Response, ApiError> {
    let asn = parse_asn(&asn)?;
    let intel = state.intel();
    let body = AsName { as_name: intel.as_name(asn), as_num: asn.to_string() };
    Ok(answer(body, &missing(&intel, &["asn"])))
}

pub(crate) async fn prefixes(State(state): State<AppState>, Path(asn): Path<String>) -> Result<Response, ApiError> {
    let asn = parse_asn(&asn)?;
    let intel = state.intel();
    let prefixes: Vec<String> = intel.prefixes(asn).iter().map(IpNet::to_string).collect();
    let body = Prefixes { as_num: asn, count: prefixes.len(), prefixes };
    Ok(answer(body, &missing(&intel, &["asn"])))
}

/// `{"cidr":"8.8.8.8/24","network_addresses":[...],"network_size":256}`.
#[derive(Serialize)]
struct NetworkAddresses {
    cidr: String,
    network_addresses: Vec<IpAddr>,
    network_size: usize,
}

fn network_answer(cidr: String) -> Result<Response, ApiError> {
    let net: IpNet = if cidr.contains('/') {
        cidr.parse().map_err(|_| {
            ApiError::BadRequest(format!("Invalid CIDR {cidr:?}; expected e.g. 8.8.8.0/24 or 2001:db8::/120"))
        })?
    } else {
        IpNet::from(parse_ip(&cidr)?)
    };
    let addrs = network_addresses(net, MAX_NETWORK_ADDRESSES).map_err(|e| {
        ApiError::BadRequest(format!(
            "Network {} has {} addresses, more than the {} this endpoint lists; ask for a smaller range",
            e.net.trunc(),
            e.size,
            e.limit
        ))
    })?;
    Ok(Json(NetworkAddresses { cidr, network_size: addrs.len(), network_addresses: addrs }).into_response())
}

/// One segment: `8.8.8.0%2F24` (axum has already decoded it) or a bare address.
pub(crate) async fn network_addresses_one(Path(cidr): Path<String>) -> Result<Response, ApiError> {
    network_answer(cidr)
}

/// Two raw segments: `8.8.8.0/24`.
pub(crate) async fn network_addresses_two(Path((addr, len)): Path<(String, String)>) -> Result<Response, ApiError> {
    network_answer(format!("{addr}/{len}"))
}
