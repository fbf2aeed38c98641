//! Platform benchmarks against the real `apiary` binary on loopback.
//!
//! `cargo bench -p apiary --bench platform -- <name> [options]`, where name is
//! `ingest-http`, `ingest-cli`, `bad-hosts` or `ip-history`. Each prints its
//! figures and the server's peak RSS (VmHWM). See BENCHMARKS.md.
//!
//! Events are dated in the order they happened over the load's time span,
//! as sensors deliver them; `--shuffled` dates each at a random moment of
//! the span instead, and `--spread-secs N` sets the span.

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use support::*;

/// Services with their share of traffic and a typical payload, roughly as
/// HoneyDB's public service counts distribute them.
const SERVICES: &[(&str, u32)] = &[
    ("SSH", 30),
    ("Telnet", 15),
    ("HTTP", 20),
    ("VNC", 10),
    ("Redis", 5),
    ("SIP", 5),
    ("SMB", 5),
    ("MySQL", 4),
    ("FTP", 3),
    ("DNS.udp", 3),
];

fn pick_service(rng: &mut SmallRng) -> &'static str {
    let total: u32 = SERVICES.iter().map(|s| s.1).sum();
    let mut n = rng.random_range(0..total);
    for (s, w) in SERVICES {
        if n < *w {
            return s;
        }
        n -= w;
    }
    "SSH"
}

/// A pick among `hosts` addresses: mostly Zipf-like (a few hosts send most
/// events), with three in ten uniform so that a large load reaches every
/// address, as the issue's 200,000 distinct hosts a day require.
fn pick_host(rng: &mut SmallRng, hosts: u32) -> String {
    let i = if rng.random_ratio(3, 10) {
        rng.random_range(0..hosts.max(1))
    } else {
        let u: f64 = rng.random();
        let i = ((hosts as f64).powf(u) as u32).saturating_sub(1).min(hosts - 1);
        i.wrapping_mul(2_654_435_761) % hosts.max(1) // spread over the space
    };
    let ip = 0x0b00_0000u32 + i * 7;
    format!("{}.{}.{}.{}", ip >> 24, (ip >> 16) & 255, (ip >> 8) & 255, ip & 255)
}

fn payload(rng: &mut SmallRng, service: &str) -> Vec<u8> {
    let base: &[u8] = match service {
        "HTTP" => b"GET /wp-login.php HTTP/1.1\r\nHost: 203.0.113.5\r\nUser-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36\r\nAccept: */*\r\n\r\n",
        "SSH" => b"SSH-2.0-Go\r\n",
        "Telnet" => b"root\r\nadmin\r\nenable\r\nsystem\r\nshell\r\nsh\r\ncat /proc/mounts; /bin/busybox ECCHI\r\n",
        "Redis" => b"*1\r\n$4\r\nINFO\r\n",
        "SIP" => b"OPTIONS sip:100@203.0.113.5 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060\r\nFrom: <sip:100@10.0.0.1>\r\nUser-Agent: friendly-scanner\r\n\r\n",
        _ => b"\x00\x00\x00\x85\xffSMBr\x00\x00\x00\x00\x18\x53\xc8",
    };
    // 0-2 KB: the typical request, sometimes padded into a larger body.
    let extra = if rng.random_ratio(1, 10) { rng.random_range(0..2048 - base.len().min(2047)) } else { 0 };
    let mut p = base.to_vec();
    p.extend((0..extra).map(|_| rng.random_range(b'a'..=b'z')));
    p.truncate(2048);
    p
}

/// When the events of a load happened: `total` events over the last
/// `spread_secs`.
#[derive(Clone, Copy)]
struct Timeline {
    total: usize,
    spread_secs: i64,
    /// Each event at a random moment of the spread. Otherwise events come in
    /// the order they happened, as sensors deliver them (a sensor sends its
    /// events as they occur, and a log exported from sensors is in time
    /// order), with sessions up to a second out of order. Shuffled is the
    /// worst case for storage keyed by time.
    shuffled: bool,
}

