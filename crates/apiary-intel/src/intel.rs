//! The immutable intelligence snapshot and its builder.
//!
//! An [`Intel`] is built once from parsed sources and never mutated: lookups take
//! `&self`, need no locks, and return answers that borrow from it (no allocation on
//! the common path). When a feed changes, the feed manager builds a new `Intel`
//! and swaps the `Arc` atomically, so a request sees either the old or the new
//! data, never a mix.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use serde::Serialize;

use crate::net::{canonical, IpRange, NetInfo};
use crate::parse::asn::AsnRow;
use crate::parse::cloud::{CloudData, CloudPrefix};
use crate::parse::iana::{self, Reachability, SpecialBlock};
use crate::parse::misp::WarningList;
pub use crate::parse::mmdb::Geo;
use crate::parse::mmdb::GeoDb;
use crate::scanners::{known_scanner, ScannerInfo};
use crate::table::{IpSet, IpTable};

/// The threat-list names of the HoneyDB `/ipinfo` contract, in its order.
pub const STANDARD_THREAT_LISTS: [&str; 7] =
    ["sansip", "ciarmy", "et-compromised", "project-honeypot", "pallebone", "threatfox", "blocklist_net_ua"];

/// The cloud providers of the `/datacenter/{provider}` contract.
pub const STANDARD_CLOUD_PROVIDERS: [&str; 9] =
    ["aws", "azure", "azure/china", "azure/germany", "azure/gov", "cloudflare", "gcp", "ibm", "oracle"];

/// ASN answer for one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AsnInfo<'a> {
    /// AS number.
    pub asn: u32,
    /// AS name as the source spells it for this range (falls back to the AS's
    /// first non-empty name; may be empty).
    pub name: &'a str,
    /// The routed prefix the address falls in: the largest CIDR inside the
    /// source's range that contains the address.
    pub network: IpNet,
}

impl AsnInfo<'_> {
    /// Netmask, broadcast, hostmask and size of [`AsnInfo::network`].
    pub fn netinfo(&self) -> NetInfo {
        NetInfo::of(self.network)
    }
}

/// Internet-scanner answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ScannerHit<'a> {
    /// The configured list (MISP directory name, e.g. `shodan-scanning`).
    pub list: &'a str,
    /// The organisation.
    pub info: &'a ScannerInfo,
}

/// Cloud answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CloudHit<'a> {
    /// Provider key (`aws`, `azure/china`, ...).
    pub provider: &'a str,
    /// The most specific published prefix containing the address.
    pub prefix: &'a CloudPrefix,
}

/// Everything known about one address.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Enrichment<'a> {
    /// The address asked about (IPv4-mapped IPv6 is reported as IPv4).
    pub ip: IpAddr,
    /// ASN, name and routed prefix.
    pub asn: Option<AsnInfo<'a>>,
    /// Geolocation.
    pub geo: Option<Geo<'a>>,
    /// In a special-purpose (not globally reachable) block or a configured bogon list.
    pub is_bogon: bool,
    /// A Tor exit.
    pub is_tor: bool,
    /// Names of the threat lists the address is on (empty: on none).
    pub threat_lists: Vec<&'a str>,
    /// Internet scanner, if the address belongs to a known one.
    pub scanner: Option<ScannerHit<'a>>,
    /// Cloud provider, if any.
    pub cloud: Option<CloudHit<'a>>,
}

impl Enrichment<'_> {
    /// `is_threat` of `/ipinfo`: on any threat list.
    pub fn is_threat(&self) -> bool {
        !self.threat_lists.is_empty()
    }

    /// Whether the address is on the named list.
    pub fn on_list(&self, name: &str) -> bool {
        self.threat_lists.contains(&name)
    }
}

/// One ASN source compiled for lookups.
#[derive(Debug, Default)]
struct AsnSource {
    /// Original rows: range, ASN and index of the row's name in `pool`.
    rows: Vec<(IpRange, u32, u32)>,
    /// Distinct names (one ASN can have several spellings across rows).
    pool: Vec<Box<str>>,
    /// Disjoint pieces → row index (overlaps resolved: most specific, then later, wins).
    table: IpTable<u32>,
    /// Row indices sorted by (ASN, range), for "prefixes of an ASN".
    by_asn: Vec<u32>,
    /// First non-empty name of each ASN (index into `pool`).
    names: HashMap<u32, u32>,
}

