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
    payload_analysis: Option<bool>,
    fsync: Option<bool>,
    intel: Option<IntelSection>,
}

/// `[intel]`: IP-intelligence feeds (see `apiary_intel::IntelConfig`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct IntelSection {
    /// Last good copies and status files (default `<data_dir>/intel`).
    state_dir: Option<PathBuf>,
    /// Refuse a copy with fewer than this share of the previous entries.
    min_ratio: Option<f64>,
    /// How often the server looks for feeds whose refresh is due (seconds).
    check_secs: Option<u64>,
    #[serde(default)]
    feeds: Vec<apiary_intel::FeedConfig>,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub listen: String,
    pub log_format: LogFormat,
    pub log_level: String,
    pub fsync: bool,
    pub api: apiary_api::ApiConfig,
    /// IP-intelligence feeds; relative feed paths are resolved against the
    /// config file's directory.
    pub intel: apiary_intel::IntelConfig,
    /// Seconds between the server's checks for due feed refreshes.
    pub intel_check_secs: u64,
}

impl Settings {
    pub fn load(global: &GlobalArgs) -> anyhow::Result<Settings> {
        let file = match &global.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        Ok(Self::build(file, global))
    }

    /// Settings for commands that read no server config (logging only).
    pub fn logging_only(global: &GlobalArgs) -> Settings {
        Self::build(FileConfig::default(), global)
    }

    fn build(file: FileConfig, global: &GlobalArgs) -> Settings {
        let defaults = apiary_api::ApiConfig::default();
        let data_dir = global.data_dir.clone().or(file.data_dir).unwrap_or_else(|| PathBuf::from("apiary-data"));
        let intel = file.intel.unwrap_or_default();
        // Relative feed paths are relative to the config file, not the working directory.
        let base = global.config.as_deref().and_then(Path::parent).map(Path::to_path_buf).unwrap_or_default();
        let feeds = intel
            .feeds
            .into_iter()
            .map(|mut f| {
                if let Some(p) = f.path.as_mut().filter(|p| p.is_relative()) {
                    *p = base.join(&*p);
                }
                f
            })
            .collect();
        Settings {
            intel: apiary_intel::IntelConfig {
                state_dir: intel.state_dir.unwrap_or_else(|| data_dir.join("intel")),
                min_ratio: intel.min_ratio.unwrap_or(0.5),
                feeds,
            },
            intel_check_secs: intel.check_secs.unwrap_or(60).max(1),
            data_dir,
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
                payload_analysis: file.payload_analysis.unwrap_or(defaults.payload_analysis),
            },
        }
    }

    pub fn store_options(&self) -> apiary_store::SqliteOptions {
        apiary_store::SqliteOptions { fsync: self.fsync, ..Default::default() }
    }

    /// The store tuned for a bulk load that nobody reads until it ends.
    pub fn bulk_load_store_options(&self) -> apiary_store::SqliteOptions {
        apiary_store::SqliteOptions { bulk_load: true, ..self.store_options() }
    }
}

fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("config file {}", path.display()))
}
