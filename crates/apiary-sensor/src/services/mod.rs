//! The emulated services, one module each.
//!
//! TCP services are `async fn handle(conn: &mut Conn, cfg: &ServiceConfig)`
//! (SSH and HTTPS also get what [`prepare`] made for them at start: the host
//! key and the TLS certificate, kept in the state directory);
//! the [`Conn`] records every byte both ways and enforces the limits, so a
//! service only speaks its protocol and reports the facts it extracts.
//! UDP services are pure functions from a datagram to an optional reply plus
//! facts; the UDP loop records and rate-limits around them.
//!
//! Nothing here executes, evaluates or forwards what attackers send.

use std::io;
use std::path::Path;
use std::sync::Arc;

use apiary_model::Protocol;
use serde::{Deserialize, Serialize};

use crate::config::ServiceConfig;
use crate::conn::Conn;
use crate::facts::Fact;

mod ber;
mod dns;
mod echo;
mod ftp;
mod hash;
pub(crate) mod http;
mod https;
mod ldap;
mod memcached;
mod modbus;
mod motd;
mod mqtt;
mod mysql;
mod ntp;
mod random;
mod redis;
mod sip;
mod smtp;
mod snmp;
mod ssh;
mod telnet;
mod tftp;
mod vnc;

/// Every service the sensor can emulate. The config key is the snake-case
/// variant name; [`ServiceKind::name`] is what events carry (HoneyDB's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceKind {
    Telnet,
    Http,
    Redis,
    Ftp,
    Smtp,
    Memcached,
    Mysql,
    Vnc,
    Echo,
    EchoUdp,
    Motd,
    Dns,
    Sip,
    Elasticsearch,
    Couchdb,
    Clickhouse,
    Kubernetes,
    Tftp,
    Ntp,
    Modbus,
    Mqtt,
    Ssh,
    Https,
    Snmp,
    Ldap,
    Random,
    Hash,
}

