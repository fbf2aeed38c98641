//! CVE sightings (spec §4, "CVE sightings"): which hosts were seen sending a
//! payload that matched a CVE's signature, and which CVEs a host was seen
//! exploiting. Matching happens at ingest (`crate::analyze_payloads`).

use std::collections::HashMap;

use axum::extract::{OriginalUri, Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use apiary_model::time::day_string;

use super::ip::{dated_hosts_json, parse_ip};
use super::payload_history::{page, paged, probe};
use crate::{ApiError, AppState};

/// `CVE-YYYY-NNNN...`, case-insensitive; returned in canonical upper case.
fn parse_cve(s: &str) -> Result<String, ApiError> {
    let upper = s.to_ascii_uppercase();
    let valid = upper.strip_prefix("CVE-").and_then(|rest| rest.split_once('-')).is_some_and(|(year, number)| {
        year.len() == 4
            && year.bytes().all(|b| b.is_ascii_digit())
            && (4..=8).contains(&number.len())
            && number.bytes().all(|b| b.is_ascii_digit())
    });
    if valid {
        Ok(upper)
    } else {
        Err(ApiError::BadRequest(format!("Invalid CVE id {s:?}: expected the form CVE-2021-44228")))
    }
}

/// `/cve/{cve}`: `[{"date":"2026-11-20","remote_host":"1.2.3.4"}]`, by date.
pub(crate) async fn hosts(
    State(state): State<AppState>,
    Path(cve): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    OriginalUri(uri): OriginalUri,
) -> Result<Response, ApiError> {
    let cve = parse_cve(&cve)?;
    let page = page(&q)?;
    let rows = state.with_store(move |s| s.cve_hosts(&cve, probe(page))).await?;
    Ok(paged(&uri, page, dated_hosts_json(rows)))
}

/// One CVE sighting of a host, typed (see `super::ip::HistoryRow`).
#[derive(Serialize)]
pub(crate) struct Sighting<'a> {
    date: String,
    cve: &'a str,
}

pub(crate) fn sightings_json(rows: &[apiary_store::CveSighting]) -> Vec<Sighting<'_>> {
    rows.iter().map(|r| Sighting { date: day_string(r.day), cve: &r.cve }).collect()
}

/// `/cve/ip/{ip}` and `/ip/{ip}/cve`: the CVEs `ip` was seen exploiting,
/// `[{"date":"2026-11-20","cve":"CVE-2024-4577"}]`.
pub(crate) async fn of_ip(State(state): State<AppState>, Path(ip): Path<String>) -> Result<Response, ApiError> {
    let ip = parse_ip(&ip)?;
    let rows = state.read_now(|s| s.host_cves(ip))?;
    Ok(Json(sightings_json(&rows)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cve_ids() {
        assert_eq!(parse_cve("cve-2021-44228").unwrap(), "CVE-2021-44228");
        assert_eq!(parse_cve("CVE-2024-4577").unwrap(), "CVE-2024-4577");
        assert_eq!(parse_cve("CVE-2024-12345678").unwrap(), "CVE-2024-12345678");
        for bad in ["CVE-2021", "CVE-21-44228", "CVE-2021-123", "2021-44228", "CVE-2021-44228x", "CVE-2021-4422 8"] {
            assert!(parse_cve(bad).is_err(), "{bad}");
        }
    }
}
