//! NTP over UDP: answers client (mode 3) requests with the current time as a
//! stratum-2 server. Control and private modes (6, 7: `monlist`, the
//! amplification favourite) get no answer but are recorded (INFO `ntp`).

use crate::config::ServiceConfig;
use crate::facts::Fact;

/// Seconds from 1900 (NTP era 0) to 1970.
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

fn ntp_now() -> [u8; 8] {
    let ms = apiary_model::time::now_ms().max(0) as u64;
    let secs = ms / 1000 + NTP_UNIX_OFFSET;
    let frac = ((ms % 1000) << 32) / 1000;
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&(secs as u32).to_be_bytes());
    out[4..].copy_from_slice(&(frac as u32).to_be_bytes());
    out
}

pub fn answer(req: &[u8], _cfg: &ServiceConfig, facts: &mut Vec<Fact>) -> Option<Vec<u8>> {
    let first = *req.first()?;
    let version = (first >> 3) & 7;
    let mode = first & 7;
    facts.push(Fact::new("ntp").with_value("mode", mode.into()).with_value("version", version.into()));
    if mode != 3 || req.len() < 48 {
        return None;
    }
    let now = ntp_now();
    let mut out = vec![0u8; 48];
    out[0] = (version << 3) | 4;
    out[1] = 2; // stratum
    out[2] = req[2]; // poll
    out[3] = 0xec; // precision 2^-20
    out[4..8].copy_from_slice(&[0, 0, 0x1b, 0x3c]); // root delay
    out[8..12].copy_from_slice(&[0, 0, 0x0d, 0x5e]); // root dispersion
    out[12..16].copy_from_slice(&[193, 190, 230, 65]); // reference id
    out[16..24].copy_from_slice(&now);
    out[24..32].copy_from_slice(&req[40..48]); // origin = client's transmit
    out[32..40].copy_from_slice(&now);
    out[40..48].copy_from_slice(&now);
    Some(out)
}
