//! Events: the wire form sensors send and the validated form storage keeps.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;

use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};

use crate::time;

/// Largest payload one event may carry, in raw bytes (the hex is twice this).
pub const MAX_DATA_BYTES: usize = 64 * 1024;
/// Longest accepted service name.
pub const MAX_SERVICE_LEN: usize = 64;
const MAX_ID_LEN: usize = 128;
const MAX_SESSION_LEN: usize = 64;
/// Events dated before 2000 or more than a day ahead are sensor clock faults.
const MIN_TS_MS: i64 = 946_684_800_000;
const MAX_FUTURE_MS: i64 = time::MS_PER_DAY;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        }
    }

    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(Protocol::Tcp),
            1 => Some(Protocol::Udp),
            _ => None,
        }
    }
}

/// What happened on a connection, in HoneyDB's vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum EventKind {
    /// A TCP connection was accepted (no payload).
    Connect,
    /// Bytes received from the remote host.
    Rx,
    /// Bytes the sensor sent back.
    Tx,
    /// A fact the sensor extracted, such as a username and password tried.
    Info,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Connect => "CONNECT",
            EventKind::Rx => "RX",
            EventKind::Tx => "TX",
            EventKind::Info => "INFO",
        }
    }

    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn from_code(code: u8) -> Option<Self> {
        [EventKind::Connect, EventKind::Rx, EventKind::Tx, EventKind::Info].get(usize::from(code)).copied()
    }
}

/// A validated event, ready to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Sensor-assigned id; together with the node and the account it makes a
    /// retried delivery recognisable, so ingest is idempotent.
    pub id: String,
    /// The sensor's node id: 32 lowercase hex digits.
    pub node: String,
    /// The connection's session id (a UUID as the sensor wrote it).
    pub session: String,
    /// When it happened, UTC epoch milliseconds.
    pub ts_ms: i64,
    pub protocol: Protocol,
    pub kind: EventKind,
    pub service: String,
    pub local_host: IpAddr,
    pub local_port: u16,
    pub remote_host: IpAddr,
    pub remote_port: u16,
    /// The payload as raw bytes; the wire carries it as hex.
    pub data: Vec<u8>,
    /// Where the remote host is, as the server's IP intelligence knew it at
    /// ingest; not part of the wire form.
    pub origin: Origin,
    /// Payload-history values and CVE sightings derived from `data` at
    /// ingest; not part of the wire form.
    pub facts: crate::PayloadFacts,
}

/// The network origin of a remote host, recorded with each stored event so
/// that per-ASN and per-country answers do not depend on today's feeds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Origin {
    /// Autonomous system number; 0 when unknown.
    pub asn: u32,
    /// ISO 3166-1 alpha-2 country code, when known.
    pub country: Option<[u8; 2]>,
}

impl Event {
    /// The payload as lowercase hex, as HoneyDB serves it in `data`.
    pub fn data_hex(&self) -> String {
        hex::encode(&self.data)
    }

    /// HoneyDB's `data_hash`: the MD5 of the hex string.
    pub fn data_hash(&self) -> String {
        md5_hex(self.data_hex().as_bytes())
    }

    /// The wire form, with the derived `bytes` and `data_hash` filled in.
    pub fn to_wire(&self) -> WireEvent {
        let (date, time, millisecond) = time::date_parts(self.ts_ms);
        let data = self.data_hex();
        WireEvent {
            id: Some(Flex::Str(self.id.clone())),
            node: Some(Flex::Str(self.node.clone())),
            session: Some(Flex::Str(self.session.clone())),
            date: Some(date),
            time: Some(time),
            millisecond: Some(Flex::Str(millisecond)),
            date_time: None,
            protocol: Some(self.protocol.as_str().to_owned()),
            event: Some(self.kind.as_str().to_owned()),
            service: Some(self.service.clone()),
            local_host: Some(self.local_host.to_string()),
            local_port: Some(Flex::Num(i64::from(self.local_port))),
            remote_host: Some(self.remote_host.to_string()),
            remote_port: Some(Flex::Num(i64::from(self.remote_port))),
            bytes: Some(Flex::Num(data.len() as i64)),
            data_hash: Some(md5_hex(data.as_bytes())),
            data: Some(data),
        }
    }
}

