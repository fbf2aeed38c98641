//! `POST /api/sensor/events`: the sensors' intake (spec §5, ours to define).
//!
//! The body is a JSON array of events or NDJSON, optionally gzip-encoded.
//! Every event is validated on its own: bad ones are reported by index while
//! the good ones are stored. A 2xx (or the 422 for a partly bad batch) is
//! sent only after the stored events are durable. Re-sending a batch is safe:
//! events already stored are counted as duplicates, not stored twice.

use std::io::Read;
use std::net::SocketAddr;

use axum::body::{to_bytes, Body};
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::json;

use apiary_model::{parse_batch_on, BatchError};

use crate::auth::Caller;
use crate::{ApiError, AppState};

pub(crate) async fn events(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let limit = state.config.max_ingest_bytes;
    let raw = to_bytes(body, limit)
        .await
        .map_err(|_| ApiError::PayloadTooLarge(format!("Request body over the limit of {limit} bytes")))?;
    let gzip = match headers.get(header::CONTENT_ENCODING).map(|v| v.to_str().unwrap_or("").trim()) {
        None | Some("") | Some("identity") => false,
        Some(e) if e.eq_ignore_ascii_case("gzip") => true,
        Some(other) => return Err(ApiError::BadRequest(format!("Unsupported Content-Encoding {other:?}; use gzip"))),
    };
    let max_events = state.config.max_batch_events;
    let owner = caller.account().id;
    let store = state.store.clone();
    let intel = state.intel();
    let analysis = state.config.payload_analysis;
    let outcome = tokio::task::spawn_blocking(move || {
        // A plain body is parsed where it lies; only gzip needs a buffer.
        let inflated;
        let body: &[u8] = if gzip {
            inflated = gunzip(&raw, limit)?;
            &inflated
        } else {
            &raw
        };
        // On every core: with fewer senders than cores, a batch would
        // otherwise be parsed on one while the others wait.
        let batch = parse_batch_on(body, max_events, apiary_model::time::now_ms(), cores()).map_err(|e| match e {
            BatchError::TooMany { .. } => ApiError::PayloadTooLarge(e.to_string()),
            other => ApiError::BadRequest(other.to_string()),
        })?;
        let mut events = batch.events;
        crate::enrich(&intel, &mut events);
        if analysis {
            crate::analyze_payloads(&mut events);
        }
        let stored = store.ingest(owner, Some(peer.ip()), events).map_err(ApiError::from)?;
        Ok::<_, ApiError>((stored, batch.rejected))
    })
    .await
    .map_err(|e| ApiError::Internal(format!("ingest task failed: {e}")))?;
    let (stored, rejected) = outcome?;
    if rejected.is_empty() {
        return Ok(
            Json(json!({"status": "ok", "accepted": stored.accepted, "duplicates": stored.duplicates})).into_response()
        );
    }
    tracing::info!(account = owner, rejected = rejected.len(), "ingest batch had invalid events");
    let body = json!({
        "status": format!("{} of the batch's events were rejected; the others were stored", rejected.len()),
        "accepted": stored.accepted,
        "duplicates": stored.duplicates,
        "rejected": rejected,
    });
    Ok((StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response())
}

/// The cores this process may use, asked once: the answer comes from the
/// scheduler and cgroup files, which are not worth reading per request.
fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Decompresses at most `limit` bytes: a small gzip bomb must not become a
/// large allocation.
fn gunzip(raw: &[u8], limit: usize) -> Result<Vec<u8>, ApiError> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(raw)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| ApiError::BadRequest(format!("Body is not valid gzip: {e}")))?;
    if out.len() > limit {
        return Err(ApiError::PayloadTooLarge(format!("Decompressed body over the limit of {limit} bytes")));
    }
    Ok(out)
}
