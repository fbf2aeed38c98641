//! Listeners: binding, the TCP accept loop, the UDP loop.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::{TcpListener, TcpSocket, TcpStream, UdpSocket};
use tokio::sync::Semaphore;

use crate::config::{LimitsConfig, Listener};
use crate::conn::Conn;
use crate::deadline::{Deadlines, Entry, Expired, StopOnDrop, SWEEP_EVERY};
use crate::facts::Fact;
use crate::limits::RateLimiter;
use crate::record::Recorder;
use crate::services::{self, Prepared, ServiceKind};

/// A bound socket, before privileges are dropped and serving starts.
pub enum Bound {
    Tcp(Listener, TcpBound),
    Udp(Listener, UdpSocket),
}

/// A TCP listening socket.
pub struct TcpBound {
    pub socket: TcpListener,
    /// Connections accepted from it already have `TCP_NODELAY` (Linux
    /// copies it from the listening socket), so no `setsockopt` per
    /// connection is needed.
    pub nodelay_inherited: bool,
}

impl Bound {
    pub fn local_addr(&self) -> SocketAddr {
        match self {
            Bound::Tcp(l, s) => s.socket.local_addr().unwrap_or(l.addr),
            Bound::Udp(l, s) => s.local_addr().unwrap_or(l.addr),
        }
    }

    pub fn listener(&self) -> Listener {
        match self {
            Bound::Tcp(l, _) | Bound::Udp(l, _) => *l,
        }
    }
}

/// Binds a TCP listener as `TcpListener::bind` does (`SO_REUSEADDR`, the
/// same backlog), with `TCP_NODELAY` set on the listening socket itself:
/// Linux copies it to every accepted connection, which saves a system call
/// per connection. Elsewhere (or if the option cannot be set here) each
/// connection sets it.
fn bind_tcp(addr: SocketAddr) -> std::io::Result<TcpBound> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    let nodelay_inherited = cfg!(target_os = "linux") && socket.set_nodelay(true).is_ok();
    socket.bind(addr)?;
    Ok(TcpBound { socket: socket.listen(LISTEN_BACKLOG)?, nodelay_inherited })
}

/// The backlog `TcpListener::bind` uses (the standard library's).
const LISTEN_BACKLOG: u32 = 128;

/// Binds every listener, failing with a message that names the service,
/// protocol and address (the usual causes: in use, or < 1024 without root).
pub async fn bind_all(listeners: &[Listener]) -> anyhow::Result<Vec<Bound>> {
    let mut bound = Vec::new();
    for l in listeners {
        let what = || {
            let hint = if l.addr.port() < 1024 { " (ports below 1024 need root or CAP_NET_BIND_SERVICE)" } else { "" };
            format!("cannot listen for {} on {} port {}{hint}", l.name, l.protocol.as_str(), l.addr)
        };
        match l.protocol {
            apiary_model::Protocol::Tcp => bound.push(Bound::Tcp(*l, bind_tcp(l.addr).with_context(what)?)),
            apiary_model::Protocol::Udp => {
                bound.push(Bound::Udp(*l, UdpSocket::bind(l.addr).await.with_context(what)?))
            }
        }
    }
    Ok(bound)
}

/// What every listener shares.
#[derive(Clone)]
pub struct Shared {
    pub recorder: Recorder,
    pub limits: Arc<LimitsConfig>,
    pub conns: Arc<Semaphore>,
    pub rate: Arc<RateLimiter>,
}

