//! Apache Mesos' v1 scheduler API (`agora_mesos_proto`) to and from Agora.
//!
//! Inbound, a Mesos call becomes the request the gRPC scheduler API takes (`agora.v1`), so
//! both APIs share one validation ([`super::accept_from_proto`] and the rest) and one set of
//! leader calls; the field a refusal names is then renamed to its Mesos path
//! (`tasks[0].command` is `accept.operations[0].launch.task_infos[0].command`). A launch
//! record is an `agora.v1.TaskInfo` either way: it is what agents run. Outbound, the
//! leader's domain events become Mesos events, shaped as the framework's capabilities ask
//! (partition-aware task states, multi-role allocation info, reservation format).
//!
//! This module owns what both directions share (field renaming, the [`EventShape`] a
//! framework's capabilities ask for, update uuids on the wire); the inbound calls are in
//! [`calls`] (launch records and resources in [`tasks`]), the outbound events in
//! [`events`].

use agora_mesos_proto::v1 as mesos;
use tonic::Status;

use super::{invalid, limits};

mod calls;
mod events;
mod tasks;
#[cfg(test)]
mod tests;

pub use calls::*;
pub use events::*;
pub use tasks::resources_from_mesos;

/// `status` with the field it names (the text before `": "`) renamed by the first of
/// `renames` that starts it: `(from, to)` replaces the prefix `from` by `to`.
fn renamed(status: Status, renames: &[(&str, &str)]) -> Status {
    let message = status.message();
    for (from, to) in renames {
        if let Some(rest) = message.strip_prefix(from) {
            // Only a whole field name or a path below it (`task_id` must not rename
            // `task_ids`).
            if rest.starts_with([':', '.', '[']) {
                return Status::new(status.code(), format!("{to}{rest}"));
            }
        }
    }
    status
}

/// What a Mesos framework's capabilities ask of the events it is sent.
#[derive(Clone, Debug, Default)]
pub struct EventShape {
    /// The framework's role (offered resources are allocated to it).
    pub role: String,
    /// PARTITION_AWARE: TASK_DROPPED, TASK_UNREACHABLE, TASK_GONE... as they are; else
    /// TASK_LOST, as Mesos tells frameworks without the capability.
    pub partition_aware: bool,
    /// MULTI_ROLE: offers and their resources carry `allocation_info`.
    pub multi_role: bool,
    /// TASK_KILLING_STATE: TASK_KILLING is sent; else a killing task is reported as
    /// TASK_RUNNING and the agent's TASK_KILLING update is not sent at all (see
    /// [`hidden_update`]).
    pub task_killing_state: bool,
    /// RESERVATION_REFINEMENT: reservations as `reservations`; else as the older `role`.
    pub reservation_refinement: bool,
    /// The leading master, in SUBSCRIBED.
    pub master: Option<mesos::MasterInfo>,
}

/// A status update's uuid on Mesos' wire: the 16 bytes of the agent's UUID (its text
/// otherwise).
pub fn uuid_to_mesos(uuid: &str) -> Vec<u8> {
    match uuid::Uuid::parse_str(uuid) {
        Ok(u) => u.as_bytes().to_vec(),
        Err(_) => uuid.as_bytes().to_vec(),
    }
}

/// The agent's uuid of an update from Mesos' bytes ([`uuid_to_mesos`] reversed).
pub fn uuid_from_mesos(bytes: &[u8], field: &str) -> Result<String, Status> {
    if bytes.is_empty() {
        return Err(invalid(field, "empty"));
    }
    if let Ok(u) = uuid::Uuid::from_slice(bytes) {
        return Ok(u.to_string());
    }
    limits::bytes(field, bytes, 64)?;
    String::from_utf8(bytes.to_vec())
        .map_err(|_| invalid(field, "not the uuid of an update this master sent"))
}
