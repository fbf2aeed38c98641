//! Payloads per CPU-second of one thread, over the same mixed stream as
//! `extract.rs`.
//!
//! `cargo bench -p apiary-extract --bench cpu [-- FILTER]`; figures in BENCH-NOTES.md.
//!
//! Why a second bench: the machine is shared with other engineers' builds, so
//! wall-clock time (what criterion measures) counts the time this thread sat
//! waiting for a core. The CPU time the kernel charged to this thread does not.
//! It is read from `/proc/thread-self/schedstat` (nanoseconds on CPU; Linux
//! only, no `unsafe`, no extra dependency). The kernel refreshes that counter
//! for a running thread at least once per scheduler tick, so each round runs
//! for a full CPU-second to keep that error under half a percent.
//!
//! Contention still costs something CPU time cannot hide (shared caches,
//! memory bandwidth, a busy hypervisor), so the best round is the closest to
//! a quiet machine; the median is reported alongside it.
//!
//! For a figure no other load can disturb, `APIARY_BENCH_PASSES=N` runs
//! exactly N passes per benchmark, untimed, to count instructions under
//! valgrind (BENCH-NOTES.md has the command).

use std::hint::black_box;
use std::time::{Duration, Instant};

mod common;

use apiary_extract::{analyze, analyze_each, extract_each, match_cves, CveMatcher};

/// Rounds per benchmark (override with `APIARY_BENCH_ROUNDS`).
const ROUNDS: usize = 7;
/// CPU time per round.
const ROUND_CPU: Duration = Duration::from_secs(1);

/// CPU time charged to the calling thread so far.
fn thread_cpu() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = text.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// Runs `pass` (one pass over the stream) for [`ROUND_CPU`] of CPU time per
/// round and prints payloads per CPU-second (best, median) and per wall-second.
fn measure(label: &str, per_pass: usize, rounds: usize, mut pass: impl FnMut() -> usize) {
    // Like criterion: `cargo bench --bench cpu -- FILTER` runs the matching ones.
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    if filter.is_some_and(|f| !label.contains(&f)) {
        return;
    }
    if let Some(passes) = std::env::var("APIARY_BENCH_PASSES").ok().and_then(|s| s.parse::<usize>().ok()) {
        for _ in 0..passes {
            black_box(pass());
        }
        return;
    }
    let Some(_) = thread_cpu() else {
        eprintln!("{label}: /proc/thread-self/schedstat unavailable; use the criterion bench");
        return;
    };
    let cpu_now = || thread_cpu().unwrap_or_default();
    // Warm-up: caches, branch predictors, lazily compiled regex state.
    let warm = cpu_now();
    while cpu_now().saturating_sub(warm) < ROUND_CPU / 2 {
        black_box(pass());
    }
    let mut cpu_rates = Vec::with_capacity(rounds);
    let mut wall_rates = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let (cpu0, wall0) = (cpu_now(), Instant::now());
        let mut payloads = 0u64;
        loop {
            black_box(pass());
            payloads += per_pass as u64;
            if cpu_now().saturating_sub(cpu0) >= ROUND_CPU {
                break;
            }
        }
        let (cpu, wall) = (cpu_now().saturating_sub(cpu0), wall0.elapsed());
        cpu_rates.push(payloads as f64 / cpu.as_secs_f64());
        wall_rates.push(payloads as f64 / wall.as_secs_f64());
    }
    cpu_rates.sort_by(f64::total_cmp);
    wall_rates.sort_by(f64::total_cmp);
    let m = |v: f64| v / 1e6;
    println!(
        "{label:<44} CPU: best {:.2} M/s, median {:.2} M/s   (wall median {:.2} M/s)",
        m(cpu_rates[rounds - 1]),
        m(cpu_rates[rounds / 2]),
        m(wall_rates[rounds / 2]),
    );
}

fn main() {
    let stream = common::stream();
    let _ = CveMatcher::global(); // compile the table outside the timing
    let rounds = std::env::var("APIARY_BENCH_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(ROUNDS).max(1);
    let n = stream.len();
    println!("{n} payloads per pass, {rounds} rounds of {ROUND_CPU:?} CPU each, payloads per second of one thread:");
    let mut cves = Vec::new();
    measure("analyze_each (visitor, extraction + CVE)", n, rounds, || {
        let mut acc = 0usize;
        for (svc, p) in &stream {
            cves.clear();
            analyze_each(svc, p, &mut |a| acc += a.value.len(), &mut cves);
            acc += cves.len();
        }
        acc
    });
    measure("analyze (owned Vec<Attribute>, extraction + CVE)", n, rounds, || {
        stream.iter().map(|(svc, p)| analyze(svc, p).attributes.len()).sum()
    });
    measure("extract_each only", n, rounds, || {
        let mut acc = 0usize;
        for (svc, p) in &stream {
            extract_each(svc, p, &mut |a| acc += a.value.len());
        }
        acc
    });
    measure("match_cves only", n, rounds, || stream.iter().map(|(svc, p)| match_cves(svc, p).len()).sum());
}
