//! # agora-driver
//!
//! Owns the client side of Agora's API for Rust programs: [`MasterClient`] finds the
//! leading master among any list of masters and follows it across failovers;
//! [`ExecutorDriver`] connects an executor to its agent and delivers its status updates
//! reliably; [`SchedulerDriver`] subscribes a framework, dispatches its offers and status
//! updates to a [`Scheduler`], and re-subscribes across leader failovers.
//!
//! What it must not do: depend on any master internals (openraft, sled, the registry); it
//! speaks only the public `.proto` API, as a client in any other language would.

pub mod executor_driver;
mod master_client;
pub mod scheduler_driver;

pub use executor_driver::{Executor, ExecutorDriver, ExecutorHandle};
pub use master_client::{DriverError, MasterClient, RetryPolicy};
pub use scheduler_driver::{Scheduler, SchedulerDriver, SchedulerHandle};

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
