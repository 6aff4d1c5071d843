//! The harness's one clock read: the wall clock, in milliseconds since the Unix epoch.
//!
//! The wall clock (not a monotonic one) because every process of a run (the harness and
//! each `jepsen-workload`) counts its history times from the same start, passed to it as
//! ms since the epoch. The checkers and the report never read it: times are in their data.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch; 0 if the clock is before it.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_from_the_epoch() {
        assert!(super::unix_ms() > 1_600_000_000_000);
    }
}
