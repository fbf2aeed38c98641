//! Payload history and CVE sightings: their own database (`payloads.db`) and
//! their own writer thread.
//!
//! Both are sets, kept forever: a (day, service, attribute, value) record, the
//! (value, day, host) that sent it, the (year, host), the (CVE, day, host).
//! A set insert is idempotent, which is what lets them live apart from the
//! events: ingest sends a batch's facts here and its events to the event
//! writer at the same time, and answers only when both have committed. If
//! either fails, the sender gets an error and delivers the batch again; the
//! event writer then counts its events as duplicates, and the facts of every
//! event, duplicate or not, are written again here, so nothing is lost and
//! nothing is counted twice. The event writer's transactions, ingest's
//! bottleneck, carry none of this work.
//! Honeypot traffic repeats itself (the same user agent, path and login from
//! thousands of hosts), so almost every fact in a batch is already stored.
//! [`PayloadWriter`] remembers recently written keys and value ids across
//! batches, so a repeated fact costs a hash lookup instead of a B-tree probe.
//! The memory is bounded: a cache that grows past its cap is simply cleared,
//! which costs only redundant (ignored) inserts, never a missing row.
//! After a failed transaction every cache is cleared, because it may name rows
//! that were rolled back.
//!
//! Who sent what (the two chunk logs and the per-year hosts) is keyed by
//! host, so writing it with each commit touched a page per host: most of
//! this writer's work. Each commit instead appends its new (value, day,
//! host) facts as one row of `host_fact_log`, a sequential write, and keeps
//! them in memory ([`Unfolded`]); they are folded into the chunk tables in a
//! transaction of their own once a second, when ingest pauses, when a
//! reader asks (`SqliteStore::settle_payloads`), and at shutdown. A run
//! killed before a fold leaves its facts in the log, and the next open
//! folds them ([`recover`]) before anyone reads.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use apiary_model::time::{day_number, year_of_day};
use apiary_model::{Event, PayloadFacts};
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use rustc_hash::{FxHashMap, FxHashSet};

use super::chunk;
use super::host_cache::HostCache;
use super::rollup_writer::{RollupFlush, IDLE_GAP};
use super::writer::Reply;
use crate::types::CveSighting;
use crate::{Result, StoreError};

/// Most events' facts committed in one transaction.
const MAX_FACTS_PER_COMMIT: usize = 50_000;

