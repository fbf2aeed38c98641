//! The hand-off from connection tasks to the writer thread: one shared,
//! bounded buffer of event lines, taken by the writer a group at a time.
//!
//! Why not a channel of `String`s: with a channel each event is its own
//! allocation and, whenever the writer thread is parked, its own cross-thread
//! wake-up (a futex system call and a context switch); at thousands of
//! connections a second those wake-ups were a visible share of the sensor's
//! time. Here a connection appends its line under a short lock and wakes the
//! writer only if the writer is actually asleep; the writer then naps a
//! moment so that one wake-up, one `write` and at most one fsync cover the
//! whole group that gathered meanwhile (group commit).
//!
//! Bounded: when the buffer holds [`CAPACITY`] bytes, connections wait for
//! the writer (async, without blocking a worker), so memory stays bounded and
//! no event is dropped between the socket and the disk. Closing (when the
//! last [`Recorder`](crate::record::Recorder) goes) lets the writer drain what
//! is left and stop.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;

/// Bytes of event lines waiting for the writer before connections wait.
pub const CAPACITY: usize = 8 << 20;
/// After the writer is woken by a first event, it sleeps this long and then
/// takes everything that arrived meanwhile. Idle, this is the most an event
/// waits on its way to disk; under load it turns one wake-up, write and
/// fsync per event into one per hundreds.
pub const COALESCE: Duration = Duration::from_millis(2);

#[derive(Default)]
struct State {
    buf: Vec<u8>,
    lines: u64,
    closed: bool,
    /// The writer is waiting on `wake`; only then is a notify needed.
    writer_asleep: bool,
    /// Some connection waits for room; only then is `room` notified.
    full: bool,
    /// The writer's last take found lines (the writer's own state).
    busy: bool,
}

#[derive(Default)]
pub struct Journal {
    state: Mutex<State>,
    wake: Condvar,
    room: Notify,
}

/// Whether `line` may be appended now. A line longer than the whole
/// capacity still goes, alone.
fn has_room(st: &State, line: &[u8]) -> bool {
    st.buf.is_empty() || st.buf.len() + line.len() < CAPACITY
}

/// What [`Journal::take`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Take {
    /// This many lines (each ending in `\n`) were moved into the buffer.
    Lines(u64),
    /// Nothing arrived within the idle timeout.
    Idle,
    /// Closed and empty: the writer is done.
    Closed,
}

impl Journal {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is plain bytes and counters, each update complete; a
        // panic elsewhere while holding the lock cannot leave it torn.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends `line` (a newline is added), waiting while the buffer is full.
    /// After [`close`](Self::close) lines are dropped: the sensor is stopping.
    ///
    /// The usual case, room in the buffer, is decided without an `await`;
    /// only waiting for room is a future of its own, boxed. Every event of
    /// every connection goes through here, so this future is part of every
    /// connection task's state: unboxed, the waiting machinery (a `Notified`
    /// and its pinning) made each task about 200 bytes larger, enough to push
    /// a connection's task allocation out of the allocator's fast size class.
    pub async fn push(&self, line: &[u8]) {
        if !self.try_push(line) {
            Box::pin(self.push_waiting(line)).await;
        }
    }

    /// Appends `line` if there is room (or the journal is closed, in which
    /// case it is dropped); false if the caller must wait for room.
    fn try_push(&self, line: &[u8]) -> bool {
        let mut st = self.lock();
        if st.closed {
            return true;
        }
        if !has_room(&st, line) {
            return false;
        }
        self.append(&mut st, line);
        true
    }

    fn append(&self, st: &mut State, line: &[u8]) {
        st.buf.reserve(line.len() + 1);
        st.buf.extend_from_slice(line);
        st.buf.push(b'\n');
        st.lines += 1;
        if st.writer_asleep {
            st.writer_asleep = false;
            self.wake.notify_one();
        }
    }

