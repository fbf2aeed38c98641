//! SSH: a real SSH server (russh) that records what attackers try.
//!
//! Why a real server: SSH brute-forcers and bots only reveal their
//! credentials, keys and commands after a complete key exchange, so anything
//! less than a real server captures nothing but the version line.
//!
//! Captured as INFO facts: the client's version string (`client`, read from
//! the clear-text start of the connection, so even scanners that hang up
//! after the key exchange are identified), every password and
//! keyboard-interactive attempt (`login`, method `password` /
//! `keyboard-interactive`), every public key offered (`login`, method
//! `publickey`, with `key_type`, `fingerprint` and the `public_key` itself;
//! keys are never accepted), requested port forwards (`forward`, always
//! refused) and, for logins let in by `accept`, every shell line or `exec`
//! command (`command`). The fake shell answers from the same canned replies as
//! Telnet's; nothing is ever executed or forwarded.
//!
//! RX/TX events carry the bytes on the wire: the version exchange and key
//! exchange offers in clear, then ciphertext. The connection is pumped through
//! [`Conn::relay`], so the sensor's byte, idle and duration limits hold as for
//! every other service.
//!
//! The Ed25519 host key is made once and kept in `<state_dir>/ssh_host_ed25519_key`
//! (OpenSSH format, mode 0600), so returning attackers see the same host.
//! Options: `banner` (the server version, default an Ubuntu OpenSSH), `hostname`,
//! `accept`.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rand::RngCore;
use russh::keys::ssh_key::{self, HashAlg, LineEnding, PrivateKey};
use russh::server::{Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Session as SshSession, VerifiedPublicKey};
use russh::{Channel, ChannelId, MethodKind, MethodSet, SshId};

use super::telnet::{respond, Reply};
use crate::config::ServiceConfig;
use crate::conn::Conn;
use crate::facts::Fact;
use crate::record::Session;

const DEFAULT_ID: &str = "SSH-2.0-OpenSSH_8.9p1 Ubuntu-3ubuntu0.10";
const HOST_KEY_FILE: &str = "ssh_host_ed25519_key";
/// Longest client version line kept (RFC 4253 allows 255 bytes).
const MAX_ID: usize = 255;
const MAX_LINE: usize = 1024;
const MAX_COMMANDS: usize = 500;
/// Attempts per connection, as OpenSSH's MaxAuthTries.
const MAX_AUTH: usize = 6;
/// Pipe between the relay and russh; small, the relay applies backpressure.
const PIPE: usize = 32 * 1024;

/// Builds russh's configuration once at start: loads (or creates) the host
/// key, so a missing or unwritable state directory fails the start loudly.
pub fn server_config(cfg: &ServiceConfig, state_dir: &Path) -> anyhow::Result<Arc<russh::server::Config>> {
    let key = host_key(state_dir)?;
    let banner = cfg.banner.as_deref().unwrap_or(DEFAULT_ID).trim();
    let id = if banner.starts_with("SSH-") { banner.to_owned() } else { format!("SSH-2.0-{banner}") };
    Ok(Arc::new(russh::server::Config {
        server_id: SshId::Standard(id.into()),
        methods: MethodSet::from(&[MethodKind::Password, MethodKind::PublicKey, MethodKind::KeyboardInteractive][..]),
        // A short constant delay on failures, like sshd's; brute-forcers get
        // through their list (and we get their list) without hammering us.
        auth_rejection_time: Duration::from_millis(300),
        auth_rejection_time_initial: Some(Duration::ZERO),
        keys: vec![key],
        max_auth_attempts: MAX_AUTH,
        // The relay enforces the sensor's own idle and duration limits.
        inactivity_timeout: None,
        nodelay: true,
        ..Default::default()
    }))
}

/// The host key, made on first start and reused afterwards.
fn host_key(state_dir: &Path) -> anyhow::Result<PrivateKey> {
    let path = state_dir.join(HOST_KEY_FILE);
    if path.exists() {
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        return PrivateKey::from_openssh(&text)
            .with_context(|| format!("{} is not an OpenSSH private key", path.display()));
    }
    let mut seed = [0u8; 32];
    rand::rng().fill_bytes(&mut seed);
    let pair = ssh_key::private::Ed25519Keypair::from_seed(&seed);
    let key = PrivateKey::new(ssh_key::private::KeypairData::Ed25519(pair), "apiary-sensor")?;
    let text = key.to_openssh(LineEnding::LF)?;
    crate::node::write_private(&path, text.as_bytes())
        .with_context(|| format!("cannot write SSH host key {}", path.display()))?;
    Ok(key)
}

