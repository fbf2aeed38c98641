//! Raw events of one day, paged by event id (spec "Sensor data").
//!
//! Event ids are assigned in commit order by the store's single writer, so
//! a page that ends at id N is followed by exactly the events with ids above
//! N: paging neither skips nor repeats, also while events keep arriving.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{json, Value};

use apiary_model::time::parse_day;
use apiary_store::{AccountId, Role};

use crate::auth::Caller;
use crate::render;
use crate::{ApiError, AppState};

const PAGE: usize = 1000;

fn day_param(q: &HashMap<String, String>) -> Result<i64, ApiError> {
    let raw = q
        .get("sensor-data-date")
        .ok_or_else(|| ApiError::BadRequest("Missing sensor-data-date (YYYY-MM-DD)".into()))?;
    parse_day(raw).ok_or_else(|| ApiError::BadRequest(format!("Invalid sensor-data-date {raw:?}; expected YYYY-MM-DD")))
}

fn from_id_param(q: &HashMap<String, String>) -> Result<i64, ApiError> {
    match q.get("from-id").map(|s| s.trim()) {
        None | Some("") => Ok(0),
        Some(s) => s
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| ApiError::BadRequest(format!("Invalid from-id {s:?}; expected a non-negative integer"))),
    }
}

fn require_all_sensors(caller: &Caller) -> Result<(), ApiError> {
    if caller.account().role == Role::AllSensors {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "Reading all sensors' data needs the all-sensors role; use /sensor-data/mydata for your own sensors".into(),
        ))
    }
}

async fn page(state: &AppState, q: HashMap<String, String>, owner: Option<AccountId>) -> Result<Response, ApiError> {
    let day = day_param(&q)?;
    let after = from_id_param(&q)?;
    let events = state.with_store(move |s| s.sensor_data(day, owner, after, PAGE)).await?;
    let mut out = Vec::with_capacity(events.len() * 300 + 64);
    out.extend_from_slice(b"[{\"data\":[");
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        render::sensor_event(&mut out, e);
    }
    out.extend_from_slice(b"]},{\"from_id\":");
    match events.last() {
        Some(last) => {
            out.push(b'"');
            out.extend_from_slice(last.id.to_string().as_bytes());
            out.push(b'"');
        }
        None => out.push(b'0'),
    }
    out.extend_from_slice(b"}]");
    Ok(([(header::CONTENT_TYPE, "application/json")], out).into_response())
}

pub(crate) async fn all(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    require_all_sensors(&caller)?;
    page(&state, q, None).await
}

pub(crate) async fn mine(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    page(&state, q, Some(caller.account().id)).await
}

async fn count(
    state: &AppState,
    q: HashMap<String, String>,
    owner: Option<AccountId>,
) -> Result<Json<Value>, ApiError> {
    let day = day_param(&q)?;
    let n = state.with_store(move |s| s.sensor_data_count(day, owner)).await?;
    Ok(Json(json!([{"sensor_data_count": n.to_string()}])))
}

pub(crate) async fn count_all(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    require_all_sensors(&caller)?;
    count(&state, q, None).await
}

pub(crate) async fn count_mine(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    count(&state, q, Some(caller.account().id)).await
}