impl AsnSource {
    fn build(input: &[AsnRow]) -> Self {
        let mut pool: Vec<Box<str>> = vec!["".into()];
        let mut ids: HashMap<&str, u32> = HashMap::from([("", 0)]);
        let mut names: HashMap<u32, u32> = HashMap::new();
        let mut rows = Vec::with_capacity(input.len());
        for r in input {
            let id = *ids.entry(r.name.as_str()).or_insert_with(|| {
                pool.push(r.name.as_str().into());
                (pool.len() - 1) as u32
            });
            // First non-empty name wins; an ASN seen only without a name maps to "".
            let e = names.entry(r.asn).or_insert(0);
            if *e == 0 {
                *e = id;
            }
            rows.push((r.range, r.asn, id));
        }
        let table = IpTable::build(rows.iter().enumerate().map(|(i, (r, _, _))| (*r, i as u32)));
        let mut by_asn: Vec<u32> = (0..rows.len() as u32).collect();
        by_asn.sort_by_key(|&i| (rows[i as usize].1, rows[i as usize].0));
        AsnSource { rows, pool, table, by_asn, names }
    }

    fn name_of(&self, asn: u32) -> Option<&str> {
        self.names.get(&asn).map(|&i| &*self.pool[i as usize])
    }

    fn rows_of(&self, asn: u32) -> &[u32] {
        let lo = self.by_asn.partition_point(|&i| self.rows[i as usize].1 < asn);
        let hi = self.by_asn.partition_point(|&i| self.rows[i as usize].1 <= asn);
        &self.by_asn[lo..hi]
    }
}

/// A compiled internet-scanner list.
#[derive(Debug)]
struct Scanner {
    list: String,
    info: ScannerInfo,
}

/// Collects parsed sources and compiles them into an [`Intel`].
#[derive(Debug, Default)]
pub struct IntelBuilder {
    asn: Vec<AsnSource>,
    geo: Vec<Arc<GeoDb>>,
    tor: Vec<IpRange>,
    tor_loaded: bool,
    extra_bogons: Vec<IpRange>,
    iana: Option<Vec<SpecialBlock>>,
    lists: BTreeMap<String, Vec<IpRange>>,
    list_order: Vec<String>,
    cloud: Vec<CloudData>,
    scanners: Vec<(Scanner, Vec<IpRange>)>,
    versions: BTreeMap<String, String>,
}

impl IntelBuilder {
    /// An empty builder (bogons come from the built-in IANA registries).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an ASN source. Sources are consulted in the order added: the first
    /// one that knows an address answers.
    pub fn asn(mut self, rows: &[AsnRow]) -> Self {
        if !rows.is_empty() {
            self.asn.push(AsnSource::build(rows));
        }
        self
    }

    /// Adds a geolocation database; the first one with a record answers.
    pub fn geo(mut self, db: Arc<GeoDb>) -> Self {
        self.geo.push(db);
        self
    }

    /// Adds Tor exit addresses (several sources are merged).
    pub fn tor(mut self, ranges: &[IpRange]) -> Self {
        self.tor.extend_from_slice(ranges);
        self.tor_loaded = true;
        self
    }

    /// Adds bogon ranges beyond the IANA registries (Team Cymru full bogons).
    pub fn bogons(mut self, ranges: &[IpRange]) -> Self {
        self.extra_bogons.extend_from_slice(ranges);
        self
    }

    /// Replaces the built-in IANA registries (tests, or a newer registry export).
    pub fn special_registry(mut self, blocks: Vec<SpecialBlock>) -> Self {
        self.iana = Some(blocks);
        self
    }

