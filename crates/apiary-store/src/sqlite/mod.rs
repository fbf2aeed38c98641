//! The embedded engine: SQLite database files in the data directory.
//!
//! `apiary.db` holds accounts, nodes and raw events, `rollups.db` their
//! rollups, `payloads.db` payload history and CVE sightings. Writes to each
//! go through its own writer thread ([`writer`], [`rollup_writer`],
//! [`payload`]), so the three run side by side; reads use small pools of
//! connections, which WAL mode lets run beside the writers without blocking
//! them. Durability: a commit in WAL mode with `synchronous=NORMAL`
//! has reached the operating system before the call returns, so it survives
//! the process being killed (`kill -9`); surviving power loss as well needs
//! `synchronous=FULL` ([`SqliteOptions::fsync`]).

mod block;
mod chunk;
mod claims;
mod history;
mod host_cache;
mod payload;
mod pool;
mod rollup;
mod rollup_writer;
mod schema;
mod writer;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use apiary_model::time::{hour_number, month_number};
use apiary_model::Event;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row};

use crate::accounts::{generate_credentials, generate_key, hash_key, AccountKeys, Credentials, KeyKind};
use crate::quota::{QuotaBook, QuotaDecision};
use crate::types::*;
use crate::{Result, Store, StoreError};
use claims::Claims;
use host_cache::HostCache;
use payload::PayloadJob;
use pool::Pool;
use rollup_writer::{RollupFlush, RollupJob, RollupWriter};
use writer::{IngestJob, Job};

/// Tuning of the embedded engine.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// `synchronous=FULL`: each commit is fsynced (survives power loss).
    pub fsync: bool,
    /// Page cache of each connection, in MiB.
    pub cache_mib: u32,
    /// How many batches may wait for the writer before ingest pushes back.
    pub write_queue: usize,
    /// A bulk load (`apiary ingest`): nobody reads while it runs, so rollups
    /// keep merging in memory even while the writer keeps up, and are
    /// written every [`rollup::BULK_FLUSH_INTERVAL`] (or at
    /// [`rollup::BULK_MAX_PENDING_KEYS`]) and at close; so is the payload
    /// writer's log of who sent what. And an ingest returns once its events
    /// are committed, without waiting for their payload history: a fold of
    /// the log (most of a second) then no longer holds up the parsers. A
    /// read of payload history waits for them first; a failure to store
    /// payload history is reported by a later ingest or by
    /// [`SqliteStore::close`].
    pub bulk_load: bool,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions { fsync: false, cache_mib: 64, write_queue: 64, bulk_load: false }
    }
}

pub struct SqliteStore {
    path: PathBuf,
    readers: Pool,
    writer: Mutex<Option<SyncSender<Job>>>,
    writer_thread: Mutex<Option<JoinHandle<()>>>,
    /// The rollup writer; the event writer holds the other sender.
    rollup_writer: Mutex<Option<SyncSender<RollupJob>>>,
    rollup_thread: Mutex<Option<JoinHandle<()>>>,
    /// Payload history and CVE sightings live in their own database.
    payload_readers: Pool,
    payload_writer: Mutex<Option<SyncSender<PayloadJob>>>,
    payload_thread: Mutex<Option<JoinHandle<()>>>,
    /// A bulk load's answers from the payload writer, not waited for (see
    /// [`SqliteOptions::bulk_load`]); `None` otherwise.
    payload_answers: Option<Mutex<Vec<mpsc::Receiver<Result<()>>>>>,
    checkpointers: Mutex<Option<Checkpointers>>,
    quota: QuotaBook,
    /// The last event whose rollup increments the event writer handed to
    /// the rollup writer, and the last one the rollup writer wrote: while
    /// they differ, readers of rollups settle them first (see
    /// [`SqliteStore::settle_rollups`]).
    rollups_sent: Arc<AtomicI64>,
    rollups_written: Arc<AtomicI64>,
    /// Set by the payload writer while answered facts wait in its log (see
    /// [`SqliteStore::settle_payloads`]).
    unfolded: Arc<AtomicBool>,
    /// IP histories read lately; the event writer drops the hosts it touches.
    history_cache: Arc<HostCache<Vec<IpHistoryRow>>>,
    /// CVE sightings per host read lately; the payload writer drops the hosts it touches.
    cve_cache: Arc<HostCache<Vec<CveSighting>>>,
}

