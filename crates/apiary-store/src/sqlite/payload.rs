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

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Receiver;

use apiary_model::time::{day_number, year_of_day};
use apiary_model::{Event, PayloadFacts};
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use rustc_hash::{FxHashMap, FxHashSet};

use super::chunk;
use super::host_cache::HostCache;
use super::writer::Reply;
use crate::types::CveSighting;
use crate::{Result, StoreError};

/// Most events' facts committed in one transaction.
const MAX_FACTS_PER_COMMIT: usize = 50_000;

/// The facts of one event, with what they are keyed by.
pub(crate) struct EventFacts {
    day: i64,
    service: String,
    host: IpAddr,
    facts: PayloadFacts,
}

/// Moves the facts out of a batch's events (the event writer has no use for
/// them), skipping events without any.
pub(crate) fn take_facts(events: &mut [Event]) -> Vec<EventFacts> {
    events
        .iter_mut()
        .filter(|e| !e.facts.is_empty())
        .map(|e| EventFacts {
            day: day_number(e.ts_ms),
            service: e.service.clone(),
            host: e.remote_host,
            facts: std::mem::take(&mut e.facts),
        })
        .collect()
}

pub(crate) struct PayloadJob {
    pub facts: Vec<EventFacts>,
    pub reply: Reply<()>,
}

