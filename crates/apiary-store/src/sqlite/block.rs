//! The on-disk encoding of a block of raw events.
//!
//! Raw events are stored in blocks of up to [`MAX_BLOCK_EVENTS`] consecutive
//! events of one account and one day, one row per block: a row per event
//! would cost several B-tree inserts per event (table plus indexes), a block
//! costs them once per thousand events. Event ids inside a block are
//! contiguous (`first_id + position`), so they are not stored.
//!
//! The format is a version byte, the length of the records, then the records
//! (varints and length-prefixed byte strings) compressed with LZ4: honeypot
//! traffic repeats itself, and every byte saved is written twice (WAL and
//! database). Blocks are encoded by the ingesting thread, not the writer.
//! Decoding never trusts the bytes: a malformed block is an error, never a
//! panic or an unbounded allocation.

use std::net::IpAddr;
use std::ops::Range;

use apiary_model::{Event, EventKind, Protocol};

use super::chunk::put_varint;
use super::claims::{event_key, Key};
use crate::types::{AccountId, StoredEvent};

/// Most events in one block: a page of `/sensor-data` (1000 events) then
/// decodes at most two blocks.
pub(crate) const MAX_BLOCK_EVENTS: usize = 1000;

const FORMAT_VERSION: u8 = 1;
/// Largest decoded block accepted: every event at its payload limit.
const MAX_DECODED: usize = MAX_BLOCK_EVENTS * (apiary_model::MAX_DATA_BYTES + 512);

#[derive(Debug, thiserror::Error)]
#[error("corrupt event block: {0}")]
pub(crate) struct CorruptBlock(&'static str);

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn put_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            out.push(4);
            out.extend_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            out.push(6);
            out.extend_from_slice(&v6.octets());
        }
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// A batch's events on their way to the writer, cut into blocks of one
/// account and day and already encoded. The blocks are ranges of `events`
/// rather than vectors of their own: cut into vectors, every event (a few
/// hundred bytes) was moved once more, into memory freshly faulted in.
pub(crate) struct PreparedEvents {
    /// The batch's events, grouped by day (arrival order within a day).
    pub events: Vec<Event>,
    /// The events' idempotency keys, in the same order.
    pub keys: Vec<Key>,
    pub blocks: Vec<PreparedBlock>,
}

/// One block of [`PreparedEvents`]. `data` is valid for all of its events;
/// the writer re-encodes only when some of them turn out to be duplicates.
pub(crate) struct PreparedBlock {
    pub day: i64,
    /// Where the block's events (and their keys) are.
    pub range: Range<usize>,
    pub data: Vec<u8>,
}

impl PreparedEvents {
    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn events_of(&self, block: &PreparedBlock) -> &[Event] {
        &self.events[block.range.clone()]
    }

    pub fn keys_of(&self, block: &PreparedBlock) -> &[Key] {
        &self.keys[block.range.clone()]
    }
}

/// Groups a batch into blocks by day, in arrival order within a day, and
/// encodes each: the expensive part of storing raw events, done on the
/// caller's thread so the single writer does not have to, as are the
/// events' idempotency keys (sent by `owner`).
pub(crate) fn prepare(owner: AccountId, events: Vec<Event>) -> PreparedEvents {
    // A batch is nearly always of one day: then its events stay where they
    // are. Otherwise they are grouped by day, each moved once.
    let day_of = |e: &Event| apiary_model::time::day_number(e.ts_ms);
    let first_day = events.first().map(day_of);
    let (events, days): (Vec<Event>, Vec<(i64, usize)>) = match first_day {
        None => (events, Vec::new()),
        Some(day) if events.iter().all(|e| day_of(e) == day) => {
            let n = events.len();
            (events, vec![(day, n)])
        }
        Some(_) => {
            let mut by_day: Vec<(i64, Vec<Event>)> = Vec::new();
            for e in events {
                let day = day_of(&e);
                match by_day.iter_mut().find(|(d, _)| *d == day) {
                    Some((_, v)) => v.push(e),
                    None => by_day.push((day, vec![e])),
                }
            }
            let days = by_day.iter().map(|(day, v)| (*day, v.len())).collect();
            (by_day.into_iter().flat_map(|(_, v)| v).collect(), days)
        }
    };
    let keys = events.iter().map(|e| event_key(owner, &e.node, &e.id, e.ts_ms)).collect();
    let mut blocks = Vec::new();
    let mut start = 0;
    for (day, count) in days {
        let end_of_day = start + count;
        while start < end_of_day {
            let range = start..(start + MAX_BLOCK_EVENTS).min(end_of_day);
            let data = encode(events[range.clone()].iter());
            start = range.end;
            blocks.push(PreparedBlock { day, range, data });
        }
    }
    PreparedEvents { events, keys, blocks }
}

/// Encodes events (all of one account and day, in id order).
pub(crate) fn encode<'a>(events: impl Iterator<Item = &'a Event> + Clone) -> Vec<u8> {
    let records = encode_records(events);
    let mut out = Vec::with_capacity(records.len() / 2 + 16);
    out.push(FORMAT_VERSION);
    put_varint(&mut out, records.len() as u64);
    out.extend_from_slice(&lz4_flex::block::compress(&records));
    out
}