pub async fn handle(conn: &mut Conn, cfg: &ServiceConfig, config: &Arc<russh::server::Config>) -> io::Result<()> {
    let (ours, theirs) = tokio::io::duplex(PIPE);
    let handler = Honeypot {
        session: conn.session.clone(),
        cfg: cfg.clone(),
        user: String::new(),
        shell: None,
        line: Vec::new(),
        commands: 0,
    };
    let server = async {
        // Ends when the client goes (the relay drops its end of the pipe),
        // on a protocol error, or when russh disconnects a client.
        if let Ok(running) = russh::server::run_stream(config.clone(), theirs, handler).await {
            let _ = running.await;
        }
    };
    let mut id = VersionSniffer::default();
    let (relayed, ()) = tokio::join!(conn.relay(ours, |b| id.feed(b)), server);
    relayed
}

/// Picks the client's version line out of the first bytes it sends.
#[derive(Default)]
struct VersionSniffer {
    buf: Vec<u8>,
    done: bool,
}

impl VersionSniffer {
    fn feed(&mut self, bytes: &[u8]) -> Option<Fact> {
        if self.done {
            return None;
        }
        self.buf.extend_from_slice(&bytes[..bytes.len().min(4 * MAX_ID)]);
        // RFC 4253 lets a server... and a client send other lines first; the
        // version line is the one starting "SSH-".
        while let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
            let mut line: Vec<u8> = self.buf.drain(..=i).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if line.starts_with(b"SSH-") {
                self.done = true;
                line.truncate(MAX_ID);
                return Some(Fact::new("client").with("version", &line));
            }
        }
        if self.buf.len() > 4 * MAX_ID {
            // Not SSH (or a client that never says who it is).
            self.done = true;
        }
        None
    }
}

/// One connection's russh handler: records, never runs anything.
struct Honeypot {
    session: Session,
    cfg: ServiceConfig,
    user: String,
    /// The channel with an interactive shell, if one was started.
    shell: Option<ChannelId>,
    line: Vec<u8>,
    commands: usize,
}

fn prompt(user: &str, host: &str) -> String {
    if user == "root" {
        format!("{user}@{host}:~# ")
    } else {
        format!("{user}@{host}:~$ ")
    }
}

impl Honeypot {
    fn login(&self, user: &str, password: &str) -> Auth {
        if self.cfg.accepts(user, password) {
            Auth::Accept
        } else {
            Auth::reject()
        }
    }

    /// Canned output for one command line; `None` when it asks to leave.
    fn run_line(&mut self, text: &str) -> Option<String> {
        let mut out = String::new();
        for cmd in text.split([';', '\n']).flat_map(|c| c.split("&&")).flat_map(|c| c.split("||")) {
            match respond(cmd.trim(), &self.user, self.cfg.hostname()) {
                Reply::Exit => return None,
                Reply::Text(s) => out.push_str(&s),
            }
        }
        Some(out)
    }

    async fn command(&mut self, text: &str) -> bool {
        self.commands += 1;
        self.session.info(&Fact::command(text)).await;
        self.commands < MAX_COMMANDS
    }
}

