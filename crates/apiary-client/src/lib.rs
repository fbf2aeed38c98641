//! Delivery client for an Apiary server's sensor ingest endpoint.
//!
//! A sensor sends batches of [`WireEvent`]s as NDJSON (gzip-compressed unless
//! the server is on the same host; see [`GzipPolicy`]) to
//! `POST {base}/sensor/events`, authenticated by its account's API id and the
//! sensor key. This crate does one request at a time and turns every possible
//! answer into an [`Outcome`] that says what the caller must do with the batch
//! (forget it, split it, keep it and wait). It keeps no queue and never
//! sleeps: the sensor's shipper owns the queue and the waiting, so the policy
//! here stays testable and the client stays small.
//!
//! Retrying a batch is always safe: the server is idempotent on
//! (account, node, event id).

mod backoff;

use std::io::Write;
use std::time::Duration;

use apiary_model::WireEvent;
use flate2::write::GzEncoder;
use flate2::Compression;
use serde::Deserialize;

pub use backoff::Backoff;

/// Longest `Retry-After` we honour: a server asking for more is treated as
/// asking for this, so a misconfigured proxy cannot park a sensor for days.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// How much of an error body we keep for logs.
const MAX_MESSAGE: usize = 512;

/// Where and as whom to deliver.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// API base, e.g. `http://127.0.0.1:8080/api` (no trailing slash needed).
    pub base_url: String,
    /// The account's API id (`X-HoneyDb-ApiId`).
    pub api_id: String,
    /// The sensor key (`X-HoneyDb-ApiKey`).
    pub api_key: String,
    /// Whole-request timeout; a hung server must not hold the queue forever.
    pub timeout: Duration,
    /// When request bodies are gzipped.
    pub gzip: GzipPolicy,
}

/// When to gzip request bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GzipPolicy {
    /// Always gzip.
    Always,
    /// Never gzip (the server takes plain NDJSON too).
    Never,
    /// Gzip unless the server is on this host (a loopback address or
    /// `localhost`, as with `apiary up`): there the bytes cost nothing to
    /// carry, while compressing costs the sensor, and decompressing the
    /// server, CPU for every event (a few percent of a busy sensor's and
    /// server's time together).
    #[default]
    Remote,
}

impl ClientConfig {
    pub fn new(base_url: impl Into<String>, api_id: impl Into<String>, api_key: impl Into<String>) -> Self {
        ClientConfig {
            base_url: base_url.into(),
            api_id: api_id.into(),
            api_key: api_key.into(),
            timeout: Duration::from_secs(30),
            gzip: GzipPolicy::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot build HTTP client: {0}")]
    Build(String),
}

/// One event the server refused for good, by its index in the batch.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Rejected {
    pub index: usize,
    pub error: String,
}

/// What the server made of a batch, reduced to what the caller must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// 200 or 422: everything not in `rejected` is durably stored. The batch
    /// is done; the rejected ones will never be accepted and must be dropped.
    Stored { accepted: u64, duplicates: u64, rejected: Vec<Rejected> },
    /// 400: the body could not be parsed and nothing was stored. This is a bug
    /// on the sensor's side; retrying the same bytes cannot help.
    Malformed { message: String },
    /// 413: the batch is too big. Split it and send the halves.
    TooLarge,
    /// 401/403 or another 4xx that says the request itself is unwelcome
    /// (wrong key, wrong URL): keep the events and retry slowly.
    Refused { status: u16, message: String },
    /// 429/503 with a `Retry-After`: wait exactly that long.
    RetryAfter { status: u16, after: Duration },
    /// Other 5xx, timeouts, connection errors: back off exponentially.
    Transient { reason: String },
}

/// The ingest answer body for 200 and 422.
#[derive(Debug, Deserialize)]
struct IngestReply {
    #[serde(default)]
    accepted: u64,
    #[serde(default)]
    duplicates: u64,
    #[serde(default)]
    rejected: Vec<Rejected>,
}

/// A reusable connection to one server (connection pooling lives inside).
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    url: String,
    api_id: String,
    api_key: String,
    /// Whether bodies are gzipped (the policy resolved against the URL).
    gzip: bool,
}

/// Whether `base_url` names this host: a loopback address or `localhost`.
fn is_local(base_url: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(base_url) else { return false };
    let Some(host) = url.host_str() else { return false };
    // IPv6 hosts come bracketed.
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    match bare.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(ip)) => ip.is_loopback(),
        Ok(std::net::IpAddr::V6(ip)) => ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

impl Client {
    pub fn new(config: ClientConfig) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("apiary-sensor/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Build(e.to_string()))?;
        let url = format!("{}/sensor/events", config.base_url.trim_end_matches('/'));
        let gzip = match config.gzip {
            GzipPolicy::Always => true,
            GzipPolicy::Never => false,
            GzipPolicy::Remote => !is_local(&config.base_url),
        };
        Ok(Client { http, url, api_id: config.api_id, api_key: config.api_key, gzip })
    }

