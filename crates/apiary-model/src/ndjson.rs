//! Parsing an ingest body: a JSON array of events or NDJSON, one per line.
//!
//! A batch is never rejected whole for one bad event: each element is parsed
//! and validated on its own and refused by index, so the good ones are kept.

use serde::Serialize;
use serde_json::value::RawValue;

use crate::event::{Event, EventError, WireRef};

/// One refused event: its position in the batch and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RejectedEvent {
    pub index: usize,
    pub error: String,
}

#[derive(Debug, Default)]
pub struct ParsedBatch {
    /// The valid events, in batch order: every index not in `rejected`.
    pub events: Vec<Event>,
    pub rejected: Vec<RejectedEvent>,
}

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("body is not a JSON array of events: {0}")]
    NotArray(String),
    #[error("batch holds {count} events, more than the limit of {limit}")]
    TooMany { count: usize, limit: usize },
    #[error("body is not UTF-8")]
    NotUtf8,
}

/// Parses and validates a batch. The body is a JSON array when its first
/// non-blank byte is `[`, NDJSON otherwise (blank lines are skipped and do not
/// count as events).
pub fn parse_batch(body: &[u8], max_events: usize, now_ms: i64) -> Result<ParsedBatch, BatchError> {
    parse_batch_on(body, max_events, now_ms, 1)
}

/// Fewest events worth a thread of their own in [`parse_batch_on`].
const MIN_EVENTS_PER_THREAD: usize = 1000;

/// [`parse_batch`] on up to `threads` threads, each taking a contiguous part
/// of the batch (of at least [`MIN_EVENTS_PER_THREAD`] events). For a server
/// with fewer senders than cores: one large batch then no longer waits for
/// one core to parse it while the others idle.
pub fn parse_batch_on(body: &[u8], max_events: usize, now_ms: i64, threads: usize) -> Result<ParsedBatch, BatchError> {
    let text = std::str::from_utf8(body).map_err(|_| BatchError::NotUtf8)?;
    let trimmed = text.trim_start();
    let items: Vec<&str> = if trimmed.starts_with('[') {
        let items: Vec<&RawValue> = serde_json::from_str(trimmed).map_err(|e| BatchError::NotArray(e.to_string()))?;
        items.into_iter().map(RawValue::get).collect()
    } else {
        ndjson_lines(trimmed)
    };
    if items.len() > max_events {
        return Err(BatchError::TooMany { count: items.len(), limit: max_events });
    }
    let threads = threads.clamp(1, (items.len() / MIN_EVENTS_PER_THREAD).max(1));
    if threads == 1 {
        return Ok(parse_items(&items, 0, now_ms));
    }
    let per_thread = items.len().div_ceil(threads);
    let parts: Vec<ParsedBatch> = std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(per_thread)
            .enumerate()
            .map(|(i, part)| scope.spawn(move || parse_items(part, i * per_thread, now_ms)))
            .collect();
        // A parsing thread only panics if parsing itself does, as it
        // would on the calling thread: pass the panic on.
        handles.into_iter().map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
    });
    let mut batch = ParsedBatch::default();
    batch.events.reserve(items.len());
    for part in parts {
        batch.events.extend(part.events);
        batch.rejected.extend(part.rejected);
    }
    Ok(batch)
}

/// The non-blank lines of an NDJSON body, as `str::lines` cuts them (a
/// `\r` right before a `\n` is not part of the line), but with a vectorised
/// search for line ends: the bytewise one was a thirtieth of a bulk load's
/// parsing.
fn ndjson_lines(text: &str) -> Vec<&str> {
    fn keep<'a>(lines: &mut Vec<&'a str>, line: &'a str) {
        if !line.trim().is_empty() {
            lines.push(line);
        }
    }
    let mut lines = Vec::new();
    let mut start = 0;
    for end in memchr::memchr_iter(b'\n', text.as_bytes()) {
        // Line ends are ASCII: both cuts fall on character boundaries.
        let line = &text[start..end];
        keep(&mut lines, line.strip_suffix('\r').unwrap_or(line));
        start = end + 1;
    }
    keep(&mut lines, &text[start..]);
    lines
}

