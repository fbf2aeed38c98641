//! Idempotency keys: which events are stored already.
//!
//! Each stored event leaves a key (its timestamp and a hash of who sent it,
//! from which node, with which sensor-assigned id), so a re-delivered event
//! is recognised and not stored twice. A B-tree row per key cost the writer
//! an insert per event, its largest single share of work. So keys are kept
//! as chunks instead: each commit appends, per account and minute of the
//! events' time (a *bucket*), one row holding the keys it stored. Checks run
//! in memory, against a bucket's keys loaded from its chunks when it is
//! first needed.
//!
//! Memory holds the keys by the second (a *part* of a bucket), and drops
//! them by the second: the parts no transaction used for a while, and past
//! the most keys held, those used least recently. Sensors deliver in time
//! order, so the parts in use are few and stay loaded. Loading a bucket
//! fills every part of it not in memory (a part in memory already holds
//! all of its keys); a part that left memory empty comes back empty, with
//! nothing read (most of a new minute's seconds leave before their time
//! comes).
//!
//! Buckets were a second once. That cost a chunk row per event of a commit
//! for events out of time order (a file of a day's events shuffled: 86,400
//! buckets), and a load for every second. Buckets of a minute held in
//! memory whole cost the other way: events dense in time (a million in a
//! minute) made one bucket larger than memory may hold, dropped and loaded
//! again with every commit. Hence rows by the minute and memory by the
//! second. A database keeps the bucket width it was created with
//! (`claim_bucket_ms` in `meta`): its chunks stay valid.
//!
//! What is in memory always agrees with the database: buckets are loaded
//! inside the write transaction, keys claimed in a transaction that rolls
//! back are forgotten ([`Claims::forget`]), and when another process has
//! committed to the database since the last transaction (`apiary ingest`
//! beside a running server; `PRAGMA data_version` says so), everything
//! loaded is dropped and read again.
//!
//! Databases written before chunks existed keep their keys in the
//! `event_uids` table until they are pruned; a bucket older than that
//! table's newest key loads those too.

use rusqlite::{params, Transaction};
use rustc_hash::{FxHashMap, FxHashSet};
use sha2::{Digest, Sha256};

use crate::types::AccountId;
use crate::{Result, StoreError};

/// An event's idempotency key: its timestamp and 64 bits of SHA-256 of
/// (account, node, sensor-assigned id). A collision needs the same
/// millisecond too.
pub(crate) type Key = (i64, i64);

/// Keys held in memory at most (about 20 bytes each); past it, the parts
/// used least recently are dropped, to be loaded again if needed.
const MAX_KEYS: usize = 2_000_000;
/// The same for a bulk load, which may bring a file's events in any time
/// order: every part of its time range then stays in use, and holding
/// fewer keys than the file has meant loading dropped parts again with
/// every commit.
pub(crate) const BULK_MAX_KEYS: usize = 12_000_000;
/// A part not used by this many transactions leaves memory (it is loaded
/// again if needed): in time order, the parts behind go.
const IDLE_TRANSACTIONS: u64 = 16;
/// Milliseconds of event time per part, where the bucket width is a
/// multiple of it, of at most [`MAX_PARTS`] parts.
const PART_MS: i64 = 1000;
/// Most parts per bucket: one bit each in [`BucketState::dropped_with_keys`].
const MAX_PARTS: i64 = 64;
/// Bytes per key in a chunk: timestamp and hash, little-endian.
const KEY_BYTES: usize = 16;

pub(crate) fn event_key(owner: AccountId, node: &str, id: &str, ts_ms: i64) -> Key {
    let mut h = Sha256::new();
    h.update(owner.to_le_bytes());
    h.update(node.as_bytes());
    h.update([0]);
    h.update(id.as_bytes());
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (ts_ms, i64::from_le_bytes(first))
}

/// How a database cuts event time: into buckets (chunk rows) and, in
/// memory, into parts of buckets.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Widths {
    bucket_ms: i64,
    part_ms: i64,
}

