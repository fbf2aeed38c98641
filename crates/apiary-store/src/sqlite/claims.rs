//! Idempotency keys: which events are stored already.
//!
//! Each stored event leaves a key (its timestamp and a hash of who sent it,
//! from which node, with which sensor-assigned id), so a re-delivered event
//! is recognised and not stored twice. A B-tree row per key cost the writer
//! an insert per event, its largest single share of work. So keys are kept
//! as chunks instead: each commit appends, per account and minute of the
//! events' time (a *bucket*), one row holding the keys it stored. Checks run
//! in memory, against a bucket's keys loaded from its chunks when it is
//! first needed; sensors deliver in time order, so the buckets in use are
//! few and stay loaded, and those no longer used leave memory.
//!
//! A bucket was a second until buckets of a second turned out to cost a
//! chunk row per event for events out of time order (a file of a day's
//! events shuffled: 86,400 buckets, nearly one per event of a commit), and
//! every bucket loaded once on its own. A database keeps the width it was
//! created with (`claim_bucket_ms` in `meta`): its chunks stay valid.
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

/// Keys held in memory at most (about 20 bytes each); past it, the buckets
/// used least recently are dropped, to be loaded again if needed.
const MAX_KEYS: usize = 2_000_000;
/// The same for a bulk load, which may bring a file's events in any time
/// order: every bucket of its time range then stays in use, and holding
/// fewer keys than the file has meant loading evicted buckets again with
/// every commit.
pub(crate) const BULK_MAX_KEYS: usize = 12_000_000;
/// A bucket not used by this many transactions leaves memory (it is loaded
/// again if needed): in time order, the buckets behind go.
const IDLE_TRANSACTIONS: u64 = 16;
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

/// The keys stored so far, as far as loaded, and those claimed by the
/// transaction under way.
pub(crate) struct Claims {
    /// Keys held at most (see [`MAX_KEYS`]).
    max_keys: usize,
    /// Milliseconds of event time per bucket, as the database says (read
    /// at the first transaction).
    bucket_ms: Option<i64>,
    buckets: FxHashMap<(AccountId, i64), Bucket>,
    /// Keys in all loaded buckets.
    keys: usize,
    /// Counts transactions, for least-recently-used eviction.
    clock: u64,
    /// `PRAGMA data_version` at the last transaction: it changes when
    /// another connection commits.
    data_version: Option<i64>,
    /// Per account, the newest timestamp in the legacy `event_uids` table
    /// (`None`: it holds none of the account's keys).
    legacy_until: FxHashMap<AccountId, Option<i64>>,
    /// Buckets with keys claimed in this transaction.
    staged: Vec<(AccountId, i64)>,
}

impl Default for Claims {
    fn default() -> Claims {
        Claims::holding_at_most(MAX_KEYS)
    }
}

#[derive(Default)]
struct Bucket {
    keys: FxHashSet<Key>,
    /// Sequence number of the bucket's next chunk.
    next_seq: i64,
    /// Keys claimed in this transaction, not yet in a chunk.
    staged: Vec<Key>,
    last_used: u64,
}

