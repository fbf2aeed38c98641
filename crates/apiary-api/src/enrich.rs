//! Ingest-time enrichment: each event records its remote host's AS number
//! and country as the IP intelligence knows them when the event arrives.
//!
//! Lookups are made once per distinct host of a batch: a session's events
//! share their host, and a busy scanner sends thousands per batch.

use std::collections::HashMap;
use std::net::IpAddr;

use apiary_intel::Intel;
use apiary_model::{Event, Origin};

/// Fills in `origin` for every event from `intel`.
pub fn enrich(intel: &Intel, events: &mut [Event]) {
    let mut seen: HashMap<IpAddr, Origin> = HashMap::new();
    for e in events {
        e.origin = *seen.entry(e.remote_host).or_insert_with(|| origin_of(intel, e.remote_host));
    }
}

fn origin_of(intel: &Intel, ip: IpAddr) -> Origin {
    let asn = intel.asn(ip).map_or(0, |a| a.asn);
    let country = intel
        .geo(ip)
        .and_then(|g| g.country_iso)
        .and_then(|c| <[u8; 2]>::try_from(c.as_bytes()).ok())
        .filter(|c| c.iter().all(u8::is_ascii_alphabetic));
    Origin { asn, country }
}
