//! Versioned schema migrations, tracked in SQLite's `user_version`.
//!
//! Each entry of [`MIGRATIONS`] moves the schema one version forward and runs
//! in its own transaction; a database is never left half-migrated. Never edit
//! a released migration: append a new one.

use std::path::Path;

use rusqlite::Connection;

use crate::Result;

/// A database's migrations: entry `i` takes its schema from version `i` to
/// `i + 1`.
pub struct Schema {
    pub name: &'static str,
    pub migrations: &'static [&'static str],
}

/// `apiary.db`: accounts, nodes and raw events.
pub const MAIN: Schema = Schema { name: "apiary.db", migrations: MAIN_MIGRATIONS };

/// The version of `apiary.db` that still holds the rollups, which
/// [`move_rollups`] copies into `rollups.db` before the next migration drops
/// them.
pub const MAIN_WITH_ROLLUPS: usize = 4;

/// `rollups.db`: the rollups of the raw events, a database of its own with a
/// writer thread of its own, so that writing them runs beside the event
/// commits instead of holding them up (see `rollup.rs`). Read connections
/// of `apiary.db` attach it; its tables keep the names they had there.
pub const ROLLUPS: Schema = Schema { name: "rollups.db", migrations: ROLLUP_MIGRATIONS };

/// `payloads.db`: payload history and CVE sightings. A database of its own
/// with its own writer thread, so that the set inserts they cost run beside
/// the event writer instead of inside its transactions (see `payload.rs`).
pub const PAYLOADS: Schema = Schema { name: "payloads.db", migrations: PAYLOAD_MIGRATIONS };

