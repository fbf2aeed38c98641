//! The sensor's configuration (TOML). See `sensor.sample.toml` for every key.
//!
//! Services not listed under `[services]` are off; a file without a
//! `[services]` table at all gets the default set, all on high ports of
//! 127.0.0.1, so that a fresh install exposes nothing to the network until
//! the operator says so.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::services::ServiceKind;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SensorConfig {
    /// Where the node id, the delivery queue and the stats live.
    pub state_dir: PathBuf,
    /// Default listen address for every service (a service may override it).
    pub bind: IpAddr,
    /// The server to deliver to; without it events only go to `log_file`.
    pub server: Option<ServerConfig>,
    pub delivery: DeliveryConfig,
    /// Optional local JSON-lines copy of every event (the same lines that are
    /// queued for delivery). Relative paths are under `state_dir`.
    pub log_file: Option<PathBuf>,
    pub limits: LimitsConfig,
    /// Drop root after binding: become this user (and its primary group).
    pub user: Option<String>,
    /// Group to switch to instead of the user's primary group.
    pub group: Option<String>,
    pub services: BTreeMap<ServiceKind, ServiceConfig>,
}

impl Default for SensorConfig {
    fn default() -> Self {
        SensorConfig {
            state_dir: PathBuf::from("apiary-sensor-state"),
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            server: None,
            delivery: DeliveryConfig::default(),
            log_file: None,
            limits: LimitsConfig::default(),
            user: None,
            group: None,
            services: ServiceKind::ALL
                .iter()
                .filter(|k| k.default_enabled())
                .map(|k| (*k, ServiceConfig::default()))
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// API base URL, e.g. `http://127.0.0.1:8080/api`.
    pub url: String,
    /// The account's API id.
    pub api_id: String,
    /// The sensor key.
    pub api_key: String,
}

/// When appended events are forced to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    /// After every group of appended events: nothing recorded is lost on a
    /// power cut, at the cost of one fsync per group.
    Always,
    /// At most every `fsync_interval_ms`: a power cut loses that window.
    Interval,
    /// Leave it to the OS; a sensor crash loses nothing, a power cut may.
    Never,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// Most events in one request. Under load, batches fill up before the
    /// flush interval: large ones spread the server's fixed cost of a request
    /// (a transaction, its fsync, merged rollups) over more events. The byte
    /// limit below still bounds a request whatever the payloads.
    pub batch_max_events: usize,
    /// Most uncompressed bytes in one request.
    pub batch_max_bytes: usize,
    /// Longest an event waits before a partial batch is sent.
    pub flush_interval_ms: u64,
    /// The first delivery waits a random time up to this, so a fleet of
    /// sensors restarted together does not hit the server together.
    pub start_jitter_ms: u64,
    /// Backoff after failures: first step and ceiling. The ceiling bounds
    /// how long delivery takes to resume once the server is back (each wait
    /// at the ceiling is drawn between half of it and all of it), so it is
    /// seconds, not minutes: a retry at a server that is down costs it
    /// nothing, and a server that is overloaded says so with `Retry-After`,
    /// which is obeyed instead.
    pub backoff_min_ms: u64,
    pub backoff_max_ms: u64,
    /// Retry delay after the server refuses our credentials.
    pub refused_retry_ms: u64,
    /// Disk the queue may use; beyond it the oldest events are dropped (and counted).
    pub queue_max_bytes: u64,
    /// Size at which a queue segment file is closed and a new one started.
    pub segment_max_bytes: u64,
    pub fsync: FsyncPolicy,
    pub fsync_interval_ms: u64,
    /// Request timeout.
    pub timeout_ms: u64,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            batch_max_events: 5000,
            batch_max_bytes: 4 << 20,
            flush_interval_ms: 2000,
            start_jitter_ms: 5000,
            backoff_min_ms: 1000,
            backoff_max_ms: 5_000,
            refused_retry_ms: 300_000,
            queue_max_bytes: 1 << 30,
            segment_max_bytes: 16 << 20,
            fsync: FsyncPolicy::Interval,
            fsync_interval_ms: 1000,
            timeout_ms: 30_000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Bytes read from one connection before it is closed.
    pub max_bytes_per_connection: usize,
    /// Longest one connection may last.
    pub max_connection_secs: u64,
    /// Longest a connection may stay silent (or refuse to read what we send).
    pub idle_timeout_secs: u64,
    /// Connections open at once over all TCP services; more are closed at accept.
    pub max_connections: usize,
    /// New connections (or UDP datagrams) per source IP per second, sustained...
    pub per_ip_rate: f64,
    /// ...with bursts up to this many.
    pub per_ip_burst: f64,
    /// Source IPs tracked by the rate limiter (memory bound).
    pub max_tracked_ips: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_bytes_per_connection: 1 << 20,
            max_connection_secs: 300,
            idle_timeout_secs: 60,
            max_connections: 20_000,
            per_ip_rate: 20.0,
            per_ip_burst: 200.0,
            max_tracked_ips: 100_000,
        }
    }
}

impl LimitsConfig {
    pub fn idle(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs.max(1))
    }
    pub fn max_duration(&self) -> Duration {
        Duration::from_secs(self.max_connection_secs.max(1))
    }
}

