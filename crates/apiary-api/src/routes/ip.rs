//! Per-IP views.

use std::net::IpAddr;

use axum::extract::{Path, State};
use axum::Json;
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
pub(crate) async fn history(State(state): State<AppState>, Path(ip): Path<String>) -> Result<Json<Value>, ApiError> {
    let ip = parse_ip(&ip)?;
    let rows = state.read_now(|s| s.ip_history(ip))?;
    Ok(Json(history_json(rows)))
}

/// IP-history rows as HoneyDB sends them (counts as strings).
pub(crate) fn history_json(rows: Vec<apiary_store::IpHistoryRow>) -> Value {
    Value::Array(
        rows.into_iter()
            .map(|r| json!({"date": day_string(r.day), "service": r.service, "event_count": r.event_count.to_string()}))
            .collect(),
    )
}

/// `[{"date","remote_host"}]` rows (CVE sightings, senders of a payload value).
pub(crate) fn dated_hosts_json(rows: Vec<apiary_store::DatedHost>) -> Vec<Value> {
    rows.into_iter().map(|r| json!({"date": day_string(r.day), "remote_host": r.host})).collect()
}
