//! The Apiary server: authenticated sensor ingest and the HoneyDB-compatible
//! read API (`../shared/spec/honeydb-api.md`), over any [`apiary_store::Store`].
//!
//! Requests flow through [`auth`] (credentials, key kind, quota, usage
//! headers) into a handler in [`routes`], which calls the store on the
//! blocking pool and renders the answer. Every error is a JSON
//! `{"status": ...}` body ([`error::ApiError`]).

mod analyze;
mod auth;
mod bad_hosts_cache;
mod config;
mod credentials;
mod enrich;
mod error;
mod ip_answers;
mod render;
mod routes;
mod state;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use analyze::analyze_payloads;
pub use config::ApiConfig;
pub use enrich::enrich;
pub use error::ApiError;
pub use state::{AppState, IntelHandle};

use apiary_store::Store;

/// Serves the API on `listener` until `shutdown` resolves, then finishes
/// in-flight requests and flushes the store.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let store = state.store.clone();
    let maintenance = tokio::spawn(maintain(state.clone()));
    let app = routes::router(state).into_make_service_with_connect_info::<SocketAddr>();
    let result = axum::serve(listener, app).with_graceful_shutdown(shutdown).await;
    maintenance.abort();
    let flushed = tokio::task::spawn_blocking(move || store.flush()).await;
    if let Ok(Err(e)) = flushed {
        tracing::error!(error = %e, "flushing the store at shutdown failed");
    }
    result
}

/// Background upkeep: persist quota counters every second, prune raw
/// events past retention every ten minutes.
async fn maintain(state: AppState) {
    let mut flush = tokio::time::interval(Duration::from_secs(1));
    let mut prune = tokio::time::interval(Duration::from_secs(600));
    loop {
        tokio::select! {
            _ = flush.tick() => {
                let store = state.store.clone();
                if let Ok(Err(e)) = tokio::task::spawn_blocking(move || store.flush()).await {
                    tracing::warn!(error = %e, "persisting quota counters failed; will retry");
                }
            }
            _ = prune.tick() => {
                let store: Arc<dyn Store> = state.store.clone();
                let days = i64::from(state.config.retention_days);
                let before = apiary_model::time::day_number(apiary_model::time::now_ms()) - days;
                match tokio::task::spawn_blocking(move || store.prune_events(before)).await {
                    Ok(Ok(n)) if n > 0 => tracing::info!(deleted = n, "pruned raw events past retention"),
                    Ok(Err(e)) => tracing::warn!(error = %e, "pruning raw events failed"),
                    _ => {}
                }
            }
        }
    }
}
