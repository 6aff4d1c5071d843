//! # jepsen-tests
//!
//! Owns running Agora as real processes for tests, and breaking it on purpose.
//!
//! - [`cluster`] starts `agora-master` and `agora-agent` processes on loopback, kills,
//!   pauses, restarts and wipes them, and asks them for their views; the master's and
//!   agent's integration tests and benchmarks use it.
//! - The fault-injection harness (binary `jepsen-tests`, see `src/main.rs`): [`net`] puts
//!   every process in its own network namespace on one bridge and cuts links with
//!   iptables; [`nemesis`] draws a fault schedule from a seed; [`harness`] runs the
//!   cluster, the workload (`jepsen-workload`, one framework per process), the samplers and
//!   the nemesis; [`history`] is what they record; [`checker`] judges it; [`report`] writes
//!   the summary, the plot and the failover figures. `agora-master-faulty` is the real
//!   master with a deliberate bug on, for the self-test.
//!
//! What it must not do: reach into any component's internals; it drives the binaries and
//! speaks only the public API (gRPC and HTTP), as an operator would. The checkers and the
//! schedule are pure (no processes, no clock).

pub mod checker;
pub mod cluster;
pub mod harness;
pub mod history;
pub mod nemesis;
pub mod net;
pub mod report;
