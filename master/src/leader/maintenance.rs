//! Operators' maintenance of agents: deactivate, reactivate, drain, mark gone.
//!
//! The decisions are registry commands (replicated, so a new leader sees them); what they
//! take afterwards is carried out here by whichever replica leads: [`run`] kills the live
//! tasks of agents whose drain deadline has passed (again every [`KILL_RETRY`] until they
//! end, an agent that was away gets them when it is back) and marks drained agents gone
//! when their drain asked for it. [`plan`] decides that from the registry alone. The same
//! loop ends every session within a tick of this replica no longer leading (a lost lease
//! included), so clients find the new leader at once.

use std::collections::BTreeMap;
use std::time::Duration;

use agora_registry::{AgentId, Command, DrainState, FrameworkId, Registry, TaskId, TaskState};

use super::messages::{AgentCommand, FrameworkEvent, SessionEnd, StatusReason};
use super::{Leader, LeaderError};

/// How often the leader looks at drains.
pub const TICK: Duration = Duration::from_millis(250);
/// How long before a kill of a draining agent's task is sent again.
pub const KILL_RETRY: Duration = Duration::from_secs(5);

/// An operator's maintenance of one agent (gRPC's Operator calls, Mesos' operator calls).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Maintenance {
    Drain { grace: Duration, mark_gone: bool },
    Deactivate,
    Reactivate,
    MarkGone,
}

/// What the drains of the registry ask for at `now_ms`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DrainPlan {
    /// Live tasks of agents past their drain deadline.
    pub kills: Vec<(AgentId, FrameworkId, TaskId)>,
    /// Drained agents whose drain marks them gone.
    pub gone: Vec<AgentId>,
}

/// The drain work due at `now_ms`.
pub fn plan(reg: &Registry, now_ms: u64) -> DrainPlan {
    let mut plan = DrainPlan::default();
    let mut due: Vec<&AgentId> = Vec::new();
    for a in reg.agents_with_drain() {
        let Some(d) = a.drain else { continue };
        match d.state {
            DrainState::Drained if d.mark_gone => plan.gone.push(a.info.id.clone()),
            DrainState::Draining if now_ms >= d.deadline_ms => due.push(&a.info.id),
            _ => {}
        }
    }
    if !due.is_empty() {
        plan.kills = reg
            .tasks()
            .filter(|t| !t.state.is_terminal() && due.contains(&&t.agent_id))
            .map(|t| (t.agent_id.clone(), t.framework_id.clone(), t.id.clone()))
            .collect();
    }
    plan
}

/// Runs on every replica; acts only while it leads.
pub(super) async fn run(leader: Leader) {
    let mut sent: BTreeMap<(FrameworkId, TaskId), u64> = BTreeMap::new();
    let mut was_leader = false;
    loop {
        tokio::time::sleep(TICK).await;
        let view = leader.view();
        if !view.is_leader {
            if was_leader {
                // Stepped down, or lost its lease (cut off from its majority): every
                // session ends now, so agents and frameworks find the leader sooner than
                // the slower loops would notice.
                tracing::info!(term = view.term, "no longer leading: ending every session");
                leader.agents_step_down(view.leader_address.clone());
                leader.frameworks_step_down(view.leader_address);
            }
            was_leader = false;
            sent.clear();
            continue;
        }
        was_leader = true;
        let now = leader.now_ms();
        let plan = leader.read(|reg| plan(reg, now));
        sent.retain(|k, _| plan.kills.iter().any(|(_, f, t)| (f, t) == (&k.0, &k.1)));
        for (agent, framework_id, task_id) in plan.kills {
            let key = (framework_id.clone(), task_id.clone());
            if sent
                .get(&key)
                .is_some_and(|at| now < at + KILL_RETRY.as_millis() as u64)
            {
                continue;
            }
            tracing::info!(agent = %agent, framework = %framework_id, task = %task_id, "drain deadline passed: killing the task");
            leader.to_agent(
                &agent,
                AgentCommand::Kill {
                    framework_id,
                    task_id,
                    grace_period_ms: 0,
                },
            );
            sent.insert(key, now);
        }
        for agent in plan.gone {
            tracing::info!(agent = %agent, "drained: marking it gone, as its drain asked");
            if let Err(e) = leader.mark_gone(&agent).await {
                tracing::warn!(agent = %agent, error = %e, "could not mark the drained agent gone");
            }
        }
    }
}

