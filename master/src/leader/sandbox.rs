//! Grants to read a task's sandbox on its agent (`Master.SandboxAccess`, the HTTP
//! `/files/*` proxy): the leader decides who may read it and signs a grant with the key the
//! task's agent sent on its session; the agent checks it (see `agora_security::grant`).

use agora_registry::{AgentId, FrameworkId, TaskId, TaskState};
use agora_security::grant::{GrantKey, SandboxGrant};

use super::{Leader, LeaderError};

/// How long a grant is accepted.
pub const GRANT_TTL_MS: u64 = 60 * 60 * 1000;

/// Where a task's sandbox is and the grant to read it.
#[derive(Clone, Debug)]
pub struct SandboxAccess {
    pub agent_id: AgentId,
    pub agent_address: String,
    pub framework_id: FrameworkId,
    pub task_id: TaskId,
    pub state: TaskState,
    /// The sandbox's root in the agent's sandbox API.
    pub path: String,
    pub token: String,
    pub expires_ms: u64,
}

/// The path of a task's sandbox in an agent's sandbox API (as Mesos names an executor's
/// latest run).
pub fn sandbox_path(framework: &str, task: &str) -> String {
    format!("/frameworks/{framework}/executors/{task}/runs/latest")
}

impl Leader {
    /// Records (or, with `None`, forgets) the key a connected agent signs grants with.
    pub fn set_sandbox_key(&self, agent: &AgentId, key: Option<GrantKey>) {
        let mut keys = self.shared.sandbox_keys.lock().expect("keys lock");
        match key {
            Some(k) => {
                keys.insert(agent.clone(), k);
            }
            None => {
                keys.remove(agent);
            }
        }
    }

    /// A grant for `principal` to read the sandbox of `task` (of `framework`, when named).
    pub fn sandbox_access(
        &self,
        principal: Option<&str>,
        task: &TaskId,
        framework: Option<&FrameworkId>,
    ) -> Result<SandboxAccess, LeaderError> {
        self.require_leader()?;
        type Found = (
            FrameworkId,
            AgentId,
            String,
            TaskState,
            Option<String>,
            String,
        );
        let found: Vec<Found> = self.read(|reg| {
            reg.tasks()
                .filter(|t| &t.id == task && framework.is_none_or(|f| &t.framework_id == f))
                .map(|t| {
                    let owner = reg
                        .framework(&t.framework_id)
                        .map(|f| f.info.principal.clone())
                        .or_else(|| {
                            reg.completed_framework(&t.framework_id)
                                .map(|c| c.framework.info.principal.clone())
                        })
                        .flatten();
                    let address = reg
                        .agent(&t.agent_id)
                        .map(|a| a.info.address.clone())
                        .unwrap_or_default();
                    (
                        t.framework_id.clone(),
                        t.agent_id.clone(),
                        t.user.clone(),
                        t.state,
                        owner,
                        address,
                    )
                })
                .collect()
        });
        let (framework_id, agent_id, user, state, owner, address) = match found.len() {
            0 => {
                return Err(LeaderError::invalid(
                    "task_id",
                    format!("no task {task} is on record"),
                ))
            }
            1 => found.into_iter().next().expect("one"),
            n => {
                return Err(LeaderError::invalid(
                    "framework_id",
                    format!("{n} frameworks have a task {task}: name the framework"),
                ))
            }
        };
        self.authorize_sandbox(principal, &framework_id, owner.as_deref(), &user)?;
        if address.is_empty() {
            return Err(LeaderError::Precondition(format!(
                "agent {agent_id} of task {task} is no longer registered: its sandbox is gone with it"
            )));
        }
        let key = self
            .shared
            .sandbox_keys
            .lock()
            .expect("keys lock")
            .get(&agent_id)
            .cloned()
            .ok_or_else(|| {
                LeaderError::Precondition(format!(
                    "agent {agent_id} of task {task} has no session with the leader; its sandbox cannot be reached now"
                ))
            })?;
        let expires_ms = self.now_ms() + GRANT_TTL_MS;
        let token = key.sign(&SandboxGrant {
            agent_id: agent_id.to_string(),
            framework_id: framework_id.to_string(),
            task_id: task.to_string(),
            principal: principal.map(str::to_string),
            expires_ms,
        });
        tracing::debug!(task = %task, framework = %framework_id, agent = %agent_id, principal = ?principal, "sandbox access granted");
        Ok(SandboxAccess {
            path: sandbox_path(framework_id.as_str(), task.as_str()),
            agent_id,
            agent_address: address,
            framework_id,
            task_id: task.clone(),
            state,
            token,
            expires_ms,
        })
    }
}