/// How long a connection waits for another one's lock before it fails.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Bytes per database page for new databases. SQLite's default of 4 KiB
/// made every write walk deeper trees, split more pages and spread each
/// block of events over a chain of overflow pages; 16 KiB took about a
/// tenth off a bulk load's CPU per event, where 64 KiB gave some of it back
/// (BENCHMARKS.md).
pub(crate) const PAGE_SIZE: i64 = 16_384;
/// A WAL the writers checkpoint themselves once it holds this many bytes;
/// the checkpointer threads normally keep it far smaller.
const WAL_AUTOCHECKPOINT_BYTES: i64 = 256 * 1024 * 1024;

/// Bytes of a database file a writer's connection maps into memory.
const WRITER_MMAP_BYTES: i64 = 1 << 30;

/// Sets up a writer's connection: it checkpoints only once its WAL has
/// grown far (see [`WAL_AUTOCHECKPOINT_BYTES`]), since checkpoints run on
/// their own threads, and it reads the database file through a memory map
/// rather than copying each page it seeks through (which cut a bulk load's
/// CPU per event by about 5 %, BENCHMARKS.md). Readers keep copying: a
/// map's pages would count in the server's resident memory.
fn writer_connection(conn: &Connection) -> Result<()> {
    let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_BYTES / page_size.max(512))?;
    conn.pragma_update(None, "mmap_size", WRITER_MMAP_BYTES)?;
    Ok(())
}

/// How often the checkpointer copies committed WAL frames into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);
/// A WAL larger than this is truncated even if that briefly stalls the writer.
const WAL_TRUNCATE_BYTES: u64 = 512 * 1024 * 1024;

/// Copies WAL frames into the database file on its own thread and
/// connection, so the writer never spends its time checkpointing nor waits
/// for the fsyncs a checkpoint makes. Each completed checkpoint bumps
/// `done`, telling the writer it may let the WAL start over (see
/// `writer::restart_wal`).
fn run_checkpointer(conn: Connection, wal: PathBuf, stop: Arc<AtomicBool>, done: Arc<AtomicU64>) {
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(CHECKPOINT_EVERY);
        let big = std::fs::metadata(&wal).map(|m| m.len() > WAL_TRUNCATE_BYTES).unwrap_or(false);
        let mode = if big { "TRUNCATE" } else { "PASSIVE" };
        match conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |_| Ok(())) {
            Ok(()) => drop(done.fetch_add(1, Ordering::Relaxed)),
            Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed; will retry"),
        }
    }
}

/// The checkpointer threads, one per database, and their stop flag.
struct Checkpointers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

/// Starts [`run_checkpointer`] for the database file `name` in `data_dir`.
fn spawn_checkpointer(
    data_dir: &Path,
    name: &str,
    opts: &SqliteOptions,
    stop: &Arc<AtomicBool>,
    done: Arc<AtomicU64>,
) -> Result<JoinHandle<()>> {
    let conn = open_connection(&data_dir.join(name), opts)?;
    let wal = data_dir.join(format!("{name}-wal"));
    let stop = stop.clone();
    std::thread::Builder::new()
        .name("apiary-checkpoint".into())
        .spawn(move || run_checkpointer(conn, wal, stop, done))
        .map_err(|source| StoreError::Io { path: "checkpoint thread".into(), source })
}

fn open_connection(path: &Path, opts: &SqliteOptions) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // Only a database not yet created takes it; one that exists keeps its own.
    conn.pragma_update(None, "page_size", PAGE_SIZE)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", if opts.fsync { "FULL" } else { "NORMAL" })?;
    conn.pragma_update(None, "cache_size", -(i64::from(opts.cache_mib) * 1024))?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    Ok(conn)
}

