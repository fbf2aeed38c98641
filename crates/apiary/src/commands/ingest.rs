//! `apiary ingest FILE`: bulk load of NDJSON sensor events.
//!
//! Lines are read in chunks and parsed on worker threads while the store's
//! writer commits earlier chunks, so parsing and writing overlap. Bad lines
//! are reported with their line numbers and skipped; good ones are kept.

use std::fs::File;
use std::io::Read;
use std::process::ExitCode;
use std::sync::{mpsc, Arc, Mutex};

use anyhow::{bail, Context};
use apiary_model::parse_batch;
use apiary_store::Store;
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::IngestArgs;
use crate::config::Settings;

/// Lines from the file, with the number of the first.
struct Chunk {
    first_line: usize,
    text: Vec<u8>,
    lines: usize,
}

/// Cuts the input into chunks of `batch` lines. It reads blocks of up to
/// [`ChunkReader::BLOCK`] bytes straight into the chunk's buffer and finds
/// line ends with `memchr`, rather than copying line by line: the reading
/// thread feeds every parser. Only the bytes read past a chunk's last line
/// (less than a block) are copied, to start the next one. Buffers come back
/// through [`ChunkReader::spares`] once parsed and are filled again: a fresh
/// buffer of megabytes per chunk cost a page fault per page, and the
/// kernel's zeroing of it, for every chunk of the file.
struct ChunkReader {
    input: Box<dyn Read + Send>,
    batch: usize,
    /// Bytes read past the last chunk's end: the start of the next one.
    carry: Vec<u8>,
    eof: bool,
    next_line: usize,
    spares: mpsc::Receiver<Vec<u8>>,
    spare_sender: mpsc::Sender<Vec<u8>>,
}

impl ChunkReader {
    const BLOCK: usize = 256 << 10;

    fn new(input: Box<dyn Read + Send>, batch: usize) -> ChunkReader {
        let (spare_sender, spares) = mpsc::channel();
        ChunkReader { input, batch, carry: Vec::new(), eof: false, next_line: 1, spares, spare_sender }
    }

    /// Where parsed chunks' buffers go back to, to be filled again.
    fn spares(&self) -> mpsc::Sender<Vec<u8>> {
        self.spare_sender.clone()
    }

    fn next_chunk(&mut self) -> std::io::Result<Option<Chunk>> {
        let mut text = self.spares.try_recv().unwrap_or_default();
        text.clear();
        text.append(&mut self.carry);
        let (mut lines, mut scanned) = (0, 0);
        loop {
            for end in memchr::memchr_iter(b'\n', &text[scanned..]) {
                lines += 1;
                if lines == self.batch {
                    let cut = scanned + end + 1;
                    self.carry.extend_from_slice(&text[cut..]);
                    text.truncate(cut);
                    return Ok(Some(self.hand_out(text, lines)));
                }
            }
            scanned = text.len();
            if self.eof {
                if text.is_empty() {
                    return Ok(None);
                }
                // A last line without its line end gets one.
                if !text.ends_with(b"\n") {
                    text.push(b'\n');
                    lines += 1;
                }
                return Ok(Some(self.hand_out(text, lines)));
            }
            // Into the spare capacity: nothing is zeroed first.
            text.reserve(Self::BLOCK);
            let n = (&mut self.input).take(Self::BLOCK as u64).read_to_end(&mut text)?;
            self.eof = n == 0;
        }
    }

    fn hand_out(&mut self, text: Vec<u8>, lines: usize) -> Chunk {
        let chunk = Chunk { first_line: self.next_line, text, lines };
        self.next_line += lines;
        chunk
    }
}

#[derive(Default)]
struct Tally {
    accepted: u64,
    duplicates: u64,
    rejected: u64,
    first_errors: Vec<String>,
}

