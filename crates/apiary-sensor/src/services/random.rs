//! The Random responder (HoneyPy's "Random" plugin): whatever arrives is
//! answered with random bytes, which keeps generic scanners and fuzzers
//! talking on ports nothing else emulates. Each answer is at most
//! [`MAX_REPLY`] bytes and at most twice what was received, so the service
//! is never a bandwidth amplifier; the connection limits bound the rest.

use std::io;

use rand::{Rng, RngCore};

use crate::config::ServiceConfig;
use crate::conn::Conn;

const MAX_REPLY: usize = 1024;

pub async fn handle(conn: &mut Conn, _cfg: &ServiceConfig) -> io::Result<()> {
    while let Some(data) = conn.read_some().await? {
        let reply = {
            let mut rng = rand::rng();
            let len = rng.random_range(1..=(2 * data.len()).clamp(1, MAX_REPLY));
            let mut reply = vec![0u8; len];
            rng.fill_bytes(&mut reply);
            reply
        };
        conn.write(&reply).await?;
    }
    Ok(())
}
