//! New connections per second, fully handled and logged, for the Telnet,
//! Redis and FTP services at 8 and 32 concurrent clients, side by side with
//! a bare tokio accept-write-close loop (the ceiling) and, when it can be
//! started, OpenCanary on the same services. See BENCH-NOTES.md.
//!
//! `cargo bench -p apiary-sensor --bench connections`
//!
//! For Apiary a run ends only when every event of every connection in it
//! (CONNECT, RX, TX, at least three each) is acknowledged by the real
//! server (apiary-api over the embedded SQLite store, in this process): the
//! figure is connections / (time to serve them + time to deliver their
//! events). Everything is on 127.0.0.1 and every loop is bounded.
//!
//! Beside each row, the CPU time per connection: of this process (the
//! clients plus the bare loop, or plus the sensor and the in-process server)
//! and, for OpenCanary, of its process too. Unlike the rates it hardly
//! depends on what else the machine is doing.
//!
//! Environment: `BENCH_CONNS` (connections per run, default 4000),
//! `OPENCANARY` (path to `opencanaryd`; default: look on PATH and in
//! /tmp/oc-venv/bin), `BENCH_SKIP_OPENCANARY=1`, and for profiling one side
//! alone (under `perf record`, say) `BENCH_ONLY=bare` or `BENCH_ONLY=apiary`:
//! only that target, only Redis with 32 clients, without warm-up.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use apiary_sensor::{ServerConfig, ServiceConfig, ServiceKind};
use apiary_store::{NewAccount, Role, SqliteOptions, SqliteStore, Store};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Clone, Copy, Debug)]
enum Svc {
    Telnet,
    Redis,
    Ftp,
}

impl Svc {
    fn name(self) -> &'static str {
        match self {
            Svc::Telnet => "Telnet",
            Svc::Redis => "Redis",
            Svc::Ftp => "FTP",
        }
    }
    fn kind(self) -> ServiceKind {
        match self {
            Svc::Telnet => ServiceKind::Telnet,
            Svc::Redis => ServiceKind::Redis,
            Svc::Ftp => ServiceKind::Ftp,
        }
    }
    /// The greeting the client waits for before it speaks (none for Redis).
    fn greeting(self) -> &'static [&'static [u8]] {
        match self {
            Svc::Telnet => &[b"login: ", b"Username: "],
            Svc::Redis => &[],
            Svc::Ftp => &[b"\r\n"],
        }
    }
    /// What the client then sends: a user name, a PING, a USER command...
    fn request(self) -> &'static [u8] {
        match self {
            Svc::Telnet => b"root\r\n",
            Svc::Redis => b"PING\r\n",
            Svc::Ftp => b"USER anonymous\r\n",
        }
    }
    /// ...and the answer it reads before hanging up.
    fn answer(self) -> &'static [&'static [u8]] {
        match self {
            Svc::Telnet => &[b"Password: "],
            Svc::Redis | Svc::Ftp => &[b"\r\n"],
        }
    }
    /// The bare loop's greeting and answer.
    fn bare(self) -> (&'static [u8], &'static [u8]) {
        match self {
            Svc::Telnet => (b"\xff\xfd\x01\xff\xfb\x01svr04 login: ", b"Password: "),
            Svc::Redis => (b"", b"+PONG\r\n"),
            Svc::Ftp => (b"220 (vsFTPd 3.0.3)\r\n", b"331 Please specify the password.\r\n"),
        }
    }
}

/// Reads until one of `ends` has arrived; false on EOF or error first.
async fn read_until(s: &mut TcpStream, ends: &[&[u8]]) -> bool {
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 512];
    while buf.len() < 8192 {
        let n = match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        if ends.iter().any(|e| buf.windows(e.len()).any(|w| w == *e)) {
            return true;
        }
    }
    true
}

/// One client exchange: connect, wait for the greeting, send the request,
/// read the answer, close. Returns whether it all happened.
async fn exchange(addr: SocketAddr, svc: Svc) -> bool {
    let go = async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        let _ = s.set_nodelay(true);
        if !svc.greeting().is_empty() && !read_until(&mut s, svc.greeting()).await {
            return None;
        }
        s.write_all(svc.request()).await.ok()?;
        read_until(&mut s, svc.answer()).await.then_some(())
    };
    matches!(tokio::time::timeout(Duration::from_secs(5), go).await, Ok(Some(())))
}

