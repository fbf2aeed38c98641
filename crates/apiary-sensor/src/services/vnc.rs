//! VNC: the RFB 3.8 handshake with VNC authentication. The client's DES
//! response to our random challenge is captured (INFO `vnc_auth`, both as
//! hex: enough to test guessed passwords offline) and always refused.
//! Options: `version` (`003.008`, `003.007` or `003.003`).

use std::io;

use crate::config::ServiceConfig;
use crate::conn::Conn;
use crate::facts::Fact;

pub async fn handle(conn: &mut Conn, cfg: &ServiceConfig) -> io::Result<()> {
    let version = cfg.version.as_deref().unwrap_or("003.008");
    conn.write(format!("RFB {version}\n").as_bytes()).await?;
    let Some(client) = conn.read_exact(12).await? else { return Ok(()) };
    conn.info(Fact::new("client").with("version", client.trim_ascii_end())).await;
    let old = client.starts_with(b"RFB 003.003") || !client.starts_with(b"RFB ");
    if old {
        // 3.3: the server picks the type.
        conn.write(&2u32.to_be_bytes()).await?;
    } else {
        conn.write(&[1, 2]).await?;
        let Some(choice) = conn.read_exact(1).await? else { return Ok(()) };
        if choice[0] != 2 {
            let reason = b"Authentication failure";
            let mut out = 1u32.to_be_bytes().to_vec();
            out.extend((reason.len() as u32).to_be_bytes());
            out.extend_from_slice(reason);
            return conn.write(&out).await;
        }
    }
    let challenge: [u8; 16] = rand::random();
    conn.write(&challenge).await?;
    let Some(response) = conn.read_exact(16).await? else { return Ok(()) };
    conn.info(Fact::new("vnc_auth").with("challenge", hex::encode(challenge)).with("response", hex::encode(&response)))
        .await;
    let mut out = 1u32.to_be_bytes().to_vec();
    if !old {
        let reason = b"Authentication failed";
        out.extend((reason.len() as u32).to_be_bytes());
        out.extend_from_slice(reason);
    }
    conn.write(&out).await
}
