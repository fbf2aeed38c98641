//! End to end against the real Apiary server (apiary-api over the embedded
//! store): events recorded while the server is down are queued, then
//! delivered when it comes up, through a server restart, exactly once. These
//! outages are short, to check the queue's bookkeeping quickly; the issue's
//! minutes-long outage under load is `process::server_outage_under_load_exactly_once`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use apiary_sensor::ServiceKind as K;
use apiary_store::{NewAccount, Role, SqliteOptions, SqliteStore, Store};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use crate::common::*;

pub struct Server {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

pub async fn start_server(addr: SocketAddr, store: Arc<dyn Store>) -> Server {
    start_server_with(addr, store, apiary_api::ApiConfig::default()).await
}

pub async fn start_server_with(addr: SocketAddr, store: Arc<dyn Store>, config: apiary_api::ApiConfig) -> Server {
    // The port was free a moment ago; retry briefly in case TIME_WAIT lingers.
    let mut listener = None;
    for _ in 0..50 {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => {
                listener = Some(l);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let listener = listener.expect("server port busy");
    let state = apiary_api::AppState::new(store, config);
    let (stop, rx) = oneshot::channel();
    let task = tokio::spawn(apiary_api::serve(listener, state, async {
        let _ = rx.await;
    }));
    Server { stop, task }
}

impl Server {
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

async fn echo_sessions(addr: SocketAddr, n: usize) {
    for i in 0..n {
        let mut c = TcpStream::connect(addr).await.unwrap();
        let msg = format!("payload {i:04}");
        c.write_all(msg.as_bytes()).await.unwrap();
        let mut b = vec![0u8; msg.len()];
        c.read_exact(&mut b).await.unwrap();
    }
}

pub fn stored(store: &dyn Store, owner: i64) -> u64 {
    let today = apiary_model::time::day_number(apiary_model::time::now_ms());
    (today - 1..=today).map(|d| store.sensor_data_count(d, Some(owner)).unwrap()).sum()
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < Duration::from_secs(30), "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_exactly_once_through_outages() {
    let server_dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(server_dir.path(), SqliteOptions::default()).unwrap());
    let (account, creds) = store
        .create_account(&NewAccount { name: "sensor-test".into(), monthly_quota: None, role: Role::Community })
        .unwrap();
    let server_addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();

    let sensor_dir = tempfile::tempdir().unwrap();
    let mut cfg = config(sensor_dir.path(), &[K::Echo]);
    deliver_to(&mut cfg, server_addr, &creds.api_id, &creds.sensor_key, 100);
    cfg.delivery.backoff_min_ms = 100;
    cfg.delivery.backoff_max_ms = 500;
    cfg.delivery.batch_max_events = 25;
    let sensor = apiary_sensor::start(cfg).await.unwrap();
    let echo = sensor.addr(K::Echo).unwrap();
    let log = sensor_dir.path().join("events.jsonl");

    // 1. Server down: events wait in the queue.
    echo_sessions(echo, 20).await;
    until("events queued", || sensor.pending().unwrap() >= 60).await;
    assert_eq!(stored(&*store, account.id), 0);

    // 2. Server up: everything arrives.
    let server = start_server(server_addr, store.clone()).await;
    until("first delivery", || {
        sensor.pending() == Some(0) && stored(&*store, account.id) == read_events(&log).len() as u64
    })
    .await;

    // 3. Server down again mid-stream, then back: nothing lost, nothing twice.
    server.stop().await;
    echo_sessions(echo, 15).await;
    tokio::time::sleep(Duration::from_millis(800)).await; // a few failed attempts
    let server = start_server(server_addr, store.clone()).await;
    until("second delivery", || {
        sensor.pending() == Some(0) && stored(&*store, account.id) == read_events(&log).len() as u64
    })
    .await;
    let recorded = read_events(&log);
    assert_eq!(recorded.len(), 35 * 3, "CONNECT, RX and TX per session");
    assert_eq!(stored(&*store, account.id), recorded.len() as u64);
    let stats = sensor.stats();
    assert_eq!(stats["rejected_by_server"], 0, "{stats}");
    sensor.stop().await.unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_the_server_finds_too_large_are_split() {
    let server_dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(server_dir.path(), SqliteOptions::default()).unwrap());
    let (account, creds) =
        store.create_account(&NewAccount { name: "t".into(), monthly_quota: None, role: Role::Community }).unwrap();
    let server_addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    // The server takes at most 7 events a request (413 beyond); the sensor
    // sends up to 100, so every batch is halved until its parts fit.
    let api = apiary_api::ApiConfig { max_batch_events: 7, ..Default::default() };
    let server = start_server_with(server_addr, store.clone(), api).await;
    let sensor_dir = tempfile::tempdir().unwrap();
    let mut cfg = config(sensor_dir.path(), &[K::Echo]);
    deliver_to(&mut cfg, server_addr, &creds.api_id, &creds.sensor_key, 200);
    cfg.delivery.batch_max_events = 100;
    let sensor = apiary_sensor::start(cfg).await.unwrap();
    echo_sessions(sensor.addr(K::Echo).unwrap(), 20).await;
    let log = sensor_dir.path().join("events.jsonl");
    until("split delivery", || {
        sensor.pending() == Some(0) && stored(&*store, account.id) == read_events(&log).len() as u64
    })
    .await;
    assert_eq!(stored(&*store, account.id), 20 * 3);
    let stats = sensor.stats();
    assert_eq!(stats["delivered"], 60, "each event stored once: {stats}");
    assert_eq!(stats["rejected_by_server"], 0, "{stats}");
    sensor.stop().await.unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_key_keeps_events() {
    let server_dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(server_dir.path(), SqliteOptions::default()).unwrap());
    let (_, creds) =
        store.create_account(&NewAccount { name: "t".into(), monthly_quota: None, role: Role::Community }).unwrap();
    let server_addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let server = start_server(server_addr, store.clone()).await;
    let sensor_dir = tempfile::tempdir().unwrap();
    let mut cfg = config(sensor_dir.path(), &[K::Echo]);
    // The threat key is not a sensor key: the server refuses, the sensor keeps.
    deliver_to(&mut cfg, server_addr, &creds.api_id, &creds.threat_key, 50);
    let sensor = apiary_sensor::start(cfg).await.unwrap();
    echo_sessions(sensor.addr(K::Echo).unwrap(), 3).await;
    until("queued", || sensor.pending().unwrap() >= 9).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(sensor.pending().unwrap() >= 9, "refused events must stay queued");
    sensor.stop().await.unwrap();
    server.stop().await;
}