impl russh::server::Handler for Honeypot {
    type Error = russh::Error;

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        Ok(Auth::reject())
    }

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        self.session.info(&Fact::login(user, password).with("method", "password")).await;
        let auth = self.login(user, password);
        if auth == Auth::Accept {
            self.user = user.to_owned();
        }
        Ok(auth)
    }

    async fn auth_publickey_offered(&mut self, user: &str, offer: PublicKeyOffer<'_>) -> Result<Auth, Self::Error> {
        let key = offer.public_key;
        let fact = Fact::new("login")
            .with("username", user)
            .with("method", "publickey")
            .with("key_type", offer.algorithm.as_str())
            .with("fingerprint", key.fingerprint(HashAlg::Sha256).to_string())
            .with("public_key", key.to_openssh().unwrap_or_default());
        self.session.info(&fact).await;
        // Keys are never let in: the attacker would need our approval of a
        // key we have never seen, and the password prompt is more telling.
        Ok(Auth::reject())
    }

    async fn auth_publickey(&mut self, _user: &str, _key: VerifiedPublicKey<'_>) -> Result<Auth, Self::Error> {
        Ok(Auth::reject())
    }

    async fn auth_keyboard_interactive<'a>(
        &'a mut self,
        user: &str,
        _submethods: &str,
        response: Option<russh::server::Response<'a>>,
    ) -> Result<Auth, Self::Error> {
        let Some(mut response) = response else {
            return Ok(Auth::Partial {
                name: "".into(),
                instructions: "".into(),
                prompts: vec![("Password: ".into(), false)].into(),
            });
        };
        let password = response.next().unwrap_or_default();
        let password = String::from_utf8_lossy(&password).into_owned();
        self.session.info(&Fact::login(user, &password).with("method", "keyboard-interactive")).await;
        let auth = self.login(user, &password);
        if auth == Auth::Accept {
            self.user = user.to_owned();
        }
        Ok(auth)
    }

    async fn channel_open_session(
        &mut self,
        _channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        // The Channel handle is dropped: data arrives through `data` below,
        // and a handle nobody reads would stall the session once full.
        reply.accept().await;
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        _channel: Channel<Msg>,
        host_to_connect: &str,
        port_to_connect: u32,
        originator_address: &str,
        originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        let fact = Fact::new("forward")
            .with("host", host_to_connect)
            .with_value("port", port_to_connect.into())
            .with("originator", format!("{originator_address}:{originator_port}"));
        self.session.info(&fact).await;
        // Never forwarded: refused as sshd does with AllowTcpForwarding no.
        reply.reject(russh::ChannelOpenFailure::AdministrativelyProhibited).await;
        Ok(())
    }

    async fn tcpip_forward(
        &mut self,
        address: &str,
        port: &mut u32,
        _session: &mut SshSession,
    ) -> Result<bool, Self::Error> {
        let fact =
            Fact::new("forward").with("host", address).with_value("port", (*port).into()).with("direction", "remote");
        self.session.info(&fact).await;
        Ok(false)
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        Ok(())
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        _name: &str,
        _value: &str,
        session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        Ok(())
    }

    async fn shell_request(&mut self, channel: ChannelId, session: &mut SshSession) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        self.shell = Some(channel);
        let host = self.cfg.hostname().to_owned();
        let motd = format!(
            "Welcome to Ubuntu 22.04.3 LTS (GNU/Linux 5.15.0-91-generic x86_64)\r\n\r\nLast login: Mon Jan  8 09:14:02 2024 from 10.0.0.2\r\n{}",
            prompt(&self.user, &host)
        );
        session.data(channel, motd.into_bytes())?;
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        let text = String::from_utf8_lossy(&data[..data.len().min(MAX_LINE * 4)]).trim().to_owned();
        self.command(&text).await;
        let out = self.run_line(&text).unwrap_or_default();
        if !out.is_empty() {
            session.data(channel, out.into_bytes())?;
        }
        session.exit_status_request(channel, 0)?;
        session.eof(channel)?;
        session.close(channel)?;
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        // sftp and friends would mean file transfer: recorded, refused.
        self.session.info(&Fact::new("command").with("subsystem", name)).await;
        session.channel_failure(channel)?;
        Ok(())
    }

    async fn data(&mut self, channel: ChannelId, data: &[u8], session: &mut SshSession) -> Result<(), Self::Error> {
        if self.shell != Some(channel) {
            return Ok(());
        }
        let host = self.cfg.hostname().to_owned();
        let mut echo = Vec::new();
        for &b in data {
            match b {
                b'\r' | b'\n' => {
                    echo.extend_from_slice(b"\r\n");
                    let text = String::from_utf8_lossy(&std::mem::take(&mut self.line)).trim().to_owned();
                    if !text.is_empty() {
                        let more = self.command(&text).await;
                        match self.run_line(&text) {
                            Some(out) if more => echo.extend_from_slice(out.replace('\n', "\r\n").as_bytes()),
                            _ => {
                                session.data(channel, echo)?;
                                session.exit_status_request(channel, 0)?;
                                session.eof(channel)?;
                                session.close(channel)?;
                                self.shell = None;
                                return Ok(());
                            }
                        }
                    }
                    echo.extend_from_slice(prompt(&self.user, &host).as_bytes());
                }
                // Ctrl-C drops the line; Ctrl-D on an empty line logs out.
                3 => {
                    self.line.clear();
                    echo.extend_from_slice(b"^C\r\n");
                    echo.extend_from_slice(prompt(&self.user, &host).as_bytes());
                }
                4 if self.line.is_empty() => {
                    echo.extend_from_slice(b"logout\r\n");
                    session.data(channel, echo)?;
                    session.exit_status_request(channel, 0)?;
                    session.eof(channel)?;
                    session.close(channel)?;
                    self.shell = None;
                    return Ok(());
                }
                8 | 127 if !self.line.is_empty() => {
                    self.line.pop();
                    echo.extend_from_slice(b"\x08 \x08");
                }
                8 | 127 => {}
                _ if self.line.len() < MAX_LINE => {
                    self.line.push(b);
                    echo.push(b);
                }
                _ => {}
            }
        }
        if !echo.is_empty() {
            session.data(channel, echo)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_the_version_line_across_reads() {
        let mut s = VersionSniffer::default();
        assert!(s.feed(b"SSH-2.0-Open").is_none());
        let f = s.feed(b"SSH_9.2p1 Debian-2\r\n\x00\x00\x05").unwrap();
        assert_eq!(f, Fact::new("client").with("version", "SSH-2.0-OpenSSH_9.2p1 Debian-2"));
        assert!(s.feed(b"SSH-2.0-again\r\n").is_none());
    }

    #[test]
    fn gives_up_on_noise() {
        let mut s = VersionSniffer::default();
        for _ in 0..10 {
            assert!(s.feed(&[0x41; 300]).is_none());
        }
        assert!(s.done);
    }

    #[test]
    fn host_key_is_made_once() {
        let dir = tempfile::tempdir().unwrap();
        let a = host_key(dir.path()).unwrap();
        let b = host_key(dir.path()).unwrap();
        assert_eq!(a.public_key(), b.public_key());
    }
}
