//! The shipper: takes batches from the disk queue to the server.
//!
//! One batch in flight at a time, in queue order. A batch leaves the queue
//! only when the server's answer says it is done with it (stored, or refused
//! for good); every other answer keeps it and waits: `Retry-After` when the
//! server gives one, a slow fixed retry when our credentials are refused,
//! exponential backoff with jitter otherwise.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use apiary_client::{Backoff, Client, Outcome};
use rand::Rng;
use tokio::sync::{watch, Notify};

use crate::config::DeliveryConfig;
use crate::queue::{Batch, Queue};
use crate::record::Stats;

/// A partial batch of at least 1/SIZEABLE of `batch_max_events` (78 events
/// at the default 5000) is sent once no new event has been queued for QUIET
/// (the writer appends every few milliseconds while events arrive). Smaller
/// ones wait for the flush interval: under a trickle of events, one request
/// per interval rather than one per event.
const SIZEABLE: u64 = 64;
const QUIET: Duration = Duration::from_millis(10);

/// During an outage, one failed attempt in this many is logged as a warning
/// (about once a minute at the default 5 s ceiling).
const WARN_EVERY: u32 = 15;

pub struct Shipper {
    pub client: Client,
    pub queue: Arc<Queue>,
    pub cfg: DeliveryConfig,
    pub notify: Arc<Notify>,
    pub stats: Arc<Stats>,
}

enum Step {
    /// The batch is finished with; acknowledge it.
    Done,
    /// Keep it and try again after this long.
    Wait(Duration),
}

