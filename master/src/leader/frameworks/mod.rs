//! Frameworks, on the leader: subscriptions and their calls (accept, decline, revive,
//! suppress, kill, acknowledge, reconcile, teardown, messages to executors), the status
//! updates forwarded to them, and their removal.
//!
//! What is replicated: registrations, offers, launches and task states (in the registry),
//! so a new leader resumes offering at once and outstanding offers stay valid. What is not:
//! decline filters and suppression (soft state, as in Mesos), and live subscriptions
//! (frameworks subscribe again to the new leader).

use std::collections::BTreeSet;

use agora_registry::{AgentId, Command, FrameworkId, FrameworkInfo, Registry, TaskId};
use tokio::sync::mpsc;
use tracing::Instrument;

use super::messages::{
    AgentCommand, AgentUpdate, FrameworkEvent, FrameworkMessage, OfferView, SessionEnd,
    StatusReason, TaskStatus,
};
use super::sessions::Outbound;
use super::{Leader, LeaderError, HEARTBEAT};

/// A framework's subscription request, validated.
#[derive(Clone, Debug)]
pub struct SubscribeCall {
    /// Its id when it subscribes again; none the first time.
    pub id: Option<FrameworkId>,
    pub name: String,
    pub role: String,
    /// The authenticated principal (else the one the framework declared, on a cluster
    /// without authentication).
    pub principal: Option<String>,
    pub failover_timeout_ms: u64,
    /// The user its tasks run as unless a task names its own.
    pub user: String,
}

/// A live subscription: its id and the stream of its events.
pub struct Subscription {
    pub framework_id: FrameworkId,
    pub events: mpsc::Receiver<Outbound<FrameworkEvent, SessionEnd>>,
}

/// The kills that removing `framework` takes: one per live task, on its agent.
pub fn kills_on_removal(reg: &Registry, framework: &FrameworkId) -> Vec<(AgentId, AgentCommand)> {
    reg.tasks()
        .filter(|t| &t.framework_id == framework && !t.state.is_terminal())
        .map(|t| {
            (
                t.agent_id.clone(),
                AgentCommand::Kill {
                    framework_id: framework.clone(),
                    task_id: t.id.clone(),
                    grace_period_ms: 0,
                },
            )
        })
        .collect()
}

impl Leader {
    /// Checks that `framework` may make calls: this replica leads and the framework has a
    /// live subscription to it.
    pub fn require_subscribed(&self, framework: &FrameworkId) -> Result<(), LeaderError> {
        self.require_leader()?;
        self.slow_failover_gate()?;
        if !self.shared.frameworks.is_open(framework) {
            return Err(LeaderError::Precondition(format!(
                "framework_id: framework {framework} is not subscribed to this master; subscribe first"
            )));
        }
        Ok(())
    }

    /// The user a framework's tasks run as unless they name one (empty if unknown).
    pub fn framework_user(&self, framework: &FrameworkId) -> String {
        self.read(|reg| reg.framework(framework).map(|f| f.info.user.clone()))
            .unwrap_or_default()
    }

    pub fn is_subscribed(&self, framework: &FrameworkId) -> bool {
        self.shared.frameworks.is_open(framework)
    }

    /// Registers (or re-registers) a framework and opens its subscription.
    pub async fn subscribe(&self, call: SubscribeCall) -> Result<Subscription, LeaderError> {
        let view = self.require_leader()?;
        self.slow_failover_gate()?;
        self.authorize(
            call.principal.as_deref(),
            &agora_acl::Action::RegisterFramework { role: &call.role },
        )?;
        if let Some(id) = &call.id {
            self.require_framework_owner(call.principal.as_deref(), id)?;
        }
        let id = match call.id {
            None => FrameworkId::new(format!("{}-0000", uuid::Uuid::new_v4()))
                .expect("uuid ids are valid"),
            Some(id) => {
                if self.read(|reg| reg.framework(&id).is_none()) {
                    return Err(LeaderError::Precondition(format!(
                        "framework.id: framework {id} is not registered (removed after its failover timeout or teardown?)"
                    )));
                }
                id
            }
        };
        // Never hold a span's enter guard across an await: the task may resume on another
        // thread, and a span left entered on the first one crashed tracing in a failover.
        let span = tracing::info_span!("subscribe", framework = %id, term = view.term);
        self.write(Command::RegisterFramework {
            info: FrameworkInfo {
                id: id.clone(),
                name: call.name.clone(),
                role: call.role,
                principal: call.principal,
                failover_timeout_ms: call.failover_timeout_ms,
                user: call.user,
            },
            now_ms: self.now_ms(),
        })
        .instrument(span.clone())
        .await?;
        let (tx, rx) = mpsc::channel(4096);
        self.soft().subscribed(&id);
        // Offers still outstanding (e.g. made before a failover) remain valid.
        let outstanding: Vec<OfferView> = self.read(|reg| {
            reg.offers()
                .filter(|o| o.framework_id == id)
                .map(|o| OfferView::of(reg, o))
                .collect()
        });
        let subscribed = FrameworkEvent::Subscribed {
            framework_id: id.clone(),
            heartbeat_interval: HEARTBEAT,
            term: view.term,
        };
        let serial =
            self.shared
                .frameworks
                .open(&id, tx.clone(), [subscribed], SessionEnd::Replaced);
        if !outstanding.is_empty() {
            let _ = tx.try_send(Ok(FrameworkEvent::Offers(outstanding)));
        }
        span.in_scope(|| tracing::info!(name = %call.name, "framework subscribed"));
        self.wake();
        // Watch the stream: heartbeats, and a disconnection starts the failover timeout.
        let leader = self.clone();
        let framework = id.clone();
        tokio::spawn(
            async move {
                loop {
                    tokio::select! {
                        // In the order written: a deterministic simulation replays the same choice.
                        biased;
                        _ = tx.closed() => break,
                        _ = tokio::time::sleep(HEARTBEAT) => {
                            // A session the table ended (replaced, or this replica stopped
                            // leading) must not be kept open by this sender.
                            if !leader.shared.frameworks.is_current(&framework, serial) {
                                break;
                            }
                            let _ = tx.try_send(Ok(FrameworkEvent::Heartbeat));
                        }
                    }
                }
                if leader.shared.frameworks.close(&framework, serial) && leader.view().is_leader {
                    tracing::info!("framework disconnected; failover timeout starts");
                    if let Err(e) = leader
                        .write(Command::DisconnectFramework {
                            id: framework.clone(),
                            now_ms: leader.now_ms(),
                        })
                        .await
                    {
                        tracing::warn!(error = %e, "could not record the disconnection");
                    }
                }
            }
            .instrument(span),
        );
        Ok(Subscription {
            framework_id: id,
            events: rx,
        })
    }

