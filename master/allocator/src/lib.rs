//! # agora-allocator
//!
//! Owns the leader's offer allocator: its own view of agents (total, available, held by
//! whom), frameworks (role, active, suppressed), role weights and decline filters, and the
//! allocation cycle that turns that view into offers by hierarchical Dominant Resource
//! Fairness, as Mesos' `HierarchicalDRFAllocator` does: first the role with the lowest
//! weighted dominant share, then within it the framework with the lowest dominant share.
//!
//! The view is fed by events from the master ([`Allocator::add_agent`],
//! [`Allocator::allocate_to`], [`Allocator::release`], ...) and can be rebuilt at any time
//! from the registry by replaying adds: agents first, then frameworks with their per-agent
//! allocations (see [`Allocator::add_framework`]).
//!
//! What it must not do: no tokio, tonic, sled or other I/O, no clock reads and no
//! randomness from the OS. Time is an argument (`now_ms`), every iteration order is by id
//! or by a seeded xorshift whose seed is an argument, and no `HashMap` (whose hasher is
//! seeded by the OS) is used, so the same events always yield the same offers. Its
//! Cargo.toml depends only on `agora-registry`, so the dependency graph enforces this.

mod allocator;
mod share;

pub use allocator::{Allocator, AllocatorConfig, OfferProposal};

#[cfg(test)]
mod tests;