impl Shipper {
    /// Delivers until `stop` turns true; then makes one last attempt to send
    /// what is queued (bounded by `final_flush`) and returns.
    pub async fn run(self, mut stop: watch::Receiver<bool>, final_flush: Duration) {
        let jitter = rand::rng().random_range(0..=self.cfg.start_jitter_ms);
        if sleep_or_stop(Duration::from_millis(jitter), &mut stop).await {
            return;
        }
        let mut backoff = Backoff::new(
            Duration::from_millis(self.cfg.backoff_min_ms),
            Duration::from_millis(self.cfg.backoff_max_ms),
        );
        let flush = Duration::from_millis(self.cfg.flush_interval_ms.max(1));
        loop {
            if *stop.borrow() {
                break;
            }
            if self.queue.pending() < self.cfg.batch_max_events as u64 {
                tokio::select! {
                    _ = self.wait_for_more(flush) => {}
                    _ = stop.changed() => break,
                }
            }
            let batch = match self.read().await {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!("cannot read the delivery queue: {e}");
                    if sleep_or_stop(Duration::from_secs(5), &mut stop).await {
                        break;
                    }
                    continue;
                }
            };
            if batch.is_empty() {
                continue;
            }
            if let Some(wait) = self.deliver(&batch, &mut backoff).await {
                if sleep_or_stop(wait, &mut stop).await {
                    break;
                }
            }
        }
        let _ = tokio::time::timeout(final_flush, self.drain()).await;
    }

    /// Lets a partial batch wait for more events: at most one flush
    /// interval, or, once it is a sizeable part of a batch, until the queue
    /// stops growing for a moment. So the end of a burst goes out at once,
    /// while a trickle still waits and goes in one request rather than many
    /// small ones (each request has a fixed cost at the server).
    async fn wait_for_more(&self, flush: Duration) {
        let max = self.cfg.batch_max_events as u64;
        let deadline = tokio::time::Instant::now() + flush;
        loop {
            let pending = self.queue.pending();
            if pending >= max {
                return;
            }
            let until = if pending > 0 && pending >= max / SIZEABLE {
                deadline.min(tokio::time::Instant::now() + QUIET)
            } else {
                deadline
            };
            if tokio::time::timeout_at(until, self.notify.notified()).await.is_err() {
                return;
            }
        }
    }

    async fn read(&self) -> std::io::Result<Batch> {
        let q = self.queue.clone();
        let (n, b) = (self.cfg.batch_max_events, self.cfg.batch_max_bytes);
        tokio::task::spawn_blocking(move || q.read_batch(n, b))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())))
    }

    /// Sends everything queued once, without waiting between failures.
    async fn drain(&self) {
        let mut backoff = Backoff::new(Duration::from_millis(1), Duration::from_millis(1));
        loop {
            let Ok(batch) = self.read().await else { return };
            if batch.is_empty() {
                return;
            }
            if self.deliver(&batch, &mut backoff).await.is_some() {
                return;
            }
        }
    }

    /// Delivers one batch; `None` when it was acknowledged, else how long to wait.
    async fn deliver(&self, batch: &Batch, backoff: &mut Backoff) -> Option<Duration> {
        match self.send(batch, backoff).await {
            Step::Done => {
                backoff.reset();
                // The cursor is written and fsynced: off the async workers.
                let (q, progress) = (self.queue.clone(), batch.progress());
                let acked = tokio::task::spawn_blocking(move || q.ack(progress))
                    .await
                    .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
                if let Err(e) = acked {
                    tracing::error!("cannot record delivery progress: {e}");
                }
                let dropped = self.queue.dropped();
                let before = self.stats.queue_dropped.swap(dropped, Ordering::Relaxed);
                if dropped > before {
                    tracing::warn!(dropped, "events were dropped from the full delivery queue");
                }
                None
            }
            Step::Wait(d) => Some(d),
        }
    }

    /// Sends the batch, splitting on 413; Done only when all parts are done.
    /// If part of a split batch was stored before a failure, the whole batch
    /// stays queued: resending the stored part is harmless (idempotent ingest).
    ///
    /// Each part goes to the client as one NDJSON chunk, not one element per
    /// event: the body on the wire is the same, but the client's compressor
    /// is then called once per request rather than twice per event, and each
    /// of those calls costs more than compressing the event itself.
    async fn send(&self, batch: &Batch, backoff: &mut Backoff) -> Step {
        let mut parts: Vec<std::ops::Range<usize>> = Vec::new();
        parts.push(0..batch.len());
        while let Some(part) = parts.pop() {
            match self.client.send_lines(&[batch.ndjson(part.clone())]).await {
                Outcome::Stored { accepted, duplicates, rejected } => {
                    self.stats.delivered.fetch_add(accepted + duplicates, Ordering::Relaxed);
                    if !rejected.is_empty() {
                        self.stats.rejected_by_server.fetch_add(rejected.len() as u64, Ordering::Relaxed);
                        for r in rejected.iter().take(5) {
                            let line =
                                batch.line(part.start + r.index).map(|l| String::from_utf8_lossy(l).into_owned());
                            tracing::warn!(index = r.index, error = %r.error, line, "server rejected an event; dropped");
                        }
                    }
                    tracing::debug!(accepted, duplicates, "batch delivered");
                }
                Outcome::Malformed { message } => {
                    tracing::error!(events = part.len(), %message, "server could not parse a batch (a sensor bug); batch dropped");
                    self.stats.rejected_by_server.fetch_add(part.len() as u64, Ordering::Relaxed);
                }
                Outcome::TooLarge if part.len() > 1 => {
                    let mid = part.start + part.len() / 2;
                    parts.push(mid..part.end);
                    parts.push(part.start..mid);
                }
                Outcome::TooLarge => {
                    tracing::error!("server refused a single event as too large; dropped");
                    self.stats.rejected_by_server.fetch_add(1, Ordering::Relaxed);
                }
                Outcome::Refused { status, message } => {
                    tracing::error!(status, %message, url = self.client.url(), "server refused the sensor's credentials or URL; events kept, retrying later");
                    return Step::Wait(Duration::from_millis(self.cfg.refused_retry_ms));
                }
                Outcome::RetryAfter { status, after } => {
                    tracing::info!(status, ?after, "server asked to retry later");
                    return Step::Wait(after);
                }
                Outcome::Transient { reason } => {
                    let wait = backoff.next_delay();
                    let attempt = backoff.attempts();
                    // At the backoff ceiling a long outage means a retry every
                    // few seconds: warn at the first and then every
                    // WARN_EVERY-th, not at each.
                    if attempt == 1 || attempt.is_multiple_of(WARN_EVERY) {
                        tracing::warn!(%reason, ?wait, attempt, "delivery failed; will retry");
                    } else {
                        tracing::debug!(%reason, ?wait, attempt, "delivery failed; will retry");
                    }
                    return Step::Wait(wait);
                }
            }
        }
        Step::Done
    }
}

/// Sleeps; true if asked to stop meanwhile.
async fn sleep_or_stop(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => *stop.borrow(),
        _ = stop.changed() => true,
    }
}