    /// The framework wants offers again: filters and suppression are cleared.
    pub fn revive(&self, framework: &FrameworkId) -> Result<(), LeaderError> {
        self.require_subscribed(framework)?;
        // The allocator is rebuilt each cycle, so this clears its filters too.
        self.soft().revive(framework);
        self.wake();
        Ok(())
    }

    /// The framework wants no offers until it revives.
    pub fn suppress(&self, framework: &FrameworkId) -> Result<(), LeaderError> {
        self.require_subscribed(framework)?;
        self.soft().suppress(framework);
        Ok(())
    }

    /// Kills a task; a task that is unknown or already ended is answered with its state.
    pub fn kill(
        &self,
        framework: &FrameworkId,
        task_id: &TaskId,
        grace_period_ms: u64,
    ) -> Result<(), LeaderError> {
        self.require_subscribed(framework)?;
        match self.read(|reg| reg.task(framework, task_id).cloned()) {
            None => {
                let lost = TaskStatus::lost(task_id, "unknown task", self.now_ms());
                self.to_framework(framework, FrameworkEvent::Update(lost));
            }
            Some(t) if t.state.is_terminal() => {
                let status = TaskStatus::of(&t).because(StatusReason::Reconciliation);
                self.to_framework(framework, FrameworkEvent::Update(status));
            }
            Some(t) => self.to_agent(
                &t.agent_id,
                AgentCommand::Kill {
                    framework_id: framework.clone(),
                    task_id: task_id.clone(),
                    grace_period_ms,
                },
            ),
        }
        Ok(())
    }

    /// Passes a framework's acknowledgement of a status update to the task's agent.
    /// Passes a framework's acknowledgement to the agent its task runs on: the registry's
    /// record says which, or, for a task that has left the registry (retention), the
    /// `agent` the framework names (the update's own agent id). An agent ignores an
    /// acknowledgement of an update it does not hold.
    pub fn acknowledge(
        &self,
        framework: &FrameworkId,
        task_id: &TaskId,
        uuid: String,
        agent: Option<AgentId>,
    ) -> Result<(), LeaderError> {
        self.require_subscribed(framework)?;
        let agent = self
            .read(|reg| reg.task(framework, task_id).map(|t| t.agent_id.clone()))
            .or(agent)
            .ok_or_else(|| LeaderError::invalid("task_id", format!("unknown task {task_id}")))?;
        self.to_agent(
            &agent,
            AgentCommand::Ack {
                framework_id: framework.clone(),
                task_id: task_id.clone(),
                uuid,
            },
        );
        Ok(())
    }

    /// Answers with the state of the named tasks, or of every live task if none is named.
    pub fn reconcile(&self, framework: &FrameworkId, tasks: &[TaskId]) -> Result<(), LeaderError> {
        self.require_subscribed(framework)?;
        let now = self.now_ms();
        let answers: Vec<TaskStatus> = self.read(|reg| {
            if tasks.is_empty() {
                reg.tasks()
                    .filter(|t| &t.framework_id == framework && !t.state.is_terminal())
                    .map(|t| TaskStatus::of(t).because(StatusReason::Reconciliation))
                    .collect()
            } else {
                tasks
                    .iter()
                    .map(|id| match reg.task(framework, id) {
                        Some(t) => TaskStatus::of(t).because(StatusReason::Reconciliation),
                        None => TaskStatus::lost(id, "unknown task", now),
                    })
                    .collect()
            }
        });
        for status in answers {
            self.to_framework(framework, FrameworkEvent::Update(status));
        }
        Ok(())
    }

