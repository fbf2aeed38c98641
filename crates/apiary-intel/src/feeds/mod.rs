//! The feed manager: loads, validates, persists and swaps in feed data.
//!
//! Guarantees, in order of importance:
//! 1. Good data is never replaced by bad: a new copy must parse, must not be an
//!    error page or empty, and must not collapse in entry count versus the last
//!    good copy; otherwise the old copy keeps serving and the status says why.
//! 2. A restart serves immediately: every accepted copy is written to the state
//!    directory (atomically, temp file + rename) with a status file, and
//!    [`FeedManager::load_state`] rebuilds from those before any refresh.
//! 3. Swaps are atomic: lookups read an `Arc<Intel>` from an [`ArcSwap`]; a
//!    rebuild publishes a complete new snapshot in one store.

mod config;
mod data;
mod fetch;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

pub use config::{FeedConfig, FeedKind, IntelConfig};
pub use data::{parse_feed, FeedData};
pub use fetch::{Fetcher, FileFetcher, Source};

use crate::error::FeedError;
use crate::intel::{Intel, IntelBuilder};

/// The state of a feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedState {
    /// Never loaded: no data.
    Missing,
    /// Serving data; the last attempt succeeded.
    Ok,
    /// Serving the last good copy; the last attempt failed (see `last_error`).
    Stale,
}

/// What `apiary feeds status` shows for one feed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedStatus {
    /// Feed name.
    pub name: String,
    /// Format.
    pub kind: FeedKind,
    /// Path or URL.
    pub source: String,
    /// State.
    pub state: FeedState,
    /// Version of the copy in service (stated by the data, or a content hash).
    pub version: Option<String>,
    /// Entries of the copy in service.
    pub entries: usize,
    /// Size in bytes of the copy in service.
    pub bytes: u64,
    /// When the copy in service was accepted (Unix seconds).
    pub updated_at: Option<u64>,
    /// When a refresh was last tried (Unix seconds).
    pub last_attempt: Option<u64>,
    /// Why the last attempt failed, if it did.
    pub last_error: Option<String>,
    /// Refresh interval in seconds.
    pub refresh_secs: u64,
}

impl FeedStatus {
    /// The status of a configured feed that has never been loaded.
    pub fn new(cfg: &FeedConfig) -> Self {
        FeedStatus {
            name: cfg.name.clone(),
            kind: cfg.kind,
            source: cfg.source_ref(),
            state: FeedState::Missing,
            version: None,
            entries: 0,
            bytes: 0,
            updated_at: None,
            last_attempt: None,
            last_error: None,
            refresh_secs: cfg.refresh_secs,
        }
    }

    /// Whether a refresh is due at `now` (Unix seconds).
    pub fn due(&self, now: u64) -> bool {
        match self.last_attempt {
            None => true,
            Some(t) => now >= t.saturating_add(self.refresh_secs),
        }
    }
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[derive(Default)]
struct Inner {
    data: BTreeMap<String, FeedData>,
    status: BTreeMap<String, FeedStatus>,
}

/// Loads, refreshes and publishes the intelligence.
pub struct FeedManager {
    config: IntelConfig,
    fetcher: Box<dyn Fetcher>,
    intel: Arc<ArcSwap<Intel>>,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for FeedManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedManager").field("config", &self.config).finish_non_exhaustive()
    }
}

impl FeedManager {
    /// A manager for `config`, fetching through `fetcher`. Creates the state
    /// directory and checks feed names; loads nothing yet (see [`Self::load_state`]).
    /// Until something is loaded, [`Self::intel`] serves the built-in bogons only.
    pub fn new(config: IntelConfig, fetcher: Box<dyn Fetcher>) -> Result<Self, FeedError> {
        let mut seen = std::collections::HashSet::new();
        for f in &config.feeds {
            if !f.valid_name() {
                return Err(FeedError::Config {
                    name: f.name.clone(),
                    message: "name must be non-empty and use only letters, digits, '.', '_' and '-'".into(),
                });
            }
            if !seen.insert(f.name.clone()) {
                return Err(FeedError::Config { name: f.name.clone(), message: "duplicate feed name".into() });
            }
            if f.path.is_none() && f.url.is_none() {
                return Err(FeedError::Config { name: f.name.clone(), message: "needs a path or a url".into() });
            }
        }
        fs::create_dir_all(&config.state_dir)
            .map_err(|e| FeedError::State { path: config.state_dir.clone(), message: e.to_string() })?;
        let mut inner = Inner::default();
        for f in &config.feeds {
            inner.status.insert(f.name.clone(), FeedStatus::new(f));
        }
        Ok(FeedManager {
            config,
            fetcher,
            intel: Arc::new(ArcSwap::from_pointee(Intel::default())),
            inner: Mutex::new(inner),
        })
    }

