//! `apiary ingest FILE`: bulk load of NDJSON sensor events.
//!
//! Lines are read in chunks and parsed on worker threads while the store's
//! writer commits earlier chunks, so parsing and writing overlap. Bad lines
//! are reported with their line numbers and skipped; good ones are kept.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
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
    // Twice as many workers as cores: each waits for its chunk's commit
    // before parsing the next, and the others keep the cores busy meanwhile.
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let workers: Vec<_> = (0..(2 * cores).clamp(2, 8))
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

    let mut reader = BufReader::with_capacity(1 << 20, input);
    let mut line_no = 1;
    let mut line = Vec::new();
    loop {
        let mut chunk = Chunk { first_line: line_no, text: Vec::with_capacity(args.batch * 400), lines: 0 };
        while chunk.lines < args.batch {
            line.clear();
            let n = reader.read_until(b'\n', &mut line).context("reading input")?;
            if n == 0 {
                break;
            }
            progress.inc(n as u64);
            line_no += 1;
            chunk.text.extend_from_slice(&line);
            if !chunk.text.ends_with(b"\n") {
                chunk.text.push(b'\n');
            }
            chunk.lines += 1;
        }
        if chunk.lines == 0 {
            break;
        }
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
