//! The writer: one OS thread that moves event lines from the channel to disk.
//!
//! A dedicated thread because appends and fsyncs block; doing them on the
//! async workers would stall every connection behind the disk. Lines are taken
//! in groups (everything already waiting, up to a cap) so one write and at
//! most one fsync cover many events.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Notify};

use crate::queue::Queue;

const GROUP: usize = 1024;
/// When a group comes out small, the writer naps this long and takes what
/// arrived meanwhile. Under load this turns one wake-up, one write and one
/// fsync per handful of events into one per hundreds (a sleeping thread is
/// not woken by each send, as one parked on the channel is); idle, it only
/// delays an event by this much on its way to disk.
const COALESCE: Duration = Duration::from_millis(2);

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
    /// Runs until every sender is gone, then flushes and syncs. The thread
    /// has its own tiny runtime (for the receive timeout), so it works under
    /// any runtime flavour the caller uses.
    pub fn run(mut self, mut rx: mpsc::Receiver<String>) {
        let rt = match tokio::runtime::Builder::new_current_thread().enable_time().build() {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!("event writer cannot start: {e}");
                return;
            }
        };
        let mut buf = Vec::with_capacity(1 << 16);
        loop {
            let first = rt.block_on(async { tokio::time::timeout(Duration::from_millis(200), rx.recv()).await });
            let first = match first {
                Ok(Some(line)) => line,
                Ok(None) => break,
                Err(_) => {
                    self.idle();
                    continue;
                }
            };
            buf.clear();
            let mut count = 1u64;
            buf.extend_from_slice(first.as_bytes());
            buf.push(b'\n');
            for round in 0..2 {
                while count < GROUP as u64 {
                    match rx.try_recv() {
                        Ok(line) => {
                            buf.extend_from_slice(line.as_bytes());
                            buf.push(b'\n');
                            count += 1;
                        }
                        Err(_) => break,
                    }
                }
                if round == 0 && count < (GROUP / 4) as u64 && count > 1 {
                    std::thread::sleep(COALESCE);
                } else {
                    break;
                }
            }
            self.write(&buf, count);
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
