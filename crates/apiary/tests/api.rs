//! The HoneyDB-compatible API over real HTTP against the real binary.

mod support;

use std::collections::HashSet;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

fn setup() -> (tempfile::TempDir, Server, Creds) {
    let dir = tempfile::tempdir().unwrap();
    let creds = create_account(dir.path(), "operator", &["--role", "all-sensors", "--quota", "unlimited"]);
    let server = Server::start(dir.path());
    (dir, server, creds)
}

#[test]
fn credentials_are_checked_and_errors_are_json() {
    let (_dir, server, creds) = setup();
    let url = format!("{}/services", server.api());
    // Missing, wrong and half credentials.
    for (id, key) in [("", ""), (creds.api_id.as_str(), "wrong"), ("nobody", creds.threat_key.as_str())] {
        let (status, body) = get_json(&url, id, key);
        assert_eq!(status, 401);
        assert_eq!(body, json!({"status": "Invalid API Credentials"}));
    }
    // Header names are case-insensitive.
    let r = client()
        .get(&url)
        .header("x-honeydb-apiid", &creds.api_id)
        .header("X-HONEYDB-APIKEY", &creds.threat_key)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["honeydb-quota-window"], "month");
    // A sensor key cannot read; a threat key cannot ingest.
    let (status, body) = get_json(&url, &creds.api_id, &creds.sensor_key);
    assert_eq!(status, 403);
    assert!(body["status"].as_str().unwrap().contains("sensor key"));
    let r = client()
        .post(format!("{}/sensor/events", server.api()))
        .header("X-HoneyDb-ApiId", &creds.api_id)
        .header("X-HoneyDb-ApiKey", &creds.threat_key)
        .body("[]")
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    // Unknown routes and methods.
    let (status, body) = get_json(&format!("{}/no-such-thing", server.api()), &creds.api_id, &creds.threat_key);
    assert_eq!((status, body), (404, json!({"status": "Not Found"})));
    let r = client()
        .delete(&url)
        .header("X-HoneyDb-ApiId", &creds.api_id)
        .header("X-HoneyDb-ApiKey", &creds.threat_key)
        .send()
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.json::<Value>().unwrap(), json!({"status": "Method Not Allowed"}));
    // Disabling an account takes effect within the credential cache's second.
    apiary(&server.dir, &["account", "disable", &creds.api_id]);
    eventually(3, "disabling", || get(&url, &creds.api_id, &creds.threat_key).status() == 401);
    apiary(&server.dir, &["account", "enable", &creds.api_id]);
    eventually(3, "enabling", || get(&url, &creds.api_id, &creds.threat_key).status() == 200);
    // A rotated key replaces the old one.
    let out = apiary(&server.dir, &["account", "rotate-key", &creds.api_id, "--kind", "threat"]);
    let new_key = out.split_whitespace().find(|w| w.len() == 64).unwrap().to_owned();
    eventually(3, "rotation", || get(&url, &creds.api_id, &new_key).status() == 200);
    assert_eq!(get(&url, &creds.api_id, &creds.threat_key).status(), 401);
}

#[test]
fn keys_are_stored_hashed() {
    let (dir, mut server, creds) = setup();
    server.stop();
    let db = std::fs::read(dir.path().join("apiary.db")).unwrap();
    let wal = std::fs::read(dir.path().join("apiary.db-wal")).unwrap_or_default();
    for key in [&creds.threat_key, &creds.sensor_key] {
        for bytes in [&db, &wal] {
            assert!(!bytes.windows(key.len()).any(|w| w == key.as_bytes()), "a key is stored in clear");
        }
    }
}

