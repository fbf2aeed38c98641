//! Rendered `/ip/{ip}` answers, kept per address.
//!
//! `/ip/{ip}` is the API's most called answer and the same addresses come
//! back again and again (a SIEM enriches every alert about an attacker).
//! Building it means a dozen intelligence lookups and a kilobyte of JSON,
//! about a quarter of the request's CPU, yet the answer is a pure function
//! of three things: the intelligence snapshot, the host's history and its
//! CVE sightings. The store hands those two out shared and gives a new
//! `Arc` whenever they may have changed (`Store::ip_history`), and a feed
//! refresh swaps in a new `Intel`. So a kept answer is valid exactly while
//! all three inputs are the very same objects, which is what [`IpAnswers::get`]
//! checks: nothing needs invalidating, and nothing stale can be served.
//!
//! Entries hold `Weak` references: they never keep an old snapshot's data
//! alive, yet pin its allocation, so a new object can never reuse the
//! address and be mistaken for it.

use std::net::IpAddr;
use std::sync::{Arc, Mutex, Weak};

use apiary_intel::Intel;
use apiary_store::{CveSighting, IpHistoryRow};
use axum::http::HeaderValue;
use bytes::Bytes;
use rustc_hash::FxHashMap;

/// Addresses kept at most (an answer is one to two kilobytes); when full the
/// cache starts over.
const MAX_ENTRIES: usize = 16_384;

/// The inputs an answer was rendered from.
pub(crate) struct Inputs<'a> {
    pub intel: &'a Arc<Intel>,
    pub history: &'a Arc<Vec<IpHistoryRow>>,
    pub cves: &'a Arc<Vec<CveSighting>>,
}

/// A rendered answer: the JSON body and its missing-sources header.
#[derive(Clone)]
pub(crate) struct Rendered {
    pub body: Bytes,
    pub missing: Option<HeaderValue>,
}

struct Entry {
    intel: Weak<Intel>,
    history: Weak<Vec<IpHistoryRow>>,
    cves: Weak<Vec<CveSighting>>,
    rendered: Rendered,
}

impl Entry {
    fn rendered_from(&self, inputs: &Inputs<'_>) -> bool {
        std::ptr::eq(self.intel.as_ptr(), Arc::as_ptr(inputs.intel))
            && std::ptr::eq(self.history.as_ptr(), Arc::as_ptr(inputs.history))
            && std::ptr::eq(self.cves.as_ptr(), Arc::as_ptr(inputs.cves))
    }
}

#[derive(Default)]
pub(crate) struct IpAnswers {
    entries: Mutex<FxHashMap<IpAddr, Entry>>,
}

impl IpAnswers {
    fn lock(&self) -> std::sync::MutexGuard<'_, FxHashMap<IpAddr, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The answer for `ip` if it was rendered from exactly these inputs.
    pub fn get(&self, ip: IpAddr, inputs: &Inputs<'_>) -> Option<Rendered> {
        let entries = self.lock();
        let entry = entries.get(&ip)?;
        entry.rendered_from(inputs).then(|| entry.rendered.clone())
    }

    /// Keeps the answer for `ip`, rendered from `inputs`.
    pub fn insert(&self, ip: IpAddr, inputs: &Inputs<'_>, rendered: Rendered) {
        let entry = Entry {
            intel: Arc::downgrade(inputs.intel),
            history: Arc::downgrade(inputs.history),
            cves: Arc::downgrade(inputs.cves),
            rendered,
        };
        let mut entries = self.lock();
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(&ip) {
            entries.clear();
        }
        entries.insert(ip, entry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(s: &'static str) -> Rendered {
        Rendered { body: Bytes::from_static(s.as_bytes()), missing: None }
    }

    #[test]
    fn an_answer_is_served_only_for_the_very_inputs_it_was_rendered_from() {
        let cache = IpAnswers::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let intel = Arc::new(Intel::default());
        let history = Arc::new(Vec::new());
        let cves = Arc::new(Vec::new());
        let inputs = Inputs { intel: &intel, history: &history, cves: &cves };
        assert!(cache.get(ip, &inputs).is_none());
        cache.insert(ip, &inputs, rendered("a"));
        assert_eq!(cache.get(ip, &inputs).unwrap().body, "a");

        // Equal contents are not enough: a new history object is a new read.
        let reread = Arc::new(Vec::new());
        assert!(cache.get(ip, &Inputs { intel: &intel, history: &reread, cves: &cves }).is_none());
        // A new intelligence snapshot, even after the old one is gone.
        let old = Arc::as_ptr(&intel);
        drop(intel);
        let swapped = Arc::new(Intel::default());
        assert_ne!(Arc::as_ptr(&swapped), old, "the kept Weak pins the old allocation");
        assert!(cache.get(ip, &Inputs { intel: &swapped, history: &history, cves: &cves }).is_none());
    }
}
