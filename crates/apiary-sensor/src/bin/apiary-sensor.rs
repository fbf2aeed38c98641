//! The sensor alone, for honeypot hosts that should not carry the server:
//! `apiary-sensor CONFIG.toml` runs until SIGINT or SIGTERM, then shuts down
//! cleanly (queue synced, a last delivery tried). `apiary-sensor --services
//! CONFIG.toml` lists what would listen where. (`apiary sensor` in the main
//! binary does the same.) The crate's process-level tests (SIGKILL, server
//! outages) run this binary.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (list_only, path) = match args.as_slice() {
        [flag, path] if flag == "--services" => (true, path),
        [path] if !path.starts_with('-') => (false, path),
        _ => {
            eprintln!("usage: apiary-sensor [--services] CONFIG.toml");
            return ExitCode::from(2);
        }
    };
    match run(list_only, path).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("apiary-sensor: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(list_only: bool, path: &str) -> anyhow::Result<()> {
    let config = apiary_sensor::SensorConfig::from_file(path.as_ref())?;
    if list_only {
        for l in apiary_sensor::services(&config) {
            println!("{l}");
        }
        return Ok(());
    }
    let sensor = apiary_sensor::start(config).await?;
    // One line per listener on stdout, with the port actually bound, so a
    // supervisor (or a test) that asked for port 0 learns where to connect.
    for l in sensor.listeners() {
        println!("listening {} {} {}", l.kind.key(), l.protocol.as_str(), l.addr);
    }
    println!("ready");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    sensor.stop().await
}
