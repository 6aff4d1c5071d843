//! Why a command is not applied: [`Rejection`], the refusal `apply` answers (and the one
//! refused before the log). Its own module so that the model's validation can answer it
//! without depending on the commands: both the model and the commands depend on it.

use crate::ids::{AgentId, FrameworkId, OfferId, TaskId};
use crate::task_state::TaskState;
use serde::{Deserialize, Serialize};

/// Why a command was not applied. A rejected command changes nothing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum Rejection {
    #[error("agent {0} is not registered")]
    UnknownAgent(AgentId),
    #[error("agent {id} is registered from {registered}, not {claimed}")]
    AgentAddressMismatch {
        id: AgentId,
        registered: String,
        claimed: String,
    },
    #[error("agent {id} registers again with {offered}, less than its live tasks use ({used})")]
    AgentResourcesBelowUsed {
        id: AgentId,
        used: String,
        offered: String,
    },
    #[error("agent {id}'s registration ({got}) is older than the last one applied ({last})")]
    StaleRegistration {
        id: AgentId,
        last: String,
        got: String,
    },
    #[error("agent {0} is not active")]
    AgentNotActive(AgentId),
    #[error("agent {0} was marked gone; its id can never register again")]
    AgentGone(AgentId),
    #[error("{what} is bound to principal {registered:?}, not {claimed:?}")]
    PrincipalMismatch {
        what: String,
        registered: String,
        claimed: String,
    },
    #[error("framework {0} is not registered")]
    UnknownFramework(FrameworkId),
    #[error("framework {0} is not active")]
    FrameworkNotActive(FrameworkId),
    #[error("framework {id} is registered with role {registered}, not {claimed}")]
    FrameworkRoleMismatch {
        id: FrameworkId,
        registered: String,
        claimed: String,
    },
    #[error("offer {0} is not outstanding")]
    UnknownOffer(OfferId),
    #[error("offer {0} already exists")]
    DuplicateOffer(OfferId),
    #[error("offer {offer} belongs to framework {owner}")]
    OfferNotOwned { offer: OfferId, owner: FrameworkId },
    #[error("offers {0} and {1} are on different agents")]
    OffersOnDifferentAgents(OfferId, OfferId),
    #[error("offer {offer} holds resources agent {agent} does not have free ({resources})")]
    OfferExceedsAgent {
        offer: OfferId,
        agent: AgentId,
        resources: String,
    },
    #[error("offer {0} is empty")]
    EmptyOffer(OfferId),
    #[error("offer {offer} holds resources not allocatable to role {role}")]
    OfferWrongRole { offer: OfferId, role: String },
    #[error("task {0} already exists in this framework")]
    DuplicateTask(TaskId),
    #[error("tasks need {needed} but the offers hold {offered}")]
    TasksExceedOffers { needed: String, offered: String },
    #[error("tasks {first} and {second} of one launch both need {shared}")]
    TasksShareRanges {
        first: TaskId,
        second: TaskId,
        shared: String,
    },
    #[error("task {0} has no resources")]
    TaskWithoutResources(TaskId),
    #[error("no offers named")]
    NoOffers,
    #[error("task {0} is not known")]
    UnknownTask(TaskId),
    #[error("{0} is not a state a task can take (it answers reconciliation only)")]
    NotATaskState(TaskState),
    #[error("task {task} is already {state}")]
    TaskAlreadyTerminal { task: TaskId, state: TaskState },
    #[error("weight {0} is not a positive finite number")]
    BadWeight(String),
    #[error("bad role: {0}")]
    BadRole(String),
    #[error("framework {0} was removed; its id cannot be registered again")]
    FrameworkCompleted(FrameworkId),
    #[error("retention {field} = {value} is above the limit {max}")]
    RetentionTooLarge {
        field: String,
        value: usize,
        max: usize,
    },
    /// Refused before the log (never by `apply`): one command may not make a log entry
    /// larger than the master's limit, so that one entry cannot stall replication.
    #[error("the command is {bytes} bytes in the log, above the limit of {max}: send fewer or smaller tasks per call")]
    EntryTooLarge { bytes: usize, max: usize },
}
