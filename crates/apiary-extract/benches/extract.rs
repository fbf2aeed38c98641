//! Extraction + CVE matching over a realistic mixed payload stream.
//!
//! `cargo bench -p apiary-extract --bench extract`; figures in BENCH-NOTES.md.

use std::hint::black_box;

mod common;

use apiary_extract::{analyze, analyze_each, extract_each, match_cves, CveMatcher};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn bench(c: &mut Criterion) {
    let stream = common::stream();
    let _ = CveMatcher::global(); // compile the table outside the timing
    let mut g = c.benchmark_group("mixed-stream");
    g.throughput(Throughput::Elements(stream.len() as u64));
    g.bench_function("analyze_each (visitor, extraction + CVE)", |b| {
        let mut cves = Vec::new();
        b.iter(|| {
            let mut n = 0usize;
            for (svc, p) in &stream {
                cves.clear();
                analyze_each(svc, p, &mut |a| n += a.value.len(), &mut cves);
                n += cves.len();
            }
            black_box(n)
        })
    });
    g.bench_function("analyze (owned Vec<Attribute>, extraction + CVE)", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for (svc, p) in &stream {
                n += analyze(svc, p).attributes.len();
            }
            black_box(n)
        })
    });
    g.bench_function("extract_each only", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for (svc, p) in &stream {
                extract_each(svc, p, &mut |a| n += a.value.len());
            }
            black_box(n)
        })
    });
    g.bench_function("match_cves only", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for (svc, p) in &stream {
                n += match_cves(svc, p).len();
            }
            black_box(n)
        })
    });
    g.finish();

    // Where the time goes: the matcher on each slice of the stream.
    let mut g = c.benchmark_group("match_cves-by-kind");
    for (label, keep) in [
        (
            "benign-http",
            (|s: &str, p: &[u8]| s == "HTTP" && !p.windows(2).any(|w| w == b"${")) as fn(&str, &[u8]) -> bool,
        ),
        ("non-http", |s: &str, _p: &[u8]| !s.starts_with("HTTP")),
    ] {
        let part: Vec<&(&str, Vec<u8>)> = stream.iter().filter(|(s, p)| keep(s, p)).collect();
        g.throughput(Throughput::Elements(part.len() as u64));
        g.bench_function(label, |b| {
            b.iter(|| {
                let mut n = 0usize;
                for (svc, p) in &part {
                    n += match_cves(svc, p).len();
                }
                black_box(n)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
