//! Credentials: generation, hashing and constant-time comparison.
//!
//! Keys are 256 random bits, so a single SHA-256 is a sufficient one-way hash
//! (there is nothing to brute-force that a slow hash would protect); the
//! stored hash is compared in constant time so response timing leaks nothing.

use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The two kinds of key an account holds (HoneyDB spec §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyKind {
    /// Reads the threat-information API.
    Threat,
    /// Submits sensor events.
    Sensor,
}

/// Freshly made credentials: shown once, then only their hashes remain.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Credentials {
    pub api_id: String,
    pub threat_key: String,
    pub sensor_key: String,
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

pub fn generate_credentials() -> Credentials {
    Credentials { api_id: random_hex(16), threat_key: random_hex(32), sensor_key: random_hex(32) }
}

pub(crate) fn generate_key() -> String {
    random_hex(32)
}

pub fn hash_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// An account with the hashes of its two keys: what authentication needs,
/// and safe to cache (it holds no key).
#[derive(Debug, Clone)]
pub struct AccountKeys {
    pub account: crate::Account,
    pub threat_key_hash: Vec<u8>,
    pub sensor_key_hash: Vec<u8>,
}

impl AccountKeys {
    /// Which of the account's keys `key` is, if any. Both comparisons always
    /// run, in constant time, so timing reveals neither which key matched
    /// nor how much of it. A disabled account matches nothing.
    pub fn check(&self, key: &str) -> Option<KeyKind> {
        let threat = key_matches(key, &self.threat_key_hash);
        let sensor = key_matches(key, &self.sensor_key_hash);
        if self.account.disabled {
            return None;
        }
        match (threat, sensor) {
            (true, _) => Some(KeyKind::Threat),
            (false, true) => Some(KeyKind::Sensor),
            _ => None,
        }
    }
}

/// Whether `key` hashes to `stored`, in time independent of where they differ.
pub(crate) fn key_matches(key: &str, stored: &[u8]) -> bool {
    let hash = hash_key(key);
    stored.len() == hash.len() && bool::from(hash.ct_eq(stored))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_and_hash_matches() {
        let a = generate_credentials();
        let b = generate_credentials();
        assert_ne!(a.threat_key, b.threat_key);
        assert_eq!(a.api_id.len(), 32);
        assert!(key_matches(&a.threat_key, &hash_key(&a.threat_key)));
        assert!(!key_matches(&a.sensor_key, &hash_key(&a.threat_key)));
        assert!(!key_matches(&a.sensor_key, &[0u8; 3]));
    }
}
