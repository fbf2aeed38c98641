//! Bad hosts, services, stats and nodes.

use std::collections::HashMap;
use std::net::IpAddr;

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use apiary_model::time::{month_from_key, month_key, now_ms, MS_PER_DAY};
use apiary_store::HostFilter;

use crate::auth::Caller;
use crate::{ApiError, AppState};

#[derive(Deserialize)]
pub(crate) struct FormatQuery {
    format: Option<String>,
}

async fn bad_hosts_answer(state: &AppState, filter: HostFilter, csv: bool) -> Result<Response, ApiError> {
    let rendered = state.bad_hosts.get(state, filter).await;
    if csv {
        // A client that asked for CSV must not get JSON in its place.
        let rendered = rendered.map_err(|e| ApiError::Unavailable {
            message: format!("The CSV cannot be produced right now: {e}"),
            retry_after_secs: 5,
        })?;
        return Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], rendered.csv()).into_response());
    }
    Ok(([(header::CONTENT_TYPE, "application/json")], rendered?.json.clone()).into_response())
}

pub(crate) async fn bad_hosts(
    State(state): State<AppState>,
    Query(q): Query<FormatQuery>,
) -> Result<Response, ApiError> {
    let csv = match q.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => return Err(ApiError::BadRequest(format!("Unknown format {other:?}; use json or csv"))),
    };
    bad_hosts_answer(&state, HostFilter::default(), csv).await
}

pub(crate) async fn bad_hosts_mine(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    bad_hosts_answer(&state, HostFilter { service: None, owner: Some(caller.account().id) }, false).await
}

fn service_filter(service: String) -> Result<String, ApiError> {
    if service.is_empty() || service.len() > apiary_model::MAX_SERVICE_LEN {
        return Err(ApiError::BadRequest("Invalid service name".into()));
    }
    Ok(service.to_ascii_lowercase())
}

pub(crate) async fn bad_hosts_service(
    State(state): State<AppState>,
    Path(service): Path<String>,
) -> Result<Response, ApiError> {
    let filter = HostFilter { service: Some(service_filter(service)?), owner: None };
    bad_hosts_answer(&state, filter, false).await
}

pub(crate) async fn bad_hosts_service_mine(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(service): Path<String>,
) -> Result<Response, ApiError> {
    let filter = HostFilter { service: Some(service_filter(service)?), owner: Some(caller.account().id) };
    bad_hosts_answer(&state, filter, false).await
}

pub(crate) async fn services(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let since = now_ms() - MS_PER_DAY;
    let rows = state.with_store(move |s| s.services(since)).await?;
    Ok(Json(Value::Array(
        rows.into_iter().map(|r| json!({"service": r.service, "count": r.count.to_string()})).collect(),
    )))
}