/// Accepts until cancelled. Each connection is a task of its own with a
/// slot in this listener's [`Deadlines`], which this loop sweeps every
/// [`SWEEP_EVERY`] to end the connections past their idle or duration limit;
/// cancelling the listener (dropping this future) ends its connections too.
/// No `JoinSet`: it cost locks per connection (insert, completion, reaping)
/// only to be able to cancel, which the slots do as well.
pub(crate) async fn serve_tcp(kind: ServiceKind, bound: TcpBound, cfg: Arc<Prepared>, shared: Shared) {
    let TcpBound { socket: listener, nodelay_inherited } = bound;
    let deadlines = Deadlines::new();
    let _stop = StopOnDrop(deadlines.clone());
    let mut sweep = tokio::time::interval(SWEEP_EVERY);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The address connections arrive on, unless the listener is bound to a
    // wildcard (then each connection's own is asked for).
    let fixed_local = listener.local_addr().ok().filter(|a| !a.ip().is_unspecified());
    let socket = SocketInfo { fixed_local, nodelay_inherited };
    let (max_duration, idle) = (shared.limits.max_duration(), shared.limits.idle());
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = sweep.tick() => {
                deadlines.sweep();
                continue;
            }
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(service = kind.name(), "accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let stats = shared.recorder.stats();
        if !shared.rate.allow(peer.ip()) {
            stats.refused_rate.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let Ok(permit) = shared.conns.clone().try_acquire_owned() else {
            stats.refused_capacity.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        stats.connections.fetch_add(1, Ordering::Relaxed);
        let entry = deadlines.register(max_duration, idle);
        let (cfg, shared) = (cfg.clone(), shared.clone());
        tokio::spawn(async move {
            handle_conn(kind, stream, peer, socket, entry, &cfg, &shared).await;
            drop(permit);
        });
    }
}

/// What a listener knows about the sockets it accepts.
#[derive(Clone, Copy)]
struct SocketInfo {
    /// The local address, unless the listener is bound to a wildcard.
    fixed_local: Option<SocketAddr>,
    /// `TCP_NODELAY` is already set (copied from the listening socket).
    nodelay_inherited: bool,
}

async fn handle_conn(
    kind: ServiceKind,
    stream: TcpStream,
    peer: SocketAddr,
    socket: SocketInfo,
    entry: Entry,
    cfg: &Prepared,
    shared: &Shared,
) {
    if !socket.nodelay_inherited {
        let _ = stream.set_nodelay(true);
    }
    let local = match socket.fixed_local.map_or_else(|| stream.local_addr(), Ok) {
        Ok(a) => a,
        Err(_) => return,
    };
    let session = shared.recorder.session(kind.name(), apiary_model::Protocol::Tcp, local, peer);
    let limits = &shared.limits;
    let slot = entry.slot().clone();
    let mut conn = Conn::new(stream, session, limits.max_bytes_per_connection, slot.clone());
    conn.session.connect().await;
    let expired = tokio::select! {
        biased;
        _ = services::handle_tcp(kind, &mut conn, cfg) => None,
        why = slot.expired() => Some(why),
    };
    let limit = match expired {
        // The sensor is stopping: end without another event, as an
        // aborted task would.
        Some(Expired::Stopped) => return,
        Some(Expired::Duration) => Some("max_duration"),
        Some(Expired::Idle) => Some(crate::conn::Limit::Idle.as_str()),
        None => conn.limit.map(|l| l.as_str()),
    };
    if let Some(limit) = limit {
        shared.recorder.stats().limits_hit.fetch_add(1, Ordering::Relaxed);
        conn.info(Fact::new("limit").with("limit", limit)).await;
    }
    conn.shutdown().await;
}

/// Answers datagrams until cancelled; each datagram is its own session.
pub(crate) async fn serve_udp(kind: ServiceKind, socket: UdpSocket, cfg: Arc<Prepared>, shared: Shared) {
    let local = match socket.local_addr() {
        Ok(a) => a,
        Err(_) => return,
    };
    let mut buf = vec![0u8; 65_536];
    loop {
        let (n, peer) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                // ICMP errors from earlier replies surface here on Linux.
                tracing::debug!(service = kind.name(), "recv failed: {e}");
                continue;
            }
        };
        if !shared.rate.allow(peer.ip()) {
            shared.recorder.stats().refused_rate.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let request = &buf[..n];
        let session = shared.recorder.session(kind.name(), apiary_model::Protocol::Udp, local, peer);
        session.rx(request).await;
        let mut facts = Vec::new();
        let reply = services::handle_udp(kind, request, &cfg.cfg, &mut facts);
        for f in &facts {
            session.info(f).await;
        }
        if let Some(reply) = reply {
            // Never amplify: a reply may exceed the request only a little.
            if reply.len() <= n.max(64) * 2 && socket.send_to(&reply, peer).await.is_ok() {
                session.tx(&reply).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_connections_have_nodelay() {
        let bound = bind_tcp("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = bound.socket.local_addr().unwrap();
        let _client = TcpStream::connect(addr).await.unwrap();
        let (stream, _) = bound.socket.accept().await.unwrap();
        if bound.nodelay_inherited {
            assert!(stream.nodelay().unwrap());
        }
        assert_eq!(bound.nodelay_inherited, cfg!(target_os = "linux"));
    }
}
