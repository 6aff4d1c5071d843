//! # agora-registry
//!
//! Owns the cluster's domain model (agents, frameworks, tasks, offers, role weights), resource
//! arithmetic, and the registry: the replicated state machine whose typed [`Command`]s are
//! applied by a pure, deterministic function.
//!
//! What it must not do: no I/O, no async runtime, no clock reads, no randomness. Time and ids
//! arrive inside commands, chosen by the leader. Its Cargo.toml has no tokio, tonic or sled,
//! so the dependency graph enforces this.

pub mod command;
pub mod ids;
pub mod model;
pub mod registry;
pub mod resources;

pub use command::{Command, CommandBatch, CommandResult, Rejection};
pub use ids::{validate_name, AgentId, FrameworkId, IdError, NameError, OfferId, TaskId};
pub use model::{
    Agent, AgentInfo, AgentStatus, Framework, FrameworkInfo, FrameworkStatus, Offer, Task,
    TaskSpec, TaskState, TimestampMs, UnknownTaskState,
};
pub use registry::{Allocation, Registry};
pub use resources::{Resource, ResourceError, Resources, Scalar, Value};
