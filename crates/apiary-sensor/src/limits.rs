//! Overall limits: a per-source-IP token bucket for new connections and
//! datagrams. (The concurrent-connection cap is a semaphore in `server`; the
//! per-connection limits live in `conn`.)

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

pub struct RateLimiter {
    rate: f64,
    burst: f64,
    max_ips: usize,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl RateLimiter {
    pub fn new(rate: f64, burst: f64, max_ips: usize) -> Self {
        RateLimiter { rate, burst: burst.max(1.0), max_ips: max_ips.max(16), buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one token for `ip`; false when it is over its rate.
    pub fn allow(&self, ip: IpAddr) -> bool {
        let now = Instant::now();
        let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= self.max_ips && !map.contains_key(&ip) {
            // Forget sources whose bucket has refilled: they are not limited
            // now, so forgetting them changes nothing. If a flood of distinct
            // sources keeps the map full, start over rather than grow.
            let (rate, burst) = (self.rate, self.burst);
            map.retain(|_, (tokens, at)| *tokens + now.duration_since(*at).as_secs_f64() * rate < burst);
            if map.len() >= self.max_ips {
                map.clear();
            }
        }
        let (tokens, at) = map.entry(ip).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_limits_per_ip() {
        let r = RateLimiter::new(0.001, 3.0, 16);
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        assert!((0..3).all(|_| r.allow(a)));
        assert!(!r.allow(a));
        assert!(r.allow(b));
    }

    #[test]
    fn memory_is_bounded() {
        let r = RateLimiter::new(1.0, 2.0, 16);
        for i in 0..1000u32 {
            r.allow(IpAddr::from(i.to_be_bytes()));
        }
        assert!(r.buckets.lock().unwrap().len() <= 16);
    }
}
