//! Apache Mesos' v1 operator API (`mesos.v1.master`) and the v0 JSON endpoints Mesos tooling
//! polls (`/master/state`, `/metrics/snapshot`), from Agora's domain values.
//!
//! Inbound there is one call with a payload that changes anything, UPDATE_WEIGHTS: it
//! becomes the gRPC Operator's `SetWeightRequest`s, validated and authorized by the same
//! function. Outbound, the registry as a principal may see it (`leader::views::Visible`), the leader's
//! `ClusterEvent`s and `ClusterCounts` become Mesos' messages and JSON. The operator API
//! shows tasks' real states (partition-aware) and reservations in the refinement format, as
//! Mesos' operator API does.
//!
//! This module owns the helpers its parts share ([`MasterFacts`], the event shape the
//! operator API uses, ids and times); the registry's objects and the GET_* queries are in
//! [`state`], this master's own weights, flags and metrics in [`master`], the operator's
//! event stream in [`stream`] and the v0 JSON in [`v0`].

use agora_mesos_proto::v1 as mesos;
use agora_registry::Resources;

use super::mesos::{resources_to_mesos, EventShape};

mod logging;
mod master;
mod state;
mod stream;
#[cfg(test)]
mod tests;
mod v0;

pub use logging::*;
pub use master::*;
pub use state::*;
pub use stream::*;
pub use v0::{metrics_json, state_json};

/// Facts about this master that its answers carry.
#[derive(Clone, Debug)]
pub struct MasterFacts {
    pub id: u64,
    /// This replica's advertised HOST:PORT.
    pub address: String,
    /// The leader's HOST:PORT, if known.
    pub leader: Option<String>,
    pub elected: bool,
    /// ms since the epoch (elected: 0 if not leading).
    pub started_ms: u64,
    pub elected_ms: u64,
}

fn shape() -> EventShape {
    EventShape {
        partition_aware: true,
        reservation_refinement: true,
        ..Default::default()
    }
}

fn resources(res: &Resources) -> Vec<mesos::Resource> {
    resources_to_mesos(res, &shape())
}

fn time_info(ms: u64) -> mesos::TimeInfo {
    mesos::TimeInfo {
        nanoseconds: (ms as i64).saturating_mul(1_000_000),
    }
}

fn secs(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

fn framework_id(id: &agora_registry::FrameworkId) -> mesos::FrameworkId {
    mesos::FrameworkId {
        value: id.to_string(),
    }
}

fn agent_id(id: &agora_registry::AgentId) -> mesos::AgentId {
    mesos::AgentId {
        value: id.to_string(),
    }
}
