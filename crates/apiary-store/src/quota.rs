//! Exact monthly request counting.
//!
//! Counting happens in memory under one lock, so N parallel requests against
//! a quota of Q give exactly min(N, Q) successes. A request must not wait on
//! a disk write, so the counters are persisted by the store's flusher (about
//! once a second, and on shutdown); a restart resumes from the persisted
//! value.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::types::AccountId;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaDecision {
    /// Counted. `remaining` is `None` on an unlimited plan.
    Allowed { used: u64, remaining: Option<u64> },
    /// Refused and not counted.
    Refused { used: u64, limit: u64 },
}

#[derive(Debug, Clone, Copy)]
struct Usage {
    month: i64,
    used: u64,
    dirty: bool,
}

#[derive(Debug, Default)]
pub struct QuotaBook {
    usage: Mutex<HashMap<AccountId, Usage>>,
}

impl QuotaBook {
    /// Counts one request for `account` in `month` if `limit` allows.
    /// `load` reads the persisted count the first time a month is seen.
    pub fn consume<E>(
        &self,
        account: AccountId,
        month: i64,
        limit: Option<u64>,
        count: bool,
        load: impl FnOnce() -> Result<u64, E>,
    ) -> Result<QuotaDecision, E> {
        let mut usage = self.usage.lock().unwrap_or_else(|p| p.into_inner());
        let entry = match usage.get_mut(&account) {
            Some(u) if u.month == month => u,
            _ => {
                let used = load()?;
                usage.insert(account, Usage { month, used, dirty: false });
                usage.get_mut(&account).expect("just inserted")
            }
        };
        if !count {
            // Uncounted requests are never refused; they only report usage.
            return Ok(QuotaDecision::Allowed {
                used: entry.used,
                remaining: limit.map(|l| l.saturating_sub(entry.used)),
            });
        }
        if let Some(limit) = limit {
            if entry.used >= limit {
                return Ok(QuotaDecision::Refused { used: entry.used, limit });
            }
        }
        entry.used += 1;
        entry.dirty = true;
        Ok(QuotaDecision::Allowed { used: entry.used, remaining: limit.map(|l| l - entry.used) })
    }

    /// Counters changed since the last call, as `(account, month, used)`.
    pub fn take_dirty(&self) -> Vec<(AccountId, i64, u64)> {
        let mut usage = self.usage.lock().unwrap_or_else(|p| p.into_inner());
        usage
            .iter_mut()
            .filter(|(_, u)| u.dirty)
            .map(|(a, u)| {
                u.dirty = false;
                (*a, u.month, u.used)
            })
            .collect()
    }

    /// Marks counters dirty again after a failed persist, so none is lost.
    pub fn restore_dirty(&self, rows: &[(AccountId, i64, u64)]) {
        let mut usage = self.usage.lock().unwrap_or_else(|p| p.into_inner());
        for (a, m, _) in rows {
            if let Some(u) = usage.get_mut(a) {
                if u.month == *m {
                    u.dirty = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn exact_under_threads() {
        let book = Arc::new(QuotaBook::default());
        let allowed: usize = (0..8)
            .map(|_| {
                let book = book.clone();
                std::thread::spawn(move || {
                    (0..100)
                        .filter(|_| {
                            matches!(
                                book.consume::<()>(1, 5, Some(250), true, || Ok(0)),
                                Ok(QuotaDecision::Allowed { .. })
                            )
                        })
                        .count()
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .sum();
        assert_eq!(allowed, 250);
        assert_eq!(book.take_dirty(), vec![(1, 5, 250)]);
        assert!(book.take_dirty().is_empty());
    }

    #[test]
    fn new_month_reloads() {
        let book = QuotaBook::default();
        book.consume::<()>(1, 5, Some(1), true, || Ok(0)).unwrap();
        assert!(matches!(book.consume::<()>(1, 5, Some(1), true, || Ok(0)), Ok(QuotaDecision::Refused { .. })));
        assert!(matches!(
            book.consume::<()>(1, 6, Some(1), true, || Ok(0)),
            Ok(QuotaDecision::Allowed { used: 1, .. })
        ));
    }
}
