//! Per-connection time limits (idle time, overall duration) and the end of a
//! listener's connections, without a timer per connection or per read.
//!
//! Why: with `tokio::time::timeout` around the handler and around every read
//! and write that has to wait, a short connection registered and removed
//! three or more timers in the runtime's timer wheel (a lock each way), and
//! the `JoinSet` holding the tasks (so that a cancelled listener ends its
//! connections) took three more locks per connection. Here each connection
//! has one [`Slot`] in its listener's [`Deadlines`] (one lock to register,
//! one to leave): a read or write that has to wait only stores the time it
//! started waiting in the slot, and the listener's accept loop sweeps the
//! slots every [`SWEEP_EVERY`], waking the connections whose limit has
//! passed. A limit is therefore enforced at most one sweep late, never early.
//! Dropping the `Deadlines` (the listener's future is dropped when the
//! sensor stops) ends every connection still registered.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// How often the accept loop looks for connections past a limit: the most a
/// limit can be exceeded by.
pub const SWEEP_EVERY: Duration = Duration::from_millis(250);

/// Why a connection's slot fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    /// A read or write waited longer than the idle timeout.
    Idle,
    /// The connection lasted longer than its maximum duration.
    Duration,
    /// The listener is gone (the sensor is stopping).
    Stopped,
}

const NOT_FIRED: u8 = 0;
/// `waiting_since`'s value while no read or write is waiting.
const NOT_WAITING: u64 = u64::MAX;

/// One connection's limits, shared by its task and the sweeping accept loop.
pub struct Slot {
    base: Instant,
    /// Milliseconds since `base` at which the read or write now waiting
    /// started to wait, or [`NOT_WAITING`].
    waiting_since: AtomicU64,
    /// The connection's idle limit, in milliseconds.
    idle_ms: u64,
    /// Milliseconds since `base` at which the connection must end.
    end_at: u64,
    /// `NOT_FIRED`, or an [`Expired`] as `1 + its index`.
    fired: AtomicU8,
    waker: Mutex<Option<Waker>>,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Slot {
    fn now_ms(&self) -> u64 {
        millis(self.base.elapsed())
    }

    fn lock_waker(&self) -> MutexGuard<'_, Option<Waker>> {
        // A waker is replaced whole or not at all: a panic elsewhere cannot
        // leave it torn.
        self.waker.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long one read or write may wait.
    pub fn idle(&self) -> Duration {
        Duration::from_millis(self.idle_ms)
    }

    /// A read or write has to wait for the client: from now on the idle
    /// limit runs. Only a clock read and a store: no timer is registered.
    pub fn start_waiting(&self) {
        self.waiting_since.store(self.now_ms(), Ordering::Release);
    }

    /// The read or write that was waiting is done.
    pub fn done_waiting(&self) {
        self.waiting_since.store(NOT_WAITING, Ordering::Release);
    }

    /// The limit this slot has passed at `now`, if any.
    fn due(&self, now: u64) -> Option<Expired> {
        if now >= self.end_at {
            return Some(Expired::Duration);
        }
        let since = self.waiting_since.load(Ordering::Acquire);
        (since != NOT_WAITING && now.saturating_sub(since) >= self.idle_ms).then_some(Expired::Idle)
    }

    fn fired(&self) -> Option<Expired> {
        match self.fired.load(Ordering::Acquire) {
            1 => Some(Expired::Idle),
            2 => Some(Expired::Duration),
            3 => Some(Expired::Stopped),
            _ => None,
        }
    }

    /// Fires (once: the first reason stays) and wakes the connection's task.
    fn fire(&self, why: Expired) {
        let code = match why {
            Expired::Idle => 1,
            Expired::Duration => 2,
            Expired::Stopped => 3,
        };
        if self.fired.compare_exchange(NOT_FIRED, code, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            if let Some(w) = self.lock_waker().take() {
                w.wake();
            }
        }
    }

    /// Completes when a limit has passed (or the listener is gone).
    pub fn expired(&self) -> Expiry<'_> {
        Expiry(self)
    }
}

/// See [`Slot::expired`].
pub struct Expiry<'a>(&'a Slot);

impl Future for Expiry<'_> {
    type Output = Expired;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Expired> {
        let slot = self.0;
        if let Some(why) = slot.fired() {
            return Poll::Ready(why);
        }
        {
            let mut w = slot.lock_waker();
            // A task's waker stays the same from poll to poll: usually
            // nothing to replace.
            if !w.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *w = Some(cx.waker().clone());
            }
        }
        // Fired between the first check and the registration: the sweeper
        // found no waker to wake, so look again.
        match slot.fired() {
            Some(why) => Poll::Ready(why),
            None => Poll::Pending,
        }
    }
}

#[derive(Default)]
struct Slots {
    list: Vec<Option<Arc<Slot>>>,
    free: Vec<usize>,
    stopped: bool,
}

