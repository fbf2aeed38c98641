//! Apiary's honeypot sensor.
//!
//! The sensor listens on the ports of the services attackers probe, answers
//! like the real servers so that scanners and attack tools carry on talking,
//! records every interaction as HoneyDB-style events (CONNECT, RX, TX, INFO),
//! and delivers them to an Apiary server through a disk-backed queue.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let config = apiary_sensor::SensorConfig::from_file("sensor.toml".as_ref())?;
//! for l in apiary_sensor::services(&config) {
//!     println!("{l}");
//! }
//! apiary_sensor::run(config, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```
//!
//! The crate also builds a standalone `apiary-sensor CONFIG.toml` binary
//! (src/bin) for honeypot hosts that should not carry the server; the
//! process-level tests (SIGKILL, server outage, 10,000 idle connections) run
//! it. `sensor.sample.toml` documents every key and service.
//!
//! Data flow: connection task → `record::Session` (encodes each event) →
//! bounded journal → writer thread (queue segment files + optional JSON-lines
//! log) → shipper task → [`apiary_client`] → server. See each module for why
//! it is shaped the way it is.

mod config;
mod conn;
mod deadline;
pub mod facts;
mod journal;
mod limits;
mod node;
mod privdrop;
mod queue;
mod record;
mod server;
mod services;
mod ship;
mod wire;
mod writer;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::JoinHandle;

pub use config::{DeliveryConfig, FsyncPolicy, LimitsConfig, Listener, SensorConfig, ServerConfig, ServiceConfig};
pub use queue::{Queue, QueueOptions};
pub use record::Stats;
pub use services::ServiceKind;

/// How long shutdown spends trying to deliver what is still queued.
const FINAL_FLUSH: Duration = Duration::from_secs(5);
const STATS_EVERY: Duration = Duration::from_secs(60);

/// The enabled services and where each will listen, for `apiary sensor services`.
pub fn services(config: &SensorConfig) -> Vec<Listener> {
    config.listeners()
}

/// Runs the sensor until `shutdown` completes, then stops cleanly: listeners
/// close, queued events are synced to disk and, if a server is configured,
/// a last delivery is attempted (bounded to a few seconds).
pub async fn run(config: SensorConfig, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let sensor = start(config).await?;
    for l in sensor.listeners() {
        tracing::info!("listening: {l}");
    }
    shutdown.await;
    sensor.stop().await
}

/// A started sensor. Tests use it to learn the ports they asked the OS for
/// (port 0) and to stop the sensor.
pub struct RunningSensor {
    node_id: String,
    listeners: Vec<Listener>,
    stop_tx: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    writer: Option<std::thread::JoinHandle<()>>,
    shipper: Option<JoinHandle<()>>,
    recorder: Option<record::Recorder>,
    queue: Option<Arc<Queue>>,
    stats: Arc<Stats>,
    state_dir: std::path::PathBuf,
}

