//! Rollup increments, merged in memory per key before they are written.
//!
//! Every stored event bumps seven rollups (bad hosts per hour, services, IP
//! history per day, sensor-data counts, month stats); a session's events
//! share their keys, so they are merged here first. Writing them was half of
//! the writer thread's work per event, much of it rewriting the same rollup
//! pages to the WAL at every commit. So under load the writer keeps merging
//! across commits and writes them at most [`FLUSH_INTERVAL`] later (see
//! `writer.rs`). Raw events stay durable at once; what is pending here is
//! always derivable from them: `meta.rollup_hwm` names the last event whose
//! increments are written, and [`replay`] rebuilds the rest from the stored
//! blocks, at open after a crash, or when another process wrote to the same
//! database meanwhile (see [`Rollups::write`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use apiary_model::time::{day_number, hour_number, month_number};
use rusqlite::{params, Connection, Transaction};
use rustc_hash::{FxHashMap, FxHashSet};

use super::block;
use crate::types::AccountId;
use crate::Result;

/// Longest time increments wait in memory while ingest keeps the writer busy.
pub(crate) const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Keys held at most before a write, whatever the time (bounds memory to a
/// few tens of megabytes).
pub(crate) const MAX_PENDING_KEYS: usize = 400_000;
/// The same two limits for a bulk load, which nobody in its process reads
/// while it runs: a key written once per 5 s rather than once per second
/// (a host keeps its IP-history row for a whole day of the file) took a
/// tenth off the load's CPU per event, for about 100 MB more memory.
pub(crate) const BULK_FLUSH_INTERVAL: Duration = Duration::from_secs(5);
pub(crate) const BULK_MAX_PENDING_KEYS: usize = 1_000_000;
/// (month, host) pairs remembered as stored in `month_host` at most; past
/// it the memory starts over (about 40 bytes each).
const MAX_KNOWN_MONTH_HOSTS: usize = 500_000;

/// A service name's index in [`Rollups::services`]: keys stay small and
/// `Copy`, and a name is stored once however many keys mention it.
type Service = u32;

/// Increments not yet written, merged per key.
#[derive(Default)]
pub(crate) struct Rollups {
    services: Vec<String>,
    service_ids: FxHashMap<String, Service>,
    bad_host_hour: FxHashMap<(i64, Service, AccountId, IpAddr), (u64, i64)>,
    service_hour: FxHashMap<(i64, Service, AccountId), u64>,
    ip_day: FxHashMap<(i64, IpAddr, Service), (u64, u32)>,
    day_owner: FxHashMap<(i64, AccountId), u64>,
    month_events: FxHashMap<i64, u64>,
    month_service: FxHashMap<(i64, Service), u64>,
    month_host: FxHashMap<(i64, IpAddr), ()>,
    /// (month, host) pairs this writer committed to `month_host`: a month's
    /// returning hosts (most of them, once it is under way) then cost no
    /// `INSERT OR IGNORE` at each write, a third of the rollup rows. Rows
    /// there are never deleted, so a remembered pair is always stored; one
    /// another process stored is merely not remembered, and its insert is
    /// ignored as before. Outlives [`Rollups::clear`] and replays.
    known_month_hosts: FxHashSet<(i64, IpAddr)>,
    /// The month of the last day seen: a calendar conversion per event would
    /// cost more than all the integer keys together.
    month_of_day: Option<(i64, i64)>,
    /// The `meta.rollup_hwm` these increments build on: every event up to
    /// it was rolled up when they started.
    base_hwm: i64,
    /// Events whose increments are in here (all of them past `base_hwm`).
    events: i64,
    /// When the first of them came.
    since: Option<Instant>,
}

/// What one event contributes to the rollups.
pub(crate) struct Increment<'a> {
    pub owner: AccountId,
    pub ts_ms: i64,
    pub host: IpAddr,
    pub service: &'a str,
    pub asn: u32,
}