impl Timeline {
    fn of(args: &[String], total: usize, spread_secs: i64) -> Timeline {
        let spread_secs = arg(args, "--spread-secs", spread_secs as usize) as i64;
        Timeline { total, spread_secs, shuffled: args.iter().any(|a| a == "--shuffled") }
    }

    /// The moment of the session starting at event `i` of the load.
    fn moment(&self, rng: &mut SmallRng, now: i64, i: usize) -> i64 {
        let spread_ms = self.spread_secs.max(1) * 1000;
        if self.shuffled {
            now - rng.random_range(0..spread_ms)
        } else {
            now - spread_ms + (spread_ms as f64 * i as f64 / self.total.max(1) as f64) as i64
                - rng.random_range(0..1000)
        }
    }
}

/// `n` NDJSON events (a session's CONNECT, RX, TX and INFO) from event
/// `start` of a load on `timeline`, from `hosts` distinct addresses.
fn generate(rng: &mut SmallRng, start: usize, n: usize, hosts: u32, timeline: Timeline) -> Vec<u8> {
    let now = chrono::Utc::now().timestamp_millis() - 60_000;
    let mut out = Vec::with_capacity(n * 400);
    let mut i = 0;
    while i < n {
        let service = pick_service(rng);
        let host = pick_host(rng, hosts);
        let ts = timeline.moment(rng, now, start + i);
        let session = format!("{:032x}", rng.random::<u128>());
        for kind in ["CONNECT", "RX", "TX", "INFO"] {
            if i >= n {
                break;
            }
            let data = match kind {
                "CONNECT" => Vec::new(),
                "RX" => payload(rng, service),
                "TX" => b"login: ".to_vec(),
                _ => b"{\"username\":\"root\",\"password\":\"admin\"}".to_vec(),
            };
            let t = chrono::DateTime::from_timestamp_millis(ts + i as i64 % 1000).unwrap();
            writeln!(
                out,
                r#"{{"id":"{}","node":"{}","session":"{}","date":"{}","time":"{}","millisecond":"{:03}","protocol":"TCP","event":"{}","service":"{}","local_host":"10.0.0.1","local_port":22,"remote_host":"{}","remote_port":{},"data":"{}"}}"#,
                start + i,
                NODE_A,
                session,
                t.format("%Y-%m-%d"),
                t.format("%H:%M:%S"),
                t.timestamp_subsec_millis(),
                kind,
                service,
                host,
                rng.random_range(1024..65535),
                data.iter().map(|b| format!("{b:02x}")).collect::<String>()
            )
            .unwrap();
            i += 1;
        }
    }
    out
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_secs(pid: u32) -> f64 {
    stat_cpu_secs(&format!("/proc/{pid}/stat"))
}

/// CPU seconds of the store's event writer thread (`apiary-writer`): the
/// bottleneck of ingest, so its CPU per event bounds the ingest rate on any
/// machine, however busy the other cores are.
fn writer_cpu_secs(pid: u32) -> f64 {
    thread_cpu_secs(pid, "apiary-writer")
}

/// CPU seconds of the payload-history writer thread, which runs beside it.
fn payload_writer_cpu_secs(pid: u32) -> f64 {
    thread_cpu_secs(pid, "apiary-payloads")
}

fn thread_cpu_secs(pid: u32, name: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return 0.0 };
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() == name {
            return stat_cpu_secs(&task.path().join("stat").to_string_lossy());
        }
    }
    0.0
}

fn stat_cpu_secs(path: &str) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    ticks / 100.0
}

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// What an HTTP load sends: `total` events in batches of `batch` from
/// `clients` parallel senders, from `hosts` addresses, dated on `timeline`.
struct Load {
    total: usize,
    batch: usize,
    clients: usize,
    hosts: u32,
    timeline: Timeline,
    gzip: bool,
}

