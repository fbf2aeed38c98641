//! Reads of payload history and CVE sightings (see `payload.rs` for how they
//! are written). Every list is ordered by date and windowed by a [`Page`], so
//! no answer is unbounded however much history accumulates.

use std::net::IpAddr;

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::chunk;
use crate::types::*;
use crate::{Result, StoreError};

fn md5_of(r: &Row, i: usize) -> rusqlite::Result<[u8; 16]> {
    let blob: Vec<u8> = r.get(i)?;
    // Written only by the writer from a [u8; 16]; anything else is corruption.
    <[u8; 16]>::try_from(blob.as_slice())
        .map_err(|_| rusqlite::Error::InvalidColumnType(i, "md5".into(), rusqlite::types::Type::Blob))
}

fn record(r: &Row) -> rusqlite::Result<PayloadRecord> {
    let attribute: String = r.get(2)?;
    Ok(PayloadRecord {
        day: r.get(0)?,
        service: r.get(1)?,
        attribute: (!attribute.is_empty()).then_some(attribute),
        md5: md5_of(r, 3)?,
        value: r.get(4)?,
        truncated: r.get(5)?,
    })
}

fn window(page: Page) -> (i64, i64) {
    (page.limit.min(i64::MAX as usize) as i64, page.offset.min(i64::MAX as usize) as i64)
}

/// The service's spellings as stored (`HTTP`, `http`, ...).
fn service_spellings(conn: &Connection, service: &str) -> Result<Vec<String>> {
    let mut st = conn.prepare_cached("SELECT service FROM payload_services")?;
    let all = st.query_map([], |r| r.get::<_, String>(0))?.collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(all.into_iter().filter(|s| s.eq_ignore_ascii_case(service)).collect())
}

const RECORD_COLUMNS: &str = "d.day, d.service, d.attribute, v.md5, v.value, v.truncated";

pub(crate) fn payload_records(conn: &Connection, select: &PayloadSelect, page: Page) -> Result<Vec<PayloadRecord>> {
    let (limit, offset) = window(page);
    let rows = match select {
        PayloadSelect::Days { from, to } => {
            let mut st = conn.prepare_cached(&format!(
                "SELECT {RECORD_COLUMNS} FROM payload_day d JOIN payload_values v ON v.id = d.value
                 WHERE d.day BETWEEN ?1 AND ?2 ORDER BY d.day, d.service, d.attribute, d.value LIMIT ?3 OFFSET ?4"
            ))?;
            let rows = st.query_map(params![from, to, limit, offset], record)?.collect::<rusqlite::Result<_>>()?;
            rows
        }
        PayloadSelect::Service(service) => {
            let spellings = service_spellings(conn, service)?;
            if spellings.is_empty() {
                return Ok(Vec::new());
            }
            // One spelling is the rule; several are merged by SQLite's sort.
            let list = spellings.iter().map(|_| "?").collect::<Vec<_>>().join(",");
            let mut st = conn.prepare_cached(&format!(
                "SELECT {RECORD_COLUMNS} FROM payload_day d JOIN payload_values v ON v.id = d.value
                 WHERE d.service IN ({list}) ORDER BY d.day, d.service, d.attribute, d.value LIMIT ? OFFSET ?"
            ))?;
            let mut args: Vec<rusqlite::types::Value> = spellings.into_iter().map(Into::into).collect();
            args.push(limit.into());
            args.push(offset.into());
            let rows = st.query_map(rusqlite::params_from_iter(args), record)?.collect::<rusqlite::Result<_>>()?;
            rows
        }
        PayloadSelect::Hash(md5) => {
            let mut st = conn.prepare_cached(&format!(
                "SELECT {RECORD_COLUMNS} FROM payload_values v JOIN payload_day d ON d.value = v.id
                 WHERE v.md5 = ?1 ORDER BY d.day, d.service, d.attribute LIMIT ?2 OFFSET ?3"
            ))?;
            let rows = st.query_map(params![&md5[..], limit, offset], record)?.collect::<rusqlite::Result<_>>()?;
            rows
        }
    };
    Ok(rows)
}

pub(crate) fn payload_services(conn: &Connection) -> Result<Vec<String>> {
    let mut st = conn.prepare_cached("SELECT service FROM payload_services ORDER BY service")?;
    let rows = st.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
    Ok(rows)
}

