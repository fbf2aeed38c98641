//! Echo (RFC 862) over TCP: sends back what it receives, within the
//! connection's byte limit. (The UDP twin is in `mod.rs`.)

use std::io;

use crate::config::ServiceConfig;
use crate::conn::Conn;

pub async fn handle(conn: &mut Conn, _cfg: &ServiceConfig) -> io::Result<()> {
    while let Some(bytes) = conn.read_some().await? {
        conn.write(&bytes).await?;
    }
    Ok(())
}
