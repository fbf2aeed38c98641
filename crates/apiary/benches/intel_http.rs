//! `/ip/{ip}` over HTTP against the real `apiary` binary, with every fixture
//! intelligence feed loaded, driven by `wrk` (64 connections by default), and
//! the server's memory with and without the intelligence.
//!
//! `cargo bench -p apiary --bench intel_http -- [--seconds 10] [--connections 64] [--threads 2] [--random-addresses]`
//! needs `wrk` (`apt-get install wrk`). Figures: crates/apiary-intel/BENCH-NOTES.md.

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::Command;

use support::*;

/// Addresses the load rotates through: City hits, ASN hits, IPv6, lists, scanners, clouds.
const IPS: &[&str] = &[
    "8.8.8.8",
    "1.1.1.1",
    "81.2.69.160",
    "2001:4860:4860::8888",
    "2001:480:10::1",
    "185.241.208.232",
    "1.11.194.81",
    "184.105.247.194",
    "2606:4700::1111",
    "3.4.12.4",
    "12.81.92.1",
    "203.0.113.9",
    "45.33.32.156",
    "167.94.138.1",
    "198.51.100.7",
    "10.1.2.3",
];

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    ticks / 100.0
}

fn config(dir: &Path) -> String {
    let cfg = feeds_config(3600);
    std::fs::write(dir.join("apiary.toml"), &cfg).unwrap();
    cfg
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seconds = arg(&args, "--seconds", 10);
    let connections = arg(&args, "--connections", 64);
    let threads = arg(&args, "--threads", 2);
    if Command::new("wrk").arg("--version").output().is_err() {
        eprintln!("intel_http needs wrk: apt-get install wrk");
        std::process::exit(2);
    }
    let base_dir = std::env::var("APIARY_BENCH_DIR").unwrap_or_else(|_| "/tmp".into());

    // Memory of a server with no intelligence, for the difference.
    let bare = tempfile::tempdir_in(&base_dir).unwrap();
    let bare_server = Server::start(bare.path());
    std::thread::sleep(std::time::Duration::from_millis(500));
    let bare_rss = kib(bare_server.child.as_ref().unwrap().id(), "VmRSS:");
    drop(bare_server);

    let dir = tempfile::tempdir_in(&base_dir).unwrap();
    let creds = create_account(dir.path(), "bench", &["--quota", "unlimited"]);
    let cfg = config(dir.path());
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir.path())
        .arg("--config")
        .arg(dir.path().join("apiary.toml"))
        .args(["feeds", "update", "--quiet"])
        .env("APIARY_LOG", "warn")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let server = Server::start_with_config(dir.path(), Some(&cfg));
    let pid = server.child.as_ref().unwrap().id();
    // Some history, so `/ip/{ip}` reads the store too.
    let events: Vec<_> =
        IPS.iter().enumerate().map(|(i, ip)| event(&format!("e{i}"), NODE_A, ip, "SSH", b"root")).collect();
    assert_eq!(ingest(&server, &creds, &events).0, 200);
    let (status, body) = get_json(&format!("{}/ip/8.8.8.8", server.api()), &creds.api_id, &creds.threat_key);
    assert_eq!(status, 200);
    assert_eq!(body["missing_sources"], serde_json::json!(["cloud:azure/germany"]), "feeds not loaded");
    let loaded_rss = kib(pid, "VmRSS:");

    let script = dir.path().join("ip.lua");
    let list: Vec<String> = IPS.iter().map(|ip| format!("\"{ip}\"")).collect();
    // `--random-addresses`: a random IPv4 address per request instead of the
    // 16 above, so that nearly every answer misses the per-host cache and
    // reads the store.
    // The 16 requests are formatted once per wrk thread (`init`) and then
    // only cycled: formatting one in Lua per request cost wrk more CPU than
    // the server spent answering it, on the same two cores.
    let request = if args.iter().any(|a| a == "--random-addresses") {
        "return wrk.format(\"GET\", \"/api/ip/\" .. math.random(1, 223) .. \".\" .. math.random(0, 255) \
         .. \".\" .. math.random(0, 255) .. \".\" .. math.random(1, 254))"
    } else {
        "i = i % #reqs + 1\n  return reqs[i]"
    };
    std::fs::write(
        &script,
        format!(
            "wrk.headers[\"X-HoneyDb-ApiId\"] = \"{}\"\nwrk.headers[\"X-HoneyDb-ApiKey\"] = \"{}\"\n\
             local ips = {{{}}}\nlocal reqs = {{}}\nlocal i = 0\n\
             init = function(args)\n  for n, ip in ipairs(ips) do reqs[n] = wrk.format(\"GET\", \"/api/ip/\" .. ip) end\nend\n\
             request = function()\n  {request}\nend\n",
            creds.api_id,
            creds.threat_key,
            list.join(", ")
        ),
    )
    .unwrap();
    let url = format!("{}/api/ip/8.8.8.8", server.root());
    let cmd = format!("wrk -t{threads} -c{connections} -d{seconds}s --latency -s {} {url}", script.display());
    eprintln!("{cmd}");
    let cpu_before = cpu_secs(pid);
    let out = Command::new("wrk")
        .args([
            format!("-t{threads}"),
            format!("-c{connections}"),
            format!("-d{seconds}s"),
            "--latency".into(),
            "-s".into(),
            script.display().to_string(),
            url,
        ])
        .output()
        .unwrap();
    let server_cpu = cpu_secs(pid) - cpu_before;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    println!("{text}");
    assert!(!text.contains("Non-2xx"), "errors during the run");
    let rps = text
        .lines()
        .find(|l| l.starts_with("Requests/sec:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("?")
        .to_string();
    let requests: f64 = text
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(f64::NAN);
    println!(
        "server CPU: {:.2} s, {:.1} CPU-us per request (the figure a busy machine does not distort)",
        server_cpu,
        server_cpu * 1e6 / requests
    );
    println!(
        "intel_http: /ip/{{ip}} {connections} connections, {threads} wrk threads, {seconds} s: {rps} requests/s; \
         server RSS {} MiB idle without intel, {} MiB with every fixture feed loaded, peak {} MiB under load",
        bare_rss / 1024,
        loaded_rss / 1024,
        kib(pid, "VmHWM:") / 1024
    );
}