/// MD5 of `bytes` as 32 lowercase hex digits.
pub fn md5_hex(bytes: &[u8]) -> String {
    hex::encode(Md5::digest(bytes))
}

/// Whether `hash` (hex, any case) is the MD5 of `hex_text` as sent or of its
/// lowercase spelling. Checked for every ingested event, so without a
/// `String` per event, and without hashing nothing for every CONNECT.
fn data_hash_matches(hash: &str, hex_text: &str) -> bool {
    let mut sent = [0u8; 16];
    if hex::decode_to_slice(hash, &mut sent).is_err() {
        return false;
    }
    if hex_text.is_empty() {
        return sent == EMPTY_MD5;
    }
    if <[u8; 16]>::from(Md5::digest(hex_text.as_bytes())) == sent {
        return true;
    }
    hex_text.bytes().any(|b| b.is_ascii_uppercase())
        && <[u8; 16]>::from(Md5::digest(hex_text.to_ascii_lowercase().as_bytes())) == sent
}

/// The MD5 of no bytes.
const EMPTY_MD5: [u8; 16] =
    [0xd4, 0x1d, 0x8c, 0xd9, 0x8f, 0x00, 0xb2, 0x04, 0xe9, 0x80, 0x09, 0x98, 0xec, 0xf8, 0x42, 0x7e];

/// A JSON value that HoneyDB sends as a string in some places and producers
/// send as a number in others.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Flex {
    Str(String),
    Num(i64),
}

/// An event as it travels between sensor and server: every field optional and
/// numbers accepted as strings, so that validation can name exactly what is
/// wrong instead of failing the whole batch on a type error.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WireEvent {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Flex>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<Flex>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<Flex>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub millisecond: Option<Flex>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_port: Option<Flex>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_port: Option<Flex>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<Flex>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_hash: Option<String>,
}

/// Why an event was refused. The message names the field and the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("missing field `{0}`")]
    Missing(&'static str),
    #[error("field `{field}`: {problem}")]
    Invalid { field: &'static str, problem: String },
    #[error("not a JSON event object: {0}")]
    Json(String),
}

fn invalid(field: &'static str, problem: impl fmt::Display) -> EventError {
    EventError::Invalid { field, problem: problem.to_string() }
}

/// A wire event's fields borrowed from the request body where possible:
/// validation reads this, so a batch is checked without copying every
/// string of every event first.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct WireRef<'a> {
    #[serde(borrow, default)]
    id: Option<FlexRef<'a>>,
    #[serde(borrow, default)]
    node: Option<FlexRef<'a>>,
    #[serde(borrow, default)]
    session: Option<FlexRef<'a>>,
    #[serde(borrow, default, deserialize_with = "borrowed_text")]
    date: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed_text")]
    time: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    millisecond: Option<FlexRef<'a>>,
    #[serde(borrow, default, deserialize_with = "borrowed_text")]
    date_time: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed_text")]
    protocol: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed_text")]
    event: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed_text")]
    service: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed_text")]
    local_host: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    local_port: Option<FlexRef<'a>>,
    #[serde(borrow, default, deserialize_with = "borrowed_text")]
    remote_host: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    remote_port: Option<FlexRef<'a>>,
    #[serde(borrow, default, deserialize_with = "borrowed_text")]
    data: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    bytes: Option<FlexRef<'a>>,
    #[serde(borrow, default, deserialize_with = "borrowed_text")]
    data_hash: Option<Cow<'a, str>>,
}