impl Widths {
    fn of_bucket(bucket_ms: i64) -> Widths {
        let parts = bucket_ms / PART_MS;
        let part_ms = if bucket_ms % PART_MS == 0 && parts <= MAX_PARTS { PART_MS } else { bucket_ms };
        Widths { bucket_ms, part_ms }
    }

    fn parts_per_bucket(self) -> i64 {
        self.bucket_ms / self.part_ms
    }

    fn bucket_of_part(self, part: i64) -> i64 {
        part.div_euclid(self.parts_per_bucket())
    }

    /// The part's bit in its bucket's [`BucketState::dropped_with_keys`].
    fn bit_of_part(self, part: i64) -> u64 {
        1 << part.rem_euclid(self.parts_per_bucket())
    }
}

/// What memory knows of a bucket with parts in memory.
struct BucketState {
    /// Sequence number of the bucket's next chunk.
    next_seq: i64,
    /// Its parts that left memory holding keys: only those need the
    /// bucket's chunks read again. A part that left empty had no key
    /// stored (another process's commit makes memory forget everything).
    dropped_with_keys: u64,
}

/// The keys stored so far, as far as loaded, and those claimed by the
/// transaction under way.
pub(crate) struct Claims {
    /// Keys held at most (see [`MAX_KEYS`]).
    max_keys: usize,
    /// As the database says (read at the first transaction).
    widths: Option<Widths>,
    /// By account and part number.
    parts: FxHashMap<(AccountId, i64), Part>,
    /// Each bucket with a part in memory, by account and bucket number.
    buckets: FxHashMap<(AccountId, i64), BucketState>,
    /// Buckets read from the database so far.
    loads: u64,
    /// Keys in all loaded parts.
    keys: usize,
    /// Counts transactions, for least-recently-used eviction.
    clock: u64,
    /// `PRAGMA data_version` at the last transaction: it changes when
    /// another connection commits.
    data_version: Option<i64>,
    /// Per account, the newest timestamp in the legacy `event_uids` table
    /// (`None`: it holds none of the account's keys).
    legacy_until: FxHashMap<AccountId, Option<i64>>,
    /// Parts with keys claimed in this transaction.
    staged: Vec<(AccountId, i64)>,
}

impl Default for Claims {
    fn default() -> Claims {
        Claims::holding_at_most(MAX_KEYS)
    }
}

#[derive(Default)]
struct Part {
    keys: FxHashSet<Key>,
    /// Keys claimed in this transaction, not yet in a chunk.
    staged: Vec<Key>,
    last_used: u64,
}

impl Claims {
    pub(crate) fn holding_at_most(max_keys: usize) -> Claims {
        Claims {
            max_keys,
            widths: None,
            parts: FxHashMap::default(),
            buckets: FxHashMap::default(),
            loads: 0,
            keys: 0,
            clock: 0,
            data_version: None,
            legacy_until: FxHashMap::default(),
            staged: Vec::new(),
        }
    }

    /// Starts a write transaction: what another process committed since the
    /// last one makes everything loaded stale.
    pub fn begin(&mut self, tx: &Transaction) -> Result<()> {
        let version: i64 = tx.query_row("PRAGMA data_version", [], |r| r.get(0))?;
        if self.data_version != Some(version) {
            self.forget();
            self.data_version = Some(version);
        }
        if self.widths.is_none() {
            self.widths = Some(Widths::of_bucket(bucket_ms(tx)?));
        }
        self.clock += 1;
        Ok(())
    }

    fn widths(&self) -> Result<Widths> {
        self.widths.ok_or_else(|| StoreError::Invalid("idempotency keys claimed outside a transaction".into()))
    }

