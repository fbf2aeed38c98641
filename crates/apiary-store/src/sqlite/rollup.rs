//! Rollup increments, merged in memory per key before they are written.
//!
//! Every stored event bumps seven rollups (bad hosts per hour, services, IP
//! history per day, sensor-data counts, month stats); a session's events
//! share their keys, so they are merged here first. The rollups live in a
//! database of their own (`rollups.db`), written by a thread of their own
//! (`rollup_writer.rs`): the event writer hands it each commit's
//! increments, and a write of a second's keys (a third of all ingest work
//! under a bulk load) runs beside the event commits instead of holding
//! them up. Raw events stay durable at once; what is pending here is always
//! derivable from them: `rollup_meta.rollup_hwm` names the last event whose
//! increments are written, and [`replay`] rebuilds the rest from the stored
//! blocks, at open after a crash, or when another process wrote to the same
//! databases meanwhile (see [`Rollups::write`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use apiary_model::time::{day_number, hour_number, month_number};
use rusqlite::{params, Connection, Transaction};
use rustc_hash::{FxHashMap, FxHashSet};

use super::block;
use crate::types::AccountId;
use crate::Result;

/// Longest time increments wait in memory while ingest keeps coming.
pub(crate) const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Keys held at most before a write, whatever the time (bounds memory to a
/// few tens of megabytes).
pub(crate) const MAX_PENDING_KEYS: usize = 400_000;
/// The same two limits for a bulk load, which nobody in its process reads
/// while it runs: a key written once per 5 s rather than once per second
/// (a host keeps its IP-history row for a whole day of the file) took a
/// tenth off the load's CPU per event. Since rollups are written beside the
/// event commits, holding a million keys rather than 400,000 gained
/// nothing measurable and cost about 180 MB (BENCHMARKS.md).
pub(crate) const BULK_FLUSH_INTERVAL: Duration = Duration::from_secs(5);
pub(crate) const BULK_MAX_PENDING_KEYS: usize = 400_000;
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
    /// The `rollup_meta.rollup_hwm` these increments build on: every event
    /// up to it was rolled up when they started.
    base_hwm: i64,
    /// The last event whose commit was handed over (`base_hwm` if none).
    upto: i64,
    /// Whether the increments held are exactly those of the events
    /// `base_hwm + 1 ..= upto`. Not when commits of another process came in
    /// between, or another process rolled some of ours up: the write then
    /// rebuilds them from the stored events.
    exact: bool,
    /// When the oldest commit held came.
    since: Option<Instant>,
}

/// What `count` events of one host, service and hour contribute to the
/// rollups, the last at `ts_ms`. `service` indexes the service names sent
/// with it (see [`Committed`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Increment {
    pub owner: AccountId,
    pub ts_ms: i64,
    pub host: IpAddr,
    pub service: u32,
    pub asn: u32,
    pub count: u32,
}

impl Increment {
    /// Whether `other` bumps exactly the same rollup rows: every key holds
    /// at most an hour, and hours nest in days and months.
    fn same_rows(&self, other: &Increment) -> bool {
        self.host == other.host
            && self.service == other.service
            && self.owner == other.owner
            && self.asn == other.asn
            && hour_number(self.ts_ms) == hour_number(other.ts_ms)
    }
}

/// The increments of the events one commit of the event writer stored, the
/// ids `first_id..=last_id`.
#[derive(Debug, Default)]
pub(crate) struct Committed {
    pub first_id: i64,
    pub last_id: i64,
    /// The service names the increments index (a handful per commit).
    pub services: Vec<String>,
    service_ids: FxHashMap<String, u32>,
    pub increments: Vec<Increment>,
}

impl Committed {
    /// None yet; the first will be event `first_id`.
    pub fn starting_at(first_id: i64) -> Committed {
        Committed { first_id, last_id: first_id - 1, ..Committed::default() }
    }

    /// Adds one event's increment. A session's events come one after the
    /// other (a connect, what was sent, what was answered) and bump the
    /// same rows: they become one increment with a count, which is all the
    /// rollup writer then has to merge, a quarter of the work for sessions
    /// of four events.
    pub fn push(&mut self, inc: Increment) {
        match self.increments.last_mut() {
            Some(last) if last.same_rows(&inc) => {
                last.count += inc.count;
                last.ts_ms = last.ts_ms.max(inc.ts_ms);
            }
            _ => self.increments.push(inc),
        }
    }

