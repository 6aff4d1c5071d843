//! # agora-driver
//!
//! Owns the client side of Agora's API for Rust programs: [`MasterClient`] finds the
//! leading master among any list of masters and follows it across failovers;
//! [`ExecutorDriver`] connects an executor to its agent and delivers its status updates
//! reliably; [`SchedulerDriver`] subscribes a framework, dispatches its offers and status
//! updates to a [`Scheduler`], and re-subscribes across leader failovers.
//!
//! Task states are the one domain enum, [`TaskState`] (re-exported from `agora-registry`):
//! a scheduler sees a [`TaskStatus`] carrying one, an executor reports one, and whether a
//! state is final is [`TaskState::is_terminal`]. [`convert`] is the crate's one conversion
//! layer between the generated proto types and these; timestamps come from its one wall
//! clock (`clock`).
//!
//! What it must not do: depend on master internals (openraft, sled, the master, the
//! registry's commands and state machine). It speaks only the public `.proto` API, as a
//! client in any other language would; of `agora-registry` (a pure crate of domain types)
//! it uses only [`TaskState`]. It never spells a task state as a string.

mod clock;
pub mod convert;
pub mod executor_driver;
pub mod feasibility;
mod master_client;
pub mod scheduler_driver;
mod status;

pub use agora_registry::TaskState;
pub use agora_security as security;
pub use executor_driver::{Executor, ExecutorDriver, ExecutorHandle};
pub use master_client::{DriverError, MasterChannel, MasterClient, RetryPolicy};
pub use scheduler_driver::{Scheduler, SchedulerDriver, SchedulerHandle};
pub use status::TaskStatus;

use agora_proto::v1 as pb;

/// The total of scalar resource `name` (e.g. "cpus") in `resources`, all roles together:
/// what a scheduler usually asks of an offer.
pub fn scalar(resources: &[pb::Resource], name: &str) -> f64 {
    resources
        .iter()
        .filter(|r| r.name == name)
        .filter_map(|r| match &r.value {
            Some(pb::resource::Value::Scalar(x)) => Some(*x),
            _ => None,
        })
        .sum()
}
