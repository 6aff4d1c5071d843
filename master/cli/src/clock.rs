//! The CLI's one wall clock.

use std::time::{Duration, SystemTime};

/// Time since the Unix epoch (zero for a clock set before it).
pub fn since_epoch() -> Duration {
    SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
}