#[derive(Deserialize)]
pub(crate) struct StatsQuery {
    year: Option<String>,
    month: Option<String>,
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

pub(crate) async fn stats(State(state): State<AppState>, Query(q): Query<StatsQuery>) -> Result<Json<Value>, ApiError> {
    let month = match (q.year.as_deref(), q.month.as_deref()) {
        (None, None) => None,
        (Some(y), Some(m)) => {
            let year: i32 = y
                .parse()
                .ok()
                .filter(|y| (1970..=9999).contains(y))
                .ok_or_else(|| ApiError::BadRequest(format!("Invalid year {y:?}; expected a four-digit year")))?;
            let month: u32 = m
                .parse()
                .ok()
                .filter(|m| (1..=12).contains(m))
                .ok_or_else(|| ApiError::BadRequest(format!("Invalid month {m:?}; expected 1 to 12")))?;
            Some(month_key(year, month))
        }
        _ => return Err(ApiError::BadRequest("Give both year and month, or neither".into())),
    };
    let stats = state.with_store(move |s| s.month_stats(month)).await?;
    let key = stats.as_ref().map(|s| s.month).or(month).unwrap_or_else(|| apiary_model::time::month_number(now_ms()));
    let (year, m) = month_from_key(key);
    let mut top = Map::new();
    let (events, hosts) = match &stats {
        Some(s) => {
            for svc in &s.top_services {
                top.insert(svc.service.clone(), Value::String(svc.count.to_string()));
            }
            (s.total_events, s.total_remote_hosts)
        }
        None => (0, 0),
    };
    Ok(Json(json!({
        "period": format!("{} {year}", MONTHS[(m - 1) as usize]),
        "total_events": events.to_string(),
        "total_remote_hosts": hosts.to_string(),
        "top_services": top,
    })))
}

/// A sensor's country as HoneyDB names it, from IP-intelligence geolocation;
/// private addresses are `"Private IP"`, unknown ones `"Unknown"`.
fn node_country(ip: Option<IpAddr>, intel: &apiary_intel::Intel) -> String {
    match ip {
        Some(ip) if is_private(ip) => "Private IP".into(),
        Some(ip) => intel
            .geo(ip)
            .and_then(|g| g.country_name.or_else(|| g.country_iso.and_then(apiary_intel::country::country_name)))
            .unwrap_or("Unknown")
            .into(),
        None => "Unknown".into(),
    }
}

fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_private() || v4.is_loopback() || v4.is_link_local() || v4.is_unspecified(),
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || (v6.segments()[0] & 0xfe00) == 0xfc00
                || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

async fn nodes_answer(state: &AppState, owner: Option<i64>) -> Result<Json<Value>, ApiError> {
    let since = now_ms() - 3 * MS_PER_DAY;
    let rows = state.with_store(move |s| s.nodes(since, owner)).await?;
    // One node id reported under two accounts is still one sensor to show.
    let mut seen = HashMap::new();
    let intel = state.intel();
    let list = rows
        .into_iter()
        .filter(|n| seen.insert(n.node.clone(), ()).is_none())
        .map(|n| json!({"node": n.node, "country": node_country(n.public_ip, &intel)}))
        .collect();
    Ok(Json(Value::Array(list)))
}

pub(crate) async fn nodes(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    nodes_answer(&state, None).await
}

pub(crate) async fn nodes_mine(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Value>, ApiError> {
    nodes_answer(&state, Some(caller.account().id)).await
}

/// `[{"asn":14061,"entity":"DIGITALOCEAN-ASN","count":2828}]` (numbers):
/// distinct remote hosts per AS over whole UTC days, `days_back` days before
/// today through `last_back` days before today.
async fn asn_answer(state: &AppState, days_back: i64, last_back: i64) -> Result<Json<Value>, ApiError> {
    let today = apiary_model::time::day_number(now_ms());
    let (from, to) = (today - days_back, today - last_back);
    let rows = state.with_store(move |s| s.asn_hosts(from, to)).await?;
    let intel = state.intel();
    Ok(Json(Value::Array(
        rows.into_iter()
            .map(|r| json!({"asn": r.asn, "entity": intel.as_name(r.asn).unwrap_or(""), "count": r.hosts}))
            .collect(),
    )))
}

/// `/stats/asn` and `/asns-7d`: the last seven days, today included.
pub(crate) async fn asns_7d(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    asn_answer(&state, 6, 0).await
}

/// `/asns`: the previous UTC day.
pub(crate) async fn asns_previous_day(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    asn_answer(&state, 1, 1).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_country_comes_from_geolocation() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/fixtures/geo/maxmind/test-data/GeoIP2-City-Test.mmdb"
        );
        let db = apiary_intel::parse::mmdb::GeoDb::from_bytes(std::fs::read(path).expect("fixture")).expect("mmdb");
        let intel = apiary_intel::Intel::builder().geo(std::sync::Arc::new(db)).build();
        let ip = |s: &str| Some(s.parse::<IpAddr>().expect("ip"));
        assert_eq!(node_country(ip("81.2.69.160"), &intel), "United Kingdom");
        assert_eq!(node_country(ip("2001:480:10::1"), &intel), "United States");
        assert_eq!(node_country(ip("10.0.0.1"), &intel), "Private IP");
        assert_eq!(node_country(ip("fd00::1"), &intel), "Private IP");
        assert_eq!(node_country(ip("8.8.8.8"), &intel), "Unknown");
        assert_eq!(node_country(None, &intel), "Unknown");
        assert_eq!(node_country(ip("81.2.69.160"), &apiary_intel::Intel::default()), "Unknown");
    }
}