impl<'a> WireRef<'a> {
    /// Reads `raw` on the fast path ([`crate::scan`]): a flat object whose
    /// strings hold no escapes, each field a string (or an integer where a
    /// number is allowed), no field twice. `None` for anything else, which
    /// the caller hands to `serde_json`; unknown members are ignored, as
    /// `serde_json` ignores them.
    pub(crate) fn scan(raw: &'a str) -> Option<WireRef<'a>> {
        use crate::scan::Scalar;
        fn flex<'a>(slot: &mut Option<FlexRef<'a>>, value: Scalar<'a>) -> bool {
            let value = match value {
                Scalar::Str(s) => FlexRef::Str(Cow::Borrowed(s)),
                Scalar::Int(n) => FlexRef::Num(n),
                Scalar::Literal => return false,
            };
            slot.replace(value).is_none()
        }
        fn string<'a>(slot: &mut Option<Cow<'a, str>>, value: Scalar<'a>) -> bool {
            match value {
                Scalar::Str(s) => slot.replace(Cow::Borrowed(s)).is_none(),
                _ => false,
            }
        }
        let mut w = WireRef::default();
        crate::scan::scan_flat(raw, |key, value| match key {
            "id" => flex(&mut w.id, value),
            "node" => flex(&mut w.node, value),
            "session" => flex(&mut w.session, value),
            "date" => string(&mut w.date, value),
            "time" => string(&mut w.time, value),
            "millisecond" => flex(&mut w.millisecond, value),
            "date_time" => string(&mut w.date_time, value),
            "protocol" => string(&mut w.protocol, value),
            "event" => string(&mut w.event, value),
            "service" => string(&mut w.service, value),
            "local_host" => string(&mut w.local_host, value),
            "local_port" => flex(&mut w.local_port, value),
            "remote_host" => string(&mut w.remote_host, value),
            "remote_port" => flex(&mut w.remote_port, value),
            "data" => string(&mut w.data, value),
            "bytes" => flex(&mut w.bytes, value),
            "data_hash" => string(&mut w.data_hash, value),
            _ => true,
        })?;
        Some(w)
    }
}

/// An optional string field, borrowed from the body unless it holds escapes.
///
/// `#[serde(borrow)]` borrows a `Cow<str>` field but not an `Option<Cow<str>>`:
/// serde then falls back to `Cow`'s own `Deserialize`, which always copies.
/// That was nine allocations (and copies, the payload's hex among them) per
/// ingested event.
fn borrowed_text<'de: 'a, 'a, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Cow<'a, str>>, D::Error> {
    struct Visitor<'a>(std::marker::PhantomData<&'a ()>);
    impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visitor<'a> {
        type Value = Option<Cow<'a, str>>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a string")
        }
        fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Borrowed(v)))
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v.to_owned())))
        }
        fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v)))
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_str(self)
        }
    }
    deserializer.deserialize_option(Visitor(std::marker::PhantomData))
}

fn borrow_str(v: &Option<String>) -> Option<Cow<'_, str>> {
    v.as_deref().map(Cow::Borrowed)
}

fn borrow_flex(v: &Option<Flex>) -> Option<FlexRef<'_>> {
    v.as_ref().map(FlexRef::from)
}

/// [`Flex`], borrowed.
///
/// Deserialized by hand rather than as an untagged enum: serde buffers an
/// untagged value and tries each variant in turn, and every number field of
/// every ingested event then built (and dropped) a "not a string" error
/// first: a few percent of ingest's parsing time.
#[derive(Debug)]
enum FlexRef<'a> {
    Str(Cow<'a, str>),
    Num(i64),
}

impl<'de: 'a, 'a> Deserialize<'de> for FlexRef<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visitor<'a> {
            type Value = FlexRef<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string or an integer")
            }
            fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(FlexRef::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(FlexRef::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(FlexRef::Str(Cow::Owned(v)))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(FlexRef::Num(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
                i64::try_from(v)
                    .map(FlexRef::Num)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(v), &self))
            }
        }
        deserializer.deserialize_any(Visitor(std::marker::PhantomData))
    }
}

impl FlexRef<'_> {
    fn as_integer(&self) -> Option<i64> {
        match self {
            FlexRef::Num(n) => Some(*n),
            FlexRef::Str(s) => s.trim().parse().ok(),
        }
    }

    fn as_text(&self) -> Cow<'_, str> {
        match self {
            FlexRef::Str(s) => Cow::Borrowed(s.as_ref()),
            FlexRef::Num(n) => Cow::Owned(n.to_string()),
        }
    }
}

