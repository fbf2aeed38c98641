//! Time-boxed fuzz harness (ignored by default; see FUZZING.md):
//!
//! ```sh
//! APIARY_FUZZ_SECS=600 cargo test -p apiary-extract --release --test fuzz -- --ignored --nocapture
//! # one parser only (a name from SERVICES, case-insensitive), all the time on it:
//! APIARY_FUZZ_SERVICE=HTTP APIARY_FUZZ_SECS=600 cargo test -p apiary-extract --release --test fuzz -- --ignored --nocapture
//! ```
//!
//! Mutates a seed corpus (every signature example and near-miss, plus
//! protocol openers) with byte flips, splices, truncations and insertions, and
//! feeds each result to every parser through `analyze`. A panic fails the test
//! and prints the offending input.

use std::time::{Duration, Instant};

use apiary_extract::{analyze, CveMatcher, MAX_VALUE_BYTES};

const SERVICES: &[&str] = &[
    "HTTP",
    "HTTPS",
    "SSH",
    "Telnet",
    "Redis",
    "Memcached",
    "Memcached.udp",
    "FTP",
    "SMTP",
    "MySQL",
    "VNC",
    "SIP.udp",
    "DNS.udp",
    "DNS.tcp",
    "Elasticsearch",
    "Other",
];

/// xorshift64*: deterministic per seed, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

fn seeds() -> Vec<Vec<u8>> {
    let mut seeds: Vec<Vec<u8>> = vec![
        b"\xff\xfd\x01\xff\xfa\x18\x00xterm\xff\xf0root\r\npass\r\nuname -a\r\n".to_vec(),
        b"*3\r\n$3\r\nset\r\n$1\r\nk\r\n$5\r\nvalue\r\n".to_vec(),
        b"\x80\x00\x00\x03\x00\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00foo".to_vec(),
        b"\x00\x01\x00\x00\x00\x01\x00\x00set k 0 0 5\r\nhello\r\n".to_vec(),
        b"EHLO x\r\nAUTH LOGIN\r\ncm9vdA==\r\ndG9vcg==\r\nDATA\r\nx\r\n.\r\nQUIT\r\n".to_vec(),
        b"RFB 003.008\n\x02\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f".to_vec(),
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01".to_vec(),
        b"\x2a\x00\x00\x01\x85\xa6\x03\x00\x00\x00\x00\x01\x21\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00root\x00".to_vec(),
        b"SSH-2.0-libssh_0.10.6\r\n\x00\x00\x01\x14\x0a\x14".to_vec(),
    ];
    if let Ok(m) = CveMatcher::global() {
        for s in m.signatures() {
            seeds.push(s.match_example.as_bytes().to_vec());
            seeds.push(s.near_miss.as_bytes().to_vec());
        }
    }
    seeds
}

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut v = seeds[rng.below(seeds.len())].clone();
    for _ in 0..=rng.below(8) {
        let at = rng.below(v.len() + 1);
        match rng.below(6) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 => v.insert(at, rng.next() as u8),
            2 => v.truncate(at),
            3 => {
                let other = &seeds[rng.below(seeds.len())];
                let from = rng.below(other.len());
                let tail = other[from..].to_vec();
                v.splice(at..at, tail);
            }
            4 => {
                let special: &[&[u8]] =
                    &[b"\r\n", b"\xff", b"\x00", b"${", b"%", b"*99999\r\n", b"$-1\r\n", b"\xc0\x0c", b"\r\n\r\n"];
                v.splice(at..at, special[rng.below(special.len())].iter().copied());
            }
            _ if !v.is_empty() => {
                let i = rng.below(v.len());
                v.remove(i);
            }
            _ => {}
        }
    }
    v
}

/// The services to fuzz: all of [`SERVICES`], or the one named by
/// `APIARY_FUZZ_SERVICE` so that a single parser gets the whole time box.
fn services() -> Vec<&'static str> {
    match std::env::var("APIARY_FUZZ_SERVICE") {
        Ok(name) if !name.trim().is_empty() => {
            let picked: Vec<&str> = SERVICES.iter().copied().filter(|s| s.eq_ignore_ascii_case(name.trim())).collect();
            assert!(!picked.is_empty(), "APIARY_FUZZ_SERVICE={name:?} is none of {SERVICES:?}");
            picked
        }
        _ => SERVICES.to_vec(),
    }
}

#[test]
#[ignore = "long-running; run explicitly (FUZZING.md)"]
fn fuzz_all_parsers() {
    let secs: u64 = std::env::var("APIARY_FUZZ_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    let seed: u64 =
        std::env::var("APIARY_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x9e37_79b9_7f4a_7c15);
    let services = services();
    let seeds = seeds();
    let mut rng = Rng(seed | 1);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut runs: u64 = 0;
    while Instant::now() < deadline {
        for _ in 0..1000 {
            let input = mutate(&mut rng, &seeds);
            for svc in &services {
                let result = std::panic::catch_unwind(|| analyze(svc, &input));
                match result {
                    Ok(a) => assert!(a.attributes.iter().all(|x| x.value.len() <= MAX_VALUE_BYTES)),
                    Err(_) => panic!("panic on service {svc:?}, input {input:?}"),
                }
            }
            runs += 1;
        }
    }
    println!("fuzz: {runs} inputs x {} services ({}) in {secs}s, no panic", services.len(), services.join(", "));
}