    /// Claims `key` for `owner`: true when no stored event (nor one claimed
    /// earlier in this transaction) has it.
    pub fn claim(&mut self, tx: &Transaction, owner: AccountId, key: Key) -> Result<bool> {
        let widths = self.widths()?;
        let slot = (owner, key.0.div_euclid(widths.part_ms));
        if !self.parts.contains_key(&slot) {
            let bucket = widths.bucket_of_part(slot.1);
            match self.buckets.get(&(owner, bucket)) {
                Some(state) if state.dropped_with_keys & widths.bit_of_part(slot.1) == 0 => {
                    self.parts.insert(slot, Part::default());
                }
                _ => self.load(tx, owner, bucket)?,
            }
        }
        let clock = self.clock;
        let part = self
            .parts
            .get_mut(&slot)
            .ok_or_else(|| StoreError::Invalid(format!("idempotency keys of part {} not loaded", slot.1)))?;
        part.last_used = clock;
        if !part.keys.insert(key) {
            return Ok(false);
        }
        if part.staged.is_empty() {
            self.staged.push(slot);
        }
        part.staged.push(key);
        self.keys += 1;
        Ok(true)
    }

    /// Writes the keys claimed in this transaction, one chunk per bucket.
    pub fn write(&mut self, tx: &Transaction) -> Result<()> {
        let widths = self.widths()?;
        let mut insert =
            tx.prepare_cached("INSERT INTO event_key_chunks (owner, bucket, seq, keys) VALUES (?1, ?2, ?3, ?4)")?;
        // Parts in order, so a bucket's parts are neighbours: one row each.
        let mut staged = std::mem::take(&mut self.staged);
        staged.sort_unstable();
        let bucket_of = |&(owner, part): &(AccountId, i64)| (owner, widths.bucket_of_part(part));
        let mut bytes = Vec::new();
        for parts in staged.chunk_by(|a, b| bucket_of(a) == bucket_of(b)) {
            bytes.clear();
            for slot in parts {
                let Some(part) = self.parts.get_mut(slot) else { continue };
                for (ts_ms, hash) in part.staged.drain(..) {
                    bytes.extend_from_slice(&ts_ms.to_le_bytes());
                    bytes.extend_from_slice(&hash.to_le_bytes());
                }
            }
            if bytes.is_empty() {
                continue;
            }
            let bucket = bucket_of(&parts[0]);
            let state = self.buckets.get_mut(&bucket).ok_or_else(|| {
                StoreError::Invalid(format!("idempotency key bucket {} has no chunk sequence", bucket.1))
            })?;
            insert.execute(params![bucket.0, bucket.1, state.next_seq, bytes])?;
            state.next_seq += 1;
        }
        // The vector's room is kept for the next transaction.
        staged.clear();
        self.staged = staged;
        Ok(())
    }

    /// After a commit: drops, every [`IDLE_TRANSACTIONS`], the parts idle
    /// as long, and keeps memory within the most keys held.
    pub fn committed(&mut self) {
        let Some(widths) = self.widths else { return };
        let mut dropped = Vec::new();
        if self.clock.is_multiple_of(IDLE_TRANSACTIONS) {
            let clock = self.clock;
            self.parts.retain(|slot, p| {
                let keep = clock - p.last_used < IDLE_TRANSACTIONS;
                if !keep {
                    dropped.push((*slot, p.keys.len()));
                }
                keep
            });
        }
        let held: usize = self.keys - dropped.iter().map(|(_, n)| n).sum::<usize>();
        if held > self.max_keys {
            // Least recently used first; of those, the earliest in time.
            let mut by_age: Vec<(u64, (AccountId, i64))> =
                self.parts.iter().map(|(slot, p)| (p.last_used, *slot)).collect();
            by_age.sort_unstable();
            let mut held = held;
            for (_, slot) in by_age {
                if held <= self.max_keys / 4 * 3 {
                    break;
                }
                if let Some(part) = self.parts.remove(&slot) {
                    held -= part.keys.len();
                    dropped.push((slot, part.keys.len()));
                }
            }
        }
        if dropped.is_empty() {
            return;
        }
        for ((owner, part), keys) in dropped {
            self.keys -= keys;
            if let Some(state) = self.buckets.get_mut(&(owner, widths.bucket_of_part(part))) {
                if keys > 0 {
                    state.dropped_with_keys |= widths.bit_of_part(part);
                }
            }
        }
        // A bucket is known while any part of it is in memory.
        let live: FxHashSet<(AccountId, i64)> =
            self.parts.keys().map(|&(owner, part)| (owner, widths.bucket_of_part(part))).collect();
        self.buckets.retain(|bucket, _| live.contains(bucket));
    }

