//! DNS over UDP. Answers every query itself and **never** recurses or
//! forwards: A queries get the configured `answer` address (or NXDOMAIN when
//! none is set), `version.bind` CHAOS TXT gets the `version` string, all else
//! NXDOMAIN. Each question is an INFO `dns` fact (name, qtype).
//! Options: `answer`, `version`.

use crate::config::ServiceConfig;
use crate::facts::Fact;

const MAX_NAME: usize = 255;

pub(crate) struct Question {
    pub name: String,
    pub qtype: u16,
    pub qclass: u16,
    /// Where the question section ends in the request.
    pub end: usize,
}

pub(crate) fn parse_question(req: &[u8]) -> Option<Question> {
    let mut pos = 12;
    let mut name = String::new();
    loop {
        let len = usize::from(*req.get(pos)?);
        pos += 1;
        if len == 0 {
            break;
        }
        // Compression pointers have no business in a query's question.
        if len & 0xc0 != 0 {
            return None;
        }
        let label = req.get(pos..pos + len)?;
        pos += len;
        if !name.is_empty() {
            name.push('.');
        }
        name.extend(label.iter().map(|&b| if b.is_ascii_graphic() { b as char } else { '?' }));
        if name.len() > MAX_NAME {
            return None;
        }
    }
    let qtype = u16::from_be_bytes([*req.get(pos)?, *req.get(pos + 1)?]);
    let qclass = u16::from_be_bytes([*req.get(pos + 2)?, *req.get(pos + 3)?]);
    Some(Question { name, qtype, qclass, end: pos + 4 })
}

pub fn answer(req: &[u8], cfg: &ServiceConfig, facts: &mut Vec<Fact>) -> Option<Vec<u8>> {
    if req.len() < 12 || req[2] & 0x80 != 0 {
        return None; // too short, or a response (never answer answers)
    }
    let opcode = (req[2] >> 3) & 0x0f;
    let rd = req[2] & 0x01;
    let qdcount = u16::from_be_bytes([req[4], req[5]]);
    let mut out = vec![req[0], req[1], 0x84 | (opcode << 3) | rd, 0x00, 0, 0, 0, 0, 0, 0, 0, 0];
    let q = match (opcode, qdcount) {
        (0, 1) => parse_question(req),
        _ => None,
    };
    let Some(q) = q else {
        out[3] = if opcode == 0 { 1 } else { 4 }; // FORMERR / NOTIMP
        return Some(out);
    };
    facts.push(Fact::new("dns").with("name", &q.name).with_value("qtype", q.qtype.into()));
    out[5] = 1;
    out.extend_from_slice(&req[12..q.end]);
    let mut rr = vec![0xc0, 0x0c];
    if q.qclass == 3 && q.qtype == 16 && q.name.eq_ignore_ascii_case("version.bind") {
        let v = cfg.version.as_deref().unwrap_or("9.18.28-0ubuntu0.22.04.1-Ubuntu");
        let v = &v.as_bytes()[..v.len().min(200)];
        rr.extend([0, 16, 0, 3, 0, 0, 0, 0]);
        rr.extend(((v.len() + 1) as u16).to_be_bytes());
        rr.push(v.len() as u8);
        rr.extend_from_slice(v);
    } else if let (Some(ip), 1, 1) = (cfg.answer, q.qtype, q.qclass) {
        rr.extend([0, 1, 0, 1, 0, 0, 1, 0x2c, 0, 4]);
        rr.extend(ip.octets());
    } else {
        out[3] = 3; // NXDOMAIN
        return Some(out);
    }
    out[7] = 1;
    out.extend(rr);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for l in name.split('.') {
            q.push(l.len() as u8);
            q.extend(l.as_bytes());
        }
        q.push(0);
        q.extend(qtype.to_be_bytes());
        q.extend([0, 1]);
        q
    }

    #[test]
    fn nxdomain_by_default_and_fixed_answer() {
        let mut facts = Vec::new();
        let r = answer(&query("example.com", 1), &ServiceConfig::default(), &mut facts).unwrap();
        assert_eq!(r[3] & 0x0f, 3);
        let cfg = ServiceConfig { answer: Some("192.0.2.1".parse().unwrap()), ..Default::default() };
        let r = answer(&query("example.com", 1), &cfg, &mut facts).unwrap();
        assert_eq!(&r[r.len() - 4..], &[192, 0, 2, 1]);
        assert_eq!(facts.len(), 2);
        for cut in 0..r.len() {
            let _ = answer(&query("a.b", 1)[..cut.min(17)], &cfg, &mut facts);
        }
    }
}