/// Read-only connections to one database file, with `attach` attached (its
/// tables then read as if they were the file's own).
fn read_pool(path: PathBuf, attach: Option<PathBuf>, opts: &SqliteOptions) -> Pool {
    let reader_opts = SqliteOptions { cache_mib: opts.cache_mib.min(16), ..opts.clone() };
    Pool::new(16, move || {
        let c = open_connection(&path, &reader_opts)?;
        if let Some(other) = &attach {
            c.execute("ATTACH DATABASE ?1 AS rollups", [schema::path_text(other)?])?;
        }
        c.pragma_update(None, "query_only", true)?;
        Ok(c)
    })
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `data_dir`, migrating its
    /// schema to this build's version.
    pub fn open(data_dir: &Path, opts: SqliteOptions) -> Result<SqliteStore> {
        std::fs::create_dir_all(data_dir)
            .map_err(|source| StoreError::Io { path: data_dir.display().to_string(), source })?;
        let path = data_dir.join(schema::MAIN.name);
        let rollup_path = data_dir.join(schema::ROLLUPS.name);
        let mut conn = open_connection(&path, &opts)?;
        let mut rollup_conn = open_connection(&rollup_path, &opts)?;
        schema::migrate_main_and_rollups(&mut conn, &path, &mut rollup_conn)?;
        writer_connection(&conn)?;
        writer_connection(&rollup_conn)?;
        // Before anyone reads: what a killed run never rolled up.
        let events = open_connection(&path, &opts)?;
        events.pragma_update(None, "query_only", true)?;
        let pending = rollup::catch_up(&mut rollup_conn, &events)?;
        let rollups_written = Arc::new(AtomicI64::new(pending.upto()));
        let rollups_sent = Arc::new(AtomicI64::new(pending.upto()));
        let stop = Arc::new(AtomicBool::new(false));
        let checkpoints = Arc::new(AtomicU64::new(0));
        let rollup_rounds = Arc::new(AtomicU64::new(0));
        let mut checkpointers = vec![
            spawn_checkpointer(data_dir, schema::MAIN.name, &opts, &stop, checkpoints.clone())?,
            spawn_checkpointer(data_dir, schema::ROLLUPS.name, &opts, &stop, rollup_rounds.clone())?,
        ];
        let flush = if opts.bulk_load { RollupFlush::Deferred } else { RollupFlush::WhenIdle };
        let history_cache = Arc::new(HostCache::default());
        let (rollup_tx, rollup_rx) = mpsc::sync_channel(opts.write_queue.max(1));
        let rollup_thread = {
            let (written, cache) = (rollups_written.clone(), history_cache.clone());
            std::thread::Builder::new()
                .name("apiary-rollups".into())
                .spawn(move || {
                    let writer = RollupWriter {
                        conn: rollup_conn,
                        events,
                        flush,
                        checkpoints: &rollup_rounds,
                        rolled: &written,
                        history_cache: &cache,
                    };
                    writer.run(rollup_rx, pending)
                })
                .map_err(|source| StoreError::Io { path: "rollup writer thread".into(), source })?
        };
        let (tx, rx) = mpsc::sync_channel(opts.write_queue.max(1));
        let claims = if opts.bulk_load { Claims::holding_at_most(claims::BULK_MAX_KEYS) } else { Claims::default() };
        let thread = {
            let (rollups, sent) = (rollup_tx.clone(), rollups_sent.clone());
            std::thread::Builder::new()
                .name("apiary-writer".into())
                .spawn(move || writer::run(conn, rx, rollups, &checkpoints, &sent, claims))
                .map_err(|source| StoreError::Io { path: "writer thread".into(), source })?
        };
        let payload_path = data_dir.join(schema::PAYLOADS.name);
        let mut payload_conn = open_connection(&payload_path, &opts)?;
        schema::migrate(&mut payload_conn, &schema::PAYLOADS)?;
        // As for the main database: checkpoints on a thread of their own
        // (a checkpoint's fsyncs held the payload writer, and every ingest
        // answer with it, for a fifth of a bulk load's time).
        writer_connection(&payload_conn)?;
        // Before anyone reads: what a killed run logged but never folded.
        payload::recover(&mut payload_conn)?;
        let payload_rounds = Arc::new(AtomicU64::new(0));
        checkpointers.push(spawn_checkpointer(data_dir, schema::PAYLOADS.name, &opts, &stop, payload_rounds.clone())?);
        let (payload_tx, payload_rx) = mpsc::sync_channel(opts.write_queue.max(1));
        let cve_cache = Arc::new(HostCache::default());
        let cache = cve_cache.clone();
        let unfolded = Arc::new(AtomicBool::new(false));
        let writer_unfolded = unfolded.clone();
        let payload_thread = std::thread::Builder::new()
            .name("apiary-payloads".into())
            .spawn(move || payload::run(payload_conn, payload_rx, flush, &payload_rounds, &writer_unfolded, &cache))
            .map_err(|source| StoreError::Io { path: "payload writer thread".into(), source })?;
        Ok(SqliteStore {
            readers: read_pool(path.clone(), Some(rollup_path), &opts),
            payload_readers: read_pool(payload_path, None, &opts),
            path,
            writer: Mutex::new(Some(tx)),
            writer_thread: Mutex::new(Some(thread)),
            rollup_writer: Mutex::new(Some(rollup_tx)),
            rollup_thread: Mutex::new(Some(rollup_thread)),
            payload_writer: Mutex::new(Some(payload_tx)),
            payload_thread: Mutex::new(Some(payload_thread)),
            payload_answers: opts.bulk_load.then(|| Mutex::new(Vec::new())),
            checkpointers: Mutex::new(Some(Checkpointers { stop, threads: checkpointers })),
            quota: QuotaBook::default(),
            rollups_sent,
            rollups_written,
            unfolded,
            history_cache,
            cve_cache,
        })
    }

    /// Before a read of who sent what: if the payload writer holds answered
    /// facts in its log, not yet folded into the tables readers use, has it
    /// fold them (as [`SqliteStore::settle_rollups`] does for rollups).
    fn settle_payloads(&self) -> Result<()> {
        // A bulk load's ingest does not wait for its facts: a read does.
        if let Some(answers) = &self.payload_answers {
            settled_payload_answers(&mut answers.lock().unwrap_or_else(|p| p.into_inner()), true)?;
        }
        if !self.unfolded.load(Ordering::SeqCst) {
            return Ok(());
        }
        settle(&self.payload_writer, PayloadJob::Settle)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn sender(&self) -> Result<SyncSender<Job>> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner()).clone().ok_or(StoreError::Closed)
    }

    fn write<T: Send + 'static>(&self, f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static) -> Result<T> {
        writer::call(&self.sender()?, Job::Task, f)
    }

    /// Before a read of rollups: if the rollup writer holds increments of
    /// events already answered (it merges them while commits keep coming),
    /// has it write them, so that every answered event is counted. Costs
    /// nothing when none are pending.
    fn settle_rollups(&self) -> Result<()> {
        if self.rollups_written.load(Ordering::SeqCst) >= self.rollups_sent.load(Ordering::SeqCst) {
            return Ok(());
        }
        settle(&self.rollup_writer, RollupJob::Settle)
    }

    /// Flushes and stops the writers, waiting for queued work to finish.
    pub fn close(&self) -> Result<()> {
        self.flush()?;
        drop(self.writer.lock().unwrap_or_else(|p| p.into_inner()).take());
        if let Some(t) = self.writer_thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
        // After the event writer, which held the other rollup sender; the
        // last writes of rollups and payload history run side by side.
        drop(self.rollup_writer.lock().unwrap_or_else(|p| p.into_inner()).take());
        drop(self.payload_writer.lock().unwrap_or_else(|p| p.into_inner()).take());
        if let Some(t) = self.rollup_thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
        if let Some(t) = self.payload_thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
        if let Some(answers) = &self.payload_answers {
            settled_payload_answers(&mut answers.lock().unwrap_or_else(|p| p.into_inner()), true)?;
        }
        if let Some(Checkpointers { stop, threads }) =
            self.checkpointers.lock().unwrap_or_else(|p| p.into_inner()).take()
        {
            stop.store(true, Ordering::Relaxed);
            for t in threads {
                let _ = t.join();
            }
        }
        Ok(())
    }

    fn account_by_api_id(&self, conn: &Connection, api_id: &str) -> Result<Option<AccountWithKeys>> {
        Ok(conn
            .prepare_cached(
                "SELECT id, api_id, name, monthly_quota, role, disabled, created_ms, threat_key_hash, sensor_key_hash
                 FROM accounts WHERE api_id = ?1",
            )?
            .query_row([api_id], |r| Ok((account_from_row(r)?, r.get(7)?, r.get(8)?)))
            .optional()?)
    }
}