#[test]
fn quota_is_exact_under_parallel_requests_and_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let creds = create_account(dir.path(), "community", &["--quota", "40"]);
    let mut server = Server::start(dir.path());
    let url = format!("{}/services", server.api());
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (url, id, key) = (url.clone(), creds.api_id.clone(), creds.threat_key.clone());
            std::thread::spawn(move || (0..10).map(|_| get(&url, &id, &key)).collect::<Vec<_>>())
        })
        .collect();
    let responses: Vec<_> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
    let ok = responses.iter().filter(|r| r.status() == 200).count();
    let refused: Vec<_> = responses.iter().filter(|r| r.status() == 429).collect();
    assert_eq!(ok, 40);
    assert_eq!(refused.len(), 40);
    for r in &refused {
        let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().expect("integer Retry-After");
        assert!((1..=31 * 86400).contains(&retry));
        assert_eq!(r.headers()["honeydb-qpm-remaining"], "0");
        assert_eq!(r.headers()["honeydb-qpm-consumed"], "40");
    }
    // Uncounted groups still answer when the quota is spent.
    assert_eq!(get(&format!("{}/nodes", server.api()), &creds.api_id, &creds.threat_key).status(), 200);
    // The count survives a restart.
    assert!(server.stop().success());
    server.restart();
    let r = get(&format!("{}/services", server.api()), &creds.api_id, &creds.threat_key);
    assert_eq!(r.status(), 429);
    let body: Value = r.json().unwrap();
    assert!(body["status"].as_str().unwrap().contains("quota"));
}

#[test]
fn usage_headers_count_requests() {
    let dir = tempfile::tempdir().unwrap();
    let creds = create_account(dir.path(), "c", &["--quota", "10"]);
    let server = Server::start(dir.path());
    let r1 = get(&format!("{}/services", server.api()), &creds.api_id, &creds.threat_key);
    assert_eq!(r1.headers()["honeydb-qpm-consumed"], "1");
    assert_eq!(r1.headers()["honeydb-qpm-remaining"], "9");
    let r2 = get(&format!("{}/nodes", server.api()), &creds.api_id, &creds.threat_key);
    assert_eq!(r2.headers()["honeydb-qpm-consumed"], "1", "/nodes is not counted");
}

#[test]
fn ingest_reports_bad_events_by_index_and_keeps_good_ones() {
    let (_dir, server, creds) = setup();
    let mut bad = event("e2", NODE_A, "1.2.3.4", "SSH", b"x");
    bad["remote_host"] = json!("not-an-ip");
    let events =
        vec![event("e1", NODE_A, "1.2.3.4", "SSH", b""), bad, event("e3", NODE_A, "5.6.7.8", "HTTP", b"GET /")];
    let (status, body) = ingest(&server, &creds, &events);
    assert_eq!(status, 422);
    assert_eq!(body["accepted"], 2);
    assert_eq!(body["rejected"][0]["index"], 1);
    assert!(body["rejected"][0]["error"].as_str().unwrap().contains("remote_host"));
    // Idempotent: the same batch again stores nothing new.
    let (status, body) = ingest(&server, &creds, &[events[0].clone(), events[2].clone()]);
    assert_eq!(status, 200);
    assert_eq!(body, json!({"status": "ok", "accepted": 0, "duplicates": 2}));
    let (_, count) = get_json(
        &format!("{}/sensor-data/count?sensor-data-date={}", server.api(), today()),
        &creds.api_id,
        &creds.threat_key,
    );
    assert_eq!(count, json!([{"sensor_data_count": "2"}]));
}

#[test]
fn ingest_takes_gzip_arrays_and_refuses_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let creds = create_account(dir.path(), "op", &["--role", "all-sensors"]);
    let server = Server::start_with_config(dir.path(), Some("max_ingest_bytes = 200000\nmax_batch_events = 500\n"));
    let post = |body: Vec<u8>, gzip: bool| {
        let mut req = client()
            .post(format!("{}/sensor/events", server.api()))
            .header("X-HoneyDb-ApiId", &creds.api_id)
            .header("X-HoneyDb-ApiKey", &creds.sensor_key);
        if gzip {
            req = req.header("Content-Encoding", "gzip");
        }
        let r = req.body(body).send().unwrap();
        (r.status().as_u16(), r.json::<Value>().unwrap())
    };
    let arr = serde_json::to_vec(&vec![event("g1", NODE_A, "9.9.9.9", "Redis", b"PING")]).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&arr).unwrap();
    assert_eq!(post(gz.finish().unwrap(), true), (200, json!({"status": "ok", "accepted": 1, "duplicates": 0})));
    // NDJSON whose only line is not JSON: that event is refused by index.
    let (status, body) = post(b"this is not json".to_vec(), false);
    assert_eq!(status, 422);
    assert_eq!((body["accepted"].clone(), body["rejected"][0]["index"].clone()), (json!(0), json!(0)));
    // An array that does not parse as an array: nothing to store.
    let (status, body) = post(b"[{\"id\": 1},".to_vec(), false);
    assert_eq!(status, 400);
    assert!(body["status"].as_str().unwrap().contains("array"));
    assert_eq!(post(b"\x1f\x8b garbage".to_vec(), true).0, 400);
    // A gzip bomb: small on the wire, over the limit when inflated.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&vec![b' '; 5_000_000]).unwrap();
    assert_eq!(post(gz.finish().unwrap(), true).0, 413);
    assert_eq!(post(vec![b' '; 300_000], false).0, 413);
    let many: Vec<Value> = (0..501).map(|i| event(&format!("m{i}"), NODE_A, "9.9.9.9", "Redis", b"")).collect();
    assert_eq!(post(serde_json::to_vec(&many).unwrap(), false).0, 413);
}

