//! The event writer thread.
//!
//! SQLite allows one writer at a time, so all writes of `apiary.db` go
//! through one thread that owns its write connection. Ingest batches that
//! queue up while a transaction runs are committed together (group commit):
//! under load, many HTTP requests share one fsync-free WAL commit, and each
//! caller is answered only after the commit that made its events durable.
//! Each commit's rollup increments go to the rollup writer
//! (`rollup_writer.rs`) before the answers.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::time::Duration;

use apiary_model::Event;
use rusqlite::{params, Connection, OptionalExtension, Transaction};

use super::block::{self, PreparedEvents, MAX_BLOCK_EVENTS};
use super::claims::{self, Claims};
use super::rollup::{Committed, Increment};
use super::rollup_writer::RollupJob;
use super::BUSY_TIMEOUT;

use crate::types::{AccountId, IngestOutcome};
use crate::{Result, StoreError};

/// Largest number of events committed in one transaction.
const MAX_EVENTS_PER_COMMIT: usize = 50_000;

pub(crate) type Reply<T> = SyncSender<Result<T>>;

pub(crate) struct IngestJob {
    pub owner: AccountId,
    pub peer: Option<IpAddr>,
    pub events: PreparedEvents,
    pub now_ms: i64,
    pub reply: SyncSender<IngestAnswer>,
}

/// The answer to an [`IngestJob`], with its events handed back: the thread
/// that allocated the events frees them. Freed here, every string of every
/// event went back to another thread's heap, under its lock, a tenth of
/// this thread's time under a bulk load.
pub(crate) struct IngestAnswer {
    pub outcome: Result<IngestOutcome>,
    pub events: PreparedEvents,
}

impl IngestJob {
    fn len(&self) -> usize {
        self.events.len()
    }
}

/// A write run on a writer's connection in arrival order.
pub(crate) type Task = Box<dyn FnOnce(&mut Connection) + Send>;

pub(crate) enum Job {
    Ingest(IngestJob),
    /// Any other write, run on the writer's connection in arrival order.
    Task(Task),
}

/// Runs jobs until every sender is gone. After each commit, its rollup
/// increments go to `rollups`, and `sent` moves to its last event, before
/// the answers: a reader that got one and finds `sent` past what the rollup
/// writer wrote has it write them first (read-your-writes). `checkpoints`
/// is bumped by the checkpointer after each round (see [`restart_wal`]).
pub(crate) fn run(
    mut conn: Connection,
    jobs: Receiver<Job>,
    rollups: SyncSender<RollupJob>,
    checkpoints: &AtomicU64,
    sent: &AtomicI64,
    mut claims: Claims,
) {
    let mut nodes = NodeCache::default();
    let mut checkpoint_seen = 0;
    let mut carried: Option<Job> = None;
    loop {
        let first = match carried.take() {
            Some(job) => job,
            None => match jobs.recv() {
                Ok(job) => job,
                Err(_) => break,
            },
        };
        let mut batch = match first {
            Job::Task(task) => {
                task(&mut conn);
                continue;
            }
            Job::Ingest(job) => vec![job],
        };
        let mut total = batch[0].len();
        while total < MAX_EVENTS_PER_COMMIT {
            match jobs.try_recv() {
                Ok(Job::Ingest(job)) => {
                    total += job.len();
                    batch.push(job);
                }
                Ok(task) => {
                    carried = Some(task);
                    break;
                }
                Err(_) => break,
            }
        }
        match ingest_batch(&mut conn, &mut nodes, &mut claims, &batch) {
            Ok((outcomes, committed)) => {
                claims.committed();
                if committed.last_id >= committed.first_id {
                    let last = committed.last_id;
                    // Gone only at shutdown, when the stored events roll up
                    // at the next open.
                    if rollups.send(RollupJob::Committed(committed)).is_ok() {
                        sent.fetch_max(last, Ordering::SeqCst);
                    }
                }
                for (job, outcome) in batch.into_iter().zip(outcomes) {
                    let _ = job.reply.send(IngestAnswer { outcome: Ok(outcome), events: job.events });
                }
                // After the answers (a restart may fsync), between two
                // transactions.
                let round = checkpoints.load(Ordering::Relaxed);
                if round != checkpoint_seen {
                    checkpoint_seen = round;
                    restart_wal(&conn);
                }
            }
            Err(e) => {
                // The transaction rolled back: nothing of this group is
                // stored, and the node cache may name rolled-back rows.
                nodes = NodeCache::default();
                claims.forget();
                tracing::error!(error = %e, "ingest transaction failed");
                for job in batch {
                    let outcome = Err(StoreError::Invalid(format!("storing events failed: {e}")));
                    let _ = job.reply.send(IngestAnswer { outcome, events: job.events });
                }
            }
        }
    }
}

