//! The real-process cluster harness lives in `jepsen-tests` (shared with the agent's tests).
pub use jepsen_tests::cluster::*;