    /// Whether this client gzips its request bodies.
    pub fn gzips(&self) -> bool {
        self.gzip
    }

    /// The full ingest URL this client posts to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sends events; serialises them as NDJSON first.
    pub async fn send_events(&self, events: &[WireEvent]) -> Outcome {
        let mut lines = Vec::with_capacity(events.len());
        for e in events {
            match serde_json::to_vec(e) {
                Ok(l) => lines.push(l),
                Err(e) => return Outcome::Malformed { message: format!("cannot serialise event: {e}") },
            }
        }
        self.send_lines(&lines).await
    }

    /// Sends already-serialised events, one JSON object per element (no
    /// trailing newline needed). This is the sensor's path: its queue holds
    /// the exact lines, so nothing is parsed or re-encoded on the way out.
    pub async fn send_lines<L: AsRef<[u8]>>(&self, lines: &[L]) -> Outcome {
        let mut request = self
            .http
            .post(&self.url)
            .header("X-HoneyDb-ApiId", &self.api_id)
            .header("X-HoneyDb-ApiKey", &self.api_key)
            .header(reqwest::header::CONTENT_TYPE, "application/x-ndjson");
        if self.gzip {
            let body = match gzip_ndjson(lines) {
                Ok(b) => b,
                Err(e) => return Outcome::Transient { reason: format!("gzip failed: {e}") },
            };
            request = request.header(reqwest::header::CONTENT_ENCODING, "gzip").body(body);
        } else {
            request = request.body(ndjson(lines));
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => return Outcome::Transient { reason: describe(&e) },
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let body = match response.bytes().await {
            Ok(b) => b,
            Err(e) => return Outcome::Transient { reason: format!("reading answer: {}", describe(&e)) },
        };
        classify(status, retry_after, &body)
    }
}

fn describe(e: &reqwest::Error) -> String {
    // reqwest's Display hides the root cause ("error sending request");
    // the chain is what tells an operator "connection refused".
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Lines as NDJSON (each followed by one `\n`) into `out`.
fn write_ndjson<L: AsRef<[u8]>>(lines: &[L], out: &mut impl Write) -> std::io::Result<()> {
    for line in lines {
        let line = line.as_ref();
        // An element may be a whole NDJSON chunk: only its own final newline
        // is dropped (and put back), the ones inside are kept.
        out.write_all(line.strip_suffix(b"\n").unwrap_or(line))?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// Lines as one NDJSON body (each followed by `\n`).
pub fn ndjson<L: AsRef<[u8]>>(lines: &[L]) -> Vec<u8> {
    let mut out = Vec::with_capacity(lines.iter().map(|l| l.as_ref().len() + 1).sum());
    // Writing into a Vec cannot fail.
    let _ = write_ndjson(lines, &mut out);
    out
}

/// Gzips lines as NDJSON (each followed by `\n`).
///
/// The lines go through a buffer, so the compressor runs once per 64 KiB
/// rather than twice per line: each call into it has a fixed cost (flate2
/// zero-fills its output buffer every time) larger than compressing a
/// typical event line.
pub fn gzip_ndjson<L: AsRef<[u8]>>(lines: &[L]) -> std::io::Result<Vec<u8>> {
    let mut gz = std::io::BufWriter::with_capacity(64 << 10, GzEncoder::new(Vec::new(), Compression::fast()));
    write_ndjson(lines, &mut gz)?;
    gz.into_inner().map_err(|e| e.into_error())?.finish()
}

/// `Retry-After` as integer seconds (the form our server sends). HTTP dates
/// are not honoured: they need a trusted clock and our server never sends them.
fn parse_retry_after(v: &str) -> Option<Duration> {
    v.trim().parse::<u64>().ok().map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER))
}

fn message(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(MAX_MESSAGE) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// Maps a status, `Retry-After` and body to an [`Outcome`]. Public so the
/// shipper's tests and the server's tests can agree on the contract.
pub fn classify(status: u16, retry_after: Option<Duration>, body: &[u8]) -> Outcome {
    match status {
        200 | 422 => match serde_json::from_slice::<IngestReply>(body) {
            Ok(r) => Outcome::Stored { accepted: r.accepted, duplicates: r.duplicates, rejected: r.rejected },
            // A 200 we cannot read still means "stored"; a 422 we cannot read
            // does not say which were refused, so resending is the safe choice
            // (duplicates are free).
            Err(_) if status == 200 => Outcome::Stored { accepted: 0, duplicates: 0, rejected: Vec::new() },
            Err(e) => Outcome::Transient { reason: format!("unreadable 422 answer: {e}") },
        },
        400 => Outcome::Malformed { message: message(body) },
        413 => Outcome::TooLarge,
        429 | 503 => match retry_after {
            Some(after) => Outcome::RetryAfter { status, after },
            None => Outcome::Transient { reason: format!("HTTP {status} without Retry-After") },
        },
        408 => Outcome::Transient { reason: "HTTP 408 request timeout".into() },
        s if (400..500).contains(&s) => Outcome::Refused { status, message: message(body) },
        s => Outcome::Transient { reason: format!("HTTP {s}: {}", message(body)) },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn classifies_every_answer() {
        let ok = br#"{"status":"ok","accepted":3,"duplicates":1}"#;
        assert_eq!(classify(200, None, ok), Outcome::Stored { accepted: 3, duplicates: 1, rejected: vec![] });
        let partial = br#"{"status":"partial","accepted":1,"duplicates":0,"rejected":[{"index":1,"error":"bad"}]}"#;
        match classify(422, None, partial) {
            Outcome::Stored { rejected, .. } => assert_eq!(rejected, vec![Rejected { index: 1, error: "bad".into() }]),
            other => panic!("{other:?}"),
        }
        assert!(matches!(classify(400, None, b"nope"), Outcome::Malformed { .. }));
        assert_eq!(classify(413, None, b""), Outcome::TooLarge);
        assert!(matches!(classify(401, None, b""), Outcome::Refused { status: 401, .. }));
        assert!(matches!(classify(403, None, b""), Outcome::Refused { status: 403, .. }));
        assert_eq!(
            classify(429, Some(Duration::from_secs(7)), b""),
            Outcome::RetryAfter { status: 429, after: Duration::from_secs(7) }
        );
        assert!(matches!(classify(503, None, b""), Outcome::Transient { .. }));
        assert!(matches!(classify(502, None, b""), Outcome::Transient { .. }));
        assert!(matches!(classify(422, None, b"garbage"), Outcome::Transient { .. }));
    }

    #[test]
    fn retry_after_is_bounded_and_integer_only() {
        assert_eq!(parse_retry_after(" 12 "), Some(Duration::from_secs(12)));
        assert_eq!(parse_retry_after("99999999"), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-1"), None);
    }

    #[test]
    fn body_is_gzipped_ndjson() {
        let gz = gzip_ndjson(&[&b"{\"a\":1}"[..], b"{\"b\":2}\n"]).unwrap();
        let mut out = String::new();
        flate2::read::GzDecoder::new(&gz[..]).read_to_string(&mut out).unwrap();
        assert_eq!(out, "{\"a\":1}\n{\"b\":2}\n");
    }

    #[test]
    fn plain_body_is_ndjson() {
        assert_eq!(ndjson(&[&b"{\"a\":1}"[..], b"{\"b\":2}\n{\"c\":3}\n"]), b"{\"a\":1}\n{\"b\":2}\n{\"c\":3}\n");
        let many: Vec<Vec<u8>> = (0..5000).map(|i| format!("{{\"n\":{i}}}").into_bytes()).collect();
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&gzip_ndjson(&many).unwrap()[..]).read_to_end(&mut out).unwrap();
        assert_eq!(out, ndjson(&many));
    }

    #[test]
    fn gzips_unless_the_server_is_local() {
        let gz = |url: &str| Client::new(ClientConfig::new(url, "id", "key")).unwrap().gzips();
        for local in
            ["http://127.0.0.1:8080/api", "http://127.9.0.1/api", "http://[::1]:80/api", "http://LocalHost:1/api"]
        {
            assert!(!gz(local), "{local}");
        }
        for remote in [
            "http://192.0.2.1/api",
            "https://honeydb.example/api",
            "http://[2001:db8::1]/api",
            "http://localhost.example/",
        ] {
            assert!(gz(remote), "{remote}");
        }
        let mut always = ClientConfig::new("http://127.0.0.1/api", "id", "key");
        always.gzip = GzipPolicy::Always;
        assert!(Client::new(always).unwrap().gzips());
    }

    #[test]
    fn long_messages_are_cut() {
        let long = "é".repeat(2000);
        assert!(message(long.as_bytes()).chars().count() <= MAX_MESSAGE + 1);
    }

    #[tokio::test]
    async fn connection_refused_is_transient() {
        // Bind then drop a loopback listener so the port is (almost surely) closed.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let client = Client::new(ClientConfig::new(format!("http://127.0.0.1:{port}/api/"), "id", "key")).unwrap();
        assert_eq!(client.url(), format!("http://127.0.0.1:{port}/api/sensor/events"));
        match client.send_lines(&[b"{}"]).await {
            Outcome::Transient { reason } => assert!(!reason.is_empty()),
            other => panic!("{other:?}"),
        }
    }
}
