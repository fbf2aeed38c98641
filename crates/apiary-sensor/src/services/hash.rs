//! The Hash responder (HoneyPy's "Hash" plugin): each chunk received is
//! answered with the lowercase hex MD5 of its bytes and a newline. Cheap,
//! deterministic and fixed-size (33 bytes), so it cannot amplify; the
//! exact bytes hashed are the neighbouring RX event.

use std::io;

use md5::{Digest, Md5};

use crate::config::ServiceConfig;
use crate::conn::Conn;

pub async fn handle(conn: &mut Conn, _cfg: &ServiceConfig) -> io::Result<()> {
    while let Some(data) = conn.read_some().await? {
        let mut line = hex::encode(Md5::digest(&data)).into_bytes();
        line.push(b'\n');
        conn.write(&line).await?;
    }
    Ok(())
}