/// `total` exchanges over `clients` concurrent clients; (ok, elapsed).
async fn drive(addr: SocketAddr, svc: Svc, clients: usize, total: usize) -> (usize, Duration) {
    let next = Arc::new(AtomicUsize::new(0));
    let ok = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (next, ok) = (next.clone(), ok.clone());
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < total {
                if exchange(addr, svc).await {
                    ok.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    (ok.load(Ordering::Relaxed), start.elapsed())
}

/// The ceiling: accept, write the greeting, read the request, write the
/// answer, close. No parsing, no events.
async fn bare_server(svc: Svc) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else { continue };
            tokio::spawn(async move {
                let _ = s.set_nodelay(true);
                let (greeting, answer) = svc.bare();
                if !greeting.is_empty() && s.write_all(greeting).await.is_err() {
                    return;
                }
                let mut b = [0u8; 256];
                let _ = s.read(&mut b).await;
                let _ = s.write_all(answer).await;
                let _ = s.shutdown().await;
            });
        }
    });
    (addr, task)
}

struct Apiary {
    sensor: apiary_sensor::RunningSensor,
    store: Arc<dyn Store>,
    owner: i64,
    _server_stop: tokio::sync::oneshot::Sender<()>,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

async fn start_apiary() -> Apiary {
    let server_dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(server_dir.path(), SqliteOptions::default()).unwrap());
    let (account, creds) =
        store.create_account(&NewAccount { name: "bench".into(), monthly_quota: None, role: Role::Community }).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server_addr = listener.local_addr().unwrap();
    let state = apiary_api::AppState::new(store.clone(), apiary_api::ApiConfig::default());
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(apiary_api::serve(listener, state, async {
        let _ = rx.await;
    }));

    let sensor_dir = tempfile::tempdir().unwrap();
    let mut cfg = apiary_sensor::SensorConfig { state_dir: sensor_dir.path().to_owned(), ..Default::default() };
    cfg.services = [Svc::Telnet, Svc::Redis, Svc::Ftp]
        .iter()
        .map(|s| (s.kind(), ServiceConfig { port: Some(0), ..Default::default() }))
        .collect();
    cfg.server = Some(ServerConfig {
        url: format!("http://{server_addr}/api"),
        api_id: creds.api_id,
        api_key: creds.sensor_key,
    });
    // Defaults except: no start jitter and a short flush interval (so the
    // drain at the end of a run is not a fixed 2 s wait), and the per-IP
    // rate limit lifted (every client is 127.0.0.1).
    cfg.delivery.start_jitter_ms = 0;
    cfg.delivery.flush_interval_ms = 100;
    cfg.limits.per_ip_rate = 1e9;
    cfg.limits.per_ip_burst = 1e9;
    let sensor = apiary_sensor::start(cfg).await.unwrap();
    Apiary { sensor, store, owner: account.id, _server_stop: stop, _dirs: (server_dir, sensor_dir) }
}

impl Apiary {
    fn stored(&self) -> u64 {
        let today = apiary_model::time::day_number(apiary_model::time::now_ms());
        (today - 1..=today).map(|d| self.store.sensor_data_count(d, Some(self.owner)).unwrap_or(0)).sum()
    }

