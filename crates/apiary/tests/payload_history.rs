//! Payload history and CVE sightings end to end: real clients (curl, nmap's
//! scripts, redis-cli, dig) attack `apiary up`'s sensor on loopback, the
//! sensor ships the events to the platform, ingest extracts attributes and
//! matches CVE signatures, and the HoneyDB routes (and the official Python
//! client) serve them.

mod support;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

/// A client tool, which CI installs (scripts/install-test-deps).
fn tool(name: &str) -> Command {
    let mut c = Command::new(name);
    c.stdout(Stdio::null()).stderr(Stdio::null());
    c
}

fn md5(s: &str) -> String {
    apiary_model::md5_hex(s.as_bytes())
}

struct Up {
    child: std::process::Child,
    api: String,
    id: String,
    key: String,
    http: u16,
    redis: u16,
    dns: u16,
    ssh: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Up {
    fn start() -> Up {
        let dir = tempfile::tempdir().unwrap();
        let (api_port, http, redis, dns, ssh) = (free_port(), free_port(), free_port(), free_port(), free_port());
        let sensor_toml = dir.path().join("sensor.toml");
        std::fs::write(
            &sensor_toml,
            format!(
                "state_dir = \"{}\"\n[delivery]\nstart_jitter_ms = 0\nflush_interval_ms = 200\n\
                 [services.http]\nport = {http}\n[services.redis]\nport = {redis}\n[services.dns]\nport = {dns}\n\
                 [services.ssh]\nport = {ssh}\n",
                dir.path().join("sensor").display()
            ),
        )
        .unwrap();
        let child = Command::new(BIN)
            .args(["--data-dir", dir.path().to_str().unwrap(), "up", "--listen", &format!("127.0.0.1:{api_port}")])
            .args(["--sensor-config", sensor_toml.to_str().unwrap()])
            .env("APIARY_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let creds_path = dir.path().join("credentials.json");
        eventually(30, "apiary up to start", || {
            creds_path.exists() && reqwest::blocking::get(format!("http://127.0.0.1:{api_port}/health")).is_ok()
        });
        let creds: Value = serde_json::from_slice(&std::fs::read(creds_path).unwrap()).unwrap();
        Up {
            child,
            api: format!("http://127.0.0.1:{api_port}/api"),
            id: creds["api_id"].as_str().unwrap().to_owned(),
            key: creds["threat_key"].as_str().unwrap().to_owned(),
            http,
            redis,
            dns,
            ssh,
            _dir: dir,
        }
    }

    fn get(&self, path: &str) -> (u16, Value) {
        get_json(&format!("{}{path}", self.api), &self.id, &self.key)
    }

    fn curl(&self, args: &[&str]) {
        let url = format!("http://127.0.0.1:{}", self.http);
        let args: Vec<String> = args.iter().map(|a| a.replace("{base}", &url)).collect();
        let deadline = Instant::now() + Duration::from_secs(20);
        // The sensor's HTTP service may still be binding on the first call.
        while !tool("curl").args(["-s", "-o", "/dev/null", "--path-as-is"]).args(&args).status().unwrap().success() {
            assert!(Instant::now() < deadline, "curl {args:?} never got an answer");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn values_of(rows: &Value, attribute: &str) -> BTreeSet<String> {
    rows.as_array()
        .unwrap()
        .iter()
        .filter(|r| r["attribute"] == attribute)
        .map(|r| r["value"].as_str().unwrap().to_owned())
        .collect()
}

fn cves_of(rows: &Value) -> BTreeSet<String> {
    rows.as_array().unwrap().iter().map(|r| r["cve"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn real_clients_to_payload_history_and_cve_sightings() {
    let up = Up::start();
    // Benign traffic first: none of it may be taken for an exploit.
    up.curl(&["-A", "Mozilla/5.0 (apiary-e2e)", "{base}/wp-login.php?redirect_to=%2Fwp-admin"]);
    up.curl(&["{base}/robots.txt"]);
    let redis = up.redis.to_string();
    let out = tool("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &redis, "CONFIG", "SET", "dir", "/var/spool/cron"])
        .status()
        .expect("redis-cli is installed");
    assert!(out.success());
    let dns = up.dns.to_string();
    let out = tool("dig")
        .args(["@127.0.0.1", "-p", &dns, "+tries=1", "+time=2", "apiary-e2e.example.com", "A"])
        .status()
        .expect("dig is installed");
    assert!(out.success());
    // An SSH login and a command (the sensor lets every login into its fake
    // shell by default): encrypted on the wire, so the server learns them
    // from the sensor's INFO events.
    let ssh = up.ssh.to_string();
    let out = tool("sshpass")
        .args(["-p", "Winter2024!", "ssh", "-p", &ssh, "-o", "StrictHostKeyChecking=no"])
        .args(["-o", "UserKnownHostsFile=/dev/null", "-o", "PubkeyAuthentication=no", "-o", "ConnectTimeout=10"])
        .args(["-o", "NumberOfPasswordPrompts=1", "admin@127.0.0.1", "id"])
        .status()
        .expect("sshpass and ssh are installed");
    assert!(out.success(), "ssh into the fake shell");

    // Exploits, each a CVE the signature table knows.
    up.curl(&["-H", "X-Api-Version: ${jndi:ldap://127.0.0.1:1389/a}", "{base}/"]); // Log4Shell
    up.curl(&[
        "-d",
        "<?php echo 1; ?>",
        "{base}/php-cgi/php-cgi.exe?%ADd+allow_url_include%3d1+%ADd+auto_prepend_file%3dphp://input",
    ]); // PHP-CGI argument injection
    let lua = r#"local io_l = package.loadlib("/usr/lib/x86_64-linux-gnu/liblua5.1.so.0", "luaopen_io"); return 1"#;
    let out = tool("redis-cli").args(["-h", "127.0.0.1", "-p", &redis, "EVAL", lua, "0"]).status().unwrap();
    assert!(out.success()); // Redis Lua sandbox escape
    let http = up.http.to_string();
    for script in [
        // `+` runs the script although nmap does not know the port as HTTP.
        "+http-shellshock --script-args uri=/cgi-bin/status",
        "+http-vuln-cve2017-5638 --script-args http-vuln-cve2017-5638.path=/struts2-showcase/",
    ] {
        let mut args = vec!["-Pn", "-n", "-p", &http, "--script"];
        args.extend(script.split(' '));
        args.push("127.0.0.1");
        let out = tool("nmap").args(&args).status().expect("nmap is installed");
        assert!(out.success(), "nmap --script {script}");
    }

    let year = today()[..4].to_owned();
    let month = today()[5..7].to_owned();
    let expected_cves: BTreeSet<String> =
        ["CVE-2021-44228", "CVE-2024-4577", "CVE-2022-0543", "CVE-2014-6271", "CVE-2017-5638"].map(String::from).into();
    let deadline = Instant::now() + Duration::from_secs(30);
    let rows = loop {
        let (status, rows) = up.get(&format!("/payload-history/{year}"));
        assert_eq!(status, 200, "{rows}");
        let (_, cves) = up.get("/cve/ip/127.0.0.1");
        let have_all = values_of(&rows, "domain").contains("apiary-e2e.example.com")
            && values_of(&rows, "password").contains("Winter2024!")
            && values_of(&rows, "http-path").contains("/robots.txt")
            && cves_of(&cves).is_superset(&expected_cves);
        if have_all {
            break rows;
        }
        assert!(Instant::now() < deadline, "payload history incomplete: {rows:#}\ncves: {cves}");
        std::thread::sleep(Duration::from_millis(250));
    };

    // Records: one per (day, service, attribute, value), hash = MD5 of the value.
    let paths = values_of(&rows, "http-path");
    assert!(paths.contains("/wp-login.php") && paths.contains("/php-cgi/php-cgi.exe"), "{paths:?}");
    let wp = rows.as_array().unwrap().iter().find(|r| r["value"] == "/wp-login.php").unwrap();
    assert_eq!(
        wp,
        &json!({"date": today(), "service": "HTTP", "attribute": "http-path", "hash": md5("/wp-login.php"),
                "value": "/wp-login.php", "truncated": false})
    );
    assert!(values_of(&rows, "http-query").contains("redirect_to=%2Fwp-admin"));
    assert!(values_of(&rows, "http-user-agent").contains("Mozilla/5.0 (apiary-e2e)"));
    assert!(values_of(&rows, "http-method").contains("POST"));
    assert!(values_of(&rows, "redis-command").contains("CONFIG SET dir /var/spool/cron"));
    let guess = rows.as_array().unwrap().iter().find(|r| r["value"] == "Winter2024!").unwrap();
    assert_eq!((&guess["service"], &guess["attribute"]), (&json!("SSH"), &json!("password")));
    assert!(values_of(&rows, "username").contains("admin"));
    assert!(rows
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["service"] == "SSH" && r["attribute"] == "shell-command" && r["value"] == "id"));
    let records = rows.as_array().unwrap();
    let mut keys: Vec<_> =
        records.iter().map(|r| (r["service"].to_string(), r["attribute"].to_string(), r["hash"].to_string())).collect();
    let n = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), n, "one record per value per day");
    assert!(records.iter().all(|r| r["date"] == today()));

    // The same records by month (both spellings), service, and hash. The
    // sensor may still be delivering the clients' last events, so later
    // answers hold at least what the year's answer held.
    for m in [month.as_str(), month.trim_start_matches('0')] {
        let (_, by_month) = up.get(&format!("/payload-history/{year}/{m}"));
        let by_month = by_month.as_array().unwrap();
        assert!(records.iter().all(|r| by_month.contains(r)), "month {m}: {by_month:#?}");
        assert!(by_month.iter().all(|r| r["date"] == today()));
    }
    let (_, http_rows) = up.get("/payload-history/http");
    assert!(http_rows.as_array().unwrap().iter().all(|r| r["service"] == "HTTP"));
    assert!(values_of(&http_rows, "http-path").contains("/wp-login.php"));
    let (_, by_hash) = up.get(&format!("/payload-history/{}", md5("/wp-login.php")));
    assert_eq!(by_hash, json!([wp]));
    let (_, services) = up.get("/payload-history/services");
    for s in ["HTTP", "Redis", "DNS.udp", "SSH"] {
        assert!(services.as_array().unwrap().contains(&json!(s)), "{services}");
    }

    // Who sent what.
    let (_, hosts) = up.get(&format!("/payload-history/{}/remote-hosts/{year}", md5("/wp-login.php")));
    assert_eq!(hosts, json!([{"date": today(), "remote_host": "127.0.0.1"}]));
    let (_, hosts) = up.get("/payload-history/remote-hosts");
    assert_eq!(hosts, json!({ year.clone(): ["127.0.0.1"] }));
    let (_, hashes) = up.get("/payload-history/remote-hosts/127.0.0.1");
    assert!(hashes.as_array().unwrap().contains(&json!({"date": today(), "hash": md5("/wp-login.php")})));
    let (_, none) = up.get("/payload-history/remote-hosts/192.0.2.1");
    assert_eq!(none, json!([]));

    // Attributes.
    let (_, names) = up.get("/payload-history/attributes");
    for name in ["http-path", "http-user-agent", "sip-method", "domain", "remote-frame-buffer", "redis-command"] {
        assert!(names.as_array().unwrap().contains(&json!(name)), "{names}");
    }
    let (_, agents) = up.get("/payload-history/attributes/http-user-agent");
    assert!(agents.as_array().unwrap().contains(
        &json!({"hash": md5("Mozilla/5.0 (apiary-e2e)"), "value": "Mozilla/5.0 (apiary-e2e)", "truncated": false})
    ));
    let (_, domains) = up.get("/payload-history/attributes/domain");
    assert_eq!(domains.as_array().unwrap().iter().filter(|d| d["value"] == "apiary-e2e.example.com").count(), 1);

    // CVE sightings: exactly the exploits sent, nothing for the benign requests.
    let (_, cves) = up.get("/cve/ip/127.0.0.1");
    let found = cves_of(&cves);
    let allowed: BTreeSet<String> = expected_cves.iter().cloned().chain(["CVE-2014-7169".to_owned()]).collect();
    assert!(found.is_subset(&allowed), "unexpected sightings: {found:?}");
    assert!(cves.as_array().unwrap().iter().all(|r| r["date"] == today()));
    let (_, same) = up.get("/ip/127.0.0.1/cve");
    // Later answers hold at least the earlier one's sightings.
    assert!(cves.as_array().unwrap().iter().all(|c| same.as_array().unwrap().contains(c)), "{same} vs {cves}");
    let (_, ip) = up.get("/ip/127.0.0.1");
    assert!(cves.as_array().unwrap().iter().all(|c| ip["cve"].as_array().unwrap().contains(c)), "{ip}");
    let (_, log4shell) = up.get("/cve/cve-2021-44228");
    assert_eq!(log4shell, json!([{"date": today(), "remote_host": "127.0.0.1"}]));
    let (_, unseen) = up.get("/cve/CVE-2019-0708");
    assert_eq!(unseen, json!([]));

    // The official Python client, unmodified.
    run_python_script(
        "honeydb_payload.py",
        &[&up.api, &up.id, &up.key, &today(), &md5("/wp-login.php"), &serde_json::to_string(&found).unwrap()],
    );
}

#[test]
fn bad_segments_and_pages_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let creds = create_account(dir.path(), "reader", &["--role", "all-sensors"]);
    let get = |path: &str| get_json(&format!("{}{path}", server.api()), &creds.api_id, &creds.threat_key);
    for (path, status) in [
        ("/payload-history/2026/13", 400),
        ("/payload-history/2026/004", 400),
        ("/payload-history/not%20a%20service", 400),
        ("/payload-history/HTTP/extra", 400),
        ("/payload-history/remote-hosts/not-an-ip", 400),
        ("/payload-history/0123456789abcdef0123456789abcdef/remote-hosts/26", 400),
        ("/payload-history/xyz/remote-hosts/2026", 400),
        ("/payload-history/0123456789abcdef0123456789abcdef/other/2026", 404),
        ("/payload-history/2026?limit=0", 400),
        ("/payload-history/2026?limit=10001", 400),
        ("/payload-history/2026?offset=-1", 400),
        ("/cve/log4shell", 400),
        ("/cve/ip/999.1.1.1", 400),
    ] {
        let (got, body) = get(path);
        assert_eq!(got, status, "{path}: {body}");
        assert!(body["status"].as_str().is_some_and(|s| !s.is_empty()), "{path}: {body}");
    }
    for path in [
        "/payload-history/2026",
        "/payload-history/HTTP",
        "/payload-history/attributes/nonexistent",
        "/cve/CVE-2021-44228",
    ] {
        assert_eq!(get(path), (200, json!([])), "{path}");
    }
    assert_eq!(get("/payload-history/remote-hosts"), (200, json!({})));
}

#[test]
fn long_lists_are_paged_and_long_values_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let sensor = create_account(dir.path(), "sensor", &[]);
    // 30 distinct paths from one host, and one path far over the size limit.
    let mut events: Vec<Value> = (0..30)
        .map(|i| {
            let req = format!("GET /probe-{i:02} HTTP/1.1\r\nHost: 192.0.2.10\r\n\r\n");
            event(&format!("p{i}"), NODE_A, "198.51.100.7", "HTTP", req.as_bytes())
        })
        .collect();
    let long_path = format!("/{}", "A".repeat(5000));
    let req = format!("GET {long_path} HTTP/1.1\r\nHost: 192.0.2.10\r\n\r\n");
    events.push(event("long", NODE_A, "198.51.100.7", "HTTP", req.as_bytes()));
    let (status, body) = ingest(&server, &sensor, &events);
    assert_eq!(status, 200, "{body}");
    // Re-delivery adds nothing.
    let (status, body) = ingest(&server, &sensor, &events);
    assert_eq!((status, body["duplicates"].as_u64()), (200, Some(31)));

    let year = &today()[..4];
    let url = |q: &str| format!("{}/payload-history/attributes/http-path{q}", server.api());
    let r = get(&url("?limit=10"), &sensor.api_id, &sensor.threat_key);
    let link = r.headers().get("link").expect("a next link").to_str().unwrap().to_owned();
    assert_eq!(link, "</api/payload-history/attributes/http-path?offset=10&limit=10>; rel=\"next\"");
    let first: Value = r.json().unwrap();
    assert_eq!(first.as_array().unwrap().len(), 10);
    assert_eq!(first[0]["value"], "/probe-00");
    let mut all = Vec::new();
    let mut offset = 0;
    loop {
        let r = get(&url(&format!("?offset={offset}&limit=10")), &sensor.api_id, &sensor.threat_key);
        let more = r.headers().contains_key("link");
        let page: Value = r.json().unwrap();
        all.extend(page.as_array().unwrap().iter().cloned());
        offset += 10;
        if !more {
            break;
        }
    }
    assert_eq!(all.len(), 31);
    let long = all.iter().find(|v| v["truncated"] == true).expect("the long path is kept, flagged");
    let kept = long["value"].as_str().unwrap();
    assert!(kept.len() < long_path.len() && long_path.starts_with(kept));
    assert_eq!(long["hash"], md5(kept));
    // The year's records hold each value once however often it was sent.
    let (_, rows) = get_json(&format!("{}/payload-history/{year}", server.api()), &sensor.api_id, &sensor.threat_key);
    assert_eq!(values_of(&rows, "http-path").len(), 31);
    let (_, hosts) = get_json(
        &format!("{}/payload-history/remote-hosts/198.51.100.7?limit=5", server.api()),
        &sensor.api_id,
        &sensor.threat_key,
    );
    assert_eq!(hosts.as_array().unwrap().len(), 5);
}
