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
    std::fs::write(&file, &text).unwrap();
    let out = Command::new(BIN)
        .args(["--data-dir", dir.path().to_str().unwrap(), "ingest", file.to_str().unwrap(), "--quiet"])
        .args(["--api-id", &creds.api_id, "--batch", "700"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "partial success is exit 2");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("2500 events stored"), "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing field"));
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
}

#[test]
fn up_creates_an_operator_account_once_with_private_keys() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = Command::new(BIN)
        .args(["--data-dir", dir.path().to_str().unwrap(), "up", "--listen", &format!("127.0.0.1:{port}")])
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
