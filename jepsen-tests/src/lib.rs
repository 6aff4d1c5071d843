//! # jepsen-tests
//!
//! Owns running Agora as real processes for tests: [`cluster`] starts `agora-master` and
//! `agora-agent` processes on loopback, kills, pauses, restarts and wipes them, and asks
//! them for their views. The master's and agent's integration tests and benchmarks use it.
//! The fault-injection harness (hosts in network namespaces, nemeses, workload, checkers)
//! will be built here on top of it, in its own issue.
//!
//! What it must not do: reach into any component's internals; it drives the binaries and
//! speaks only the public API (gRPC and HTTP), as an operator would.

pub mod cluster;
