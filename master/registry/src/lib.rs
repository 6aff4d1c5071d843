//! # agora-registry
//!
//! Owns the cluster's domain model (agents, frameworks, tasks, offers, role weights), resource
//! arithmetic, and the registry: the replicated state machine whose typed [`Command`]s are
//! applied by a pure, deterministic function.
//!
//! What it must not do: no I/O, no async runtime, no clock reads, no randomness. Time and ids
//! arrive inside commands, chosen by the leader. Its Cargo.toml has no tokio, tonic or sled,
//! so the dependency graph enforces this.
//!
//! ## Retention
//!
//! Finished history is bounded, as in Mesos, by the replicated [`Retention`] setting
//! (defaults 1000 and 50, changed by [`Command::SetRetention`]):
//!
//! - Each framework, registered or completed, keeps at most
//!   `max_completed_tasks_per_framework` terminal tasks; when it has more, the oldest by
//!   `(updated_at_ms, task id)` are dropped from the registry. An update for a dropped task
//!   is refused as [`Rejection::UnknownTask`], and its id may be launched again.
//! - A removed framework becomes a completed framework (see
//!   [`Registry::completed_frameworks`]) with its tasks, and its id is never registered again.
//!   At most `max_completed_frameworks` are kept; beyond that the oldest by
//!   `(removed_at_ms, framework id)` is dropped together with all its tasks.
//!
//! Live tasks and registered frameworks are never dropped. Eviction depends only on the
//! registry's data, so replicas that replayed the log and replicas that loaded a snapshot
//! evict exactly the same entries.

pub mod command;
pub mod ids;
pub mod model;
pub mod registry;
pub mod rejection;
pub mod resources;
pub mod task_state;

pub use command::{Command, CommandBatch, CommandResult};
pub use ids::{validate_name, AgentId, FrameworkId, IdError, NameError, OfferId, TaskId};
pub use model::{
    Agent, AgentInfo, AgentStatus, CompletedFramework, Drain, DrainState, Framework, FrameworkInfo,
    FrameworkStatus, Offer, RegistrationOrder, Retention, Task, TaskSpec, TaskState, TimestampMs,
    UnknownTaskState,
};
pub use registry::{Allocation, Registry};
pub use rejection::Rejection;
pub use resources::{Resource, ResourceError, Resources, Scalar, Value};
