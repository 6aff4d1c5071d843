//! The agent's one wall clock.

use std::time::{Duration, SystemTime};

/// Milliseconds since the Unix epoch (0 for a clock set before it): the timestamp of a
/// status update the agent decides itself or simulates.
pub fn now_ms() -> u64 {
    since_epoch(SystemTime::now())
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `t` (a file's mtime, say) in milliseconds since the Unix epoch; none before it or
/// past what a u64 holds.
pub fn ms_since_epoch(t: SystemTime) -> Option<u64> {
    u64::try_from(since_epoch(t)?.as_millis()).ok()
}

/// How long after the Unix epoch `t` is; none before it.
fn since_epoch(t: SystemTime) -> Option<Duration> {
    t.duration_since(std::time::UNIX_EPOCH).ok()
}