/// Sends a load to the server; returns events/s.
fn http_load(server: &Server, creds: &Creds, load: Load) -> f64 {
    let Load { total, batch, clients, hosts, timeline, gzip } = load;
    eprintln!("generating {total} events...");
    let mut rng = SmallRng::seed_from_u64(7);
    let bodies: Vec<Vec<u8>> = (0..total.div_ceil(batch))
        .map(|b| {
            let raw = generate(&mut rng, b * batch, batch.min(total - b * batch), hosts, timeline);
            if gzip {
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                gz.write_all(&raw).unwrap();
                gz.finish().unwrap()
            } else {
                raw
            }
        })
        .collect();
    let bytes: usize = bodies.iter().map(|b| b.len()).sum();
    eprintln!("sending {} batches, {} MB on the wire", bodies.len(), bytes >> 20);
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicUsize::new(0));
    let pid = server.child.as_ref().map(|c| c.id()).unwrap_or(0);
    let cpu_before = cpu_secs(pid);
    let clients_before = cpu_secs(std::process::id());
    let writer_before = writer_cpu_secs(pid);
    let payloads_before = payload_writer_cpu_secs(pid);
    let started = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            let (bodies, next, api, id, key) =
                (bodies.clone(), next.clone(), server.api(), creds.api_id.clone(), creds.sensor_key.clone());
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(300)).build().unwrap();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(body) = bodies.get(i) else { return };
                    let mut req = client
                        .post(format!("{api}/sensor/events"))
                        .header("X-HoneyDb-ApiId", &id)
                        .header("X-HoneyDb-ApiKey", &key);
                    if gzip {
                        req = req.header("Content-Encoding", "gzip");
                    }
                    let r = req.body(body.clone()).send().unwrap();
                    assert_eq!(r.status(), 200, "{}", r.text().unwrap_or_default());
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu = cpu_secs(pid) - cpu_before;
    let clients_cpu = cpu_secs(std::process::id()) - clients_before;
    let writer = writer_cpu_secs(pid) - writer_before;
    let payloads = payload_writer_cpu_secs(pid) - payloads_before;
    eprintln!(
        "server CPU: {cpu:.1} s over {secs:.1} s wall ({:.2} cores busy), {:.2} CPU-us per event, \
         of which the event writer thread {:.2} and the payload writer thread {:.2}; \
         the clients (this process) {:.2} cores",
        cpu / secs,
        cpu * 1e6 / total as f64,
        writer * 1e6 / total as f64,
        payloads * 1e6 / total as f64,
        clients_cpu / secs,
    );
    total as f64 / secs
}

/// GETs `url`; returns time to first byte, time to the whole body, and its size.
fn timed_get(client: &reqwest::blocking::Client, url: &str, id: &str, key: &str) -> (Duration, Duration, usize) {
    let t = Instant::now();
    let mut r = client.get(url).header("X-HoneyDb-ApiId", id).header("X-HoneyDb-ApiKey", key).send().unwrap();
    let first = t.elapsed();
    let mut sink = Vec::new();
    std::io::copy(&mut r, &mut sink).unwrap();
    (first, t.elapsed(), sink.len())
}

/// `--no-analysis` turns ingest's payload analysis off, to measure its cost.
fn analysis_config(args: &[String]) -> Option<&'static str> {
    args.iter().any(|a| a == "--no-analysis").then_some("payload_analysis = false\n")
}