    /// The current snapshot. Cheap; hold it for the duration of one request.
    pub fn intel(&self) -> Arc<Intel> {
        self.intel.load_full()
    }

    /// The swappable handle, for callers that keep their own reference.
    pub fn handle(&self) -> Arc<ArcSwap<Intel>> {
        self.intel.clone()
    }

    /// The configuration.
    pub fn config(&self) -> &IntelConfig {
        &self.config
    }

    /// Status of every configured feed, in configuration order.
    pub fn status(&self) -> Vec<FeedStatus> {
        let inner = self.lock();
        self.config.feeds.iter().filter_map(|f| inner.status.get(&f.name).cloned()).collect()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave half-written data (every
        // update is a whole-value insert), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn feed(&self, name: &str) -> Result<&FeedConfig, FeedError> {
        self.config.feeds.iter().find(|f| f.name == name).ok_or_else(|| FeedError::UnknownFeed(name.to_string()))
    }

    fn data_path(&self, name: &str) -> PathBuf {
        self.config.state_dir.join(format!("{name}.data"))
    }

    fn status_path(&self, name: &str) -> PathBuf {
        self.config.state_dir.join(format!("{name}.status.json"))
    }

    /// Loads the last good copies from the state directory and publishes them, so
    /// a restarted server answers at once. Returns the feeds whose saved copy could
    /// not be read (they stay missing until a refresh succeeds).
    pub fn load_state(&self) -> Vec<(String, FeedError)> {
        let mut errors = Vec::new();
        {
            let mut inner = self.lock();
            for cfg in self.config.feeds.iter().filter(|f| f.enabled) {
                let path = self.data_path(&cfg.name);
                let Ok(bytes) = fs::read(&path) else { continue };
                let size = bytes.len() as u64;
                let saved: Option<FeedStatus> =
                    fs::read(self.status_path(&cfg.name)).ok().and_then(|b| serde_json::from_slice(&b).ok());
                match parse_feed(cfg, bytes.clone()) {
                    Ok(d) => {
                        let mut st = saved.unwrap_or_else(|| FeedStatus::new(cfg));
                        st.source = cfg.source_ref();
                        st.kind = cfg.kind;
                        st.refresh_secs = cfg.refresh_secs;
                        st.entries = d.entries();
                        st.bytes = size;
                        st.version = Some(data::version_of(&d, &bytes));
                        if st.state == FeedState::Missing {
                            st.state = FeedState::Ok;
                        }
                        inner.data.insert(cfg.name.clone(), d);
                        inner.status.insert(cfg.name.clone(), st);
                    }
                    Err(e) => {
                        tracing::warn!(feed = %cfg.name, "saved copy unreadable: {e}");
                        errors.push((cfg.name.clone(), FeedError::Rejected { name: cfg.name.clone(), reason: e }));
                    }
                }
            }
            self.publish(&inner);
        }
        errors
    }

    /// Fetches, validates and (if good) swaps in one feed.
    pub fn refresh(&self, name: &str) -> Result<FeedStatus, FeedError> {
        let cfg = self.feed(name)?.clone();
        let source = match (&cfg.path, &cfg.url) {
            (Some(p), _) => Source::Path(p),
            (None, Some(u)) => Source::Url(u),
            (None, None) => {
                return Err(FeedError::Config { name: cfg.name.clone(), message: "needs a path or a url".into() })
            }
        };
        let fetched = self.fetcher.fetch(source);
        match fetched {
            Ok(bytes) => self.ingest(name, bytes),
            Err(message) => {
                let err = FeedError::Fetch { source_ref: cfg.source_ref(), message };
                self.record_failure(&cfg, &err);
                Err(err)
            }
        }
    }

    /// Validates and (if good) swaps in `bytes` as the new copy of feed `name`.
    /// This is the whole acceptance path of [`Self::refresh`] minus the fetch, for
    /// callers that obtained the bytes themselves (a CLI download with progress).
    pub fn ingest(&self, name: &str, bytes: Vec<u8>) -> Result<FeedStatus, FeedError> {
        let cfg = self.feed(name)?.clone();
        let size = bytes.len() as u64;
        let parsed = match parse_feed(&cfg, bytes.clone()) {
            Ok(d) => d,
            Err(reason) => {
                let err = FeedError::Rejected { name: cfg.name.clone(), reason };
                self.record_failure(&cfg, &err);
                return Err(err);
            }
        };
        let min_ratio = cfg.min_ratio.unwrap_or(self.config.min_ratio);
        let mut inner = self.lock();
        if let Some(prev) = inner.data.get(&cfg.name) {
            let previous = prev.entries();
            let new = parsed.entries();
            if previous > 0 && (new as f64) < (previous as f64) * min_ratio {
                drop(inner);
                let err = FeedError::Collapse { name: cfg.name.clone(), previous, new, min_ratio };
                self.record_failure(&cfg, &err);
                return Err(err);
            }
        }
        // Persist before publishing: what is served is always recoverable on restart.
        if let Err(e) = write_atomic(&self.data_path(&cfg.name), &bytes) {
            drop(inner);
            self.record_failure(&cfg, &e);
            return Err(e);
        }
        let now = now_secs();
        let st = FeedStatus {
            name: cfg.name.clone(),
            kind: cfg.kind,
            source: cfg.source_ref(),
            state: FeedState::Ok,
            version: Some(data::version_of(&parsed, &bytes)),
            entries: parsed.entries(),
            bytes: size,
            updated_at: Some(now),
            last_attempt: Some(now),
            last_error: None,
            refresh_secs: cfg.refresh_secs,
        };
        self.save_status(&st);
        inner.data.insert(cfg.name.clone(), parsed);
        inner.status.insert(cfg.name.clone(), st.clone());
        self.publish(&inner);
        tracing::info!(feed = %cfg.name, entries = st.entries, "feed updated");
        Ok(st)
    }

    /// Refreshes every enabled feed; one failure does not stop the others.
    pub fn refresh_all(&self) -> Vec<(String, Result<FeedStatus, FeedError>)> {
        self.config.feeds.iter().filter(|f| f.enabled).map(|f| (f.name.clone(), self.refresh(&f.name))).collect()
    }

    /// Refreshes the enabled feeds whose interval has elapsed at `now`.
    pub fn refresh_due(&self, now: u64) -> Vec<(String, Result<FeedStatus, FeedError>)> {
        let due: Vec<String> = {
            let inner = self.lock();
            self.config
                .feeds
                .iter()
                .filter(|f| f.enabled && inner.status.get(&f.name).is_none_or(|s| s.due(now)))
                .map(|f| f.name.clone())
                .collect()
        };
        due.into_iter().map(|n| (n.clone(), self.refresh(&n))).collect()
    }

    fn record_failure(&self, cfg: &FeedConfig, err: &FeedError) {
        tracing::warn!(feed = %cfg.name, "feed refresh failed: {err}");
        let mut inner = self.lock();
        let has_data = inner.data.contains_key(&cfg.name);
        let st = inner.status.entry(cfg.name.clone()).or_insert_with(|| FeedStatus::new(cfg));
        st.last_attempt = Some(now_secs());
        st.last_error = Some(err.to_string());
        st.state = if has_data { FeedState::Stale } else { FeedState::Missing };
        let st = st.clone();
        drop(inner);
        self.save_status(&st);
    }

    fn save_status(&self, st: &FeedStatus) {
        match serde_json::to_vec_pretty(st) {
            Ok(b) => {
                if let Err(e) = write_atomic(&self.status_path(&st.name), &b) {
                    tracing::warn!(feed = %st.name, "cannot save status: {e}");
                }
            }
            Err(e) => tracing::warn!(feed = %st.name, "cannot encode status: {e}"),
        }
    }

    /// Builds a new snapshot from all loaded data and swaps it in.
    fn publish(&self, inner: &Inner) {
        let mut b = IntelBuilder::new();
        for cfg in self.config.feeds.iter().filter(|f| f.enabled) {
            if let Some(d) = inner.data.get(&cfg.name) {
                b = data::add_to_builder(b, cfg, d);
                if let Some(v) = inner.status.get(&cfg.name).and_then(|s| s.version.clone()) {
                    b = b.version(&cfg.name, &v);
                }
            }
        }
        self.intel.store(Arc::new(b.build()));
    }
}

/// Writes `bytes` to `path` via a temporary file and a rename, so a crash leaves
/// either the old or the new file, never a torn one.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), FeedError> {
    let err = |e: std::io::Error| FeedError::State { path: path.to_path_buf(), message: e.to_string() };
    let tmp = path.with_extension("tmp");
    let mut f = fs::File::create(&tmp).map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    f.sync_all().map_err(err)?;
    drop(f);
    fs::rename(&tmp, path).map_err(err)
}
