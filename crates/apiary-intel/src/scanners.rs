//! Curated mapping of MISP warning lists to the organisations behind them.
//!
//! `/internet-scanner/info/{ip}` answers with the scanner's name, domain and URL;
//! MISP lists only carry a free-text name ("Shodan IP Ranges Used for Scanning"),
//! so the well-known ones are mapped here by their MISP list directory name. An
//! operator-configured list that is not in this table still works: its MISP name
//! is used and domain/URL stay empty.

use serde::Serialize;

/// Who runs a scanner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScannerInfo {
    /// Organisation name (`The Shadow Server Foundation`).
    pub name: String,
    /// Domain (`shadowserver.org`).
    pub domain: String,
    /// Home page.
    pub url: String,
    /// Where the organisation publishes its scanner addresses, if it does.
    pub published_ip_list: Vec<String>,
}

/// `(MISP list name, organisation, domain, url, published list)`.
static KNOWN: &[(&str, &str, &str, &str, &str)] = &[
    ("shodan-scanning", "Shodan", "shodan.io", "https://www.shodan.io/", ""),
    ("shodan-nt-scanning", "Shodan", "shodan.io", "https://www.shodan.io/", ""),
    (
        "censys-scanning",
        "Censys",
        "censys.com",
        "https://censys.com/",
        "https://support.censys.io/hc/en-us/articles/360043177092",
    ),
    ("shadowserver", "The Shadow Server Foundation", "shadowserver.org", "https://www.shadowserver.org/", ""),
    (
        "shadowserver-nt-scanning",
        "The Shadow Server Foundation",
        "shadowserver.org",
        "https://www.shadowserver.org/",
        "",
    ),
    ("rapid7-nt-scanning", "Rapid7 Project Sonar", "rapid7.com", "https://www.rapid7.com/research/project-sonar/", ""),
    ("onyphe-scanner", "ONYPHE", "onyphe.io", "https://www.onyphe.io/", "https://www.onyphe.io/ip-ranges"),
    ("stretchoid-nt-scanning", "Stretchoid", "stretchoid.com", "https://stretchoid.com/", ""),
    (
        "internet-census-nt-scanning",
        "Internet Census Group",
        "internet-census.org",
        "https://www.internet-census.org/",
        "",
    ),
    ("circl-ssh-scanning", "CIRCL", "circl.lu", "https://www.circl.lu/", ""),
    ("binaryedge", "BinaryEdge", "binaryedge.io", "https://www.binaryedge.io/", ""),
    ("binaryedge-nt-scanning", "BinaryEdge", "binaryedge.io", "https://www.binaryedge.io/", ""),
    ("leakix-nt-scanning", "LeakIX", "leakix.net", "https://leakix.net/", ""),
    ("criminalip-nt-scanning", "Criminal IP", "criminalip.io", "https://www.criminalip.io/", ""),
    ("alphastrike-nt-scanning", "Alpha Strike Labs", "alphastrike.io", "https://www.alphastrike.io/", ""),
    ("bitsight-nt-scanning", "Bitsight", "bitsight.com", "https://www.bitsight.com/", ""),
    (
        "cortex-xpanse-nt-scanning",
        "Palo Alto Networks Cortex Xpanse",
        "paloaltonetworks.com",
        "https://www.paloaltonetworks.com/cortex/cortex-xpanse",
        "",
    ),
    (
        "netsystemsresearch-nt-scanning",
        "Net Systems Research",
        "netsystemsresearch.com",
        "https://www.netsystemsresearch.com/",
        "",
    ),
    ("recyber-nt-scanning", "ReCyber", "recyber.net", "https://www.recyber.net/", ""),
    ("modat-nt-scanning", "Modat", "modat.io", "https://www.modat.io/", ""),
    ("internettl-nt-scanning", "InterNetTL", "internettl.org", "https://www.internettl.org/", ""),
];

/// The organisation behind a MISP list, by list directory name (case-insensitive).
pub fn known_scanner(list: &str) -> Option<ScannerInfo> {
    KNOWN.iter().find(|k| k.0.eq_ignore_ascii_case(list)).map(|k| ScannerInfo {
        name: k.1.to_string(),
        domain: k.2.to_string(),
        url: k.3.to_string(),
        published_ip_list: if k.4.is_empty() { Vec::new() } else { vec![k.4.to_string()] },
    })
}

/// Names of all curated lists.
pub fn known_lists() -> impl Iterator<Item = &'static str> {
    KNOWN.iter().map(|k| k.0)
}
