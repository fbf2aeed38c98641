//! The disk-backed delivery queue.
//!
//! Layout in `<state>/queue/`: append-only segment files named by a
//! zero-padded sequence number (`00000000000000000001.ndjson`), each holding
//! whole wire events, one JSON object per line; and `cursor`, the position up
//! to which the server has acknowledged (`<segment> <offset> <lines>`),
//! replaced atomically (write, fsync, rename) after each delivered batch.
//!
//! Guarantees: an event is removed only after the server stored it (or said
//! it never will), so delivery is at-least-once; the server's idempotent
//! ingest makes it exactly-once. After a crash, a torn last line is cut off
//! and delivery resumes at the cursor; at most the last batch is resent.
//! When the queue would exceed its byte bound, whole oldest segments are
//! deleted and their unsent events counted as dropped.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::FsyncPolicy;

const SUFFIX: &str = ".ndjson";

#[derive(Debug, Clone)]
pub struct QueueOptions {
    pub max_bytes: u64,
    pub segment_bytes: u64,
    pub fsync: FsyncPolicy,
    pub fsync_interval: Duration,
}

/// A place in the queue: byte `off` of segment `seg`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    pub seg: u64,
    pub off: u64,
}

/// Events read for one delivery attempt: their lines back to back, each
/// ending in `\n`, exactly as the server takes NDJSON.
#[derive(Debug, Default)]
pub struct Batch {
    data: Vec<u8>,
    /// Where each line ends in `data` (past its `\n`).
    ends: Vec<usize>,
    /// Where the queue stands once this batch is acknowledged.
    end: Progress,
}

/// How far a batch reaches into the queue: what [`Queue::ack`] records.
#[derive(Debug, Default, Clone, Copy)]
pub struct Progress(Option<(Pos, u64)>);

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Where the queue stands once this batch is delivered.
    pub fn progress(&self) -> Progress {
        self.end
    }

    /// Events in the batch.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    fn start(&self, i: usize) -> usize {
        if i == 0 {
            0
        } else {
            self.ends[i - 1]
        }
    }

    /// Event `i`'s line, without the newline.
    pub fn line(&self, i: usize) -> Option<&[u8]> {
        let end = *self.ends.get(i)?;
        Some(&self.data[self.start(i)..end - 1])
    }

    /// Events `range` as one NDJSON chunk (each line ending in `\n`).
    pub fn ndjson(&self, range: std::ops::Range<usize>) -> &[u8] {
        if range.is_empty() {
            return &[];
        }
        &self.data[self.start(range.start)..self.ends[range.end - 1]]
    }
}

