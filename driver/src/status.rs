//! What a framework is told of its tasks, in domain terms.

use crate::TaskState;

/// A task's status, as a scheduler sees it (an update from the master, or its answer to a
/// reconciliation).
#[derive(Clone, Debug, PartialEq)]
pub struct TaskStatus {
    /// The task.
    pub task_id: String,
    /// Its state.
    pub state: TaskState,
    /// Why, if known.
    pub message: String,
    /// The agent it runs on.
    pub agent_id: String,
    /// The update's uuid (to acknowledge); empty for reconciliation answers, which need
    /// none.
    pub uuid: String,
    /// The command's exit status, for a task that exited.
    pub exit_code: Option<i32>,
    /// When the state changed, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
}