/// Has the writer behind `sender` write what it holds, and waits for it. A
/// closed writer has written everything it held.
fn settle<J>(sender: &Mutex<Option<SyncSender<J>>>, job: impl FnOnce(writer::Reply<()>) -> J) -> Result<()> {
    let Some(sender) = sender.lock().unwrap_or_else(|p| p.into_inner()).clone() else {
        return Ok(());
    };
    let (reply, rx) = mpsc::sync_channel(1);
    if sender.send(job(reply)).is_err() {
        return Ok(());
    }
    rx.recv().unwrap_or(Ok(()))
}

/// Drops the payload writer's answers that came (all of them, waiting, if
/// `wait`), and returns the first failure among them.
fn settled_payload_answers(answers: &mut Vec<mpsc::Receiver<Result<()>>>, wait: bool) -> Result<()> {
    let mut failed = Ok(());
    answers.retain(|rx| {
        let answer = if wait { rx.recv().map_err(|_| mpsc::TryRecvError::Disconnected) } else { rx.try_recv() };
        match answer {
            Err(mpsc::TryRecvError::Empty) => true,
            Ok(Ok(())) => false,
            Ok(Err(e)) => {
                if failed.is_ok() {
                    failed = Err(e);
                }
                false
            }
            Err(mpsc::TryRecvError::Disconnected) => {
                if failed.is_ok() {
                    failed = Err(StoreError::Closed);
                }
                false
            }
        }
    });
    failed
}