#[test]
fn read_api_shapes_and_typing() {
    let (_dir, server, creds) = setup();
    let mut events = Vec::new();
    for i in 0..3 {
        events.push(event(&format!("a{i}"), NODE_A, "1.2.3.4", "SSH", b"root"));
    }
    events.push(event("b0", NODE_A, "2001:db8::1", "HTTP", b"GET /"));
    events.push(event("b1", NODE_A, "::ffff:5.6.7.8", "http", b""));
    assert_eq!(ingest(&server, &creds, &events).0, 200);
    let api = server.api();
    let q = |path: &str| get_json(&format!("{api}{path}"), &creds.api_id, &creds.threat_key);
    let day = today();

    let (_, hosts) = q("/bad-hosts");
    assert_eq!(hosts[0], json!({"remote_host": "1.2.3.4", "count": "3", "last_seen": day}));
    assert_eq!(hosts.as_array().unwrap().len(), 3);
    assert!(hosts.as_array().unwrap().iter().any(|h| h["remote_host"] == "5.6.7.8"), "mapped IPv4 is IPv4");
    let (_, http) = q("/bad-hosts/HTTP");
    let http_hosts: HashSet<_> = http.as_array().unwrap().iter().map(|h| h["remote_host"].as_str().unwrap()).collect();
    assert_eq!(http_hosts, HashSet::from(["2001:db8::1", "5.6.7.8"]), "service match is case-insensitive");
    let (_, services) = q("/services");
    assert_eq!(services[0], json!({"service": "SSH", "count": "3"}));
    let (_, stats) = q("/stats");
    assert_eq!(stats["total_events"], "5");
    assert_eq!(stats["total_remote_hosts"], "3");
    assert_eq!(stats["top_services"]["SSH"], "3");
    let (status, _) = q("/stats?year=2026&month=13");
    assert_eq!(status, 400);
    let (_, empty_month) = q("/stats?year=2001&month=2");
    assert_eq!(empty_month["period"], "February 2001");
    assert_eq!(empty_month["total_events"], "0");
    let (_, history) = q("/ip-history/1.2.3.4");
    assert_eq!(history, json!([{"date": day, "service": "SSH", "event_count": "3"}]));
    let (_, history2) = q("/ip/1.2.3.4/history");
    assert_eq!(history, history2);
    let (_, v6) = q("/ip/2001:db8::1/history");
    assert_eq!(v6[0]["service"], "HTTP");
    assert_eq!(q("/ip/not-an-ip/history").0, 400);
    assert_eq!(q("/ip-history/10.0.0.999").0, 400);
    let (_, nodes) = q("/nodes");
    assert_eq!(nodes, json!([{"node": NODE_A, "country": "Private IP"}]));
    assert_eq!(q("/twitter-threat-feed"), (200, json!([])));
    assert_eq!(q("/twitter-threat-feed/1.2.3.4"), (200, json!([])));
    // The legacy prefix serves the same API.
    let (status, legacy) =
        get_json(&format!("{}/honeydb/api/services", server.root()), &creds.api_id, &creds.threat_key);
    assert_eq!((status, legacy), (200, services));

    let (_, page) = q(&format!("/sensor-data?sensor-data-date={day}"));
    let data = page[0]["data"].as_array().unwrap();
    assert_eq!(data.len(), 5);
    let first = &data[0];
    for field in [
        "date",
        "time",
        "millisecond",
        "date_time",
        "session",
        "protocol",
        "event",
        "service",
        "remote_host",
        "data",
        "bytes",
        "data_hash",
    ] {
        assert!(first[field].is_string(), "{field} is a string");
    }
    assert_eq!(first["data"], "726f6f74");
    assert_eq!(first["bytes"], "8");
    assert_eq!(
        first["data_hash"],
        "d9ec5431fc2b5b1d3ea2b23e4e4a29f0".replace("d9ec5431fc2b5b1d3ea2b23e4e4a29f0", &md5_hex("726f6f74"))
    );
    assert_eq!(first["millisecond"], "123");
    let connect = data.iter().find(|e| e["event"] == "CONNECT").unwrap();
    assert_eq!((connect["data"].as_str(), connect["bytes"].as_str()), (Some(""), Some("0")));
    assert!(page[1]["from_id"].is_string());
    let last = page[1]["from_id"].as_str().unwrap();
    let (_, end) = q(&format!("/sensor-data?sensor-data-date={day}&from-id={last}"));
    assert_eq!(end, json!([{"data": []}, {"from_id": 0}]));
    for bad in [
        "",
        "?sensor-data-date=2026-13-01",
        "?sensor-data-date=26-11-01",
        &format!("?sensor-data-date={day}&from-id=-1"),
        &format!("?sensor-data-date={day}&from-id=x"),
    ] {
        let (status, body) = q(&format!("/sensor-data/mydata{bad}"));
        assert_eq!(status, 400, "{bad}");
        assert!(body["status"].is_string());
    }
}

