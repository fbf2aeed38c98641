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
    conn.write(format!("220 {banner}\r\n").as_bytes()).await?;
    let mut user: Option<Vec<u8>> = None;
    let mut logged_in = false;
    for _ in 0..MAX_COMMANDS {
        let Some(line) = conn.read_line(MAX_LINE).await? else { return Ok(()) };
        let (verb, arg) = match line.iter().position(|&b| b == b' ') {
            Some(i) => (&line[..i], &line[i + 1..]),
            None => (&line[..], &[][..]),
        };
        let verb = String::from_utf8_lossy(verb).to_ascii_uppercase();
        let reply: String = match verb.as_str() {
            "USER" => {
                user = Some(arg.to_vec());
                "331 Please specify the password.".into()
            }
            "PASS" => match user.take() {
                Some(u) => {
                    conn.info(Fact::login(&u, arg).with("method", "password")).await;
                    let (us, ps) = (String::from_utf8_lossy(&u), String::from_utf8_lossy(arg));
                    if cfg.accepts(&us, &ps) {
                        logged_in = true;
                        "230 Login successful.".into()
                    } else {
                        "530 Login incorrect.".into()
                    }
                }
                None => "503 Login with USER first.".into(),
            },
            "QUIT" => {
                conn.write(b"221 Goodbye.\r\n").await?;
                return Ok(());
            }
            "AUTH" => "530 Please login with USER and PASS.".into(),
            "FEAT" => "211-Features:\r\n EPRT\r\n EPSV\r\n MDTM\r\n PASV\r\n REST STREAM\r\n SIZE\r\n TVFS\r\n UTF8\r\n211 End".into(),
            "SYST" => "215 UNIX Type: L8".into(),
            "NOOP" => "200 NOOP ok.".into(),
            "OPTS" => "200 Always in UTF8 mode.".into(),
            "HELP" => "214 Help OK.".into(),
            _ if !logged_in => "530 Please login with USER and PASS.".into(),
            "PWD" | "XPWD" => "257 \"/\" is the current directory".into(),
            "CWD" | "XCWD" | "CDUP" => "250 Directory successfully changed.".into(),
            "TYPE" => "200 Switching to Binary mode.".into(),
            "MODE" | "STRU" => "200 Mode set.".into(),
            "SIZE" | "MDTM" => "550 Could not get file size.".into(),
            // No data connection is ever offered.
            "PASV" | "EPSV" | "PORT" | "EPRT" => "500 Illegal PORT command.".into(),
            "LIST" | "NLST" | "MLSD" | "RETR" | "STOR" | "STOU" | "APPE" => {
                conn.info(Fact::command(&line)).await;
                "425 Use PORT or PASV first.".into()
            }
            "DELE" | "RMD" | "MKD" | "RNFR" | "RNTO" | "SITE" => {
                conn.info(Fact::command(&line)).await;
                "550 Permission denied.".into()
            }
            _ => "500 Unknown command.".into(),
        };
        conn.write(format!("{reply}\r\n").as_bytes()).await?;
    }
    Ok(())
}
