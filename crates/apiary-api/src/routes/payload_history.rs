//! `/payload-history/...`: the distinct values attackers sent, one record per
//! value per day (spec §4, "Payload history").
//!
//! HoneyDB puts a year, a value hash, a service name and three literals in the
//! same first path segment, so the routes take the segment as a string and
//! [`Segment::parse`] decides by its pattern.
//!
//! Lists are ordered by date and capped at [`MAX_ROWS`] rows per answer. A
//! longer list is paged with `?offset=N` (and `?limit=` up to the cap); an
//! answer that stops at the cap carries a `Link: <...>; rel="next"` header
//! naming the next page, so a client that ignores it still gets the oldest
//! records, and one that follows it gets everything.

use std::collections::HashMap;

use axum::extract::{OriginalUri, Path, Query, State};
use axum::http::{header, HeaderValue, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use apiary_model::time::{day_string, first_day_of_month};
use apiary_store::{Page, PayloadRecord, PayloadSelect};

use super::ip::{dated_hosts_json, parse_ip};
use crate::{ApiError, AppState};

/// Most rows in one answer (and the default page size).
pub(crate) const MAX_ROWS: usize = 10_000;
/// Most hosts listed per year by `/payload-history/remote-hosts`; the
/// per-host and per-value routes page through everything.
pub(crate) const MAX_HOSTS_PER_YEAR: usize = 10_000;

/// What the first segment after `/payload-history/` names.
#[derive(Debug, PartialEq, Eq)]
enum Segment {
    Year(i32),
    Hash([u8; 16]),
    Services,
    RemoteHosts,
    Attributes,
    Service(String),
}

impl Segment {
    fn parse(s: &str) -> Result<Segment, ApiError> {
        if s.len() == 4 && s.bytes().all(|b| b.is_ascii_digit()) {
            return s.parse().map(Segment::Year).map_err(|_| bad_segment(s));
        }
        if s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return parse_hash(s).map(Segment::Hash);
        }
        match s {
            "services" => Ok(Segment::Services),
            "remote-hosts" => Ok(Segment::RemoteHosts),
            "attributes" => Ok(Segment::Attributes),
            _ if is_service_name(s) => Ok(Segment::Service(s.to_owned())),
            _ => Err(bad_segment(s)),
        }
    }
}

fn bad_segment(s: &str) -> ApiError {
    ApiError::BadRequest(format!(
        "Unrecognised payload-history segment {s:?}: expected a year (2019), a 32-hex-digit hash, a service name, \
         'services', 'remote-hosts' or 'attributes'"
    ))
}

/// Service names as sensors send them: short, letters, digits, `.`, `-`, `_`.
fn is_service_name(s: &str) -> bool {
    (1..=apiary_model::MAX_SERVICE_LEN).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

fn parse_hash(s: &str) -> Result<[u8; 16], ApiError> {
    let mut md5 = [0u8; 16];
    hex::decode_to_slice(s, &mut md5)
        .map_err(|_| ApiError::BadRequest(format!("Invalid hash {s:?}: expected 32 hex digits (an MD5)")))?;
    Ok(md5)
}

fn parse_year(s: &str) -> Result<i32, ApiError> {
    match s.parse::<i32>() {
        Ok(y) if s.len() == 4 && (1970..=9999).contains(&y) => Ok(y),
        _ => Err(ApiError::BadRequest(format!("Invalid year {s:?}: expected four digits, e.g. 2019"))),
    }
}

/// Month as `4` or `04`.
fn parse_month(s: &str) -> Result<u32, ApiError> {
    match s.parse::<u32>() {
        Ok(m) if s.len() <= 2 && (1..=12).contains(&m) => Ok(m),
        _ => Err(ApiError::BadRequest(format!("Invalid month {s:?}: expected 1 to 12"))),
    }
}

/// The days of a year, or of one month of it.
fn day_range(year: i32, month: Option<u32>) -> Result<(i64, i64), ApiError> {
    let invalid = || ApiError::BadRequest(format!("Invalid date {year}"));
    let (first, next) = match month {
        Some(m) => {
            let next = if m == 12 { first_day_of_month(year + 1, 1) } else { first_day_of_month(year, m + 1) };
            (first_day_of_month(year, m), next)
        }
        None => (first_day_of_month(year, 1), first_day_of_month(year + 1, 1)),
    };
    Ok((first.ok_or_else(invalid)?, next.ok_or_else(invalid)? - 1))
}

/// `?offset=` and `?limit=`, validated.
pub(super) fn page(q: &HashMap<String, String>) -> Result<Page, ApiError> {
    let number = |name: &str, default: usize| -> Result<usize, ApiError> {
        match q.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| ApiError::BadRequest(format!("Invalid {name} {v:?}: expected a non-negative integer"))),
        }
    };
    let offset = number("offset", 0)?;
    let limit = number("limit", MAX_ROWS)?;
    if limit == 0 || limit > MAX_ROWS {
        return Err(ApiError::BadRequest(format!("Invalid limit {limit}: expected 1 to {MAX_ROWS}")));
    }
    Ok(Page { offset, limit })
}