    /// Adds entries to a named threat list (several feeds may fill one list).
    pub fn threat_list(mut self, name: &str, ranges: &[IpRange]) -> Self {
        if !self.lists.contains_key(name) {
            self.list_order.push(name.to_string());
        }
        self.lists.entry(name.to_string()).or_default().extend_from_slice(ranges);
        self
    }

    /// Adds a provider's cloud ranges; feeds with the same provider key (Cloudflare
    /// v4 and v6) are merged.
    pub fn cloud(mut self, data: &CloudData) -> Self {
        match self.cloud.iter_mut().find(|c| c.provider == data.provider) {
            Some(c) => c.prefixes.extend(data.prefixes.iter().cloned()),
            None => self.cloud.push(data.clone()),
        }
        self
    }

    /// Adds an internet-scanner list. `list` is the MISP list directory name
    /// (`shodan-scanning`), used to find the organisation in the curated table;
    /// unknown lists are described by the MISP list's own name.
    pub fn scanner_list(mut self, list: &str, data: &WarningList) -> Self {
        let info = known_scanner(list).unwrap_or_else(|| ScannerInfo {
            name: if data.name.is_empty() { list.to_string() } else { data.name.clone() },
            domain: String::new(),
            url: String::new(),
            published_ip_list: Vec::new(),
        });
        self.scanners.push((Scanner { list: list.to_string(), info }, data.ranges.clone()));
        self
    }

    /// Records a source's version for [`Intel::versions`].
    pub fn version(mut self, source: &str, version: &str) -> Self {
        self.versions.insert(source.to_string(), version.to_string());
        self
    }

    /// Compiles everything into lookup tables.
    pub fn build(self) -> Intel {
        let blocks = self.iana.unwrap_or_else(iana::builtin);
        // Unspecified (deprecated) rows are left out so they inherit from the
        // enclosing block; explicit True/N/A rows carve holes in False ones.
        let iana_table = IpTable::build(
            blocks
                .iter()
                .enumerate()
                .filter(|(_, b)| b.reachable != Reachability::Unspecified)
                .map(|(i, b)| (IpRange::from_net(b.net), i as u32)),
        );

        let mut cloud_entries: Vec<(IpRange, u32)> = Vec::new();
        let mut cloud_index: Vec<(u16, u32)> = Vec::new();
        for (pi, c) in self.cloud.iter().enumerate() {
            // Among equal prefixes the later entry wins, so order generic entries
            // (AWS `AMAZON`, `AzureCloud`, no region) before specific ones.
            let mut idx: Vec<usize> = (0..c.prefixes.len()).collect();
            idx.sort_by_key(|&i| cloud_rank(&c.prefixes[i]));
            for i in idx {
                cloud_index.push((pi as u16, i as u32));
                cloud_entries.push((IpRange::from_net(c.prefixes[i].net), (cloud_index.len() - 1) as u32));
            }
        }
        let cloud_table = IpTable::build(cloud_entries);

        let scanner_table = IpTable::build(
            self.scanners.iter().enumerate().flat_map(|(i, (_, r))| r.iter().map(move |r| (*r, i as u32))),
        );

        let lists: Vec<(String, IpSet)> = self
            .list_order
            .iter()
            .map(|n| (n.clone(), IpSet::build(self.lists.get(n).cloned().unwrap_or_default())))
            .collect();

        let mut missing = Vec::new();
        if self.asn.is_empty() {
            missing.push("asn".to_string());
        }
        if self.geo.is_empty() {
            missing.push("geo".to_string());
        }
        if !self.tor_loaded {
            missing.push("tor".to_string());
        }
        for l in STANDARD_THREAT_LISTS {
            if !self.lists.contains_key(l) {
                missing.push(format!("threat:{l}"));
            }
        }
        if self.scanners.is_empty() {
            missing.push("scanners".to_string());
        }
        for p in STANDARD_CLOUD_PROVIDERS {
            if !self.cloud.iter().any(|c| c.provider == p) {
                missing.push(format!("cloud:{p}"));
            }
        }

        Intel {
            asn: self.asn,
            geo: self.geo,
            blocks,
            iana_table,
            extra_bogons: IpSet::build(self.extra_bogons),
            tor: IpSet::build(self.tor),
            lists,
            cloud: self.cloud,
            cloud_index,
            cloud_table,
            scanners: self.scanners.into_iter().map(|(s, _)| s).collect(),
            scanner_table,
            missing,
            versions: self.versions,
        }
    }
}

