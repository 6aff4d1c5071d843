//! # jepsen-tests
//!
//! Owns breaking Agora on purpose and judging what survived: the fault-injection harness
//! (binary `jepsen-tests`, see `src/main.rs`). [`net`] puts every process in its own network
//! namespace on one bridge and cuts links with iptables; [`nemesis`] draws a fault schedule
//! from a seed; [`harness`] runs the cluster, the workload (`jepsen-workload`, one framework
//! per process), the register clients ([`register`]: role weights written and read through
//! random masters), the samplers and the nemesis; [`history`] is what they record; [`checker`]
//! judges it ([`linearizable`] is its search for the registers' histories); [`report`] writes the summary, the plot and the failover figures; [`clock`] is
//! its one clock read. `agora-master-faulty` is the real master with a deliberate bug on,
//! for the self-test.
//!
//! The real-process cluster fixture the components' own tests use is not here: it is the
//! `agora-test-cluster` crate (`jepsen-tests/cluster/`), which this harness uses too (its
//! HTTP probe, its signals, its over-commit check, and `reap`: how every process it
//! starts dies with it, and how it finds and ends executors and cgroups a run leaves).
//!
//! What it must not do: reach into any component's internals; it drives the binaries and
//! speaks only the public API (gRPC and HTTP), as an operator would. The checkers and the
//! schedule are pure (no processes, no clock).

pub mod checker;
pub mod clock;
pub mod harness;
pub mod history;
pub mod linearizable;
pub mod nemesis;
pub mod net;
pub mod register;
pub mod report;
