//! The command line: help, config precedence, account management errors and
//! bulk ingest.

mod support;

use std::process::Command;

use serde_json::json;
use support::*;

fn run(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).output().unwrap()
}

#[test]
fn help_lists_the_commands() {
    let out = run(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for cmd in ["serve", "account", "ingest"] {
        assert!(text.contains(cmd), "--help mentions {cmd}");
    }
}

#[test]
fn errors_are_readable() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let out = run(&["--data-dir", d, "account", "disable", "0123"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no account with API id"));
    let out = run(&["--data-dir", d, "account", "create", "--name", "x", "--quota", "lots"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--quota"));
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "listen = 5\n").unwrap();
    let out = run(&["--config", bad.to_str().unwrap(), "serve"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.toml"));
    let out = run(&["--data-dir", d, "serve", "--listen", "256.0.0.1:1"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot listen"));
}

#[test]
fn bulk_ingest_reports_bad_lines_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let creds = create_account(dir.path(), "bulk", &["--role", "all-sensors", "--quota", "unlimited"]);
    let file = dir.path().join("events.ndjson");
    let mut text = String::new();
    for i in 0..2500 {
        text.push_str(&format!("{}\n", event(&format!("b{i}"), NODE_A, "7.7.7.7", "FTP", b"USER x")));
        if i == 1000 {
            text.push_str("{\"broken\": true}\n");
        }
    }
    // The last line has no line end.
    std::fs::write(&file, text.trim_end()).unwrap();
    let out = Command::new(BIN)
        .args(["--data-dir", dir.path().to_str().unwrap(), "ingest", file.to_str().unwrap(), "--quiet"])
        .args(["--api-id", &creds.api_id, "--batch", "700"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "partial success is exit 2");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("2500 events stored"), "{stdout}");
    // The broken line is line 1002: the 302nd of the chunk of 700 lines
    // that starts at line 701.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("event 302 of the chunk at line 701: missing field"), "{stderr}");
    // Loading the same file again stores nothing new.
    let out = Command::new(BIN)
        .args(["--data-dir", dir.path().to_str().unwrap(), "ingest", file.to_str().unwrap(), "--quiet"])
        .args(["--api-id", &creds.api_id])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 events stored, 2500 already present"));
    let server = Server::start(dir.path());
    let (_, hosts) = get_json(&format!("{}/bad-hosts/ftp", server.api()), &creds.api_id, &creds.threat_key);
    assert_eq!(hosts, json!([{"remote_host": "7.7.7.7", "count": "2500", "last_seen": today()}]));
    // Payload history too, though a bulk load does not wait for it batch
    // by batch: the FTP payload whole, and the username it carried.
    let url = format!("{}/payload-history/remote-hosts/7.7.7.7", server.api());
    let (_, hashes) = get_json(&url, &creds.api_id, &creds.threat_key);
    let mut hashes: Vec<_> = hashes.as_array().unwrap().iter().map(|h| h["hash"].clone()).collect();
    hashes.sort_by_key(|h| h.to_string());
    let mut expected = [json!(apiary_model::md5_hex(b"USER x")), json!(apiary_model::md5_hex(b"x"))];
    expected.sort_by_key(|h| h.to_string());
    assert_eq!(hashes, expected);
}

#[test]
fn up_creates_an_operator_account_once_with_private_keys() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = Command::new(BIN)
        .args([
            "--data-dir",
            dir.path().to_str().unwrap(),
            "up",
            "--no-sensor",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .env("APIARY_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let creds_path = dir.path().join("credentials.json");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let api = format!("http://127.0.0.1:{port}/api");
    while reqwest::blocking::get(format!("http://127.0.0.1:{port}/health")).is_err() {
        assert!(std::time::Instant::now() < deadline, "apiary up did not start");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let mode = std::fs::metadata(&creds_path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let creds: serde_json::Value = serde_json::from_slice(&std::fs::read(&creds_path).unwrap()).unwrap();
    let (status, _) =
        get_json(&format!("{api}/bad-hosts"), creds["api_id"].as_str().unwrap(), creds["threat_key"].as_str().unwrap());
    assert_eq!(status, 200);
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains(creds["threat_key"].as_str().unwrap()), "keys printed once");
    // A second run reuses the account and prints no keys.
    let out = Command::new(BIN)
        .args(["--data-dir", dir.path().to_str().unwrap(), "up", "--listen", "256.1.1.1:1"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains("First run"));
}

#[test]
fn up_runs_a_sensor_that_reports_to_the_platform() {
    let dir = tempfile::tempdir().unwrap();
    let (api_port, http_port) = (free_port(), free_port());
    let sensor_toml = dir.path().join("sensor.toml");
    std::fs::write(
        &sensor_toml,
        format!(
            "state_dir = \"{}\"\n[delivery]\nstart_jitter_ms = 0\nflush_interval_ms = 200\n[services.http]\nport = {http_port}\n",
            dir.path().join("sensor").display()
        ),
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args(["--data-dir", dir.path().to_str().unwrap(), "up", "--listen", &format!("127.0.0.1:{api_port}")])
        .args(["--sensor-config", sensor_toml.to_str().unwrap()])
        .env("APIARY_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    // An attacker's request to the sensor's HTTP service, by curl.
    loop {
        let out = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-A",
                "apiary-test-agent",
                &format!("http://127.0.0.1:{http_port}/wp-login.php"),
            ])
            .status()
            .expect("curl is installed (scripts/install-test-deps)");
        if out.success() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "sensor HTTP did not come up");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let creds: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("credentials.json")).unwrap()).unwrap();
    let (id, key) = (creds["api_id"].as_str().unwrap(), creds["threat_key"].as_str().unwrap());
    let url = format!("http://127.0.0.1:{api_port}/api/bad-hosts/HTTP");
    loop {
        let (_, hosts) = get_json(&url, id, key);
        if hosts.as_array().is_some_and(|h| !h.is_empty()) {
            assert_eq!(hosts[0]["remote_host"], "127.0.0.1");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the sensor's events did not reach the platform");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let day = today();
    let (_, page) =
        get_json(&format!("http://127.0.0.1:{api_port}/api/sensor-data/mydata?sensor-data-date={day}"), id, key);
    let kinds: std::collections::HashSet<_> =
        page[0]["data"].as_array().unwrap().iter().map(|e| e["event"].as_str().unwrap().to_owned()).collect();
    assert!(kinds.contains("CONNECT") && kinds.contains("RX"), "{kinds:?}");
    child.kill().unwrap();
    child.wait().unwrap();
}
