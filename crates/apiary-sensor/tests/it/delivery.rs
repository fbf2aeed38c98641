//! Delivery without a server: events wait in the disk queue across sensor
//! restarts. (The end-to-end test against the real server lands once the
//! API crate can be started on a socket.)

use std::time::Duration;

use apiary_sensor::{ServerConfig, ServiceKind as K};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::*;

fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_survive_an_outage_and_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerConfig {
        url: format!("http://127.0.0.1:{}/api", closed_port()),
        api_id: "id".into(),
        api_key: "key".into(),
    };
    let mut cfg = config(dir.path(), &[K::Echo]);
    cfg.server = Some(server.clone());
    cfg.delivery.start_jitter_ms = 0;
    cfg.delivery.flush_interval_ms = 50;
    cfg.delivery.backoff_min_ms = 50;
    cfg.delivery.backoff_max_ms = 200;
    let sensor = apiary_sensor::start(cfg.clone()).await.unwrap();
    let node = sensor.node_id().to_owned();
    let addr = sensor.addr(K::Echo).unwrap();
    for i in 0..5 {
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(format!("hello {i}").as_bytes()).await.unwrap();
        let mut b = [0u8; 7];
        c.read_exact(&mut b).await.unwrap();
    }
    // 5 × (CONNECT, RX, TX) at least.
    let mut pending = 0;
    for _ in 0..100 {
        pending = sensor.pending().unwrap();
        if pending >= 15 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(pending >= 15, "{pending}");
    tokio::time::sleep(Duration::from_millis(500)).await; // a few failed deliveries
    sensor.stop().await.unwrap();

    let sensor = apiary_sensor::start(cfg).await.unwrap();
    assert_eq!(sensor.node_id(), node, "node id is stable across restarts");
    assert!(sensor.pending().unwrap() >= pending, "queue lost events over a restart");
    sensor.stop().await.unwrap();

    // The queued lines are the same wire events the log holds.
    let log = read_events(&dir.path().join("events.jsonl"));
    assert_valid(&log);
    assert!(log.iter().all(|e| e["node"] == node.as_str()));
}
