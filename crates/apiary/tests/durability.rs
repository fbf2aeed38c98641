//! Acknowledged means durable: kill -9 the server during ingest, restart it,
//! and every acknowledged event is there exactly once.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use support::*;

fn batch(start: usize, n: usize) -> String {
    (start..start + n)
        .map(|i| format!("{}\n", event(&format!("d{i}"), NODE_A, "4.4.4.4", "SSH", format!("ev-{i}").as_bytes())))
        .collect()
}

#[test]
fn acknowledged_events_survive_kill_9_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let creds = create_account(dir.path(), "op", &["--role", "all-sensors", "--quota", "unlimited"]);
    let mut server = Server::start(dir.path());
    let api = server.api();
    let (id, key) = (creds.api_id.clone(), creds.sensor_key.clone());
    let progress = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = progress.clone();
    let sender = std::thread::spawn(move || {
        let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
        let mut acked = 0usize;
        loop {
            // Event times are the second the batch is made: a sensor
            // re-sends the very same events, so the retry below re-sends
            // these bytes rather than a batch made again later.
            let body = batch(acked, 500);
            let r = client
                .post(format!("{api}/sensor/events"))
                .header("X-HoneyDb-ApiId", &id)
                .header("X-HoneyDb-ApiKey", &key)
                .body(body.clone())
                .send();
            match r {
                Ok(r) if r.status() == 200 => {
                    acked += 500;
                    seen.store(acked, std::sync::atomic::Ordering::SeqCst);
                }
                _ => return (acked, body),
            }
        }
    });
    // Kill while batches are in flight, once a few were acknowledged (a busy
    // machine may take a while to answer the first).
    eventually(60, "a few acknowledged batches", || progress.load(std::sync::atomic::Ordering::SeqCst) >= 1500);
    server.kill9();
    let (acked, in_flight) = sender.join().unwrap();
    assert!(acked > 0, "some batches were acknowledged before the kill");

    server.restart();
    // Re-send the batch that may have been in flight, as a sensor would.
    let (status, body) = ingest_ndjson(&server, &creds, in_flight);
    assert_eq!(status, 200, "{body}");

    let mut counts: HashMap<String, usize> = HashMap::new();
    let mut from = "0".to_owned();
    loop {
        let url = format!("{}/sensor-data?sensor-data-date={}&from-id={from}", server.api(), today());
        let (_, page) = get_json(&url, &creds.api_id, &creds.threat_key);
        let data = page[0]["data"].as_array().unwrap();
        if data.is_empty() {
            break;
        }
        for e in data {
            let payload = hex_decode(e["data"].as_str().unwrap());
            *counts.entry(payload).or_default() += 1;
        }
        from = page[1]["from_id"].as_str().unwrap().to_owned();
    }
    for i in 0..acked + 500 {
        assert_eq!(counts.get(&format!("ev-{i}")), Some(&1), "event {i} must be stored exactly once");
    }
    assert_eq!(counts.len(), acked + 500);
    assert!(counts.values().all(|&c| c == 1));

    // So is who sent what, which the payload writer logs with each commit
    // and folds into its tables later: a fold the kill cut short is done
    // when the store opens again.
    let url = format!("{}/payload-history/remote-hosts/4.4.4.4", server.api());
    let (_, sent) = get_json(&url, &creds.api_id, &creds.threat_key);
    let hashes: std::collections::HashSet<&str> =
        sent.as_array().unwrap().iter().map(|r| r["hash"].as_str().unwrap()).collect();
    for i in 0..acked + 500 {
        let hash = apiary_model::md5_hex(format!("ev-{i}").as_bytes());
        assert!(hashes.contains(hash.as_str()), "payload of event {i} listed under its host");
    }
}

fn hex_decode(s: &str) -> String {
    let bytes: Vec<u8> = (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect();
    String::from_utf8(bytes).unwrap()
}

#[test]
fn sigterm_shuts_down_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let creds = create_account(dir.path(), "c", &["--quota", "100"]);
    let mut server = Server::start(dir.path());
    for _ in 0..3 {
        assert_eq!(get(&format!("{}/services", server.api()), &creds.api_id, &creds.threat_key).status(), 200);
    }
    let status = server.stop();
    assert!(status.success(), "clean exit on SIGTERM, got {status:?}");
    server.restart();
    let r = get(&format!("{}/services", server.api()), &creds.api_id, &creds.threat_key);
    assert_eq!(r.headers()["honeydb-qpm-consumed"], "4", "quota usage flushed at shutdown");
}