    async fn push_waiting(&self, line: &[u8]) {
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            {
                let mut st = self.lock();
                if st.closed {
                    return;
                }
                if has_room(&st, line) {
                    self.append(&mut st, line);
                    return;
                }
                // Registered under the lock: the writer empties the buffer
                // under the same lock before notifying, so no wake-up is lost.
                st.full = true;
                room.as_mut().enable();
            }
            room.await;
        }
    }

    /// No more lines will be accepted; the writer drains and stops.
    pub fn close(&self) {
        let mut st = self.lock();
        st.closed = true;
        self.wake.notify_one();
        drop(st);
        self.room.notify_waiters();
    }

    /// The writer's side: waits up to `idle` for lines, naps [`COALESCE`]
    /// once some have arrived, then swaps them all into `out` (cleared first;
    /// its allocation is handed back to the journal for the next group).
    /// Right after a group, an empty journal is given one nap before the
    /// writer sleeps, so a steady stream of events never needs a wake-up.
    pub fn take(&self, out: &mut Vec<u8>, idle: Duration) -> Take {
        let mut st = self.lock();
        let mut napped = false;
        if st.buf.is_empty() && st.busy && !st.closed {
            // The last take found lines: under load the next ones are a
            // moment away, so nap for them instead of sleeping on the
            // condvar. Then no connection has to wake the writer (a futex
            // call on its task each time) while events keep coming; only
            // once a nap brings nothing does the writer go to sleep.
            drop(st);
            std::thread::sleep(COALESCE);
            st = self.lock();
            napped = true;
        }
        if st.buf.is_empty() {
            st.busy = false;
            if st.closed {
                return Take::Closed;
            }
            st.writer_asleep = true;
            st = self
                .wake
                .wait_timeout_while(st, idle, |s| s.buf.is_empty() && !s.closed)
                .unwrap_or_else(|p| p.into_inner())
                .0;
            st.writer_asleep = false;
            if st.buf.is_empty() {
                return if st.closed { Take::Closed } else { Take::Idle };
            }
            napped = false;
        }
        if !napped && !st.closed && !st.full {
            drop(st);
            std::thread::sleep(COALESCE);
            st = self.lock();
        }
        st.busy = true;
        out.clear();
        std::mem::swap(out, &mut st.buf);
        let lines = std::mem::take(&mut st.lines);
        let was_full = std::mem::take(&mut st.full);
        drop(st);
        if was_full {
            self.room.notify_waiters();
        }
        Take::Lines(lines)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn groups_lines_and_drains_after_close() {
        let j = Arc::new(Journal::default());
        j.push(b"a").await;
        j.push(b"bc").await;
        let mut out = Vec::new();
        assert_eq!(j.take(&mut out, Duration::from_millis(10)), Take::Lines(2));
        assert_eq!(out, b"a\nbc\n");
        assert_eq!(j.take(&mut out, Duration::from_millis(10)), Take::Idle);
        j.push(b"d").await;
        j.close();
        j.push(b"dropped").await;
        assert_eq!(j.take(&mut out, Duration::from_millis(10)), Take::Lines(1));
        assert_eq!(out, b"d\n");
        assert_eq!(j.take(&mut out, Duration::from_millis(10)), Take::Closed);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_buffer_makes_pushers_wait_not_drop() {
        let j = Arc::new(Journal::default());
        let line = vec![b'x'; CAPACITY / 4];
        let pushers: Vec<_> = (0..12)
            .map(|_| {
                let (j, line) = (j.clone(), line.clone());
                tokio::spawn(async move { j.push(&line).await })
            })
            .collect();
        let writer = {
            let j = j.clone();
            std::thread::spawn(move || {
                let (mut out, mut lines, mut peak) = (Vec::new(), 0, 0);
                loop {
                    match j.take(&mut out, Duration::from_millis(50)) {
                        Take::Lines(n) => {
                            lines += n;
                            peak = peak.max(out.len());
                        }
                        Take::Idle => {}
                        Take::Closed => return (lines, peak),
                    }
                }
            })
        };
        for p in pushers {
            p.await.unwrap();
        }
        j.close();
        let (lines, peak) = writer.join().unwrap();
        assert_eq!(lines, 12);
        assert!(peak <= CAPACITY + 4, "{peak} bytes in one group");
    }

    #[test]
    fn wakes_a_sleeping_writer() {
        let j = Arc::new(Journal::default());
        let writer = {
            let j = j.clone();
            std::thread::spawn(move || {
                let mut out = Vec::new();
                let start = std::time::Instant::now();
                let r = j.take(&mut out, Duration::from_secs(10));
                (r, start.elapsed())
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(j.push(b"x"));
        let (r, waited) = writer.join().unwrap();
        assert_eq!(r, Take::Lines(1));
        assert!(waited < Duration::from_secs(5), "{waited:?}");
    }
}