    /// Drops everything loaded: after a rollback (memory may hold keys that
    /// were never stored) or another process's commit.
    pub fn forget(&mut self) {
        self.parts = FxHashMap::default();
        self.buckets = FxHashMap::default();
        self.legacy_until.clear();
        self.staged.clear();
        self.keys = 0;
    }

    /// Reads `bucket`'s chunks into memory: every part of it not in memory
    /// yet, each with the keys stored for it (none, for most of a new
    /// bucket's parts), and the bucket's next chunk sequence number.
    fn load(&mut self, tx: &Transaction, owner: AccountId, bucket: i64) -> Result<()> {
        let widths = self.widths()?;
        let first_part = bucket * widths.parts_per_bucket();
        let mut filled: FxHashMap<i64, FxHashSet<Key>> = (first_part..first_part + widths.parts_per_bucket())
            .filter(|part| !self.parts.contains_key(&(owner, *part)))
            .map(|part| (part, FxHashSet::default()))
            .collect();
        let mut next_seq = 0;
        let mut chunks =
            tx.prepare_cached("SELECT seq, keys FROM event_key_chunks WHERE owner = ?1 AND bucket = ?2")?;
        let mut rows = chunks.query(params![owner, bucket])?;
        while let Some(row) = rows.next()? {
            let seq: i64 = row.get(0)?;
            let bad =
                |what: String| StoreError::Invalid(format!("idempotency key chunk {seq} of bucket {bucket} {what}"));
            let bytes = row.get_ref(1)?.as_blob().map_err(|e| bad(e.to_string()))?;
            if !bytes.len().is_multiple_of(KEY_BYTES) {
                return Err(bad(format!("is {} bytes, not a multiple of {KEY_BYTES}", bytes.len())));
            }
            for key in bytes.chunks_exact(KEY_BYTES) {
                let (ts, hash) = key.split_at(8);
                let word = |b: &[u8]| i64::from_le_bytes(b.try_into().unwrap_or_default());
                let key = (word(ts), word(hash));
                let part = key.0.div_euclid(widths.part_ms);
                if widths.bucket_of_part(part) != bucket {
                    return Err(bad(format!("holds a key of {} ms, outside the bucket", key.0)));
                }
                if let Some(keys) = filled.get_mut(&part) {
                    keys.insert(key);
                }
            }
            next_seq = next_seq.max(seq + 1);
        }
        let start_ms = bucket * widths.bucket_ms;
        if self.legacy_until(tx, owner)?.is_some_and(|until| until >= start_ms) {
            let mut legacy =
                tx.prepare_cached("SELECT ts_ms, uid FROM event_uids WHERE owner = ?1 AND ts_ms >= ?2 AND ts_ms < ?3")?;
            let rows = legacy
                .query_map(params![owner, start_ms, start_ms + widths.bucket_ms], |r| Ok((r.get(0)?, r.get(1)?)))?;
            for key in rows {
                let key: Key = key?;
                if let Some(keys) = filled.get_mut(&key.0.div_euclid(widths.part_ms)) {
                    keys.insert(key);
                }
            }
        }
        self.buckets.insert((owner, bucket), BucketState { next_seq, dropped_with_keys: 0 });
        self.loads += 1;
        for (part, keys) in filled {
            self.keys += keys.len();
            self.parts.insert((owner, part), Part { keys, staged: Vec::new(), last_used: self.clock });
        }
        Ok(())
    }

    fn legacy_until(&mut self, tx: &Transaction, owner: AccountId) -> Result<Option<i64>> {
        if let Some(until) = self.legacy_until.get(&owner) {
            return Ok(*until);
        }
        let until: Option<i64> =
            tx.query_row("SELECT max(ts_ms) FROM event_uids WHERE owner = ?1", [owner], |r| r.get(0))?;
        self.legacy_until.insert(owner, until);
        Ok(until)
    }
}