fn encode_records<'a>(events: impl Iterator<Item = &'a Event> + Clone) -> Vec<u8> {
    // Sized for the records up front: grown by doubling, a block's bytes
    // were copied about once more on their way.
    let size: usize =
        events.clone().map(|e| e.data.len() + e.session.len() + e.service.len() + e.node.len() + 64).sum();
    let mut out = Vec::with_capacity(size);
    let mut prev_ts = 0i64;
    for e in events {
        put_varint(&mut out, zigzag(e.ts_ms - prev_ts));
        prev_ts = e.ts_ms;
        out.push(e.protocol.code());
        out.push(e.kind.code());
        put_bytes(&mut out, e.session.as_bytes());
        put_bytes(&mut out, e.service.as_bytes());
        put_bytes(&mut out, e.node.as_bytes());
        put_ip(&mut out, e.remote_host);
        put_varint(&mut out, u64::from(e.remote_port));
        put_ip(&mut out, e.local_host);
        put_varint(&mut out, u64::from(e.local_port));
        put_bytes(&mut out, &e.data);
        put_varint(&mut out, u64::from(e.origin.asn));
        out.extend_from_slice(&e.origin.country.unwrap_or([0, 0]));
    }
    out
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, CorruptBlock> {
        let (&b, rest) = self.buf.split_first().ok_or(CorruptBlock("truncated"))?;
        self.buf = rest;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, CorruptBlock> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(CorruptBlock("varint too long"))
    }

    fn bytes(&mut self) -> Result<&'a [u8], CorruptBlock> {
        let len = usize::try_from(self.varint()?).map_err(|_| CorruptBlock("length"))?;
        if len > self.buf.len() {
            return Err(CorruptBlock("length past end"));
        }
        let (b, rest) = self.buf.split_at(len);
        self.buf = rest;
        Ok(b)
    }

    fn text(&mut self) -> Result<String, CorruptBlock> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| CorruptBlock("text is not UTF-8"))
    }

    fn ip(&mut self) -> Result<IpAddr, CorruptBlock> {
        match self.byte()? {
            4 => {
                let b = self.fixed::<4>()?;
                Ok(IpAddr::from(b))
            }
            6 => {
                let b = self.fixed::<16>()?;
                Ok(IpAddr::from(b))
            }
            _ => Err(CorruptBlock("address tag")),
        }
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], CorruptBlock> {
        if self.buf.len() < N {
            return Err(CorruptBlock("truncated address"));
        }
        let (b, rest) = self.buf.split_at(N);
        self.buf = rest;
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        Ok(out)
    }

    fn port(&mut self) -> Result<u16, CorruptBlock> {
        u16::try_from(self.varint()?).map_err(|_| CorruptBlock("port"))
    }
}