/// Makes the next commit write the WAL from its first page again.
///
/// The checkpointer's passive checkpoints never catch up with a busy writer,
/// which begins its next transaction the moment one commits; the WAL would
/// only grow, and the kernel zeroes each new page of the file that a commit
/// appends (a third of the writer's time under load). So after each of the
/// checkpointer's rounds, between two transactions, the writer runs a
/// `RESTART` checkpoint itself: it copies the few frames committed since,
/// and the WAL starts over. It never waits: while a reader still uses old
/// frames it gives up, and the next round tries again.
pub(crate) fn restart_wal(conn: &Connection) {
    let restarted = conn
        .busy_timeout(Duration::ZERO)
        .and_then(|()| conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(())));
    // Whatever happened, the writer waits for locks again afterwards.
    let restored = conn.busy_timeout(BUSY_TIMEOUT);
    if let Err(e) = restarted.and(restored) {
        tracing::warn!(error = %e, "restarting the WAL");
    }
}

/// Sends a closure to a writer (wrapped by `as_job`, say `Job::Task`) and
/// waits for its result.
pub(crate) fn call<J, T: Send + 'static>(
    sender: &SyncSender<J>,
    as_job: fn(Task) -> J,
    f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
) -> Result<T> {
    let (tx, rx) = mpsc::sync_channel(1);
    sender.send(as_job(Box::new(move |conn| drop(tx.send(f(conn)))))).map_err(|_| StoreError::Closed)?;
    rx.recv().map_err(|_| StoreError::Closed)?
}

/// Node row ids by (owner, node id), so each batch does not look them up.
#[derive(Default)]
struct NodeCache(HashMap<(AccountId, String), i64>);

fn node_row(tx: &Transaction, cache: &mut NodeCache, owner: AccountId, node: &str, now_ms: i64) -> Result<i64> {
    if let Some(id) = cache.0.get(&(owner, node.to_owned())) {
        return Ok(*id);
    }
    tx.execute(
        "INSERT OR IGNORE INTO nodes (owner, node, first_seen_ms, last_seen_ms) VALUES (?1, ?2, ?3, ?3)",
        params![owner, node, now_ms],
    )?;
    let id: i64 =
        tx.query_row("SELECT id FROM nodes WHERE owner = ?1 AND node = ?2", params![owner, node], |r| r.get(0))?;
    cache.0.insert((owner, node.to_owned()), id);
    Ok(id)
}