fn md5_hex(s: &str) -> String {
    apiary_model::md5_hex(s.as_bytes())
}

#[test]
fn bad_hosts_csv() {
    let (_dir, server, creds) = setup();
    let csv_url = format!("{}/bad-hosts?format=csv", server.api());
    let r = get(&csv_url, &creds.api_id, &creds.threat_key);
    assert_eq!(r.headers()["content-type"], "text/csv; charset=utf-8");
    assert_eq!(r.text().unwrap(), "remote_host,count,last_seen\n");
    ingest(
        &server,
        &creds,
        &[event("c1", NODE_A, "2001:db8::2", "SSH", b""), event("c2", NODE_A, "2001:db8::2", "SSH", b"x")],
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = get(&csv_url, &creds.api_id, &creds.threat_key).text().unwrap();
        if text != "remote_host,count,last_seen\n" {
            assert_eq!(text, format!("remote_host,count,last_seen\n2001:db8::2,2,{}\n", today()));
            break;
        }
        assert!(Instant::now() < deadline, "new events must show in bad hosts within 5 seconds");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, body) = get_json(&format!("{}/bad-hosts?format=xml", server.api()), &creds.api_id, &creds.threat_key);
    assert_eq!(status, 400);
    assert!(body["status"].as_str().unwrap().contains("format"));
}