impl Claims {
    pub(crate) fn holding_at_most(max_keys: usize) -> Claims {
        Claims {
            max_keys,
            bucket_ms: None,
            buckets: FxHashMap::default(),
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
        if self.bucket_ms.is_none() {
            self.bucket_ms = Some(bucket_ms(tx)?);
        }
        self.clock += 1;
        Ok(())
    }

    /// Claims `key` for `owner`: true when no stored event (nor one claimed
    /// earlier in this transaction) has it.
    pub fn claim(&mut self, tx: &Transaction, owner: AccountId, key: Key) -> Result<bool> {
        let bucket_ms = self
            .bucket_ms
            .ok_or_else(|| StoreError::Invalid("idempotency keys claimed outside a transaction".into()))?;
        let slot = (owner, key.0.div_euclid(bucket_ms));
        if !self.buckets.contains_key(&slot) {
            let bucket = self.load(tx, slot)?;
            self.keys += bucket.keys.len();
            self.buckets.insert(slot, bucket);
        }
        let clock = self.clock;
        let Some(bucket) = self.buckets.get_mut(&slot) else { return Ok(false) };
        bucket.last_used = clock;
        if !bucket.keys.insert(key) {
            return Ok(false);
        }
        if bucket.staged.is_empty() {
            self.staged.push(slot);
        }
        bucket.staged.push(key);
        self.keys += 1;
        Ok(true)
    }

    /// Writes the keys claimed in this transaction, one chunk per bucket.
    pub fn write(&mut self, tx: &Transaction) -> Result<()> {
        let mut insert =
            tx.prepare_cached("INSERT INTO event_key_chunks (owner, bucket, seq, keys) VALUES (?1, ?2, ?3, ?4)")?;
        let mut bytes = Vec::new();
        for slot in self.staged.drain(..) {
            let Some(bucket) = self.buckets.get_mut(&slot) else { continue };
            bytes.clear();
            for (ts_ms, hash) in bucket.staged.drain(..) {
                bytes.extend_from_slice(&ts_ms.to_le_bytes());
                bytes.extend_from_slice(&hash.to_le_bytes());
            }
            insert.execute(params![slot.0, slot.1, bucket.next_seq, bytes])?;
            bucket.next_seq += 1;
        }
        Ok(())
    }

    /// After a commit: drops, every [`IDLE_TRANSACTIONS`], the buckets idle
    /// as long, and keeps memory within the most keys held.
    pub fn committed(&mut self) {
        if self.clock.is_multiple_of(IDLE_TRANSACTIONS) {
            let (keys, clock) = (&mut self.keys, self.clock);
            self.buckets.retain(|_, b| {
                let keep = clock - b.last_used < IDLE_TRANSACTIONS;
                if !keep {
                    *keys -= b.keys.len();
                }
                keep
            });
        }
        if self.keys <= self.max_keys {
            return;
        }
        let mut by_age: Vec<(u64, (AccountId, i64), usize)> =
            self.buckets.iter().map(|(slot, b)| (b.last_used, *slot, b.keys.len())).collect();
        by_age.sort_unstable();
        for (_, slot, len) in by_age {
            if self.keys <= self.max_keys / 4 * 3 {
                break;
            }
            self.buckets.remove(&slot);
            self.keys -= len;
        }
    }

    /// Drops everything loaded: after a rollback (memory may hold keys that
    /// were never stored) or another process's commit.
    pub fn forget(&mut self) {
        self.buckets = FxHashMap::default();
        self.legacy_until.clear();
        self.staged.clear();
        self.keys = 0;
    }

    fn load(&mut self, tx: &Transaction, (owner, bucket): (AccountId, i64)) -> Result<Bucket> {
        let mut loaded = Bucket::default();
        let mut chunks =
            tx.prepare_cached("SELECT seq, keys FROM event_key_chunks WHERE owner = ?1 AND bucket = ?2")?;
        let mut rows = chunks.query(params![owner, bucket])?;
        while let Some(row) = rows.next()? {
            let seq: i64 = row.get(0)?;
            let bytes = row
                .get_ref(1)?
                .as_blob()
                .map_err(|e| StoreError::Invalid(format!("idempotency key chunk {seq} of bucket {bucket}: {e}")))?;
            if !bytes.len().is_multiple_of(KEY_BYTES) {
                return Err(StoreError::Invalid(format!(
                    "idempotency key chunk {seq} of bucket {bucket} is {} bytes, not a multiple of {KEY_BYTES}",
                    bytes.len()
                )));
            }
            for key in bytes.chunks_exact(KEY_BYTES) {
                let (ts, hash) = key.split_at(8);
                let word = |b: &[u8]| i64::from_le_bytes(b.try_into().unwrap_or_default());
                loaded.keys.insert((word(ts), word(hash)));
            }
            loaded.next_seq = loaded.next_seq.max(seq + 1);
        }
        let bucket_ms = self.bucket_ms.unwrap_or(1000);
        let start_ms = bucket * bucket_ms;
        if self.legacy_until(tx, owner)?.is_some_and(|until| until >= start_ms) {
            let mut legacy =
                tx.prepare_cached("SELECT ts_ms, uid FROM event_uids WHERE owner = ?1 AND ts_ms >= ?2 AND ts_ms < ?3")?;
            let rows =
                legacy.query_map(params![owner, start_ms, start_ms + bucket_ms], |r| Ok((r.get(0)?, r.get(1)?)))?;
            for key in rows {
                loaded.keys.insert(key?);
            }
        }
        Ok(loaded)
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

    #[test]
    fn keys_are_recognised_after_their_bucket_left_memory() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = rusqlite::Connection::open(dir.path().join("apiary.db")).unwrap();
        schema::migrate(&mut conn, &schema::MAIN).unwrap();
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
    fn idle_buckets_leave_memory_and_their_keys_still_count() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = rusqlite::Connection::open(dir.path().join("apiary.db")).unwrap();
        schema::migrate(&mut conn, &schema::MAIN).unwrap();
        let mut claims = Claims::holding_at_most(BULK_MAX_KEYS);
        let early: Vec<Key> = (0..50).map(|i| (i * 1_000, i)).collect();
        assert!(commit(&mut conn, &mut claims, &early).iter().all(|f| *f));
        // Events move on in time, a minute per transaction: the first
        // minute's bucket goes idle, then leaves.
        for t in 1..=IDLE_TRANSACTIONS as i64 * 2 {
            assert_eq!(commit(&mut conn, &mut claims, &[(t * 60_000, t)]), [true]);
        }
        assert!(!claims.buckets.contains_key(&(1, 0)), "an idle bucket stays in memory");
        assert!(claims.keys <= IDLE_TRANSACTIONS as usize + 1, "{} keys held", claims.keys);
        // Its keys are still recognised (loaded again), and new ones taken.
        let fresh = commit(&mut conn, &mut claims, &[early[7], (7_001, 7), early[7]]);
        assert_eq!(fresh, [false, true, false]);
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
        assert_eq!(claims.bucket_ms, Some(1000));
        // A new database counts in minutes.
        let mut fresh = rusqlite::Connection::open(dir.path().join("fresh.db")).unwrap();
        schema::migrate(&mut fresh, &schema::MAIN).unwrap();
        let mut claims = Claims::default();
        assert_eq!(commit(&mut fresh, &mut claims, &[(12_345_678, 42)]), [true]);
        assert_eq!(claims.bucket_ms, Some(60_000));
        // A width that does not divide a day is refused, not used.
        fresh.execute("UPDATE meta SET value = 7000 WHERE key = 'claim_bucket_ms'", []).unwrap();
        let tx = fresh.transaction().unwrap();
        assert!(Claims::default().begin(&tx).is_err());
    }
}
