//! MOTD: sends a message of the day and closes, like HoneyPy's MOTD plugin.
//! Options: `banner` (the message).

use std::io;

use crate::config::ServiceConfig;
use crate::conn::Conn;

pub async fn handle(conn: &mut Conn, cfg: &ServiceConfig) -> io::Result<()> {
    let msg = cfg.banner.as_deref().unwrap_or("Welcome! Unauthorized access is prohibited and will be logged.");
    conn.write(format!("{}\r\n", msg.replace('\n', "\r\n")).as_bytes()).await
}