impl ServiceKind {
    pub const ALL: &'static [ServiceKind] = &[
        ServiceKind::Telnet,
        ServiceKind::Http,
        ServiceKind::Redis,
        ServiceKind::Ftp,
        ServiceKind::Smtp,
        ServiceKind::Memcached,
        ServiceKind::Mysql,
        ServiceKind::Vnc,
        ServiceKind::Echo,
        ServiceKind::EchoUdp,
        ServiceKind::Motd,
        ServiceKind::Dns,
        ServiceKind::Sip,
        ServiceKind::Elasticsearch,
        ServiceKind::Couchdb,
        ServiceKind::Clickhouse,
        ServiceKind::Kubernetes,
        ServiceKind::Tftp,
        ServiceKind::Ntp,
        ServiceKind::Modbus,
        ServiceKind::Mqtt,
        ServiceKind::Ssh,
        ServiceKind::Https,
        ServiceKind::Snmp,
        ServiceKind::Ldap,
        ServiceKind::Random,
        ServiceKind::Hash,
    ];

    /// The service name in events, as HoneyDB's sensors report it (UDP
    /// services carry a `.udp` suffix).
    pub fn name(self) -> &'static str {
        match self {
            ServiceKind::Telnet => "Telnet",
            ServiceKind::Http => "HTTP",
            ServiceKind::Redis => "Redis",
            ServiceKind::Ftp => "FTP",
            ServiceKind::Smtp => "SMTP",
            ServiceKind::Memcached => "Memcached",
            ServiceKind::Mysql => "MySQL",
            ServiceKind::Vnc => "VNC",
            ServiceKind::Echo => "Echo",
            ServiceKind::EchoUdp => "Echo.udp",
            ServiceKind::Motd => "MOTD",
            ServiceKind::Dns => "DNS.udp",
            ServiceKind::Sip => "SIP.udp",
            ServiceKind::Elasticsearch => "Elasticsearch",
            ServiceKind::Couchdb => "CouchDB",
            ServiceKind::Clickhouse => "ClickHouse",
            ServiceKind::Kubernetes => "Kubernetes",
            ServiceKind::Tftp => "TFTP.udp",
            ServiceKind::Ntp => "NTP.udp",
            ServiceKind::Modbus => "Modbus",
            ServiceKind::Mqtt => "MQTT",
            ServiceKind::Ssh => "SSH",
            ServiceKind::Https => "HTTPS",
            ServiceKind::Snmp => "SNMP.udp",
            ServiceKind::Ldap => "LDAP",
            ServiceKind::Random => "Random",
            ServiceKind::Hash => "Hash",
        }
    }

    /// The config key (`[services.<key>]`).
    pub fn key(self) -> &'static str {
        match self {
            ServiceKind::Telnet => "telnet",
            ServiceKind::Http => "http",
            ServiceKind::Redis => "redis",
            ServiceKind::Ftp => "ftp",
            ServiceKind::Smtp => "smtp",
            ServiceKind::Memcached => "memcached",
            ServiceKind::Mysql => "mysql",
            ServiceKind::Vnc => "vnc",
            ServiceKind::Echo => "echo",
            ServiceKind::EchoUdp => "echo_udp",
            ServiceKind::Motd => "motd",
            ServiceKind::Dns => "dns",
            ServiceKind::Sip => "sip",
            ServiceKind::Elasticsearch => "elasticsearch",
            ServiceKind::Couchdb => "couchdb",
            ServiceKind::Clickhouse => "clickhouse",
            ServiceKind::Kubernetes => "kubernetes",
            ServiceKind::Tftp => "tftp",
            ServiceKind::Ntp => "ntp",
            ServiceKind::Modbus => "modbus",
            ServiceKind::Mqtt => "mqtt",
            ServiceKind::Ssh => "ssh",
            ServiceKind::Https => "https",
            ServiceKind::Snmp => "snmp",
            ServiceKind::Ldap => "ldap",
            ServiceKind::Random => "random",
            ServiceKind::Hash => "hash",
        }
    }

    pub fn protocol(self) -> Protocol {
        match self {
            ServiceKind::EchoUdp
            | ServiceKind::Dns
            | ServiceKind::Sip
            | ServiceKind::Tftp
            | ServiceKind::Ntp
            | ServiceKind::Snmp => Protocol::Udp,
            _ => Protocol::Tcp,
        }
    }

    /// The port the real service uses.
    pub fn standard_port(self) -> u16 {
        match self {
            ServiceKind::Telnet => 23,
            ServiceKind::Http => 80,
            ServiceKind::Redis => 6379,
            ServiceKind::Ftp => 21,
            ServiceKind::Smtp => 25,
            ServiceKind::Memcached => 11211,
            ServiceKind::Mysql => 3306,
            ServiceKind::Vnc => 5900,
            ServiceKind::Echo | ServiceKind::EchoUdp => 7,
            ServiceKind::Motd => 17,
            ServiceKind::Dns => 53,
            ServiceKind::Sip => 5060,
            ServiceKind::Elasticsearch => 9200,
            ServiceKind::Couchdb => 5984,
            ServiceKind::Clickhouse => 8123,
            ServiceKind::Kubernetes => 6443,
            ServiceKind::Tftp => 69,
            ServiceKind::Ntp => 123,
            ServiceKind::Modbus => 502,
            ServiceKind::Mqtt => 1883,
            ServiceKind::Ssh => 22,
            ServiceKind::Https => 443,
            ServiceKind::Snmp => 161,
            ServiceKind::Ldap => 389,
            // No real service owns these; unprivileged and unlikely to
            // clash with anything installed on the sensor host.
            ServiceKind::Random => 2048,
            ServiceKind::Hash => 4096,
        }
    }

    /// Default port: unprivileged, so the sensor runs without root out of
    /// the box. Ports under 1024 move to 10000+port; the others to a fixed
    /// neighbour that does not collide with a real local install.
    pub fn default_port(self) -> u16 {
        match self.standard_port() {
            p if p < 1024 => 10_000 + p,
            6379 => 16379,
            11211 => 21211,
            3306 => 13306,
            5900 => 15900,
            5060 => 15060,
            9200 => 19200,
            5984 => 15984,
            8123 => 18123,
            6443 => 16443,
            1883 => 11883,
            2048 => 12048,
            4096 => 14096,
            p => p,
        }
    }

    pub fn default_enabled(self) -> bool {
        true
    }
}