const MAIN_MIGRATIONS: &[&str] = &[
    // 1: accounts, events, rollups.
    r#"
    CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
    INSERT INTO meta VALUES ('event_hwm', 0);

    CREATE TABLE accounts (
        id INTEGER PRIMARY KEY,
        api_id TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        threat_key_hash BLOB NOT NULL,
        sensor_key_hash BLOB NOT NULL,
        monthly_quota INTEGER,
        role TEXT NOT NULL,
        disabled INTEGER NOT NULL DEFAULT 0,
        created_ms INTEGER NOT NULL
    );
    CREATE TABLE quota_usage (
        account INTEGER NOT NULL, month INTEGER NOT NULL, used INTEGER NOT NULL,
        PRIMARY KEY (account, month)
    ) WITHOUT ROWID;

    CREATE TABLE nodes (
        id INTEGER PRIMARY KEY,
        owner INTEGER NOT NULL,
        node TEXT NOT NULL,
        first_seen_ms INTEGER NOT NULL,
        last_seen_ms INTEGER NOT NULL,
        public_ip TEXT,
        UNIQUE (owner, node)
    );

    -- Raw events, in blocks of up to 1000 consecutive events of one account
    -- and day (see block.rs). Event ids are assigned by the writer from
    -- meta.event_hwm, so they only ever increase, even after pruning; a
    -- block holds ids first_id..=last_id.
    CREATE TABLE event_blocks (
        first_id INTEGER PRIMARY KEY,
        last_id INTEGER NOT NULL,
        day INTEGER NOT NULL,
        owner INTEGER NOT NULL,
        count INTEGER NOT NULL,
        data BLOB NOT NULL
    );
    CREATE INDEX event_blocks_day ON event_blocks (day, last_id);
    CREATE INDEX event_blocks_owner ON event_blocks (owner, day, last_id);
    -- One row per stored event: a hash of its sensor-assigned id, which makes
    -- re-delivery idempotent. Keyed by account first (no tenant can collide
    -- with another's events) and by time, so inserts are append-mostly.
    CREATE TABLE event_uids (
        owner INTEGER NOT NULL, ts_ms INTEGER NOT NULL, uid INTEGER NOT NULL,
        PRIMARY KEY (owner, ts_ms, uid)
    ) WITHOUT ROWID;

    -- Rollups, maintained at ingest (see rollup.rs).
    CREATE TABLE host_hour_all (
        hour INTEGER NOT NULL, host TEXT NOT NULL, count INTEGER NOT NULL, last_ms INTEGER NOT NULL,
        PRIMARY KEY (hour, host)
    ) WITHOUT ROWID;
    CREATE TABLE host_hour (
        service TEXT NOT NULL, hour INTEGER NOT NULL, host TEXT NOT NULL, owner INTEGER NOT NULL,
        count INTEGER NOT NULL, last_ms INTEGER NOT NULL,
        PRIMARY KEY (service, hour, host, owner)
    ) WITHOUT ROWID;
    CREATE INDEX host_hour_owner ON host_hour (owner, hour);
    CREATE TABLE service_hour (
        hour INTEGER NOT NULL, service TEXT NOT NULL, owner INTEGER NOT NULL, count INTEGER NOT NULL,
        PRIMARY KEY (hour, service, owner)
    ) WITHOUT ROWID;
    -- Keyed day first so that a day's inserts stay in one small region of
    -- the tree (host first would scatter them over all history); an IP's
    -- history is read with one seek per day listed in `days`.
    -- `asn` is the host's AS at ingest (0: unknown), for the per-ASN answers.
    CREATE TABLE ip_day (
        day INTEGER NOT NULL, host TEXT NOT NULL, service TEXT NOT NULL, count INTEGER NOT NULL,
        asn INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (day, host, service)
    ) WITHOUT ROWID;
    CREATE TABLE days (day INTEGER PRIMARY KEY);
    CREATE TABLE day_owner (
        day INTEGER NOT NULL, owner INTEGER NOT NULL, count INTEGER NOT NULL,
        PRIMARY KEY (day, owner)
    ) WITHOUT ROWID;
    CREATE TABLE month_stats (
        month INTEGER PRIMARY KEY, events INTEGER NOT NULL, hosts INTEGER NOT NULL
    );
    CREATE TABLE month_service (
        month INTEGER NOT NULL, service TEXT NOT NULL, count INTEGER NOT NULL,
        PRIMARY KEY (month, service)
    ) WITHOUT ROWID;
    CREATE TABLE month_host (
        month INTEGER NOT NULL, host TEXT NOT NULL,
        PRIMARY KEY (month, host)
    ) WITHOUT ROWID;
    "#,
    // 2: rollups may trail the events by a moment (rollup.rs); everything
    // stored so far is rolled up.
    r#"
    INSERT INTO meta SELECT 'rollup_hwm', value FROM meta WHERE key = 'event_hwm';
    "#,
    // 3: idempotency keys as one chunk per commit and second of event time
    // (claims.rs) instead of a row per event; `event_uids` keeps the keys
    // stored before until they are pruned.
    r#"
    CREATE TABLE event_key_chunks (
        owner INTEGER NOT NULL, bucket INTEGER NOT NULL, seq INTEGER NOT NULL, keys BLOB NOT NULL,
        PRIMARY KEY (owner, bucket, seq)
    ) WITHOUT ROWID;
    "#,
    // 4: one bad-hosts rollup instead of two tables and an index: keyed
    // hour first, each filter (service, account) is a seek per hour, and
    // the hosts of all of them a range of hours.
    r#"
    CREATE TABLE bad_host_hour (
        hour INTEGER NOT NULL, service TEXT NOT NULL, owner INTEGER NOT NULL, host TEXT NOT NULL,
        count INTEGER NOT NULL, last_ms INTEGER NOT NULL,
        PRIMARY KEY (hour, service, owner, host)
    ) WITHOUT ROWID;
    INSERT INTO bad_host_hour (hour, service, owner, host, count, last_ms)
        SELECT hour, service, owner, host, count, last_ms FROM host_hour ORDER BY hour, service, owner, host;
    DROP TABLE host_hour;
    DROP TABLE host_hour_all;
    "#,
    // 5: the rollups live in rollups.db (copied there by `move_rollups`).
    r#"
    DROP TABLE bad_host_hour;
    DROP TABLE service_hour;
    DROP TABLE ip_day;
    DROP TABLE days;
    DROP TABLE day_owner;
    DROP TABLE month_stats;
    DROP TABLE month_service;
    DROP TABLE month_host;
    DELETE FROM meta WHERE key = 'rollup_hwm';
    "#,
    // 6: the width of an idempotency-key bucket (claims.rs): a minute, or
    // a second (as before) where keys were chunked by the second already:
    // their chunks stay where they are.
    r#"
    INSERT INTO meta (key, value) SELECT 'claim_bucket_ms',
        CASE WHEN EXISTS (SELECT 1 FROM event_key_chunks) THEN 1000 ELSE 60000 END;
    "#,
];

/// The tables `move_rollups` copies, in `apiary.db`'s version 4 layout.
const ROLLUP_TABLES: &[&str] =
    &["bad_host_hour", "service_hour", "ip_day", "days", "day_owner", "month_stats", "month_service", "month_host"];

const ROLLUP_MIGRATIONS: &[&str] = &[
    // 1: the rollups of apiary.db's version 4, and the mark of the last
    // event rolled up (see rollup.rs).
    r#"
    CREATE TABLE rollup_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
    INSERT INTO rollup_meta VALUES ('rollup_hwm', 0);
    CREATE TABLE bad_host_hour (
        hour INTEGER NOT NULL, service TEXT NOT NULL, owner INTEGER NOT NULL, host TEXT NOT NULL,
        count INTEGER NOT NULL, last_ms INTEGER NOT NULL,
        PRIMARY KEY (hour, service, owner, host)
    ) WITHOUT ROWID;
    CREATE TABLE service_hour (
        hour INTEGER NOT NULL, service TEXT NOT NULL, owner INTEGER NOT NULL, count INTEGER NOT NULL,
        PRIMARY KEY (hour, service, owner)
    ) WITHOUT ROWID;
    -- Keyed day first so that a day's inserts stay in one small region of
    -- the tree (host first would scatter them over all history); an IP's
    -- history is read with one seek per day listed in `days`.
    -- `asn` is the host's AS at ingest (0: unknown), for the per-ASN answers.
    CREATE TABLE ip_day (
        day INTEGER NOT NULL, host TEXT NOT NULL, service TEXT NOT NULL, count INTEGER NOT NULL,
        asn INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (day, host, service)
    ) WITHOUT ROWID;
    CREATE TABLE days (day INTEGER PRIMARY KEY);
    CREATE TABLE day_owner (
        day INTEGER NOT NULL, owner INTEGER NOT NULL, count INTEGER NOT NULL,
        PRIMARY KEY (day, owner)
    ) WITHOUT ROWID;
    CREATE TABLE month_stats (
        month INTEGER PRIMARY KEY, events INTEGER NOT NULL, hosts INTEGER NOT NULL
    );
    CREATE TABLE month_service (
        month INTEGER NOT NULL, service TEXT NOT NULL, count INTEGER NOT NULL,
        PRIMARY KEY (month, service)
    ) WITHOUT ROWID;
    CREATE TABLE month_host (
        month INTEGER NOT NULL, host TEXT NOT NULL,
        PRIMARY KEY (month, host)
    ) WITHOUT ROWID;
    "#,
];

const PAYLOAD_MIGRATIONS: &[&str] = &[
    // 1: payload history and CVE sightings, kept forever (never pruned).
    r#"
    CREATE TABLE payload_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
    -- Each distinct payload value once, keyed by the MD5 of its text.
    CREATE TABLE payload_values (
        id INTEGER PRIMARY KEY,
        md5 BLOB NOT NULL UNIQUE,
        value TEXT NOT NULL,
        truncated INTEGER NOT NULL,
        first_day INTEGER NOT NULL
    );
    -- One record per (day, service, attribute, value); attribute '' is a
    -- payload kept whole (HoneyDB's null attribute). Day first, so a day's
    -- inserts stay together and year/month answers are one range scan.
    CREATE TABLE payload_day (
        day INTEGER NOT NULL, service TEXT NOT NULL, attribute TEXT NOT NULL, value INTEGER NOT NULL,
        PRIMARY KEY (day, service, attribute, value)
    ) WITHOUT ROWID;
    CREATE INDEX payload_day_by_service ON payload_day (service, day);
    CREATE INDEX payload_day_by_value ON payload_day (value, day);
    CREATE INDEX payload_day_by_attribute ON payload_day (attribute, value);
    -- Service names as sensors spelled them, for the service list and for
    -- case-insensitive lookups that still use payload_day_by_service.
    CREATE TABLE payload_services (service TEXT PRIMARY KEY) WITHOUT ROWID;
    -- Who sent what, as two append-mostly logs of small chunks (see
    -- payload.rs): each transaction adds, per (value, day), one chunk of the
    -- hosts newly seen sending it, and per (host, day) one chunk of the
    -- value ids it newly sent. One row per host per value would cost two
    -- scattered B-tree inserts for every value of every payload; readers
    -- merge the chunks and drop the rare repeats.
    CREATE TABLE value_host_chunks (
        value INTEGER NOT NULL, day INTEGER NOT NULL, seq INTEGER NOT NULL, hosts BLOB NOT NULL,
        PRIMARY KEY (value, day, seq)
    ) WITHOUT ROWID;
    CREATE TABLE host_value_chunks (
        host BLOB NOT NULL, day INTEGER NOT NULL, seq INTEGER NOT NULL, value_ids BLOB NOT NULL,
        PRIMARY KEY (host, day, seq)
    ) WITHOUT ROWID;
    -- Distinct hosts that sent any payload, per year.
    CREATE TABLE payload_host_years (
        year INTEGER NOT NULL, host TEXT NOT NULL,
        PRIMARY KEY (year, host)
    ) WITHOUT ROWID;
    -- Which host was seen exploiting which CVE, per day.
    CREATE TABLE cve_sightings (
        cve TEXT NOT NULL, day INTEGER NOT NULL, host TEXT NOT NULL,
        PRIMARY KEY (cve, day, host)
    ) WITHOUT ROWID;
    CREATE INDEX cve_sightings_by_host ON cve_sightings (host, day);
    "#,
    // 2: who-sent-what facts committed but not yet folded into the two
    // chunk logs above: one row per transaction, appended (see payload.rs).
    r#"
    CREATE TABLE host_fact_log (seq INTEGER PRIMARY KEY, facts BLOB NOT NULL);
    "#,
];

/// Brings `main` (`apiary.db`) and `rollups` (`rollups.db`) to their
/// latest versions. An `apiary.db` from before `rollups.db` existed has its
/// rollups copied over first, with their mark, in one transaction of
/// `rollups.db` that also records the move: a run killed before `apiary.db`
/// drops them copies nothing twice.
pub fn migrate_main_and_rollups(main: &mut Connection, main_path: &Path, rollups: &mut Connection) -> Result<()> {
    if user_version(main)? < MAIN_WITH_ROLLUPS {
        migrate(main, &Schema { migrations: &MAIN.migrations[..MAIN_WITH_ROLLUPS], ..MAIN })?;
    }
    migrate(rollups, &ROLLUPS)?;
    if user_version(main)? == MAIN_WITH_ROLLUPS {
        move_rollups(main_path, rollups)?;
    }
    migrate(main, &MAIN)
}

/// Copies the rollups of an `apiary.db` at version [`MAIN_WITH_ROLLUPS`]
/// (at `main_path`) into `rollups`, unless a run before did.
fn move_rollups(main_path: &Path, rollups: &mut Connection) -> Result<()> {
    rollups.execute("ATTACH DATABASE ?1 AS old", [path_text(main_path)?])?;
    let moved = (|| {
        let tx = rollups.transaction()?;
        let done: i64 = tx.query_row("SELECT count(*) FROM rollup_meta WHERE key = 'moved'", [], |r| r.get(0))?;
        if done == 0 {
            for table in ROLLUP_TABLES {
                tx.execute(&format!("INSERT INTO main.{table} SELECT * FROM old.{table}"), [])?;
            }
            tx.execute(
                "UPDATE rollup_meta SET value = (SELECT value FROM old.meta WHERE key = 'rollup_hwm')
                 WHERE key = 'rollup_hwm'",
                [],
            )?;
            tx.execute("INSERT INTO rollup_meta VALUES ('moved', 1)", [])?;
        }
        tx.commit()?;
        tracing::info!("moved the rollups from apiary.db into rollups.db");
        Ok::<_, crate::StoreError>(())
    })();
    rollups.execute("DETACH DATABASE old", [])?;
    moved
}

/// A database file's path as the text `ATTACH` takes.
pub fn path_text(path: &Path) -> Result<&str> {
    path.to_str()
        .ok_or_else(|| crate::StoreError::Invalid(format!("data directory path {} is not UTF-8", path.display())))
}

fn user_version(conn: &Connection) -> Result<usize> {
    Ok(conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))? as usize)
}

