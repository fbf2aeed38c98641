//! Storage for Apiary: the [`Store`] boundary and its embedded SQLite engine.
//!
//! Everything the API serves is read through [`Store`], and everything that
//! ingest writes goes through it, so SQL never leaks into the server. The
//! embedded engine ([`SqliteStore`]) keeps raw events for a retention window
//! and maintains, in the same transaction as each batch, the rollups the read
//! API needs (bad hosts, services, IP history, monthly stats, nodes). A
//! distributed engine implements the same trait.

mod accounts;
mod quota;
mod sqlite;
mod types;

pub use accounts::{generate_credentials, hash_key, AccountKeys, Credentials, KeyKind};
pub use quota::{QuotaBook, QuotaDecision};
pub use sqlite::{SqliteOptions, SqliteStore};
pub use types::*;

use std::net::IpAddr;
use std::sync::Arc;

use apiary_model::Event;

/// Errors a store reports. Messages carry enough context to act on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("no account with API id {0:?}")]
    NoSuchAccount(String),
    #[error("the store is shutting down")]
    Closed,
    #[error("invalid argument: {0}")]
    Invalid(String),
    #[error("data directory {path}: {source}")]
    Io { path: String, source: std::io::Error },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The storage boundary. Implementations are shared between threads; calls
/// block, so async callers run them on a blocking pool.
pub trait Store: Send + Sync + 'static {
    // --- accounts -------------------------------------------------------
    /// Creates an account and returns its credentials, the only time the
    /// keys are ever visible: only their hashes are stored.
    fn create_account(&self, new: &NewAccount) -> Result<(Account, Credentials)>;
    fn list_accounts(&self) -> Result<Vec<Account>>;
    fn set_disabled(&self, api_id: &str, disabled: bool) -> Result<Account>;
    /// Replaces one key of an account; returns the new key.
    fn rotate_key(&self, api_id: &str, kind: KeyKind) -> Result<String>;
    /// The account with this API id and its key hashes, for authentication.
    fn account_keys(&self, api_id: &str) -> Result<Option<AccountKeys>>;
    /// Checks an API id and key; `None` when they do not match an enabled
    /// account. Runs in constant time in the key.
    fn authenticate(&self, api_id: &str, key: &str) -> Result<Option<(Account, KeyKind)>> {
        Ok(self.account_keys(api_id)?.and_then(|k| k.check(key).map(|kind| (k.account, kind))))
    }

    // --- quota ----------------------------------------------------------
    /// Counts one request against the account's monthly quota, exactly,
    /// or refuses it without counting. Called on the request path, so it
    /// must answer from memory except for rare loads.
    fn consume_quota(&self, account: &Account, now_ms: i64) -> Result<QuotaDecision>;
    /// The usage so far this month, without counting.
    fn peek_quota(&self, account: &Account, now_ms: i64) -> Result<QuotaDecision>;

    // --- ingest ---------------------------------------------------------
    /// Stores a batch of validated events for `owner`, durably, before
    /// returning. Events already stored (same owner, node and id) are
    /// counted as duplicates and not stored again.
    fn ingest(&self, owner: AccountId, peer: Option<IpAddr>, events: Vec<Event>) -> Result<IngestOutcome>;

    // --- reads ----------------------------------------------------------
    fn bad_hosts(&self, filter: &HostFilter, since_ms: i64) -> Result<Vec<BadHost>>;
    fn services(&self, since_ms: i64) -> Result<Vec<ServiceCount>>;
    fn sensor_data(&self, day: i64, owner: Option<AccountId>, after_id: i64, limit: usize) -> Result<Vec<StoredEvent>>;
    fn sensor_data_count(&self, day: i64, owner: Option<AccountId>) -> Result<u64>;
    /// Stats of a month (`month` as [`apiary_model::time::month_key`]), or
    /// of the latest month with data when `None`.
    fn month_stats(&self, month: Option<i64>) -> Result<Option<MonthStats>>;
    fn nodes(&self, since_ms: i64, owner: Option<AccountId>) -> Result<Vec<NodeInfo>>;
    /// One IP's history, oldest day first. Shared: an answer may be handed
    /// out again while nothing about the host changed, and a change always
    /// yields a new `Arc`, so callers may key what they derive from it on
    /// its identity (`Arc::ptr_eq`).
    fn ip_history(&self, ip: IpAddr) -> Result<Arc<Vec<IpHistoryRow>>>;
    /// Distinct remote hosts per AS number over the days `from_day..=to_day`,
    /// most hosts first; hosts of unknown AS are left out.
    fn asn_hosts(&self, from_day: i64, to_day: i64) -> Result<Vec<AsnHosts>>;

    // --- payload history and CVE sightings (kept forever) ----------------
    /// Payload-history records, oldest day first.
    fn payload_records(&self, select: &PayloadSelect, page: Page) -> Result<Vec<PayloadRecord>>;
    /// Every service that sent a payload, as sensors spelled them.
    fn payload_services(&self) -> Result<Vec<String>>;
    /// Distinct values of one attribute (`""`: payloads kept whole), in the
    /// order they were first seen.
    fn attribute_values(&self, attribute: &str, page: Page) -> Result<Vec<AttributeValue>>;
    /// Hosts that sent any payload, per year (oldest year first), at most
    /// `per_year` hosts listed for each year.
    fn payload_hosts_by_year(&self, per_year: usize) -> Result<Vec<YearHosts>>;
    /// The hosts that sent a value in the days `from..=to`, by date.
    fn value_hosts(&self, md5: [u8; 16], from_day: i64, to_day: i64, page: Page) -> Result<Vec<DatedHost>>;
    /// The values a host sent, by date.
    fn host_values(&self, ip: IpAddr, page: Page) -> Result<Vec<DatedHash>>;
    /// The hosts seen exploiting a CVE (id as `CVE-2021-44228`), by date.
    fn cve_hosts(&self, cve: &str, page: Page) -> Result<Vec<DatedHost>>;
    /// The CVEs a host was seen exploiting, by date. Shared like
    /// [`Store::ip_history`]: a change always yields a new `Arc`.
    fn host_cves(&self, ip: IpAddr) -> Result<Arc<Vec<CveSighting>>>;

    // --- maintenance ----------------------------------------------------
    /// Deletes raw events of days before `before_day`, in small steps so that
    /// ingest is never blocked for long. Rollups are kept.
    fn prune_events(&self, before_day: i64) -> Result<u64>;
    /// Persists everything held in memory (quota counters).
    fn flush(&self) -> Result<()>;
}