    /// The agent named by an executor call: a valid, registered agent.
    fn executor_agent(&self, agent: &AgentId) -> Result<(), LeaderError> {
        if self.read(|reg| reg.agent(agent).is_none()) {
            return Err(LeaderError::invalid(
                "agent_id",
                format!("unknown agent {agent}"),
            ));
        }
        Ok(())
    }

    /// Data for one of the framework's executors.
    pub fn message(&self, message: FrameworkMessage) -> Result<(), LeaderError> {
        self.require_subscribed(&message.framework_id)?;
        self.executor_agent(&message.agent_id)?;
        let agent = message.agent_id.clone();
        self.to_agent(&agent, AgentCommand::FrameworkMessage(message));
        Ok(())
    }

    /// Shuts one of the framework's executors down.
    pub fn shutdown_executor(
        &self,
        framework: &FrameworkId,
        agent: &AgentId,
        executor_id: String,
    ) -> Result<(), LeaderError> {
        self.require_subscribed(framework)?;
        self.executor_agent(agent)?;
        self.to_agent(
            agent,
            AgentCommand::ShutdownExecutor {
                framework_id: framework.clone(),
                executor_id,
                grace_period_ms: 0,
            },
        );
        Ok(())
    }

    /// The framework leaves for good: its tasks are killed and it is removed.
    pub async fn teardown(&self, framework: &FrameworkId) -> Result<(), LeaderError> {
        self.require_subscribed(framework)?;
        self.remove_framework(framework, "framework torn down")
            .await
    }

    /// Kills a framework's live tasks and removes it (teardown, or failover timeout).
    pub(super) async fn remove_framework(
        &self,
        framework: &FrameworkId,
        why: &str,
    ) -> Result<(), LeaderError> {
        for (agent, kill) in self.read(|reg| kills_on_removal(reg, framework)) {
            self.to_agent(&agent, kill);
        }
        tracing::info!(framework = %framework, why, "removing framework");
        self.write(Command::RemoveFramework {
            id: framework.clone(),
            now_ms: self.now_ms(),
        })
        .await?;
        self.soft().forget(framework);
        self.shared
            .frameworks
            .end(framework, SessionEnd::FrameworkRemoved(why.to_string()));
        Ok(())
    }

    /// Tells a task's framework the state the registry now holds for it: for changes the
    /// master decides itself (agent unreachable, reconciliation), which no agent will
    /// re-send, so they carry no uuid to acknowledge.
    pub(super) fn announce(&self, framework: &FrameworkId, task: &TaskId, reason: StatusReason) {
        if let Some(status) = self.read(|reg| {
            reg.task(framework, task)
                .map(|t| TaskStatus::of(t).because(reason))
        }) {
            self.to_framework(framework, FrameworkEvent::Update(status));
        }
    }

    /// A status update the registry has recorded, forwarded to its framework. Returns
    /// whether the master must acknowledge it to the agent itself: yes when the framework
    /// is gone (nobody else will), no when the framework will (or will once it subscribes
    /// again).
    pub(super) fn forward_update(&self, update: &AgentUpdate, agent: &AgentId) -> bool {
        let framework = &update.framework_id;
        if self.read(|reg| reg.framework(framework).is_none()) {
            return true;
        }
        // The same update sent again at once (it carries news of a later terminal state
        // for the registry): the framework has it already and acknowledges that one.
        let now = self.now_ms();
        if !self
            .soft()
            .forward_update(framework, &update.task_id, &update.uuid, now)
        {
            tracing::debug!(framework = %framework, task = %update.task_id, uuid = %update.uuid, "update sent again at once; not passed on twice");
            self.metrics()
                .status_updates
                .with_label_values(&["resent"])
                .inc();
            return false;
        }
        self.to_framework(
            framework,
            FrameworkEvent::Update(TaskStatus {
                task_id: update.task_id.clone(),
                state: update.state,
                message: update.message.clone(),
                agent_id: Some(agent.clone()),
                uuid: Some(update.uuid.clone()),
                exit_code: update.exit_code,
                timestamp_ms: update.timestamp_ms,
                reason: None,
            }),
        );
        false
    }

    /// Executor data for its framework: best effort, as in Mesos (dropped if the framework
    /// is not subscribed).
    pub(super) fn executor_message(&self, message: FrameworkMessage) {
        let framework = message.framework_id.clone();
        self.to_framework(&framework, FrameworkEvent::Message(message));
    }

    /// Frameworks with a live subscription.
    pub(super) fn subscribed_frameworks(&self) -> BTreeSet<FrameworkId> {
        self.shared.frameworks.keys().into_iter().collect()
    }
}

#[cfg(test)]
mod tests;
