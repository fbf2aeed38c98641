mod account;
pub mod feeds;
mod ingest;
pub mod sensor;
mod serve;
mod up;

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;

use crate::cli::Command;
use crate::config::Settings;

pub fn run(command: Command, settings: Settings) -> anyhow::Result<ExitCode> {
    match command {
        Command::Up(args) => up::run(args, settings),
        Command::Serve(args) => serve::run(args, settings),
        Command::Account(cmd) => account::run(cmd, &settings),
        Command::Ingest(args) => ingest::run(args, &settings),
        Command::Feeds(cmd) => feeds::run(cmd, &settings),
        Command::Sensor(_) => unreachable!("handled in main before settings are loaded"),
    }
}

/// Opens the embedded store in the configured data directory.
pub fn open_store(settings: &Settings) -> anyhow::Result<Arc<apiary_store::SqliteStore>> {
    open_store_with(settings, settings.store_options())
}

pub fn open_store_with(
    settings: &Settings,
    options: apiary_store::SqliteOptions,
) -> anyhow::Result<Arc<apiary_store::SqliteStore>> {
    let store = apiary_store::SqliteStore::open(&settings.data_dir, options)
        .with_context(|| format!("opening the store in {}", settings.data_dir.display()))?;
    Ok(Arc::new(store))
}