/// Decodes a block whose first event has id `first_id`, keeping the events
/// with ids above `after_id`, at most `limit` of them.
pub(crate) fn decode(
    first_id: i64,
    block: &[u8],
    after_id: i64,
    limit: usize,
    out: &mut Vec<StoredEvent>,
) -> Result<(), CorruptBlock> {
    let mut header = Reader { buf: block };
    if header.byte()? != FORMAT_VERSION {
        return Err(CorruptBlock("unknown format version"));
    }
    let len = usize::try_from(header.varint()?).map_err(|_| CorruptBlock("length"))?;
    if len > MAX_DECODED {
        return Err(CorruptBlock("decoded length over the limit"));
    }
    let mut records = vec![0u8; len];
    let n = lz4_flex::block::decompress_into(header.buf, &mut records).map_err(|_| CorruptBlock("compression"))?;
    if n != len {
        return Err(CorruptBlock("decoded length differs"));
    }
    let mut r = Reader { buf: &records };
    let mut ts = 0i64;
    let mut id = first_id;
    while !r.buf.is_empty() && out.len() < limit {
        ts = ts.wrapping_add(unzigzag(r.varint()?));
        let protocol = Protocol::from_code(r.byte()?).ok_or(CorruptBlock("protocol"))?;
        let kind = EventKind::from_code(r.byte()?).ok_or(CorruptBlock("event kind"))?;
        let session = r.text()?;
        let service = r.text()?;
        let node = r.text()?;
        let remote_host = r.ip()?;
        let remote_port = r.port()?;
        let local_host = r.ip()?;
        let local_port = r.port()?;
        let data = r.bytes()?;
        let asn = u32::try_from(r.varint()?).map_err(|_| CorruptBlock("asn"))?;
        let country = r.fixed::<2>()?;
        if id > after_id {
            out.push(StoredEvent {
                id,
                ts_ms: ts,
                session,
                protocol,
                kind,
                service,
                remote_host: remote_host.to_string(),
                remote_port,
                local_host: local_host.to_string(),
                local_port,
                data: data.to_vec(),
                node,
                asn,
                country: (country != [0, 0]).then(|| String::from_utf8_lossy(&country).into_owned()),
            });
        }
        id += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(i: i64) -> Event {
        Event {
            id: format!("e{i}"),
            node: "3386e49be694e179a429344f745703d6".into(),
            session: "s".into(),
            ts_ms: 1_795_000_000_000 + i * 17 - (i % 3) * 1000,
            protocol: Protocol::Tcp,
            kind: EventKind::Rx,
            service: "SSH".into(),
            local_host: "10.0.0.1".parse().unwrap(),
            local_port: 22,
            remote_host: if i % 2 == 0 { "1.2.3.4".parse().unwrap() } else { "2001:db8::1".parse().unwrap() },
            remote_port: 40000,
            data: vec![i as u8; (i % 50) as usize],
            origin: apiary_model::Origin { asn: i as u32, country: Some(*b"NL") },
            facts: Default::default(),
        }
    }

    #[test]
    fn round_trip_and_paging_within_a_block() {
        let events: Vec<Event> = (0..100).map(event).collect();
        let block = encode(events.iter());
        let mut out = Vec::new();
        decode(500, &block, 0, usize::MAX, &mut out).unwrap();
        assert_eq!(out.len(), 100);
        for (i, (s, e)) in out.iter().zip(&events).enumerate() {
            assert_eq!(s.id, 500 + i as i64);
            assert_eq!((s.ts_ms, &s.data, s.remote_host.clone()), (e.ts_ms, &e.data, e.remote_host.to_string()));
            assert_eq!((s.asn, s.country.as_deref()), (e.origin.asn, Some("NL")));
        }
        out.clear();
        decode(500, &block, 549, 10, &mut out).unwrap();
        assert_eq!(out.iter().map(|e| e.id).collect::<Vec<_>>(), (550..560).collect::<Vec<_>>());
    }

    #[test]
    fn a_batch_of_several_days_is_cut_into_blocks_of_one_day_in_arrival_order() {
        const DAY: i64 = apiary_model::time::MS_PER_DAY;
        // 2,600 events over three days, interleaved: day 0 gets 1,300
        // (two blocks), days 1 and 2 get 650 each.
        let events: Vec<Event> = (0..2600)
            .map(|i| {
                let mut e = event(i);
                e.ts_ms = 1_795_000_000_000 - 1_795_000_000_000 % DAY + [0, DAY, 0, 2 * DAY][i as usize % 4] + i;
                e
            })
            .collect();
        let prepared = prepare(7, events.clone());
        assert_eq!(prepared.len(), events.len());
        let mut seen_days = Vec::new();
        let mut next = 0;
        for block in &prepared.blocks {
            assert_eq!(block.range.start, next, "blocks cover the events in order, without gaps");
            next = block.range.end;
            let of_block = prepared.events_of(block);
            assert!(!of_block.is_empty() && of_block.len() <= MAX_BLOCK_EVENTS);
            assert!(of_block.iter().all(|e| apiary_model::time::day_number(e.ts_ms) == block.day));
            for (e, key) in of_block.iter().zip(prepared.keys_of(block)) {
                assert_eq!(*key, event_key(7, &e.node, &e.id, e.ts_ms));
            }
            let mut decoded = Vec::new();
            decode(1, &block.data, 0, usize::MAX, &mut decoded).unwrap();
            let decoded: Vec<_> = decoded.iter().map(|d| (d.ts_ms, d.data.clone())).collect();
            let expected: Vec<_> = of_block.iter().map(|e| (e.ts_ms, e.data.clone())).collect();
            assert_eq!(decoded, expected);
            if seen_days.last() != Some(&block.day) {
                seen_days.push(block.day);
            }
        }
        assert_eq!(next, events.len());
        let day0 = apiary_model::time::day_number(events[0].ts_ms);
        assert_eq!(seen_days, vec![day0, day0 + 1, day0 + 2], "days in order of first arrival, each once");
        assert_eq!(prepared.blocks.iter().map(|b| b.range.len()).collect::<Vec<_>>(), vec![1000, 300, 650, 650]);
        // Within a day, the events keep their arrival order.
        let day0_ids: Vec<&str> = prepared.events[..1300].iter().map(|e| e.id.as_str()).collect();
        let expected: Vec<String> = (0..2600).filter(|i| i % 2 == 0).map(|i| format!("e{i}")).collect();
        assert_eq!(day0_ids, expected.iter().map(String::as_str).collect::<Vec<_>>());
    }

    #[test]
    fn corrupt_blocks_are_errors_not_panics() {
        let block = encode((0..5).map(event).collect::<Vec<_>>().iter());
        for cut in 0..block.len() {
            let _ = decode(1, &block[..cut], 0, usize::MAX, &mut Vec::new());
        }
        let mut bad = block.clone();
        bad[0] = 99;
        assert!(decode(1, &bad, 0, usize::MAX, &mut Vec::new()).is_err());
        let huge_len = [1u8, 0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0];
        assert!(decode(1, &huge_len, 0, usize::MAX, &mut Vec::new()).is_err());
    }
}
