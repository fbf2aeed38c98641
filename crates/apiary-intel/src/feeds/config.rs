//! Feed configuration (serde, TOML friendly).
//!
//! ```toml
//! state_dir = "/var/lib/apiary/intel"
//! min_ratio = 0.5
//!
//! [[feeds]]
//! name = "ciarmy"
//! kind = "plain_list"
//! url = "https://cinsscore.com/list/ci-badguys.txt"
//! refresh_secs = 3600
//!
//! [[feeds]]
//! name = "geolite2-city"
//! kind = "geo_mmdb"
//! path = "/var/lib/GeoIP/GeoLite2-City.mmdb"
//! ```

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The format of a feed, which decides its parser and its role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedKind {
    /// ip-location-db `asn-ipv4.csv` / `asn-ipv6.csv`.
    AsnCsv,
    /// iptoasn `ip2asn-*.tsv`.
    AsnTsv,
    /// MaxMind-format ASN database (GeoLite2-ASN).
    AsnMmdb,
    /// MaxMind-format City/Country database, GeoIP2 or flat ip-location-db schema.
    GeoMmdb,
    /// Team Cymru full bogons (adds to the built-in IANA bogons).
    TeamCymruBogons,
    /// Tor `torbulkexitlist`.
    TorBulkExitList,
    /// TorDNSEL `exit-addresses`.
    TorExitAddresses,
    /// Generic list: one IP/CIDR/range a line, `#`/`;` comments (FireHOL ipset/netset too).
    PlainList,
    /// ThreatFox CSV export.
    ThreatfoxCsv,
    /// Spamhaus DROP (`drop.txt` or NDJSON `drop_v4.json`).
    SpamhausDrop,
    /// DShield `block.txt`.
    DshieldBlock,
    /// AWS `ip-ranges.json`.
    AwsIpRanges,
    /// Azure Service Tags JSON (Public, China, US Government, Germany).
    AzureServiceTags,
    /// Google Cloud `cloud.json`.
    GcpCloudJson,
    /// IBM Cloud `ips.md` documentation page.
    IbmIpsMarkdown,
    /// Oracle Cloud `public_ip_ranges.json`.
    OracleIpRanges,
    /// Cloudflare `ips-v4` / `ips-v6`.
    CloudflareIps,
    /// MISP warning list `list.json` of an internet scanner.
    MispWarningList,
}

impl FeedKind {
    /// Whether the content is binary (MMDB), which changes error-page sniffing.
    pub fn is_binary(self) -> bool {
        matches!(self, FeedKind::AsnMmdb | FeedKind::GeoMmdb)
    }

    /// Whether the feed is an IP list that goes into a threat list (or the
    /// `tor`/`bogon` sets, see [`FeedConfig::list`]).
    pub fn is_list(self) -> bool {
        matches!(self, FeedKind::PlainList | FeedKind::ThreatfoxCsv | FeedKind::SpamhausDrop | FeedKind::DshieldBlock)
    }
}

fn default_refresh() -> u64 {
    86_400
}

fn default_true() -> bool {
    true
}

fn default_ratio() -> f64 {
    0.5
}

/// One feed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedConfig {
    /// Unique name; also the file name of its last good copy, so limited to
    /// `[A-Za-z0-9._-]`.
    pub name: String,
    /// Format.
    pub kind: FeedKind,
    /// Local file to read.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// URL to fetch (through the configured [`crate::Fetcher`]); `path` wins if both are set.
    #[serde(default)]
    pub url: Option<String>,
    /// Refresh interval in seconds (default one day).
    #[serde(default = "default_refresh")]
    pub refresh_secs: u64,
    /// For list kinds: the threat list this feed fills (default: the feed name).
    /// `tor` and `bogon` are special: they feed `is_tor` and `is_bogon`.
    #[serde(default)]
    pub list: Option<String>,
    /// For cloud kinds: provider key override (default: from the format, or the
    /// Azure file's `cloud` field).
    #[serde(default)]
    pub provider: Option<String>,
    /// For MISP lists: the MISP list directory name used to find the organisation
    /// (`shodan-scanning`; default: the feed name).
    #[serde(default)]
    pub scanner: Option<String>,
    /// Minimum ratio of new to previous entry count (default: the global one).
    #[serde(default)]
    pub min_ratio: Option<f64>,
    /// Disabled feeds are neither loaded nor refreshed.
    #[serde(default = "default_true")]
    pub enabled: bool,
}

impl FeedConfig {
    /// A feed read from a local file (handy for tests and simple setups).
    pub fn file(name: &str, kind: FeedKind, path: impl Into<PathBuf>) -> Self {
        FeedConfig {
            name: name.to_string(),
            kind,
            path: Some(path.into()),
            url: None,
            refresh_secs: default_refresh(),
            list: None,
            provider: None,
            scanner: None,
            min_ratio: None,
            enabled: true,
        }
    }

    /// Sets the threat list this feed fills.
    pub fn with_list(mut self, list: &str) -> Self {
        self.list = Some(list.to_string());
        self
    }

    /// Sets the cloud provider key.
    pub fn with_provider(mut self, provider: &str) -> Self {
        self.provider = Some(provider.to_string());
        self
    }

    /// Sets the MISP scanner list key.
    pub fn with_scanner(mut self, scanner: &str) -> Self {
        self.scanner = Some(scanner.to_string());
        self
    }

    /// The threat list name this feed fills.
    pub fn list_name(&self) -> &str {
        self.list.as_deref().unwrap_or(&self.name)
    }

    /// A printable source reference.
    pub fn source_ref(&self) -> String {
        match (&self.path, &self.url) {
            (Some(p), _) => p.display().to_string(),
            (None, Some(u)) => u.clone(),
            (None, None) => String::new(),
        }
    }

    /// Whether the name is safe as a file name.
    pub fn valid_name(&self) -> bool {
        !self.name.is_empty()
            && !self.name.starts_with('.')
            && self.name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    }
}

/// The intelligence configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntelConfig {
    /// Where last good copies and status files are kept.
    pub state_dir: PathBuf,
    /// Refuse a new copy with fewer than `min_ratio` × the previous entry count.
    #[serde(default = "default_ratio")]
    pub min_ratio: f64,
    /// Feeds, in priority order (earlier ASN/geo sources answer first).
    #[serde(default)]
    pub feeds: Vec<FeedConfig>,
}