/// Specificity of a cloud entry for tie-breaking equal prefixes.
fn cloud_rank(p: &CloudPrefix) -> u8 {
    let generic = matches!(p.service.as_deref(), None | Some("AMAZON") | Some("AzureCloud"));
    (u8::from(!generic) << 1) | u8::from(p.region.is_some())
}

/// The assembled intelligence. Immutable; share it as `Arc<Intel>`.
#[derive(Debug)]
pub struct Intel {
    asn: Vec<AsnSource>,
    geo: Vec<Arc<GeoDb>>,
    blocks: Vec<SpecialBlock>,
    iana_table: IpTable<u32>,
    extra_bogons: IpSet,
    tor: IpSet,
    lists: Vec<(String, IpSet)>,
    cloud: Vec<CloudData>,
    cloud_index: Vec<(u16, u32)>,
    cloud_table: IpTable<u32>,
    scanners: Vec<Scanner>,
    scanner_table: IpTable<u32>,
    missing: Vec<String>,
    versions: BTreeMap<String, String>,
}

impl Default for Intel {
    /// Only the built-in bogon registries: what a server has before any feed.
    fn default() -> Self {
        IntelBuilder::new().build()
    }
}

impl Intel {
    /// A builder.
    pub fn builder() -> IntelBuilder {
        IntelBuilder::new()
    }

