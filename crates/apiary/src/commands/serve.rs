//! `apiary serve`: the platform on the embedded store.

use std::process::ExitCode;

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
    runtime.block_on(serve(settings))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let store = super::open_store(&settings)?;
    let listener = tokio::net::TcpListener::bind(&settings.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, data_dir = %settings.data_dir.display(), "apiary serving; API at http://{addr}/api");
    let state = apiary_api::AppState::new(store.clone(), settings.api.clone());
    apiary_api::serve(listener, state, shutdown_signal()).await.context("serving")?;
    tokio::task::spawn_blocking(move || store.close()).await?.context("closing the store")?;
    tracing::info!("apiary stopped cleanly");
    Ok(())
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
