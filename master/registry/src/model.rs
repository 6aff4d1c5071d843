//! The registry's entities: agents, frameworks, tasks and offers.

use crate::ids::{AgentId, FrameworkId, OfferId, TaskId};
use crate::rejection::Rejection;
use crate::resources::Resources;
pub use crate::task_state::{TaskState, UnknownTaskState};
use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch, as stamped by the leader on a command.
pub type TimestampMs = u64;

/// What an agent tells the master about itself when it registers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentInfo {
    pub id: AgentId,
    pub hostname: String,
    /// `HOST:PORT` of the agent's API.
    pub address: String,
    /// Everything the agent offers to the cluster.
    pub resources: Resources,
    /// Free-form `key:value` attributes, in the order given.
    pub attributes: Vec<(String, String)>,
    /// The principal that registered it (its certificate's or credential's); only that
    /// principal may register it again or open its session. None on a cluster without
    /// authentication.
    #[serde(default)]
    pub principal: Option<String>,
    /// Which of the agent's registrations this is; the registry refuses one older than
    /// the last it applied. None from a registrant that does not say (then it is not
    /// ordered, and the last known order is kept).
    #[serde(default)]
    pub registration: Option<RegistrationOrder>,
}

/// The order of an agent's registrations: its incarnation (a counter the agent keeps in
/// its work dir, one more at each start) and the attempt within it (one more at each
/// request sent). A registration request delayed in the network and delivered after a
/// later one carries a report of the agent's tasks older than what the registry already
/// reconciled; refusing it (it is smaller) keeps that stale report from declaring tasks
/// lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RegistrationOrder {
    pub incarnation: u64,
    pub attempt: u64,
}

impl std::fmt::Display for RegistrationOrder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "incarnation {} attempt {}",
            self.incarnation, self.attempt
        )
    }
}

/// Whether an agent is in the pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentStatus {
    /// Registered and heartbeating; its resources are in the pool.
    Active,
    /// Missed its health checks; its resources are out of the pool until it re-registers.
    Unreachable { since_ms: TimestampMs },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Agent {
    pub info: AgentInfo,
    pub status: AgentStatus,
    pub registered_at_ms: TimestampMs,
    /// An operator took it out of the pool (deactivated, or draining): no offers.
    #[serde(default)]
    pub deactivated: bool,
    /// An operator's drain of it, while it lasts (until reactivated or gone).
    #[serde(default)]
    pub drain: Option<Drain>,
}

impl Agent {
    /// Whether its resources may be offered: reachable and not taken out by an operator.
    pub fn in_pool(&self) -> bool {
        self.status == AgentStatus::Active && !self.deactivated
    }
}

/// An operator's drain of an agent (Mesos' `DRAIN_AGENT`): the agent gets no offers; its
/// live tasks are killed once `deadline_ms` passes; with none left it is drained and, with
/// `mark_gone`, marked gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drain {
    pub started_ms: TimestampMs,
    /// When its tasks are killed (start plus the grace period).
    pub deadline_ms: TimestampMs,
    pub mark_gone: bool,
    pub state: DrainState,
}

/// How far a drain has come.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DrainState {
    /// Tasks may still run on it.
    Draining,
    /// None runs on it any more.
    Drained,
}

/// What a framework tells the master when it subscribes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FrameworkInfo {
    pub id: FrameworkId,
    pub name: String,
    pub role: String,
    pub principal: Option<String>,
    /// How long its tasks outlive a lost connection before they are killed.
    pub failover_timeout_ms: u64,
    /// The user its tasks run as unless a task names its own.
    #[serde(default)]
    pub user: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FrameworkStatus {
    /// Subscribed with a live connection.
    Active,
    /// Connection lost; its tasks run on until `since_ms + failover_timeout_ms`.
    Disconnected { since_ms: TimestampMs },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Framework {
    pub info: FrameworkInfo,
    pub status: FrameworkStatus,
    pub registered_at_ms: TimestampMs,
}

/// A framework that was removed (teardown or failover timeout), kept for the record with
/// its tasks, all terminal, until it is among the oldest beyond
/// [`Retention::max_completed_frameworks`]. Its id can never be registered again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CompletedFramework {
    /// The framework as it was when removed.
    pub framework: Framework,
    pub removed_at_ms: TimestampMs,
}

