//! The typed commands of the replicated log (why one can be rejected is [`Rejection`], in
//! [`crate::rejection`], re-exported here).

use crate::ids::{AgentId, FrameworkId, OfferId, TaskId};
use crate::model::{AgentInfo, FrameworkInfo, Offer, Retention, TaskSpec, TaskState, TimestampMs};
pub use crate::rejection::Rejection;
use crate::resources::Resources;
use serde::{Deserialize, Serialize};

/// One change to the registry. Every field a replica needs is in the command (ids chosen
/// and time read by the leader), so applying it is deterministic.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// First registration, or re-registration from the same address.
    RegisterAgent {
        info: AgentInfo,
        now_ms: TimestampMs,
    },
    /// The agent missed its health checks: out of the pool; its live tasks become
    /// `TASK_UNREACHABLE` and its offers are withdrawn.
    MarkAgentUnreachable { id: AgentId, now_ms: TimestampMs },
    /// The agent is gone for good: its live tasks become `TASK_GONE`, offers are withdrawn.
    RemoveAgent { id: AgentId, now_ms: TimestampMs },
    /// Subscription (first or again).
    RegisterFramework {
        info: FrameworkInfo,
        now_ms: TimestampMs,
    },
    /// Its connection dropped; its failover timeout starts.
    DisconnectFramework {
        id: FrameworkId,
        now_ms: TimestampMs,
    },
    /// Teardown or failover timeout: its offers go; its tasks must already be terminal or
    /// are recorded `TASK_KILLED`. It becomes a completed framework (its tasks stay, subject
    /// to [`Retention`]) and its id can never be registered again.
    RemoveFramework {
        id: FrameworkId,
        now_ms: TimestampMs,
    },
    /// One allocation cycle's offers, all or nothing.
    AddOffers { offers: Vec<Offer> },
    /// Offers withdrawn (declined, rescinded, timed out). Unknown ids are ignored, so a
    /// rescind racing an accept is harmless.
    RemoveOffers { ids: Vec<OfferId> },
    /// Accept: consume `offer_ids` (all one framework's, all on one agent) and launch
    /// `tasks` on their resources; what the tasks do not use returns to the pool.
    LaunchTasks {
        framework_id: FrameworkId,
        offer_ids: Vec<OfferId>,
        tasks: Vec<TaskSpec>,
        now_ms: TimestampMs,
    },
    /// A status update for one task. A task the registry does not hold is refused with
    /// [`Rejection::UnknownTask`]: one never launched, and also a terminal one dropped under
    /// [`Retention`] (an update can arrive after its task was evicted).
    UpdateTask {
        framework_id: FrameworkId,
        task_id: TaskId,
        state: TaskState,
        message: Option<String>,
        exit_code: Option<i32>,
        now_ms: TimestampMs,
    },
    /// The DRF weight of a role (operator call).
    SetWeight { role: String, weight: f64 },
    /// How much finished history to keep; enforced at once (lowering a bound evicts).
    /// After the older variants so that older log entries keep their encoding.
    SetRetention { retention: Retention },
    /// The DRF weights of several roles at once: all set, or (one invalid) none.
    /// After the older variants so that older log entries keep their encoding.
    SetWeights { weights: Vec<(String, f64)> },
    /// An operator takes the agent out of the pool: its offers are withdrawn and it gets
    /// no more; its tasks run on.
    DeactivateAgent { id: AgentId },
    /// An operator puts the agent back in the pool, ending its drain if it has one.
    ReactivateAgent { id: AgentId },
    /// An operator drains the agent: deactivated, its tasks killed after `deadline_ms` by
    /// the leader. It is drained once no live task is left on it (recorded by whichever
    /// command ends the last one). Draining again replaces the deadline and `mark_gone`.
    DrainAgent {
        id: AgentId,
        deadline_ms: TimestampMs,
        mark_gone: bool,
        now_ms: TimestampMs,
    },
    /// An operator marks the agent gone for good: its live tasks become
    /// `TASK_GONE_BY_OPERATOR`, it is removed, and its id can never register again.
    MarkAgentGone { id: AgentId, now_ms: TimestampMs },
}

/// The payload of one Raft log entry: commands applied in order, each on its own (one
/// command's rejection neither undoes nor blocks the others). Batching many clients'
/// commands into one entry is how the master amortizes the log's per-entry cost.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CommandBatch {
    pub commands: Vec<Command>,
}

impl CommandBatch {
    pub fn one(command: Command) -> Self {
        CommandBatch {
            commands: vec![command],
        }
    }
}

/// The result of applying one command.
pub type CommandResult = Result<(), Rejection>;

impl Command {
    /// A short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Command::RegisterAgent { .. } => "register_agent",
            Command::MarkAgentUnreachable { .. } => "mark_agent_unreachable",
            Command::RemoveAgent { .. } => "remove_agent",
            Command::RegisterFramework { .. } => "register_framework",
            Command::DisconnectFramework { .. } => "disconnect_framework",
            Command::RemoveFramework { .. } => "remove_framework",
            Command::AddOffers { .. } => "add_offers",
            Command::RemoveOffers { .. } => "remove_offers",
            Command::LaunchTasks { .. } => "launch_tasks",
            Command::UpdateTask { .. } => "update_task",
            Command::SetWeight { .. } => "set_weight",
            Command::SetRetention { .. } => "set_retention",
            Command::SetWeights { .. } => "set_weights",
            Command::DeactivateAgent { .. } => "deactivate_agent",
            Command::ReactivateAgent { .. } => "reactivate_agent",
            Command::DrainAgent { .. } => "drain_agent",
            Command::MarkAgentGone { .. } => "mark_agent_gone",
        }
    }
}

/// Sum of the resources of a slice of offers.
pub(crate) fn offered_total<'a>(offers: impl IntoIterator<Item = &'a Offer>) -> Resources {
    let mut total = Resources::new();
    for o in offers {
        total.add(&o.resources);
    }
    total
}