pub(crate) fn attribute_values(conn: &Connection, attribute: &str, page: Page) -> Result<Vec<AttributeValue>> {
    let (limit, offset) = window(page);
    // Value ids grow as values are first stored: id order is first-seen order.
    let mut st = conn.prepare_cached(
        "SELECT v.md5, v.value, v.truncated FROM
           (SELECT DISTINCT value FROM payload_day WHERE attribute = ?1 ORDER BY value LIMIT ?2 OFFSET ?3) d
         JOIN payload_values v ON v.id = d.value ORDER BY v.id",
    )?;
    let rows = st
        .query_map(params![attribute, limit, offset], |r| {
            Ok(AttributeValue { md5: md5_of(r, 0)?, value: r.get(1)?, truncated: r.get(2)? })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(rows)
}

pub(crate) fn payload_hosts_by_year(conn: &Connection, per_year: usize) -> Result<Vec<YearHosts>> {
    let years: Vec<i32> = conn
        .prepare_cached("SELECT DISTINCT year FROM payload_host_years ORDER BY year")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut st = conn.prepare_cached("SELECT host FROM payload_host_years WHERE year = ?1 ORDER BY host LIMIT ?2")?;
    let mut out = Vec::with_capacity(years.len());
    for year in years {
        let mut hosts: Vec<String> = st
            .query_map(params![year, per_year.saturating_add(1).min(i64::MAX as usize) as i64], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let truncated = hosts.len() > per_year;
        hosts.truncate(per_year);
        out.push(YearHosts { year, hosts, truncated });
    }
    Ok(out)
}

fn value_id(conn: &Connection, md5: [u8; 16]) -> Result<Option<i64>> {
    Ok(conn
        .prepare_cached("SELECT id FROM payload_values WHERE md5 = ?1")?
        .query_row([&md5[..]], |r| r.get(0))
        .optional()?)
}

/// Merges a (day, chunk) log ordered by day into distinct sorted items per
/// day, then applies the page to the flattened list.
fn merge_days<T: Ord>(chunks: impl Iterator<Item = Result<(i64, Vec<T>)>>, page: Page) -> Result<Vec<(i64, T)>> {
    let mut out = Vec::new();
    let mut skip = page.offset;
    let mut current: Option<(i64, std::collections::BTreeSet<T>)> = None;
    let mut flush = |day: i64, items: std::collections::BTreeSet<T>, out: &mut Vec<(i64, T)>| {
        for item in items {
            if skip > 0 {
                skip -= 1;
            } else if out.len() < page.limit {
                out.push((day, item));
            }
        }
    };
    for chunk in chunks {
        let (day, items) = chunk?;
        match &mut current {
            Some((d, set)) if *d == day => set.extend(items),
            _ => {
                if let Some((d, set)) = current.take() {
                    flush(d, set, &mut out);
                    if out.len() >= page.limit {
                        return Ok(out);
                    }
                }
                current = Some((day, items.into_iter().collect()));
            }
        }
    }
    if let Some((d, set)) = current {
        flush(d, set, &mut out);
    }
    Ok(out)
}

fn corrupt(e: chunk::CorruptChunk) -> StoreError {
    StoreError::Invalid(e.to_string())
}

pub(crate) fn value_hosts(
    conn: &Connection,
    md5: [u8; 16],
    from_day: i64,
    to_day: i64,
    page: Page,
) -> Result<Vec<DatedHost>> {
    let Some(id) = value_id(conn, md5)? else { return Ok(Vec::new()) };
    let mut st = conn.prepare_cached(
        "SELECT day, hosts FROM value_host_chunks WHERE value = ?1 AND day BETWEEN ?2 AND ?3 ORDER BY day, seq",
    )?;
    let rows = st.query_map(params![id, from_day, to_day], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))?;
    let chunks = rows.map(|r| {
        let (day, bytes) = r?;
        Ok((day, chunk::decode_hosts(&bytes).map_err(corrupt)?))
    });
    Ok(merge_days(chunks, page)?.into_iter().map(|(day, ip)| DatedHost { day, host: ip.to_string() }).collect())
}

pub(crate) fn host_values(conn: &Connection, ip: IpAddr, page: Page) -> Result<Vec<DatedHash>> {
    let host = chunk::ip_key(apiary_model::canonical_ip(ip));
    let mut st =
        conn.prepare_cached("SELECT day, value_ids FROM host_value_chunks WHERE host = ?1 ORDER BY day, seq")?;
    let rows = st.query_map([host], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))?;
    let chunks = rows.map(|r| {
        let (day, bytes) = r?;
        Ok((day, chunk::decode_ids(&bytes).map_err(corrupt)?))
    });
    let mut md5 = conn.prepare_cached("SELECT md5 FROM payload_values WHERE id = ?1")?;
    let mut out = Vec::new();
    for (day, id) in merge_days(chunks, page)? {
        if let Some(hash) = md5.query_row([id], |r| md5_of(r, 0)).optional()? {
            out.push(DatedHash { day, md5: hash });
        }
    }
    Ok(out)
}

pub(crate) fn cve_hosts(conn: &Connection, cve: &str, page: Page) -> Result<Vec<DatedHost>> {
    let (limit, offset) = window(page);
    let mut st = conn
        .prepare_cached("SELECT day, host FROM cve_sightings WHERE cve = ?1 ORDER BY day, host LIMIT ?2 OFFSET ?3")?;
    let rows = st
        .query_map(params![cve, limit, offset], |r| Ok(DatedHost { day: r.get(0)?, host: r.get(1)? }))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(rows)
}

pub(crate) fn host_cves(conn: &Connection, ip: IpAddr) -> Result<Vec<CveSighting>> {
    let host = apiary_model::canonical_ip(ip).to_string();
    let mut st = conn.prepare_cached("SELECT day, cve FROM cve_sightings WHERE host = ?1 ORDER BY day, cve")?;
    let rows = st
        .query_map([host], |r| Ok(CveSighting { day: r.get(0)?, cve: r.get(1)? }))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(rows)
}
