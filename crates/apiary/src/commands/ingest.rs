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

/// Cuts the input into chunks of `batch` lines. It reads blocks of
/// [`ChunkReader::BLOCK`] bytes and finds line ends with `memchr`, rather
/// than copying line by line: the reading thread feeds every parser.
struct ChunkReader {
    input: Box<dyn Read + Send>,
    batch: usize,
    /// Read and not yet handed out; starts at a line's start.
    buf: Vec<u8>,
    /// Line ends already counted in `buf`, and where counting stopped.
    lines: usize,
    scanned: usize,
    eof: bool,
    next_line: usize,
}

impl ChunkReader {
    const BLOCK: usize = 4 << 20;

    fn new(input: Box<dyn Read + Send>, batch: usize) -> ChunkReader {
        ChunkReader { input, batch, buf: Vec::new(), lines: 0, scanned: 0, eof: false, next_line: 1 }
    }

    fn next_chunk(&mut self) -> std::io::Result<Option<Chunk>> {
        loop {
            for end in memchr::memchr_iter(b'\n', &self.buf[self.scanned..]) {
                self.lines += 1;
                if self.lines == self.batch {
                    let cut = self.scanned + end + 1;
                    return Ok(Some(self.take(cut, self.batch)));
                }
            }
            self.scanned = self.buf.len();
            if self.eof {
                // The rest, every line end in it counted.
                return Ok((!self.buf.is_empty()).then(|| self.take(self.buf.len(), self.lines)));
            }
            let start = self.buf.len();
            self.buf.resize(start + Self::BLOCK, 0);
            let n = loop {
                match self.input.read(&mut self.buf[start..]) {
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    other => break other,
                }
            };
            self.buf.truncate(start + n.as_ref().map_or(0, |n| *n));
            self.eof = n? == 0;
        }
    }

    /// Hands out `buf[..cut]`, holding `line_ends` line ends, as a chunk (a
    /// last line without its line end gets one).
    fn take(&mut self, cut: usize, line_ends: usize) -> Chunk {
        let rest = self.buf.split_off(cut);
        let mut text = std::mem::replace(&mut self.buf, rest);
        let mut lines = line_ends;
        if !text.ends_with(b"\n") {
            text.push(b'\n');
            lines += 1;
        }
        let chunk = Chunk { first_line: self.next_line, text, lines };
        self.next_line += lines;
        (self.lines, self.scanned) = (0, 0);
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
            std::thread::spawn(move || -> anyhow::Result<()> {
                loop {
                    let chunk = match rx.lock().unwrap_or_else(|p| p.into_inner()).recv() {
                        Ok(c) => c,
                        Err(_) => return Ok(()),
                    };
                    let batch = parse_batch(&chunk.text, chunk.lines + 1, apiary_model::time::now_ms())
                        .with_context(|| format!("lines from {}", chunk.first_line))?;
                    let mut events: Vec<_> = batch.events.into_iter().map(|(_, e)| e).collect();
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

    let mut chunks = ChunkReader::new(input, args.batch);
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