/// A service's configuration plus what it needs made once at start.
pub(crate) struct Prepared {
    pub cfg: ServiceConfig,
    ssh: Option<Arc<russh::server::Config>>,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

/// Makes (or loads from `state_dir`) the SSH host key and the HTTPS
/// certificate, before privileges are dropped, so a problem fails the start
/// with the file named instead of failing each connection.
pub(crate) fn prepare(kind: ServiceKind, cfg: ServiceConfig, state_dir: &Path) -> anyhow::Result<Prepared> {
    let ssh = match kind {
        ServiceKind::Ssh => Some(ssh::server_config(&cfg, state_dir)?),
        _ => None,
    };
    let tls = match kind {
        ServiceKind::Https => Some(https::acceptor(&cfg, state_dir)?),
        _ => None,
    };
    Ok(Prepared { cfg, ssh, tls })
}

/// A service's handler for one connection, boxed.
pub(crate) type Handler<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = io::Result<()>> + Send + 'a>>;

/// Runs a TCP service on an accepted connection.
///
/// Each service's future is boxed on its own: unboxed, every connection's
/// task would be as large as the largest service's state (SSH, HTTPS: about
/// 2.5 KB) whatever it serves, and a task's future is copied several times
/// as it is spawned, started and finished. Boxed, a connection pays one
/// allocation the size of its own service's state.
pub(crate) fn handle_tcp<'a>(kind: ServiceKind, conn: &'a mut Conn, prepared: &'a Prepared) -> Handler<'a> {
    let cfg = &prepared.cfg;
    match kind {
        ServiceKind::Telnet => Box::pin(telnet::handle(conn, cfg)),
        ServiceKind::Http => Box::pin(http::handle(conn, cfg, http::Flavor::Web)),
        ServiceKind::Elasticsearch => Box::pin(http::handle(conn, cfg, http::Flavor::Elasticsearch)),
        ServiceKind::Couchdb => Box::pin(http::handle(conn, cfg, http::Flavor::CouchDb)),
        ServiceKind::Clickhouse => Box::pin(http::handle(conn, cfg, http::Flavor::ClickHouse)),
        ServiceKind::Kubernetes => Box::pin(http::handle(conn, cfg, http::Flavor::Kubernetes)),
        ServiceKind::Redis => Box::pin(redis::handle(conn, cfg)),
        ServiceKind::Ftp => Box::pin(ftp::handle(conn, cfg)),
        ServiceKind::Smtp => Box::pin(smtp::handle(conn, cfg)),
        ServiceKind::Memcached => Box::pin(memcached::handle(conn, cfg)),
        ServiceKind::Mysql => Box::pin(mysql::handle(conn, cfg)),
        ServiceKind::Vnc => Box::pin(vnc::handle(conn, cfg)),
        ServiceKind::Echo => Box::pin(echo::handle(conn, cfg)),
        ServiceKind::Motd => Box::pin(motd::handle(conn, cfg)),
        ServiceKind::Modbus => Box::pin(modbus::handle(conn, cfg)),
        ServiceKind::Mqtt => Box::pin(mqtt::handle(conn, cfg)),
        ServiceKind::Ssh => match &prepared.ssh {
            Some(config) => Box::pin(ssh::handle(conn, cfg, config)),
            None => Box::pin(std::future::ready(Ok(()))),
        },
        ServiceKind::Https => match &prepared.tls {
            Some(tls) => Box::pin(https::handle(conn, cfg, tls)),
            None => Box::pin(std::future::ready(Ok(()))),
        },
        ServiceKind::Ldap => Box::pin(ldap::handle(conn, cfg)),
        ServiceKind::Random => Box::pin(random::handle(conn, cfg)),
        ServiceKind::Hash => Box::pin(hash::handle(conn, cfg)),
        ServiceKind::EchoUdp
        | ServiceKind::Dns
        | ServiceKind::Sip
        | ServiceKind::Tftp
        | ServiceKind::Ntp
        | ServiceKind::Snmp => Box::pin(std::future::ready(Ok(()))),
    }
}

/// Answers one UDP datagram. Replies are never much larger than the request,
/// so a spoofed source cannot use the sensor as an amplifier.
pub(crate) fn handle_udp(
    kind: ServiceKind,
    request: &[u8],
    cfg: &ServiceConfig,
    facts: &mut Vec<Fact>,
) -> Option<Vec<u8>> {
    match kind {
        ServiceKind::EchoUdp => Some(request.to_vec()),
        ServiceKind::Dns => dns::answer(request, cfg, facts),
        ServiceKind::Sip => sip::answer(request, cfg, facts),
        ServiceKind::Tftp => tftp::answer(request, cfg, facts),
        ServiceKind::Ntp => ntp::answer(request, cfg, facts),
        ServiceKind::Snmp => snmp::answer(request, cfg, facts),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_valid_service_names() {
        for k in ServiceKind::ALL {
            let n = k.name();
            assert!(n.len() <= apiary_model::MAX_SERVICE_LEN);
            assert!(n.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)));
            assert_eq!(k.protocol() == Protocol::Udp, n.ends_with(".udp"), "{n}");
            let key: ServiceKind = serde_json::from_str(&format!("\"{}\"", k.key())).unwrap();
            assert_eq!(key, *k);
        }
    }
}