/// Binds every enabled service (failing with the port named), drops
/// privileges if configured, and starts serving and delivering.
pub async fn start(config: SensorConfig) -> anyhow::Result<RunningSensor> {
    config.check()?;
    std::fs::create_dir_all(&config.state_dir)
        .with_context(|| format!("cannot create state directory {}", config.state_dir.display()))?;
    let node_id = node::load_or_create(&config.state_dir)?;
    let bound = server::bind_all(&config.listeners()).await?;
    let mut prepared = std::collections::BTreeMap::new();
    for l in config.listeners() {
        let cfg = config.services.get(&l.kind).cloned().unwrap_or_default();
        let p = services::prepare(l.kind, cfg, &config.state_dir)
            .with_context(|| format!("cannot prepare the {} service", l.name))?;
        prepared.insert(l.kind, Arc::new(p));
    }

    let stats = Arc::new(Stats::default());
    let notify = Arc::new(Notify::new());
    let queue = match &config.server {
        Some(_) => {
            let d = &config.delivery;
            let opts = QueueOptions {
                max_bytes: d.queue_max_bytes,
                segment_bytes: d.segment_max_bytes,
                fsync: d.fsync,
                fsync_interval: Duration::from_millis(d.fsync_interval_ms),
            };
            let dir = config.state_dir.join("queue");
            Some(Arc::new(
                Queue::open(&dir, opts).with_context(|| format!("cannot open delivery queue {}", dir.display()))?,
            ))
        }
        None => None,
    };
    let log = match config.log_path() {
        Some(p) => Some(writer::open_log(&p).with_context(|| format!("cannot open event log {}", p.display()))?),
        None => None,
    };
    if let Some(user) = &config.user {
        privdrop::drop_to(user, config.group.as_deref(), &config.state_dir)?;
    }

    let journal = Arc::new(journal::Journal::default());
    let recorder = record::Recorder::new(&node_id, stats.clone(), journal.clone());
    let w = writer::Writer { queue: queue.clone(), log, notify: notify.clone() };
    let writer = std::thread::Builder::new().name("apiary-writer".into()).spawn(move || w.run(journal))?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let shipper = match (&config.server, &queue) {
        (Some(server), Some(queue)) => {
            let mut cc = apiary_client::ClientConfig::new(&server.url, &server.api_id, &server.api_key);
            cc.timeout = Duration::from_millis(config.delivery.timeout_ms.max(1000));
            let client = apiary_client::Client::new(cc)?;
            let s = ship::Shipper {
                client,
                queue: queue.clone(),
                cfg: config.delivery.clone(),
                notify: notify.clone(),
                stats: stats.clone(),
            };
            Some(tokio::spawn(s.run(stop_rx.clone(), FINAL_FLUSH)))
        }
        _ => None,
    };

    let shared = server::Shared {
        recorder: recorder.clone(),
        limits: Arc::new(config.limits.clone()),
        conns: Arc::new(Semaphore::new(config.limits.max_connections)),
        rate: Arc::new(limits::RateLimiter::new(
            config.limits.per_ip_rate,
            config.limits.per_ip_burst,
            config.limits.max_tracked_ips,
        )),
    };
    let mut tasks = Vec::new();
    let mut listeners = Vec::new();
    for b in bound {
        let mut l = b.listener();
        l.addr = b.local_addr();
        listeners.push(l);
        let Some(cfg) = prepared.get(&l.kind).cloned() else { continue };
        tasks.push(match b {
            server::Bound::Tcp(_, s) => tokio::spawn(server::serve_tcp(l.kind, s, cfg, shared.clone())),
            server::Bound::Udp(_, s) => tokio::spawn(server::serve_udp(l.kind, s, cfg, shared.clone())),
        });
    }
    tasks.push(tokio::spawn(report_stats(stats.clone(), queue.clone(), config.state_dir.clone())));

    Ok(RunningSensor {
        node_id,
        listeners,
        stop_tx,
        tasks,
        writer: Some(writer),
        shipper,
        recorder: Some(recorder),
        queue,
        stats,
        state_dir: config.state_dir.clone(),
    })
}

impl RunningSensor {
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The listeners with the addresses actually bound.
    pub fn listeners(&self) -> &[Listener] {
        &self.listeners
    }

    pub fn addr(&self, kind: ServiceKind) -> Option<SocketAddr> {
        self.listeners.iter().find(|l| l.kind == kind).map(|l| l.addr)
    }

    pub fn stats(&self) -> serde_json::Value {
        stats_json(&self.stats, self.queue.as_deref())
    }

    /// Events queued and not yet acknowledged by the server.
    pub fn pending(&self) -> Option<u64> {
        self.queue.as_ref().map(|q| q.pending())
    }

    pub async fn stop(mut self) -> anyhow::Result<()> {
        for t in &self.tasks {
            t.abort();
        }
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
        // With every connection gone, this drops the last recorder: the
        // journal closes and the writer drains it, syncs and exits.
        self.recorder.take();
        if let Some(w) = self.writer.take() {
            tokio::task::spawn_blocking(move || w.join()).await.ok();
        }
        let _ = self.stop_tx.send(true);
        if let Some(s) = self.shipper.take() {
            let _ = s.await;
        }
        write_stats(&self.state_dir, &stats_json(&self.stats, self.queue.as_deref()));
        Ok(())
    }
}

fn stats_json(stats: &Stats, queue: Option<&Queue>) -> serde_json::Value {
    let mut v = stats.snapshot();
    if let (Some(q), Some(obj)) = (queue, v.as_object_mut()) {
        obj.insert("queue_pending".into(), q.pending().into());
        obj.insert("queue_bytes".into(), q.disk_bytes().into());
        obj.insert("queue_dropped".into(), q.dropped().into());
    }
    v
}

fn write_stats(dir: &std::path::Path, v: &serde_json::Value) {
    let tmp = dir.join("stats.json.tmp");
    if std::fs::write(&tmp, v.to_string()).is_ok() {
        let _ = std::fs::rename(tmp, dir.join("stats.json"));
    }
}

/// Logs the counters and writes `stats.json` every minute; the queue's drop
/// count is how an operator learns the queue overflowed.
async fn report_stats(stats: Arc<Stats>, queue: Option<Arc<Queue>>, dir: std::path::PathBuf) {
    let mut tick = tokio::time::interval(STATS_EVERY);
    tick.tick().await;
    loop {
        tick.tick().await;
        let v = stats_json(&stats, queue.as_deref());
        tracing::info!(stats = %v, "sensor stats");
        let dir = dir.clone();
        let _ = tokio::task::spawn_blocking(move || write_stats(&dir, &v)).await;
    }
}
