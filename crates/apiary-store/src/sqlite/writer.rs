//! The single writer thread.
//!
//! SQLite allows one writer at a time, so all writes go through one thread
//! that owns the write connection. Ingest batches that queue up while a
//! transaction runs are committed together (group commit): under load, many
//! HTTP requests share one fsync-free WAL commit, and each caller is answered
//! only after the commit that made its events durable.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::mpsc::{self, Receiver, SyncSender};

use apiary_model::time::{day_number, hour_number, month_number};
use apiary_model::Event;
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use sha2::{Digest, Sha256};

use crate::types::{AccountId, IngestOutcome};
use crate::{Result, StoreError};

/// Largest number of events committed in one transaction.
const MAX_EVENTS_PER_COMMIT: usize = 50_000;

pub(crate) type Reply<T> = SyncSender<Result<T>>;

pub(crate) struct IngestJob {
    pub owner: AccountId,
    pub peer: Option<IpAddr>,
    pub events: Vec<Event>,
    pub now_ms: i64,
    pub reply: Reply<IngestOutcome>,
}

type Task = Box<dyn FnOnce(&mut Connection) + Send>;

pub(crate) enum Job {
    Ingest(IngestJob),
    /// Any other write, run on the writer's connection in arrival order.
    Task(Task),
}

/// Runs jobs until every sender is gone.
pub(crate) fn run(mut conn: Connection, jobs: Receiver<Job>) {
    let mut nodes = NodeCache::default();
    let mut deferred: Option<Task> = None;
    while let Ok(first) = jobs.recv() {
        let mut batch = match first {
            Job::Task(task) => {
                task(&mut conn);
                continue;
            }
            Job::Ingest(job) => vec![job],
        };
        let mut total = batch[0].events.len();
        while total < MAX_EVENTS_PER_COMMIT {
            match jobs.try_recv() {
                Ok(Job::Ingest(job)) => {
                    total += job.events.len();
                    batch.push(job);
                }
                Ok(Job::Task(task)) => {
                    deferred = Some(task);
                    break;
                }
                Err(_) => break,
            }
        }
        match ingest_batch(&mut conn, &mut nodes, &batch) {
            Ok(outcomes) => {
                for (job, outcome) in batch.iter().zip(outcomes) {
                    let _ = job.reply.send(Ok(outcome));
                }
            }
            Err(e) => {
                // The transaction rolled back: nothing of this group is
                // stored, and the node cache may name rolled-back rows.
                nodes = NodeCache::default();
                tracing::error!(error = %e, "ingest transaction failed");
                for job in &batch {
                    let _ = job.reply.send(Err(StoreError::Invalid(format!("storing events failed: {e}"))));
                }
            }
        }
        if let Some(task) = deferred.take() {
            task(&mut conn);
        }
    }
}

/// Sends a closure to the writer and waits for its result.
pub(crate) fn call<T: Send + 'static>(
    sender: &SyncSender<Job>,
    f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
) -> Result<T> {
    let (tx, rx) = mpsc::sync_channel(1);
    sender.send(Job::Task(Box::new(move |conn| drop(tx.send(f(conn)))))).map_err(|_| StoreError::Closed)?;
    rx.recv().map_err(|_| StoreError::Closed)?
}

/// Node row ids by (owner, node id), so each batch does not look them up.
#[derive(Default)]
struct NodeCache(HashMap<(AccountId, String), i64>);

/// The idempotency key of an event: who sent it, from which node, with which
/// sensor-assigned id. 64 bits of SHA-256; the unique index pairs it with the
/// event's timestamp, so a collision would need the same millisecond too.
pub(crate) fn event_uid(owner: AccountId, node: &str, id: &str) -> i64 {
    let mut h = Sha256::new();
    h.update(owner.to_le_bytes());
    h.update(node.as_bytes());
    h.update([0]);
    h.update(id.as_bytes());
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_le_bytes(first)
}

