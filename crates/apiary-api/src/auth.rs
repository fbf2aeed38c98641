//! Authentication, key kinds and quota (spec §1–§2), as one middleware.
//!
//! Order matters: credentials first (401), then the key kind the route needs
//! (403), then quota (429, not counted), and only then the handler. Every
//! authenticated answer, errors included, carries the usage headers.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use apiary_model::time::{ms_until_next_month, now_ms};
use std::sync::Arc;

use apiary_store::{Account, AccountKeys, KeyKind, QuotaDecision};

use crate::{ApiError, AppState};

/// The authenticated caller, available to handlers as an extension.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    keys: Arc<AccountKeys>,
}

impl Caller {
    pub fn account(&self) -> &Account {
        &self.keys.account
    }
}

const API_ID: HeaderName = HeaderName::from_static("x-honeydb-apiid");
const API_KEY: HeaderName = HeaderName::from_static("x-honeydb-apikey");
const QPM_CONSUMED: HeaderName = HeaderName::from_static("honeydb-qpm-consumed");
const QPM_REMAINING: HeaderName = HeaderName::from_static("honeydb-qpm-remaining");
const QUOTA_WINDOW: HeaderName = HeaderName::from_static("honeydb-quota-window");

fn credential(headers: &HeaderMap, name: HeaderName) -> Option<&str> {
    let value = headers.get(name)?.to_str().ok()?.trim();
    (!value.is_empty() && value.len() <= 256).then_some(value)
}

/// Which key a route needs: the sensor key for submitting events, the
/// threat-information key for everything else.
fn required_kind(path: &str) -> KeyKind {
    if path == "/sensor" || path.starts_with("/sensor/") {
        KeyKind::Sensor
    } else {
        KeyKind::Threat
    }
}

fn usage_headers(headers: &mut HeaderMap, decision: QuotaDecision) {
    let (used, remaining) = match decision {
        QuotaDecision::Allowed { used, remaining } => (used, remaining),
        QuotaDecision::Refused { used, .. } => (used, Some(0)),
    };
    headers.insert(QPM_CONSUMED, HeaderValue::from(used));
    headers.insert(
        QPM_REMAINING,
        match remaining {
            Some(r) => HeaderValue::from(r),
            None => HeaderValue::from_static("unlimited"),
        },
    );
    headers.insert(QUOTA_WINDOW, HeaderValue::from_static("month"));
}

pub(crate) async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let (Some(api_id), Some(key)) = (credential(req.headers(), API_ID), credential(req.headers(), API_KEY)) else {
        return ApiError::Unauthorized.into_response();
    };
    let keys = match state.credentials.get(&state, api_id).await {
        Ok(keys) => keys,
        Err(e) => return e.into_response(),
    };
    let Some((keys, kind)) = keys.and_then(|k| k.check(key).map(|kind| (k, kind))) else {
        return ApiError::Unauthorized.into_response();
    };
    let account = &keys.account;
    let path = req.uri().path();
    let needed = required_kind(path);
    let group = path.trim_start_matches('/').split('/').next().unwrap_or("");
    let counted = needed == KeyKind::Threat && !state.config.uncounted.iter().any(|g| g == group);
    let now = now_ms();
    // Counting is in memory (the store loads a month's count once), so it
    // runs here rather than on the blocking pool.
    let counted_now =
        if counted { state.store.consume_quota(account, now) } else { state.store.peek_quota(account, now) };
    let decision = match counted_now {
        Ok(d) => d,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let mut response = if kind != needed {
        ApiError::Forbidden(match needed {
            KeyKind::Sensor => "This endpoint takes the sensor key, not the threat-information key".into(),
            KeyKind::Threat => "A sensor key cannot read the threat API; use the threat-information key".into(),
        })
        .into_response()
    } else if let QuotaDecision::Refused { limit, .. } = decision {
        let retry_after_secs = (ms_until_next_month(now) as u64).div_ceil(1000).max(1);
        ApiError::QuotaExceeded { limit, retry_after_secs }.into_response()
    } else {
        req.extensions_mut().insert(Caller { keys: keys.clone() });
        next.run(req).await
    };
    usage_headers(response.headers_mut(), decision);
    response
}