impl Rollups {
    /// No increments, building on `meta.rollup_hwm` = `hwm`.
    pub fn at(hwm: i64) -> Rollups {
        Rollups { base_hwm: hwm, ..Rollups::default() }
    }

    pub fn is_empty(&self) -> bool {
        self.events == 0
    }

    /// How long the oldest increment held has been waiting (`None`: none is).
    pub fn age(&self) -> Option<Duration> {
        self.since.map(|t| t.elapsed())
    }

    /// Distinct keys held, the measure of memory and of the write to come.
    pub fn keys(&self) -> usize {
        self.bad_host_hour.len() + self.ip_day.len() + self.month_host.len()
    }

    /// Forgets the increments once written up to `hwm` (what
    /// [`Rollups::write`] returned), keeping the tables' capacity: the next
    /// second's keys need about as much. Only after a commit: the month's
    /// hosts just written are remembered as stored.
    pub fn clear(&mut self, hwm: i64) {
        if self.known_month_hosts.len() + self.month_host.len() > MAX_KNOWN_MONTH_HOSTS {
            self.known_month_hosts.clear();
        }
        self.known_month_hosts.extend(self.month_host.keys().copied());
        self.base_hwm = hwm;
        self.events = 0;
        self.since = None;
        self.bad_host_hour.clear();
        self.service_hour.clear();
        self.ip_day.clear();
        self.day_owner.clear();
        self.month_events.clear();
        self.month_service.clear();
        self.month_host.clear();
        // Service names come from sensors: keep the table of names from
        // growing without bound when they vary.
        if self.services.len() > 4096 {
            self.services.clear();
            self.service_ids.clear();
        }
    }

    fn service(&mut self, name: &str) -> Service {
        if let Some(id) = self.service_ids.get(name) {
            return *id;
        }
        let id = self.services.len() as Service;
        self.services.push(name.to_owned());
        self.service_ids.insert(name.to_owned(), id);
        id
    }

    pub fn add(&mut self, e: Increment<'_>) {
        let Increment { owner, ts_ms, host, service, asn } = e;
        self.events += 1;
        self.since.get_or_insert_with(Instant::now);
        let service = self.service(service);
        let hour = hour_number(ts_ms);
        let day = day_number(ts_ms);
        let month = match self.month_of_day {
            Some((d, m)) if d == day => m,
            _ => {
                let m = month_number(ts_ms);
                self.month_of_day = Some((day, m));
                m
            }
        };
        let bump = |v: &mut (u64, i64)| {
            v.0 += 1;
            v.1 = v.1.max(ts_ms);
        };
        bump(self.bad_host_hour.entry((hour, service, owner, host)).or_default());
        *self.service_hour.entry((hour, service, owner)).or_default() += 1;
        let day_row = self.ip_day.entry((day, host, service)).or_default();
        day_row.0 += 1;
        if asn != 0 {
            day_row.1 = asn;
        }
        *self.day_owner.entry((day, owner)).or_default() += 1;
        *self.month_events.entry(month).or_default() += 1;
        *self.month_service.entry((month, service)).or_default() += 1;
        if !self.known_month_hosts.contains(&(month, host)) {
            self.month_host.entry((month, host)).or_default();
        }
    }

    /// The hosts whose IP history these increments change.
    pub fn hosts(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.ip_day.keys().map(|(_, host, _)| *host)
    }