/// An account with the hashes of its two keys, for authentication only.
type AccountWithKeys = (Account, Vec<u8>, Vec<u8>);

impl Drop for SqliteStore {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

fn account_from_row(r: &Row) -> rusqlite::Result<Account> {
    let role: String = r.get(4)?;
    Ok(Account {
        id: r.get(0)?,
        api_id: r.get(1)?,
        name: r.get(2)?,
        monthly_quota: r.get::<_, Option<i64>>(3)?.map(|q| q.max(0) as u64),
        role: Role::parse(&role).unwrap_or(Role::Community),
        disabled: r.get(5)?,
        created_ms: r.get(6)?,
    })
}

fn service_rows(conn: &Connection, sql: &str, p: impl rusqlite::Params) -> Result<Vec<ServiceCount>> {
    let mut st = conn.prepare_cached(sql)?;
    let rows = st.query_map(p, |r| Ok(ServiceCount { service: r.get(0)?, count: r.get::<_, i64>(1)? as u64 }))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

impl Store for SqliteStore {
    fn create_account(&self, new: &NewAccount) -> Result<(Account, Credentials)> {
        let creds = generate_credentials();
        let new = new.clone();
        let c = creds.clone();
        let account = self.write(move |conn| {
            let now = apiary_model::time::now_ms();
            conn.execute(
                "INSERT INTO accounts (api_id, name, threat_key_hash, sensor_key_hash, monthly_quota, role, created_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    c.api_id,
                    new.name,
                    &hash_key(&c.threat_key)[..],
                    &hash_key(&c.sensor_key)[..],
                    new.monthly_quota.map(|q| q.min(i64::MAX as u64) as i64),
                    new.role.as_str(),
                    now
                ],
            )?;
            Ok(Account {
                id: conn.last_insert_rowid(),
                api_id: c.api_id,
                name: new.name,
                monthly_quota: new.monthly_quota,
                role: new.role,
                disabled: false,
                created_ms: now,
            })
        })?;
        Ok((account, creds))
    }

    fn list_accounts(&self) -> Result<Vec<Account>> {
        let conn = self.readers.get()?;
        let mut st = conn.prepare_cached(
            "SELECT id, api_id, name, monthly_quota, role, disabled, created_ms FROM accounts ORDER BY id",
        )?;
        let rows = st.query_map([], account_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn set_disabled(&self, api_id: &str, disabled: bool) -> Result<Account> {
        let id = api_id.to_owned();
        let n = self.write(move |conn| {
            Ok(conn.execute("UPDATE accounts SET disabled = ?1 WHERE api_id = ?2", params![disabled, id])?)
        })?;
        if n == 0 {
            return Err(StoreError::NoSuchAccount(api_id.to_owned()));
        }
        let conn = self.readers.get()?;
        self.account_by_api_id(&conn, api_id)?.map(|a| a.0).ok_or_else(|| StoreError::NoSuchAccount(api_id.into()))
    }

    fn rotate_key(&self, api_id: &str, kind: KeyKind) -> Result<String> {
        let key = generate_key();
        let hash = hash_key(&key);
        let id = api_id.to_owned();
        let column = match kind {
            KeyKind::Threat => "threat_key_hash",
            KeyKind::Sensor => "sensor_key_hash",
        };
        let n = self.write(move |conn| {
            Ok(conn.execute(&format!("UPDATE accounts SET {column} = ?1 WHERE api_id = ?2"), params![&hash[..], id])?)
        })?;
        if n == 0 {
            return Err(StoreError::NoSuchAccount(api_id.to_owned()));
        }
        Ok(key)
    }

    fn account_keys(&self, api_id: &str) -> Result<Option<AccountKeys>> {
        let conn = self.readers.get()?;
        Ok(self.account_by_api_id(&conn, api_id)?.map(|(account, threat_key_hash, sensor_key_hash)| AccountKeys {
            account,
            threat_key_hash,
            sensor_key_hash,
        }))
    }

    fn consume_quota(&self, account: &Account, now_ms: i64) -> Result<QuotaDecision> {
        let month = month_number(now_ms);
        self.quota.consume(account.id, month, account.monthly_quota, true, || {
            writer::load_quota(&*self.readers.get()?, account.id, month)
        })
    }

    fn peek_quota(&self, account: &Account, now_ms: i64) -> Result<QuotaDecision> {
        let month = month_number(now_ms);
        self.quota.consume(account.id, month, account.monthly_quota, false, || {
            writer::load_quota(&*self.readers.get()?, account.id, month)
        })
    }

    fn ingest(&self, owner: AccountId, peer: Option<IpAddr>, mut events: Vec<Event>) -> Result<IngestOutcome> {
        if events.is_empty() {
            return Ok(IngestOutcome::default());
        }
        // Facts and events are committed side by side by two writers; the
        // answer waits for both (see payload.rs for why that is safe).
        let facts = payload::take_facts(&mut events);
        let payload_done = if facts.is_empty() {
            None
        } else {
            let (reply, rx) = mpsc::sync_channel(1);
            let sender = self.payload_writer.lock().unwrap_or_else(|p| p.into_inner()).clone();
            sender
                .ok_or(StoreError::Closed)?
                .send(PayloadJob::Facts { facts, reply })
                .map_err(|_| StoreError::Closed)?;
            Some(rx)
        };
        let (reply, rx) = mpsc::sync_channel(1);
        let events = block::prepare(owner, events);
        let job = IngestJob { owner, peer, events, now_ms: apiary_model::time::now_ms(), reply };
        self.sender()?.send(Job::Ingest(job)).map_err(|_| StoreError::Closed)?;
        let writer::IngestAnswer { outcome, events } = rx.recv().map_err(|_| StoreError::Closed)?;
        drop(events);
        match (payload_done, &self.payload_answers) {
            (Some(rx), None) => rx.recv().map_err(|_| StoreError::Closed)??,
            (done, Some(answers)) => {
                let mut answers = answers.lock().unwrap_or_else(|p| p.into_inner());
                answers.extend(done);
                settled_payload_answers(&mut answers, false)?;
            }
            (None, None) => {}
        }
        outcome
    }

    fn bad_hosts(&self, filter: &HostFilter, since_ms: i64) -> Result<Vec<BadHost>> {
        self.settle_rollups()?;
        let conn = self.readers.get()?;
        let hour = hour_number(since_ms);
        // Summed per host here rather than by SQL's GROUP BY, which would
        // build a temporary index of every row of the day (millions) where
        // this holds one entry per host.
        let mut all = rustc_hash::FxHashMap::<String, (u64, i64)>::default();
        let mut add = |rows: &mut rusqlite::Rows<'_>| -> Result<()> {
            while let Some(row) = rows.next()? {
                let host = row.get_ref(0)?.as_str().map_err(rusqlite::Error::from)?;
                let (count, last_ms): (i64, i64) = (row.get(1)?, row.get(2)?);
                let entry = match all.get_mut(host) {
                    Some(entry) => entry,
                    None => all.entry(host.to_owned()).or_default(),
                };
                entry.0 += count as u64;
                entry.1 = entry.1.max(last_ms);
            }
            Ok(())
        };
        if filter.service.is_none() && filter.owner.is_none() {
            let mut st = conn.prepare_cached("SELECT host, count, last_ms FROM bad_host_hour WHERE hour >= ?1")?;
            add(&mut st.query([hour])?)?;
        } else {
            // A filtered list reads only its own rows: the per-service counts
            // name the (hour, service, account) slices there are, and each is
            // one seek. Service names are matched case-insensitively but
            // stored as sensors report them.
            let mut st = conn.prepare_cached("SELECT hour, service, owner FROM service_hour WHERE hour >= ?1")?;
            let mut slices: Vec<(i64, String, AccountId)> = Vec::new();
            for slice in st.query_map([hour], |r| Ok((r.get(0)?, r.get::<_, String>(1)?, r.get(2)?)))? {
                let (hour, service, owner) = slice?;
                if filter.service.as_ref().is_none_or(|s| s.eq_ignore_ascii_case(&service))
                    && filter.owner.is_none_or(|o| o == owner)
                {
                    slices.push((hour, service, owner));
                }
            }
            let mut st = conn.prepare_cached(
                "SELECT host, count, last_ms FROM bad_host_hour WHERE hour = ?1 AND service = ?2 AND owner = ?3",
            )?;
            for (hour, service, owner) in slices {
                add(&mut st.query(params![hour, service, owner])?)?;
            }
        }
        let mut rows: Vec<BadHost> =
            all.into_iter().map(|(host, (count, last_ms))| BadHost { host, count, last_ms }).collect();
        rows.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.host.cmp(&b.host)));
        Ok(rows)
    }

