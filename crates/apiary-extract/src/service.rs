//! Service names as sensors report them (`HTTP`, `SIP.udp`, `Memcached.udp`),
//! mapped to the parser that understands their payloads.

/// The parser family for a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    Http,
    Https,
    Ssh,
    Telnet,
    Redis,
    Memcached,
    Ftp,
    Smtp,
    Mysql,
    Vnc,
    Sip,
    Dns,
    /// No parser: HTTP is still recognised by sniffing, else the fallback applies.
    Other,
}

/// HTTP-speaking services whose payloads are parsed as HTTP requests.
const HTTP_ALIASES: &[&str] = &[
    "http",
    "http-alt",
    "http-proxy",
    "elasticsearch",
    "couchdb",
    "clickhouse",
    "kubernetes",
    "docker",
    "hadoop",
    "solr",
    "weblogic",
    "jenkins",
    "tomcat",
];

impl Service {
    /// Parses a sensor's service name: case-insensitive, with a `.udp`/`.tcp`
    /// suffix ignored. Never fails: unknown names are [`Service::Other`].
    pub fn parse(name: &str) -> Service {
        let base = base_name(name);
        let eq = |s: &str| base.eq_ignore_ascii_case(s);
        if HTTP_ALIASES.iter().any(|a| eq(a)) {
            Service::Http
        } else if eq("https") {
            Service::Https
        } else if eq("ssh") {
            Service::Ssh
        } else if eq("telnet") {
            Service::Telnet
        } else if eq("redis") {
            Service::Redis
        } else if eq("memcached") || eq("memcache") {
            Service::Memcached
        } else if eq("ftp") {
            Service::Ftp
        } else if eq("smtp") {
            Service::Smtp
        } else if eq("mysql") {
            Service::Mysql
        } else if eq("vnc") || eq("rfb") {
            Service::Vnc
        } else if eq("sip") {
            Service::Sip
        } else if eq("dns") {
            Service::Dns
        } else {
            Service::Other
        }
    }

    /// Whether this service's payloads are HTTP requests.
    pub fn is_http(self) -> bool {
        matches!(self, Service::Http | Service::Https)
    }
}

/// The name without a transport suffix: `SIP.udp` → `SIP`.
pub(crate) fn base_name(name: &str) -> &str {
    let trimmed = name.trim();
    for suffix in [".udp", ".tcp"] {
        if trimmed.len() > suffix.len() {
            let split = trimmed.len() - suffix.len();
            if trimmed.is_char_boundary(split) && trimmed[split..].eq_ignore_ascii_case(suffix) {
                return &trimmed[..split];
            }
        }
    }
    trimmed
}

/// Whether the name carried a `.tcp` suffix (DNS over TCP has a length prefix).
pub(crate) fn is_tcp(name: &str) -> bool {
    let t = name.trim();
    t.len() > 4 && t.is_char_boundary(t.len() - 4) && t[t.len() - 4..].eq_ignore_ascii_case(".tcp")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_honeydb_names() {
        assert_eq!(Service::parse("HTTP"), Service::Http);
        assert_eq!(Service::parse("Elasticsearch"), Service::Http);
        assert_eq!(Service::parse("SIP.udp"), Service::Sip);
        assert_eq!(Service::parse("sip.UDP"), Service::Sip);
        assert_eq!(Service::parse("DNS.udp"), Service::Dns);
        assert_eq!(Service::parse("Memcached.udp"), Service::Memcached);
        assert_eq!(Service::parse("MySQL"), Service::Mysql);
        assert_eq!(Service::parse("RDP"), Service::Other);
        assert_eq!(Service::parse(".udp"), Service::Other);
        assert_eq!(Service::parse("é.udp"), Service::Other);
        assert!(is_tcp("DNS.tcp"));
        assert!(!is_tcp("DNS.udp"));
    }
}
