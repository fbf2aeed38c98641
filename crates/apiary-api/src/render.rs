//! Hand-written renderers for the large answers.
//!
//! Bad-hosts lists run to hundreds of thousands of rows; writing them straight
//! into a byte buffer is several times faster than building JSON values, and
//! the result is cached and shared by every client that downloads it.

use apiary_model::time::{date_parts, day_string, MS_PER_DAY};
use apiary_store::{BadHost, StoredEvent};

/// Appends `s` as a JSON string literal.
pub(crate) fn json_str(out: &mut Vec<u8>, s: &str) {
    // serde_json's escaping is correct for every input; strings here are short.
    serde_json::to_writer(&mut *out, s).expect("writing to a Vec cannot fail");
}

fn push_int(out: &mut Vec<u8>, n: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// `[{"remote_host":"1.2.3.4","count":"203","last_seen":"2026-11-26"}, ...]`
pub(crate) fn bad_hosts_json(rows: &[BadHost]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows.len() * 64 + 2);
    out.push(b'[');
    let mut days = DayNames::default();
    for (i, row) in rows.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"remote_host\":");
        json_str(&mut out, &row.host);
        out.extend_from_slice(b",\"count\":\"");
        push_int(&mut out, row.count);
        out.extend_from_slice(b"\",\"last_seen\":\"");
        out.extend_from_slice(days.name(row.last_ms).as_bytes());
        out.extend_from_slice(b"\"}");
    }
    out.push(b']');
    out
}

/// The same rows as CSV: header always present, `\n` line ends, cells that a
/// spreadsheet would take for a formula prefixed with `'`.
pub(crate) fn bad_hosts_csv(rows: &[BadHost]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows.len() * 40 + 32);
    out.extend_from_slice(b"remote_host,count,last_seen\n");
    let mut days = DayNames::default();
    let mut count = itoa::Buffer::new();
    for row in rows {
        csv_cell(&mut out, &row.host);
        out.push(b',');
        csv_cell(&mut out, count.format(row.count));
        out.push(b',');
        let day = days.name(row.last_ms).to_owned();
        csv_cell(&mut out, &day);
        out.push(b'\n');
    }
    out
}

/// One CSV cell: formula neutralised, then quoted when it needs quoting.
pub(crate) fn csv_cell(out: &mut Vec<u8>, cell: &str) {
    let formula = matches!(cell.as_bytes().first(), Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r'));
    let needs_quotes = cell.bytes().any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r'));
    if needs_quotes {
        out.push(b'"');
    }
    if formula {
        out.push(b'\'');
    }
    for b in cell.bytes() {
        if b == b'"' {
            out.push(b'"');
        }
        out.push(b);
    }
    if needs_quotes {
        out.push(b'"');
    }
}

/// Caches the last day's `YYYY-MM-DD`: consecutive rows mostly share it.
#[derive(Default)]
struct DayNames {
    day: Option<i64>,
    name: String,
}

impl DayNames {
    fn name(&mut self, ts_ms: i64) -> &str {
        let day = ts_ms.div_euclid(MS_PER_DAY);
        if self.day != Some(day) {
            self.day = Some(day);
            self.name = day_string(day);
        }
        &self.name
    }
}

/// One `/sensor-data` event, every field a string (spec §4).
pub(crate) fn sensor_event(out: &mut Vec<u8>, e: &StoredEvent) {
    let (date, time, ms) = date_parts(e.ts_ms);
    let hex = hex_lower(&e.data);
    let hash = apiary_model::md5_hex(hex.as_bytes());
    let mut len = itoa::Buffer::new();
    let fields: [(&str, &str); 12] = [
        ("date", &date),
        ("time", &time),
        ("millisecond", &ms),
        ("date_time", &format!("{date} {time}.{ms}")),
        ("session", &e.session),
        ("protocol", e.protocol.as_str()),
        ("event", e.kind.as_str()),
        ("service", &e.service),
        ("remote_host", &e.remote_host),
        ("data", &hex),
        ("bytes", len.format(hex.len())),
        ("data_hash", &hash),
    ];
    out.push(b'{');
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'"');
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b"\":");
        json_str(out, v);
    }
    out.push(b'}');
}

fn hex_lower(data: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(data.len() * 2);
    for b in data {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_neutralises_formulas_and_quotes() {
        let mut out = Vec::new();
        for cell in ["=1+2", "+x", "-x", "@x", "\tx", "a,b", "say \"hi\"", "1.2.3.4", "\r=x"] {
            csv_cell(&mut out, cell);
            out.push(b'|');
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "'=1+2|'+x|'-x|'@x|'\tx|\"a,b\"|\"say \"\"hi\"\"\"|1.2.3.4|\"'\r=x\"|"
        );
    }

    #[test]
    fn bad_hosts_shapes() {
        let rows = vec![BadHost { host: "1.2.3.4".into(), count: 203, last_ms: 1_795_000_000_000 }];
        let json: serde_json::Value = serde_json::from_slice(&bad_hosts_json(&rows)).unwrap();
        assert_eq!(json, serde_json::json!([{"remote_host":"1.2.3.4","count":"203","last_seen":"2026-11-18"}]));
        assert_eq!(bad_hosts_csv(&[]), b"remote_host,count,last_seen\n");
    }
}