/// A batch's payload facts, merged on the ingesting thread: each value, day
/// row, who-sent-what fact and CVE sighting once. Honeypot traffic repeats
/// itself, so this is a fraction of the events' facts, and the writer
/// merges only these; the rest (every repeated value's text) is dropped
/// where it was allocated.
#[derive(Debug, Default)]
pub(crate) struct FactBatch {
    /// Distinct values in arrival order (ids follow it, so that id order is
    /// first-seen order), each with the first day it appears on.
    values: Vec<(apiary_model::PayloadValue, i64)>,
    /// (day, service, attribute, value).
    day_rows: Vec<(i64, String, &'static str, [u8; 16])>,
    /// (value, day, host): who sent what.
    host_rows: Vec<([u8; 16], i64, IpAddr)>,
    cves: Vec<(&'static str, i64, IpAddr)>,
    /// Events with facts, the measure of a commit's size.
    events: usize,
}

impl FactBatch {
    pub(crate) fn is_empty(&self) -> bool {
        self.values.is_empty() && self.cves.is_empty()
    }
}

/// Builds a [`FactBatch`], one event's facts at a time.
#[derive(Default)]
struct FactMerger<'a> {
    value_index: FxHashMap<[u8; 16], usize>,
    values: Vec<(apiary_model::PayloadValue, i64)>,
    day_rows: FxHashSet<(i64, &'a str, &'static str, [u8; 16])>,
    host_rows: FxHashSet<([u8; 16], i64, IpAddr)>,
    cves: FxHashSet<(&'static str, i64, IpAddr)>,
    events: usize,
}

impl<'a> FactMerger<'a> {
    fn add(&mut self, day: i64, service: &'a str, host: IpAddr, facts: PayloadFacts) {
        self.events += 1;
        for v in facts.values {
            self.day_rows.insert((day, service, v.attribute.unwrap_or(""), v.md5));
            self.host_rows.insert((v.md5, day, host));
            match self.value_index.get(&v.md5) {
                Some(&i) => self.values[i].1 = self.values[i].1.min(day),
                None => {
                    self.value_index.insert(v.md5, self.values.len());
                    self.values.push((v, day));
                }
            }
        }
        for cve in facts.cves {
            self.cves.insert((cve, day, host));
        }
    }

    fn finish(self) -> FactBatch {
        FactBatch {
            values: self.values,
            day_rows: self.day_rows.into_iter().map(|(day, service, a, v)| (day, service.to_owned(), a, v)).collect(),
            host_rows: self.host_rows.into_iter().collect(),
            cves: self.cves.into_iter().collect(),
            events: self.events,
        }
    }
}

/// Moves the facts out of a batch's events (the event writer has no use for
/// them) and merges them.
pub(crate) fn take_facts(events: &mut [Event]) -> FactBatch {
    let mut merged = FactMerger::default();
    let mut day_of = (i64::MIN, 0);
    for e in events.iter_mut() {
        if e.facts.is_empty() {
            continue;
        }
        let facts = std::mem::take(&mut e.facts);
        let e: &Event = e;
        if day_of.0 != e.ts_ms {
            day_of = (e.ts_ms, day_number(e.ts_ms));
        }
        merged.add(day_of.1, &e.service, e.remote_host, facts);
    }
    merged.finish()
}

pub(crate) enum PayloadJob {
    /// A batch's facts, answered once committed.
    Facts { facts: FactBatch, reply: Reply<()> },
    /// Folds the logged who-sent-what facts into the chunk tables, then
    /// answers: a reader's request (read-your-writes).
    Settle(Reply<()>),
}

/// Most logged facts held in memory before they are folded (about 60 bytes
/// each), besides the rollups' own limit on keys.
const MAX_UNFOLDED_FACTS: usize = 1_000_000;

/// The payload writer thread: commits queued jobs together (group commit, as
/// the event writer does) until every sender is gone, then folds what is
/// left in the log.
/// After each commit, the hosts with new CVE sightings are dropped from
/// `cve_cache`. `unfolded` is set, before the answers, while committed
/// facts wait in the log; readers of who sent what then settle them.
/// `fold` says when the log is folded besides the age and size limits, as
/// for the event writer's rollups.
/// After a checkpointer round (`rounds` moved), the WAL starts over, as the
/// event writer's does (see `writer::restart_wal`).
pub(crate) fn run(
    mut conn: Connection,
    jobs: Receiver<PayloadJob>,
    fold: RollupFlush,
    rounds: &AtomicU64,
    unfolded: &AtomicBool,
    cve_cache: &HostCache<Vec<CveSighting>>,
) {
    let mut writer = PayloadWriter::default();
    let mut round_seen = 0;
    let mut carried: Option<PayloadJob> = None;
    let fold_now = |conn: &mut Connection, writer: &mut PayloadWriter| {
        writer.fold_logged(conn);
        unfolded.store(!writer.unfolded.is_empty(), Ordering::SeqCst);
    };
    loop {
        let next = match (carried.take(), writer.unfolded.age()) {
            (Some(job), _) => Ok(job),
            (None, None) => jobs.recv().map_err(|_| RecvTimeoutError::Disconnected),
            (None, Some(age)) => {
                let due = fold.interval().saturating_sub(age);
                jobs.recv_timeout(if fold == RollupFlush::WhenIdle { due.min(IDLE_GAP) } else { due })
            }
        };
        let (mut group, mut total) = match next {
            Ok(PayloadJob::Facts { facts, reply }) => (vec![(facts, reply)], 0),
            Ok(PayloadJob::Settle(reply)) => {
                fold_now(&mut conn, &mut writer);
                let _ = reply.send(Ok(()));
                continue;
            }
            Err(RecvTimeoutError::Timeout) => {
                fold_now(&mut conn, &mut writer);
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        total += group[0].0.events;
        while total < MAX_FACTS_PER_COMMIT {
            match jobs.try_recv() {
                Ok(PayloadJob::Facts { facts, reply }) => {
                    total += facts.events;
                    group.push((facts, reply));
                }
                Ok(settle) => {
                    carried = Some(settle);
                    break;
                }
                Err(_) => break,
            }
        }
        let result = (|| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let batches: Vec<&FactBatch> = group.iter().map(|(facts, _)| facts).collect();
            let hosts: Vec<IpAddr> = batches.iter().flat_map(|b| &b.cves).map(|(_, _, host)| *host).collect();
            let logged = writer.write(&tx, &batches)?;
            tx.commit()?;
            writer.unfolded.extend(logged);
            cve_cache.invalidate(hosts);
            Ok::<_, StoreError>(())
        })();
        if let Err(e) = &result {
            tracing::error!(error = %e, "payload history transaction failed");
            writer.reset();
        }
        // Before the answers: whoever got one and reads next must see that
        // facts wait in the log.
        unfolded.store(!writer.unfolded.is_empty(), Ordering::SeqCst);
        for (_, reply) in group {
            let _ = reply.send(match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(StoreError::Invalid(format!("storing payload history failed: {e}"))),
            });
        }
        // Between transactions and after the answers: a restart may copy
        // the frames committed since the checkpointer's round, and fsync.
        let round = rounds.load(Ordering::Relaxed);
        if round != round_seen {
            round_seen = round;
            super::writer::restart_wal(&conn);
        }
        if writer.unfolded.age().is_some_and(|age| age >= fold.interval())
            || writer.unfolded.len() >= fold.max_keys().min(MAX_UNFOLDED_FACTS)
        {
            fold_now(&mut conn, &mut writer);
        }
    }
    fold_now(&mut conn, &mut writer);
}

/// Before anyone reads: folds what a killed run left in `host_fact_log`.
pub(crate) fn recover(conn: &mut Connection) -> Result<()> {
    let mut writer = PayloadWriter { unfolded: Unfolded::load(conn)?, ..PayloadWriter::default() };
    if writer.unfolded.is_empty() {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    writer.fold(&tx)?;
    tx.commit()?;
    Ok(())
}

/// One commit's new who-sent-what facts: their `host_fact_log` row, and the
/// facts.
type Logged = (i64, Vec<(ValueId, i64, IpAddr)>);

/// Who-sent-what facts committed to `host_fact_log` and not yet folded into
/// the chunk tables, grouped as the fold writes them.
#[derive(Default)]
struct Unfolded {
    by_value: FxHashMap<(ValueId, i64), Vec<IpAddr>>,
    by_host: FxHashMap<(IpAddr, i64), Vec<ValueId>>,
    /// The log rows they came from. Only these are deleted when they are
    /// folded: another process sharing the database (`apiary ingest` beside
    /// a server) logs rows of its own in between, and folds them itself.
    seqs: Vec<i64>,
    facts: usize,
    since: Option<Instant>,
}

impl Unfolded {
    fn extend(&mut self, (seq, facts): Logged) {
        if facts.is_empty() {
            return;
        }
        self.seqs.push(seq);
        self.since.get_or_insert_with(Instant::now);
        self.facts += facts.len();
        for (value, day, host) in facts {
            self.by_value.entry((value, day)).or_default().push(host);
            self.by_host.entry((host, day)).or_default().push(value);
        }
    }

    /// Everything in the log, as a killed run left it.
    fn load(conn: &Connection) -> Result<Unfolded> {
        let mut unfolded = Unfolded::default();
        let mut st = conn.prepare("SELECT seq, facts FROM host_fact_log ORDER BY seq")?;
        let mut rows = st.query([])?;
        while let Some(row) = rows.next()? {
            let facts = chunk::decode_facts(row.get_ref(1)?.as_blob().map_err(rusqlite::Error::from)?)
                .map_err(|e| StoreError::Invalid(e.to_string()))?;
            unfolded.extend((row.get(0)?, facts));
        }
        Ok(unfolded)
    }

    fn is_empty(&self) -> bool {
        self.seqs.is_empty()
    }

    fn len(&self) -> usize {
        self.facts
    }

    fn age(&self) -> Option<Duration> {
        self.since.map(|t| t.elapsed())
    }
}

/// Most keys each cache holds before it is cleared (roughly 40 bytes each).
const CACHE_CAP: usize = 200_000;
/// Most (value, day, host) fingerprints remembered (about 18 bytes each).
/// The one set that grows with the number of hosts, so it holds 64-bit
/// fingerprints rather than keys: a false "already stored" needs two keys'
/// fingerprints to collide, about one chance in 10^13 per lookup when full.
const HOST_CACHE_CAP: usize = 1_000_000;

type ValueId = i64;
/// A service name's small integer in this writer's interning table.
type ServiceId = u32;

/// Caches that live as long as the writer thread, and the facts it logged
/// but has not folded yet.
#[derive(Default)]
struct PayloadWriter {
    value_ids: FxHashMap<[u8; 16], ValueId>,
    services: FxHashMap<String, ServiceId>,
    day_rows: FxHashSet<(i64, ServiceId, &'static str, ValueId)>,
    host_rows: FxHashSet<u64>,
    host_years: FxHashSet<(i32, IpAddr)>,
    cves: FxHashSet<(&'static str, i64, IpAddr)>,
    unfolded: Unfolded,
}

/// A well-mixed 64-bit fingerprint of a (value, day, host) key: each part
/// goes through MurmurHash3's finalizer in turn, so every bit of the key
/// moves every bit of the result, unlike FxHash, at a fraction of SipHash's
/// cost (SipHash here was a twentieth of this thread's time).
fn host_row_fingerprint(value: ValueId, day: i64, host: IpAddr) -> u64 {
    fn mix(h: u64, part: u64) -> u64 {
        let mut x = (h ^ part).wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        x ^ (x >> 33)
    }
    let h = mix(mix(0x9e37_79b9_7f4a_7c15, value as u64), day as u64);
    match host {
        IpAddr::V4(a) => mix(mix(h, 4), u64::from(u32::from(a))),
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            mix(mix(mix(h, 6), (bits >> 64) as u64), bits as u64)
        }
    }
}

impl PayloadWriter {
    /// Writes the facts of a commit's batches, logging who sent what: the
    /// logged facts are for [`Unfolded`] once the transaction commits.
    fn write(&mut self, tx: &Transaction, batches: &[&FactBatch]) -> Result<Logged> {
        if batches.iter().all(|b| b.is_empty()) {
            return Ok((0, Vec::new()));
        }
        self.bound_caches();
        self.write_values(tx, batches)?;
        self.write_day_rows(tx, batches)?;
        let logged = self.log_host_rows(tx, batches)?;
        self.write_cves(tx, batches)?;
        Ok(logged)
    }

    /// After a failed transaction: the caches may name rows that were rolled
    /// back, so they go. The unfolded facts stay: they joined [`Unfolded`]
    /// only once their own transactions had committed.
    fn reset(&mut self) {
        let unfolded = std::mem::take(&mut self.unfolded);
        *self = PayloadWriter { unfolded, ..PayloadWriter::default() };
    }

    /// Folds the logged facts in a transaction of their own. On failure
    /// they stay logged and in memory, and the next fold tries again.
    fn fold_logged(&mut self, conn: &mut Connection) {
        if self.unfolded.is_empty() {
            return;
        }
        let folded = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(StoreError::from)
            .and_then(|tx| {
                self.fold(&tx)?;
                Ok(tx.commit()?)
            });
        match folded {
            Ok(()) => self.unfolded = Unfolded::default(),
            Err(e) => {
                tracing::error!(error = %e, "folding payload facts failed; will retry");
                // The per-year cache may name rows that were rolled back.
                self.host_years.clear();
            }
        }
    }

    /// Appends, per (value, day), one chunk of the hosts newly seen sending
    /// it and per (host, day) one chunk of the values it newly sent, records
    /// each host under its year, and deletes the log rows folded.
    fn fold(&mut self, tx: &Transaction) -> Result<()> {
        if self.unfolded.is_empty() {
            return Ok(());
        }
        // One sequence number per fold keeps each chunk's key unique.
        let seq: i64 = tx.query_row(
            "INSERT INTO payload_meta (key, value) VALUES ('chunk_seq', 1)
             ON CONFLICT DO UPDATE SET value = value + 1 RETURNING value",
            [],
            |r| r.get(0),
        )?;
        // Chunks sorted within, rows in key order (each B-tree page is then
        // visited once). Sorting in place keeps the facts should this fail.
        let mut rows: Vec<_> = self.unfolded.by_value.iter_mut().collect();
        rows.sort_unstable_by_key(|(key, _)| **key);
        let mut st =
            tx.prepare_cached("INSERT INTO value_host_chunks (value, day, seq, hosts) VALUES (?1, ?2, ?3, ?4)")?;
        for (&(value, day), hosts) in rows {
            hosts.sort_unstable();
            st.execute(params![value, day, seq, chunk::encode_hosts(hosts)])?;
        }
        let mut rows: Vec<_> =
            self.unfolded.by_host.iter_mut().map(|(&(host, day), ids)| (chunk::IpKey::of(host), day, ids)).collect();
        rows.sort_unstable_by(|a, b| (a.0.as_bytes(), a.1).cmp(&(b.0.as_bytes(), b.1)));
        let mut st =
            tx.prepare_cached("INSERT INTO host_value_chunks (host, day, seq, value_ids) VALUES (?1, ?2, ?3, ?4)")?;
        for (host, day, ids) in rows {
            ids.sort_unstable();
            st.execute(params![host.as_bytes(), day, seq, chunk::encode_ids(ids)])?;
        }
        self.write_host_years(tx)?;
        let mut st = tx.prepare_cached("DELETE FROM host_fact_log WHERE seq = ?1")?;
        for seq in &self.unfolded.seqs {
            st.execute([seq])?;
        }
        Ok(())
    }

    fn bound_caches(&mut self) {
        if self.value_ids.len() > CACHE_CAP {
            self.value_ids.clear();
        }
        if self.services.len() > CACHE_CAP / 100 {
            // Interned ids are part of the day-row keys: drop both together.
            self.services.clear();
            self.day_rows.clear();
        }
        if self.day_rows.len() > CACHE_CAP {
            self.day_rows.clear();
        }
        if self.host_rows.len() > HOST_CACHE_CAP {
            self.host_rows.clear();
        }
        if self.host_years.len() > CACHE_CAP {
            self.host_years.clear();
        }
        if self.cves.len() > CACHE_CAP {
            self.cves.clear();
        }
    }

    /// Gives every value of the batches its row id, inserting new values.
    fn write_values(&mut self, tx: &Transaction, batches: &[&FactBatch]) -> Result<()> {
        // The values not known yet, in arrival order, with the first day
        // any batch of the commit saw them on.
        let mut first_days: FxHashMap<[u8; 16], i64> = FxHashMap::default();
        let mut arrival = Vec::new();
        for (v, day) in batches.iter().flat_map(|b| &b.values) {
            if self.value_ids.contains_key(&v.md5) {
                continue;
            }
            let first = first_days.entry(v.md5).or_insert_with(|| {
                arrival.push(v);
                *day
            });
            *first = (*first).min(*day);
        }
        if arrival.is_empty() {
            return Ok(());
        }
        let mut find = tx.prepare_cached("SELECT id FROM payload_values WHERE md5 = ?1")?;
        let mut insert = tx.prepare_cached(
            "INSERT INTO payload_values (md5, value, truncated, first_day) VALUES (?1, ?2, ?3, ?4) RETURNING id",
        )?;
        for v in arrival {
            let day = first_days.get(&v.md5).copied().unwrap_or_default();
            let id = match find.query_row([&v.md5[..]], |r| r.get(0)).optional()? {
                Some(id) => id,
                None => insert.query_row(params![&v.md5[..], v.value, v.truncated, day], |r| r.get(0))?,
            };
            self.value_ids.insert(v.md5, id);
        }
        Ok(())
    }

    fn value_id(&self, md5: &[u8; 16]) -> ValueId {
        // write_values gave every value of the batch an id just before.
        self.value_ids.get(md5).copied().unwrap_or_default()
    }

    fn service_id(&mut self, tx: &Transaction, service: &str) -> Result<ServiceId> {
        if let Some(id) = self.services.get(service) {
            return Ok(*id);
        }
        tx.prepare_cached("INSERT OR IGNORE INTO payload_services (service) VALUES (?1)")?.execute([service])?;
        let id = self.services.len() as ServiceId;
        self.services.insert(service.to_owned(), id);
        Ok(id)
    }

    fn write_day_rows(&mut self, tx: &Transaction, batches: &[&FactBatch]) -> Result<()> {
        let mut rows = Vec::new();
        for (day, service, attribute, md5) in batches.iter().flat_map(|b| &b.day_rows) {
            let key = (*day, self.service_id(tx, service)?, *attribute, self.value_id(md5));
            if self.day_rows.insert(key) {
                rows.push((*day, service.as_str(), *attribute, key.3));
            }
        }
        rows.sort_unstable();
        let mut st = tx.prepare_cached(
            "INSERT OR IGNORE INTO payload_day (day, service, attribute, value) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for (day, service, attribute, value) in rows {
            st.execute(params![day, service, attribute, value])?;
        }
        Ok(())
    }

    /// Logs, as one `host_fact_log` row, the (value, day, host) facts of the
    /// batches not written before.
    fn log_host_rows(&mut self, tx: &Transaction, batches: &[&FactBatch]) -> Result<Logged> {
        let mut facts = Vec::new();
        for &(md5, day, host) in batches.iter().flat_map(|b| &b.host_rows) {
            let value = self.value_id(&md5);
            if self.host_rows.insert(host_row_fingerprint(value, day, host)) {
                facts.push((value, day, host));
            }
        }
        if facts.is_empty() {
            return Ok((0, facts));
        }
        let seq = tx
            .prepare_cached("INSERT INTO host_fact_log (facts) VALUES (?1) RETURNING seq")?
            .query_row([chunk::encode_facts(&facts)], |r| r.get(0))?;
        Ok((seq, facts))
    }

    /// The year of each (host, day) folded, once per host.
    fn write_host_years(&mut self, tx: &Transaction) -> Result<()> {
        // A calendar conversion per host is not free; most share a day.
        let mut last: Option<(i64, i32)> = None;
        let mut year_of = |day: i64| match last {
            Some((d, y)) if d == day => y,
            _ => {
                let y = year_of_day(day);
                last = Some((day, y));
                y
            }
        };
        let mut rows: Vec<_> = self
            .unfolded
            .by_host
            .keys()
            .map(|&(host, day)| (year_of(day), host))
            .filter(|key| self.host_years.insert(*key))
            .map(|(year, host)| (year, host.to_string()))
            .collect();
        rows.sort_unstable();
        let mut st = tx.prepare_cached("INSERT OR IGNORE INTO payload_host_years (year, host) VALUES (?1, ?2)")?;
        for (year, host) in rows {
            st.execute(params![year, host])?;
        }
        Ok(())
    }

    fn write_cves(&mut self, tx: &Transaction, batches: &[&FactBatch]) -> Result<()> {
        let mut rows: Vec<_> = batches
            .iter()
            .flat_map(|b| &b.cves)
            .filter(|key| self.cves.insert(**key))
            .map(|(cve, day, host)| (*cve, *day, host.to_string()))
            .collect();
        rows.sort_unstable();
        let mut st = tx.prepare_cached("INSERT OR IGNORE INTO cve_sightings (cve, day, host) VALUES (?1, ?2, ?3)")?;
        for (cve, day, host) in rows {
            st.execute(params![cve, day, host])?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::{schema, SqliteOptions, SqliteStore};
    use crate::{Page, Store};
    use apiary_model::PayloadValue;

    #[test]
    fn fingerprints_of_neighbouring_keys_differ() {
        let mut seen = FxHashSet::default();
        let mut keys = 0;
        for value in 0..40 {
            for day in 20_000..20_010 {
                for i in 0..1000u32 {
                    let v4 = IpAddr::from(std::net::Ipv4Addr::from(0x0b00_0000 + i));
                    // The same bits as an IPv6 address are another host.
                    let v6 = IpAddr::from(std::net::Ipv6Addr::from(0x0b00_0000 + u128::from(i)));
                    for host in [v4, v6] {
                        seen.insert(host_row_fingerprint(value, day, host));
                        keys += 1;
                    }
                }
            }
        }
        assert_eq!(seen.len(), keys);
    }

    fn facts_of(host: &str, day: i64, values: &[&str]) -> FactBatch {
        let mut merged = FactMerger::default();
        let facts = PayloadFacts {
            values: values.iter().map(|v| PayloadValue::new(Some("http-path"), (*v).into(), false)).collect(),
            cves: Vec::new(),
        };
        merged.add(day, "HTTP", host.parse().unwrap(), facts);
        merged.finish()
    }

    /// A batch's facts are merged where they were found: each value once,
    /// in the order first seen, with the first day it was seen on; each
    /// day row, who-sent-what fact and CVE sighting once.
    #[test]
    fn merged_facts_hold_each_fact_once_in_arrival_order() {
        let value = |v: &str| PayloadValue::new(Some("http-path"), v.into(), false);
        let facts = |values: &[&str], cves: Vec<&'static str>| PayloadFacts {
            values: values.iter().map(|v| value(v)).collect(),
            cves,
        };
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "2001:db8::1".parse().unwrap());
        let log4j = "CVE-2021-44228";
        let mut merged = FactMerger::default();
        merged.add(11, "HTTP", a, facts(&["/b", "/a"], vec![log4j]));
        merged.add(10, "HTTP", b, facts(&["/a", "/c"], vec![]));
        merged.add(11, "HTTP", a, facts(&["/b", "/a"], vec![log4j]));
        merged.add(11, "SIP", a, facts(&["/b"], vec![]));
        let batch = merged.finish();
        let values: Vec<_> = batch.values.iter().map(|(v, day)| (v.value.as_str(), *day)).collect();
        assert_eq!(values, vec![("/b", 11), ("/a", 10), ("/c", 10)]);
        assert_eq!(batch.events, 4);
        let mut day_rows: Vec<_> =
            batch.day_rows.iter().map(|(day, service, _, md5)| (*day, service.as_str(), *md5)).collect();
        day_rows.sort();
        let mut expected = vec![
            (11, "HTTP", value("/b").md5),
            (11, "HTTP", value("/a").md5),
            (10, "HTTP", value("/a").md5),
            (10, "HTTP", value("/c").md5),
            (11, "SIP", value("/b").md5),
        ];
        expected.sort();
        assert_eq!(day_rows, expected);
        let mut host_rows = batch.host_rows.clone();
        host_rows.sort();
        let mut expected = vec![
            (value("/b").md5, 11, a),
            (value("/a").md5, 11, a),
            (value("/a").md5, 10, b),
            (value("/c").md5, 10, b),
        ];
        expected.sort();
        assert_eq!(host_rows, expected);
        assert_eq!(batch.cves, vec![(log4j, 11, a)]);
    }

    /// A run killed after committing facts, before folding them, leaves them
    /// in `host_fact_log`; the next open folds them before anyone reads.
    #[test]
    fn facts_a_killed_run_logged_are_folded_at_the_next_open() {
        let dir = tempfile::tempdir().unwrap();
        let day = 20_419;
        {
            let mut conn = Connection::open(dir.path().join(schema::PAYLOADS.name)).unwrap();
            schema::migrate(&mut conn, &schema::PAYLOADS).unwrap();
            let mut writer = PayloadWriter::default();
            let sent = [facts_of("192.0.2.1", day, &["/a", "/b"]), facts_of("2001:db8::9", day + 1, &["/a"])];
            for batch in &sent {
                let tx = conn.transaction().unwrap();
                let (_, logged) = writer.write(&tx, &[batch]).unwrap();
                assert!(!logged.is_empty());
                tx.commit().unwrap();
            }
            // No fold: the process dies here.
            let logged: i64 = conn.query_row("SELECT count(*) FROM host_fact_log", [], |r| r.get(0)).unwrap();
            assert_eq!(logged, 2);
            let chunks: i64 = conn.query_row("SELECT count(*) FROM host_value_chunks", [], |r| r.get(0)).unwrap();
            assert_eq!(chunks, 0);
        }
        let store = SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap();
        let all = Page { offset: 0, limit: 100 };
        let sent = store.host_values("192.0.2.1".parse().unwrap(), all).unwrap();
        assert_eq!(sent.len(), 2, "{sent:?}");
        assert!(sent.iter().all(|d| d.day == day));
        let md5 = PayloadValue::new(Some("http-path"), "/a".into(), false).md5;
        let hosts = store.value_hosts(md5, day, day + 1, all).unwrap();
        let hosts: Vec<_> = hosts.iter().map(|h| (h.day, h.host.as_str())).collect();
        assert_eq!(hosts, vec![(day, "192.0.2.1"), (day + 1, "2001:db8::9")]);
        assert_eq!(store.payload_hosts_by_year(10).unwrap().iter().map(|y| y.hosts.len()).sum::<usize>(), 2);
        store.close().unwrap();
        let conn = Connection::open(dir.path().join(schema::PAYLOADS.name)).unwrap();
        let logged: i64 = conn.query_row("SELECT count(*) FROM host_fact_log", [], |r| r.get(0)).unwrap();
        assert_eq!(logged, 0, "folded rows leave the log");
    }

    /// A corrupt log row is an error at open, not a panic nor silence.
    #[test]
    fn a_corrupt_log_row_is_refused_at_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut conn = Connection::open(dir.path().join(schema::PAYLOADS.name)).unwrap();
            schema::migrate(&mut conn, &schema::PAYLOADS).unwrap();
            conn.execute("INSERT INTO host_fact_log (facts) VALUES (x'0102')", []).unwrap();
        }
        let err = SqliteStore::open(dir.path(), SqliteOptions::default()).err().expect("refused");
        assert!(err.to_string().contains("corrupt payload-history chunk"), "{err}");
    }
}
