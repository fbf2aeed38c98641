//! Parsed feed content, whatever its kind, and the dispatch from [`FeedKind`] to
//! parser.

use std::sync::Arc;

use crate::error::ParseError;
use crate::feeds::config::{FeedConfig, FeedKind};
use crate::intel::IntelBuilder;
use crate::parse::asn::{self, AsnRow};
use crate::parse::cloud::{self, CloudData};
use crate::parse::lists::{self, ListData};
use crate::parse::misp::{self, WarningList};
use crate::parse::mmdb::{self, GeoDb};
use crate::parse::{content_hash, sniff};

/// The parsed content of one feed.
#[derive(Debug, Clone)]
pub enum FeedData {
    /// ASN rows (from CSV, TSV or an ASN mmdb).
    Asn(Arc<Vec<AsnRow>>, Option<String>),
    /// A geolocation database.
    Geo(Arc<GeoDb>),
    /// An IP list (threat list, Tor, bogons).
    List(Arc<ListData>),
    /// Cloud ranges.
    Cloud(Arc<CloudData>),
    /// A MISP warning list.
    Misp(Arc<WarningList>),
}

impl FeedData {
    /// Number of entries, compared between copies to detect a collapse.
    pub fn entries(&self) -> usize {
        match self {
            FeedData::Asn(r, _) => r.len(),
            FeedData::Geo(g) => g.node_count(),
            FeedData::List(l) => l.ranges.len(),
            FeedData::Cloud(c) => c.prefixes.len(),
            FeedData::Misp(m) => m.ranges.len(),
        }
    }

    /// The version the content states, if any.
    pub fn stated_version(&self) -> Option<String> {
        match self {
            FeedData::Asn(_, v) => v.clone(),
            FeedData::Geo(g) => Some(g.version()),
            FeedData::List(l) => l.version.clone(),
            FeedData::Cloud(c) => c.version.clone(),
            FeedData::Misp(m) => (!m.version.is_empty()).then(|| m.version.clone()),
        }
    }
}

/// Parses `bytes` as a feed of `cfg.kind`. Never panics on input.
pub fn parse_feed(cfg: &FeedConfig, bytes: Vec<u8>) -> Result<FeedData, ParseError> {
    sniff(&bytes, cfg.kind.is_binary())?;
    let list = |l: ListData| Ok(FeedData::List(Arc::new(l)));
    let cloud_data = |mut c: CloudData| {
        if let Some(p) = &cfg.provider {
            c.provider = p.clone();
        }
        Ok(FeedData::Cloud(Arc::new(c)))
    };
    match cfg.kind {
        FeedKind::AsnCsv => Ok(FeedData::Asn(Arc::new(asn::parse_ip_location_db_csv(&bytes)?), None)),
        FeedKind::AsnTsv => Ok(FeedData::Asn(Arc::new(asn::parse_iptoasn_tsv(&bytes)?), None)),
        FeedKind::AsnMmdb => {
            let (rows, version) = mmdb::parse_asn_mmdb(bytes)?;
            Ok(FeedData::Asn(Arc::new(rows), Some(version)))
        }
        FeedKind::GeoMmdb => Ok(FeedData::Geo(Arc::new(GeoDb::from_bytes(bytes)?))),
        FeedKind::TeamCymruBogons | FeedKind::TorBulkExitList | FeedKind::PlainList => {
            list(lists::parse_plain(&bytes)?)
        }
        FeedKind::TorExitAddresses => list(lists::parse_tor_exit_addresses(&bytes)?),
        FeedKind::ThreatfoxCsv => list(lists::parse_threatfox_csv(&bytes)?),
        FeedKind::SpamhausDrop => list(lists::parse_spamhaus_drop(&bytes)?),
        FeedKind::DshieldBlock => list(lists::parse_dshield_block(&bytes)?),
        FeedKind::AwsIpRanges => cloud_data(cloud::parse_aws(&bytes)?),
        FeedKind::AzureServiceTags => cloud_data(cloud::parse_azure(&bytes)?),
        FeedKind::GcpCloudJson => cloud_data(cloud::parse_gcp(&bytes)?),
        FeedKind::IbmIpsMarkdown => cloud_data(cloud::parse_ibm_markdown(&bytes)?),
        FeedKind::OracleIpRanges => cloud_data(cloud::parse_oracle(&bytes)?),
        FeedKind::CloudflareIps => cloud_data(cloud::parse_cloudflare(&bytes)?),
        FeedKind::MispWarningList => Ok(FeedData::Misp(Arc::new(misp::parse_warning_list(&bytes)?))),
    }
}

/// The version to record: the stated one, else a content hash.
pub fn version_of(data: &FeedData, bytes: &[u8]) -> String {
    data.stated_version().unwrap_or_else(|| content_hash(bytes))
}

/// Adds one feed's data to a builder according to its kind and role.
pub fn add_to_builder(b: IntelBuilder, cfg: &FeedConfig, data: &FeedData) -> IntelBuilder {
    match data {
        FeedData::Asn(rows, _) => b.asn(rows),
        FeedData::Geo(g) => b.geo(g.clone()),
        FeedData::List(l) => match cfg.kind {
            FeedKind::TorBulkExitList | FeedKind::TorExitAddresses => b.tor(&l.ranges),
            FeedKind::TeamCymruBogons => b.bogons(&l.ranges),
            _ => match cfg.list_name() {
                "tor" => b.tor(&l.ranges),
                "bogon" | "bogons" => b.bogons(&l.ranges),
                name => b.threat_list(name, &l.ranges),
            },
        },
        FeedData::Cloud(c) => b.cloud(c),
        FeedData::Misp(m) => b.scanner_list(cfg.scanner.as_deref().unwrap_or(&cfg.name), m),
    }
}
