//! Calendar helpers on UTC epoch milliseconds.
//!
//! Storage keys rollups by day and hour numbers (days or hours since the Unix
//! epoch) because integers index and compare faster than date strings.

use chrono::{DateTime, Datelike, NaiveDate, Timelike, Utc};

pub const MS_PER_HOUR: i64 = 3_600_000;
pub const MS_PER_DAY: i64 = 86_400_000;

/// Days since 1970-01-01 for a UTC epoch-milliseconds instant.
pub fn day_number(ts_ms: i64) -> i64 {
    ts_ms.div_euclid(MS_PER_DAY)
}

/// Hours since the epoch for a UTC epoch-milliseconds instant.
pub fn hour_number(ts_ms: i64) -> i64 {
    ts_ms.div_euclid(MS_PER_HOUR)
}

/// Month number (`year * 12 + month0`) for a UTC epoch-milliseconds instant.
pub fn month_number(ts_ms: i64) -> i64 {
    let dt = to_datetime(ts_ms);
    month_key(dt.year(), dt.month())
}

/// Month number for a calendar year and month (1-based).
pub fn month_key(year: i32, month: u32) -> i64 {
    i64::from(year) * 12 + i64::from(month) - 1
}

/// The inverse of [`month_key`]: `(year, month)` with `month` 1-based.
pub fn month_from_key(key: i64) -> (i32, u32) {
    (key.div_euclid(12) as i32, key.rem_euclid(12) as u32 + 1)
}

pub fn to_datetime(ts_ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ts_ms).unwrap_or_default()
}

/// `YYYY-MM-DD` of a day number. Written by hand: answers print a date per
/// row, and chrono's format strings are parsed anew on every call.
pub fn day_string(day: i64) -> String {
    let date = to_datetime(day * MS_PER_DAY).date_naive();
    let (y, m, d) = (date.year(), date.month(), date.day());
    if !(0..=9999).contains(&y) {
        return date.format("%Y-%m-%d").to_string();
    }
    let y = y as u32;
    let digits = [y / 1000, y / 100 % 10, y / 10 % 10, y % 10, 10, m / 10, m % 10, 10, d / 10, d % 10];
    digits.iter().map(|&n| if n == 10 { '-' } else { char::from(b'0' + n as u8) }).collect()
}

/// The calendar year a day number falls in.
pub fn year_of_day(day: i64) -> i32 {
    to_datetime(day * MS_PER_DAY).year()
}

/// The day number of the first day of `year`-`month` (1-based), if valid.
pub fn first_day_of_month(year: i32, month: u32) -> Option<i64> {
    let date = NaiveDate::from_ymd_opt(year, month, 1)?;
    Some(day_number(date.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis()))
}

/// Parses `YYYY-MM-DD` strictly into a day number.
pub fn parse_day(s: &str) -> Option<i64> {
    if s.len() != 10 {
        return None;
    }
    let date = NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
    let dt = date.and_hms_opt(0, 0, 0)?.and_utc();
    Some(day_number(dt.timestamp_millis()))
}

/// The HoneyDB date parts of an instant: `YYYY-MM-DD`, `HH:MM:SS`, `mmm`.
pub fn date_parts(ts_ms: i64) -> (String, String, String) {
    let dt = to_datetime(ts_ms);
    (
        dt.format("%Y-%m-%d").to_string(),
        format!("{:02}:{:02}:{:02}", dt.hour(), dt.minute(), dt.second()),
        format!("{:03}", ts_ms.rem_euclid(1000)),
    )
}

/// Milliseconds from `now_ms` to the first instant of the next UTC month.
pub fn ms_until_next_month(now_ms: i64) -> i64 {
    let dt = to_datetime(now_ms);
    let (y, m) = if dt.month() == 12 { (dt.year() + 1, 1) } else { (dt.year(), dt.month() + 1) };
    let next = NaiveDate::from_ymd_opt(y, m, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc().timestamp_millis())
        .unwrap_or(now_ms);
    next - now_ms
}

pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn years_and_month_starts() {
        let d = parse_day("2026-11-26").unwrap();
        assert_eq!(year_of_day(d), 2026);
        assert_eq!(year_of_day(parse_day("2025-12-31").unwrap()), 2025);
        assert_eq!(first_day_of_month(2026, 11), parse_day("2026-11-01"));
        assert_eq!(first_day_of_month(2026, 13), None);
    }

    #[test]
    fn day_round_trip() {
        let d = parse_day("2026-11-26").unwrap();
        assert_eq!(day_string(d), "2026-11-26");
        assert_eq!(parse_day("2026-13-01"), None);
        assert_eq!(parse_day("2026-1-01"), None);
    }

    #[test]
    fn day_strings_agree_with_chrono() {
        // Every day from year 0 to 9999, and a few beyond, against chrono's formatting.
        let first = parse_day("0000-01-01").unwrap();
        let last = parse_day("9999-12-31").unwrap();
        for day in (first - 3..=last + 3).step_by(7).chain([first, last, 0, -1]) {
            let expected = to_datetime(day * MS_PER_DAY).format("%Y-%m-%d").to_string();
            assert_eq!(day_string(day), expected, "day {day}");
        }
    }

    #[test]
    fn month_keys() {
        let k = month_key(2026, 11);
        assert_eq!(month_from_key(k), (2026, 11));
        assert_eq!(month_from_key(month_key(2026, 12) + 1), (2027, 1));
    }

    #[test]
    fn next_month() {
        let ts =
            NaiveDate::from_ymd_opt(2026, 12, 31).unwrap().and_hms_opt(23, 59, 0).unwrap().and_utc().timestamp_millis();
        assert_eq!(ms_until_next_month(ts), 60_000);
    }
}
