//! # agora-allocator
//!
//! Owns the leader's offer allocator: its view of agents (total, available, held by whom),
//! frameworks (role, active, suppressed), role weights and decline filters, and the
//! allocation cycle that turns that view into offers by hierarchical Dominant Resource
//! Fairness, as Mesos' `HierarchicalDRFAllocator` does: first the role with the lowest
//! weighted dominant share, then within it the framework with the lowest dominant share.
//!
//! Lifecycle: **rebuilt from the registry each cycle.** The master's allocation loop makes
//! a fresh [`Allocator`] every cycle from the replicated registry plus its own soft state:
//! [`Allocator::new`], [`Allocator::set_weight`], agents with what is held on them
//! ([`Allocator::add_agent`], [`Allocator::set_agent_active`]), then frameworks with what
//! they hold per agent ([`Allocator::add_framework`], [`Allocator::set_framework_active`],
//! [`Allocator::suppress`]), then decline filters ([`Allocator::decline_resources`]); then
//! one [`Allocator::allocate`], and the allocator is dropped. So it never drifts from the
//! registry: there is no event API to feed it changes (releases, removals, revives), since
//! a change is simply what the next rebuild reads. At 10,000 agents x 1,000 frameworks a
//! rebuild plus cycle takes 20-25 ms on a 2-core machine; keeping one allocator alive and
//! feeding it changes was measured too (about 1.6 ms), and rejected because it cannot be
//! kept exactly in step with the replicated registry (docs/benchmarks.md, "Allocator").
//!
//! What it must not do: no tokio, tonic, sled or other I/O, no clock reads and no
//! randomness from the OS. Time is an argument (`now_ms`), every iteration order is by id
//! or by a seeded xorshift whose seed is an argument, and no `HashMap` (whose hasher is
//! seeded by the OS) is used, so the same registry state always yields the same offers. Its
//! Cargo.toml depends only on `agora-registry`, so the dependency graph enforces this.

mod allocator;
mod share;

pub use allocator::{Allocator, AllocatorConfig, OfferProposal};

#[cfg(test)]
mod tests;