/// Parses and validates `items`, the first of which is event `first_index`
/// of the batch.
fn parse_items(items: &[&str], first_index: usize, now_ms: i64) -> ParsedBatch {
    let mut batch = ParsedBatch { events: Vec::with_capacity(items.len()), rejected: Vec::new() };
    for (i, raw) in items.iter().enumerate() {
        let index = first_index + i;
        // The common shape on the fast path, anything else through serde.
        let result = match WireRef::scan(raw) {
            Some(w) => Ok(w),
            None => serde_json::from_str::<WireRef>(raw).map_err(|e| EventError::Json(e.to_string())),
        }
        .and_then(|w| w.validate(now_ms));
        match result {
            Ok(event) => batch.events.push(event),
            Err(e) => batch.rejected.push(RejectedEvent { index, error: e.to_string() }),
        }
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(id: &str) -> String {
        format!(
            r#"{{"id":"{id}","node":"3386e49be694e179a429344f745703d6","session":"s-1","date":"2026-11-26","time":"10:11:12","millisecond":"1","protocol":"TCP","event":"CONNECT","service":"SSH","remote_host":"1.2.3.4","remote_port":"1"}}"#
        )
    }

    #[test]
    fn array_and_ndjson_agree() {
        let now = 1_800_000_000_000;
        let arr = format!("[{},{}]", line("a"), line("b"));
        let nd = format!("{}\n\n{}\n", line("a"), line("b"));
        let a = parse_batch(arr.as_bytes(), 10, now).unwrap();
        let n = parse_batch(nd.as_bytes(), 10, now).unwrap();
        assert_eq!(a.events.len(), 2);
        assert_eq!(a.events, n.events);
    }

    #[test]
    fn bad_element_is_reported_by_index() {
        let body = format!("[{}, 17, {}]", line("a"), line("c"));
        let b = parse_batch(body.as_bytes(), 10, 1_800_000_000_000).unwrap();
        assert_eq!(b.events.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), vec!["a", "c"]);
        assert_eq!(b.rejected.iter().map(|r| r.index).collect::<Vec<_>>(), vec![1]);
    }

    #[test]
    fn escaped_strings_are_decoded_not_refused() {
        let escaped = line("a").replace("\"session\":\"s-1\"", "\"session\":\"s\\u002d1\"");
        assert!(escaped.contains("u002d"));
        let b = parse_batch(escaped.as_bytes(), 10, 1_800_000_000_000).unwrap();
        assert_eq!(b.events[0].session, "s-1");
    }

    #[test]
    fn a_batch_parsed_on_several_threads_is_the_batch_parsed_on_one() {
        let now = 1_800_000_000_000;
        // 3,500 events, one bad line in every part, and blank lines that
        // do not count: indexes must run on across the parts.
        let mut body = String::new();
        for i in 0..3500 {
            if i % 1000 == 7 {
                body.push_str("{\"id\": 17}\n\n");
            } else {
                body.push_str(&line(&format!("e{i}")));
                body.push('\n');
            }
        }
        let one = parse_batch(body.as_bytes(), 5000, now).unwrap();
        for threads in [2, 3, 8] {
            let many = parse_batch_on(body.as_bytes(), 5000, now, threads).unwrap();
            assert_eq!(many.events, one.events, "{threads} threads");
            assert_eq!(many.rejected, one.rejected, "{threads} threads");
        }
        assert_eq!(one.rejected.iter().map(|r| r.index).collect::<Vec<_>>(), vec![7, 1007, 2007, 3007]);
        assert_eq!(one.events.len(), 3496);
        assert!(matches!(parse_batch_on(body.as_bytes(), 3499, now, 4), Err(BatchError::TooMany { .. })));
    }

    #[test]
    fn lines_are_cut_as_str_lines_cuts_them() {
        for text in ["", "\n", "a", "a\n", "a\r\nb", "a\n\n \t\nb\r\n", "\r\n\r\n", "é\nü\r", "a\r\r\nb\n\u{2003}\n"]
        {
            let expected: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
            assert_eq!(ndjson_lines(text), expected, "{text:?}");
        }
    }

    #[test]
    fn limits_and_garbage() {
        let body = format!("[{},{}]", line("a"), line("b"));
        assert!(matches!(parse_batch(body.as_bytes(), 1, 0), Err(BatchError::TooMany { .. })));
        assert!(matches!(parse_batch(b"[1,", 1, 0), Err(BatchError::NotArray(_))));
        assert!(matches!(parse_batch(&[0xff, 0xfe], 1, 0), Err(BatchError::NotUtf8)));
    }
}