/// A listener's connection slots.
pub struct Deadlines {
    base: Instant,
    slots: Mutex<Slots>,
}

/// A connection's registration; leaving the registry when dropped.
pub struct Entry {
    owner: Arc<Deadlines>,
    index: usize,
    slot: Arc<Slot>,
}

impl Entry {
    pub fn slot(&self) -> &Arc<Slot> {
        &self.slot
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        let mut s = self.owner.lock();
        if let Some(place) = s.list.get_mut(self.index) {
            *place = None;
            s.free.push(self.index);
        }
    }
}

impl Deadlines {
    pub fn new() -> Arc<Deadlines> {
        Arc::new(Deadlines { base: Instant::now(), slots: Mutex::new(Slots::default()) })
    }

    fn lock(&self) -> MutexGuard<'_, Slots> {
        // Slots are added and removed whole: a panic elsewhere while the
        // lock is held cannot leave the list torn.
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a new connection that may last `max_duration` and wait
    /// `idle` for any one read or write.
    pub fn register(self: &Arc<Self>, max_duration: Duration, idle: Duration) -> Entry {
        let now = millis(self.base.elapsed());
        let slot = Arc::new(Slot {
            base: self.base,
            waiting_since: AtomicU64::new(NOT_WAITING),
            idle_ms: millis(idle),
            end_at: now.saturating_add(millis(max_duration)),
            fired: AtomicU8::new(NOT_FIRED),
            waker: Mutex::new(None),
        });
        let mut s = self.lock();
        if s.stopped {
            slot.fire(Expired::Stopped);
        }
        let index = match s.free.pop() {
            Some(i) => {
                s.list[i] = Some(slot.clone());
                i
            }
            None => {
                s.list.push(Some(slot.clone()));
                s.list.len() - 1
            }
        };
        drop(s);
        Entry { owner: self.clone(), index, slot }
    }

    /// Fires every slot whose limit has passed.
    pub fn sweep(&self) {
        let now = millis(self.base.elapsed());
        let s = self.lock();
        for slot in s.list.iter().flatten() {
            if let Some(why) = slot.due(now) {
                slot.fire(why);
            }
        }
    }

    /// Ends every connection, now and registered later.
    pub fn stop_all(&self) {
        let mut s = self.lock();
        s.stopped = true;
        for slot in s.list.iter().flatten() {
            slot.fire(Expired::Stopped);
        }
    }

    /// Connections registered now.
    #[cfg(test)]
    fn len(&self) -> usize {
        let s = self.lock();
        s.list.len() - s.free.len()
    }
}

/// Calls [`Deadlines::stop_all`] when dropped: the accept loop holds one, so
/// dropping its future ends its connections.
pub struct StopOnDrop(pub Arc<Deadlines>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn idle_fires_only_while_waiting() {
        let d = Deadlines::new();
        let e = d.register(Duration::from_secs(60), Duration::from_millis(50));
        tokio::time::sleep(Duration::from_millis(80)).await;
        d.sweep();
        assert_eq!(e.slot().fired(), None, "not waiting: not idle");
        e.slot().start_waiting();
        d.sweep();
        assert_eq!(e.slot().fired(), None, "never early");
        tokio::time::sleep(Duration::from_millis(60)).await;
        e.slot().done_waiting();
        d.sweep();
        assert_eq!(e.slot().fired(), None, "done before the sweep");
        e.slot().start_waiting();
        tokio::time::sleep(Duration::from_millis(60)).await;
        d.sweep();
        assert_eq!(e.slot().expired().await, Expired::Idle);
    }

    #[tokio::test]
    async fn duration_fires_and_wakes() {
        let d = Deadlines::new();
        let e = d.register(Duration::from_millis(30), Duration::from_secs(60));
        let slot = e.slot().clone();
        let waiter = tokio::spawn(async move { slot.expired().await });
        tokio::time::sleep(Duration::from_millis(10)).await;
        d.sweep();
        assert!(!waiter.is_finished());
        tokio::time::sleep(Duration::from_millis(30)).await;
        d.sweep();
        assert_eq!(waiter.await.unwrap(), Expired::Duration);
    }

    #[tokio::test]
    async fn dropping_the_guard_stops_everyone_and_entries_leave() {
        let d = Deadlines::new();
        let a = d.register(Duration::from_secs(60), Duration::from_secs(60));
        let b = d.register(Duration::from_secs(60), Duration::from_secs(60));
        drop(b);
        assert_eq!(d.len(), 1);
        drop(StopOnDrop(d.clone()));
        assert_eq!(a.slot().expired().await, Expired::Stopped);
        let late = d.register(Duration::from_secs(60), Duration::from_secs(60));
        assert_eq!(late.slot().expired().await, Expired::Stopped);
        drop((a, late));
        assert_eq!(d.len(), 0);
    }
}