impl<'a> From<&'a Flex> for FlexRef<'a> {
    fn from(f: &'a Flex) -> Self {
        match f {
            Flex::Str(s) => FlexRef::Str(Cow::Borrowed(s)),
            Flex::Num(n) => FlexRef::Num(*n),
        }
    }
}

impl WireEvent {
    /// Checks every field and produces the event storage accepts.
    ///
    /// `now_ms` bounds how far in the future a sensor clock may be.
    pub fn validate(&self, now_ms: i64) -> Result<Event, EventError> {
        WireRef {
            id: borrow_flex(&self.id),
            node: borrow_flex(&self.node),
            session: borrow_flex(&self.session),
            date: borrow_str(&self.date),
            time: borrow_str(&self.time),
            millisecond: borrow_flex(&self.millisecond),
            date_time: borrow_str(&self.date_time),
            protocol: borrow_str(&self.protocol),
            event: borrow_str(&self.event),
            service: borrow_str(&self.service),
            local_host: borrow_str(&self.local_host),
            local_port: borrow_flex(&self.local_port),
            remote_host: borrow_str(&self.remote_host),
            remote_port: borrow_flex(&self.remote_port),
            data: borrow_str(&self.data),
            bytes: borrow_flex(&self.bytes),
            data_hash: borrow_str(&self.data_hash),
        }
        .validate(now_ms)
    }
}