/// The index of the first `\n` in `bytes`, eight bytes at a time: the
/// shipper scans every byte it sends for line ends, and a byte-by-byte
/// search was most of the cost of reading a batch.
fn find_newline(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_le_bytes([1; 8]);
    const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
    const NEWLINES: u64 = u64::from_le_bytes([b'\n'; 8]);
    let mut words = bytes.chunks_exact(8);
    let mut at = 0;
    for word in words.by_ref() {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        let x = u64::from_le_bytes(w) ^ NEWLINES;
        // A byte of `x` is zero where `word` has a newline; the lowest flag
        // set is exact (only bytes above a zero byte can be flagged falsely).
        let zeros = x.wrapping_sub(ONES) & !x & HIGHS;
        if zeros != 0 {
            return Some(at + (zeros.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    words.remainder().iter().position(|&b| b == b'\n').map(|i| at + i)
}

/// How much of a segment `read_batch` reads at a time.
const READ_CHUNK: u64 = 256 << 10;

#[derive(Debug)]
struct Segment {
    seq: u64,
    len: u64,
    lines: u64,
}

#[derive(Debug)]
struct Inner {
    segments: VecDeque<Segment>,
    head: File,
    cursor: Pos,
    /// Lines of the cursor's segment before the cursor.
    cursor_lines: u64,
    total_bytes: u64,
    dropped: u64,
    unsynced: bool,
    last_sync: Instant,
}

#[derive(Debug)]
pub struct Queue {
    dir: PathBuf,
    opts: QueueOptions,
    inner: Mutex<Inner>,
}

fn seg_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}{SUFFIX}"))
}

fn count_lines(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b == b'\n').count() as u64
}

fn sync_dir(dir: &Path) {
    // Makes a rename or a new file durable; failure only weakens the
    // guarantee on exotic filesystems, so it is not an error.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

impl Queue {
    /// Opens (or creates) the queue in `dir`, repairing a torn tail.
    pub fn open(dir: &Path, opts: QueueOptions) -> io::Result<Queue> {
        fs::create_dir_all(dir)?;
        let mut seqs: Vec<u64> = fs::read_dir(dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(SUFFIX)?.parse().ok())
            .collect();
        seqs.sort_unstable();
        let mut cursor = read_cursor(dir).unwrap_or(Pos { seg: 0, off: 0 });
        // Segments wholly before the cursor were delivered: remove leftovers.
        seqs.retain(|&s| {
            if s < cursor.seg {
                let _ = fs::remove_file(seg_path(dir, s));
                false
            } else {
                true
            }
        });
        if seqs.is_empty() {
            let seq = cursor.seg.max(1);
            File::create(seg_path(dir, seq))?;
            seqs.push(seq);
        }
        if cursor.seg < seqs[0] {
            cursor = Pos { seg: seqs[0], off: 0 };
        }
        let mut segments = VecDeque::new();
        let mut cursor_lines = 0;
        let last = seqs.len() - 1;
        for (i, &seq) in seqs.iter().enumerate() {
            let path = seg_path(dir, seq);
            let mut bytes = Vec::new();
            File::open(&path)?.read_to_end(&mut bytes)?;
            // Only whole lines count; a crash mid-append leaves a partial one.
            let whole = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
            if whole < bytes.len() && i == last {
                OpenOptions::new().write(true).open(&path)?.set_len(whole as u64)?;
            }
            let len = whole as u64;
            if seq == cursor.seg {
                cursor.off = cursor.off.min(len);
                // Snap to a line start in case the cursor file is stale.
                let off = cursor.off as usize;
                let start = bytes[..off].iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
                cursor.off = start as u64;
                cursor_lines = count_lines(&bytes[..start]);
            }
            segments.push_back(Segment { seq, len, lines: count_lines(&bytes[..whole]) });
        }
        let head_seq = segments.back().map_or(1, |s| s.seq);
        let head = OpenOptions::new().append(true).open(seg_path(dir, head_seq))?;
        let total_bytes = segments.iter().map(|s| s.len).sum();
        let q = Queue {
            dir: dir.to_owned(),
            opts,
            inner: Mutex::new(Inner {
                segments,
                head,
                cursor,
                cursor_lines,
                total_bytes,
                dropped: 0,
                unsynced: false,
                last_sync: Instant::now(),
            }),
        };
        Ok(q)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the files inconsistent
        // (every step is a complete file operation), so poison is ignored.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends whole lines (each ending in `\n`), `count` of them.
    pub fn append(&self, lines: &[u8], count: u64) -> io::Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut inner = self.lock();
        let head_len = inner.segments.back().map_or(0, |s| s.len);
        if head_len > 0 && head_len + lines.len() as u64 > self.opts.segment_bytes {
            self.rotate(&mut inner)?;
        }
        inner.head.write_all(lines)?;
        if let Some(head) = inner.segments.back_mut() {
            head.len += lines.len() as u64;
            head.lines += count;
        }
        inner.total_bytes += lines.len() as u64;
        inner.unsynced = true;
        match self.opts.fsync {
            FsyncPolicy::Always => self.sync_locked(&mut inner)?,
            FsyncPolicy::Interval if inner.last_sync.elapsed() >= self.opts.fsync_interval => {
                self.sync_locked(&mut inner)?
            }
            _ => {}
        }
        self.enforce_bound(&mut inner)?;
        Ok(())
    }

    /// Forces appended data to disk if the policy wants it (called by the
    /// writer when idle, so `interval` holds even without new events).
    pub fn sync_if_due(&self) -> io::Result<()> {
        let mut inner = self.lock();
        if inner.unsynced
            && self.opts.fsync != FsyncPolicy::Never
            && inner.last_sync.elapsed() >= self.opts.fsync_interval
        {
            self.sync_locked(&mut inner)?;
        }
        Ok(())
    }

    /// Forces everything to disk regardless of policy (shutdown).
    pub fn sync(&self) -> io::Result<()> {
        let mut inner = self.lock();
        self.sync_locked(&mut inner)
    }

    fn sync_locked(&self, inner: &mut Inner) -> io::Result<()> {
        if inner.unsynced {
            inner.head.sync_data()?;
            inner.unsynced = false;
        }
        inner.last_sync = Instant::now();
        Ok(())
    }

    fn rotate(&self, inner: &mut Inner) -> io::Result<()> {
        if self.opts.fsync != FsyncPolicy::Never {
            self.sync_locked(inner)?;
        }
        let seq = inner.segments.back().map_or(1, |s| s.seq + 1);
        inner.head = OpenOptions::new().create(true).append(true).open(seg_path(&self.dir, seq))?;
        inner.segments.push_back(Segment { seq, len: 0, lines: 0 });
        sync_dir(&self.dir);
        Ok(())
    }

    /// Drops whole oldest segments while over the bound; never the head.
    fn enforce_bound(&self, inner: &mut Inner) -> io::Result<()> {
        while inner.total_bytes > self.opts.max_bytes && inner.segments.len() > 1 {
            let Some(old) = inner.segments.pop_front() else { break };
            inner.total_bytes -= old.len;
            if old.seq >= inner.cursor.seg {
                let lost = if old.seq == inner.cursor.seg { old.lines - inner.cursor_lines } else { old.lines };
                inner.dropped += lost;
                let next = inner.segments.front().map_or(old.seq + 1, |s| s.seq);
                inner.cursor = Pos { seg: next, off: 0 };
                inner.cursor_lines = 0;
                write_cursor(&self.dir, inner.cursor, 0)?;
                tracing::warn!(
                    dropped = lost,
                    total_dropped = inner.dropped,
                    "delivery queue full: oldest events dropped"
                );
            }
            let _ = fs::remove_file(seg_path(&self.dir, old.seq));
        }
        Ok(())
    }

    /// Reads up to `max_events` events / `max_bytes` bytes from the cursor
    /// (a single event larger than `max_bytes` still goes, alone).
    pub fn read_batch(&self, max_events: usize, max_bytes: usize) -> io::Result<Batch> {
        let (cursor, cursor_lines, segs): (Pos, u64, Vec<(u64, u64)>) = {
            let inner = self.lock();
            let segs = inner.segments.iter().filter(|s| s.seq >= inner.cursor.seg).map(|s| (s.seq, s.len)).collect();
            (inner.cursor, inner.cursor_lines, segs)
        };
        let mut batch = Batch::default();
        let mut bytes = 0usize;
        for (seq, len) in segs {
            let (start, mut lines_in_seg) = if seq == cursor.seg { (cursor.off, cursor_lines) } else { (0, 0) };
            if start >= len {
                batch.end = Progress(Some((Pos { seg: seq, off: len }, lines_in_seg)));
                continue;
            }
            let mut file = match File::open(seg_path(&self.dir, seq)) {
                Ok(f) => f,
                // Dropped under us by the size bound: the next one follows.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            file.seek(SeekFrom::Start(start))?;
            let mut reader = file.take(len - start);
            // Segment bytes are read straight into the batch: whole lines
            // stay where they landed (no copy per line), and what follows
            // the last line taken is cut off before returning.
            // `batch.data[line..]` is read but not yet taken as lines, and
            // holds no newline before `scanned`.
            let mut line = batch.data.len();
            let mut scanned = line;
            let mut off = start;
            loop {
                if batch.len() >= max_events {
                    batch.data.truncate(line);
                    return Ok(batch);
                }
                let Some(nl) = find_newline(&batch.data[scanned..]).map(|i| scanned + i) else {
                    scanned = batch.data.len();
                    batch.data.reserve(READ_CHUNK as usize);
                    if reader.by_ref().take(READ_CHUNK).read_to_end(&mut batch.data)? == 0 {
                        // Every whole line of the segment is taken (a torn
                        // tail past `len` is never read).
                        batch.data.truncate(line);
                        break;
                    }
                    continue;
                };
                let end = nl + 1;
                let n = end - line;
                if !batch.is_empty() && bytes + n > max_bytes {
                    batch.data.truncate(line);
                    return Ok(batch);
                }
                bytes += n;
                off += n as u64;
                lines_in_seg += 1;
                // Skip damage (e.g. zeros left by a power cut) rather than
                // send it; it counts as consumed with the batch.
                if batch.data[line] == b'{' {
                    batch.ends.push(end);
                    line = end;
                } else {
                    batch.data.drain(line..end);
                }
                scanned = line;
                batch.end = Progress(Some((Pos { seg: seq, off }, lines_in_seg)));
            }
        }
        Ok(batch)
    }

    /// Marks a batch delivered: moves the cursor past it, deletes finished
    /// segments and persists the cursor (with an fsync: this blocks).
    pub fn ack(&self, progress: Progress) -> io::Result<()> {
        let Some((mut end, mut lines)) = progress.0 else { return Ok(()) };
        let mut inner = self.lock();
        if end <= inner.cursor {
            return Ok(());
        }
        // A finished segment that is not the head is deleted and the cursor
        // moves to the start of the next.
        while let Some(front) = inner.segments.front() {
            let is_head = inner.segments.len() == 1;
            if front.seq < end.seg || (front.seq == end.seg && end.off >= front.len && !is_head) {
                let seq = front.seq;
                let len = front.len;
                inner.total_bytes -= len;
                inner.segments.pop_front();
                let _ = fs::remove_file(seg_path(&self.dir, seq));
                if seq == end.seg {
                    end = Pos { seg: inner.segments.front().map_or(seq + 1, |s| s.seq), off: 0 };
                    lines = 0;
                }
            } else {
                break;
            }
        }
        inner.cursor = end;
        inner.cursor_lines = lines;
        write_cursor(&self.dir, end, lines)
    }

    /// Events written but not yet acknowledged.
    pub fn pending(&self) -> u64 {
        let inner = self.lock();
        inner.segments.iter().filter(|s| s.seq >= inner.cursor.seg).map(|s| s.lines).sum::<u64>() - inner.cursor_lines
    }

    /// Events dropped because the queue was full, since this process opened it.
    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }

    /// Bytes on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.lock().total_bytes
    }
}

fn read_cursor(dir: &Path) -> Option<Pos> {
    let text = fs::read_to_string(dir.join("cursor")).ok()?;
    let mut it = text.split_whitespace().map(|t| t.parse::<u64>());
    Some(Pos { seg: it.next()?.ok()?, off: it.next()?.ok()? })
}

fn write_cursor(dir: &Path, pos: Pos, lines: u64) -> io::Result<()> {
    let tmp = dir.join("cursor.tmp");
    let mut f = File::create(&tmp)?;
    writeln!(f, "{} {} {}", pos.seg, pos.off, lines)?;
    f.sync_all()?;
    fs::rename(&tmp, dir.join("cursor"))?;
    sync_dir(dir);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(max: u64, seg: u64) -> QueueOptions {
        QueueOptions { max_bytes: max, segment_bytes: seg, fsync: FsyncPolicy::Always, fsync_interval: Duration::ZERO }
    }

    fn push(q: &Queue, from: usize, n: usize) {
        let mut buf = Vec::new();
        for i in from..from + n {
            buf.extend_from_slice(format!("{{\"i\":{i:05}}}\n").as_bytes());
        }
        q.append(&buf, n as u64).unwrap();
    }

    fn ids(b: &Batch) -> Vec<usize> {
        (0..b.len()).map(|i| std::str::from_utf8(&b.line(i).unwrap()[5..10]).unwrap().parse().unwrap()).collect()
    }

    #[test]
    fn finds_the_first_newline() {
        for len in 0..40 {
            for nl in (0..len).chain([usize::MAX]) {
                let mut v: Vec<u8> = (0..len).map(|i| [b'a', 0x8a, 0x0b, 0x09, 0xff][i % 5]).collect();
                if nl < len {
                    v[nl] = b'\n';
                    if nl + 3 < len {
                        v[nl + 3] = b'\n';
                    }
                }
                assert_eq!(find_newline(&v), v.iter().position(|&b| b == b'\n'), "{v:?}");
            }
        }
    }

    #[test]
    fn delivers_in_order_across_segments_and_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path(), opts(1 << 20, 100)).unwrap();
        for i in 0..10 {
            push(&q, i * 3, 3);
        }
        assert_eq!(q.pending(), 30);
        let b = q.read_batch(7, 1 << 20).unwrap();
        assert_eq!(ids(&b), (0..7).collect::<Vec<_>>());
        q.ack(b.progress()).unwrap();
        assert_eq!(q.pending(), 23);
        // Unacknowledged reads are read again after a restart.
        let b = q.read_batch(5, 1 << 20).unwrap();
        assert_eq!(ids(&b), (7..12).collect::<Vec<_>>());
        drop(q);
        let q = Queue::open(dir.path(), opts(1 << 20, 100)).unwrap();
        assert_eq!(q.pending(), 23);
        let b = q.read_batch(1000, 1 << 20).unwrap();
        assert_eq!(ids(&b), (7..30).collect::<Vec<_>>());
        q.ack(b.progress()).unwrap();
        assert_eq!(q.pending(), 0);
        assert!(q.read_batch(10, 1 << 20).unwrap().is_empty());
        push(&q, 30, 2);
        assert_eq!(ids(&q.read_batch(10, 1 << 20).unwrap()), vec![30, 31]);
        // Delivered segments are gone from disk.
        let files = fs::read_dir(dir.path()).unwrap().count();
        assert!(files <= 4, "{files} files left");
    }

    #[test]
    fn torn_tail_is_cut_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path(), opts(1 << 20, 1 << 16)).unwrap();
        push(&q, 0, 2);
        drop(q);
        let seg = fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .find(|e| e.file_name().to_string_lossy().ends_with(SUFFIX))
            .unwrap()
            .path();
        OpenOptions::new().append(true).open(&seg).unwrap().write_all(b"{\"i\":000").unwrap();
        let q = Queue::open(dir.path(), opts(1 << 20, 1 << 16)).unwrap();
        assert_eq!(q.pending(), 2);
        push(&q, 2, 1);
        assert_eq!(ids(&q.read_batch(10, 1 << 20).unwrap()), vec![0, 1, 2]);
    }

    #[test]
    fn full_queue_drops_oldest_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        // Each line is 12 bytes; segments of ~5 lines; room for ~2-3 segments.
        let q = Queue::open(dir.path(), opts(150, 60)).unwrap();
        for i in 0..40 {
            push(&q, i, 1);
        }
        assert!(q.disk_bytes() <= 150);
        let dropped = q.dropped();
        assert!(dropped > 0);
        let b = q.read_batch(1000, 1 << 20).unwrap();
        assert_eq!(b.len() as u64 + dropped, 40);
        assert_eq!(*ids(&b).last().unwrap(), 39);
        q.ack(b.progress()).unwrap();
        assert_eq!(q.pending(), 0);
    }

    #[test]
    fn long_lines_and_damage_across_read_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path(), opts(1 << 30, 1 << 30)).unwrap();
        let long = format!("{{\"i\":00001,\"pad\":\"{}\"}}\n", "x".repeat(3 * READ_CHUNK as usize));
        let mut buf = b"{\"i\":00000}\n".to_vec();
        buf.extend_from_slice(long.as_bytes());
        buf.extend(std::iter::repeat_n(0u8, READ_CHUNK as usize + 7));
        buf.extend_from_slice(b"\n{\"i\":00002}\n");
        q.append(&buf, 4).unwrap();
        let b = q.read_batch(100, 1 << 30).unwrap();
        assert_eq!(ids(&b), vec![0, 1, 2], "the zeros are skipped");
        assert_eq!(b.line(1).unwrap().len(), long.len() - 1);
        assert_eq!(b.ndjson(0..3).len(), 12 + long.len() + 12);
        assert!(b.ndjson(0..3).ends_with(b"}\n"));
        assert_eq!(b.ndjson(2..3), b"{\"i\":00002}\n");
        q.ack(b.progress()).unwrap();
        assert_eq!(q.pending(), 0);
    }

    #[test]
    fn byte_limit_splits_batches() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path(), opts(1 << 20, 1 << 16)).unwrap();
        push(&q, 0, 10);
        let b = q.read_batch(100, 30).unwrap();
        assert_eq!(b.len(), 2);
        q.ack(b.progress()).unwrap();
        let b = q.read_batch(100, 1).unwrap();
        assert_eq!(ids(&b), vec![2], "a single oversized line still goes alone");
    }
}
