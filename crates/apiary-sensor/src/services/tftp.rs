//! TFTP over UDP: read and write requests are recorded (INFO `tftp`: op,
//! filename, mode) and refused with the error a real server gives for a
//! missing file or a read-only tree. Nothing is ever transferred.

use crate::config::ServiceConfig;
use crate::facts::Fact;

pub fn answer(req: &[u8], _cfg: &ServiceConfig, facts: &mut Vec<Fact>) -> Option<Vec<u8>> {
    let op = u16::from_be_bytes([*req.first()?, *req.get(1)?]);
    let (code, msg, name) = match op {
        1 => (1u16, "File not found", "read"),
        2 => (2, "Access violation", "write"),
        _ => return None, // DATA/ACK/ERROR for a transfer we never started
    };
    let mut fields = req[2..].split(|&b| b == 0);
    let filename = fields.next().unwrap_or(&[]);
    let mode = fields.next().unwrap_or(&[]);
    facts.push(Fact::new("tftp").with("op", name).with("filename", filename).with("mode", mode));
    let mut out = vec![0, 5];
    out.extend(code.to_be_bytes());
    out.extend_from_slice(msg.as_bytes());
    out.push(0);
    Some(out)
}
