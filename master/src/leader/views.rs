//! What a caller may see of the registry (the `view_agents`, `view_frameworks` and
//! `view_tasks` ACLs), and the cluster's counts. The one place both the gRPC API
//! (`GetState`) and Mesos' operator API (`GET_STATE`, `/master/state`, `SUBSCRIBE`) read the
//! cluster through, so they filter alike.

use std::collections::BTreeMap;

use agora_acl::Action;
use agora_registry::{
    Agent, AgentStatus, CompletedFramework, Framework, FrameworkStatus, Offer, Registry, Resources,
    Task, TaskState,
};

use super::Leader;

/// The registry as one principal may see it, as of log index `applied`.
pub struct Visible<'a> {
    leader: &'a Leader,
    reg: &'a Registry,
    principal: Option<&'a str>,
    /// The last log entry applied to the registry read.
    pub applied: u64,
}

impl<'a> Visible<'a> {
    /// The whole registry (for allocations and lookups of what was already filtered).
    pub fn registry(&self) -> &'a Registry {
        self.reg
    }

    pub fn principal(&self) -> Option<&'a str> {
        self.principal
    }

    pub fn agents(&self) -> impl Iterator<Item = &'a Agent> + '_ {
        self.reg
            .agents()
            .filter(move |a| self.leader.may_see_agent(self.principal, a))
    }

    pub fn frameworks(&self) -> impl Iterator<Item = &'a Framework> + '_ {
        self.reg
            .frameworks()
            .filter(move |f| self.leader.may_see_framework(self.principal, f))
    }

    pub fn completed_frameworks(&self) -> impl Iterator<Item = &'a CompletedFramework> + '_ {
        self.reg
            .completed_frameworks()
            .filter(move |c| self.leader.may_see_framework(self.principal, &c.framework))
    }

    pub fn tasks(&self) -> impl Iterator<Item = &'a Task> + '_ {
        self.reg
            .tasks()
            .filter(move |t| self.leader.may_see_task(self.principal, t))
    }

    /// Outstanding offers to frameworks the principal may see.
    pub fn offers(&self) -> impl Iterator<Item = &'a Offer> + '_ {
        self.reg.offers().filter(move |o| {
            self.reg
                .framework(&o.framework_id)
                .is_some_and(|f| self.leader.may_see_framework(self.principal, f))
        })
    }
}

/// The cluster in numbers, from the leader's registry (Mesos' `/metrics/snapshot` and
/// `GET_METRICS`, Agora's `/metrics`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClusterCounts {
    pub agents_active: u64,
    pub agents_unreachable: u64,
    /// Agents with a live session to this replica.
    pub agents_connected: u64,
    pub frameworks_active: u64,
    pub frameworks_disconnected: u64,
    pub frameworks_completed: u64,
    /// Tasks the registry holds, by state (finished ones as far as retention keeps them).
    pub tasks: BTreeMap<TaskState, u64>,
    pub outstanding_offers: u64,
    /// Resources of active agents, in use by live tasks, and offered.
    pub total: Resources,
    pub used: Resources,
    pub offered: Resources,
}

impl ClusterCounts {
    pub fn tasks_in(&self, state: TaskState) -> u64 {
        self.tasks.get(&state).copied().unwrap_or(0)
    }

    pub fn live_tasks(&self) -> u64 {
        self.tasks
            .iter()
            .filter(|(s, _)| !s.is_terminal())
            .map(|(_, n)| n)
            .sum()
    }

    pub fn tasks_kept(&self) -> u64 {
        self.tasks.values().sum()
    }
}

impl Leader {
    /// The `view_agents` ACL.
    pub fn may_see_agent(&self, principal: Option<&str>, a: &Agent) -> bool {
        self.may_view(
            principal,
            &Action::ViewAgent {
                agent: a.info.id.as_str(),
            },
        )
    }

    /// The `view_frameworks` ACL.
    pub fn may_see_framework(&self, principal: Option<&str>, f: &Framework) -> bool {
        self.may_view(principal, &Action::ViewFramework { user: &f.info.user })
    }

    /// The `view_tasks` ACL.
    pub fn may_see_task(&self, principal: Option<&str>, t: &Task) -> bool {
        self.may_view(principal, &Action::ViewTask { user: &t.user })
    }

    /// Runs `f` on what `principal` may see of the registry as applied on this replica.
    /// Callers check [`Leader::require_leader`] first where only the leader may answer.
    pub fn read_visible<T>(&self, principal: Option<&str>, f: impl FnOnce(&Visible<'_>) -> T) -> T {
        self.shared.registry.read_applied(|reg, applied| {
            f(&Visible {
                leader: self,
                reg,
                principal,
                applied,
            })
        })
    }

    /// The cluster in numbers, as this replica's registry has it. One walk of the tasks:
    /// callers run it off the runtime.
    pub fn counts(&self) -> ClusterCounts {
        let mut c = ClusterCounts {
            agents_connected: self.connected_agents() as u64,
            ..Default::default()
        };
        self.read(|reg| {
            for a in reg.agents() {
                match a.status {
                    AgentStatus::Active => {
                        c.agents_active += 1;
                        c.total.add(&a.info.resources);
                        let alloc = reg.agent_allocation(&a.info.id);
                        c.used.add(&alloc.used);
                        c.offered.add(&alloc.offered);
                    }
                    AgentStatus::Unreachable { .. } => c.agents_unreachable += 1,
                }
            }
            for f in reg.frameworks() {
                match f.status {
                    FrameworkStatus::Active => c.frameworks_active += 1,
                    FrameworkStatus::Disconnected { .. } => c.frameworks_disconnected += 1,
                }
            }
            c.frameworks_completed = reg.completed_frameworks().count() as u64;
            for t in reg.tasks() {
                *c.tasks.entry(t.state).or_default() += 1;
            }
            c.outstanding_offers = reg.offers().count() as u64;
        });
        c
    }

    /// When this process started, when it last became leader (0 if it does not lead), and
    /// now, in ms since the epoch.
    pub fn times_ms(&self) -> (u64, u64, u64) {
        (
            self.shared.started_ms,
            self.shared
                .leading_since
                .load(std::sync::atomic::Ordering::Relaxed),
            self.now_ms(),
        )
    }
}
