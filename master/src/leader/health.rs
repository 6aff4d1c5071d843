//! Agent health, on the leader: it pings every connected agent each
//! `--agent-ping-timeout`; an active agent not heard from for `--agent-ping-timeout` x
//! `--max-agent-ping-timeouts` is marked unreachable in the registry (its live tasks become
//! TASK_UNREACHABLE, its resources leave the pool). A newly elected leader counts every
//! agent as heard from at the moment it became leader, so each gets a full timeout to find
//! the new leader.

use std::collections::BTreeMap;
use std::time::Duration;

use agora_registry::{AgentId, AgentStatus, Command, FrameworkId, Registry, TaskId, TaskState};

use super::messages::{AgentCommand, FrameworkEvent, SessionEnd, StatusReason};
use super::Leader;

/// What the leader knows of its agents' liveness (soft state: lost with the leadership).
#[derive(Debug, Default)]
pub struct AgentHealth {
    /// When this replica last became leader (None while it does not lead).
    leader_since: Option<u64>,
    last_seen: BTreeMap<AgentId, u64>,
    last_ping: Option<u64>,
    ping_seq: u64,
}

impl AgentHealth {
    /// This replica leads at `now` (the first call after an election starts the clock).
    pub fn leading(&mut self, now: u64) -> u64 {
        *self.leader_since.get_or_insert(now)
    }

    pub fn is_leading(&self) -> bool {
        self.leader_since.is_some()
    }

    /// The agent said something at `now`.
    pub fn seen(&mut self, agent: &AgentId, now: u64) {
        self.last_seen.insert(agent.clone(), now);
    }

    pub fn forget(&mut self, agent: &AgentId) {
        self.last_seen.remove(agent);
    }

    /// The next ping's sequence number if one is due at `now` (every `every_ms`).
    pub fn ping_due(&mut self, now: u64, every_ms: u64) -> Option<u64> {
        match self.last_ping {
            Some(last) if now.saturating_sub(last) < every_ms => None,
            _ => {
                self.last_ping = Some(now);
                self.ping_seq += 1;
                Some(self.ping_seq)
            }
        }
    }

    /// Active agents not heard from for more than `limit_ms` at `now`, counting from when
    /// this replica became leader for those it has not heard from since.
    pub fn overdue(&self, reg: &Registry, now: u64, limit_ms: u64) -> Vec<AgentId> {
        let since = self.leader_since.unwrap_or(now);
        reg.agents()
            .filter(|a| a.status == AgentStatus::Active)
            .filter(|a| {
                let seen = self
                    .last_seen
                    .get(&a.info.id)
                    .copied()
                    .unwrap_or(since)
                    .max(since);
                now.saturating_sub(seen) > limit_ms
            })
            .map(|a| a.info.id.clone())
            .collect()
    }
}

