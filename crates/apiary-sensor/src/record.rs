//! Turning what happens on a connection into events.
//!
//! A [`Recorder`] is the cheap, cloneable handle every listener holds. Each
//! connection (or UDP datagram) gets a [`Session`] with its own UUID; the
//! session stamps every CONNECT/RX/TX/INFO with the time, a fresh event UUID
//! (the idempotency key for delivery) and the addresses, serialises it to its
//! wire line right away (so the work is spread over the connection tasks),
//! and hands the line to the writer thread over a bounded channel. A full
//! channel makes connections wait: memory stays bounded and no event is lost
//! between the socket and the disk.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use apiary_model::{canonical_ip, Event, EventKind, Protocol, MAX_DATA_BYTES};
use tokio::sync::mpsc;

use crate::facts::Fact;

/// Lines in flight between the connections and the writer.
pub const CHANNEL_CAPACITY: usize = 4096;

/// Counters the sensor reports in its logs and `stats.json`.
#[derive(Debug, Default)]
pub struct Stats {
    pub events: AtomicU64,
    pub connections: AtomicU64,
    pub refused_capacity: AtomicU64,
    pub refused_rate: AtomicU64,
    pub limits_hit: AtomicU64,
    pub queue_dropped: AtomicU64,
    pub delivered: AtomicU64,
    pub rejected_by_server: AtomicU64,
}

impl Stats {
    pub fn snapshot(&self) -> serde_json::Value {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        serde_json::json!({
            "events": g(&self.events),
            "connections": g(&self.connections),
            "refused_capacity": g(&self.refused_capacity),
            "refused_rate": g(&self.refused_rate),
            "limits_hit": g(&self.limits_hit),
            "queue_dropped": g(&self.queue_dropped),
            "delivered": g(&self.delivered),
            "rejected_by_server": g(&self.rejected_by_server),
        })
    }
}

#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<String>,
    node: Arc<str>,
    pub(crate) stats: Arc<Stats>,
}

impl Recorder {
    pub fn new(node: &str, stats: Arc<Stats>) -> (Recorder, mpsc::Receiver<String>) {
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        (Recorder { tx, node: node.into(), stats }, rx)
    }

    pub fn session(&self, service: &'static str, protocol: Protocol, local: SocketAddr, remote: SocketAddr) -> Session {
        Session { rec: self.clone(), id: uuid::Uuid::new_v4().to_string(), service, protocol, local, remote }
    }
}

/// One connection's (or datagram's) event stream. Cloneable for services
/// whose protocol library runs callbacks on its own task (SSH).
#[derive(Clone)]
pub struct Session {
    rec: Recorder,
    id: String,
    service: &'static str,
    protocol: Protocol,
    local: SocketAddr,
    remote: SocketAddr,
}

impl Session {
    pub fn remote(&self) -> SocketAddr {
        self.remote
    }

    async fn emit(&self, kind: EventKind, data: &[u8]) {
        let event = Event {
            id: uuid::Uuid::new_v4().to_string(),
            node: self.rec.node.to_string(),
            session: self.id.clone(),
            ts_ms: apiary_model::time::now_ms(),
            protocol: self.protocol,
            kind,
            service: self.service.to_owned(),
            local_host: canonical_ip(self.local.ip()),
            local_port: self.local.port(),
            remote_host: canonical_ip(self.remote.ip()),
            remote_port: self.remote.port(),
            data: data.to_vec(),
            origin: Default::default(),
            facts: Default::default(),
        };
        let Ok(line) = serde_json::to_string(&event.to_wire()) else { return };
        self.rec.stats.events.fetch_add(1, Ordering::Relaxed);
        // A closed channel means the sensor is shutting down; nothing to do.
        let _ = self.rec.tx.send(line).await;
    }

    /// A TCP connection was accepted.
    pub async fn connect(&self) {
        if self.protocol == Protocol::Tcp {
            self.emit(EventKind::Connect, &[]).await;
        }
    }

    /// Bytes received; split so no event exceeds the server's payload cap.
    pub async fn rx(&self, data: &[u8]) {
        for chunk in data.chunks(MAX_DATA_BYTES) {
            self.emit(EventKind::Rx, chunk).await;
        }
    }

    pub async fn tx(&self, data: &[u8]) {
        for chunk in data.chunks(MAX_DATA_BYTES) {
            self.emit(EventKind::Tx, chunk).await;
        }
    }

    pub async fn info(&self, fact: &Fact) {
        let bytes = fact.to_bytes();
        if bytes.len() <= MAX_DATA_BYTES {
            self.emit(EventKind::Info, &bytes).await;
        }
    }
}
