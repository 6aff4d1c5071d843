//! The master's one clock. Every leader path reads time through a [`Clock`] handed to it,
//! so tests drive time by hand; nothing else in the master reads the system clock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Milliseconds since the Unix epoch, as the leader stamps them on commands and compares
/// them in its timeouts.
pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> u64;
}

/// A shared clock.
pub type SharedClock = Arc<dyn Clock>;

/// The system clock, read once at start and advanced by the monotonic clock from then on:
/// stamps stay close to wall time, and a wall-clock step (NTP, an operator) can neither
/// expire a timeout early nor stretch one.
pub struct SystemClock {
    epoch_ms_at_start: u64,
    start: Instant,
}

impl SystemClock {
    pub fn new() -> Self {
        SystemClock {
            epoch_ms_at_start: wall_ms(),
            start: Instant::now(),
        }
    }

    pub fn shared() -> SharedClock {
        Arc::new(SystemClock::new())
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock::new()
    }
}

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        self.epoch_ms_at_start + self.start.elapsed().as_millis() as u64
    }
}

/// The wall clock, read only here.
fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A clock that moves only when told: for tests of the leader's policy.
#[derive(Default)]
pub struct ManualClock {
    now_ms: AtomicU64,
}

impl ManualClock {
    pub fn at(now_ms: u64) -> Arc<ManualClock> {
        Arc::new(ManualClock {
            now_ms: AtomicU64::new(now_ms),
        })
    }

    pub fn advance_ms(&self, ms: u64) {
        self.now_ms.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.now_ms.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_clock_is_near_wall_time_and_never_goes_back() {
        let c = SystemClock::new();
        let wall = wall_ms();
        let a = c.now_ms();
        assert!(a.abs_diff(wall) < 1000);
        assert!(c.now_ms() >= a);
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::at(1000);
        assert_eq!(c.now_ms(), 1000);
        c.advance_ms(250);
        assert_eq!(c.now_ms(), 1250);
    }
}
