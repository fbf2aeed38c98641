//! Runs the official HoneyDB Python client (`pip install honeydb`),
//! unmodified, against a real server: only its base URL changes.

mod support;

use serde_json::json;
use support::*;

#[test]
fn official_python_client_works_against_apiary() {
    let dir = tempfile::tempdir().unwrap();
    let creds = create_account(dir.path(), "analyst", &["--role", "all-sensors", "--quota", "unlimited"]);
    let server = Server::start(dir.path());
    let mut info = event("i1", NODE_A, "198.51.100.7", "SSH", b"{\"username\":\"root\",\"password\":\"123456\"}");
    info["event"] = json!("INFO");
    let events = vec![
        event("c1", NODE_A, "198.51.100.7", "SSH", b""),
        event("r1", NODE_A, "198.51.100.7", "SSH", b"SSH-2.0-libssh\r\n"),
        info,
        event("t1", NODE_A, "2001:db8::66", "Telnet", b""),
    ];
    assert_eq!(ingest(&server, &creds, &events).0, 200);
    // Bad hosts are cached for up to two seconds; wait until they are in.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while get_json(&format!("{}/bad-hosts", server.api()), &creds.api_id, &creds.threat_key).1.as_array().unwrap().len()
        < 2
    {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    run_python_script(
        "honeydb_compat.py",
        &[&server.api(), &creds.api_id, &creds.threat_key, &creds.sensor_key, &today()],
    );
}