pub fn run(args: IngestArgs, settings: &Settings) -> anyhow::Result<ExitCode> {
    // Nothing reads this process's store while it loads: rollups merge in
    // memory across chunks instead of being written after each.
    let store = super::open_store_with(settings, settings.bulk_load_store_options())?;
    let owner = store
        .list_accounts()?
        .into_iter()
        .find(|a| a.api_id == args.api_id)
        .with_context(|| format!("no account with API id {:?} (see `apiary account list`)", args.api_id))?;
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let (input, size): (Box<dyn Read + Send>, u64) = if args.file.as_os_str() == "-" {
        (Box::new(std::io::stdin()), 0)
    } else {
        let f = File::open(&args.file).with_context(|| format!("opening {}", args.file.display()))?;
        let size = f.metadata().map(|m| m.len()).unwrap_or(0);
        (Box::new(f), size)
    };
    let progress = if args.quiet { ProgressBar::hidden() } else { ProgressBar::new(size) };
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );

    // Events are enriched with the IP intelligence the server would use: the
    // last good copies of the configured feeds.
    let feeds = super::feeds::manager(settings)?;
    for (feed, e) in feeds.load_state() {
        eprintln!("apiary: saved copy of feed {feed} unreadable, events are not enriched from it: {e}");
    }
    let intel = feeds.intel();
    // Payload history and CVE sightings, as the server derives them.
    let analysis = settings.api.payload_analysis;

    let tally = Arc::new(Mutex::new(Tally::default()));
    let mut chunks = ChunkReader::new(input, args.batch);
    let (tx, rx) = mpsc::sync_channel::<Chunk>(4);
    let rx = Arc::new(Mutex::new(rx));
    // Four workers per core: each waits for its chunk's commit before
    // parsing the next, and the others keep the cores busy meanwhile. The
    // chunks that queue up meanwhile make the writers' group commits larger
    // (four workers on two cores went about a tenth slower, at more CPU
    // per event; see BENCHMARKS.md).
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let workers: Vec<_> = (0..(4 * cores).clamp(2, 8))
        .map(|_| {
            let (rx, store, tally, intel) = (rx.clone(), store.clone(), tally.clone(), intel.clone());
            let spares = chunks.spares();
            std::thread::spawn(move || -> anyhow::Result<()> {
                loop {
                    let mut chunk = match rx.lock().unwrap_or_else(|p| p.into_inner()).recv() {
                        Ok(c) => c,
                        Err(_) => return Ok(()),
                    };
                    let batch = parse_batch(&chunk.text, chunk.lines + 1, apiary_model::time::now_ms())
                        .with_context(|| format!("lines from {}", chunk.first_line))?;
                    // The events own their text: the buffer can be filled again.
                    let _ = spares.send(std::mem::take(&mut chunk.text));
                    let mut events = batch.events;
                    apiary_api::enrich(&intel, &mut events);
                    if analysis {
                        apiary_api::analyze_payloads(&mut events);
                    }
                    let outcome = store.ingest(owner.id, None, events)?;
                    let mut t = tally.lock().unwrap_or_else(|p| p.into_inner());
                    t.accepted += outcome.accepted;
                    t.duplicates += outcome.duplicates;
                    t.rejected += batch.rejected.len() as u64;
                    for r in batch.rejected {
                        if t.first_errors.len() < 10 {
                            // Blank lines are skipped by the parser, so the
                            // index counts non-blank lines of the chunk.
                            t.first_errors.push(format!(
                                "event {} of the chunk at line {}: {}",
                                r.index + 1,
                                chunk.first_line,
                                r.error
                            ));
                        }
                    }
                }
            })
        })
        .collect();

    while let Some(chunk) = chunks.next_chunk().context("reading input")? {
        progress.inc(chunk.text.len() as u64);
        if tx.send(chunk).is_err() {
            break;
        }
    }
    drop(tx);
    for w in workers {
        w.join().map_err(|_| anyhow::anyhow!("an ingest worker panicked"))??;
    }
    progress.finish_and_clear();
    store.close()?;
    let t = tally.lock().unwrap_or_else(|p| p.into_inner());
    println!("{} events stored, {} already present, {} rejected.", t.accepted, t.duplicates, t.rejected);
    for e in &t.first_errors {
        eprintln!("  rejected: {e}");
    }
    Ok(if t.rejected > 0 { ExitCode::from(2) } else { ExitCode::SUCCESS })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands out at most `step` bytes per read, as a pipe may.
    struct Trickle {
        data: Vec<u8>,
        at: usize,
        step: usize,
    }

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(self.step).min(self.data.len() - self.at);
            buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    #[test]
    fn chunks_hold_batch_lines_in_order_however_the_input_arrives() {
        let mut input = Vec::new();
        for i in 0..50 {
            // Some lines blank, a few longer than a block of reading.
            let len = if i % 10 == 9 { ChunkReader::BLOCK + i * 1000 } else { i * 37 % 300 };
            let line = if i % 7 == 3 { String::new() } else { format!("line {i} {}", "x".repeat(len)) };
            input.extend_from_slice(line.as_bytes());
            input.push(b'\n');
        }
        for without_last_line_end in [false, true] {
            let mut data = input.clone();
            if without_last_line_end {
                data.pop();
            }
            for step in [1, 5, 4096, usize::MAX] {
                for batch in [1, 3, 7, 50, 1000] {
                    if step < 10 && batch != 7 {
                        continue; // a few bytes at a time is slow; one batch size is enough
                    }
                    let source = Trickle { data: data.clone(), at: 0, step };
                    let mut reader = ChunkReader::new(Box::new(source), batch);
                    let spares = reader.spares();
                    let (mut joined, mut next_line, mut chunks) = (Vec::new(), 1, 0);
                    while let Some(mut chunk) = reader.next_chunk().unwrap() {
                        let what = format!("step {step}, batch {batch}, chunk {chunks}");
                        assert_eq!(chunk.first_line, next_line, "{what}");
                        assert_eq!(chunk.text.iter().filter(|&&b| b == b'\n').count(), chunk.lines, "{what}");
                        assert!(chunk.lines == batch || next_line + chunk.lines == 51, "{what}");
                        assert!(chunk.text.ends_with(b"\n"), "{what}");
                        joined.extend_from_slice(&chunk.text);
                        assert!(joined.len() <= input.len(), "{what}: more text out than in");
                        next_line += chunk.lines;
                        chunks += 1;
                        // Buffers come back dirty and must be cleared.
                        spares.send(std::mem::take(&mut chunk.text)).unwrap();
                    }
                    assert_eq!(joined, input, "step {step}, batch {batch}");
                    assert_eq!(chunks, 50usize.div_ceil(batch), "step {step}, batch {batch}");
                }
            }
        }
    }

    #[test]
    fn empty_input_has_no_chunks() {
        let mut reader = ChunkReader::new(Box::new(std::io::empty()), 10);
        assert!(reader.next_chunk().unwrap().is_none());
    }
}