#[test]
fn tenants_never_see_each_others_data() {
    let dir = tempfile::tempdir().unwrap();
    let alice = create_account(dir.path(), "alice", &["--quota", "unlimited"]);
    let bob = create_account(dir.path(), "bob", &["--quota", "unlimited"]);
    let server = Server::start(dir.path());
    ingest(&server, &alice, &[event("x", NODE_A, "1.1.1.1", "SSH", b"alice")]);
    // Bob uses the same event and node ids: still his own event.
    ingest(
        &server,
        &bob,
        &[event("x", NODE_B, "2.2.2.2", "Telnet", b"bob"), event("x", NODE_A, "2.2.2.2", "SSH", b"")],
    );
    let day = today();
    for (who, mine, theirs) in [(&alice, "1.1.1.1", "2.2.2.2"), (&bob, "2.2.2.2", "1.1.1.1")] {
        let q = |path: &str| get_json(&format!("{}{path}", server.api()), &who.api_id, &who.threat_key).1.to_string();
        for path in
            ["/bad-hosts/mydata", "/bad-hosts/ssh/mydata", &format!("/sensor-data/mydata?sensor-data-date={day}")]
        {
            let body = q(path);
            assert!(
                body.contains(mine) || path.contains("ssh") && mine == "2.2.2.2" || path.contains("ssh"),
                "{path}: {body}"
            );
            assert!(!body.contains(theirs), "{path} leaks: {body}");
        }
        // Community accounts cannot read everyone's raw events.
        let (status, _) =
            get_json(&format!("{}/sensor-data?sensor-data-date={day}", server.api()), &who.api_id, &who.threat_key);
        assert_eq!(status, 403);
        assert_eq!(
            get_json(
                &format!("{}/sensor-data/count?sensor-data-date={day}", server.api()),
                &who.api_id,
                &who.threat_key
            )
            .0,
            403
        );
    }
    let count = |c: &Creds| {
        get_json(&format!("{}/sensor-data/count/mydata?sensor-data-date={day}", server.api()), &c.api_id, &c.threat_key)
            .1
    };
    assert_eq!(count(&alice), json!([{"sensor_data_count": "1"}]));
    assert_eq!(count(&bob), json!([{"sensor_data_count": "2"}]));
    let nodes = |c: &Creds| get_json(&format!("{}/nodes/mydata", server.api()), &c.api_id, &c.threat_key).1;
    assert_eq!(nodes(&alice).as_array().unwrap().len(), 1);
    assert_eq!(nodes(&bob).as_array().unwrap().len(), 2);
    // The shared feeds see everyone.
    let all = get_json(&format!("{}/bad-hosts", server.api()), &alice.api_id, &alice.threat_key).1.to_string();
    assert!(all.contains("1.1.1.1") && all.contains("2.2.2.2"));
}

#[test]
fn paging_neither_skips_nor_repeats_while_events_arrive() {
    let (_dir, server, creds) = setup();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (api, id, key, stop) = (server.api(), creds.api_id.clone(), creds.sensor_key.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) || n < 3000 {
                let batch: String = (0..250)
                    .map(|i| format!("{}\n", event(&format!("p{}", n + i), NODE_A, "3.3.3.3", "SSH", b"x")))
                    .collect();
                let r = client()
                    .post(format!("{api}/sensor/events"))
                    .header("X-HoneyDb-ApiId", &id)
                    .header("X-HoneyDb-ApiKey", &key)
                    .body(batch)
                    .send()
                    .unwrap();
                assert_eq!(r.status(), 200);
                n += 250;
            }
            n
        })
    };
    let day = today();
    let mut seen = Vec::new();
    let mut from = 0i64;
    let mut idle_pages = 0;
    loop {
        let (_, page) = get_json(
            &format!("{}/sensor-data?sensor-data-date={day}&from-id={from}", server.api()),
            &creds.api_id,
            &creds.threat_key,
        );
        let data = page[0]["data"].as_array().unwrap();
        assert!(data.len() <= 1000);
        if data.is_empty() {
            assert_eq!(page[1]["from_id"], json!(0));
            if stop.load(Ordering::Relaxed) {
                idle_pages += 1;
                if idle_pages > 1 {
                    break;
                }
            }
            stop.store(true, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        for e in data {
            seen.push(e["date_time"].as_str().unwrap().to_owned());
        }
        from = page[1]["from_id"].as_str().unwrap().parse().unwrap();
        if stop.load(Ordering::Relaxed) && writer.is_finished() {
            idle_pages = 0;
        }
    }
    let written = writer.join().unwrap();
    // Drain what arrived after the writer stopped.
    loop {
        let (_, page) = get_json(
            &format!("{}/sensor-data?sensor-data-date={day}&from-id={from}", server.api()),
            &creds.api_id,
            &creds.threat_key,
        );
        let data = page[0]["data"].as_array().unwrap();
        if data.is_empty() {
            break;
        }
        seen.extend(data.iter().map(|e| e["date_time"].as_str().unwrap().to_owned()));
        from = page[1]["from_id"].as_str().unwrap().parse().unwrap();
    }
    assert_eq!(seen.len(), written, "every event exactly once");
}