/// Brings the database up to the schema's latest version. Refuses a database
/// written by a newer build rather than guessing at its schema.
pub fn migrate(conn: &mut Connection, schema: &Schema) -> Result<()> {
    let latest = schema.migrations.len();
    let current = user_version(conn)?;
    if current > latest {
        return Err(crate::StoreError::Invalid(format!(
            "{} schema version {current} is newer than this build's {latest}; upgrade apiary",
            schema.name
        )));
    }
    for (version, sql) in schema.migrations.iter().enumerate().skip(current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (version + 1) as i64)?;
        tx.commit()?;
        tracing::info!(database = schema.name, version = version + 1, "applied schema migration");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_host_rollups_of_version_3_move_into_one_table() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Connection::open(dir.path().join("apiary.db")).unwrap();
        let version_3 = Schema { name: "apiary.db", migrations: &MAIN_MIGRATIONS[..3] };
        migrate(&mut conn, &version_3).unwrap();
        conn.execute_batch(
            "INSERT INTO host_hour VALUES ('SSH', 490000, '192.0.2.1', 1, 7, 100), ('FTP', 490001, '192.0.2.1', 2, 1, 200);
             INSERT INTO host_hour_all VALUES (490000, '192.0.2.1', 7, 100), (490001, '192.0.2.1', 1, 200);",
        )
        .unwrap();
        migrate(&mut conn, &Schema { name: "apiary.db", migrations: &MAIN_MIGRATIONS[..MAIN_WITH_ROLLUPS] }).unwrap();
        let rows: Vec<(i64, String, i64, String, i64, i64)> = conn
            .prepare("SELECT * FROM bad_host_hour ORDER BY hour")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(
            rows,
            [
                (490000, "SSH".into(), 1, "192.0.2.1".into(), 7, 100),
                (490001, "FTP".into(), 2, "192.0.2.1".into(), 1, 200)
            ]
        );
        let old: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_schema WHERE name IN ('host_hour', 'host_hour_all')", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(old, 0);
    }

    /// An `apiary.db` from before `rollups.db` (version 4), with a row in
    /// each rollup table.
    fn version_4_with_rollups(dir: &Path) -> Connection {
        let mut conn = Connection::open(dir.join("apiary.db")).unwrap();
        migrate(&mut conn, &Schema { name: "apiary.db", migrations: &MAIN_MIGRATIONS[..MAIN_WITH_ROLLUPS] }).unwrap();
        conn.execute_batch(
            "UPDATE meta SET value = 7 WHERE key IN ('event_hwm', 'rollup_hwm');
             INSERT INTO bad_host_hour VALUES (490000, 'SSH', 1, '192.0.2.1', 7, 100);
             INSERT INTO service_hour VALUES (490000, 'SSH', 1, 7);
             INSERT INTO ip_day VALUES (20416, '192.0.2.1', 'SSH', 7, 64496);
             INSERT INTO days VALUES (20416);
             INSERT INTO day_owner VALUES (20416, 1, 7);
             INSERT INTO month_stats VALUES (670, 7, 1);
             INSERT INTO month_service VALUES (670, 'SSH', 7);
             INSERT INTO month_host VALUES (670, '192.0.2.1');",
        )
        .unwrap();
        conn
    }

    fn rollup_rows(rollups: &Connection) -> Vec<i64> {
        let mut counts: Vec<i64> = ROLLUP_TABLES
            .iter()
            .map(|t| rollups.query_row(&format!("SELECT count(*) FROM {t}"), [], |r| r.get(0)).unwrap())
            .collect();
        counts.push(
            rollups.query_row("SELECT value FROM rollup_meta WHERE key = 'rollup_hwm'", [], |r| r.get(0)).unwrap(),
        );
        counts
    }

    #[test]
    fn rollups_of_version_4_move_into_their_own_database_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("apiary.db");
        let mut main = version_4_with_rollups(dir.path());
        let mut rollups = Connection::open(dir.path().join("rollups.db")).unwrap();
        migrate_main_and_rollups(&mut main, &path, &mut rollups).unwrap();
        assert_eq!(rollup_rows(&rollups), [1, 1, 1, 1, 1, 1, 1, 1, 7], "every row and the mark moved");
        let (asn, count): (i64, i64) =
            rollups.query_row("SELECT asn, count FROM ip_day", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
        assert_eq!((asn, count), (64496, 7));
        let left: i64 = main
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE name IN ('bad_host_hour', 'ip_day', 'month_host')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(left, 0, "apiary.db drops them");
        let mark: Option<i64> = main
            .query_row("SELECT value FROM meta WHERE key = 'rollup_hwm'", [], |r| r.get(0))
            .map(Some)
            .or_else(|e| if e == rusqlite::Error::QueryReturnedNoRows { Ok(None) } else { Err(e) })
            .unwrap();
        assert_eq!(mark, None);
        // Opening again changes nothing.
        migrate_main_and_rollups(&mut main, &path, &mut rollups).unwrap();
        assert_eq!(rollup_rows(&rollups), [1, 1, 1, 1, 1, 1, 1, 1, 7]);
    }

    #[test]
    fn a_move_killed_before_apiary_db_dropped_its_rollups_is_not_repeated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("apiary.db");
        let mut main = version_4_with_rollups(dir.path());
        let mut rollups = Connection::open(dir.path().join("rollups.db")).unwrap();
        migrate(&mut rollups, &ROLLUPS).unwrap();
        // Killed right after the copy committed.
        move_rollups(&path, &mut rollups).unwrap();
        assert_eq!(user_version(&main).unwrap(), MAIN_WITH_ROLLUPS);
        migrate_main_and_rollups(&mut main, &path, &mut rollups).unwrap();
        assert_eq!(rollup_rows(&rollups), [1, 1, 1, 1, 1, 1, 1, 1, 7]);
        assert_eq!(user_version(&main).unwrap(), MAIN.migrations.len());
    }
}