fn operator(dir: &std::path::Path) -> Creds {
    create_account(dir, "bench", &["--role", "all-sensors", "--quota", "unlimited"])
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let which = args.iter().skip(1).find(|a| !a.starts_with('-')).cloned().unwrap_or_default();
    let dir = tempfile::tempdir_in(std::env::var("APIARY_BENCH_DIR").unwrap_or_else(|_| "/tmp".into())).unwrap();
    match which.as_str() {
        "ingest-http" => {
            let total = arg(&args, "--events", 2_000_000);
            let batch = arg(&args, "--batch", 5_000);
            let clients = arg(&args, "--clients", 4);
            let gzip = args.iter().any(|a| a == "--gzip");
            let creds = operator(dir.path());
            let server = Server::start_with_config(dir.path(), analysis_config(&args));
            let timeline = Timeline::of(&args, total, 60);
            let rate = http_load(&server, &creds, Load { total, batch, clients, hosts: 200_000, timeline, gzip });
            let pid = server.child.as_ref().unwrap().id();
            println!(
                "ingest-http: {total} events, batch {batch}, {clients} clients, gzip {gzip}, payload analysis {}: \
                 {rate:.0} events/s; server peak RSS {} MiB",
                analysis_config(&args).is_none(),
                peak_rss_kib(pid) / 1024
            );
        }
        "ingest-cli" => {
            let total = arg(&args, "--events", 10_000_000);
            let timeline = Timeline::of(&args, total, 86_400);
            let creds = operator(dir.path());
            let file = dir.path().join("events.ndjson");
            eprintln!("writing {total} events to {}...", file.display());
            let mut f = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
            let mut rng = SmallRng::seed_from_u64(11);
            for start in (0..total).step_by(100_000) {
                f.write_all(&generate(&mut rng, start, 100_000.min(total - start), 200_000, timeline)).unwrap();
            }
            f.flush().unwrap();
            drop(f);
            let config = dir.path().join("apiary.toml");
            std::fs::write(&config, analysis_config(&args).unwrap_or_default()).unwrap();
            let started = Instant::now();
            let child = std::process::Command::new(BIN)
                .args(["--config", config.to_str().unwrap()])
                .args(["--data-dir", dir.path().to_str().unwrap(), "ingest", file.to_str().unwrap(), "--quiet"])
                .args(["--api-id", &creds.api_id])
                .spawn()
                .unwrap();
            let pid = child.id();
            let rss = Arc::new(AtomicUsize::new(0));
            // CPU micros of the whole process and of its writer thread, as last seen.
            let cpu = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0), AtomicUsize::new(0)]);
            let watcher = {
                let (rss, cpu) = (rss.clone(), cpu.clone());
                std::thread::spawn(move || loop {
                    let kib = peak_rss_kib(pid);
                    if kib == 0 {
                        return;
                    }
                    rss.store(kib as usize, Ordering::Relaxed);
                    cpu[0].fetch_max((cpu_secs(pid) * 1e6) as usize, Ordering::Relaxed);
                    cpu[1].fetch_max((writer_cpu_secs(pid) * 1e6) as usize, Ordering::Relaxed);
                    cpu[2].fetch_max((payload_writer_cpu_secs(pid) * 1e6) as usize, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(200));
                })
            };
            let out = child.wait_with_output().unwrap();
            let secs = started.elapsed().as_secs_f64();
            assert!(out.status.success());
            watcher.join().unwrap();
            println!(
                "ingest-cli: {total} events in {secs:.1} s, payload analysis {}: {:.0} events/s; \
                 {:.2} CPU-us per event, of which the event writer thread {:.2} and the payload writer {:.2}; \
                 peak RSS {} MiB",
                analysis_config(&args).is_none(),
                total as f64 / secs,
                cpu[0].load(Ordering::Relaxed) as f64 / total as f64,
                cpu[1].load(Ordering::Relaxed) as f64 / total as f64,
                cpu[2].load(Ordering::Relaxed) as f64 / total as f64,
                rss.load(Ordering::Relaxed) / 1024
            );
        }
        "bad-hosts" => {
            let total = arg(&args, "--events", 10_000_000);
            let hosts = arg(&args, "--hosts", 200_000) as u32;
            let parallel = arg(&args, "--parallel", 100);
            let creds = operator(dir.path());
            let mut server = Server::start(dir.path());
            let rate = http_load(
                &server,
                &creds,
                Load {
                    total,
                    batch: 10_000,
                    clients: 2,
                    hosts,
                    timeline: Timeline::of(&args, total, 23 * 3600),
                    gzip: false,
                },
            );
            eprintln!("loaded at {rate:.0} events/s; restarting to measure the read path alone");
            server.stop();
            server.restart();
            let url = format!("{}/bad-hosts", server.api());
            let client = reqwest::blocking::Client::new();
            let (id, key) = (creds.api_id.clone(), creds.threat_key.clone());
            let fetch = {
                let url = url.clone();
                move |client: &reqwest::blocking::Client| timed_get(client, &url, &id, &key)
            };
            let (cold_first, cold_total, size) = fetch(&client);
            let rows = serde_json::from_slice::<serde_json::Value>(&{
                let mut r = client
                    .get(&url)
                    .header("X-HoneyDb-ApiId", &creds.api_id)
                    .header("X-HoneyDb-ApiKey", &creds.threat_key)
                    .send()
                    .unwrap();
                let mut v = Vec::new();
                std::io::copy(&mut r, &mut v).unwrap();
                v
            })
            .unwrap()
            .as_array()
            .unwrap()
            .len();
            let mut firsts = Vec::new();
            let mut totals = Vec::new();
            for _ in 0..50 {
                let (f, t, _) = fetch(&client);
                firsts.push(f);
                totals.push(t);
            }
            firsts.sort();
            totals.sort();
            println!(
                "bad-hosts: {rows} hosts, {:.1} MB; cold (computing) {:?} first byte, {:?} whole",
                size as f64 / 1e6,
                cold_first,
                cold_total
            );
            println!(
                "bad-hosts sequential x50: first byte median {:?} p95 {:?}; whole answer median {:?} p95 {:?}",
                percentile(&firsts, 0.5),
                percentile(&firsts, 0.95),
                percentile(&totals, 0.5),
                percentile(&totals, 0.95)
            );
            let started = Instant::now();
            let handles: Vec<_> = (0..parallel)
                .map(|_| {
                    let fetch = fetch.clone();
                    std::thread::spawn(move || {
                        let client = reqwest::blocking::Client::new();
                        (0..3).map(|_| fetch(&client).1).collect::<Vec<_>>()
                    })
                })
                .collect();
            let mut all: Vec<Duration> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
            all.sort();
            let pid = server.child.as_ref().unwrap().id();
            println!(
                "bad-hosts {parallel} parallel clients x3: median {:?} p95 {:?}, wall {:?}; server peak RSS {} MiB",
                percentile(&all, 0.5),
                percentile(&all, 0.95),
                started.elapsed(),
                peak_rss_kib(pid) / 1024
            );
        }
        "ip-history" => {
            let total = arg(&args, "--events", 20_000_000);
            let creds = operator(dir.path());
            let mut server = Server::start(dir.path());
            let rate = http_load(
                &server,
                &creds,
                Load {
                    total,
                    batch: 10_000,
                    clients: 2,
                    hosts: 1_000_000,
                    timeline: Timeline::of(&args, total, 30 * 86_400),
                    gzip: false,
                },
            );
            eprintln!("loaded at {rate:.0} events/s");
            server.stop();
            server.restart();
            let client = reqwest::blocking::Client::new();
            let mut rng = SmallRng::seed_from_u64(3);
            let mut times = Vec::new();
            // 2,000 distinct hosts: a repeat would be answered from the
            // per-host cache, and this measures the store.
            let mut asked = std::collections::HashSet::new();
            while asked.len() < 2000 {
                let ip = pick_host(&mut rng, 1_000_000);
                if !asked.insert(ip.clone()) {
                    continue;
                }
                let t = Instant::now();
                let r = client
                    .get(format!("{}/ip-history/{ip}", server.api()))
                    .header("X-HoneyDb-ApiId", &creds.api_id)
                    .header("X-HoneyDb-ApiKey", &creds.threat_key)
                    .send()
                    .unwrap();
                assert_eq!(r.status(), 200);
                r.bytes().unwrap();
                times.push(t.elapsed());
            }
            times.sort();
            let pid = server.child.as_ref().unwrap().id();
            println!(
                "ip-history with {total} events, 2,000 distinct hosts: median {:?} p95 {:?} p99 {:?}; server peak RSS {} MiB",
                percentile(&times, 0.5),
                percentile(&times, 0.95),
                percentile(&times, 0.99),
                peak_rss_kib(pid) / 1024
            );
        }
        _ => {
            eprintln!("usage: cargo bench -p apiary --bench platform -- ingest-http|ingest-cli|bad-hosts|ip-history [--events N] [--batch N] [--clients N] [--gzip] [--spread-secs N] [--shuffled]");
            std::process::exit(2);
        }
    }
}
