//! Hostile clients: the sensor must stay within its limits, keep serving
//! others and never panic.

use std::time::{Duration, Instant};

use apiary_sensor::ServiceKind as K;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::common::*;

async fn http_ok(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)).await else { return false };
    if s.write_all(b"GET / HTTP/1.0\r\n\r\n").await.is_err() {
        return false;
    }
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    buf.starts_with(b"HTTP/1.1 200")
}

fn limits(c: &mut apiary_sensor::SensorConfig) {
    c.limits.max_bytes_per_connection = 64 * 1024;
    c.limits.idle_timeout_secs = 1;
    c.limits.max_connection_secs = 3;
    c.limits.max_connections = 100;
    c.limits.per_ip_rate = 10_000.0;
    c.limits.per_ip_burst = 10_000.0;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_sender_is_cut_at_the_byte_limit() {
    let s = TestSensor::start_with(&[K::Echo, K::Http, K::Redis], limits).await;
    for kind in [K::Echo, K::Http, K::Redis] {
        let mut c = TcpStream::connect(("127.0.0.1", s.port(kind))).await.unwrap();
        let chunk = vec![b'A'; 8192];
        let start = Instant::now();
        let mut sent = 0usize;
        // Keep sending (and drain echoes) until the sensor hangs up.
        let mut sink = vec![0u8; 65536];
        while start.elapsed() < Duration::from_secs(8) {
            match tokio::time::timeout(Duration::from_millis(200), c.write_all(&chunk)).await {
                Ok(Ok(())) => sent += chunk.len(),
                Ok(Err(_)) => break,
                Err(_) => {}
            }
            if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_millis(1), c.read(&mut sink)).await {
                break;
            }
        }
        assert!(start.elapsed() < Duration::from_secs(8), "{kind:?} never hung up (sent {sent})");
    }
    let ev = s
        .wait_for("limit facts", |ev| {
            ["Echo", "HTTP", "Redis"].iter().all(|svc| facts(ev, svc).iter().any(|f| f["type"] == "limit"))
        })
        .await;
    for svc in ["Echo", "HTTP", "Redis"] {
        let rx: usize = ev.iter().filter(|e| e["service"] == svc && e["event"] == "RX").map(|e| text(e).len()).sum();
        assert!(rx <= 64 * 1024, "{svc} read {rx} bytes");
    }
    assert!(http_ok(s.port(K::Http)).await);
    assert_eq!(panics(), 0);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_hits_the_duration_limit() {
    let s = TestSensor::start_with(&[K::Http], limits).await;
    let mut c = TcpStream::connect(("127.0.0.1", s.port(K::Http))).await.unwrap();
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let start = Instant::now();
    let mut closed = false;
    while start.elapsed() < Duration::from_secs(8) {
        tokio::time::sleep(Duration::from_millis(300)).await;
        if c.write_all(b"X-a: b\r\n").await.is_err() {
            closed = true;
            break;
        }
        let mut b = [0u8; 1];
        if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_millis(1), c.read(&mut b)).await {
            closed = true;
            break;
        }
    }
    assert!(closed, "slowloris connection was never closed");
    assert!(start.elapsed() < Duration::from_secs(6));
    s.wait_for("duration limit", |ev| facts(ev, "HTTP").iter().any(|f| f["limit"] == "max_duration")).await;
    assert_eq!(panics(), 0);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_capped_and_reaped() {
    let s = TestSensor::start_with(&[K::Http, K::Telnet], limits).await;
    let port = s.port(K::Telnet);
    let mut conns = Vec::new();
    for _ in 0..300 {
        if let Ok(c) = TcpStream::connect(("127.0.0.1", port)).await {
            conns.push(c);
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stats = s.sensor.as_ref().unwrap().stats();
    assert!(stats["refused_capacity"].as_u64().unwrap() >= 150, "{stats}");
    // Idle ones are reaped after the idle timeout, then service resumes.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(http_ok(s.port(K::Http)).await);
    drop(conns);
    assert_eq!(panics(), 0);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_ip_rate_limit() {
    let s = TestSensor::start_with(&[K::Http], |c| {
        c.limits.per_ip_rate = 1.0;
        c.limits.per_ip_burst = 5.0;
    })
    .await;
    let mut ok = 0;
    for _ in 0..20 {
        if http_ok(s.port(K::Http)).await {
            ok += 1;
        }
    }
    assert!((5..=7).contains(&ok), "{ok} connections served");
    assert!(s.sensor.as_ref().unwrap().stats()["refused_rate"].as_u64().unwrap() >= 13);
    s.stop().await;
}

/// Deterministic noise: no dependency on an RNG crate for the test.
fn noise(seed: u32, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_on_every_service() {
    let all: Vec<K> = apiary_sensor::ServiceKind::ALL.to_vec();
    let s = TestSensor::start_with(&all, limits).await;
    let payloads: Vec<Vec<u8>> = vec![
        noise(1, 10),
        noise(2, 3000),
        vec![0xff; 512],
        vec![0; 100],
        b"*99999999999\r\n$-5\r\n\r\n\r\n".to_vec(),
        b"GET / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n".to_vec(),
        b"\x10\xff\xff\xff\xff\x7f".to_vec(),
        b"\xff\xfa\xff\xff\xff\xf0\xff".to_vec(),
        b"AUTH PLAIN ====\r\nAUTH LOGIN\r\n%%%%\r\n".to_vec(),
        b"set k 0 0 99999999\r\nget\r\n".to_vec(),
        b"RFB 003.008\n\x07".to_vec(),
        "\u{202e}é\r\n".repeat(300).into_bytes(),
    ];
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for l in s.sensor.as_ref().unwrap().listeners().to_vec() {
        for (i, p) in payloads.iter().enumerate() {
            if l.protocol == apiary_model::Protocol::Udp {
                let _ = udp.send_to(p, l.addr).await;
                continue;
            }
            let Ok(mut c) = TcpStream::connect(l.addr).await else { continue };
            let _ = c.write_all(p).await;
            if i % 2 == 0 {
                let _ = c.shutdown().await;
            }
            let mut buf = vec![0u8; 65536];
            let _ = tokio::time::timeout(Duration::from_millis(150), c.read(&mut buf)).await;
        }
    }
    // Truncated and oversized datagrams for the UDP parsers.
    for l in s.sensor.as_ref().unwrap().listeners().iter().filter(|l| l.protocol == apiary_model::Protocol::Udp) {
        for n in [0usize, 1, 2, 11, 12, 13, 47, 48, 1400] {
            let _ = udp.send_to(&noise(n as u32 + 7, n), l.addr).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(http_ok(s.port(K::Http)).await);
    assert_eq!(panics(), 0, "a service panicked on malformed input");
    let ev = s.events();
    assert!(ev.len() > 100);
    assert_valid(&ev);
    s.stop().await;
}
