//! Per-host read answers kept in memory: one IP's history, one IP's CVE
//! sightings.
//!
//! `/ip/{ip}` and its siblings are the API's most called reads, and the
//! same addresses come back again and again (a SIEM enriches every alert
//! about the same attacker). Each read is a few index seeks, but every
//! SQLite read transaction also costs file-lock system calls and a global
//! mutex, which made them most of the answer's CPU. So answers are kept
//! here and dropped when they may have changed:
//!
//! - The writer that maintains the rows calls [`HostCache::invalidate`]
//!   after each commit with the hosts it touched, so in-process ingest shows
//!   at once.
//! - A reader records the [`HostCache::epoch`] before it reads the database
//!   and [`HostCache::insert`] keeps the answer only if no commit has
//!   invalidated anything since: an answer read before a commit can never be
//!   kept after it.
//! - Entries expire after [`TTL`] whatever happens, which bounds how long a
//!   write by another process on the same files (`apiary ingest` beside a
//!   running server) can go unseen.
//! - At most [`MAX_ENTRIES`] hosts; when full, the cache starts over.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;

/// How long an answer may be served without a new read.
pub(crate) const TTL: Duration = Duration::from_secs(5);
/// Hosts kept at most (each entry is a few hundred bytes).
pub(crate) const MAX_ENTRIES: usize = 65_536;

pub(crate) struct HostCache<T> {
    inner: Mutex<Inner<T>>,
}

struct Inner<T> {
    epoch: u64,
    entries: FxHashMap<IpAddr, (Instant, Arc<T>)>,
}

impl<T> Default for HostCache<T> {
    fn default() -> Self {
        HostCache { inner: Mutex::new(Inner { epoch: 0, entries: FxHashMap::default() }) }
    }
}

impl<T> HostCache<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<T>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The kept answer for `host`, if it is still fresh.
    pub fn get(&self, host: IpAddr) -> Option<Arc<T>> {
        let inner = self.lock();
        let (at, value) = inner.entries.get(&host)?;
        (at.elapsed() < TTL).then(|| value.clone())
    }

    /// The invalidation epoch; read it before reading the database.
    pub fn epoch(&self) -> u64 {
        self.lock().epoch
    }

    /// Keeps `value`, read from the database after `epoch` was taken,
    /// unless a commit has invalidated anything since.
    pub fn insert(&self, host: IpAddr, epoch: u64, value: Arc<T>) {
        let mut inner = self.lock();
        if inner.epoch != epoch {
            return;
        }
        if inner.entries.len() >= MAX_ENTRIES {
            inner.entries.clear();
        }
        inner.entries.insert(host, (Instant::now(), value));
    }

    /// Drops the answers of `hosts`; call after committing changes to them.
    pub fn invalidate(&self, hosts: impl IntoIterator<Item = IpAddr>) {
        let mut inner = self.lock();
        inner.epoch += 1;
        if !inner.entries.is_empty() {
            for host in hosts {
                inner.entries.remove(&host);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_answer_read_before_a_commit_is_not_kept() {
        let cache = HostCache::<u32>::default();
        let epoch = cache.epoch();
        // A commit lands between the read and the insert.
        cache.invalidate([ip("192.0.2.9")]);
        cache.insert(ip("192.0.2.1"), epoch, Arc::new(1));
        assert!(cache.get(ip("192.0.2.1")).is_none());
        let epoch = cache.epoch();
        cache.insert(ip("192.0.2.1"), epoch, Arc::new(2));
        assert_eq!(cache.get(ip("192.0.2.1")).as_deref(), Some(&2));
    }

    #[test]
    fn invalidation_drops_only_the_hosts_named() {
        let cache = HostCache::<u32>::default();
        for (i, host) in ["192.0.2.1", "192.0.2.2"].iter().enumerate() {
            cache.insert(ip(host), cache.epoch(), Arc::new(i as u32));
        }
        cache.invalidate([ip("192.0.2.1")]);
        assert!(cache.get(ip("192.0.2.1")).is_none());
        assert_eq!(cache.get(ip("192.0.2.2")).as_deref(), Some(&1));
    }
}
