//! A short-lived cache of account key hashes in front of the store.
//!
//! Without it every request would read the account from the database on the
//! blocking pool before doing any work. Entries live for [`TTL`]: a key that
//! is rotated or an account that is disabled (from the CLI, in another
//! process) stops working within that time. Unknown API ids are cached too,
//! so that guessing ids cannot turn into a database load, and the cache is
//! bounded so that guessing cannot grow it without limit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use apiary_store::AccountKeys;

use crate::{ApiError, AppState};

pub(crate) const TTL: Duration = Duration::from_secs(1);
const MAX_ENTRIES: usize = 10_000;

/// When an API id was looked up, and what was found (`None`: no such account).
type Entry = (Instant, Option<Arc<AccountKeys>>);

#[derive(Default)]
pub(crate) struct CredentialCache {
    entries: Mutex<HashMap<String, Entry>>,
}

impl CredentialCache {
    /// The account and key hashes of `api_id`, shared (cloning it is a counter
    /// increment, not four allocations per request).
    pub async fn get(&self, state: &AppState, api_id: &str) -> Result<Option<Arc<AccountKeys>>, ApiError> {
        {
            let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, keys)) = entries.get(api_id) {
                if at.elapsed() < TTL {
                    return Ok(keys.clone());
                }
            }
        }
        let id = api_id.to_owned();
        let keys = state.with_store(move |s| s.account_keys(&id)).await?.map(Arc::new);
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, (at, _)| at.elapsed() < TTL);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(api_id.to_owned(), (Instant::now(), keys.clone()));
        Ok(keys)
    }
}