impl Leader {
    fn require_registered(&self, agent: &AgentId) -> Result<(), LeaderError> {
        self.read(|reg| {
            if reg.is_gone(agent) {
                Err(LeaderError::Precondition(format!(
                    "agent_id: agent {agent} was marked gone"
                )))
            } else if reg.agent(agent).is_none() {
                Err(LeaderError::invalid(
                    "agent_id",
                    format!("agent {agent} is not registered"),
                ))
            } else {
                Ok(())
            }
        })
    }

    /// Takes `agent` out of the pool: its offers are rescinded, it gets no more.
    pub async fn deactivate_agent(&self, agent: &AgentId) -> Result<u64, LeaderError> {
        self.require_leader()?;
        self.require_registered(agent)?;
        let offers = self.offers_on(agent);
        let index = self
            .write(Command::DeactivateAgent { id: agent.clone() })
            .await?;
        self.rescind(offers);
        tracing::info!(agent = %agent, "agent deactivated");
        Ok(index)
    }

    /// Puts `agent` back in the pool, ending its drain.
    pub async fn reactivate_agent(&self, agent: &AgentId) -> Result<u64, LeaderError> {
        self.require_leader()?;
        self.require_registered(agent)?;
        let index = self
            .write(Command::ReactivateAgent { id: agent.clone() })
            .await?;
        tracing::info!(agent = %agent, "agent reactivated");
        self.wake();
        Ok(index)
    }

