//! What the leader says on its sessions, in domain terms: events to frameworks, commands to
//! agents, and why a session ends. The transport turns them into wire messages.

use std::time::Duration;

use agora_registry::{
    AgentId, FrameworkId, Offer, OfferId, Registry, Rejection, Task, TaskId, TaskSpec, TaskState,
};

/// A task's state as a framework is told it.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskStatus {
    pub task_id: TaskId,
    pub state: TaskState,
    pub message: String,
    /// The agent it runs on (unknown for a task the master never placed).
    pub agent_id: Option<AgentId>,
    /// Set when an agent sent it (the framework acknowledges it by this); none for what
    /// the master decides itself, which nobody resends.
    pub uuid: Option<String>,
    pub exit_code: Option<i32>,
    pub timestamp_ms: u64,
    /// Why, when the master decided or answered it itself.
    pub reason: Option<StatusReason>,
}

/// Why the master reports a task's state itself (the reasons of Mesos' `TaskStatus` that a
/// master gives; an agent's updates carry none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusReason {
    /// An answer to reconciliation: the framework asked, or an agent that registered again
    /// no longer has the task.
    Reconciliation,
    /// The task's agent stopped answering health checks.
    AgentUnreachable,
    /// An operator marked the task's agent gone.
    AgentGone,
    /// A launch refused because its offers were unknown, not the framework's, or spent.
    InvalidOffers,
    /// A launch refused because of the task itself.
    TaskInvalid,
}

/// An offer with what a framework needs to judge it.
#[derive(Clone, Debug, PartialEq)]
pub struct OfferView {
    pub offer: Offer,
    pub hostname: String,
    pub attributes: Vec<(String, String)>,
}

impl TaskStatus {
    /// A task's state as its framework is told it when the master decides or answers it
    /// (no uuid: nothing to acknowledge).
    pub fn of(t: &Task) -> TaskStatus {
        TaskStatus {
            task_id: t.id.clone(),
            state: t.state,
            message: t.message.clone().unwrap_or_default(),
            agent_id: Some(t.agent_id.clone()),
            uuid: None,
            exit_code: t.exit_code,
            timestamp_ms: t.updated_at_ms,
            reason: None,
        }
    }

    /// The same status, with the reason the master gives for it.
    pub fn because(mut self, reason: StatusReason) -> TaskStatus {
        self.reason = Some(reason);
        self
    }

    /// TASK_LOST for a task the master cannot place.
    pub fn lost(task: &TaskId, why: &str, now: u64) -> TaskStatus {
        TaskStatus {
            task_id: task.clone(),
            state: TaskState::TaskLost,
            message: why.into(),
            agent_id: None,
            uuid: None,
            exit_code: None,
            timestamp_ms: now,
            reason: Some(StatusReason::Reconciliation),
        }
    }
}

impl OfferView {
    /// An offer as its framework sees it: with the agent's hostname and attributes.
    pub fn of(reg: &Registry, o: &Offer) -> OfferView {
        let (hostname, attributes) = reg
            .agent(&o.agent_id)
            .map(|a| (a.info.hostname.clone(), a.info.attributes.clone()))
            .unwrap_or_default();
        OfferView {
            offer: o.clone(),
            hostname,
            attributes,
        }
    }
}

/// Data between a framework's scheduler and one of its executors.
#[derive(Clone, Debug, PartialEq)]
pub struct FrameworkMessage {
    pub framework_id: FrameworkId,
    pub agent_id: AgentId,
    pub executor_id: String,
    pub data: Vec<u8>,
}

/// An event on a framework's subscription.
#[derive(Clone, Debug, PartialEq)]
pub enum FrameworkEvent {
    Subscribed {
        framework_id: FrameworkId,
        heartbeat_interval: Duration,
        /// The term of the leader that subscribed it.
        term: u64,
    },
    Offers(Vec<OfferView>),
    Rescind(OfferId),
    Update(TaskStatus),
    Message(FrameworkMessage),
    /// An agent was lost.
    Failure(AgentId),
    Heartbeat,
}

impl FrameworkEvent {
    /// Kept for a framework that is not subscribed: status updates the master generated
    /// itself (no uuid), since no agent will resend them.
    pub fn keep_while_away(&self) -> bool {
        matches!(self, FrameworkEvent::Update(u) if u.uuid.is_none())
    }
}

/// A command on an agent's session.
#[derive(Clone, Debug, PartialEq)]
pub enum AgentCommand {
    /// Tasks to launch, as the framework described them (the registry's launch record).
    Launch {
        framework_id: FrameworkId,
        tasks: Vec<TaskSpec>,
    },
    Kill {
        framework_id: FrameworkId,
        task_id: TaskId,
        grace_period_ms: u64,
    },
    /// A status update the agent may stop resending.
    Ack {
        framework_id: FrameworkId,
        task_id: TaskId,
        uuid: String,
    },
    Ping {
        seq: u64,
    },
    FrameworkMessage(FrameworkMessage),
    ShutdownExecutor {
        framework_id: FrameworkId,
        executor_id: String,
        grace_period_ms: u64,
    },
}

/// What an agent says on its session, validated.
#[derive(Clone, Debug, PartialEq)]
pub enum AgentReport {
    Pong,
    Update(AgentUpdate),
    ExecutorMessage(FrameworkMessage),
    /// A message that could not be read: the session ends with this reason.
    Invalid {
        field: String,
        reason: String,
    },
}

/// A status update from an agent.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentUpdate {
    pub uuid: String,
    pub framework_id: FrameworkId,
    pub task_id: TaskId,
    pub state: TaskState,
    /// The task's newest state on the agent, when later than `state`.
    pub latest_state: Option<TaskState>,
    pub message: String,
    pub exit_code: Option<i32>,
    pub timestamp_ms: u64,
}

/// Why the leader ended a session.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SessionEnd {
    #[error("replaced by a new subscription of this framework")]
    Replaced,
    #[error("replaced by a new session of this agent")]
    AgentReplaced,
    #[error("not the leader")]
    NotLeader(Option<String>),
    #[error("framework removed: {0}")]
    FrameworkRemoved(String),
    #[error("agent marked unreachable; register again")]
    AgentUnreachable,
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("{0}")]
    Rejected(Rejection),
    #[error("unavailable: {0}")]
    Unavailable(String),
}