/// The health checks; runs on every replica and acts only while it leads.
pub(super) async fn run(leader: Leader) {
    let config = leader.config();
    let ping_every = config.agent_ping_timeout;
    let limit = ping_every * config.max_agent_ping_timeouts.max(1);
    let tick = (ping_every / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
    loop {
        tokio::time::sleep(tick).await;
        let view = leader.view();
        if !view.is_leader {
            if leader.health().is_leading() {
                // Stepped down: end every session so agents find the new leader.
                leader.agents_step_down(view.leader_address);
            }
            continue;
        }
        leader
            .check_health(
                ping_every.as_millis() as u64,
                limit.as_millis() as u64,
                view.term,
            )
            .await;
    }
}

impl Leader {
    /// One round of health checks at the clock's time: pings when due, and marks overdue
    /// agents unreachable.
    pub(super) async fn check_health(&self, ping_every_ms: u64, limit_ms: u64, term: u64) {
        let now = self.now_ms();
        let (ping, overdue) = {
            let mut health = self.health();
            health.leading(now);
            let ping = health.ping_due(now, ping_every_ms);
            let overdue = self.read(|reg| health.overdue(reg, now, limit_ms));
            (ping, overdue)
        };
        if let Some(seq) = ping {
            for (_, tx) in self.shared.agents.senders() {
                let _ = tx.try_send(Ok(AgentCommand::Ping { seq }));
            }
        }
        for id in overdue {
            tracing::warn!(agent = %id, term, "agent missed its health checks: marking it unreachable");
            self.mark_unreachable(&id).await;
        }
    }

    async fn mark_unreachable(&self, id: &AgentId) {
        let offers: Vec<(FrameworkId, agora_registry::OfferId)> = self.read(|reg| {
            reg.offers()
                .filter(|o| &o.agent_id == id)
                .map(|o| (o.framework_id.clone(), o.id.clone()))
                .collect()
        });
        let written = self
            .write(Command::MarkAgentUnreachable {
                id: id.clone(),
                now_ms: self.now_ms(),
            })
            .await;
        if let Err(e) = written {
            tracing::warn!(agent = %id, error = %e, "could not mark agent unreachable");
            return;
        }
        let affected: Vec<(FrameworkId, TaskId)> = self.read(|reg| {
            reg.tasks()
                .filter(|t| &t.agent_id == id && t.state == TaskState::TaskUnreachable)
                .map(|t| (t.framework_id.clone(), t.id.clone()))
                .collect()
        });
        for (f, offer_id) in offers {
            self.to_framework(&f, FrameworkEvent::Rescind(offer_id));
        }
        for (f, t) in affected {
            self.announce(&f, &t, StatusReason::AgentUnreachable);
        }
        // Every framework hears of the loss (as Mesos' slaveLost).
        self.shared
            .frameworks
            .broadcast(&FrameworkEvent::Failure(id.clone()));
        // End its session explicitly (its reader task holds another sender), so the
        // agent, if it is alive after all, registers again.
        self.shared.agents.end(id, SessionEnd::AgentUnreachable);
        self.health().forget(id);
    }

    /// This replica stopped leading: end every agent session so agents find the new
    /// leader, and forget their health.
    pub(super) fn agents_step_down(&self, leader: Option<String>) {
        self.shared
            .agents
            .end_all(|| SessionEnd::NotLeader(leader.clone()));
        *self.health() = AgentHealth::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_registry::{AgentInfo, Resources};

    fn registry_with_agents(ids: &[&str]) -> Registry {
        let mut reg = Registry::default();
        for id in ids {
            reg.apply(&Command::RegisterAgent {
                info: AgentInfo {
                    principal: None,
                    registration: None,
                    id: AgentId::new(*id).unwrap(),
                    hostname: "h".into(),
                    address: format!("{id}:1"),
                    resources: Resources::parse("cpus:1").unwrap(),
                    attributes: vec![],
                },
                now_ms: 0,
            })
            .unwrap();
        }
        reg
    }

    #[test]
    fn an_agent_silent_past_its_ping_budget_is_overdue() {
        let reg = registry_with_agents(&["a", "b"]);
        let mut h = AgentHealth::default();
        h.leading(10_000);
        h.seen(&AgentId::new("a").unwrap(), 12_000);
        // b was never heard from: it counts from the election (10 s).
        assert!(h.overdue(&reg, 15_000, 5_000).is_empty());
        assert_eq!(
            h.overdue(&reg, 15_001, 5_000),
            vec![AgentId::new("b").unwrap()]
        );
        assert_eq!(h.overdue(&reg, 17_001, 5_000).len(), 2);
        h.seen(&AgentId::new("a").unwrap(), 17_000);
        assert_eq!(
            h.overdue(&reg, 17_001, 5_000),
            vec![AgentId::new("b").unwrap()]
        );
    }

    #[test]
    fn an_unreachable_agent_is_not_overdue_again() {
        let mut reg = registry_with_agents(&["a"]);
        reg.apply(&Command::MarkAgentUnreachable {
            id: AgentId::new("a").unwrap(),
            now_ms: 1,
        })
        .unwrap();
        let mut h = AgentHealth::default();
        h.leading(0);
        assert!(h.overdue(&reg, 1_000_000, 5_000).is_empty());
    }

    #[test]
    fn pings_go_out_once_per_interval() {
        let mut h = AgentHealth::default();
        assert_eq!(h.ping_due(0, 1_000), Some(1));
        assert_eq!(h.ping_due(999, 1_000), None);
        assert_eq!(h.ping_due(1_000, 1_000), Some(2));
    }
}
