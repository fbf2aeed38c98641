//! Per-IP views.

use std::net::IpAddr;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::{json, Value};

use apiary_model::time::day_string;

use crate::{ApiError, AppState};

/// Parses an IP path segment; anything else is a 400 (spec §4).
pub(crate) fn parse_ip(s: &str) -> Result<IpAddr, ApiError> {
    s.parse::<IpAddr>()
        .map(apiary_model::canonical_ip)
        .map_err(|_| ApiError::BadRequest(format!("Invalid IP address {s:?}")))
}

/// `[{"date":"2019-04-11","service":"SSH","event_count":"3377"}]`, oldest first.
pub(crate) async fn history(State(state): State<AppState>, Path(ip): Path<String>) -> Result<Response, ApiError> {
    let ip = parse_ip(&ip)?;
    let rows = state.read_now(|s| s.ip_history(ip))?;
    Ok(Json(history_json(&rows)).into_response())
}

/// One IP-history row as HoneyDB sends it (the count as a string). Typed
/// rather than a `serde_json::Value`: `/ip/{ip}` is the most called answer,
/// and building maps of owned keys was a good part of its CPU.
#[derive(Serialize)]
pub(crate) struct HistoryRow<'a> {
    date: String,
    service: &'a str,
    event_count: String,
}

/// IP-history rows as HoneyDB sends them.
pub(crate) fn history_json(rows: &[apiary_store::IpHistoryRow]) -> Vec<HistoryRow<'_>> {
    rows.iter()
        .map(|r| HistoryRow { date: day_string(r.day), service: &r.service, event_count: r.event_count.to_string() })
        .collect()
}

/// `[{"date","remote_host"}]` rows (CVE sightings, senders of a payload value).
pub(crate) fn dated_hosts_json(rows: Vec<apiary_store::DatedHost>) -> Vec<Value> {
    rows.into_iter().map(|r| json!({"date": day_string(r.day), "remote_host": r.host})).collect()
}
