//! # agora-sim
//!
//! Owns the deterministic simulation of the master quorum: N replicas, each the production
//! `agora_raft_store::Raft<RegistryMachine>` (the real openraft, the real registry's
//! `apply`), in one process, on one thread, with the network ([`net`]), the disks
//! ([`disk`]), time and randomness simulated. Time is tokio's paused clock on a
//! current-thread runtime: it jumps ahead whenever every task waits, so a minute of
//! virtual time takes what the computation takes. Every random choice (message delays
//! and losses, fsync times, the nemesis's faults and targets, the clients' operations,
//! openraft's election timeouts through `agora_raft_store::runtime::seed_thread_rng`)
//! comes from the run's seed, so a seed replays its run byte for byte ([`events`] is
//! the log that shows it).
//!
//! A run ([`sim::run`]): the replicas start and initialize; register clients
//! ([`workload`]) write and read role weights through whichever replica they believe
//! leads while the nemesis ([`nemesis`]) crashes, pauses and partitions replicas and
//! slows the network; then everything is healed and the invariants are checked
//! ([`check`]): one leader per term, agreement of the applied states, durability of
//! acknowledged writes, linearizable registers (the harness's checker,
//! `jepsen_tests::linearizable`), and recovery after the heal. Beside the register
//! clients, the task flow ([`flow`]): every running replica also runs the master's own
//! leader layer, with simulated agents and a framework launching tasks through it, checked
//! for in-order updates, one end per task, at-most-once and no lost launch. Deliberate bugs
//! ([`sim::Bug`]) show the checks can fail. Binary `agora-sim` runs many seeds and
//! prints the command that replays a failing one.
//!
//! What it must not do: replace anything but the network, the disk, time and randomness
//! (openraft and the registry are the production code, configured as the master
//! configures them); do real I/O, spawn threads or blocking tasks, read the wall clock or
//! iterate a randomly ordered map inside a run (any of them would make a seed's run
//! differ from its replay); write tracing output into the event log.

pub mod check;
pub mod cluster;
pub mod disk;
pub mod events;
pub mod flow;
pub mod nemesis;
pub mod net;
pub mod rng;
pub mod scenario;
pub mod sim;
pub mod workload;

pub use nemesis::{Fault, Faults};
pub use sim::{run, Bug, Figures, Report, SimConfig};
