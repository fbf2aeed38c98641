//! The event model shared by every part of Apiary.
//!
//! A honeypot sensor records each interaction with an attacker as a stream of
//! [`Event`]s (CONNECT, RX, TX, INFO), in the shape HoneyDB's sensors use. This
//! crate defines that shape twice: [`WireEvent`] is what travels over the
//! network (lenient, strings where HoneyDB uses strings), and [`Event`] is the
//! validated form that storage accepts. Turning one into the other is the only
//! place input from sensors is checked, so every later stage can trust it.
//!
//! This crate does no I/O; it is used by the sensor, the server and the
//! client alike.

mod event;
mod ndjson;
mod payload;
mod scan;
pub mod time;

pub use event::{
    canonical_ip, md5_hex, Event, EventError, EventKind, Flex, Origin, Protocol, WireEvent, MAX_DATA_BYTES,
    MAX_SERVICE_LEN,
};
pub use ndjson::{parse_batch, parse_batch_on, BatchError, ParsedBatch, RejectedEvent};
pub use payload::{PayloadFacts, PayloadValue};
