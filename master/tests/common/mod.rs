//! The real-process cluster harness lives in `jepsen-tests` (shared with the agent's tests).
pub use agora_test_cluster::*;
