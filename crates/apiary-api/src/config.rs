//! Runtime settings of the API server (the binary fills them from its config
//! file, environment and flags).

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Days raw events are kept; rollups are kept forever.
    pub retention_days: u32,
    /// How old a cached bad-hosts answer may be before it is recomputed.
    pub bad_hosts_refresh: Duration,
    /// Largest ingest body, compressed or not, and after decompression.
    pub max_ingest_bytes: usize,
    /// Most events accepted in one ingest request.
    pub max_batch_events: usize,
    /// First path segments whose requests do not count against quota.
    pub uncounted: Vec<String>,
    /// Derive payload history and CVE sightings from RX payloads at ingest.
    /// On by default; off only to measure what it costs.
    pub payload_analysis: bool,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            retention_days: 30,
            bad_hosts_refresh: Duration::from_secs(2),
            max_ingest_bytes: 64 * 1024 * 1024,
            max_batch_events: 100_000,
            uncounted: ["nodes", "monitors", "datacenter"].map(String::from).to_vec(),
            payload_analysis: true,
        }
    }
}
