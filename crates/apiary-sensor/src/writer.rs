//! The writer: one OS thread that moves event lines from the journal to disk.
//!
//! A dedicated thread because appends and fsyncs block; doing them on the
//! async workers would stall every connection behind the disk. Lines are taken
//! in groups (see [`crate::journal`]) so one write and at most one fsync cover
//! many events. The queue is written (and, with `fsync = "always"`, synced)
//! before the log, so an event in the log is always on disk in the queue.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::journal::{Journal, Take};
use crate::queue::Queue;

/// How often an idle writer wakes to flush the log and honour the fsync
/// interval.
const IDLE_TICK: Duration = Duration::from_millis(200);
/// A group buffer that grew past this (a burst) is not kept between groups.
const KEEP_BUFFER: usize = 1 << 20;

pub struct Writer {
    pub queue: Option<Arc<Queue>>,
    pub log: Option<BufWriter<File>>,
    /// Woken after each append so the shipper can send a full batch early.
    pub notify: Arc<Notify>,
}

pub fn open_log(path: &Path) -> std::io::Result<BufWriter<File>> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    Ok(BufWriter::new(OpenOptions::new().create(true).append(true).open(path)?))
}

impl Writer {
    /// Runs until the journal is closed and drained, then flushes and syncs.
    pub fn run(mut self, journal: Arc<Journal>) {
        let mut buf = Vec::with_capacity(1 << 16);
        loop {
            match journal.take(&mut buf, IDLE_TICK) {
                Take::Lines(count) => self.write(&buf, count),
                Take::Idle => self.idle(),
                Take::Closed => break,
            }
            if buf.capacity() > KEEP_BUFFER {
                buf = Vec::with_capacity(1 << 16);
            }
        }
        self.idle();
        if let Some(q) = &self.queue {
            if let Err(e) = q.sync() {
                tracing::error!("syncing the delivery queue at shutdown: {e}");
            }
        }
    }

    fn write(&mut self, buf: &[u8], count: u64) {
        if let Some(q) = &self.queue {
            // A failing disk must not stop the honeypot; the error is loud.
            if let Err(e) = q.append(buf, count) {
                tracing::error!("cannot append {count} events to the delivery queue: {e}");
            }
            self.notify.notify_one();
        }
        if let Some(log) = &mut self.log {
            if let Err(e) = log.write_all(buf).and_then(|_| log.flush()) {
                tracing::error!("cannot write the event log: {e}");
            }
        }
    }

    fn idle(&mut self) {
        if let Some(log) = &mut self.log {
            let _ = log.flush();
        }
        if let Some(q) = &self.queue {
            if let Err(e) = q.sync_if_due() {
                tracing::error!("cannot sync the delivery queue: {e}");
            }
        }
    }
}
