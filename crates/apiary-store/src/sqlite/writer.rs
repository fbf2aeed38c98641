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
use rustc_hash::FxHashMap;
use sha2::{Digest, Sha256};

use super::block::{self, PreparedBlock, MAX_BLOCK_EVENTS};
use super::host_cache::HostCache;

use crate::types::{AccountId, IngestOutcome, IpHistoryRow};
use crate::{Result, StoreError};

/// Largest number of events committed in one transaction.
const MAX_EVENTS_PER_COMMIT: usize = 50_000;

pub(crate) type Reply<T> = SyncSender<Result<T>>;

pub(crate) struct IngestJob {
    pub owner: AccountId,
    pub peer: Option<IpAddr>,
    pub blocks: Vec<PreparedBlock>,
    pub now_ms: i64,
    pub reply: Reply<IngestOutcome>,
}

impl IngestJob {
    fn len(&self) -> usize {
        self.blocks.iter().map(|b| b.events.len()).sum()
    }
}

type Task = Box<dyn FnOnce(&mut Connection) + Send>;

pub(crate) enum Job {
    Ingest(IngestJob),
    /// Any other write, run on the writer's connection in arrival order.
    Task(Task),
}

/// Runs jobs until every sender is gone. After each commit, the hosts whose
/// IP history it changed are dropped from `history_cache`.
pub(crate) fn run(mut conn: Connection, jobs: Receiver<Job>, history_cache: &HostCache<Vec<IpHistoryRow>>) {
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
        let mut total = batch[0].len();
        while total < MAX_EVENTS_PER_COMMIT {
            match jobs.try_recv() {
                Ok(Job::Ingest(job)) => {
                    total += job.len();
                    batch.push(job);
                }
                Ok(Job::Task(task)) => {
                    deferred = Some(task);
                    break;
                }
                Err(_) => break,
            }
        }
        match ingest_batch(&mut conn, &mut nodes, &batch, history_cache) {
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

/// Rollup increments of one transaction, merged per key before writing so
/// that a host seen a thousand times in a batch costs one upsert, not a
/// thousand.
#[derive(Default)]
struct Rollups<'a> {
    host_hour_all: FxHashMap<(i64, IpAddr), (u64, i64)>,
    host_hour: FxHashMap<(&'a str, i64, IpAddr, AccountId), (u64, i64)>,
    service_hour: FxHashMap<(i64, &'a str, AccountId), u64>,
    ip_day: FxHashMap<(i64, IpAddr, &'a str), (u64, u32)>,
    day_owner: FxHashMap<(i64, AccountId), u64>,
    month_events: FxHashMap<i64, u64>,
    month_service: FxHashMap<(i64, &'a str), u64>,
    month_host: FxHashMap<(i64, IpAddr), ()>,
    /// The month of the last day seen: a calendar conversion per event would
    /// cost the writer thread more than all the integer keys together.
    month_of_day: Option<(i64, i64)>,
}

impl<'a> Rollups<'a> {
    fn add(&mut self, owner: AccountId, e: &'a Event) {
        let host = e.remote_host;
        let hour = hour_number(e.ts_ms);
        let day = day_number(e.ts_ms);
        let month = match self.month_of_day {
            Some((d, m)) if d == day => m,
            _ => {
                let m = month_number(e.ts_ms);
                self.month_of_day = Some((day, m));
                m
            }
        };
        let bump = |v: &mut (u64, i64)| {
            v.0 += 1;
            v.1 = v.1.max(e.ts_ms);
        };
        bump(self.host_hour_all.entry((hour, host)).or_default());
        bump(self.host_hour.entry((e.service.as_str(), hour, host, owner)).or_default());
        *self.service_hour.entry((hour, e.service.as_str(), owner)).or_default() += 1;
        let day_row = self.ip_day.entry((day, host, e.service.as_str())).or_default();
        day_row.0 += 1;
        if e.origin.asn != 0 {
            day_row.1 = e.origin.asn;
        }
        *self.day_owner.entry((day, owner)).or_default() += 1;
        *self.month_events.entry(month).or_default() += 1;
        *self.month_service.entry((month, e.service.as_str())).or_default() += 1;
        self.month_host.entry((month, host)).or_default();
    }

    fn write(&self, tx: &Transaction) -> Result<()> {
        let mut st = tx.prepare_cached(
            "INSERT INTO host_hour_all (hour, host, count, last_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT DO UPDATE SET count = count + excluded.count, last_ms = max(last_ms, excluded.last_ms)",
        )?;
        // Rows go in key order: each B-tree page is then visited once per
        // transaction instead of once per row.
        let mut rows: Vec<_> =
            self.host_hour_all.iter().map(|((hour, host), v)| (*hour, host.to_string(), *v)).collect();
        rows.sort_unstable_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        for (hour, host, (count, last)) in rows {
            st.execute(params![hour, host, count as i64, last])?;
        }
        let mut st = tx.prepare_cached(
            "INSERT INTO host_hour (service, hour, host, owner, count, last_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT DO UPDATE SET count = count + excluded.count, last_ms = max(last_ms, excluded.last_ms)",
        )?;
        let mut rows: Vec<_> = self
            .host_hour
            .iter()
            .map(|((service, hour, host, owner), v)| (*service, *hour, host.to_string(), *owner, *v))
            .collect();
        rows.sort_unstable_by(|a, b| (a.0, a.1, &a.2, a.3).cmp(&(b.0, b.1, &b.2, b.3)));
        for (service, hour, host, owner, (count, last)) in rows {
            st.execute(params![service, hour, host, owner, count as i64, last])?;
        }
        let mut st = tx.prepare_cached(
            "INSERT INTO service_hour (hour, service, owner, count) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT DO UPDATE SET count = count + excluded.count",
        )?;
        for ((hour, service, owner), count) in &self.service_hour {
            st.execute(params![hour, service, owner, *count as i64])?;
        }
        let mut st = tx.prepare_cached(
            "INSERT INTO ip_day (day, host, service, count, asn) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT DO UPDATE SET count = count + excluded.count,
                asn = CASE WHEN excluded.asn != 0 THEN excluded.asn ELSE asn END",
        )?;
        let mut days = Vec::new();
        let mut rows: Vec<_> = self
            .ip_day
            .iter()
            .map(|((day, host, service), count)| (*day, host.to_string(), *service, *count))
            .collect();
        rows.sort_unstable_by(|a, b| (a.0, &a.1, a.2).cmp(&(b.0, &b.1, b.2)));
        for (day, host, service, (count, asn)) in rows {
            st.execute(params![day, host, service, count as i64, asn])?;
            if !days.contains(&day) {
                days.push(day);
            }
        }
        let mut st = tx.prepare_cached("INSERT OR IGNORE INTO days (day) VALUES (?1)")?;
        for day in days {
            st.execute([day])?;
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
        let mut rows: Vec<_> = self.month_host.keys().map(|(month, host)| (*month, host.to_string())).collect();
        rows.sort_unstable();
        for (month, host) in rows {
            *new_hosts.entry(month).or_default() += st.execute(params![month, host])? as i64;
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

/// Stores a group of jobs in one transaction and returns each job's
/// outcome; after the commit, the hosts whose IP history changed are dropped
/// from `history_cache`.
fn ingest_batch(
    conn: &mut Connection,
    nodes: &mut NodeCache,
    jobs: &[IngestJob],
    history_cache: &HostCache<Vec<IpHistoryRow>>,
) -> Result<Vec<IngestOutcome>> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let hwm: i64 = tx.query_row("SELECT value FROM meta WHERE key = 'event_hwm'", [], |r| r.get(0))?;
    let mut next_id = hwm + 1;
    let mut rollups = Rollups::default();
    let mut outcomes = Vec::with_capacity(jobs.len());
    {
        let mut claim =
            tx.prepare_cached("INSERT OR IGNORE INTO event_uids (owner, ts_ms, uid) VALUES (?1, ?2, ?3)")?;
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
            for block in &job.blocks {
                for e in &block.events {
                    if last_node != Some(e.node.as_str()) {
                        let node = node_row(&tx, nodes, job.owner, &e.node, job.now_ms)?;
                        if !touched.contains(&node) {
                            touched.push(node);
                        }
                        last_node = Some(e.node.as_str());
                    }
                }
                // Claim idempotency keys in index order (see Rollups::write).
                let mut keys: Vec<(i64, i64, usize)> = block
                    .events
                    .iter()
                    .enumerate()
                    .map(|(i, e)| (e.ts_ms, event_uid(job.owner, &e.node, &e.id), i))
                    .collect();
                keys.sort_unstable();
                let mut is_fresh = vec![false; block.events.len()];
                for (ts_ms, uid, i) in keys {
                    is_fresh[i] = claim.execute(params![job.owner, ts_ms, uid])? == 1;
                }
                let fresh: Vec<&Event> =
                    block.events.iter().zip(&is_fresh).filter(|(_, f)| **f).map(|(e, _)| e).collect();
                for e in &fresh {
                    rollups.add(job.owner, e);
                }
                outcome.accepted += fresh.len() as u64;
                outcome.duplicates += (block.events.len() - fresh.len()) as u64;
                if fresh.is_empty() {
                    continue;
                }
                // Some events were stored before: this block holds only the new ones.
                let reencoded;
                let data = if fresh.len() == block.events.len() {
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
        tx.execute("UPDATE meta SET value = ?1 WHERE key = 'event_hwm'", [next_id - 1])?;
    }
    rollups.write(&tx)?;
    tx.commit()?;
    history_cache.invalidate(rollups.ip_day.keys().map(|(_, host, _)| *host));
    Ok(outcomes)
}

/// Deletes up to `limit` blocks of raw events of days before `before_day`,
/// then (once no such block is left) the idempotency keys and raw-event
/// counts of those days, also in steps; returns how many rows went, 0 when
/// nothing is left to prune. Dropping the counts keeps `/sensor-data/count`
/// in agreement with what `/sensor-data` can page.
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
        for owner in owners {
            n += tx.execute(
                "DELETE FROM event_uids WHERE (owner, ts_ms, uid) IN
                   (SELECT owner, ts_ms, uid FROM event_uids WHERE owner = ?1 AND ts_ms < ?2 LIMIT ?3)",
                params![owner, cutoff_ms, limit as i64],
            )?;
        }
        if n == 0 {
            tx.execute("DELETE FROM day_owner WHERE day < ?1", [before_day])?;
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
