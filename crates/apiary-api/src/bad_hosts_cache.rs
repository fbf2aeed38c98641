//! Rendered bad-hosts answers, shared by every request for a short while.
//!
//! The bad-hosts list is the most downloaded answer and the most expensive to
//! compute (a 24-hour aggregate over every host). It is computed once per
//! filter per refresh interval, rendered once as JSON (and once as CSV when
//! asked), and handed to every client as the same reference-counted bytes:
//! a hundred clients downloading it cost one copy of memory.
//!
//! A stale answer is still served while one refresh runs in the background,
//! so clients never queue behind the aggregate; an answer older than
//! [`MAX_STALE_FACTOR`] times the interval is not served, and callers wait
//! for the refresh instead.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use apiary_store::{BadHost, HostFilter};
use bytes::Bytes;

use crate::render;
use crate::{ApiError, AppState};

const MAX_STALE_FACTOR: u32 = 3;

pub(crate) struct Rendered {
    at: Instant,
    rows: Vec<BadHost>,
    pub json: Bytes,
    csv: OnceLock<Bytes>,
}

impl Rendered {
    pub fn csv(&self) -> Bytes {
        self.csv.get_or_init(|| Bytes::from(render::bad_hosts_csv(&self.rows))).clone()
    }
}

#[derive(Default)]
struct Slot {
    current: Option<Arc<Rendered>>,
    refreshing: bool,
}

pub(crate) struct BadHostsCache {
    ttl: Duration,
    slots: Mutex<HashMap<HostFilter, Arc<tokio::sync::Mutex<Slot>>>>,
}

impl BadHostsCache {
    pub fn new(ttl: Duration) -> Self {
        BadHostsCache { ttl, slots: Mutex::new(HashMap::new()) }
    }

    fn slot(&self, filter: &HostFilter) -> Arc<tokio::sync::Mutex<Slot>> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        // Forget filters nobody asked for lately, so per-account and
        // per-service entries cannot pile up.
        if slots.len() > 1024 {
            slots.retain(|_, s| Arc::strong_count(s) > 1);
        }
        slots.entry(filter.clone()).or_default().clone()
    }

    pub async fn get(&self, state: &AppState, filter: HostFilter) -> Result<Arc<Rendered>, ApiError> {
        let slot = self.slot(&filter);
        {
            let mut guard = slot.lock().await;
            if let Some(current) = guard.current.clone() {
                let age = current.at.elapsed();
                if age < self.ttl {
                    return Ok(current);
                }
                if age < self.ttl * MAX_STALE_FACTOR {
                    if !guard.refreshing {
                        guard.refreshing = true;
                        let (state, slot, filter) = (state.clone(), slot.clone(), filter.clone());
                        tokio::spawn(async move {
                            let fresh = compute(&state, filter).await;
                            let mut guard = slot.lock().await;
                            guard.refreshing = false;
                            match fresh {
                                Ok(r) => guard.current = Some(r),
                                Err(e) => tracing::warn!(error = %e, "refreshing bad hosts failed"),
                            }
                        });
                    }
                    return Ok(current);
                }
            }
        }
        // Nothing servable: compute while holding the slot, so concurrent
        // callers wait for this one computation instead of each running it.
        let mut guard = slot.lock().await;
        if let Some(current) = &guard.current {
            if current.at.elapsed() < self.ttl {
                return Ok(current.clone());
            }
        }
        let fresh = compute(state, filter).await?;
        guard.current = Some(fresh.clone());
        Ok(fresh)
    }
}

async fn compute(state: &AppState, filter: HostFilter) -> Result<Arc<Rendered>, ApiError> {
    let since = apiary_model::time::now_ms() - apiary_model::time::MS_PER_DAY;
    let at = Instant::now();
    state
        .with_store(move |s| {
            let rows = s.bad_hosts(&filter, since)?;
            let json = Bytes::from(render::bad_hosts_json(&rows));
            Ok(Arc::new(Rendered { at, rows, json, csv: OnceLock::new() }))
        })
        .await
}
