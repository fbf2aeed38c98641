use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use apiary_sensor::{RunningSensor, SensorConfig, ServiceConfig, ServiceKind};
use serde_json::Value;

static PANICS: AtomicUsize = AtomicUsize::new(0);

/// Counts panics in the sensor's own threads (connection tasks swallow
/// them). A failing assertion runs on a test thread, which the harness names
/// after the test (`module::test`); those are not counted, so one failing test
/// does not fail every other test that checks for panics.
pub fn watch_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let on_test_thread = std::thread::current().name().is_some_and(|name| name.contains("::"));
            if !on_test_thread {
                PANICS.fetch_add(1, Ordering::SeqCst);
            }
            prev(info);
        }));
    });
}

pub fn panics() -> usize {
    PANICS.load(Ordering::SeqCst)
}

pub struct TestSensor {
    pub sensor: Option<RunningSensor>,
    pub dir: tempfile::TempDir,
    pub log: PathBuf,
}

/// A config with the given services on ephemeral loopback ports and a log.
/// Points `cfg` at a server on `addr` with `key`, delivering without start
/// jitter and flushing every `flush_ms`.
pub fn deliver_to(cfg: &mut SensorConfig, addr: std::net::SocketAddr, api_id: &str, key: &str, flush_ms: u64) {
    cfg.server = Some(apiary_sensor::ServerConfig {
        url: format!("http://{addr}/api"),
        api_id: api_id.to_owned(),
        api_key: key.to_owned(),
    });
    cfg.delivery.start_jitter_ms = 0;
    cfg.delivery.flush_interval_ms = flush_ms;
}

pub fn config(dir: &Path, kinds: &[ServiceKind]) -> SensorConfig {
    let mut cfg =
        SensorConfig { state_dir: dir.to_owned(), log_file: Some("events.jsonl".into()), ..Default::default() };
    cfg.services =
        kinds.iter().map(|k| (*k, ServiceConfig { port: Some(0), ..Default::default() })).collect::<BTreeMap<_, _>>();
    cfg
}

impl TestSensor {
    pub async fn start(kinds: &[ServiceKind]) -> TestSensor {
        Self::start_with(kinds, |_| {}).await
    }

    pub async fn start_with(kinds: &[ServiceKind], tweak: impl FnOnce(&mut SensorConfig)) -> TestSensor {
        watch_panics();
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path(), kinds);
        tweak(&mut cfg);
        let log = dir.path().join("events.jsonl");
        let sensor = apiary_sensor::start(cfg).await.unwrap();
        TestSensor { sensor: Some(sensor), dir, log }
    }

    pub fn port(&self, kind: ServiceKind) -> u16 {
        self.sensor.as_ref().unwrap().addr(kind).unwrap().port()
    }

    pub fn events(&self) -> Vec<Value> {
        read_events(&self.log)
    }

    /// Waits (up to 10 s) until `pred` holds over the recorded events.
    pub async fn wait_for(&self, what: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let start = Instant::now();
        loop {
            let ev = self.events();
            if pred(&ev) {
                return ev;
            }
            if start.elapsed() > Duration::from_secs(10) {
                panic!("timed out waiting for {what}; {} events: {:#?}", ev.len(), summary(&ev));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.sensor.take() {
            s.stop().await.unwrap();
        }
    }
}

pub fn read_events(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap_or_default().lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

fn summary(ev: &[Value]) -> Vec<String> {
    ev.iter().rev().take(30).map(|e| format!("{} {} {}", e["service"], e["event"], text(e))).collect()
}

/// The payload of an event as text.
pub fn text(e: &Value) -> String {
    String::from_utf8_lossy(&hex::decode(e["data"].as_str().unwrap_or("")).unwrap_or_default()).into_owned()
}

/// INFO facts of a service, decoded.
pub fn facts(ev: &[Value], service: &str) -> Vec<Value> {
    ev.iter()
        .filter(|e| e["service"] == service && e["event"] == "INFO")
        .filter_map(|e| serde_json::from_str(&text(e)).ok())
        .collect()
}

pub fn has_login(ev: &[Value], service: &str, user: &str, password: Option<&str>) -> bool {
    facts(ev, service)
        .iter()
        .any(|f| f["type"] == "login" && f["username"] == user && password.is_none_or(|p| f["password"] == p))
}

/// Every event must pass the server's own validation.
pub fn assert_valid(ev: &[Value]) {
    let now = apiary_model::time::now_ms();
    for e in ev {
        let w: apiary_model::WireEvent = serde_json::from_value(e.clone()).unwrap();
        if let Err(err) = w.validate(now) {
            panic!("invalid event {e}: {err}");
        }
    }
}

/// Where a binary is on PATH.
fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).map(|d| d.join(name)).find(|p| p.is_file()))
}

/// What to do about a client that is not installed: under CI (env `CI` set,
/// where every client is installed) it is a failure; elsewhere the test is
/// skipped with a note, so a developer without the package can still run
/// the rest.
fn missing(what: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("{what} is not installed, and CI is set: CI must install every client (scripts/install-test-deps)");
    }
    eprintln!("SKIPPED: {what} is not installed (CI installs it); skipping this client test");
}

/// The client binary, or None (and a note) when it is not installed.
/// Panics instead under CI.
pub fn tool(name: &str) -> Option<PathBuf> {
    let found = which(name);
    if found.is_none() {
        missing(&format!("`{name}`"));
    }
    found
}

/// The first of several names for one client that is installed.
pub fn tool_any(names: &[&str]) -> Option<PathBuf> {
    let found = names.iter().find_map(|n| which(n));
    if found.is_none() {
        missing(&format!("none of {names:?}"));
    }
    found
}

/// Runs a client with a hard timeout, off the async runtime.
pub async fn run(cmd: &Path, args: &[&str], timeout: Duration) -> Output {
    run_stdin(cmd, args, None, timeout).await
}

pub async fn run_stdin(cmd: &Path, args: &[&str], stdin: Option<&str>, timeout: Duration) -> Output {
    let mut c = Command::new("timeout");
    c.arg("-k").arg("2").arg(format!("{}", timeout.as_secs().max(1))).arg(cmd).args(args);
    c.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() }).stdout(Stdio::piped()).stderr(Stdio::piped());
    let input = stdin.map(str::to_owned);
    tokio::task::spawn_blocking(move || {
        let mut child = c.spawn().expect("spawn client");
        if let Some(input) = input {
            use std::io::Write;
            let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
        }
        child.wait_with_output().expect("wait client")
    })
    .await
    .unwrap()
}

pub fn out(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}
