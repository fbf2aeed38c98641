//! What INFO events carry.
//!
//! An INFO event's `data` is the hex of one compact JSON object with a `type`
//! member saying what was extracted, e.g.
//! `{"type":"login","username":"root","password":"123456"}`. JSON rather than
//! `user:password` text because values may contain colons, and because the
//! extraction pipeline can read every kind of fact with one parser. Strings are
//! the attacker's bytes decoded as UTF-8 with invalid sequences replaced; the
//! exact bytes are always in the neighbouring RX events.
//!
//! Types: `login` (username, password; optional `method`, `database`; SSH
//! public-key offers have method `publickey` and `key_type`, `fingerprint`,
//! `public_key` instead of a password; LDAP binds carry the bind DN as
//! `username`), `command` (a shell or protocol command worth indexing; SSH
//! subsystem requests as `subsystem`), `http` (method, path, version, host,
//! user_agent), `mail` (from, to), `dns` (name, qtype), `sip` (method, uri,
//! user_agent), `tftp` (op, filename), `vnc_auth` (challenge, response as
//! hex), `client` (a client version string, e.g. the SSH version line),
//! `tls` (HTTPS: `sni`, or `error` for a failed handshake), `forward` (an SSH
//! port-forward request, always refused: host, port), `snmp` (version,
//! community, pdu, oids), `ldap_search` (base, scope), and `limit` (which
//! limit closed the connection).

use serde_json::{Map, Value};

/// Longest string value a fact keeps.
pub const MAX_FIELD_BYTES: usize = 2048;

/// One extracted fact; build with [`Fact::new`] and [`Fact::with`].
#[derive(Debug, Clone, PartialEq)]
pub struct Fact(Map<String, Value>);

impl Fact {
    pub fn new(kind: &str) -> Self {
        let mut m = Map::new();
        m.insert("type".into(), Value::String(kind.into()));
        Fact(m)
    }

    /// Adds a string field, from attacker bytes or text, cut at
    /// [`MAX_FIELD_BYTES`] so one fact always fits in an event.
    pub fn with(mut self, key: &str, value: impl AsRef<[u8]>) -> Self {
        let v = value.as_ref();
        let v = &v[..v.len().min(MAX_FIELD_BYTES)];
        self.0.insert(key.into(), Value::String(String::from_utf8_lossy(v).into_owned()));
        self
    }

    pub fn with_value(mut self, key: &str, value: Value) -> Self {
        self.0.insert(key.into(), value);
        self
    }

    /// A login attempt.
    pub fn login(user: impl AsRef<[u8]>, password: impl AsRef<[u8]>) -> Self {
        Fact::new("login").with("username", user).with("password", password)
    }

    pub fn command(command: impl AsRef<[u8]>) -> Self {
        Fact::new("command").with("command", command)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.0).unwrap_or_default()
    }
}