    /// Writes every increment and moves `meta.rollup_hwm` to the last
    /// stored event, which it returns.
    ///
    /// Another process may share the database (`apiary ingest` or
    /// `apiary account` beside a running server) and keep increments of its
    /// own, or replay ours when it opens. So what is held here is written
    /// only if the stored events past `meta.rollup_hwm` are exactly the ones
    /// it holds; otherwise it is dropped and rebuilt from the stored events,
    /// in this same transaction, which holds the write lock. Whoever moves
    /// the mark has rolled up every event below it.
    pub fn write(&mut self, tx: &Transaction) -> Result<i64> {
        let meta = |key: &str| -> Result<i64> {
            Ok(tx.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))?)
        };
        let (rolled, stored) = (meta("rollup_hwm")?, meta("event_hwm")?);
        if rolled != self.base_hwm || stored - rolled != self.events {
            let known = std::mem::take(&mut self.known_month_hosts);
            *self = replay(tx)?;
            self.known_month_hosts = known;
        }
        self.write_increments(tx)?;
        tx.execute("UPDATE meta SET value = ?1 WHERE key = 'rollup_hwm'", [stored])?;
        Ok(stored)
    }

    fn write_increments(&self, tx: &Transaction) -> Result<()> {
        let name = |s: Service| self.services[s as usize].as_str();
        let mut st = tx.prepare_cached(
            "INSERT INTO bad_host_hour (hour, service, owner, host, count, last_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT DO UPDATE SET count = count + excluded.count, last_ms = max(last_ms, excluded.last_ms)",
        )?;
        // Rows go in key order: each B-tree page is then visited once per
        // transaction instead of once per row.
        let mut rows: Vec<_> = self
            .bad_host_hour
            .iter()
            .map(|((hour, service, owner, host), v)| (*hour, name(*service), *owner, host.to_string(), *v))
            .collect();
        rows.sort_unstable_by(|a, b| (a.0, a.1, a.2, &a.3).cmp(&(b.0, b.1, b.2, &b.3)));
        for (hour, service, owner, host, (count, last)) in rows {
            st.execute(params![hour, service, owner, host, count as i64, last])?;
        }
        let mut st = tx.prepare_cached(
            "INSERT INTO service_hour (hour, service, owner, count) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT DO UPDATE SET count = count + excluded.count",
        )?;
        for ((hour, service, owner), count) in &self.service_hour {
            st.execute(params![hour, name(*service), owner, *count as i64])?;
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
            .map(|((day, host, service), count)| (*day, host.to_string(), name(*service), *count))
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
            st.execute(params![month, name(*service), *count as i64])?;
        }
        Ok(())
    }
}

/// Writes the increments a killed run kept in memory and never wrote, and
/// returns the empty increments a writer starts from.
pub(crate) fn catch_up(conn: &mut Connection) -> Result<Rollups> {
    let mut pending = replay(conn)?;
    if !pending.is_empty() {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let hwm = pending.write(&tx)?;
        tx.commit()?;
        pending.clear(hwm);
    }
    Ok(pending)
}

/// The increments of every stored event past `meta.rollup_hwm`: those that
/// were still in memory when the process stopped. Blocks are written whole
/// in one transaction and the mark only ever moves at a commit, so no block
/// straddles it.
fn replay(conn: &Connection) -> Result<Rollups> {
    let hwm: i64 = conn.query_row("SELECT value FROM meta WHERE key = 'rollup_hwm'", [], |r| r.get(0))?;
    let mut rollups = Rollups::at(hwm);
    let mut st =
        conn.prepare("SELECT first_id, owner, data FROM event_blocks WHERE first_id > ?1 ORDER BY first_id")?;
    let mut rows = st.query([hwm])?;
    let mut events = Vec::new();
    while let Some(row) = rows.next()? {
        let (first_id, owner): (i64, AccountId) = (row.get(0)?, row.get(1)?);
        let data: Vec<u8> = row.get(2)?;
        events.clear();
        block::decode(first_id, &data, i64::MIN, usize::MAX, &mut events)
            .map_err(|e| crate::StoreError::Invalid(format!("replaying rollups from block {first_id}: {e}")))?;
        for e in &events {
            // A stored host always parses; one that does not cannot be rolled up.
            let Ok(host) = e.remote_host.parse() else { continue };
            rollups.add(Increment { owner, ts_ms: e.ts_ms, host, service: &e.service, asn: e.asn });
        }
    }
    Ok(rollups)
}
