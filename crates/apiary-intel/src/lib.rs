//! Apiary's IP-intelligence engine.
//!
//! It loads the real published data sets in their own formats (ASN tables, MaxMind
//! databases, IANA registries, Tor exit lists, threat lists, cloud ranges, MISP
//! warning lists), validates them, and answers enrichment questions about one IP
//! address at memory speed. There is no HTTP here: the API crate calls [`Intel`]
//! (usually through [`FeedManager::intel`]) and shapes the answers into
//! HoneyDB-compatible JSON.
//!
//! Layout:
//! - [`parse`]: one module per source format, each returning typed records or a
//!   [`ParseError`], never panicking on input.
//! - [`table`]: sorted range tables and IP sets (binary search, overlaps resolved
//!   at build time).
//! - [`intel`]: the immutable, swappable snapshot that answers lookups.
//! - [`feeds`]: configuration, validation, last-good-copy state and refresh.

pub mod country;
pub mod error;
pub mod feeds;
pub mod intel;
pub mod net;
pub mod parse;
pub mod scanners;
pub mod table;

pub use error::{FeedError, ParseError};
pub use feeds::{FeedConfig, FeedKind, FeedManager, FeedStatus, Fetcher, FileFetcher, IntelConfig};
pub use intel::{AsnInfo, CloudHit, Enrichment, Geo, Intel, IntelBuilder};
pub use net::{ip_hex, network_addresses, IpRange, NetInfo};
pub use table::{IpSet, IpTable};
