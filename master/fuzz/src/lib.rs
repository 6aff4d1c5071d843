//! # agora-fuzz
//!
//! Owns the fuzzing of every input Agora takes from outside, on stable Rust with no
//! instrumentation (CI has neither nightly nor libFuzzer): a small engine ([`engine`]:
//! corpus, mutation, `catch_unwind`, artifacts, statistics) and three targets, each a
//! `fn(&[u8])` that must never panic ([`targets`]):
//!
//! - `resources`: the Mesos resource text parser (`cpus:4;mem:1024;ports:[31000-32000]`)
//!   and resource arithmetic (`Resources`, `Ranges`) checked against a naive model: a panic
//!   is a broken law.
//! - `apply`: sequences of registry `Command`s over small id spaces applied to a
//!   `Registry`; after each one `check_invariants()` holds, a rejected command changed
//!   nothing, and replaying, batching and a snapshot round trip agree.
//! - `messages`: protobuf decoding of every inbound request of the Scheduler, Master,
//!   AgentGateway, Operator and RaftPeer services, then the master's validation in
//!   `agora_master::convert`, and of what an agent takes in (its executor API, the leader's
//!   session messages) through `agora_agent::convert`: decode errors and INVALID_ARGUMENT
//!   are answers, a panic or another status is a finding.
//!
//! Without coverage instrumentation, "new behaviour" is a structural signal each target
//! computes itself ([`engine::Features`]): which command, rejection, decode error or field
//! it reached, in which order and how often. An input that shows a feature never seen is
//! kept in the in-memory corpus.
//!
//! What it must not do: change what it fuzzes. A finding is recorded as an input under
//! `master/fuzz/corpus/<target>/` and reported, never patched around here; the targets use
//! only the public API of `agora-registry`, `agora-master`, `agora-agent` and
//! `agora-proto`, and nothing depends on this crate.

pub mod engine;
pub mod input;
pub mod mutate;
pub mod targets;
