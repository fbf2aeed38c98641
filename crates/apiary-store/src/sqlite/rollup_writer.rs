//! The rollup writer thread: owns the write connection of `rollups.db`.
//!
//! The event writer hands it the increments of each commit (after the
//! commit, before the answers); it merges them in memory ([`Rollups`]) and
//! writes them in transactions of its own on its own database, so the event
//! commits never wait for a rollup write. It writes right after a lone
//! commit (one after a pause of [`IDLE_GAP`]); while commits keep coming,
//! when they pause for [`IDLE_GAP`], at most [`RollupFlush::interval`]
//! later, at [`RollupFlush::max_keys`], before any other job, and at
//! shutdown. Readers of rollups settle them first (`SqliteStore::settle_rollups`),
//! so an answered batch is always counted.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::host_cache::HostCache;
use super::rollup::{Committed, Rollups, BULK_FLUSH_INTERVAL, BULK_MAX_PENDING_KEYS, FLUSH_INTERVAL, MAX_PENDING_KEYS};
use super::writer::{restart_wal, Reply, Task};
use crate::types::IpHistoryRow;
use crate::{Result, StoreError};

/// A pause in ingest this long means the stream of batches stopped: pending
/// rollups are written then, and a commit arriving after such a pause (a
/// lone one) has its rollups written right after it.
pub(crate) const IDLE_GAP: Duration = Duration::from_millis(50);

/// How long the rollup writer pauses after a failed write.
const WRITE_RETRY_PAUSE: Duration = Duration::from_millis(250);

/// When what a writer holds in memory (rollups here, the payload writer's
/// logged facts) is written besides the age and size limits
/// ([`RollupFlush::interval`], [`RollupFlush::max_keys`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RollupFlush {
    /// Right after a lone batch (one after a pause of [`IDLE_GAP`]); while
    /// batches keep coming, when the stream pauses for [`IDLE_GAP`].
    /// Readers settle them first (`SqliteStore::settle_rollups`,
    /// `settle_payloads`), so a batch is always visible once answered.
    WhenIdle,
    /// Only at the limits and at shutdown: a bulk load, read after it ends.
    Deferred,
}

impl RollupFlush {
    /// Longest time increments wait in memory while ingest keeps coming.
    pub(crate) fn interval(self) -> Duration {
        match self {
            RollupFlush::WhenIdle => FLUSH_INTERVAL,
            RollupFlush::Deferred => BULK_FLUSH_INTERVAL,
        }
    }

    /// Most keys held in memory before they are written.
    pub(crate) fn max_keys(self) -> usize {
        match self {
            RollupFlush::WhenIdle => MAX_PENDING_KEYS,
            RollupFlush::Deferred => BULK_MAX_PENDING_KEYS,
        }
    }
}

/// What the rollup writer is asked to do.
pub(crate) enum RollupJob {
    /// The increments of one commit of the event writer.
    Committed(Committed),
    /// Write everything held, then answer.
    Settle(Reply<()>),
    /// Any other write to `rollups.db`, after everything held is written.
    Task(Task),
}

/// What the rollup writer works with besides its jobs.
pub(crate) struct RollupWriter<'a> {
    /// The write connection of `rollups.db`.
    pub conn: Connection,
    /// A read connection of `apiary.db`, to rebuild increments from the
    /// stored events (see [`Rollups::write`]).
    pub events: Connection,
    pub flush: RollupFlush,
    /// Bumped by `rollups.db`'s checkpointer after each round.
    pub checkpoints: &'a AtomicU64,
    /// The last event whose increments are written (or were found written
    /// by another process): readers compare it with the last handed over.
    pub rolled: &'a AtomicI64,
    /// IP histories read lately: the hosts whose history a write changed
    /// leave it.
    pub history_cache: &'a HostCache<Vec<IpHistoryRow>>,
}