    /// Drains `agent`: no offers; its tasks killed after `grace`; gone afterwards if
    /// `mark_gone`.
    pub async fn drain_agent(
        &self,
        agent: &AgentId,
        grace: Duration,
        mark_gone: bool,
    ) -> Result<u64, LeaderError> {
        self.require_leader()?;
        self.require_registered(agent)?;
        let offers = self.offers_on(agent);
        let now = self.now_ms();
        let grace_ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX);
        let index = self
            .write(Command::DrainAgent {
                id: agent.clone(),
                deadline_ms: now.saturating_add(grace_ms),
                mark_gone,
                now_ms: now,
            })
            .await?;
        self.rescind(offers);
        tracing::info!(agent = %agent, grace = ?grace, mark_gone, "agent draining");
        Ok(index)
    }

    /// Marks `agent` gone for good: its tasks' frameworks hear TASK_GONE_BY_OPERATOR, its
    /// session ends, and it can never register again.
    pub async fn mark_agent_gone(&self, agent: &AgentId) -> Result<u64, LeaderError> {
        self.require_leader()?;
        if self.read(|reg| reg.is_gone(agent)) {
            return Err(LeaderError::Precondition(format!(
                "agent_id: agent {agent} was marked gone already"
            )));
        }
        self.require_registered(agent)?;
        self.mark_gone(agent).await
    }

    async fn mark_gone(&self, agent: &AgentId) -> Result<u64, LeaderError> {
        let offers = self.offers_on(agent);
        let index = self
            .write(Command::MarkAgentGone {
                id: agent.clone(),
                now_ms: self.now_ms(),
            })
            .await?;
        self.rescind(offers);
        let affected: Vec<(FrameworkId, TaskId)> = self.read(|reg| {
            reg.tasks()
                .filter(|t| &t.agent_id == agent && t.state == TaskState::TaskGoneByOperator)
                .map(|t| (t.framework_id.clone(), t.id.clone()))
                .collect()
        });
        for (f, t) in affected {
            self.announce(&f, &t, StatusReason::AgentGone);
        }
        self.shared
            .frameworks
            .broadcast(&FrameworkEvent::Failure(agent.clone()));
        self.shared.agents.end(
            agent,
            SessionEnd::Rejected(agora_registry::Rejection::AgentGone(agent.clone())),
        );
        self.health().forget(agent);
        self.set_sandbox_key(agent, None);
        tracing::info!(agent = %agent, "agent marked gone");
        Ok(index)
    }

    fn offers_on(&self, agent: &AgentId) -> Vec<(FrameworkId, agora_registry::OfferId)> {
        self.read(|reg| {
            reg.offers()
                .filter(|o| &o.agent_id == agent)
                .map(|o| (o.framework_id.clone(), o.id.clone()))
                .collect()
        })
    }

    fn rescind(&self, offers: Vec<(FrameworkId, agora_registry::OfferId)>) {
        for (f, offer_id) in offers {
            self.to_framework(&f, FrameworkEvent::Rescind(offer_id));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_registry::{AgentInfo, Resources};

    fn aid(s: &str) -> AgentId {
        AgentId::new(s).unwrap()
    }

    fn registry_with_agents(ids: &[&str]) -> Registry {
        let mut reg = Registry::new();
        for id in ids {
            reg.apply(&Command::RegisterAgent {
                info: AgentInfo {
                    id: aid(id),
                    hostname: (*id).into(),
                    address: format!("{id}:5051"),
                    resources: Resources::parse("cpus:4;mem:1024").unwrap(),
                    attributes: vec![],
                    principal: None,
                    registration: None,
                },
                now_ms: 1,
            })
            .unwrap();
        }
        reg
    }

    #[test]
    fn idle_drained_agents_are_marked_gone_only_when_asked_and_nothing_is_killed_early() {
        let mut reg = registry_with_agents(&["a1", "a2", "a3"]);
        for (id, deadline, gone) in [("a1", 100, true), ("a2", 100, false)] {
            reg.apply(&Command::DrainAgent {
                id: aid(id),
                deadline_ms: deadline,
                mark_gone: gone,
                now_ms: 10,
            })
            .unwrap();
        }
        // No task on them: drained at once; only a1 asked to be gone.
        assert_eq!(
            plan(&reg, 50),
            DrainPlan {
                kills: vec![],
                gone: vec![aid("a1")]
            }
        );
        reg.apply(&Command::ReactivateAgent { id: aid("a1") })
            .unwrap();
        assert_eq!(plan(&reg, 500), DrainPlan::default());
    }

    #[test]
    fn live_tasks_are_killed_once_the_deadline_passes_then_the_agent_is_drained() {
        let (mut reg, f) = super::super::fixtures::registry_with_two_tasks();
        let a = aid("a");
        reg.apply(&Command::DrainAgent {
            id: a.clone(),
            deadline_ms: 100,
            mark_gone: true,
            now_ms: 10,
        })
        .unwrap();
        assert_eq!(
            reg.agent(&a).unwrap().drain.unwrap().state,
            DrainState::Draining
        );
        assert_eq!(plan(&reg, 99), DrainPlan::default());
        let live = TaskId::new("live").unwrap();
        assert_eq!(
            plan(&reg, 100),
            DrainPlan {
                kills: vec![(a.clone(), f.clone(), live.clone())],
                gone: vec![]
            }
        );
        // The kill ends it: drained, and (as asked) to be marked gone.
        reg.apply(&Command::UpdateTask {
            framework_id: f,
            task_id: live,
            state: TaskState::TaskKilled,
            message: None,
            exit_code: None,
            now_ms: 120,
        })
        .unwrap();
        assert_eq!(
            reg.agent(&a).unwrap().drain.unwrap().state,
            DrainState::Drained
        );
        assert_eq!(
            plan(&reg, 130),
            DrainPlan {
                kills: vec![],
                gone: vec![a]
            }
        );
    }
}
