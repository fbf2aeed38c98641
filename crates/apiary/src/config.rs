//! Settings: defaults, then the TOML file, then environment and flags.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

use crate::cli::GlobalArgs;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The config file. Every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    listen: Option<String>,
    log_format: Option<LogFormat>,
    log_level: Option<String>,
    retention_days: Option<u32>,
    bad_hosts_refresh_ms: Option<u64>,
    max_ingest_bytes: Option<usize>,
    max_batch_events: Option<usize>,
    uncounted: Option<Vec<String>>,
    fsync: Option<bool>,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub listen: String,
    pub log_format: LogFormat,
    pub log_level: String,
    pub fsync: bool,
    pub api: apiary_api::ApiConfig,
}

impl Settings {
    pub fn load(global: &GlobalArgs) -> anyhow::Result<Settings> {
        let file = match &global.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let defaults = apiary_api::ApiConfig::default();
        Ok(Settings {
            data_dir: global.data_dir.clone().or(file.data_dir).unwrap_or_else(|| PathBuf::from("apiary-data")),
            listen: file.listen.unwrap_or_else(|| "127.0.0.1:8080".into()),
            log_format: global.log_format.or(file.log_format).unwrap_or_default(),
            log_level: file.log_level.unwrap_or_else(|| "info".into()),
            fsync: file.fsync.unwrap_or(false),
            api: apiary_api::ApiConfig {
                retention_days: file.retention_days.unwrap_or(defaults.retention_days),
                bad_hosts_refresh: file
                    .bad_hosts_refresh_ms
                    .map(Duration::from_millis)
                    .unwrap_or(defaults.bad_hosts_refresh),
                max_ingest_bytes: file.max_ingest_bytes.unwrap_or(defaults.max_ingest_bytes),
                max_batch_events: file.max_batch_events.unwrap_or(defaults.max_batch_events),
                uncounted: file.uncounted.unwrap_or(defaults.uncounted),
            },
        })
    }

    pub fn store_options(&self) -> apiary_store::SqliteOptions {
        apiary_store::SqliteOptions { fsync: self.fsync, ..Default::default() }
    }
}

fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("config file {}", path.display()))
}