    fn services(&self, since_ms: i64) -> Result<Vec<ServiceCount>> {
        self.settle_rollups()?;
        let conn = self.readers.get()?;
        service_rows(
            &conn,
            "SELECT service, sum(count) FROM service_hour WHERE hour >= ?1 GROUP BY service ORDER BY 2 DESC, 1",
            [hour_number(since_ms)],
        )
    }

    fn sensor_data(&self, day: i64, owner: Option<AccountId>, after_id: i64, limit: usize) -> Result<Vec<StoredEvent>> {
        let conn = self.readers.get()?;
        let mut st = conn.prepare_cached(match owner {
            None => "SELECT first_id, data FROM event_blocks WHERE day = ?1 AND last_id > ?2 AND ?3 IS NULL ORDER BY last_id",
            Some(_) => "SELECT first_id, data FROM event_blocks WHERE owner = ?3 AND day = ?1 AND last_id > ?2 ORDER BY last_id",
        })?;
        let mut rows = st.query(params![day, after_id, owner])?;
        let mut out = Vec::with_capacity(limit.min(1000));
        while out.len() < limit {
            let Some(row) = rows.next()? else { break };
            let first_id: i64 = row.get(0)?;
            let data = row.get_ref(1)?.as_blob().map_err(rusqlite::Error::from)?;
            block::decode(first_id, data, after_id, limit, &mut out)
                .map_err(|e| StoreError::Invalid(format!("block {first_id}: {e}")))?;
        }
        Ok(out)
    }

