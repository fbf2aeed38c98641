//! MySQL: the protocol-10 greeting and the client's login packet. The user
//! name, database and the scrambled password (hex, with our salt, so guessed
//! passwords can be checked offline) become INFO `login`; the answer is
//! always "Access denied". SSL and compression are not offered.
//! Options: `version` (server version string).

use std::io;

use crate::config::ServiceConfig;
use crate::conn::Conn;
use crate::facts::Fact;

const CLIENT_CONNECT_WITH_DB: u32 = 0x8;
const CLIENT_SECURE_CONNECTION: u32 = 0x8000;
const CLIENT_PLUGIN_AUTH: u32 = 0x80000;
const CLIENT_PLUGIN_AUTH_LENENC: u32 = 0x200000;
const MAX_PACKET: usize = 16 * 1024;

fn packet(seq: u8, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = len.to_le_bytes()[..3].to_vec();
    out.push(seq);
    out.extend_from_slice(payload);
    out
}

fn greeting(version: &str, salt: &[u8; 20]) -> Vec<u8> {
    let mut p = vec![10u8];
    p.extend_from_slice(version.as_bytes());
    p.push(0);
    p.extend(rand::random::<u16>().to_le_bytes().iter().chain(&[0, 0]));
    p.extend_from_slice(&salt[..8]);
    p.push(0);
    p.extend(0xf75fu16.to_le_bytes());
    p.push(0x21);
    p.extend(2u16.to_le_bytes());
    p.extend(0x003fu16.to_le_bytes());
    p.push(21);
    p.extend([0u8; 10]);
    p.extend_from_slice(&salt[8..]);
    p.push(0);
    p.extend_from_slice(b"mysql_native_password\0");
    p
}

/// The fields of a HandshakeResponse41 we keep.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Login {
    pub user: Vec<u8>,
    pub auth: Vec<u8>,
    pub database: Option<Vec<u8>>,
    pub plugin: Option<Vec<u8>>,
}

fn cstr(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let i = b.iter().position(|&c| c == 0)?;
    Some((&b[..i], &b[i + 1..]))
}

pub(crate) fn parse_login(p: &[u8]) -> Option<Login> {
    if p.len() < 32 {
        return None;
    }
    let caps = u32::from_le_bytes(p[0..4].try_into().ok()?);
    let (user, mut rest) = cstr(&p[32..])?;
    let auth;
    if caps & CLIENT_PLUGIN_AUTH_LENENC != 0 {
        let (&n, r) = rest.split_first()?;
        let n = usize::from(n);
        if n >= 0xfb || r.len() < n {
            return None;
        }
        auth = r[..n].to_vec();
        rest = &r[n..];
    } else if caps & CLIENT_SECURE_CONNECTION != 0 {
        let (&n, r) = rest.split_first()?;
        let n = usize::from(n);
        auth = r.get(..n)?.to_vec();
        rest = &r[n..];
    } else {
        let (a, r) = cstr(rest).unwrap_or((rest, &[]));
        auth = a.to_vec();
        rest = r;
    }
    let mut login = Login { user: user.to_vec(), auth, ..Default::default() };
    if caps & CLIENT_CONNECT_WITH_DB != 0 {
        if let Some((db, r)) = cstr(rest) {
            login.database = Some(db.to_vec());
            rest = r;
        }
    }
    if caps & CLIENT_PLUGIN_AUTH != 0 {
        login.plugin = cstr(rest).map(|(p, _)| p.to_vec());
    }
    Some(login)
}

pub async fn handle(conn: &mut Conn, cfg: &ServiceConfig) -> io::Result<()> {
    let version = cfg.version.as_deref().unwrap_or("5.7.42-0ubuntu0.18.04.1");
    let salt: [u8; 20] = rand::random::<[u8; 20]>().map(|b| (b % 94) + 33);
    conn.write(&packet(0, &greeting(version, &salt))).await?;
    let Some(head) = conn.read_exact(4).await? else { return Ok(()) };
    let len = usize::from(head[0]) | usize::from(head[1]) << 8 | usize::from(head[2]) << 16;
    let seq = head[3];
    if len > MAX_PACKET {
        return Ok(());
    }
    let Some(payload) = conn.read_exact(len).await? else { return Ok(()) };
    let user = match parse_login(&payload) {
        Some(l) => {
            let mut fact = Fact::login(&l.user, "")
                .with("method", "mysql_native_password")
                .with("scramble", hex::encode(&l.auth))
                .with("salt", hex::encode(salt));
            if let Some(db) = &l.database {
                fact = fact.with("database", db);
            }
            conn.info(fact).await;
            String::from_utf8_lossy(&l.user).into_owned()
        }
        None => String::new(),
    };
    let host = conn.session.remote().ip();
    let using = if payload.len() > 32 { "YES" } else { "NO" };
    let mut err = vec![0xff];
    err.extend(1045u16.to_le_bytes());
    err.extend_from_slice(b"#28000");
    err.extend_from_slice(format!("Access denied for user '{user}'@'{host}' (using password: {using})").as_bytes());
    conn.write(&packet(seq.wrapping_add(1), &err)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_client_login() {
        let mut p = (CLIENT_SECURE_CONNECTION | CLIENT_CONNECT_WITH_DB | CLIENT_PLUGIN_AUTH).to_le_bytes().to_vec();
        p.extend([0u8; 28]);
        p.extend(b"root\0");
        p.push(3);
        p.extend(b"abc");
        p.extend(b"db\0mysql_native_password\0");
        let l = parse_login(&p).unwrap();
        assert_eq!(l.user, b"root");
        assert_eq!(l.auth, b"abc");
        assert_eq!(l.database.as_deref(), Some(&b"db"[..]));
        for cut in 0..p.len() {
            let _ = parse_login(&p[..cut]);
        }
    }
}
