//! Test harness: runs the real `apiary` binary on a loopback port with its
//! own data directory, and talks to it over HTTP.
#![allow(dead_code)]

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_apiary");

pub struct Creds {
    pub api_id: String,
    pub threat_key: String,
    pub sensor_key: String,
}

/// Runs `apiary` with the data directory and returns stdout, failing the
/// test on a non-zero exit.
pub fn apiary(data_dir: &Path, args: &[&str]) -> String {
    let out = Command::new(BIN).arg("--data-dir").arg(data_dir).args(args).output().expect("run apiary");
    assert!(out.status.success(), "apiary {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8 output")
}

pub fn create_account(data_dir: &Path, name: &str, extra: &[&str]) -> Creds {
    let mut args = vec!["account", "create", "--name", name, "--json"];
    args.extend_from_slice(extra);
    let v: Value = serde_json::from_str(&apiary(data_dir, &args)).expect("json");
    let c = &v["credentials"];
    Creds {
        api_id: c["api_id"].as_str().unwrap().into(),
        threat_key: c["threat_key"].as_str().unwrap().into(),
        sensor_key: c["sensor_key"].as_str().unwrap().into(),
    }
}

/// A port free now and never handed out before in this process. The
/// operating system may offer a port again once its listener is closed, and
/// tests run side by side: two servers given one port, the second fails to
/// bind while the first answers its health check, and its test talks to
/// another test's server.
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if !handed_out.contains(&port) {
            handed_out.push(port);
            return port;
        }
    }
}

pub struct Server {
    pub dir: PathBuf,
    pub port: u16,
    pub child: Option<Child>,
    config: Option<PathBuf>,
}

impl Server {
    /// Starts a server on a fresh data directory inside `dir`.
    pub fn start(dir: &Path) -> Server {
        Self::start_with_config(dir, None)
    }

    pub fn start_with_config(dir: &Path, config: Option<&str>) -> Server {
        let config = config.map(|text| {
            let path = dir.join("apiary.toml");
            std::fs::File::create(&path).unwrap().write_all(text.as_bytes()).unwrap();
            path
        });
        let mut s = Server { dir: dir.to_path_buf(), port: 0, child: None, config };
        s.restart();
        s
    }

