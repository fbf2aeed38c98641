//! MQTT 3.1/3.1.1: CONNECT credentials and client id become INFO `login`;
//! subscriptions and publishes become INFO `command`. Nothing is relayed.
//! Options: `accept` (which logins get CONNACK 0; others get "not authorised").

use std::io;

use crate::config::ServiceConfig;
use crate::conn::Conn;
use crate::facts::Fact;

const MAX_PACKET: usize = 64 * 1024;
const MAX_PACKETS: usize = 1000;

async fn read_packet(conn: &mut Conn) -> io::Result<Option<(u8, Vec<u8>)>> {
    let Some(h) = conn.read_exact(1).await? else { return Ok(None) };
    let mut len = 0usize;
    for i in 0..4 {
        let Some(b) = conn.read_exact(1).await? else { return Ok(None) };
        len |= usize::from(b[0] & 0x7f) << (7 * i);
        if b[0] & 0x80 == 0 {
            break;
        }
        if i == 3 {
            return Err(io::Error::other("bad remaining length"));
        }
    }
    if len > MAX_PACKET {
        return Err(io::Error::other("packet too large"));
    }
    let Some(body) = conn.read_exact(len).await? else { return Ok(None) };
    Ok(Some((h[0], body)))
}

/// Reads a length-prefixed string at `*pos`.
fn field<'a>(b: &'a [u8], pos: &mut usize) -> Option<&'a [u8]> {
    let n = usize::from(u16::from_be_bytes([*b.get(*pos)?, *b.get(*pos + 1)?]));
    let s = b.get(*pos + 2..*pos + 2 + n)?;
    *pos += 2 + n;
    Some(s)
}

pub(crate) struct Connect<'a> {
    pub client_id: &'a [u8],
    pub user: Option<&'a [u8]>,
    pub password: Option<&'a [u8]>,
}

pub(crate) fn parse_connect(b: &[u8]) -> Option<Connect<'_>> {
    let mut pos = 0;
    let _proto = field(b, &mut pos)?;
    let _level = *b.get(pos)?;
    let flags = *b.get(pos + 1)?;
    pos += 4;
    let client_id = field(b, &mut pos)?;
    if flags & 0x04 != 0 {
        field(b, &mut pos)?;
        field(b, &mut pos)?;
    }
    let user = if flags & 0x80 != 0 { field(b, &mut pos) } else { None };
    let password = if flags & 0x40 != 0 { field(b, &mut pos) } else { None };
    Some(Connect { client_id, user, password })
}

pub async fn handle(conn: &mut Conn, cfg: &ServiceConfig) -> io::Result<()> {
    let Some((h, body)) = read_packet(conn).await? else { return Ok(()) };
    if h >> 4 != 1 {
        return Ok(());
    }
    let Some(c) = parse_connect(&body) else { return Ok(()) };
    let (user, pass) = (c.user.unwrap_or(b""), c.password.unwrap_or(b""));
    conn.info(Fact::login(user, pass).with("method", "mqtt").with("client_id", c.client_id)).await;
    let ok = cfg.accepts(&String::from_utf8_lossy(user), &String::from_utf8_lossy(pass));
    conn.write(&[0x20, 2, 0, if ok { 0 } else { 5 }]).await?;
    if !ok {
        return Ok(());
    }
    for _ in 0..MAX_PACKETS {
        let Some((h, body)) = read_packet(conn).await? else { return Ok(()) };
        match h >> 4 {
            3 => {
                let mut pos = 0;
                let topic = field(&body, &mut pos).unwrap_or(b"");
                conn.info(Fact::new("command").with("command", "PUBLISH").with("topic", topic)).await;
                let qos = (h >> 1) & 3;
                if qos > 0 {
                    if let Some(id) = body.get(pos..pos + 2) {
                        conn.write(&[if qos == 1 { 0x40 } else { 0x50 }, 2, id[0], id[1]]).await?;
                    }
                }
            }
            8 => {
                let id = body.get(..2).unwrap_or(&[0, 0]).to_vec();
                let mut pos = 2;
                let mut granted = Vec::new();
                while let Some(topic) = field(&body, &mut pos) {
                    conn.info(Fact::new("command").with("command", "SUBSCRIBE").with("topic", topic)).await;
                    granted.push(0);
                    pos += 1;
                    if granted.len() >= 100 {
                        break;
                    }
                }
                let mut out = vec![0x90, (2 + granted.len()) as u8, id[0], id[1]];
                out.extend(granted);
                conn.write(&out).await?;
            }
            12 => conn.write(&[0xd0, 0]).await?,
            14 => return Ok(()),
            _ => {}
        }
    }
    Ok(())
}
