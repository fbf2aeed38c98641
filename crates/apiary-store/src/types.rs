//! Plain data that crosses the [`crate::Store`] boundary.

use std::net::IpAddr;

use serde::Serialize;

pub type AccountId = i64;

/// What an account may do beyond reading the shared feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Reads the shared feeds and its own sensors' data.
    Community,
    /// May also read every sensor's raw events (`/sensor-data`).
    AllSensors,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Community => "community",
            Role::AllSensors => "all-sensors",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "community" => Some(Role::Community),
            "all-sensors" | "operator" => Some(Role::AllSensors),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Account {
    pub id: AccountId,
    pub api_id: String,
    pub name: String,
    /// Requests a month; `None` is unlimited.
    pub monthly_quota: Option<u64>,
    pub role: Role,
    pub disabled: bool,
    pub created_ms: i64,
}

#[derive(Debug, Clone)]
pub struct NewAccount {
    pub name: String,
    pub monthly_quota: Option<u64>,
    pub role: Role,
}

/// The result of storing a batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct IngestOutcome {
    /// Newly stored events.
    pub accepted: u64,
    /// Events that were already stored by an earlier delivery.
    pub duplicates: u64,
}

/// Which events a bad-hosts list is computed over.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct HostFilter {
    /// Service name, matched case-insensitively.
    pub service: Option<String>,
    /// Only events from this account's sensors.
    pub owner: Option<AccountId>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadHost {
    pub host: String,
    pub count: u64,
    pub last_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceCount {
    pub service: String,
    pub count: u64,
}

/// A stored raw event, as `/sensor-data` serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub id: i64,
    pub ts_ms: i64,
    pub session: String,
    pub protocol: apiary_model::Protocol,
    pub kind: apiary_model::EventKind,
    pub service: String,
    pub remote_host: String,
    pub remote_port: u16,
    pub local_host: String,
    pub local_port: u16,
    pub data: Vec<u8>,
    pub node: String,
    /// The remote host's AS number at ingest (0: unknown).
    pub asn: u32,
    /// The remote host's country code at ingest.
    pub country: Option<String>,
}

/// How many distinct remote hosts of one autonomous system were seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsnHosts {
    pub asn: u32,
    pub hosts: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonthStats {
    pub month: i64,
    pub total_events: u64,
    pub total_remote_hosts: u64,
    /// Up to ten services, most events first.
    pub top_services: Vec<ServiceCount>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub node: String,
    pub owner: AccountId,
    pub last_seen_ms: i64,
    pub public_ip: Option<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpHistoryRow {
    pub day: i64,
    pub service: String,
    pub event_count: u64,
}

/// Which payload-history records to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayloadSelect {
    /// Records of the days `from..=to`.
    Days { from: i64, to: i64 },
    /// Records of one service, its name matched case-insensitively.
    Service(String),
    /// Records of one value, by the MD5 of its text.
    Hash([u8; 16]),
}

/// A window of a long list: skip `offset` items, return at most `limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub offset: usize,
    pub limit: usize,
}

/// One payload-history record: a value seen on a day by a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadRecord {
    pub day: i64,
    pub service: String,
    /// `None` for a payload kept whole.
    pub attribute: Option<String>,
    pub md5: [u8; 16],
    pub value: String,
    /// The value was cut to the size limit at ingest.
    pub truncated: bool,
}

/// A distinct value of one attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributeValue {
    pub md5: [u8; 16],
    pub value: String,
    pub truncated: bool,
}

/// A remote host seen on a day (sending a payload value, or exploiting a CVE).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatedHost {
    pub day: i64,
    pub host: String,
}

/// A payload value a host sent on a day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatedHash {
    pub day: i64,
    pub md5: [u8; 16],
}

/// A CVE a host was seen exploiting on a day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CveSighting {
    pub day: i64,
    pub cve: String,
}

/// The hosts that sent payloads in one year.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YearHosts {
    pub year: i32,
    pub hosts: Vec<String>,
    /// More hosts were seen that year than were listed.
    pub truncated: bool,
}
