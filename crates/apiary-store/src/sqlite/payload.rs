//! Payload history and CVE sightings, written by the writer thread in the
//! same transaction as the events they were derived from.
//!
//! Both are sets, kept forever: a (day, service, attribute, value) record, the
//! (value, day, host) that sent it, the (year, host), the (CVE, day, host).
//! Honeypot traffic repeats itself (the same user agent, path and login from
//! thousands of hosts), so almost every fact in a batch is already stored.
//! [`PayloadWriter`] remembers recently written keys and value ids across
//! batches, so a repeated fact costs a hash lookup instead of a B-tree probe.
//! The memory is bounded: a cache that grows past its cap is simply cleared,
//! which costs only redundant (ignored) inserts, never a missing row.
//! After a failed transaction every cache is cleared, because it may name rows
//! that were rolled back.

use std::net::IpAddr;

use apiary_model::time::{day_number, year_of_day};
use apiary_model::Event;
use rusqlite::{params, OptionalExtension, Transaction};
use rustc_hash::{FxHashMap, FxHashSet};

use crate::Result;

/// Most keys each cache holds before it is cleared (roughly 40 bytes each).
const CACHE_CAP: usize = 200_000;

type ValueId = i64;
/// A service name's small integer in this writer's interning table.
type ServiceId = u32;

/// Caches that live as long as the writer thread.
#[derive(Default)]
pub(crate) struct PayloadWriter {
    value_ids: FxHashMap<[u8; 16], ValueId>,
    services: FxHashMap<String, ServiceId>,
    day_rows: FxHashSet<(i64, ServiceId, &'static str, ValueId)>,
    host_rows: FxHashSet<(ValueId, i64, IpAddr)>,
    host_years: FxHashSet<(i32, IpAddr)>,
    cves: FxHashSet<(&'static str, i64, IpAddr)>,
}

/// The payload facts of one transaction's new events, merged.
#[derive(Default)]
pub(crate) struct PayloadBatch<'a> {
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
    pub(crate) fn add(&mut self, e: &'a Event) {
        if e.facts.is_empty() {
            return;
        }
        let day = day_number(e.ts_ms);
        let host = e.remote_host;
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
    /// Forgets everything cached, after a rollback.
    pub(crate) fn forget(&mut self) {
        *self = PayloadWriter::default();
    }

    pub(crate) fn write(&mut self, tx: &Transaction, batch: PayloadBatch<'_>) -> Result<()> {
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
        if self.host_rows.len() > CACHE_CAP {
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

    fn write_host_rows(&mut self, tx: &Transaction, batch: &PayloadBatch<'_>) -> Result<()> {
        let mut rows = Vec::new();
        for &(md5, day, host) in &batch.host_rows {
            let key = (self.value_id(&md5), day, host);
            if self.host_rows.insert(key) {
                rows.push((key.0, day, host.to_string()));
            }
        }
        rows.sort_unstable();
        let mut st = tx.prepare_cached("INSERT OR IGNORE INTO payload_hosts (value, day, host) VALUES (?1, ?2, ?3)")?;
        for (value, day, host) in rows {
            st.execute(params![value, day, host])?;
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
