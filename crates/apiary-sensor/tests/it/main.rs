//! End-to-end tests: the sensor runs in-process on 127.0.0.1 ephemeral
//! ports and is driven by real clients (Debian packages) or, for abuse,
//! by hostile raw sockets. Assertions read the sensor's JSON-lines log.
//! Only loopback is ever targeted.

mod abuse;
mod ber;
mod clients;
mod common;
mod delivery;
mod e2e;
mod process;
mod secure;