/// The payload writer thread: commits queued jobs together (group commit, as
/// the event writer does) until every sender is gone.
/// After each commit, the hosts with new CVE sightings are dropped from
/// `cve_cache`.
/// After a checkpointer round (`rounds` moved), the WAL starts over, as the
/// event writer's does (see `writer::restart_wal`).
pub(crate) fn run(
    mut conn: Connection,
    jobs: Receiver<PayloadJob>,
    rounds: &AtomicU64,
    cve_cache: &HostCache<Vec<CveSighting>>,
) {
    let mut writer = PayloadWriter::default();
    let mut round_seen = 0;
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        let mut total = group[0].facts.len();
        while total < MAX_FACTS_PER_COMMIT {
            match jobs.try_recv() {
                Ok(job) => {
                    total += job.facts.len();
                    group.push(job);
                }
                Err(_) => break,
            }
        }
        let result = (|| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let mut batch = PayloadBatch::default();
            for f in group.iter().flat_map(|job| &job.facts) {
                batch.add(f);
            }
            let hosts: Vec<IpAddr> = batch.cves.iter().map(|(_, _, host)| *host).collect();
            writer.write(&tx, batch)?;
            tx.commit()?;
            cve_cache.invalidate(hosts);
            Ok::<_, StoreError>(())
        })();
        if let Err(e) = &result {
            // The caches may name rows that were rolled back.
            writer = PayloadWriter::default();
            tracing::error!(error = %e, "payload history transaction failed");
        }
        for job in group {
            let _ = job.reply.send(match &result {
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

/// Caches that live as long as the writer thread.
#[derive(Default)]
struct PayloadWriter {
    value_ids: FxHashMap<[u8; 16], ValueId>,
    services: FxHashMap<String, ServiceId>,
    day_rows: FxHashSet<(i64, ServiceId, &'static str, ValueId)>,
    host_rows: FxHashSet<u64>,
    host_years: FxHashSet<(i32, IpAddr)>,
    cves: FxHashSet<(&'static str, i64, IpAddr)>,
}

/// A well-mixed 64-bit fingerprint of a (value, day, host) key.
fn host_row_fingerprint(value: ValueId, day: i64, host: IpAddr) -> u64 {
    use std::hash::{Hash, Hasher};
    // SipHash with fixed keys: stable, and unlike FxHash it mixes every bit.
    let mut h = std::hash::DefaultHasher::new();
    (value, day, host).hash(&mut h);
    h.finish()
}

/// The payload facts of one transaction's new events, merged.
#[derive(Default)]
struct PayloadBatch<'a> {
    /// Each distinct value with the first day it appears on in this batch.
    values: FxHashMap<[u8; 16], (&'a apiary_model::PayloadValue, i64)>,
    /// The keys of `values` in arrival order: ids follow it, so that id order
    /// is first-seen order.
    arrival: Vec<[u8; 16]>,
    day_rows: FxHashSet<(i64, &'a str, &'static str, [u8; 16])>,
    host_rows: FxHashSet<([u8; 16], i64, IpAddr)>,
    host_years: FxHashSet<(i32, IpAddr)>,
    cves: FxHashSet<(&'static str, i64, IpAddr)>,
    /// The year of the last day seen (a calendar conversion per event is not free).
    year_of_day: Option<(i64, i32)>,
}

impl<'a> PayloadBatch<'a> {
    fn add(&mut self, e: &'a EventFacts) {
        let (day, host) = (e.day, e.host);
        for v in &e.facts.values {
            let first = self.values.entry(v.md5).or_insert_with(|| {
                self.arrival.push(v.md5);
                (v, day)
            });
            first.1 = first.1.min(day);
            self.day_rows.insert((day, e.service.as_str(), v.attribute.unwrap_or(""), v.md5));
            self.host_rows.insert((v.md5, day, host));
        }
        if !e.facts.values.is_empty() {
            let year = match self.year_of_day {
                Some((d, y)) if d == day => y,
                _ => {
                    let y = year_of_day(day);
                    self.year_of_day = Some((day, y));
                    y
                }
            };
            self.host_years.insert((year, host));
        }
        for cve in &e.facts.cves {
            self.cves.insert((cve, day, host));
        }
    }
}

impl PayloadWriter {
    fn write(&mut self, tx: &Transaction, batch: PayloadBatch<'_>) -> Result<()> {
        if batch.values.is_empty() && batch.cves.is_empty() {
            return Ok(());
        }
        self.bound_caches();
        self.write_values(tx, &batch)?;
        self.write_day_rows(tx, &batch)?;
        self.write_host_rows(tx, &batch)?;
        self.write_host_years(tx, &batch)?;
        self.write_cves(tx, &batch)
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

    /// Gives every value of the batch its row id, inserting new values.
    fn write_values(&mut self, tx: &Transaction, batch: &PayloadBatch<'_>) -> Result<()> {
        let mut find = tx.prepare_cached("SELECT id FROM payload_values WHERE md5 = ?1")?;
        let mut insert = tx.prepare_cached(
            "INSERT INTO payload_values (md5, value, truncated, first_day) VALUES (?1, ?2, ?3, ?4) RETURNING id",
        )?;
        for md5 in &batch.arrival {
            if self.value_ids.contains_key(md5) {
                continue;
            }
            let Some((v, day)) = batch.values.get(md5) else { continue };
            let id = match find.query_row([&md5[..]], |r| r.get(0)).optional()? {
                Some(id) => id,
                None => insert.query_row(params![&md5[..], v.value, v.truncated, day], |r| r.get(0))?,
            };
            self.value_ids.insert(*md5, id);
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

    fn write_day_rows(&mut self, tx: &Transaction, batch: &PayloadBatch<'_>) -> Result<()> {
        let mut rows = Vec::new();
        for &(day, service, attribute, md5) in &batch.day_rows {
            let key = (day, self.service_id(tx, service)?, attribute, self.value_id(&md5));
            if self.day_rows.insert(key) {
                rows.push((day, service, attribute, key.3));
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

    /// Appends, per (value, day), one chunk of the hosts newly seen sending
    /// it, and per (host, day) one chunk of the values it newly sent.
    fn write_host_rows(&mut self, tx: &Transaction, batch: &PayloadBatch<'_>) -> Result<()> {
        let mut by_value: FxHashMap<(ValueId, i64), Vec<IpAddr>> = FxHashMap::default();
        let mut by_host: FxHashMap<(IpAddr, i64), Vec<ValueId>> = FxHashMap::default();
        for &(md5, day, host) in &batch.host_rows {
            let value = self.value_id(&md5);
            if self.host_rows.insert(host_row_fingerprint(value, day, host)) {
                by_value.entry((value, day)).or_default().push(host);
                by_host.entry((host, day)).or_default().push(value);
            }
        }
        if by_value.is_empty() {
            return Ok(());
        }
        // One sequence number per transaction keeps each chunk's key unique.
        let seq: i64 = tx.query_row(
            "INSERT INTO payload_meta (key, value) VALUES ('chunk_seq', 1)
             ON CONFLICT DO UPDATE SET value = value + 1 RETURNING value",
            [],
            |r| r.get(0),
        )?;
        let mut rows: Vec<_> = by_value.into_iter().collect();
        rows.sort_unstable_by_key(|(key, _)| *key);
        let mut st =
            tx.prepare_cached("INSERT INTO value_host_chunks (value, day, seq, hosts) VALUES (?1, ?2, ?3, ?4)")?;
        for ((value, day), mut hosts) in rows {
            hosts.sort_unstable();
            st.execute(params![value, day, seq, chunk::encode_hosts(&hosts)])?;
        }
        let mut rows: Vec<_> = by_host.into_iter().map(|((host, day), ids)| (chunk::ip_key(host), day, ids)).collect();
        rows.sort_unstable_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        let mut st =
            tx.prepare_cached("INSERT INTO host_value_chunks (host, day, seq, value_ids) VALUES (?1, ?2, ?3, ?4)")?;
        for (host, day, mut ids) in rows {
            ids.sort_unstable();
            st.execute(params![host, day, seq, chunk::encode_ids(&ids)])?;
        }
        Ok(())
    }

    fn write_host_years(&mut self, tx: &Transaction, batch: &PayloadBatch<'_>) -> Result<()> {
        let mut rows: Vec<_> = batch
            .host_years
            .iter()
            .filter(|key| self.host_years.insert(**key))
            .map(|(year, host)| (*year, host.to_string()))
            .collect();
        rows.sort_unstable();
        let mut st = tx.prepare_cached("INSERT OR IGNORE INTO payload_host_years (year, host) VALUES (?1, ?2)")?;
        for (year, host) in rows {
            st.execute(params![year, host])?;
        }
        Ok(())
    }

    fn write_cves(&mut self, tx: &Transaction, batch: &PayloadBatch<'_>) -> Result<()> {
        let mut rows: Vec<_> = batch
            .cves
            .iter()
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
