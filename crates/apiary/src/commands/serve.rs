//! `apiary serve`: the platform on the embedded store.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;

use crate::cli::ServeArgs;
use crate::config::Settings;

pub fn run(args: ServeArgs, mut settings: Settings) -> anyhow::Result<ExitCode> {
    if let Some(listen) = args.listen {
        settings.listen = listen;
    }
    if let Some(days) = args.retention_days {
        settings.api.retention_days = days;
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let result = runtime.block_on(serve(settings, shutdown_signal()));
    // A feed download still running on the blocking pool must not hold up exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    result?;
    Ok(ExitCode::SUCCESS)
}

/// Serves until `shutdown` resolves, then closes the store cleanly.
pub async fn serve(
    settings: Settings,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let store = super::open_store(&settings)?;
    let listener = tokio::net::TcpListener::bind(&settings.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, data_dir = %settings.data_dir.display(), "apiary serving; API at http://{addr}/api");
    let feeds = Arc::new(super::feeds::manager(&settings)?);
    // The last good copies first, so a restart answers with data at once.
    let loader = feeds.clone();
    for (feed, e) in tokio::task::spawn_blocking(move || loader.load_state()).await? {
        tracing::warn!(%feed, "saved copy of feed unreadable; waiting for a refresh: {e}");
    }
    let missing = feeds.intel().missing().to_vec();
    if !missing.is_empty() {
        tracing::info!(missing = %missing.join(","), "IP-intelligence sources not loaded (see `apiary feeds status`)");
    }
    let refresher = tokio::spawn(refresh_feeds(feeds.clone(), settings.intel_check_secs));
    let state = apiary_api::AppState::with_feeds(store.clone(), settings.api.clone(), feeds);
    let served = apiary_api::serve(listener, state, shutdown).await.context("serving");
    refresher.abort();
    served?;
    tokio::task::spawn_blocking(move || store.close()).await?.context("closing the store")?;
    tracing::info!("apiary stopped cleanly");
    Ok(())
}

/// Refreshes due feeds in the background, one at a time, on the blocking pool.
/// A failed refresh keeps the last good copy in service (the manager's rule).
async fn refresh_feeds(feeds: Arc<apiary_intel::FeedManager>, check_secs: u64) {
    if feeds.config().feeds.iter().all(|f| !f.enabled) {
        return;
    }
    loop {
        let manager = feeds.clone();
        let now = apiary_intel::feeds::now_secs();
        if let Err(e) = tokio::task::spawn_blocking(move || manager.refresh_due(now)).await {
            tracing::error!(error = %e, "feed refresh task failed");
        }
        tokio::time::sleep(std::time::Duration::from_secs(check_secs)).await;
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
