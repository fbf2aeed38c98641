//! The route table. Everything lives under `/api`, mirrored under the legacy
//! `/honeydb/api` prefix; unknown paths and methods get JSON 404/405.

mod cve;
mod ingest;
mod intel;
mod ip;
mod netinfo;
mod payload_history;
mod read;
mod sensor_data;

use axum::body::{to_bytes, Body};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{middleware, Json, Router};
use serde_json::json;

use crate::{auth, ApiError, AppState};

pub(crate) fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/bad-hosts", get(read::bad_hosts))
        .route("/bad-hosts/mydata", get(read::bad_hosts_mine))
        .route("/bad-hosts/{service}", get(read::bad_hosts_service))
        .route("/bad-hosts/{service}/mydata", get(read::bad_hosts_service_mine))
        .route("/services", get(read::services))
        .route("/stats", get(read::stats))
        .route("/stats/asn", get(read::asns_7d))
        .route("/asns", get(read::asns_previous_day))
        .route("/asns-7d", get(read::asns_7d))
        .route("/nodes", get(read::nodes))
        .route("/nodes/mydata", get(read::nodes_mine))
        .route("/sensor-data", get(sensor_data::all))
        .route("/sensor-data/mydata", get(sensor_data::mine))
        .route("/sensor-data/count", get(sensor_data::count_all))
        .route("/sensor-data/count/mydata", get(sensor_data::count_mine))
        .route("/ip-history/{ip}", get(ip::history))
        .route("/ip/{ip}/history", get(ip::history))
        .route("/twitter-threat-feed", get(retired))
        .route("/twitter-threat-feed/{ip}", get(retired))
        .route("/sensor/events", post(ingest::events))
        // IP intelligence (routes/netinfo.rs, routes/intel.rs).
        .route("/netinfo/lookup/{ip}", get(netinfo::lookup))
        .route("/lookup/{ip}", get(netinfo::lookup))
        .route("/netinfo/geolocation/{ip}", get(netinfo::geolocation))
        .route("/netinfo/as-name/{asn}", get(netinfo::as_name))
        .route("/netinfo/prefixes/{asn}", get(netinfo::prefixes))
        .route("/netinfo/network-addresses/{cidr}", get(netinfo::network_addresses_one))
        .route("/netinfo/network-addresses/{addr}/{len}", get(netinfo::network_addresses_two))
        .route("/asn/{asn}", get(netinfo::as_name))
        .route("/asn/{asn}/prefixes", get(netinfo::prefixes))
        .route("/ip/cidr/{cidr}", get(netinfo::network_addresses_one))
        .route("/ip/cidr/{addr}/{len}", get(netinfo::network_addresses_two))
        .route("/ip/{ip}", get(intel::ip))
        .route("/ip/{ip}/geo", get(intel::ip_geo))
        .route("/ip/{ip}/netinfo", get(intel::ip_netinfo))
        .route("/ip/{ip}/threatinfo", get(intel::ip_threatinfo))
        .route("/ip/{ip}/internet-scanner", get(intel::ip_internet_scanner))
        .route("/ip/{ip}/cve", get(cve::of_ip))
        .route("/cve/ip/{ip}", get(cve::of_ip))
        .route("/cve/{cve}", get(cve::hosts))
        .route("/payload-history/{segment}", get(payload_history::one))
        .route("/payload-history/{segment}/{second}", get(payload_history::two))
        .route("/payload-history/{hash}/{literal}/{year}", get(payload_history::value_hosts))
        .route("/ip-context/{ip}", get(intel::ip_context))
        .route("/ipinfo/{ip}", get(intel::ipinfo))
        .route("/ipinfo/{source}/{ip}", get(intel::ipinfo_source))
        .route("/internet-scanner/{ip}", get(intel::internet_scanner))
        .route("/internet-scanner/info/{ip}", get(intel::internet_scanner_info))
        .route("/datacenter/{provider}", get(intel::datacenter))
        .route("/datacenter/{provider}/{sub}", get(intel::datacenter_sub))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::authenticate))
        .route("/health", get(health))
        .route("/attributions", get(intel::attributions))
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .with_state(state);
    Router::new()
        .route("/health", get(health))
        .nest("/api", api.clone())
        .nest("/honeydb/api", api)
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(middleware::map_response(json_errors))
}

/// Turns the plain-text rejections of axum's extractors (a malformed query
/// string, a bad path segment, an oversized body) into the JSON error body
/// every client expects.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = to_bytes(body, 64 * 1024).await.unwrap_or_default();
    let mut message = String::from_utf8_lossy(&text).trim().to_owned();
    if message.is_empty() {
        message = status.canonical_reason().unwrap_or("Error").to_owned();
    }
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(json!({ "status": message }).to_string()))
}

async fn health() -> impl IntoResponse {
    (StatusCode::OK, Json(json!({"status": "ok"})))
}

/// Routes HoneyDB retired but old clients still call: an empty list.
async fn retired() -> impl IntoResponse {
    Json(json!([]))
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
