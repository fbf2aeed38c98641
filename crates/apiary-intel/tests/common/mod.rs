//! Shared helpers: every test reads the real fixtures in ../../../shared/fixtures.
#![allow(dead_code)]

use std::net::IpAddr;
use std::path::PathBuf;

/// Path of a fixture file relative to the shared fixtures directory.
pub fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures").join(rel)
}

/// Bytes of a fixture file.
pub fn read(rel: &str) -> Vec<u8> {
    let p = fixture(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("fixture {}: {e}", p.display()))
}

/// Parses a test address.
pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}