impl WireRef<'_> {
    /// Checks every field and produces the event storage accepts.
    pub(crate) fn validate(&self, now_ms: i64) -> Result<Event, EventError> {
        let id = self.id.as_ref().ok_or(EventError::Missing("id"))?.as_text().into_owned();
        if id.is_empty() || id.len() > MAX_ID_LEN || !id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(invalid("id", format!("must be 1 to {MAX_ID_LEN} printable ASCII characters")));
        }
        let node = self.node.as_ref().ok_or(EventError::Missing("node"))?.as_text().to_ascii_lowercase();
        if node.len() != 32 || !node.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid("node", "must be 32 hex digits"));
        }
        let session = self.session.as_ref().ok_or(EventError::Missing("session"))?.as_text().into_owned();
        if session.is_empty()
            || session.len() > MAX_SESSION_LEN
            || !session.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(invalid("session", "must be a UUID (hex digits and dashes)"));
        }
        let ts_ms = self.timestamp()?;
        if !(MIN_TS_MS..=now_ms + MAX_FUTURE_MS).contains(&ts_ms) {
            return Err(invalid("date", "outside 2000-01-01 .. tomorrow"));
        }
        let protocol = match self.protocol.as_deref().ok_or(EventError::Missing("protocol"))? {
            p if p.eq_ignore_ascii_case("tcp") => Protocol::Tcp,
            p if p.eq_ignore_ascii_case("udp") => Protocol::Udp,
            other => return Err(invalid("protocol", format!("{other:?} is not TCP or UDP"))),
        };
        let kind = match self.event.as_deref().ok_or(EventError::Missing("event"))? {
            k if k.eq_ignore_ascii_case("connect") => EventKind::Connect,
            k if k.eq_ignore_ascii_case("rx") => EventKind::Rx,
            k if k.eq_ignore_ascii_case("tx") => EventKind::Tx,
            k if k.eq_ignore_ascii_case("info") => EventKind::Info,
            other => return Err(invalid("event", format!("{other:?} is not CONNECT, RX, TX or INFO"))),
        };
        if kind == EventKind::Connect && protocol == Protocol::Udp {
            return Err(invalid("event", "CONNECT events are TCP only"));
        }
        let service = self.service.as_deref().ok_or(EventError::Missing("service"))?.to_owned();
        if service.is_empty()
            || service.len() > MAX_SERVICE_LEN
            || !service.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            return Err(invalid("service", format!("must be 1 to {MAX_SERVICE_LEN} letters, digits, '.', '_' or '-'")));
        }
        let remote_host =
            parse_ip("remote_host", self.remote_host.as_deref().ok_or(EventError::Missing("remote_host"))?)?;
        let local_host = match self.local_host.as_deref() {
            Some(s) if !s.is_empty() => parse_ip("local_host", s)?,
            _ => IpAddr::from([0, 0, 0, 0]),
        };
        let remote_port = parse_port("remote_port", self.remote_port.as_ref())?;
        let local_port = parse_port("local_port", self.local_port.as_ref())?;
        let hex_text = self.data.as_deref().unwrap_or("");
        if hex_text.len() > MAX_DATA_BYTES * 2 {
            return Err(invalid("data", format!("payload over {MAX_DATA_BYTES} bytes")));
        }
        let data = decode_hex(hex_text).map_err(|e| invalid("data", format!("not hex: {e}")))?;
        if kind == EventKind::Connect && !data.is_empty() {
            return Err(invalid("data", "CONNECT events carry no payload"));
        }
        if let Some(bytes) = &self.bytes {
            if bytes.as_integer() != Some(hex_text.len() as i64) {
                return Err(invalid("bytes", format!("must equal the hex length {}", hex_text.len())));
            }
        }
        if let Some(hash) = &self.data_hash {
            if !data_hash_matches(hash, hex_text) {
                return Err(invalid("data_hash", "is not the MD5 of the hex data"));
            }
        }
        Ok(Event {
            id,
            node,
            session,
            ts_ms,
            protocol,
            kind,
            service,
            local_host,
            local_port,
            remote_host,
            remote_port,
            data,
            origin: Origin::default(),
            facts: Default::default(),
        })
    }

    fn timestamp(&self) -> Result<i64, EventError> {
        if let (Some(date), Some(time)) = (&self.date, &self.time) {
            let ms = match &self.millisecond {
                None => 0,
                Some(m) => m
                    .as_integer()
                    .filter(|m| (0..1000).contains(m))
                    .ok_or_else(|| invalid("millisecond", "must be 0..999"))?,
            };
            return parse_date_time(date.as_ref(), time.as_ref())
                .map(|t| t + ms)
                .ok_or_else(|| invalid("date", "expected date YYYY-MM-DD and time HH:MM:SS"));
        }
        if let Some(dt) = &self.date_time {
            let (date, rest) =
                dt.split_once(' ').ok_or_else(|| invalid("date_time", "expected YYYY-MM-DD HH:MM:SS.mmm"))?;
            let (time, ms) = rest.split_once('.').unwrap_or((rest, "0"));
            let ms: i64 = ms
                .parse()
                .ok()
                .filter(|m| (0..1000).contains(m))
                .ok_or_else(|| invalid("date_time", "bad milliseconds"))?;
            return parse_date_time(date, time)
                .map(|t| t + ms)
                .ok_or_else(|| invalid("date_time", "expected YYYY-MM-DD HH:MM:SS.mmm"));
        }
        Err(EventError::Missing("date"))
    }
}

/// Parses `YYYY-MM-DD` and `HH:MM:SS` into epoch milliseconds, by hand: this
/// runs once per ingested event.
fn parse_date_time(date: &str, time: &str) -> Option<i64> {
    let d = date.as_bytes();
    let t = time.as_bytes();
    if d.len() != 10 || d[4] != b'-' || d[7] != b'-' || t.len() != 8 || t[2] != b':' || t[5] != b':' {
        return None;
    }
    let num = |s: &[u8]| -> Option<u32> {
        s.iter().try_fold(0u32, |acc, &b| b.is_ascii_digit().then(|| acc * 10 + u32::from(b - b'0')))
    };
    let (y, mo, da) = (num(&d[0..4])?, num(&d[5..7])?, num(&d[8..10])?);
    let (h, mi, s) = (num(&t[0..2])?, num(&t[3..5])?, num(&t[6..8])?);
    if h > 23 || mi > 59 || s > 59 {
        return None;
    }
    let day = chrono::NaiveDate::from_ymd_opt(y as i32, mo, da)?;
    let secs = day.and_hms_opt(h, mi, s)?.and_utc().timestamp();
    Some(secs * 1000)
}

