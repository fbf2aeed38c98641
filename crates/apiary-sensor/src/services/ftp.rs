//! FTP: login capture and the control-channel commands clients issue before
//! a transfer. Data connections are refused (no PASV/PORT listener is ever
//! opened), so nothing is uploaded or downloaded; STOR/RETR file names are
//! still recorded as INFO `command`.
//! Options: `banner` (the 220 greeting), `accept`.

use std::io;

use crate::config::ServiceConfig;
use crate::conn::Conn;
use crate::facts::Fact;

const MAX_LINE: usize = 1024;
const MAX_COMMANDS: usize = 500;

pub async fn handle(conn: &mut Conn, cfg: &ServiceConfig) -> io::Result<()> {
    let banner = cfg.banner.as_deref().unwrap_or("(vsFTPd 3.0.3)");
    // Every answer is built in this one buffer (no `format!` per line).
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(b"220 ");
    out.extend_from_slice(banner.as_bytes());
    out.extend_from_slice(b"\r\n");
    conn.write(&out).await?;
    let mut user: Option<Vec<u8>> = None;
    let mut logged_in = false;
    for _ in 0..MAX_COMMANDS {
        let Some(line) = conn.read_line(MAX_LINE).await? else { return Ok(()) };
        let (verb, arg) = match line.iter().position(|&b| b == b' ') {
            Some(i) => (&line[..i], &line[i + 1..]),
            None => (&line[..], &[][..]),
        };
        // Upper-cased on the stack; no verb is longer than four letters, so
        // a longer one is unknown whatever its case.
        let mut upper = [0u8; 8];
        let verb = match upper.get_mut(..verb.len()) {
            Some(v) => {
                v.copy_from_slice(verb);
                v.make_ascii_uppercase();
                &*v
            }
            None => &b"?"[..],
        };
        let reply: &str = match verb {
            b"USER" => {
                user = Some(arg.to_vec());
                "331 Please specify the password."
            }
            b"PASS" => match user.take() {
                Some(u) => {
                    conn.info(Fact::login(&u, arg).with("method", "password")).await;
                    let (us, ps) = (String::from_utf8_lossy(&u), String::from_utf8_lossy(arg));
                    if cfg.accepts(&us, &ps) {
                        logged_in = true;
                        "230 Login successful."
                    } else {
                        "530 Login incorrect."
                    }
                }
                None => "503 Login with USER first.",
            },
            b"QUIT" => {
                conn.write(b"221 Goodbye.\r\n").await?;
                return Ok(());
            }
            b"AUTH" => "530 Please login with USER and PASS.",
            b"FEAT" => "211-Features:\r\n EPRT\r\n EPSV\r\n MDTM\r\n PASV\r\n REST STREAM\r\n SIZE\r\n TVFS\r\n UTF8\r\n211 End",
            b"SYST" => "215 UNIX Type: L8",
            b"NOOP" => "200 NOOP ok.",
            b"OPTS" => "200 Always in UTF8 mode.",
            b"HELP" => "214 Help OK.",
            _ if !logged_in => "530 Please login with USER and PASS.",
            b"PWD" | b"XPWD" => "257 \"/\" is the current directory",
            b"CWD" | b"XCWD" | b"CDUP" => "250 Directory successfully changed.",
            b"TYPE" => "200 Switching to Binary mode.",
            b"MODE" | b"STRU" => "200 Mode set.",
            b"SIZE" | b"MDTM" => "550 Could not get file size.",
            // No data connection is ever offered.
            b"PASV" | b"EPSV" | b"PORT" | b"EPRT" => "500 Illegal PORT command.",
            b"LIST" | b"NLST" | b"MLSD" | b"RETR" | b"STOR" | b"STOU" | b"APPE" => {
                conn.info(Fact::command(&line)).await;
                "425 Use PORT or PASV first."
            }
            b"DELE" | b"RMD" | b"MKD" | b"RNFR" | b"RNTO" | b"SITE" => {
                conn.info(Fact::command(&line)).await;
                "550 Permission denied."
            }
            _ => "500 Unknown command.",
        };
        out.clear();
        out.extend_from_slice(reply.as_bytes());
        out.extend_from_slice(b"\r\n");
        conn.write(&out).await?;
    }
    Ok(())
}