/// Fetches one row more than the page so that a full page knows whether a
/// next one exists.
pub(super) fn probe(page: Page) -> Page {
    Page { offset: page.offset, limit: page.limit + 1 }
}

/// A JSON list answer; `Link: rel="next"` when `rows` holds more than a page.
pub(super) fn paged(uri: &Uri, page: Page, mut rows: Vec<Value>) -> Response {
    let more = rows.len() > page.limit;
    rows.truncate(page.limit);
    let mut response = Json(Value::Array(rows)).into_response();
    if more {
        let next = format!("<{}?offset={}&limit={}>; rel=\"next\"", uri.path(), page.offset + page.limit, page.limit);
        if let Ok(v) = HeaderValue::from_str(&next) {
            response.headers_mut().insert(header::LINK, v);
        }
    }
    response
}

fn record_json(r: PayloadRecord) -> Value {
    json!({
        "date": day_string(r.day),
        "service": r.service,
        "attribute": r.attribute,
        "hash": hex::encode(r.md5),
        "value": r.value,
        "truncated": r.truncated,
    })
}

async fn records(state: &AppState, uri: &Uri, select: PayloadSelect, page: Page) -> Result<Response, ApiError> {
    let rows = state.with_store(move |s| s.payload_records(&select, probe(page))).await?;
    Ok(paged(uri, page, rows.into_iter().map(record_json).collect()))
}

/// The attribute names Apiary extracts (HoneyDB's spelling). Payloads kept
/// whole have no attribute (`null` in records) and are not listed.
fn attribute_names() -> Vec<&'static str> {
    apiary_extract::ATTRIBUTE_NAMES
        .iter()
        .filter(|n| **n != apiary_extract::AttrName::Payload)
        .map(|n| n.as_str())
        .collect()
}

/// `/payload-history/{segment}`.
pub(crate) async fn one(
    State(state): State<AppState>,
    Path(segment): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    OriginalUri(uri): OriginalUri,
) -> Result<Response, ApiError> {
    let page = page(&q)?;
    match Segment::parse(&segment)? {
        Segment::Year(year) => {
            let (from, to) = day_range(year, None)?;
            records(&state, &uri, PayloadSelect::Days { from, to }, page).await
        }
        Segment::Hash(md5) => records(&state, &uri, PayloadSelect::Hash(md5), page).await,
        Segment::Service(service) => records(&state, &uri, PayloadSelect::Service(service), page).await,
        Segment::Services => {
            let services = state.with_store(|s| s.payload_services()).await?;
            Ok(Json(services).into_response())
        }
        Segment::Attributes => Ok(Json(attribute_names()).into_response()),
        Segment::RemoteHosts => {
            let years = state.with_store(|s| s.payload_hosts_by_year(MAX_HOSTS_PER_YEAR)).await?;
            let mut body = Map::new();
            for y in years {
                body.insert(y.year.to_string(), json!(y.hosts));
            }
            Ok(Json(Value::Object(body)).into_response())
        }
    }
}