/// How much finished history the registry keeps (Mesos' `--max_completed_tasks_per_framework`
/// and `--max_completed_frameworks`). Part of the replicated state, set by
/// [`Command::SetRetention`](crate::Command::SetRetention).
///
/// - A framework (registered or completed) keeps at most `max_completed_tasks_per_framework`
///   terminal tasks; beyond that the oldest, by `(updated_at_ms, task id)`, are dropped.
/// - At most `max_completed_frameworks` completed frameworks are kept; beyond that the
///   oldest, by `(removed_at_ms, framework id)`, are dropped together with their tasks.
///
/// Zero keeps none. Live tasks and registered frameworks are never dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Retention {
    pub max_completed_tasks_per_framework: usize,
    pub max_completed_frameworks: usize,
}

impl Retention {
    /// The largest `max_completed_tasks_per_framework` accepted.
    pub const TASKS_PER_FRAMEWORK_LIMIT: usize = 1_000_000;
    /// The largest `max_completed_frameworks` accepted.
    pub const FRAMEWORKS_LIMIT: usize = 100_000;

    /// Refuses a bound above its limit, naming the field.
    pub fn validate(&self) -> Result<(), Rejection> {
        let checks = [
            (
                "max_completed_tasks_per_framework",
                self.max_completed_tasks_per_framework,
                Self::TASKS_PER_FRAMEWORK_LIMIT,
            ),
            (
                "max_completed_frameworks",
                self.max_completed_frameworks,
                Self::FRAMEWORKS_LIMIT,
            ),
        ];
        for (field, value, max) in checks {
            if value > max {
                return Err(Rejection::RetentionTooLarge {
                    field: field.to_string(),
                    value,
                    max,
                });
            }
        }
        Ok(())
    }
}

impl Default for Retention {
    /// Mesos' defaults: 1000 completed tasks per framework, 50 completed frameworks.
    fn default() -> Self {
        Retention {
            max_completed_tasks_per_framework: 1000,
            max_completed_frameworks: 50,
        }
    }
}

/// What a framework asks to run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    pub id: TaskId,
    pub name: String,
    pub resources: Resources,
    /// Opaque to the registry: the command or executor description the agent runs.
    #[serde(with = "launch_bytes")]
    pub launch: Vec<u8>,
    /// The user it runs as (resolved by the master: the task's, else its framework's).
    #[serde(default)]
    pub user: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub id: TaskId,
    pub framework_id: FrameworkId,
    pub agent_id: AgentId,
    pub name: String,
    pub resources: Resources,
    pub state: TaskState,
    /// Why it reached `state`, when known (e.g. "memory limit exceeded").
    pub message: Option<String>,
    pub exit_code: Option<i32>,
    pub updated_at_ms: TimestampMs,
    #[serde(with = "launch_bytes")]
    pub launch: Vec<u8>,
    /// The user it runs as.
    #[serde(default)]
    pub user: String,
    /// While it is TASK_UNREACHABLE: the state it had when its agent became unreachable.
    /// One that was still TASK_STAGING never reached the agent (its launch is sent again
    /// when the agent is back, rather than the task declared lost).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreachable_from: Option<TaskState>,
}

/// Resources of one agent offered to one framework and not yet accepted, declined or
/// rescinded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Offer {
    pub id: OfferId,
    pub framework_id: FrameworkId,
    pub agent_id: AgentId,
    pub resources: Resources,
    pub created_at_ms: TimestampMs,
}

/// A task's launch bytes in the log and in snapshots: base64 text (a JSON array of numbers,
/// as earlier versions wrote and which still loads, took 3.6 bytes a byte; a log entry is
/// bounded in bytes, so this is how many tasks fit in one).
mod launch_bytes {
    use base64::Engine;
    use serde::de::{Error, SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct Launch;
        impl<'de> Visitor<'de> for Launch {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("base64 text or an array of bytes")
            }
            fn visit_str<E: Error>(self, v: &str) -> Result<Vec<u8>, E> {
                base64::engine::general_purpose::STANDARD
                    .decode(v)
                    .map_err(E::custom)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(b) = seq.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(out)
            }
            fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
        }
        d.deserialize_any(Launch)
    }

    #[cfg(test)]
    mod tests {
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct T {
            #[serde(with = "super")]
            launch: Vec<u8>,
        }

        #[test]
        fn base64_out_and_both_forms_in() {
            let t = T {
                launch: vec![0, 1, 2, 250, 255],
            };
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(json, r#"{"launch":"AAEC+v8="}"#);
            assert_eq!(serde_json::from_str::<T>(&json).unwrap(), t);
            let old: T = serde_json::from_str(r#"{"launch":[0,1,2,250,255]}"#).unwrap();
            assert_eq!(old, t);
            assert!(serde_json::from_str::<T>(r#"{"launch":"not base64!"}"#).is_err());
        }
    }
}