/// The first bucket of `day` (a day number): chunks of buckets before it
/// hold keys of days before it.
pub(crate) fn first_bucket_of_day(tx: &Transaction, day: i64) -> Result<i64> {
    Ok(day * apiary_model::time::MS_PER_DAY / bucket_ms(tx)?)
}

/// The database's bucket width. A width that does not divide a day would
/// let a bucket hold keys of two days, and pruning one day would drop the
/// next day's keys with it.
fn bucket_ms(tx: &Transaction) -> Result<i64> {
    let ms: i64 = tx.query_row("SELECT value FROM meta WHERE key = 'claim_bucket_ms'", [], |r| r.get(0))?;
    if ms <= 0 || apiary_model::time::MS_PER_DAY % ms != 0 {
        return Err(StoreError::Invalid(format!("claim_bucket_ms {ms} in apiary.db does not divide a day")));
    }
    Ok(ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::schema;

    fn commit(conn: &mut rusqlite::Connection, claims: &mut Claims, keys: &[Key]) -> Vec<bool> {
        let tx = conn.transaction().unwrap();
        claims.begin(&tx).unwrap();
        let fresh = keys.iter().map(|k| claims.claim(&tx, 1, *k).unwrap()).collect();
        claims.write(&tx).unwrap();
        tx.commit().unwrap();
        claims.committed();
        fresh
    }

    /// A new `apiary.db` in `dir`, at the latest schema.
    fn migrated(dir: &std::path::Path) -> rusqlite::Connection {
        let mut conn = rusqlite::Connection::open(dir.join("apiary.db")).unwrap();
        schema::migrate(&mut conn, &schema::MAIN).unwrap();
        conn
    }

    #[test]
    fn keys_are_recognised_after_their_bucket_left_memory() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = migrated(dir.path());
        let mut claims = Claims::holding_at_most(20);
        // 100 keys over 10 buckets of a minute, in two commits: memory keeps
        // only some.
        let keys: Vec<Key> = (0..100).map(|i| (i * 6_000, i * 7919)).collect();
        assert!(commit(&mut conn, &mut claims, &keys[..50]).iter().all(|f| *f));
        assert!(commit(&mut conn, &mut claims, &keys[50..]).iter().all(|f| *f));
        assert!(claims.keys <= 20, "{} keys held", claims.keys);
        // Every stored key is refused, from memory or reloaded; new keys in
        // the same buckets are taken, each once.
        let mut again = keys.clone();
        again.extend((0..100).map(|i| (i * 6_000 + 1, i)));
        again.push((1, 0));
        let fresh = commit(&mut conn, &mut claims, &again);
        assert!(fresh[..100].iter().all(|f| !*f));
        assert!(fresh[100..200].iter().all(|f| *f));
        assert!(!fresh[200], "the same key twice in one transaction");
        // A transaction that rolls back leaves nothing claimed.
        let tx = conn.transaction().unwrap();
        claims.begin(&tx).unwrap();
        assert!(claims.claim(&tx, 1, (5_000, 1)).unwrap());
        claims.write(&tx).unwrap();
        drop(tx);
        claims.forget();
        assert_eq!(commit(&mut conn, &mut claims, &[(5_000, 1)]), [true]);
    }

    #[test]
    fn idle_parts_leave_memory_and_their_keys_still_count() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = migrated(dir.path());
        let mut claims = Claims::holding_at_most(BULK_MAX_KEYS);
        let early: Vec<Key> = (0..50).map(|i| (i * 1_000, i)).collect();
        assert!(commit(&mut conn, &mut claims, &early).iter().all(|f| *f));
        // Events move on in time, a minute per transaction: the first
        // minute's parts go idle, then leave.
        for t in 1..=IDLE_TRANSACTIONS as i64 * 2 {
            assert_eq!(commit(&mut conn, &mut claims, &[(t * 60_000, t)]), [true]);
        }
        assert!(!claims.parts.contains_key(&(1, 0)), "an idle part stays in memory");
        assert!(claims.keys <= IDLE_TRANSACTIONS as usize + 1, "{} keys held", claims.keys);
        // Its keys are still recognised (loaded again), and new ones taken.
        let fresh = commit(&mut conn, &mut claims, &[early[7], (7_001, 7), early[7]]);
        assert_eq!(fresh, [false, true, false]);
    }

    #[test]
    fn a_minute_denser_than_memory_is_held_by_the_second() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = migrated(dir.path());
        let mut claims = Claims::holding_at_most(1000);
        // 3,000 keys in 30 s of one minute, 100 a second, in time order,
        // five commits of 600: more than memory holds.
        let keys: Vec<Key> = (0..3000).map(|i| (i * 10, i)).collect();
        for (n, commit_keys) in keys.chunks(600).enumerate() {
            assert!(commit(&mut conn, &mut claims, commit_keys).iter().all(|f| *f));
            assert!(claims.keys <= 1000, "{} keys held", claims.keys);
            // The second in use stays: memory drops what is behind it, not
            // the whole minute (which would be loaded again next commit).
            let latest = commit_keys[commit_keys.len() - 1].0 / 1000;
            assert!(claims.parts.contains_key(&(1, latest)), "commit {n} dropped the second in use");
            let rows: i64 = conn.query_row("SELECT count(*) FROM event_key_chunks", [], |r| r.get(0)).unwrap();
            assert_eq!(rows, n as i64 + 1, "one chunk row per commit and minute");
            // The minute was read once: its later seconds left memory
            // empty, and come back without reading it again.
            assert_eq!(claims.loads, 1);
        }
        // Every key is still recognised, loaded again where dropped; a
        // second reload does not count a part's keys twice.
        let again = commit(&mut conn, &mut claims, &keys);
        assert!(again.iter().all(|f| !*f));
        assert!(commit(&mut conn, &mut claims, &[(25_000, 1), (25_000, 7)]).iter().all(|f| *f));
        assert!(claims.keys <= 1000 + 2, "{} keys held", claims.keys);
    }

    #[test]
    fn a_database_keeps_the_bucket_width_its_keys_were_stored_with() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = rusqlite::Connection::open(dir.path().join("apiary.db")).unwrap();
        // A database of version 5 whose keys were chunked by the second, as
        // that version did: key (12_345_678, 42) in bucket 12_345.
        let v5 = schema::Schema { migrations: &schema::MAIN.migrations[..5], ..schema::MAIN };
        schema::migrate(&mut conn, &v5).unwrap();
        let mut chunk = 12_345_678i64.to_le_bytes().to_vec();
        chunk.extend_from_slice(&42i64.to_le_bytes());
        conn.execute("INSERT INTO event_key_chunks (owner, bucket, seq, keys) VALUES (1, 12345, 0, ?1)", [&chunk])
            .unwrap();
        schema::migrate(&mut conn, &schema::MAIN).unwrap();
        let mut claims = Claims::default();
        assert_eq!(commit(&mut conn, &mut claims, &[(12_345_678, 42), (12_345_679, 42)]), [false, true]);
        assert_eq!(claims.widths, Some(Widths { bucket_ms: 1000, part_ms: 1000 }));
        // A new database counts in minutes.
        let mut fresh = rusqlite::Connection::open(dir.path().join("fresh.db")).unwrap();
        schema::migrate(&mut fresh, &schema::MAIN).unwrap();
        let mut claims = Claims::default();
        assert_eq!(commit(&mut fresh, &mut claims, &[(12_345_678, 42)]), [true]);
        assert_eq!(claims.widths, Some(Widths { bucket_ms: 60_000, part_ms: 1000 }));
        // A width that does not divide a day is refused, not used.
        fresh.execute("UPDATE meta SET value = 7000 WHERE key = 'claim_bucket_ms'", []).unwrap();
        let tx = fresh.transaction().unwrap();
        assert!(Claims::default().begin(&tx).is_err());
    }
}