    /// Serves `total` connections, then waits until the server has every
    /// event; the rate counts both. Also returns the events delivered and
    /// how long the delivery went on after the last connection.
    async fn run(&self, svc: Svc, clients: usize, total: usize) -> (f64, u64, Duration) {
        let addr = self.sensor.addr(svc.kind()).unwrap();
        let before = self.stored();
        let events_before = self.sensor.stats()["events"].as_u64().unwrap_or(0);
        let start = Instant::now();
        let (ok, served) = drive(addr, svc, clients, total).await;
        let deadline = Instant::now() + Duration::from_secs(120);
        // Delivered = every event the sensor recorded since the start of the
        // run is in the store (and at least CONNECT, RX, TX per connection).
        loop {
            let recorded = self.sensor.stats()["events"].as_u64().unwrap_or(0) - events_before;
            let stored = self.stored() - before;
            if self.sensor.pending() == Some(0) && stored == recorded && stored >= 3 * ok as u64 {
                break;
            }
            assert!(Instant::now() < deadline, "events not delivered: {stored} of {recorded}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let elapsed = start.elapsed();
        assert_eq!(ok, total, "{} connections failed", total - ok);
        (ok as f64 / elapsed.as_secs_f64(), self.stored() - before, elapsed.saturating_sub(served))
    }
}

/// OpenCanary on 127.0.0.1 with telnet, redis and ftp, logging to a file only.
struct Canary {
    child: Child,
    ports: [u16; 3],
    _dir: tempfile::TempDir,
}

fn find_opencanary() -> Option<PathBuf> {
    if std::env::var_os("BENCH_SKIP_OPENCANARY").is_some() {
        return None;
    }
    if let Some(p) = std::env::var_os("OPENCANARY") {
        return Some(p.into());
    }
    let mut dirs: Vec<PathBuf> =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    dirs.push("/tmp/oc-venv/bin".into());
    dirs.into_iter().map(|d| d.join("opencanaryd")).find(|p| p.is_file())
}

/// The `opencanaryd` script is a wrapper that runs `twistd -noy
/// opencanary.tac` with a fixed system-wide pid file and does not pass
/// signals on; run twistd from the same directory directly, with our own
/// pid file, so the process we kill is the one serving.
fn twistd_for(opencanaryd: &Path) -> Option<(PathBuf, PathBuf)> {
    let dir = opencanaryd.parent()?;
    let (twistd, tac) = (dir.join("twistd"), dir.join("opencanary.tac"));
    (twistd.is_file() && tac.is_file()).then_some((twistd, tac))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn start_opencanary(bin: &Path) -> Result<Canary, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let ports = [free_port(), free_port(), free_port()];
    let log = dir.path().join("opencanary.log");
    // Every module off except the three; the only log handler is a local
    // file (no webhook, syslog, email, HPFeeds, Slack or Teams handler).
    let conf = serde_json::json!({
        "device.node_id": "bench-canary",
        "device.listen_addr": "127.0.0.1",
        "ip.ignorelist": [],
        "logtype.ignorelist": [],
        "git.enabled": false, "ftp.enabled": true, "ftp.port": ports[2], "ftp.banner": "FTP server ready",
        "http.enabled": false, "https.enabled": false, "httpproxy.enabled": false, "llmnr.enabled": false,
        "mssql.enabled": false, "mysql.enabled": false, "ntp.enabled": false, "portscan.enabled": false,
        "rdp.enabled": false, "redis.enabled": true, "redis.port": ports[1], "sip.enabled": false,
        "smb.enabled": false, "snmp.enabled": false, "ssh.enabled": false, "tcpbanner.enabled": false,
        "telnet.enabled": true, "telnet.port": ports[0], "telnet.banner": "", "telnet.honeycreds": [],
        "tftp.enabled": false, "vnc.enabled": false,
        "logger": {
            "class": "PyLogger",
            "kwargs": {
                "formatters": {"plain": {"format": "%(message)s"}},
                "handlers": {"file": {"class": "logging.FileHandler", "filename": log.to_string_lossy()}}
            }
        }
    });
    std::fs::write(dir.path().join("opencanary.conf"), conf.to_string()).map_err(|e| e.to_string())?;
    // OpenCanary reads ./opencanary.conf first; -n keeps twistd in the foreground.
    let (twistd, tac) = twistd_for(bin).ok_or_else(|| format!("no twistd/opencanary.tac beside {}", bin.display()))?;
    let mut child = Command::new(twistd)
        .arg("-noy")
        .arg(tac)
        .arg("--pidfile")
        .arg(dir.path().join("twistd.pid"))
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        if ports.iter().all(|p| std::net::TcpStream::connect(("127.0.0.1", *p)).is_ok()) {
            return Ok(Canary { child, ports, _dir: dir });
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("opencanaryd exited at start: {status}"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = child.kill();
    Err("opencanaryd did not open its ports within 30 s".into())
}

impl Drop for Canary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Canary {
    /// CPU time OpenCanary's process has used (from /proc; `USER_HZ` is 100).
    fn cpu(&self) -> Option<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).ok()?;
        // Fields after the command name, which is in parentheses: utime and
        // stime are the 12th and 13th of those.
        let mut rest = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
        let ticks: u64 = rest.next()?.parse::<u64>().ok()? + rest.next()?.parse::<u64>().ok()?;
        Some(Duration::from_millis(ticks * 10))
    }

    fn addr(&self, svc: Svc) -> SocketAddr {
        let p = match svc {
            Svc::Telnet => self.ports[0],
            Svc::Redis => self.ports[1],
            Svc::Ftp => self.ports[2],
        };
        SocketAddr::from(([127, 0, 0, 1], p))
    }
}

/// CPU time (user and system) this process has used.
fn own_cpu() -> Duration {
    use nix::sys::resource::{getrusage, UsageWho};
    let Ok(u) = getrusage(UsageWho::RUSAGE_SELF) else { return Duration::ZERO };
    let t = |tv: nix::sys::time::TimeVal| {
        Duration::from_secs(tv.tv_sec().max(0) as u64) + Duration::from_micros(tv.tv_usec().max(0) as u64)
    };
    t(u.user_time()) + t(u.system_time())
}

/// Microseconds per connection.
fn per_conn(cpu: Duration, conns: usize) -> f64 {
    cpu.as_secs_f64() * 1e6 / conns as f64
}

fn main() {
    // `cargo test --benches` runs bench binaries with no `--bench`; keep that quick.
    if !std::env::args().any(|a| a == "--bench") {
        println!("connections bench: run with `cargo bench -p apiary-sensor --bench connections`");
        return;
    }
    let total: usize = std::env::var("BENCH_CONNS").ok().and_then(|v| v.parse().ok()).unwrap_or(4000);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async move {
        let apiary = start_apiary().await;
        let canary = match find_opencanary() {
            Some(bin) => match start_opencanary(&bin) {
                Ok(c) => Some(c),
                Err(e) => {
                    println!("OpenCanary: not measured: {e}");
                    None
                }
            },
            None => {
                println!("OpenCanary: not measured: opencanaryd not found (pip install opencanary)");
                None
            }
        };
        println!("{total} connections per run, 2 tokio workers, all on 127.0.0.1");
        println!(
            "{:<7} {:>7} {:>12} {:>14} {:>12} {:>9} {:>11}",
            "service", "clients", "bare conn/s", "apiary conn/s", "canary conn/s", "apiary/bare", "apiary/canary"
        );
        let only = std::env::var("BENCH_ONLY").unwrap_or_default();
        for svc in [Svc::Telnet, Svc::Redis, Svc::Ftp] {
            for clients in [8, 32] {
                if only == "bare" && svc.name() == "Redis" && clients == 32 {
                    let (bare_addr, _t) = bare_server(svc).await;
                    let cpu0 = own_cpu();
                    let (ok, t) = drive(bare_addr, svc, clients, total).await;
                    println!("BARE {ok} {:.0}/s cpu {:.0}", ok as f64 / t.as_secs_f64(), per_conn(own_cpu().saturating_sub(cpu0), total));
                    continue;
                }
                if only == "apiary" && svc.name() == "Redis" && clients == 32 {
                    let cpu0 = own_cpu();
                    let (ours, _events, _tail) = apiary.run(svc, clients, total).await;
                    println!("APIARY {ours:.0}/s cpu {:.0}", per_conn(own_cpu().saturating_sub(cpu0), total));
                    continue;
                }
                if !only.is_empty() { continue; }
                // Warm-up, then the three side by side.
                let (bare_addr, bare_task) = bare_server(svc).await;
                let _ = drive(bare_addr, svc, clients, total / 10).await;
                let cpu0 = own_cpu();
                let (ok, t) = drive(bare_addr, svc, clients, total).await;
                let bare_cpu = own_cpu().saturating_sub(cpu0);
                bare_task.abort();
                let bare = ok as f64 / t.as_secs_f64();
                let _ = apiary.run(svc, clients, total / 10).await;
                let cpu0 = own_cpu();
                let (ours, events, tail) = apiary.run(svc, clients, total).await;
                let apiary_cpu = own_cpu().saturating_sub(cpu0);
                let theirs = match &canary {
                    Some(c) => {
                        let _ = drive(c.addr(svc), svc, clients, total / 10).await;
                        let (cpu0, their0) = (own_cpu(), c.cpu());
                        let (ok, t) = drive(c.addr(svc), svc, clients, total).await;
                        let cpu = match (their0, c.cpu()) {
                            (Some(a), Some(b)) => Some(own_cpu().saturating_sub(cpu0) + b.saturating_sub(a)),
                            _ => None,
                        };
                        if ok < total {
                            println!("  (OpenCanary {}: {} of {total} exchanges failed)", svc.name(), total - ok);
                        }
                        Some((ok as f64 / t.as_secs_f64(), cpu))
                    }
                    None => None,
                };
                println!(
                    "{:<7} {:>7} {:>12.0} {:>14.0} {:>12} {:>10.0}% {:>11}   ({events} events delivered, the last {:.0} ms after the last connection)",
                    svc.name(),
                    clients,
                    bare,
                    ours,
                    theirs.map_or("-".into(), |(v, _)| format!("{v:.0}")),
                    100.0 * ours / bare,
                    theirs.map_or("-".into(), |(v, _)| format!("{:.1}x", ours / v)),
                    tail.as_secs_f64() * 1e3,
                );
                println!(
                    "{:<15} CPU µs/connection: bare {:.0}, apiary {:.0}{}",
                    "",
                    per_conn(bare_cpu, total),
                    per_conn(apiary_cpu, total),
                    match theirs {
                        Some((_, Some(cpu))) => format!(", OpenCanary {:.0}", per_conn(cpu, total)),
                        _ => String::new(),
                    },
                );
            }
        }
        println!("sensor stats: {}", apiary.sensor.stats());
        drop(canary);
        let _ = apiary.sensor.stop().await;
    });
}