    /// The index of `name` in `services`, adding it if new.
    pub fn service(&mut self, name: &str) -> u32 {
        if let Some(id) = self.service_ids.get(name) {
            return *id;
        }
        let id = self.services.len() as u32;
        self.services.push(name.to_owned());
        self.service_ids.insert(name.to_owned(), id);
        id
    }
}

impl Rollups {
    /// No increments, building on `rollup_meta.rollup_hwm` = `hwm`.
    pub fn at(hwm: i64) -> Rollups {
        Rollups { base_hwm: hwm, upto: hwm, exact: true, ..Rollups::default() }
    }

    /// Whether nothing waits to be written.
    pub fn is_empty(&self) -> bool {
        self.upto == self.base_hwm
    }

    /// The last event handed over: once written, every event up to it is
    /// rolled up.
    pub fn upto(&self) -> i64 {
        self.upto
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
        self.forget(hwm);
    }

    /// Drops the increments without remembering anything of them, building
    /// on `hwm` from now on.
    fn forget(&mut self, hwm: i64) {
        self.base_hwm = hwm;
        self.upto = hwm;
        self.exact = true;
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

    /// Takes the increments of one commit of the event writer. Events
    /// already rolled up are skipped; commits of another process in
    /// between make the increments inexact (see [`Rollups::write`]).
    pub fn take(&mut self, committed: &Committed) {
        if committed.last_id <= self.base_hwm {
            return;
        }
        if committed.first_id != self.upto + 1 {
            self.exact = false;
        }
        self.upto = self.upto.max(committed.last_id);
        self.since.get_or_insert_with(Instant::now);
        if !self.exact {
            // Rebuilt from the stored events when written.
            return;
        }
        let ids: Vec<Service> = committed.services.iter().map(|name| self.service(name)).collect();
        for inc in &committed.increments {
            self.add(inc.owner, inc.ts_ms, inc.host, ids[inc.service as usize], inc.asn, inc.count);
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

    /// Adds `count` events of one host, service and hour, the last at `ts_ms`.
    fn add(&mut self, owner: AccountId, ts_ms: i64, host: IpAddr, service: Service, asn: u32, count: u32) {
        let count = u64::from(count);
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
        let row = self.bad_host_hour.entry((hour, service, owner, host)).or_default();
        row.0 += count;
        row.1 = row.1.max(ts_ms);
        *self.service_hour.entry((hour, service, owner)).or_default() += count;
        let day_row = self.ip_day.entry((day, host, service)).or_default();
        day_row.0 += count;
        if asn != 0 {
            day_row.1 = asn;
        }
        *self.day_owner.entry((day, owner)).or_default() += count;
        *self.month_events.entry(month).or_default() += count;
        *self.month_service.entry((month, service)).or_default() += count;
        if !self.known_month_hosts.contains(&(month, host)) {
            self.month_host.entry((month, host)).or_default();
        }
    }

    /// The hosts whose IP history these increments change.
    pub fn hosts(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.ip_day.keys().map(|(_, host, _)| *host)
    }

    /// Writes the increments of every event up to [`Rollups::upto`] in
    /// `tx` (on `rollups.db`, holding its write lock) and moves
    /// `rollup_meta.rollup_hwm` there; returns the new mark.
    ///
    /// Another process may share the data directory (`apiary ingest` or
    /// `apiary account` beside a running server) and roll up events of its
    /// own, or replay ours when it opens. So what is held here is written
    /// only if the mark is still where it was when these increments started
    /// and they are exactly those of the events since; otherwise they are
    /// rebuilt from the stored events (`events`, a connection to
    /// `apiary.db`) between the mark and [`Rollups::upto`], under the same
    /// lock. Every event up to `upto` is committed: the event writer hands
    /// a commit over only after it. Whoever moves the mark has rolled up
    /// every event below it.
    pub fn write(&mut self, tx: &Transaction, events: &Connection) -> Result<i64> {
        let rolled = hwm(tx)?;
        if rolled >= self.upto {
            // Someone else rolled up all of these already.
            self.forget(rolled);
            return Ok(rolled);
        }
        if rolled != self.base_hwm || !self.exact {
            let known = std::mem::take(&mut self.known_month_hosts);
            *self = replay(events, rolled, self.upto)?;
            self.known_month_hosts = known;
        }
        self.write_increments(tx)?;
        tx.execute("UPDATE rollup_meta SET value = ?1 WHERE key = 'rollup_hwm'", [self.upto])?;
        Ok(self.upto)
    }

    fn write_increments(&self, tx: &Transaction) -> Result<()> {
        let name = |s: Service| self.services[s as usize].as_str();
        let mut st = tx.prepare_cached(
            "INSERT INTO bad_host_hour (hour, service, owner, host, count, last_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT DO UPDATE SET count = count + excluded.count, last_ms = max(last_ms, excluded.last_ms)",
        )?;
        // Rows go about in key order: each B-tree page is then visited
        // once per transaction instead of once per row. Addresses sort as
        // numbers, not as the text the key holds: neighbours either way, at
        // a fraction of the cost of comparing (and first formatting) text.
        let mut host_text = HostText::default();
        let mut rows: Vec<_> = self
            .bad_host_hour
            .iter()
            .map(|(&(hour, service, owner, host), &v)| (hour, name(service), owner, host, v))
            .collect();
        rows.sort_unstable_by(|a, b| (a.0, a.1, a.2, a.3).cmp(&(b.0, b.1, b.2, b.3)));
        for (hour, service, owner, host, (count, last)) in rows {
            st.execute(params![hour, service, owner, host_text.of(host), count as i64, last])?;
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
        let mut rows: Vec<_> =
            self.ip_day.iter().map(|(&(day, host, service), &count)| (day, host, name(service), count)).collect();
        rows.sort_unstable_by(|a, b| (a.0, a.1, a.2).cmp(&(b.0, b.1, b.2)));
        for (day, host, service, (count, asn)) in rows {
            st.execute(params![day, host_text.of(host), service, count as i64, asn])?;
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
        let mut rows: Vec<_> = self.month_host.keys().copied().collect();
        rows.sort_unstable();
        for (month, host) in rows {
            *new_hosts.entry(month).or_default() += st.execute(params![month, host_text.of(host)])? as i64;
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

/// An address as the text rollup keys hold, formatted into one reused buffer.
#[derive(Default)]
struct HostText(String);

impl HostText {
    fn of(&mut self, host: IpAddr) -> &str {
        self.0.clear();
        match host {
            // Most addresses, a million and more per bulk load: `Display`
            // runs the formatting machinery once per octet.
            IpAddr::V4(v4) => {
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        self.0.push('.');
                    }
                    if octet >= 100 {
                        self.0.push(char::from(b'0' + octet / 100));
                    }
                    if octet >= 10 {
                        self.0.push(char::from(b'0' + octet / 10 % 10));
                    }
                    self.0.push(char::from(b'0' + octet % 10));
                }
            }
            IpAddr::V6(_) => {
                use std::fmt::Write;
                let _ = write!(self.0, "{host}");
            }
        }
        &self.0
    }
}

/// The last event whose increments `rollups.db` holds.
pub(crate) fn hwm(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row("SELECT value FROM rollup_meta WHERE key = 'rollup_hwm'", [], |r| r.get(0))?)
}

/// Writes the increments a killed run kept in memory and never wrote (every
/// event stored past the mark), and returns the empty increments the rollup
/// writer starts from. `events` reads `apiary.db`.
pub(crate) fn catch_up(conn: &mut Connection, events: &Connection) -> Result<Rollups> {
    let stored: i64 = events.query_row("SELECT value FROM meta WHERE key = 'event_hwm'", [], |r| r.get(0))?;
    let rolled = hwm(conn)?;
    if rolled > stored {
        return Err(crate::StoreError::Invalid(format!(
            "rollups.db has rolled up events to {rolled} but apiary.db stores events only to {stored}: \
             they are not from the same store; move rollups.db away to rebuild it from the stored events"
        )));
    }
    let mut pending = Rollups::at(rolled);
    if stored > rolled {
        pending.upto = stored;
        pending.exact = false;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let written = pending.write(&tx, events)?;
        tx.commit()?;
        pending.clear(written);
    }
    Ok(pending)
}

/// The increments of the stored events `from + 1 ..= to`: those a process
/// still held when it stopped, or another process's. Blocks are written
/// whole in one transaction and the marks are always a commit's last
/// event, so no block straddles them.
fn replay(events: &Connection, from: i64, to: i64) -> Result<Rollups> {
    let mut rollups = Rollups::at(from);
    rollups.upto = to;
    let mut st = events.prepare(
        "SELECT first_id, owner, data FROM event_blocks WHERE first_id > ?1 AND first_id <= ?2 ORDER BY first_id",
    )?;
    let mut rows = st.query([from, to])?;
    let mut decoded = Vec::new();
    while let Some(row) = rows.next()? {
        let (first_id, owner): (i64, AccountId) = (row.get(0)?, row.get(1)?);
        let data: Vec<u8> = row.get(2)?;
        decoded.clear();
        block::decode(first_id, &data, i64::MIN, usize::MAX, &mut decoded)
            .map_err(|e| crate::StoreError::Invalid(format!("replaying rollups from block {first_id}: {e}")))?;
        for e in &decoded {
            // A stored host always parses; one that does not cannot be rolled up.
            let Ok(host) = e.remote_host.parse() else { continue };
            let service = rollups.service(&e.service);
            rollups.add(owner, e.ts_ms, host, service, e.asn, 1);
        }
    }
    rollups.since = (!rollups.is_empty()).then(Instant::now);
    Ok(rollups)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Everything the rollups hold, in a comparable order.
    fn contents(r: &Rollups) -> Vec<String> {
        let name = |s: Service| r.services[s as usize].clone();
        let mut out: Vec<String> = Vec::new();
        out.extend(r.bad_host_hour.iter().map(|(k, v)| format!("bhh {} {} {} {} {v:?}", k.0, name(k.1), k.2, k.3)));
        out.extend(r.service_hour.iter().map(|(k, v)| format!("sh {} {} {} {v}", k.0, name(k.1), k.2)));
        out.extend(r.ip_day.iter().map(|(k, v)| format!("ipd {} {} {} {v:?}", k.0, k.1, name(k.2))));
        out.extend(r.day_owner.iter().map(|(k, v)| format!("do {k:?} {v}")));
        out.extend(r.month_events.iter().map(|(k, v)| format!("me {k} {v}")));
        out.extend(r.month_service.iter().map(|(k, v)| format!("ms {} {} {v}", k.0, name(k.1))));
        out.extend(r.month_host.keys().map(|k| format!("mh {k:?}")));
        out.sort();
        out
    }

    #[test]
    fn host_text_is_what_display_writes() {
        let mut text = HostText::default();
        for a in [0u8, 1, 9, 10, 42, 99, 100, 101, 199, 200, 255] {
            for position in 0..4 {
                let mut octets = [192, 0, 2, 7];
                octets[position] = a;
                let host = IpAddr::from(octets);
                assert_eq!(text.of(host), host.to_string());
            }
        }
        for v6 in ["2001:db8::1", "::ffff:192.0.2.1", "::"] {
            let host: IpAddr = v6.parse().unwrap();
            assert_eq!(text.of(host), host.to_string());
        }
    }

    /// Runs of a session's events become one increment with a count; the
    /// rollups must be exactly those of the events one by one, whatever
    /// breaks a run (another host, service, owner or AS, an hour or month
    /// boundary, events out of order).
    #[test]
    fn merged_runs_roll_up_as_their_events_one_by_one() {
        let hour = 3_600_000;
        // 2026-01-31 23:00 UTC: the month turns within the events below.
        let start = 20_484 * 86_400_000 + 23 * hour;
        let hosts: [IpAddr; 3] =
            ["192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap(), "2001:db8::1".parse().unwrap()];
        let mut committed = Committed::starting_at(1);
        let mut one_by_one = Rollups::at(0);
        let (ssh, http) = (committed.service("SSH"), committed.service("HTTP"));
        let ids = [one_by_one.service("SSH"), one_by_one.service("HTTP")];
        let mut seed = 7u64;
        let mut next = |n: u64| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) % n
        };
        let mut ts = start - 10 * 60_000;
        let mut events = 0;
        for _ in 0..2000 {
            let host = hosts[next(3) as usize];
            let service = if next(4) == 0 { http } else { ssh };
            let (owner, asn) = (1 + next(2) as i64, [0, 64_500][next(2) as usize]);
            // Sessions of 1-6 events, a few seconds apart, sometimes back in time.
            for _ in 0..1 + next(6) {
                ts += next(5_000) as i64 - 500;
                committed.push(Increment { owner, ts_ms: ts, host, service, asn, count: 1 });
                one_by_one.add(owner, ts, host, ids[service as usize], asn, 1);
                events += 1;
            }
        }
        assert!(ts > start + hour, "the events cross into the next month");
        assert!(committed.increments.len() < events / 2, "runs were merged: {} increments", committed.increments.len());
        committed.last_id = events as i64;
        let mut merged = Rollups::at(0);
        merged.take(&committed);
        assert_eq!(contents(&merged), contents(&one_by_one));
    }
}