impl RollupWriter<'_> {
    /// Runs jobs until every sender is gone, starting from `pending` (empty,
    /// building on the mark `rollup::catch_up` left).
    pub fn run(mut self, jobs: Receiver<RollupJob>, mut pending: Rollups) {
        let mut checkpoint_seen = 0;
        loop {
            let waiting_since = Instant::now();
            let next = match pending.age() {
                None => jobs.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(age) => {
                    let due = self.flush.interval().saturating_sub(age);
                    jobs.recv_timeout(if self.flush == RollupFlush::WhenIdle { due.min(IDLE_GAP) } else { due })
                }
            };
            match next {
                Ok(RollupJob::Committed(committed)) => {
                    // A commit after a pause is a lone one: its rollups
                    // follow at once, unless more came in meanwhile.
                    let lone = waiting_since.elapsed() >= IDLE_GAP;
                    pending.take(&committed);
                    drop(committed);
                    let mut more = false;
                    while pending.keys() < self.flush.max_keys() {
                        match jobs.try_recv() {
                            Ok(RollupJob::Committed(c)) => {
                                pending.take(&c);
                                more = true;
                            }
                            Ok(other) => {
                                self.write(&mut pending);
                                self.run_job(&mut pending, other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    if (lone && !more && self.flush == RollupFlush::WhenIdle)
                        || pending.age().is_some_and(|age| age >= self.flush.interval())
                        || pending.keys() >= self.flush.max_keys()
                    {
                        self.write(&mut pending);
                    }
                }
                Ok(other) => {
                    self.write(&mut pending);
                    self.run_job(&mut pending, other);
                }
                Err(RecvTimeoutError::Timeout) => self.write(&mut pending),
                Err(RecvTimeoutError::Disconnected) => break,
            }
            // Between transactions: a restart may copy the frames committed
            // since the checkpointer's round, and fsync.
            let round = self.checkpoints.load(Ordering::Relaxed);
            if round != checkpoint_seen {
                checkpoint_seen = round;
                restart_wal(&self.conn);
            }
        }
        self.write(&mut pending);
    }

    /// A settle or a task, once everything held is written (increments
    /// are merely taken).
    fn run_job(&mut self, pending: &mut Rollups, job: RollupJob) {
        match job {
            RollupJob::Settle(reply) => drop(reply.send(Ok(()))),
            RollupJob::Task(task) => task(&mut self.conn),
            RollupJob::Committed(committed) => pending.take(&committed),
        }
    }

    /// Writes `pending` in a transaction of its own; on failure keeps it
    /// (derivable from the stored events) for the next try.
    fn write(&mut self, pending: &mut Rollups) {
        if pending.is_empty() {
            // Commits whose events were all rolled up by another process
            // leave nothing to write, but readers must not wait for them.
            self.rolled.fetch_max(pending.upto(), Ordering::SeqCst);
            return;
        }
        let events = &self.events;
        let (started, keys) = (Instant::now(), pending.keys());
        let written = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(StoreError::from)
            .and_then(|tx| {
                let hwm = pending.write(&tx, events)?;
                tx.commit()?;
                Ok::<_, StoreError>(hwm)
            });
        match written {
            Ok(hwm) => {
                tracing::debug!(keys, took_ms = started.elapsed().as_millis() as u64, upto = hwm, "rollups written");
                self.history_cache.invalidate(pending.hosts());
                pending.clear(hwm);
                self.rolled.fetch_max(hwm, Ordering::SeqCst);
            }
            Err(e) => {
                tracing::error!(error = %e, "writing rollups failed; will retry");
                // What is held is overdue by now: without a pause the next
                // try would follow at once, and fail the same way (a full
                // disk) as fast as the log can take it.
                std::thread::sleep(WRITE_RETRY_PAUSE);
            }
        }
    }
}

/// Drops the raw-event counts of days before `before_day` once their events
/// are pruned, keeping `/sensor-data/count` in agreement with what
/// `/sensor-data` can page.
pub(crate) fn prune_counts(conn: &mut Connection, before_day: i64) -> Result<u64> {
    Ok(conn.execute("DELETE FROM day_owner WHERE day < ?1", [before_day])? as u64)
}
