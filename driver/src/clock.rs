//! The driver's one wall clock.

use std::time::SystemTime;

/// Milliseconds since the Unix epoch (0 for a clock set before it): the timestamp of a
/// status update.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