/// Stores a group of jobs in one transaction and returns each job's
/// outcome, and the rollup increments of the events it stored.
fn ingest_batch(
    conn: &mut Connection,
    nodes: &mut NodeCache,
    claims: &mut Claims,
    jobs: &[IngestJob],
) -> Result<(Vec<IngestOutcome>, Committed)> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    claims.begin(&tx)?;
    let hwm: i64 = tx.query_row("SELECT value FROM meta WHERE key = 'event_hwm'", [], |r| r.get(0))?;
    let mut next_id = hwm + 1;
    let mut outcomes = Vec::with_capacity(jobs.len());
    let mut committed = Committed::starting_at(next_id);
    {
        let mut touch = tx.prepare_cached(
            "UPDATE nodes SET last_seen_ms = max(last_seen_ms, ?2), public_ip = coalesce(?3, public_ip) WHERE id = ?1",
        )?;
        let mut store_block = tx.prepare_cached(
            "INSERT INTO event_blocks (first_id, last_id, day, owner, count, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for job in jobs {
            let mut outcome = IngestOutcome::default();
            let mut touched: Vec<i64> = Vec::new();
            let mut last_node: Option<&str> = None;
            for block in &job.events.blocks {
                let events = job.events.events_of(block);
                for e in events {
                    if last_node != Some(e.node.as_str()) {
                        let node = node_row(&tx, nodes, job.owner, &e.node, job.now_ms)?;
                        if !touched.contains(&node) {
                            touched.push(node);
                        }
                        last_node = Some(e.node.as_str());
                    }
                }
                let keys = job.events.keys_of(block);
                let mut is_fresh = Vec::with_capacity(keys.len());
                for key in keys {
                    is_fresh.push(claims.claim(&tx, job.owner, *key)?);
                }
                let fresh: Vec<&Event> = events.iter().zip(&is_fresh).filter(|(_, f)| **f).map(|(e, _)| e).collect();
                let mut service = (u32::MAX, "");
                for e in &fresh {
                    // Events of a block mostly share their service.
                    if service.1 != e.service {
                        service = (committed.service(&e.service), &e.service);
                    }
                    committed.push(Increment {
                        owner: job.owner,
                        ts_ms: e.ts_ms,
                        host: e.remote_host,
                        service: service.0,
                        asn: e.origin.asn,
                        count: 1,
                    });
                }
                outcome.accepted += fresh.len() as u64;
                outcome.duplicates += (events.len() - fresh.len()) as u64;
                if fresh.is_empty() {
                    continue;
                }
                // Some events were stored before: this block holds only the new ones.
                let reencoded;
                let data = if fresh.len() == events.len() {
                    &block.data
                } else {
                    reencoded = block::encode(fresh.iter().copied());
                    &reencoded
                };
                let last_id = next_id + fresh.len() as i64 - 1;
                store_block.execute(params![next_id, last_id, block.day, job.owner, fresh.len() as i64, data])?;
                next_id = last_id + 1;
            }
            let peer = job.peer.map(|p| apiary_model::canonical_ip(p).to_string());
            for node in touched {
                touch.execute(params![node, job.now_ms, peer])?;
            }
            outcomes.push(outcome);
        }
        claims.write(&tx)?;
        tx.execute("UPDATE meta SET value = ?1 WHERE key = 'event_hwm'", [next_id - 1])?;
    }
    tx.commit()?;
    committed.last_id = next_id - 1;
    Ok((outcomes, committed))
}

/// Deletes up to `limit` blocks of raw events of days before `before_day`,
/// then (once no such block is left) the idempotency keys of those days,
/// also in steps; returns how many rows went, 0 when nothing is left to
/// prune. (The raw-event counts of those days go next, in `rollups.db`:
/// `rollup_writer::prune_counts`.)
pub(crate) fn prune_chunk(conn: &mut Connection, before_day: i64, limit: usize) -> Result<u64> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut n = tx.execute(
        "DELETE FROM event_blocks WHERE first_id IN (SELECT first_id FROM event_blocks WHERE day < ?1 LIMIT ?2)",
        params![before_day, (limit / MAX_BLOCK_EVENTS).max(1) as i64],
    )?;
    if n == 0 {
        let cutoff_ms = before_day * apiary_model::time::MS_PER_DAY;
        let owners: Vec<i64> =
            tx.prepare("SELECT id FROM accounts")?.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
        let first_bucket = claims::first_bucket_of_day(&tx, before_day)?;
        for owner in owners {
            n += tx.execute(
                "DELETE FROM event_uids WHERE (owner, ts_ms, uid) IN
                   (SELECT owner, ts_ms, uid FROM event_uids WHERE owner = ?1 AND ts_ms < ?2 LIMIT ?3)",
                params![owner, cutoff_ms, limit as i64],
            )?;
            n += tx.execute(
                "DELETE FROM event_key_chunks WHERE (owner, bucket, seq) IN
                   (SELECT owner, bucket, seq FROM event_key_chunks WHERE owner = ?1 AND bucket < ?2 LIMIT ?3)",
                params![owner, first_bucket, limit as i64],
            )?;
        }
    }
    tx.commit()?;
    Ok(n as u64)
}

pub(crate) fn load_quota(conn: &Connection, account: AccountId, month: i64) -> Result<u64> {
    Ok(conn
        .query_row("SELECT used FROM quota_usage WHERE account = ?1 AND month = ?2", params![account, month], |r| {
            r.get::<_, i64>(0)
        })
        .optional()?
        .unwrap_or(0) as u64)
}