/// `/payload-history/{year}/{month}`, `/payload-history/remote-hosts/{ip}`,
/// `/payload-history/attributes/{name}`.
pub(crate) async fn two(
    State(state): State<AppState>,
    Path((segment, second)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    OriginalUri(uri): OriginalUri,
) -> Result<Response, ApiError> {
    let page = page(&q)?;
    match Segment::parse(&segment)? {
        Segment::Year(year) => {
            let (from, to) = day_range(year, Some(parse_month(&second)?))?;
            records(&state, &uri, PayloadSelect::Days { from, to }, page).await
        }
        Segment::RemoteHosts => {
            let ip = parse_ip(&second)?;
            let rows = state.with_store(move |s| s.host_values(ip, probe(page))).await?;
            let rows = rows.into_iter().map(|r| json!({"date": day_string(r.day), "hash": hex::encode(r.md5)}));
            Ok(paged(&uri, page, rows.collect()))
        }
        Segment::Attributes => {
            let name = second;
            if !attribute_names().contains(&name.as_str()) {
                // Nothing is ever stored under an unknown name: "nothing found".
                return Ok(Json(json!([])).into_response());
            }
            let rows = state.with_store(move |s| s.attribute_values(&name, probe(page))).await?;
            let rows = rows
                .into_iter()
                .map(|r| json!({"hash": hex::encode(r.md5), "value": r.value, "truncated": r.truncated}));
            Ok(paged(&uri, page, rows.collect()))
        }
        _ => Err(ApiError::BadRequest(format!(
            "/payload-history/{segment}/{second}: expected a year and month, 'remote-hosts/{{ip}}' or \
             'attributes/{{name}}'"
        ))),
    }
}

/// `/payload-history/{hash}/remote-hosts/{year}`.
pub(crate) async fn value_hosts(
    State(state): State<AppState>,
    Path((hash, literal, year)): Path<(String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
    OriginalUri(uri): OriginalUri,
) -> Result<Response, ApiError> {
    let page = page(&q)?;
    if literal != "remote-hosts" {
        return Err(ApiError::NotFound);
    }
    let md5 = parse_hash(&hash)?;
    let (from, to) = day_range(parse_year(&year)?, None)?;
    let rows = state.with_store(move |s| s.value_hosts(md5, from, to, probe(page))).await?;
    Ok(paged(&uri, page, dated_hosts_json(rows)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_dispatch_by_pattern() {
        assert_eq!(Segment::parse("2019").unwrap(), Segment::Year(2019));
        assert_eq!(
            Segment::parse("6666cd76f96956469e7be39d750cc7d9").unwrap(),
            Segment::Hash({
                let mut h = [0u8; 16];
                hex::decode_to_slice("6666cd76f96956469e7be39d750cc7d9", &mut h).unwrap();
                h
            })
        );
        assert!(matches!(Segment::parse("6666CD76F96956469E7BE39D750CC7D9"), Ok(Segment::Hash(_))));
        assert_eq!(Segment::parse("services").unwrap(), Segment::Services);
        assert_eq!(Segment::parse("remote-hosts").unwrap(), Segment::RemoteHosts);
        assert_eq!(Segment::parse("attributes").unwrap(), Segment::Attributes);
        assert_eq!(Segment::parse("HTTP").unwrap(), Segment::Service("HTTP".into()));
        assert_eq!(Segment::parse("DNS.udp").unwrap(), Segment::Service("DNS.udp".into()));
        // Too short for a hash: a service name that nothing was stored under.
        assert_eq!(Segment::parse("abc").unwrap(), Segment::Service("abc".into()));
        assert!(Segment::parse("a b").is_err());
        assert!(Segment::parse("<script>").is_err());
    }

    #[test]
    fn months_and_ranges() {
        assert_eq!(parse_month("4").unwrap(), 4);
        assert_eq!(parse_month("04").unwrap(), 4);
        assert!(parse_month("13").is_err());
        assert!(parse_month("004").is_err());
        let (from, to) = day_range(2024, Some(2)).unwrap();
        assert_eq!(to - from + 1, 29);
        let (from, to) = day_range(2023, None).unwrap();
        assert_eq!(to - from + 1, 365);
        let (from, to) = day_range(2023, Some(12)).unwrap();
        assert_eq!(day_string(from), "2023-12-01");
        assert_eq!(day_string(to), "2023-12-31");
    }
}
