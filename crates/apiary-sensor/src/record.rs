//! Turning what happens on a connection into events.
//!
//! A [`Recorder`] is the cheap, cloneable handle every listener holds. Each
//! connection (or UDP datagram) gets a [`Session`] with its own UUID; the
//! session stamps every CONNECT/RX/TX/INFO with the time, a fresh event UUID
//! (the idempotency key for delivery) and the addresses, encodes it as its
//! wire line right away (so the work is spread over the connection tasks; see
//! [`crate::wire`]), and appends the line to the [`Journal`] the writer thread
//! takes from. A full journal makes connections wait: memory stays bounded
//! and no event is lost between the socket and the disk.

use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use apiary_model::{EventKind, Protocol, MAX_DATA_BYTES};

use crate::facts::Fact;
use crate::journal::Journal;
use crate::wire::{self, Template};

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

/// What every session of the sensor shares; one allocation, so that a new
/// session costs one reference count, not one per field.
struct Shared {
    journal: Arc<Journal>,
    node: Box<str>,
    stats: Arc<Stats>,
}

impl Drop for Shared {
    /// The last recorder is gone (every connection ended and the sensor
    /// dropped its own): the writer may drain the journal and stop.
    fn drop(&mut self) {
        self.journal.close();
    }
}

#[derive(Clone)]
pub struct Recorder {
    shared: Arc<Shared>,
}

impl Recorder {
    pub fn new(node: &str, stats: Arc<Stats>, journal: Arc<Journal>) -> Recorder {
        Recorder { shared: Arc::new(Shared { journal, node: node.into(), stats }) }
    }

    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    pub fn session(&self, service: &'static str, protocol: Protocol, local: SocketAddr, remote: SocketAddr) -> Session {
        let id = wire::uuid_text();
        // Hyphenated hex is ASCII: the fallback is never taken.
        let id = std::str::from_utf8(&id).unwrap_or_default();
        let template = Template::new(&self.shared.node, id, service, protocol, local, remote);
        Session { rec: self.clone(), template, protocol, remote }
    }
}

/// Largest line buffer a thread keeps between events: enough for the line of
/// a whole 4 KiB read (8 KiB of hex plus the fields); the rare larger one
/// (a big TX) is freed after its push.
const KEEP_SCRATCH: usize = 16 << 10;

thread_local! {
    /// Where [`Session::emit`] encodes a line before pushing it.
    static SCRATCH: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// One connection's (or datagram's) event stream. Cloneable for services
/// whose protocol library runs callbacks on its own task (SSH).
#[derive(Clone)]
pub struct Session {
    rec: Recorder,
    template: Template,
    protocol: Protocol,
    remote: SocketAddr,
}

impl Session {
    pub fn remote(&self) -> SocketAddr {
        self.remote
    }

    async fn emit(&self, kind: EventKind, data: &[u8]) {
        // The line is encoded into the thread's scratch buffer, taken out
        // for the time of the push (which may wait for room, and the task
        // may resume on another thread), so an event allocates nothing.
        let mut line = SCRATCH.take();
        line.clear();
        self.template.encode_into(&mut line, &wire::uuid_text(), apiary_model::time::now_ms(), kind, data);
        let shared = &self.rec.shared;
        shared.stats.events.fetch_add(1, Ordering::Relaxed);
        shared.journal.push(&line).await;
        if line.capacity() <= KEEP_SCRATCH {
            SCRATCH.set(line);
        }
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
