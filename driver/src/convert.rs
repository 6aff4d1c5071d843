//! The driver's one conversion layer between the generated proto types and the types its
//! users see (the domain [`TaskState`], [`TaskStatus`]).
//!
//! The task-state mapping is public: programs that read the proto API directly (the CLI's
//! tables, the agent's conversion layer) use it rather than keep their own.

use agora_proto::v1 as pb;

use crate::status::TaskStatus;
use crate::TaskState;

/// A task state on the wire that has no domain counterpart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadTaskState {
    /// `TASK_STATE_UNSPECIFIED`: the field was left unset.
    #[error("unset")]
    Unset,
    /// A number this version does not know.
    #[error("unknown task state {0}")]
    Unknown(i32),
}

/// The wire value of a domain task state.
pub fn task_state_to_proto(state: TaskState) -> pb::TaskState {
    match state {
        TaskState::TaskStaging => pb::TaskState::TaskStaging,
        TaskState::TaskStarting => pb::TaskState::TaskStarting,
        TaskState::TaskRunning => pb::TaskState::TaskRunning,
        TaskState::TaskKilling => pb::TaskState::TaskKilling,
        TaskState::TaskFinished => pb::TaskState::TaskFinished,
        TaskState::TaskFailed => pb::TaskState::TaskFailed,
        TaskState::TaskKilled => pb::TaskState::TaskKilled,
        TaskState::TaskError => pb::TaskState::TaskError,
        TaskState::TaskLost => pb::TaskState::TaskLost,
        TaskState::TaskDropped => pb::TaskState::TaskDropped,
        TaskState::TaskUnreachable => pb::TaskState::TaskUnreachable,
        TaskState::TaskGone => pb::TaskState::TaskGone,
        TaskState::TaskGoneByOperator => pb::TaskState::TaskGoneByOperator,
        TaskState::TaskUnknown => pb::TaskState::TaskUnknown,
    }
}

/// The domain task state of a wire value (an `i32` field of a generated message).
pub fn task_state_from_proto(value: i32) -> Result<TaskState, BadTaskState> {
    let state = pb::TaskState::try_from(value).map_err(|_| BadTaskState::Unknown(value))?;
    Ok(match state {
        pb::TaskState::Unspecified => return Err(BadTaskState::Unset),
        pb::TaskState::TaskStaging => TaskState::TaskStaging,
        pb::TaskState::TaskStarting => TaskState::TaskStarting,
        pb::TaskState::TaskRunning => TaskState::TaskRunning,
        pb::TaskState::TaskKilling => TaskState::TaskKilling,
        pb::TaskState::TaskFinished => TaskState::TaskFinished,
        pb::TaskState::TaskFailed => TaskState::TaskFailed,
        pb::TaskState::TaskKilled => TaskState::TaskKilled,
        pb::TaskState::TaskError => TaskState::TaskError,
        pb::TaskState::TaskLost => TaskState::TaskLost,
        pb::TaskState::TaskDropped => TaskState::TaskDropped,
        pb::TaskState::TaskUnreachable => TaskState::TaskUnreachable,
        pb::TaskState::TaskGone => TaskState::TaskGone,
        pb::TaskState::TaskGoneByOperator => TaskState::TaskGoneByOperator,
        pb::TaskState::TaskUnknown => TaskState::TaskUnknown,
    })
}

/// A task's status as the master sent it, for a scheduler.
pub(crate) fn task_status_from_proto(s: pb::TaskStatus) -> Result<TaskStatus, BadTaskState> {
    Ok(TaskStatus {
        state: task_state_from_proto(s.state)?,
        task_id: s.task_id,
        message: s.message,
        agent_id: s.agent_id,
        uuid: s.uuid,
        exit_code: s.exit_code,
        timestamp_ms: s.timestamp_ms,
    })
}

/// What an executor reports about one of its tasks.
#[derive(Clone, Debug)]
pub(crate) struct OutgoingUpdate {
    pub uuid: String,
    pub task_id: String,
    pub state: TaskState,
    pub message: String,
    pub exit_code: Option<i32>,
    pub timestamp_ms: u64,
}

/// The executor API's status update for `u` (no `latest_state`: that is the agent's).
pub(crate) fn status_update_to_proto(framework_id: &str, u: &OutgoingUpdate) -> pb::StatusUpdate {
    pb::StatusUpdate {
        uuid: u.uuid.clone(),
        framework_id: framework_id.to_string(),
        task_id: u.task_id.clone(),
        state: task_state_to_proto(u.state).into(),
        message: u.message.clone(),
        exit_code: u.exit_code,
        timestamp_ms: u.timestamp_ms,
        latest_state: pb::TaskState::Unspecified.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_maps_both_ways_by_its_mesos_name() {
        for s in TaskState::ALL {
            let p = task_state_to_proto(s);
            assert_eq!(p.as_str_name(), s.name());
            assert_eq!(task_state_from_proto(p.into()), Ok(s));
        }
    }

    #[test]
    fn unset_and_unknown_numbers_are_refused() {
        assert_eq!(task_state_from_proto(0), Err(BadTaskState::Unset));
        assert_eq!(task_state_from_proto(99), Err(BadTaskState::Unknown(99)));
        assert_eq!(task_state_from_proto(-1), Err(BadTaskState::Unknown(-1)));
        assert_eq!(BadTaskState::Unset.to_string(), "unset");
    }
}
