//! Modbus/TCP: answers reads with zeros, refuses writes, and identifies as a
//! PLC to function 43/14 (Read Device Identification). Every request is an
//! INFO `command` with its unit and function code.
//! Options: `banner` (vendor name), `version` (product revision).

use std::io;

use crate::config::ServiceConfig;
use crate::conn::Conn;
use crate::facts::Fact;

const MAX_REQUESTS: usize = 1000;

pub async fn handle(conn: &mut Conn, cfg: &ServiceConfig) -> io::Result<()> {
    for _ in 0..MAX_REQUESTS {
        let Some(head) = conn.read_exact(7).await? else { return Ok(()) };
        let len = usize::from(u16::from_be_bytes([head[4], head[5]]));
        if !(2..=254).contains(&len) || head[2..4] != [0, 0] {
            return Ok(());
        }
        let Some(pdu) = conn.read_exact(len - 1).await? else { return Ok(()) };
        let unit = head[6];
        let func = pdu[0];
        conn.info(
            Fact::new("command")
                .with("command", format!("unit={unit} function={func} data={}", hex::encode(&pdu[1..]))),
        )
        .await;
        let reply = answer(func, &pdu[1..], cfg);
        let mut out = head[..4].to_vec();
        out.extend(((reply.len() + 1) as u16).to_be_bytes());
        out.push(unit);
        out.extend(reply);
        conn.write(&out).await?;
    }
    Ok(())
}

fn answer(func: u8, data: &[u8], cfg: &ServiceConfig) -> Vec<u8> {
    let count = || data.get(2..4).map_or(0, |c| usize::from(u16::from_be_bytes([c[0], c[1]])));
    match func {
        1 | 2 => {
            let n = count().clamp(1, 2000).div_ceil(8);
            let mut r = vec![func, n as u8];
            r.resize(2 + n, 0);
            r
        }
        3 | 4 => {
            let n = count().clamp(1, 125) * 2;
            let mut r = vec![func, n as u8];
            r.resize(2 + n, 0);
            r
        }
        0x2b if data.first() == Some(&0x0e) => {
            let vendor = cfg.banner.as_deref().unwrap_or("Schneider Electric");
            let product = "BMX P34 2020";
            let rev = cfg.version.as_deref().unwrap_or("v2.8");
            let mut r = vec![0x2b, 0x0e, 0x01, 0x01, 0x00, 0x00, 0x03];
            for (id, v) in [(0u8, vendor), (1, product), (2, rev)] {
                let v = &v.as_bytes()[..v.len().min(64)];
                r.push(id);
                r.push(v.len() as u8);
                r.extend_from_slice(v);
            }
            r
        }
        // Writes are refused: illegal data address.
        5 | 6 | 15 | 16 => vec![func | 0x80, 0x02],
        _ => vec![func | 0x80, 0x01],
    }
}
