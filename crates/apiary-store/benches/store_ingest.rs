//! Store-level ingest throughput, without HTTP: how fast the embedded engine
//! commits validated events with their rollups, and how fast a body parses.
//!
//! `cargo bench -p apiary-store --bench store_ingest [-- EVENTS]`

use std::time::Instant;

use apiary_model::{parse_batch, WireEvent};
use apiary_store::{NewAccount, Role, SqliteOptions, SqliteStore, Store};

fn body(start: usize, n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let services = ["SSH", "Telnet", "HTTP", "VNC", "Redis", "SIP"];
    let now = apiary_model::time::now_ms() - 60_000;
    let spread: i64 = std::env::var("SPREAD_MS").ok().and_then(|s| s.parse().ok()).unwrap_or(60_000);
    for i in start..start + n {
        let hosts: usize = std::env::var("HOSTS").ok().and_then(|s| s.parse().ok()).unwrap_or(20_000);
        let h = (i * 7919) % hosts;
        let host = format!("11.{}.{}.{}", (h / 65536) % 256, (h / 256) % 256, h % 256);
        let data = if i % 4 == 0 {
            String::new()
        } else {
            {
                let p = &b"GET /wp-login.php HTTP/1.1\r\nHost: x\r\nUser-Agent: Mozilla/5.0\r\n\r\n"[..];
                hex_of(&p[..(i % p.len()) + 1])
            }
        };
        let (date, time, ms) = apiary_model::time::date_parts(now - ((i as i64 * 7_919) % spread));
        let w = serde_json::json!({"id": i.to_string(), "node": "3386e49be694e179a429344f745703d6", "session": "0f0e6d5c-1111-4aaa-8bbb-123456789abc",
            "date": date, "time": time, "millisecond": ms, "protocol": "TCP", "event": if data.is_empty() {"CONNECT"} else {"RX"},
            "service": services[i % services.len()], "local_host": "10.0.0.1", "local_port": 22, "remote_host": host, "remote_port": 40000, "data": data});
        out.extend_from_slice(w.to_string().as_bytes());
        out.push(b'\n');
    }
    out
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn main() {
    let total: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(500_000);
    let batch = 5_000;
    let bodies: Vec<Vec<u8>> = (0..total / batch).map(|b| body(b * batch, batch)).collect();
    let now = apiary_model::time::now_ms();

    let t = Instant::now();
    let mut parsed = Vec::new();
    for b in &bodies {
        parsed.push(parse_batch(b, batch, now).unwrap().events);
    }
    let parse_rate = total as f64 / t.elapsed().as_secs_f64();
    let _ = WireEvent::default();

    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap();
    let (account, _) =
        store.create_account(&NewAccount { name: "b".into(), monthly_quota: None, role: Role::AllSensors }).unwrap();
    let t = Instant::now();
    for events in parsed {
        store.ingest(account.id, None, events).unwrap();
    }
    let store_rate = total as f64 / t.elapsed().as_secs_f64();
    println!("parse+validate: {parse_rate:.0} events/s; store.ingest: {store_rate:.0} events/s ({total} events, batches of {batch})");
}