fn parse_ip(field: &'static str, s: &str) -> Result<IpAddr, EventError> {
    let ip: IpAddr = s.trim().parse().map_err(|_| invalid(field, format!("{s:?} is not an IP address")))?;
    Ok(canonical_ip(ip))
}

/// IPv4-mapped IPv6 addresses (what a dual-stack socket reports) become IPv4,
/// so one attacker is one host whatever socket saw it.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

fn parse_port(field: &'static str, v: Option<&FlexRef<'_>>) -> Result<u16, EventError> {
    match v {
        None => Ok(0),
        Some(f) => f
            .as_integer()
            .and_then(|n| u16::try_from(n).ok())
            .ok_or_else(|| invalid(field, "must be a port number 0..65535")),
    }
}

/// Each byte's value as a hex digit (either case), or `NOT_HEX`.
const HEX_DIGITS: [u8; 256] = {
    let mut table = [NOT_HEX; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        table[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};
const NOT_HEX: u8 = 0xff;

/// Decodes a payload's hex text: a table lookup per digit into a buffer
/// sized once, with one check of all digits at the end, so the loop has no
/// branch the compiler must keep (the generic decoder's per-byte iterator
/// was a measurable share of ingest).
fn decode_hex(text: &str) -> Result<Vec<u8>, String> {
    let digits = text.as_bytes();
    if !digits.len().is_multiple_of(2) {
        return Err("odd number of digits".into());
    }
    let mut out = vec![0u8; digits.len() / 2];
    // Every valid digit is below 16; NOT_HEX sets the high bits.
    let mut seen = 0u8;
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let (high, low) = (HEX_DIGITS[usize::from(pair[0])], HEX_DIGITS[usize::from(pair[1])]);
        seen |= high | low;
        *byte = high << 4 | low;
    }
    if seen & 0xf0 != 0 {
        let at = digits.iter().position(|&d| HEX_DIGITS[usize::from(d)] == NOT_HEX).unwrap_or_default();
        let c = text[at..].chars().next().unwrap_or_default();
        return Err(format!("invalid character {c:?} at position {at}"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_fields_borrow_from_the_body_unless_escaped() {
        let line = r#"{"id":"1","date":"2026-11-27","time":"08:00:00","service":"SSH","remote_host":"192.0.2.1","data":"4142","data_hash":null,"event":"RX\u0041"}"#;
        let w: WireRef = serde_json::from_str(line).unwrap();
        for (name, field) in [
            ("date", &w.date),
            ("time", &w.time),
            ("service", &w.service),
            ("remote_host", &w.remote_host),
            ("data", &w.data),
        ] {
            assert!(matches!(field, Some(Cow::Borrowed(_))), "{name} was copied: {field:?}");
        }
        assert_eq!(w.data.as_deref(), Some("4142"));
        assert!(w.data_hash.is_none() && w.protocol.is_none(), "null and absent are both none");
        assert_eq!(w.event.as_deref(), Some("RXA"), "an escaped string is unescaped into a copy");
        let err = serde_json::from_str::<WireRef>(r#"{"service": 22}"#).unwrap_err().to_string();
        assert!(err.contains("expected a string"), "{err}");
    }

    #[test]
    fn data_hashes_are_checked_in_either_case() {
        assert_eq!(md5_hex(b""), hex::encode(EMPTY_MD5));
        let hex_text = "4142";
        let hash = md5_hex(hex_text.as_bytes());
        assert!(data_hash_matches(&hash, hex_text));
        assert!(data_hash_matches(&hash.to_ascii_uppercase(), hex_text));
        let upper = "4A4B";
        assert!(data_hash_matches(&md5_hex(upper.as_bytes()), upper), "the hash of the text as sent");
        assert!(data_hash_matches(&md5_hex(b"4a4b"), upper), "or of its lowercase spelling");
        assert!(data_hash_matches(&md5_hex(b""), ""));
        for bad in ["", "00", "zz".repeat(16).as_str(), &md5_hex(b"4143")] {
            assert!(!data_hash_matches(bad, hex_text), "{bad}");
        }
        assert!(!data_hash_matches(&md5_hex(b"41"), ""));
    }

    #[test]
    fn payload_hex_decodes_either_case_and_names_a_bad_digit() {
        let every_byte: Vec<u8> = (0..=255).collect();
        assert_eq!(decode_hex(&hex::encode(&every_byte)), Ok(every_byte.clone()));
        assert_eq!(decode_hex(&hex::encode_upper(&every_byte)), Ok(every_byte));
        assert_eq!(decode_hex("abc"), Err("odd number of digits".into()));
        assert_eq!(decode_hex("0g"), Err("invalid character 'g' at position 1".into()));
        assert_eq!(decode_hex("é00"), Err("invalid character 'é' at position 0".into()));
    }

    pub(crate) fn sample() -> WireEvent {
        serde_json::from_str(
            r#"{"id":"e1","node":"3386e49be694e179a429344f745703d6","session":"0f0e6d5c-1111-4aaa-8bbb-123456789abc",
            "date":"2026-11-26","time":"10:11:12","millisecond":"345","protocol":"TCP","event":"RX","service":"SSH",
            "local_host":"10.0.0.1","local_port":"22","remote_host":"::ffff:1.2.3.4","remote_port":40000,"data":"5353482d"}"#,
        )
        .unwrap()
    }

    const NOW: i64 = 1_800_000_000_000;

    #[test]
    fn valid_event_round_trips() {
        let e = sample().validate(NOW).unwrap();
        assert_eq!(e.remote_host.to_string(), "1.2.3.4");
        assert_eq!(e.data, b"SSH-");
        assert_eq!(e.ts_ms % 1000, 345);
        let w = e.to_wire();
        assert_eq!(w.bytes, Some(Flex::Num(8)));
        assert_eq!(w.validate(NOW).unwrap(), e);
    }

    #[test]
    fn rejects_with_field_names() {
        let mut w = sample();
        w.data = Some("zz".into());
        assert!(w.validate(NOW).unwrap_err().to_string().contains("`data`"));
        let mut w = sample();
        w.remote_host = Some("not-an-ip".into());
        assert!(w.validate(NOW).unwrap_err().to_string().contains("remote_host"));
        let mut w = sample();
        w.event = Some("CONNECT".into());
        assert!(w.validate(NOW).unwrap_err().to_string().contains("no payload"));
        let mut w = sample();
        w.data_hash = Some("00".repeat(16));
        assert!(w.validate(NOW).is_err());
        let mut w = sample();
        w.time = Some("24:00:00".into());
        assert!(w.validate(NOW).is_err());
        let mut w = sample();
        w.service = Some("bad service".into());
        assert!(w.validate(NOW).is_err());
    }

    /// Numbers may come as JSON numbers or strings (escaped or not); anything
    /// else is a clear error naming what was expected.
    #[test]
    fn flexible_fields_borrow_numbers_and_strings() {
        let line = |port: &str| {
            format!(
                r#"{{"id":"e\u0031","node":"3386e49be694e179a429344f745703d6","session":"s","date":"2026-11-26",
                "time":"10:11:12","millisecond":7,"protocol":"TCP","event":"CONNECT","service":"SSH",
                "local_host":"10.0.0.1","local_port":"22","remote_host":"1.2.3.4","remote_port":{port}}}"#
            )
        };
        for port in ["40000", "\"40000\"", "\" 40000 \""] {
            let text = line(port);
            let w: WireRef = serde_json::from_str(&text).unwrap();
            let e = w.validate(NOW).unwrap();
            assert_eq!((e.remote_port, e.id.as_str(), e.ts_ms % 1000), (40000, "e1", 7), "port {port}");
        }
        for (port, expected) in
            [("true", "a string or an integer"), ("1.5", "a string or an integer"), ("18446744073709551615", "integer")]
        {
            let err = serde_json::from_str::<WireRef>(&line(port)).unwrap_err().to_string();
            assert!(err.contains(expected), "port {port}: {err}");
        }
    }

    #[test]
    fn accepts_date_time_form() {
        let mut w = sample();
        w.date = None;
        w.time = None;
        w.millisecond = None;
        w.date_time = Some("2026-11-26 10:11:12.345".into());
        assert_eq!(w.validate(NOW).unwrap(), sample().validate(NOW).unwrap());
    }

    proptest::proptest! {
        #[test]
        fn any_payload_round_trips(data in proptest::collection::vec(proptest::num::u8::ANY, 0..512), ms in 0i64..1000) {
            let mut w = sample();
            w.data = Some(hex::encode(&data));
            w.millisecond = Some(Flex::Num(ms));
            let e = w.validate(NOW).unwrap();
            proptest::prop_assert_eq!(&e.data, &data);
            proptest::prop_assert_eq!(e.to_wire().validate(NOW).unwrap(), e);
        }

        #[test]
        fn never_panics_on_strings(s in ".{0,40}") {
            let mut w = sample();
            w.date = Some(s.clone());
            w.remote_host = Some(s.clone());
            let _ = w.validate(NOW);
        }
    }

    /// The fast path reads exactly what serde reads, or leaves the text to
    /// serde: for any flat object built from the pieces below (known and
    /// unknown keys, strings with and without escapes, integers, floats,
    /// literals, repeated keys, stray whitespace).
    mod scan_agrees_with_serde {
        use super::super::WireRef;
        use proptest::prelude::*;

        fn key() -> impl Strategy<Value = String> {
            prop_oneof![
                proptest::sample::select(vec![
                    "id",
                    "node",
                    "session",
                    "date",
                    "time",
                    "millisecond",
                    "date_time",
                    "protocol",
                    "event",
                    "service",
                    "local_host",
                    "local_port",
                    "remote_host",
                    "remote_port",
                    "data",
                    "bytes",
                    "data_hash",
                ])
                .prop_map(str::to_owned),
                "[a-z_]{1,8}",
            ]
        }

        fn value() -> impl Strategy<Value = String> {
            prop_oneof![
                "[ -!#-\\[\\]-~é☃]{0,12}".prop_map(|s| format!("\"{s}\"")),
                "[a-z]{0,4}\\\\[nt\"\\\\/][a-z]{0,4}".prop_map(|s| format!("\"{s}\"")),
                any::<i64>().prop_map(|n| n.to_string()),
                "-?[0-9]{1,22}",
                "-?[0-9]{1,3}\\.[0-9]{1,3}",
                proptest::sample::select(vec!["true", "false", "null", "{}", "[]", "{\"a\":1}", "tru", "-"])
                    .prop_map(str::to_owned),
            ]
        }

        fn ws() -> impl Strategy<Value = &'static str> {
            proptest::sample::select(vec!["", "", "", " ", "\t", "\r\n", "  "])
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]
            #[test]
            fn on_any_flat_object(members in proptest::collection::vec((key(), value(), ws()), 0..8), end in ws()) {
                let body: Vec<String> = members.iter().map(|(k, v, w)| format!("{w}\"{k}\"{w}:{w}{v}{w}")).collect();
                let text = format!("{end}{{{}}}{end}", body.join(","));
                if let Some(fast) = WireRef::scan(&text) {
                    let slow = serde_json::from_str::<WireRef>(&text);
                    prop_assert!(slow.is_ok(), "fast path took {text:?}, serde refuses it: {slow:?}");
                    prop_assert_eq!(format!("{fast:?}"), format!("{:?}", slow.unwrap()), "{}", text);
                }
            }
        }

        #[test]
        fn takes_what_sensors_send() {
            let line = r#"{"id":"7","node":"3386e49be694e179a429344f745703d6","session":"s-1","date":"2026-11-26","time":"10:11:12","millisecond":"001","protocol":"TCP","event":"RX","service":"SSH","local_host":"10.0.0.1","local_port":22,"remote_host":"1.2.3.4","remote_port":"4711","data":"6869","bytes":4}"#;
            let fast = WireRef::scan(line).expect("the common shape is on the fast path");
            assert_eq!(format!("{fast:?}"), format!("{:?}", serde_json::from_str::<WireRef>(line).unwrap()));
        }
    }
}
