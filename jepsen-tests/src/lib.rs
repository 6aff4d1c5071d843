//! # jepsen-tests
//!
//! Will own the fault-injection harness (hosts in network namespaces, nemeses, workload,
//! checkers). Nothing is built here yet; it arrives with its own issue, once agents and
//! frameworks exist. Until then the master quorum's fault tests live in
//! `master/tests/quorum.rs` (SIGKILL, minority loss, wiped replicas on real processes).