    /// The full enrichment of one address.
    pub fn enrich(&self, ip: IpAddr) -> Enrichment<'_> {
        let ip = canonical(ip);
        Enrichment {
            ip,
            asn: self.asn(ip),
            geo: self.geo(ip),
            is_bogon: self.is_bogon(ip),
            is_tor: self.is_tor(ip),
            threat_lists: self.threat_lists_of(ip),
            scanner: self.scanner(ip),
            cloud: self.cloud(ip),
        }
    }

    /// ASN, name and routed prefix.
    #[inline]
    pub fn asn(&self, ip: IpAddr) -> Option<AsnInfo<'_>> {
        for src in &self.asn {
            if let Some((_, &row)) = src.table.get(ip) {
                let (range, asn, name_id) = src.rows[row as usize];
                let network = range.cidr_containing(ip)?;
                let name = match &*src.pool[name_id as usize] {
                    "" => src.name_of(asn).unwrap_or(""),
                    n => n,
                };
                return Some(AsnInfo { asn, name, network });
            }
        }
        None
    }

    /// The name of an AS (first source that knows it).
    pub fn as_name(&self, asn: u32) -> Option<&str> {
        self.asn.iter().find_map(|s| s.name_of(asn))
    }

    /// The prefixes announced by an AS, as sorted CIDRs (IPv4 first) with covered
    /// duplicates removed. Each family comes from the first source that has rows
    /// of that family for the AS, so split per-family files (ip-location-db's
    /// `asn-ipv4.csv` and `asn-ipv6.csv`, two feeds) together give both. Empty
    /// when unknown.
    pub fn prefixes(&self, asn: u32) -> Vec<IpNet> {
        let mut nets: Vec<IpNet> = Vec::new();
        for v6 in [false, true] {
            for src in &self.asn {
                let before = nets.len();
                nets.extend(
                    src.rows_of(asn)
                        .iter()
                        .map(|&i| src.rows[i as usize].0)
                        .filter(|r| matches!(r, IpRange::V6(..)) == v6)
                        .flat_map(|r| r.to_cidrs()),
                );
                if nets.len() > before {
                    break;
                }
            }
        }
        nets.sort_by_key(|n| (matches!(n, IpNet::V6(_)), n.network(), n.prefix_len()));
        nets.dedup();
        // Drop prefixes contained in an earlier (covering) one.
        let mut out: Vec<IpNet> = Vec::with_capacity(nets.len());
        for n in nets {
            if !out.last().is_some_and(|p: &IpNet| p.contains(&n)) {
                out.push(n);
            }
        }
        out
    }

    /// Geolocation (first database with a record).
    #[inline]
    pub fn geo(&self, ip: IpAddr) -> Option<Geo<'_>> {
        self.geo.iter().find_map(|g| g.lookup(ip))
    }

    /// Bogon status: in an IANA special-purpose block that is not globally
    /// reachable, or in a configured bogon list (Team Cymru), unless the most
    /// specific IANA block says the address is globally reachable.
    #[inline]
    pub fn is_bogon(&self, ip: IpAddr) -> bool {
        match self.iana_table.get(ip) {
            Some((_, &i)) => match self.blocks[i as usize].reachable {
                Reachability::No => true,
                Reachability::Yes | Reachability::NotApplicable => false,
                Reachability::Unspecified => self.extra_bogons.contains(ip),
            },
            None => self.extra_bogons.contains(ip),
        }
    }

    /// The IANA special-purpose block (most specific) an address is in, if any.
    pub fn special_block(&self, ip: IpAddr) -> Option<&SpecialBlock> {
        self.iana_table.get(ip).map(|(_, &i)| &self.blocks[i as usize])
    }

    /// Tor exit.
    #[inline]
    pub fn is_tor(&self, ip: IpAddr) -> bool {
        self.tor.contains(ip)
    }

    /// Membership in a named threat list; `None` when that list is not loaded
    /// (so the API can say "source missing" rather than a misleading `false`).
    pub fn on_list(&self, list: &str, ip: IpAddr) -> Option<bool> {
        self.lists.iter().find(|(n, _)| n == list).map(|(_, s)| s.contains(ip))
    }

    /// Names of all loaded threat lists, in configuration order.
    pub fn threat_list_names(&self) -> impl Iterator<Item = &str> {
        self.lists.iter().map(|(n, _)| n.as_str())
    }

    /// The threat lists an address is on.
    #[inline]
    pub fn threat_lists_of(&self, ip: IpAddr) -> Vec<&str> {
        let mut v = Vec::new();
        for (n, s) in &self.lists {
            if s.contains(ip) {
                v.push(n.as_str());
            }
        }
        v
    }

    /// Internet scanner (most specific listed range wins).
    #[inline]
    pub fn scanner(&self, ip: IpAddr) -> Option<ScannerHit<'_>> {
        self.scanner_table.get(ip).map(|(_, &i)| {
            let s = &self.scanners[i as usize];
            ScannerHit { list: &s.list, info: &s.info }
        })
    }

    /// Cloud provider of an address (most specific published prefix wins).
    #[inline]
    pub fn cloud(&self, ip: IpAddr) -> Option<CloudHit<'_>> {
        self.cloud_table.get(ip).map(|(_, &i)| {
            let (p, e) = self.cloud_index[i as usize];
            let c = &self.cloud[p as usize];
            CloudHit { provider: &c.provider, prefix: &c.prefixes[e as usize] }
        })
    }

    /// A provider's published ranges (`/datacenter/{provider}`), `None` when not loaded.
    pub fn cloud_prefixes(&self, provider: &str) -> Option<&CloudData> {
        self.cloud.iter().find(|c| c.provider == provider)
    }

    /// Loaded cloud providers.
    pub fn cloud_providers(&self) -> impl Iterator<Item = &str> {
        self.cloud.iter().map(|c| c.provider.as_str())
    }

    /// Sources that are not loaded: `asn`, `geo`, `tor`, `scanners`,
    /// `threat:<list>` for each standard `/ipinfo` list and `cloud:<provider>` for
    /// each standard `/datacenter` provider. Lookups still work without them;
    /// answers that depend on them should say so.
    pub fn missing(&self) -> &[String] {
        &self.missing
    }

    /// Versions of the sources that went into this snapshot (feed name → version).
    pub fn versions(&self) -> &BTreeMap<String, String> {
        &self.versions
    }

    /// The geolocation databases (for reference benchmarks and status).
    pub fn geo_databases(&self) -> &[Arc<GeoDb>] {
        &self.geo
    }
}