/// One service's options. Every service understands `enabled`, `port` and
/// `bind`; the others are used by the services they make sense for (each
/// service's module says which).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceConfig {
    pub enabled: bool,
    /// Port to listen on; the service's default high port when absent.
    pub port: Option<u16>,
    /// Address to listen on; the sensor's `bind` when absent.
    pub bind: Option<IpAddr>,
    /// Greeting or server header (e.g. the SSH/FTP/SMTP banner, HTTP `Server:`).
    pub banner: Option<String>,
    /// Version string the service reports (Redis, MySQL, Elasticsearch, ...).
    pub version: Option<String>,
    /// Host name shown in prompts and greetings.
    pub hostname: Option<String>,
    /// Credentials accepted into the fake shell/session, as `user:password`;
    /// `*` matches anything (`"*"` alone accepts every login). Others fail.
    pub accept: Vec<String>,
    /// DNS: the A record answered for every name; NXDOMAIN when absent.
    pub answer: Option<Ipv4Addr>,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            enabled: true,
            port: None,
            bind: None,
            banner: None,
            version: None,
            hostname: None,
            accept: vec!["*".to_owned()],
            answer: None,
        }
    }
}

impl ServiceConfig {
    /// Whether a login is let in, per `accept`.
    pub fn accepts(&self, user: &str, password: &str) -> bool {
        self.accept.iter().any(|rule| {
            if rule == "*" {
                return true;
            }
            let (u, p) = rule.split_once(':').unwrap_or((rule.as_str(), "*"));
            (u == "*" || u == user) && (p == "*" || p == password)
        })
    }

    pub fn hostname(&self) -> &str {
        self.hostname.as_deref().unwrap_or("svr04")
    }
}

impl SensorConfig {
    /// Reads and checks a TOML file.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read sensor config {}: {e}", path.display()))?;
        Self::from_toml(&text).map_err(|e| anyhow::anyhow!("sensor config {}: {e}", path.display()))
    }

    pub fn from_toml(text: &str) -> anyhow::Result<Self> {
        let config: SensorConfig = toml::from_str(text)?;
        config.check()?;
        Ok(config)
    }

    /// Catches settings that would make the sensor misbehave rather than fail.
    pub fn check(&self) -> anyhow::Result<()> {
        let d = &self.delivery;
        anyhow::ensure!(d.batch_max_events > 0, "delivery.batch_max_events must be positive");
        anyhow::ensure!(d.batch_max_bytes >= 256 << 10, "delivery.batch_max_bytes must be at least 256 KiB");
        anyhow::ensure!(d.segment_max_bytes >= 64 << 10, "delivery.segment_max_bytes must be at least 64 KiB");
        anyhow::ensure!(
            d.queue_max_bytes >= 2 * d.segment_max_bytes,
            "delivery.queue_max_bytes must be at least twice segment_max_bytes"
        );
        anyhow::ensure!(self.limits.max_connections > 0, "limits.max_connections must be positive");
        anyhow::ensure!(self.limits.per_ip_rate > 0.0, "limits.per_ip_rate must be positive");
        if let Some(s) = &self.server {
            anyhow::ensure!(
                s.url.starts_with("http://") || s.url.starts_with("https://"),
                "server.url must start with http:// or https://"
            );
        }
        let mut seen = BTreeMap::new();
        for l in self.listeners() {
            if l.addr.port() == 0 {
                continue;
            }
            if let Some(other) = seen.insert((l.addr, l.protocol.code()), l.kind) {
                anyhow::bail!(
                    "services {} and {} both want {} {}",
                    other.key(),
                    l.kind.key(),
                    l.protocol.as_str(),
                    l.addr
                );
            }
        }
        Ok(())
    }

    /// The enabled services and where each listens.
    pub fn listeners(&self) -> Vec<Listener> {
        self.services
            .iter()
            .filter(|(_, c)| c.enabled)
            .map(|(kind, c)| Listener {
                kind: *kind,
                name: kind.name(),
                protocol: kind.protocol(),
                addr: SocketAddr::new(c.bind.unwrap_or(self.bind), c.port.unwrap_or(kind.default_port())),
            })
            .collect()
    }

    /// `log_file` resolved against `state_dir`.
    pub fn log_path(&self) -> Option<PathBuf> {
        self.log_file.as_ref().map(|p| if p.is_absolute() { p.clone() } else { self.state_dir.join(p) })
    }
}

/// One enabled service, as `apiary sensor services` lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Listener {
    pub kind: ServiceKind,
    /// The HoneyDB service name its events carry.
    pub name: &'static str,
    pub protocol: apiary_model::Protocol,
    pub addr: SocketAddr,
}

impl std::fmt::Display for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:<14} {} {}", self.name, self.protocol.as_str(), self.addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_loopback_high_ports() {
        let c = SensorConfig::default();
        c.check().unwrap();
        for l in c.listeners() {
            assert!(l.addr.ip().is_loopback());
            assert!(l.addr.port() > 1024, "{l}");
        }
    }

    #[test]
    fn parses_the_sample() {
        let text = include_str!("../sensor.sample.toml");
        let c = SensorConfig::from_toml(text).unwrap();
        assert!(c.services.contains_key(&ServiceKind::Telnet));
        // The sample shows the defaults.
        assert_eq!(c.delivery.backoff_max_ms, DeliveryConfig::default().backoff_max_ms);
    }

    #[test]
    fn rejects_typos_and_clashes() {
        assert!(SensorConfig::from_toml("stat_dir = 'x'").is_err());
        assert!(SensorConfig::from_toml("[services.telnett]").is_err());
        assert!(SensorConfig::from_toml("[services.telnet]\nport = 9000\n[services.ftp]\nport = 9000").is_err());
        // Same port, different protocol is fine.
        SensorConfig::from_toml("[services.echo]\nport = 9000\n[services.echo_udp]\nport = 9000").unwrap();
    }

    #[test]
    fn accept_rules() {
        let mut s = ServiceConfig { accept: vec!["root:*".into(), "admin:admin".into()], ..Default::default() };
        assert!(s.accepts("root", "x"));
        assert!(s.accepts("admin", "admin"));
        assert!(!s.accepts("admin", "x"));
        s.accept.clear();
        assert!(!s.accepts("root", "root"));
    }
}