    fn sensor_data_count(&self, day: i64, owner: Option<AccountId>) -> Result<u64> {
        self.settle_rollups()?;
        let conn = self.readers.get()?;
        let n: i64 = conn.query_row(
            "SELECT coalesce(sum(count), 0) FROM day_owner WHERE day = ?1 AND (?2 IS NULL OR owner = ?2)",
            params![day, owner],
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }

    fn month_stats(&self, month: Option<i64>) -> Result<Option<MonthStats>> {
        self.settle_rollups()?;
        let conn = self.readers.get()?;
        let row: Option<(i64, i64, i64)> = match month {
            Some(m) => conn
                .query_row("SELECT month, events, hosts FROM month_stats WHERE month = ?1", [m], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .optional()?,
            None => conn
                .query_row("SELECT month, events, hosts FROM month_stats ORDER BY month DESC LIMIT 1", [], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .optional()?,
        };
        let Some((month, events, hosts)) = row else { return Ok(None) };
        let top_services = service_rows(
            &conn,
            "SELECT service, count FROM month_service WHERE month = ?1 ORDER BY count DESC, service LIMIT 10",
            [month],
        )?;
        Ok(Some(MonthStats { month, total_events: events as u64, total_remote_hosts: hosts as u64, top_services }))
    }

    fn nodes(&self, since_ms: i64, owner: Option<AccountId>) -> Result<Vec<NodeInfo>> {
        let conn = self.readers.get()?;
        let mut st = conn.prepare_cached(
            "SELECT node, owner, last_seen_ms, public_ip FROM nodes
             WHERE last_seen_ms >= ?1 AND (?2 IS NULL OR owner = ?2) ORDER BY node",
        )?;
        let rows = st.query_map(params![since_ms, owner], |r| {
            Ok(NodeInfo {
                node: r.get(0)?,
                owner: r.get(1)?,
                last_seen_ms: r.get(2)?,
                public_ip: r.get::<_, Option<String>>(3)?.and_then(|s| s.parse().ok()),
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn ip_history(&self, ip: IpAddr) -> Result<Arc<Vec<IpHistoryRow>>> {
        let ip = apiary_model::canonical_ip(ip);
        self.settle_rollups()?;
        if let Some(rows) = self.history_cache.get(ip) {
            return Ok(rows);
        }
        let epoch = self.history_cache.epoch();
        let conn = self.readers.get()?;
        // One statement, so one read transaction and one round of file
        // locks: a seek per day listed in `days` (the outer loop), in order.
        let mut st = conn.prepare_cached(
            "SELECT d.day, i.service, i.count FROM days d CROSS JOIN ip_day i
             ON i.day = d.day AND i.host = ?1 ORDER BY d.day, i.service",
        )?;
        let rows = st
            .query_map([ip.to_string()], |r| {
                Ok(IpHistoryRow { day: r.get(0)?, service: r.get(1)?, event_count: r.get::<_, i64>(2)? as u64 })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let rows = Arc::new(rows);
        self.history_cache.insert(ip, epoch, rows.clone());
        Ok(rows)
    }

    fn asn_hosts(&self, from_day: i64, to_day: i64) -> Result<Vec<AsnHosts>> {
        self.settle_rollups()?;
        let conn = self.readers.get()?;
        let mut st = conn.prepare_cached(
            "SELECT asn, count(DISTINCT host) FROM ip_day WHERE day BETWEEN ?1 AND ?2 AND asn != 0
             GROUP BY asn ORDER BY 2 DESC, 1",
        )?;
        let rows = st.query_map(params![from_day, to_day], |r| {
            Ok(AsnHosts { asn: r.get(0)?, hosts: r.get::<_, i64>(1)? as u64 })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn payload_records(&self, select: &PayloadSelect, page: Page) -> Result<Vec<PayloadRecord>> {
        history::payload_records(&*self.payload_readers.get()?, select, page)
    }

    fn payload_services(&self) -> Result<Vec<String>> {
        history::payload_services(&*self.payload_readers.get()?)
    }

    fn attribute_values(&self, attribute: &str, page: Page) -> Result<Vec<AttributeValue>> {
        history::attribute_values(&*self.payload_readers.get()?, attribute, page)
    }

    fn payload_hosts_by_year(&self, per_year: usize) -> Result<Vec<YearHosts>> {
        self.settle_payloads()?;
        history::payload_hosts_by_year(&*self.payload_readers.get()?, per_year)
    }

    fn value_hosts(&self, md5: [u8; 16], from_day: i64, to_day: i64, page: Page) -> Result<Vec<DatedHost>> {
        self.settle_payloads()?;
        history::value_hosts(&*self.payload_readers.get()?, md5, from_day, to_day, page)
    }

    fn host_values(&self, ip: IpAddr, page: Page) -> Result<Vec<DatedHash>> {
        self.settle_payloads()?;
        history::host_values(&*self.payload_readers.get()?, ip, page)
    }

    fn cve_hosts(&self, cve: &str, page: Page) -> Result<Vec<DatedHost>> {
        history::cve_hosts(&*self.payload_readers.get()?, cve, page)
    }

    fn host_cves(&self, ip: IpAddr) -> Result<Arc<Vec<CveSighting>>> {
        let ip = apiary_model::canonical_ip(ip);
        if let Some(rows) = self.cve_cache.get(ip) {
            return Ok(rows);
        }
        let epoch = self.cve_cache.epoch();
        let rows = Arc::new(history::host_cves(&*self.payload_readers.get()?, ip)?);
        self.cve_cache.insert(ip, epoch, rows.clone());
        Ok(rows)
    }

    fn prune_events(&self, before_day: i64) -> Result<u64> {
        // Increments held are written before their events may go: were they
        // ever rebuilt from the stored events, these would be missing.
        self.settle_rollups()?;
        let mut total = 0;
        loop {
            let n = self.write(move |conn| writer::prune_chunk(conn, before_day, 20_000))?;
            total += n;
            if n == 0 {
                break;
            }
        }
        let rollups = self.rollup_writer.lock().unwrap_or_else(|p| p.into_inner()).clone().ok_or(StoreError::Closed)?;
        total += writer::call(&rollups, RollupJob::Task, move |conn| rollup_writer::prune_counts(conn, before_day))?;
        Ok(total)
    }

    fn flush(&self) -> Result<()> {
        let dirty = self.quota.take_dirty();
        if dirty.is_empty() {
            return Ok(());
        }
        let rows = dirty.clone();
        let result = self.write(move |conn| {
            let tx = conn.transaction()?;
            {
                let mut st = tx.prepare_cached(
                    "INSERT INTO quota_usage (account, month, used) VALUES (?1, ?2, ?3)
                     ON CONFLICT DO UPDATE SET used = max(used, excluded.used)",
                )?;
                for (a, m, u) in &rows {
                    st.execute(params![a, m, *u as i64])?;
                }
            }
            tx.commit()?;
            Ok(())
        });
        if result.is_err() {
            self.quota.restore_dirty(&dirty);
        }
        result
    }
}