#[derive(Default)]
struct Rollups<'a> {
    host_hour_all: HashMap<(i64, String), (u64, i64)>,
    host_hour: HashMap<(&'a str, i64, String, AccountId), (u64, i64)>,
    service_hour: HashMap<(i64, &'a str, AccountId), u64>,
    ip_day: HashMap<(String, i64, &'a str), u64>,
    day_owner: HashMap<(i64, AccountId), u64>,
    month_events: HashMap<i64, u64>,
    month_service: HashMap<(i64, &'a str), u64>,
    month_host: HashMap<(i64, String), ()>,
}

impl<'a> Rollups<'a> {
    fn add(&mut self, owner: AccountId, e: &'a Event, host: &str) {
        let hour = hour_number(e.ts_ms);
        let day = day_number(e.ts_ms);
        let month = month_number(e.ts_ms);
        let bump = |v: &mut (u64, i64)| {
            v.0 += 1;
            v.1 = v.1.max(e.ts_ms);
        };
        bump(self.host_hour_all.entry((hour, host.to_owned())).or_default());
        bump(self.host_hour.entry((e.service.as_str(), hour, host.to_owned(), owner)).or_default());
        *self.service_hour.entry((hour, e.service.as_str(), owner)).or_default() += 1;
        *self.ip_day.entry((host.to_owned(), day, e.service.as_str())).or_default() += 1;
        *self.day_owner.entry((day, owner)).or_default() += 1;
        *self.month_events.entry(month).or_default() += 1;
        *self.month_service.entry((month, e.service.as_str())).or_default() += 1;
        self.month_host.entry((month, host.to_owned())).or_default();
    }

    fn write(self, tx: &Transaction) -> Result<()> {
        let mut st = tx.prepare_cached(
            "INSERT INTO host_hour_all (hour, host, count, last_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT DO UPDATE SET count = count + excluded.count, last_ms = max(last_ms, excluded.last_ms)",
        )?;
        for ((hour, host), (count, last)) in &self.host_hour_all {
            st.execute(params![hour, host, *count as i64, last])?;
        }
        let mut st = tx.prepare_cached(
            "INSERT INTO host_hour (service, hour, host, owner, count, last_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT DO UPDATE SET count = count + excluded.count, last_ms = max(last_ms, excluded.last_ms)",
        )?;
        for ((service, hour, host, owner), (count, last)) in &self.host_hour {
            st.execute(params![service, hour, host, owner, *count as i64, last])?;
        }
        let mut st = tx.prepare_cached(
            "INSERT INTO service_hour (hour, service, owner, count) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT DO UPDATE SET count = count + excluded.count",
        )?;
        for ((hour, service, owner), count) in &self.service_hour {
            st.execute(params![hour, service, owner, *count as i64])?;
        }
        let mut st = tx.prepare_cached(
            "INSERT INTO ip_day (host, day, service, count) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT DO UPDATE SET count = count + excluded.count",
        )?;
        for ((host, day, service), count) in &self.ip_day {
            st.execute(params![host, day, service, *count as i64])?;
        }
        let mut st = tx.prepare_cached(
            "INSERT INTO day_owner (day, owner, count) VALUES (?1, ?2, ?3)
             ON CONFLICT DO UPDATE SET count = count + excluded.count",
        )?;
        for ((day, owner), count) in &self.day_owner {
            st.execute(params![day, owner, *count as i64])?;
        }
        let mut new_hosts: HashMap<i64, i64> = HashMap::new();
        let mut st = tx.prepare_cached("INSERT OR IGNORE INTO month_host (month, host) VALUES (?1, ?2)")?;
        for (month, host) in self.month_host.keys() {
            *new_hosts.entry(*month).or_default() += st.execute(params![month, host])? as i64;
        }
        let mut st = tx.prepare_cached(
            "INSERT INTO month_stats (month, events, hosts) VALUES (?1, ?2, ?3)
             ON CONFLICT DO UPDATE SET events = events + excluded.events, hosts = hosts + excluded.hosts",
        )?;
        for (month, count) in &self.month_events {
            st.execute(params![month, *count as i64, new_hosts.get(month).copied().unwrap_or(0)])?;
        }
        let mut st = tx.prepare_cached(
            "INSERT INTO month_service (month, service, count) VALUES (?1, ?2, ?3)
             ON CONFLICT DO UPDATE SET count = count + excluded.count",
        )?;
        for ((month, service), count) in &self.month_service {
            st.execute(params![month, service, *count as i64])?;
        }
        Ok(())
    }
}

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

fn ingest_batch(conn: &mut Connection, nodes: &mut NodeCache, jobs: &[IngestJob]) -> Result<Vec<IngestOutcome>> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let hwm: i64 = tx.query_row("SELECT value FROM meta WHERE key = 'event_hwm'", [], |r| r.get(0))?;
    let mut next_id = hwm + 1;
    let mut rollups = Rollups::default();
    let mut outcomes = Vec::with_capacity(jobs.len());
    {
        let mut insert = tx.prepare_cached(
            "INSERT OR IGNORE INTO events (id, uid, ts_ms, day, owner, node, session, protocol, kind, service,
                local_host, local_port, remote_host, remote_port, data)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
        )?;
        let mut touch = tx.prepare_cached(
            "UPDATE nodes SET last_seen_ms = max(last_seen_ms, ?2), public_ip = coalesce(?3, public_ip) WHERE id = ?1",
        )?;
        for job in jobs {
            let mut outcome = IngestOutcome::default();
            let mut touched: Vec<i64> = Vec::new();
            for e in &job.events {
                let node = node_row(&tx, nodes, job.owner, &e.node, job.now_ms)?;
                if !touched.contains(&node) {
                    touched.push(node);
                }
                let host = e.remote_host.to_string();
                let stored = insert.execute(params![
                    next_id,
                    event_uid(job.owner, &e.node, &e.id),
                    e.ts_ms,
                    day_number(e.ts_ms),
                    job.owner,
                    node,
                    e.session,
                    e.protocol.code(),
                    e.kind.code(),
                    e.service,
                    e.local_host.to_string(),
                    e.local_port,
                    host,
                    e.remote_port,
                    e.data,
                ])?;
                if stored == 1 {
                    next_id += 1;
                    outcome.accepted += 1;
                    rollups.add(job.owner, e, &host);
                } else {
                    outcome.duplicates += 1;
                }
            }
            let peer = job.peer.map(|p| apiary_model::canonical_ip(p).to_string());
            for node in touched {
                touch.execute(params![node, job.now_ms, peer])?;
            }
            outcomes.push(outcome);
        }
    }
    rollups.write(&tx)?;
    tx.execute("UPDATE meta SET value = ?1 WHERE key = 'event_hwm'", [next_id - 1])?;
    tx.commit()?;
    Ok(outcomes)
}

/// Deletes up to `limit` raw events of days before `before_day`; returns how
/// many went. Also drops those days' raw-event counts, so that
/// `/sensor-data/count` always agrees with what `/sensor-data` can page.
pub(crate) fn prune_chunk(conn: &mut Connection, before_day: i64, limit: usize) -> Result<u64> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let n = tx.execute(
        "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE day < ?1 ORDER BY day LIMIT ?2)",
        params![before_day, limit as i64],
    )?;
    if n == 0 {
        tx.execute("DELETE FROM day_owner WHERE day < ?1", [before_day])?;
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
