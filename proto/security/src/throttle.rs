//! Slowing down a peer that keeps failing to authenticate: after a few failures each
//! further attempt from the same address waits, doubling up to a cap, until the address
//! succeeds or stays quiet. Time is passed in; the caller does the waiting.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Failures allowed before attempts are delayed.
pub const FREE_FAILURES: u32 = 3;
/// The first delay; each further failure doubles it.
pub const FIRST_DELAY: Duration = Duration::from_millis(100);
/// The longest delay.
pub const MAX_DELAY: Duration = Duration::from_secs(5);
/// An address quiet this long starts afresh.
pub const FORGET_AFTER: Duration = Duration::from_secs(60);
/// Addresses remembered at most (the oldest are forgotten first).
pub const MAX_TRACKED: usize = 10_000;

#[derive(Clone, Copy, Debug)]
struct Record {
    failures: u32,
    last: Instant,
}

/// Failures per peer address.
#[derive(Debug, Default)]
pub struct FailureThrottle {
    peers: HashMap<IpAddr, Record>,
}

impl FailureThrottle {
    pub fn new() -> Self {
        Self::default()
    }

    /// How long an attempt from `peer` waits before it is answered.
    pub fn delay(&self, peer: IpAddr, now: Instant) -> Duration {
        match self.peers.get(&peer) {
            Some(r) if now.duration_since(r.last) < FORGET_AFTER => delay_for(r.failures),
            _ => Duration::ZERO,
        }
    }

    /// Records a failed attempt.
    pub fn failed(&mut self, peer: IpAddr, now: Instant) {
        if self.peers.len() >= MAX_TRACKED && !self.peers.contains_key(&peer) {
            self.peers
                .retain(|_, r| now.duration_since(r.last) < FORGET_AFTER);
            if self.peers.len() >= MAX_TRACKED {
                if let Some(oldest) = self
                    .peers
                    .iter()
                    .min_by_key(|(_, r)| r.last)
                    .map(|(k, _)| *k)
                {
                    self.peers.remove(&oldest);
                }
            }
        }
        let r = self.peers.entry(peer).or_insert(Record {
            failures: 0,
            last: now,
        });
        if now.duration_since(r.last) >= FORGET_AFTER {
            r.failures = 0;
        }
        r.failures = r.failures.saturating_add(1);
        r.last = now;
    }

    /// Records a success: the address starts afresh.
    pub fn succeeded(&mut self, peer: IpAddr) {
        self.peers.remove(&peer);
    }

    pub fn tracked(&self) -> usize {
        self.peers.len()
    }
}

fn delay_for(failures: u32) -> Duration {
    if failures < FREE_FAILURES {
        return Duration::ZERO;
    }
    let doublings = (failures - FREE_FAILURES).min(16);
    FIRST_DELAY.saturating_mul(1 << doublings).min(MAX_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    #[test]
    fn delays_grow_after_free_failures_and_cap() {
        let mut t = FailureThrottle::new();
        let t0 = Instant::now();
        let mut delays = Vec::new();
        for i in 0..12 {
            delays.push(t.delay(ip(1), t0 + Duration::from_millis(i)));
            t.failed(ip(1), t0 + Duration::from_millis(i));
        }
        assert_eq!(&delays[..3], &[Duration::ZERO; 3]);
        assert_eq!(delays[3], FIRST_DELAY);
        assert_eq!(delays[4], FIRST_DELAY * 2);
        assert_eq!(delays[5], FIRST_DELAY * 4);
        assert_eq!(delays[11], MAX_DELAY);
        // Another address is not slowed down.
        assert_eq!(t.delay(ip(2), t0), Duration::ZERO);
    }

    #[test]
    fn success_and_quiet_reset() {
        let mut t = FailureThrottle::new();
        let t0 = Instant::now();
        for _ in 0..5 {
            t.failed(ip(1), t0);
        }
        assert!(t.delay(ip(1), t0) > Duration::ZERO);
        assert_eq!(t.delay(ip(1), t0 + FORGET_AFTER), Duration::ZERO);
        t.failed(ip(1), t0 + FORGET_AFTER);
        assert_eq!(t.delay(ip(1), t0 + FORGET_AFTER), Duration::ZERO);
        for _ in 0..5 {
            t.failed(ip(1), t0 + FORGET_AFTER);
        }
        t.succeeded(ip(1));
        assert_eq!(t.delay(ip(1), t0 + FORGET_AFTER), Duration::ZERO);
    }

    #[test]
    fn memory_is_bounded() {
        let mut t = FailureThrottle::new();
        let t0 = Instant::now();
        for i in 0..(MAX_TRACKED as u32 + 50) {
            let a = IpAddr::from(i.to_be_bytes().map(|b| b));
            t.failed(a, t0 + Duration::from_micros(u64::from(i)));
        }
        assert!(t.tracked() <= MAX_TRACKED);
    }
}