    pub fn restart(&mut self) {
        self.kill9();
        self.port = free_port();
        let mut cmd = Command::new(BIN);
        cmd.arg("--data-dir").arg(&self.dir);
        if let Some(c) = &self.config {
            cmd.arg("--config").arg(c);
        }
        let child = cmd
            .args(["serve", "--listen", &format!("127.0.0.1:{}", self.port)])
            .env("APIARY_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn apiary serve");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = reqwest::blocking::get(format!("{}/health", self.root())) {
                if r.status().is_success() {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "server did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn root(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn api(&self) -> String {
        format!("{}/api", self.root())
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        Command::new("kill").arg("-TERM").arg(c.id().to_string()).status().unwrap();
        c.wait().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().timeout(Duration::from_secs(60)).build().unwrap()
}

pub fn get(url: &str, id: &str, key: &str) -> reqwest::blocking::Response {
    client().get(url).header("X-HoneyDb-ApiId", id).header("X-HoneyDb-ApiKey", key).send().unwrap()
}

pub fn get_json(url: &str, id: &str, key: &str) -> (u16, Value) {
    let r = get(url, id, key);
    let status = r.status().as_u16();
    (status, r.json().expect("JSON body"))
}

pub const NODE_A: &str = "3386e49be694e179a429344f745703d6";
pub const NODE_B: &str = "aaaabbbbccccddddeeeeffff00001111";

/// One valid event dated now, from `host` to `service`.
pub fn event(id: &str, node: &str, host: &str, service: &str, data: &[u8]) -> Value {
    let now = chrono_now();
    serde_json::json!({
        "id": id, "node": node, "session": "0f0e6d5c-1111-4aaa-8bbb-123456789abc",
        "date": now.0, "time": now.1, "millisecond": "123",
        "protocol": "TCP", "event": if data.is_empty() { "CONNECT" } else { "RX" }, "service": service,
        "local_host": "10.0.0.1", "local_port": 22, "remote_host": host, "remote_port": 40000,
        "data": hex(data),
    })
}

fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn today() -> String {
    chrono_now().0
}

fn chrono_now() -> (String, String) {
    let now = chrono::Utc::now();
    (now.format("%Y-%m-%d").to_string(), now.format("%H:%M:%S").to_string())
}

/// POSTs events as NDJSON with the sensor key; returns status and body.
pub fn ingest(server: &Server, creds: &Creds, events: &[Value]) -> (u16, Value) {
    ingest_ndjson(server, creds, events.iter().map(|e| format!("{e}\n")).collect())
}

/// POSTs an NDJSON body as it is with the sensor key; returns status and body.
pub fn ingest_ndjson(server: &Server, creds: &Creds, body: String) -> (u16, Value) {
    let r = client()
        .post(format!("{}/sensor/events", server.api()))
        .header("X-HoneyDb-ApiId", &creds.api_id)
        .header("X-HoneyDb-ApiKey", &creds.sensor_key)
        .header("Content-Type", "application/x-ndjson")
        .body(body)
        .send()
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap())
}

/// Polls `check` until it holds, for at most `secs` seconds.
pub fn eventually(secs: u64, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check() {
        assert!(Instant::now() < deadline, "{what} did not happen within {secs} s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A fixture file of `../shared/fixtures`.
pub fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures").join(rel)
}

/// `(name, kind, fixture, extra TOML lines)` of every fixture feed. ASN and geo
/// feeds answer in this order.
pub const FIXTURE_FEEDS: &[(&str, &str, &str, &str)] = &[
    ("asn-v4", "asn_csv", "geo/ip-location-db-asn/asn-ipv4.subset.csv", ""),
    ("asn-v6", "asn_csv", "geo/ip-location-db-asn/asn-ipv6.subset.csv", ""),
    ("iptoasn", "asn_tsv", "feeds/iptoasn/ip2asn-v4.tsv.head", ""),
    ("geolite2-asn", "asn_mmdb", "geo/maxmind/test-data/GeoLite2-ASN-Test.mmdb", ""),
    ("city", "geo_mmdb", "geo/maxmind/test-data/GeoIP2-City-Test.mmdb", ""),
    ("country", "geo_mmdb", "geo/ip-location-db-geo-whois-asn-country/geo-whois-asn-country-ipv4.mmdb", ""),
    ("cymru", "team_cymru_bogons", "feeds/team-cymru/fullbogons-ipv4.txt", ""),
    ("tor-bulk", "tor_bulk_exit_list", "feeds/tor/torbulkexitlist", ""),
    ("tor-dnsel", "tor_exit_addresses", "feeds/tor/exit-addresses.subset", ""),
    ("dshield", "dshield_block", "feeds/dshield/block.txt", "list = \"sansip\""),
    ("ciarmy", "plain_list", "feeds/ciarmy/ci-badguys.txt.head", ""),
    ("et-compromised", "plain_list", "feeds/emergingthreats/compromised-ips.txt", ""),
    ("project-honeypot", "plain_list", "feeds/firehol/spamhaus_drop.netset.head", ""),
    ("pallebone", "plain_list", "feeds/pallebone/BlockIP.txt.subset", ""),
    ("threatfox", "threatfox_csv", "feeds/threatfox/threatfox-full-export.excerpt.csv", ""),
    ("blocklist_net_ua", "plain_list", "feeds/blocklist-de/all.txt.subset", ""),
    ("aws", "aws_ip_ranges", "feeds/cloud/aws/ip-ranges.subset.json", ""),
    ("azure", "azure_service_tags", "feeds/cloud/azure/ServiceTags_Public_20251020.subset.json", ""),
    ("azure-china", "azure_service_tags", "feeds/cloud/azure/ServiceTags_China_20251020.subset.json", ""),
    ("azure-gov", "azure_service_tags", "feeds/cloud/azure/ServiceTags_AzureGovernment_20251020.subset.json", ""),
    ("gcp", "gcp_cloud_json", "feeds/cloud/gcp/cloud.json", ""),
    ("ibm", "ibm_ips_markdown", "feeds/cloud/ibm/ips.md", ""),
    ("oracle", "oracle_ip_ranges", "feeds/cloud/oracle/public_ip_ranges.subset.json", ""),
    ("cloudflare-v4", "cloudflare_ips", "feeds/cloud/cloudflare/ips-v4", ""),
    ("cloudflare-v6", "cloudflare_ips", "feeds/cloud/cloudflare/ips-v6", ""),
    ("shadowserver-nt-scanning", "misp_warning_list", "feeds/misp-warninglists/shadowserver-nt-scanning.json", ""),
    ("censys-scanning", "misp_warning_list", "feeds/misp-warninglists/censys-scanning.json", ""),
    ("shodan-scanning", "misp_warning_list", "feeds/misp-warninglists/shodan-scanning.json", ""),
];

pub fn feed_toml(name: &str, kind: &str, path: &Path, extra: &str) -> String {
    format!(
        "\n[[intel.feeds]]\nname = \"{name}\"\nkind = \"{kind}\"\npath = {:?}\n{extra}\n",
        path.display().to_string()
    )
}

/// An `[intel]` config loading every fixture feed.
pub fn feeds_config(check_secs: u64) -> String {
    let mut cfg = format!("[intel]\ncheck_secs = {check_secs}\n");
    for (name, kind, rel, extra) in FIXTURE_FEEDS {
        cfg += &feed_toml(name, kind, &fixture(rel), extra);
    }
    cfg
}

/// Runs a script of `tests/python` that drives the official `honeydb`
/// client, failing the test with its output if it fails. Without the
/// package the test fails too, unless APIARY_SKIP_PYTHON is set.
pub fn run_python_script(script: &str, args: &[&str]) {
    let probe = Command::new("python3").args(["-c", "import honeydb"]).output();
    if !matches!(&probe, Ok(o) if o.status.success()) {
        assert!(
            std::env::var_os("APIARY_SKIP_PYTHON").is_some(),
            "the `honeydb` Python package is missing: `pip install honeydb` (or set APIARY_SKIP_PYTHON=1)"
        );
        eprintln!("skipping: honeydb not installed and APIARY_SKIP_PYTHON is set");
        return;
    }
    let path = format!("{}/tests/python/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("python3").arg(&path).args(args).output().expect("run python3");
    assert!(
        out.status.success(),
        "python client failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
