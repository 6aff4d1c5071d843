//! The registry state and its pure, deterministic `apply`.
//!
//! `apply` validates a whole command before it changes anything, so a rejected command
//! leaves the registry exactly as it was, on every replica alike.
//!
//! Finished history is bounded by the replicated [`Retention`]: a framework keeps at most
//! `max_completed_tasks_per_framework` terminal tasks (the oldest by `(updated_at_ms, task
//! id)` go first), and at most `max_completed_frameworks` removed frameworks are kept (the
//! oldest by `(removed_at_ms, framework id)` go first, with all their tasks). Eviction
//! happens inside the command that crosses a bound, reads only the registry's data, and
//! walks ordered indexes, so it costs O(log n) per entry and every replica evicts the same
//! entries. Loading a snapshot enforces the same rules, which is a no-op for any snapshot
//! this version wrote (see [`Registry`]'s `From<RegistryData>`).

use crate::command::{offered_total, Command, CommandBatch, CommandResult, Rejection};
use crate::ids::{AgentId, FrameworkId, OfferId, TaskId};
use crate::model::{
    Agent, AgentInfo, AgentStatus, CompletedFramework, Drain, DrainState, Framework, FrameworkInfo,
    FrameworkStatus, Offer, Retention, Task, TaskSpec, TaskState, TimestampMs,
};
use crate::resources::{validate_framework_role, Resources};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Resources held on an agent or by a framework: used by live tasks, and offered.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Allocation {
    pub used: Resources,
    pub offered: Resources,
}

/// The replicated registry. Two registries are equal when their data is; the allocation
/// indexes are derived from it (and [`Registry::check_invariants`] proves they match).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(from = "RegistryData", into = "RegistryData")]
pub struct Registry {
    data: RegistryData,
    /// Derived from `data.tasks` and `data.offers`; never serialized, rebuilt on load.
    agent_alloc: BTreeMap<AgentId, Allocation>,
    /// Per framework, per agent: ranges (ports) are only disjoint on one agent, so a
    /// framework's allocation is kept apart by agent (one agent's offer withdrawn must not
    /// take away the same ports offered on another) and summed when queried.
    framework_alloc: FrameworkAlloc,
    /// Used plus offered, per framework per agent: what the allocator needs for DRF
    /// without walking every task (finished ones included) each cycle.
    holdings: Holdings,
    /// Derived from `data.tasks`: each framework's terminal tasks, oldest first (frameworks
    /// with none are absent). Eviction pops from the front.
    completed_tasks: CompletedTasks,
    /// Derived from `data.completed_frameworks`: oldest first.
    completed_order: BTreeSet<(TimestampMs, FrameworkId)>,
    /// Derived from `data.agents`: the agents with a drain (draining or drained), so the
    /// leader's drain work looks at them, not at every agent, each tick.
    drains: BTreeSet<AgentId>,
}

type Holdings = BTreeMap<FrameworkId, BTreeMap<AgentId, Resources>>;
type FrameworkAlloc = BTreeMap<FrameworkId, BTreeMap<AgentId, Allocation>>;
type CompletedTasks = BTreeMap<FrameworkId, BTreeSet<(TimestampMs, TaskId)>>;

/// What a snapshot holds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct RegistryData {
    agents: BTreeMap<AgentId, Agent>,
    frameworks: BTreeMap<FrameworkId, Framework>,
    tasks: BTreeMap<FrameworkId, BTreeMap<TaskId, Task>>,
    offers: BTreeMap<OfferId, Offer>,
    weights: BTreeMap<String, f64>,
    /// Removed frameworks still on record. Absent from snapshots written before retention.
    #[serde(default)]
    completed_frameworks: BTreeMap<FrameworkId, CompletedFramework>,
    /// Absent from snapshots written before retention: the defaults then.
    #[serde(default)]
    retention: Retention,
    /// Agents marked gone, and when: their ids can never register again.
    #[serde(default)]
    gone_agents: BTreeMap<AgentId, TimestampMs>,
}

impl PartialEq for Registry {
    fn eq(&self, other: &Self) -> bool {
        self.data == other.data
    }
}

impl From<RegistryData> for Registry {
    /// Rebuilds the derived indexes, then enforces the retention rules. For data this
    /// version wrote (which already satisfies them) that changes nothing, so a snapshot
    /// loads as exactly the registry it was taken from. A snapshot written before retention
    /// existed is brought under it: terminal tasks beyond the bound are evicted oldest first
    /// (the ones the rule keeps evicting as the log is replayed), and tasks of frameworks
    /// removed back then, which used to stay forever with no record of their framework, are
    /// dropped (a replica that replays that old history instead keeps them under a completed
    /// framework until that one is evicted).
    fn from(mut data: RegistryData) -> Self {
        let (registered, completed) = (&data.frameworks, &data.completed_frameworks);
        data.tasks
            .retain(|f, _| registered.contains_key(f) || completed.contains_key(f));
        data.tasks.retain(|_, m| !m.is_empty());
        let mut reg = Registry {
            data,
            ..Default::default()
        };
        reg.rebuild_allocations();
        reg.enforce_retention();
        reg
    }
}

impl From<Registry> for RegistryData {
    fn from(reg: Registry) -> Self {
        reg.data
    }
}

fn nonempty<K: Clone + Ord>(m: &BTreeMap<K, Allocation>) -> Vec<(K, Allocation)> {
    m.iter()
        .filter(|(_, a)| !a.is_empty())
        .map(|(k, a)| (k.clone(), a.clone()))
        .collect()
}

fn nonempty_by_agent(m: &FrameworkAlloc) -> Vec<(FrameworkId, Vec<(AgentId, Allocation)>)> {
    m.iter()
        .map(|(f, by_agent)| (f.clone(), nonempty(by_agent)))
        .filter(|(_, by_agent)| !by_agent.is_empty())
        .collect()
}

impl Allocation {
    fn is_empty(&self) -> bool {
        self.used.is_empty() && self.offered.is_empty()
    }
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    // ----- queries -----

    pub fn agents(&self) -> impl Iterator<Item = &Agent> {
        self.data.agents.values()
    }

    pub fn agent(&self, id: &AgentId) -> Option<&Agent> {
        self.data.agents.get(id)
    }

    /// Agents marked gone, with when.
    pub fn gone_agents(&self) -> impl Iterator<Item = (&AgentId, &TimestampMs)> {
        self.data.gone_agents.iter()
    }

    /// Whether `id` was marked gone.
    pub fn is_gone(&self, id: &AgentId) -> bool {
        self.data.gone_agents.contains_key(id)
    }

    /// How many of an agent's tasks are live (not terminal).
    pub fn live_tasks_on(&self, id: &AgentId) -> usize {
        self.tasks()
            .filter(|t| &t.agent_id == id && !t.state.is_terminal())
            .count()
    }

    /// Registered frameworks (not the completed ones).
    pub fn frameworks(&self) -> impl Iterator<Item = &Framework> {
        self.data.frameworks.values()
    }

    /// A registered framework (None for a completed one).
    pub fn framework(&self, id: &FrameworkId) -> Option<&Framework> {
        self.data.frameworks.get(id)
    }

    /// Removed frameworks still on record, by id.
    pub fn completed_frameworks(&self) -> impl Iterator<Item = &CompletedFramework> {
        self.data.completed_frameworks.values()
    }

    /// A removed framework still on record.
    pub fn completed_framework(&self, id: &FrameworkId) -> Option<&CompletedFramework> {
        self.data.completed_frameworks.get(id)
    }

    /// How much finished history the registry keeps.
    pub fn retention(&self) -> Retention {
        self.data.retention
    }

    /// Every task on record: live ones, and the terminal ones retention keeps, of
    /// registered and completed frameworks alike.
    pub fn tasks(&self) -> impl Iterator<Item = &Task> {
        self.data.tasks.values().flat_map(|m| m.values())
    }

    pub fn task(&self, framework: &FrameworkId, task: &TaskId) -> Option<&Task> {
        self.data.tasks.get(framework)?.get(task)
    }

    /// Whether this launch was applied already: none of its offers is outstanding and each
    /// of its tasks exists for the framework as specified (name, resources, launch, user).
    /// A driver retrying an accept whose reply was lost (the leader died or was cut off
    /// mid-call) gets a refusal from the registry, for a used offer or because the
    /// framework was marked disconnected meanwhile; this tells such a retry from a new
    /// launch that reuses task ids.
    pub fn launch_applied(
        &self,
        framework_id: &FrameworkId,
        offer_ids: &[OfferId],
        tasks: &[TaskSpec],
    ) -> bool {
        !tasks.is_empty()
            && offer_ids
                .iter()
                .all(|id| !self.data.offers.contains_key(id))
            && tasks.iter().all(|spec| {
                self.task(framework_id, &spec.id).is_some_and(|t| {
                    t.name == spec.name
                        && t.resources == spec.resources
                        && t.launch == spec.launch
                        && t.user == spec.user
                })
            })
    }

    pub fn offers(&self) -> impl Iterator<Item = &Offer> {
        self.data.offers.values()
    }

    pub fn offer(&self, id: &OfferId) -> Option<&Offer> {
        self.data.offers.get(id)
    }

    pub fn weights(&self) -> &BTreeMap<String, f64> {
        &self.data.weights
    }

    /// A role's weight (1 unless set).
    pub fn weight(&self, role: &str) -> f64 {
        self.data.weights.get(role).copied().unwrap_or(1.0)
    }

    /// Used and offered resources on an agent.
    pub fn agent_allocation(&self, id: &AgentId) -> Allocation {
        self.agent_alloc.get(id).cloned().unwrap_or_default()
    }

    /// What a framework holds (live tasks and outstanding offers) on each agent.
    pub fn framework_holdings(&self, id: &FrameworkId) -> BTreeMap<AgentId, Resources> {
        let mut held = self.holdings.get(id).cloned().unwrap_or_default();
        held.retain(|_, r| !r.is_empty());
        held
    }

    /// Used and offered resources of a framework, summed over its agents. Ranges held on
    /// different agents are united (the same port on two agents counts once): one
    /// allocation can only show a set.
    pub fn framework_allocation(&self, id: &FrameworkId) -> Allocation {
        let mut total = Allocation::default();
        for a in self
            .framework_alloc
            .get(id)
            .into_iter()
            .flat_map(|m| m.values())
        {
            total.used.add(&a.used);
            total.offered.add(&a.offered);
        }
        total
    }

    /// What an agent has neither used nor offered (empty for an unknown agent).
    pub fn agent_free(&self, id: &AgentId) -> Resources {
        let Some(agent) = self.data.agents.get(id) else {
            return Resources::new();
        };
        let alloc = self.agent_alloc.get(id);
        let mut free = agent.info.resources.clone();
        if let Some(a) = alloc {
            free = free.saturating_sub(&a.used).saturating_sub(&a.offered);
        }
        free
    }

    // ----- apply -----

    /// Applies a log entry's commands in order; one result per command.
    pub fn apply_batch(&mut self, batch: &CommandBatch) -> Vec<CommandResult> {
        batch.commands.iter().map(|c| self.apply(c)).collect()
    }

    /// Applies one command. On `Err` nothing changed.
    pub fn apply(&mut self, command: &Command) -> CommandResult {
        let result = self.apply_command(command);
        // The commands that can start, end or remove an agent's drain.
        let subject = match command {
            Command::RegisterAgent { info, .. } => Some(&info.id),
            Command::RemoveAgent { id, .. }
            | Command::ReactivateAgent { id }
            | Command::DrainAgent { id, .. }
            | Command::MarkAgentGone { id, .. } => Some(id),
            _ => None,
        };
        if let Some(id) = subject {
            match self.data.agents.get(id) {
                Some(a) if a.drain.is_some() => {
                    self.drains.insert(id.clone());
                }
                _ => {
                    self.drains.remove(id);
                }
            }
        }
        result
    }

    fn apply_command(&mut self, command: &Command) -> CommandResult {
        match command {
            Command::RegisterAgent { info, now_ms } => self.register_agent(info, *now_ms),
            Command::MarkAgentUnreachable { id, now_ms } => {
                self.require_agent(id)?;
                self.data.agents.get_mut(id).expect("checked").status =
                    AgentStatus::Unreachable { since_ms: *now_ms };
                self.drop_agent_offers(id);
                self.set_live_tasks_on_agent(
                    id,
                    TaskState::TaskUnreachable,
                    "agent unreachable",
                    *now_ms,
                );
                Ok(())
            }
            Command::RemoveAgent { id, now_ms } => {
                self.require_agent(id)?;
                self.drop_agent_offers(id);
                self.set_live_tasks_on_agent(id, TaskState::TaskGone, "agent removed", *now_ms);
                self.data.agents.remove(id);
                self.agent_alloc.remove(id);
                Ok(())
            }
            Command::DeactivateAgent { id } => {
                self.require_agent(id)?;
                self.data.agents.get_mut(id).expect("checked").deactivated = true;
                self.drop_agent_offers(id);
                Ok(())
            }
            Command::ReactivateAgent { id } => {
                self.require_agent(id)?;
                let agent = self.data.agents.get_mut(id).expect("checked");
                agent.deactivated = false;
                agent.drain = None;
                Ok(())
            }
            Command::DrainAgent {
                id,
                deadline_ms,
                mark_gone,
                now_ms,
            } => {
                self.require_agent(id)?;
                let idle = self.agent_alloc.get(id).is_none_or(|a| a.used.is_empty());
                let agent = self.data.agents.get_mut(id).expect("checked");
                let started_ms = agent.drain.map_or(*now_ms, |d| d.started_ms);
                agent.deactivated = true;
                agent.drain = Some(Drain {
                    started_ms,
                    deadline_ms: *deadline_ms,
                    mark_gone: *mark_gone,
                    state: if idle {
                        DrainState::Drained
                    } else {
                        DrainState::Draining
                    },
                });
                self.drop_agent_offers(id);
                Ok(())
            }
            Command::MarkAgentGone { id, now_ms } => {
                if self.is_gone(id) {
                    return Ok(());
                }
                self.require_agent(id)?;
                self.drop_agent_offers(id);
                self.set_live_tasks_on_agent(
                    id,
                    TaskState::TaskGoneByOperator,
                    "agent marked gone by an operator",
                    *now_ms,
                );
                self.data.agents.remove(id);
                self.agent_alloc.remove(id);
                self.data.gone_agents.insert(id.clone(), *now_ms);
                Ok(())
            }
            Command::RegisterFramework { info, now_ms } => self.register_framework(info, *now_ms),
            Command::DisconnectFramework { id, now_ms } => {
                self.require_framework(id)?;
                self.data.frameworks.get_mut(id).expect("checked").status =
                    FrameworkStatus::Disconnected { since_ms: *now_ms };
                self.drop_framework_offers(id);
                Ok(())
            }
            Command::RemoveFramework { id, now_ms } => {
                self.require_framework(id)?;
                self.drop_framework_offers(id);
                let live: Vec<TaskId> = self
                    .data
                    .tasks
                    .get(id)
                    .into_iter()
                    .flat_map(|m| m.values())
                    .filter(|t| !t.state.is_terminal())
                    .map(|t| t.id.clone())
                    .collect();
                for task in live {
                    self.set_task_state(
                        id,
                        &task,
                        TaskState::TaskKilled,
                        Some("framework removed".into()),
                        None,
                        *now_ms,
                    );
                }
                self.framework_alloc.remove(id);
                self.holdings.remove(id);
                if let Some(framework) = self.data.frameworks.remove(id) {
                    self.data.completed_frameworks.insert(
                        id.clone(),
                        CompletedFramework {
                            framework,
                            removed_at_ms: *now_ms,
                        },
                    );
                    self.completed_order.insert((*now_ms, id.clone()));
                }
                self.enforce_framework_bound();
                Ok(())
            }
            Command::AddOffers { offers } => self.add_offers(offers),
            Command::RemoveOffers { ids } => {
                for id in ids {
                    self.remove_offer(id);
                }
                Ok(())
            }
            Command::LaunchTasks {
                framework_id,
                offer_ids,
                tasks,
                now_ms,
            } => self.launch_tasks(framework_id, offer_ids, tasks, *now_ms),
            Command::UpdateTask {
                framework_id,
                task_id,
                state,
                message,
                exit_code,
                now_ms,
            } => {
                if *state == TaskState::TaskUnknown {
                    return Err(Rejection::NotATaskState(*state));
                }
                let task = self
                    .task(framework_id, task_id)
                    .ok_or_else(|| Rejection::UnknownTask(task_id.clone()))?;
                if task.state.is_terminal() {
                    // A retried delivery of the same terminal update is acknowledged again;
                    // the first to carry a message or exit code completes the record (a
                    // terminal state learnt early, as an update's latest state, has none).
                    // `updated_at_ms` stays, so the task keeps its place in the eviction
                    // order.
                    if task.state == *state {
                        let (fill_message, fill_code) = (
                            task.message.is_none() && message.is_some(),
                            task.exit_code.is_none() && exit_code.is_some(),
                        );
                        if fill_message || fill_code {
                            let t = self
                                .data
                                .tasks
                                .get_mut(framework_id)
                                .and_then(|m| m.get_mut(task_id))
                                .expect("checked");
                            if fill_message {
                                t.message = message.clone();
                            }
                            if fill_code {
                                t.exit_code = *exit_code;
                            }
                        }
                        return Ok(());
                    }
                    return Err(Rejection::TaskAlreadyTerminal {
                        task: task_id.clone(),
                        state: task.state,
                    });
                }
                self.set_task_state(
                    framework_id,
                    task_id,
                    *state,
                    message.clone(),
                    *exit_code,
                    *now_ms,
                );
                Ok(())
            }
            Command::SetWeight { role, weight } => {
                check_weight(role, *weight)?;
                self.data.weights.insert(role.clone(), *weight);
                Ok(())
            }
            Command::SetWeights { weights } => {
                for (role, weight) in weights {
                    check_weight(role, *weight)?;
                }
                for (role, weight) in weights {
                    self.data.weights.insert(role.clone(), *weight);
                }
                Ok(())
            }
            Command::SetRetention { retention } => {
                retention.validate()?;
                self.data.retention = *retention;
                self.enforce_retention();
                Ok(())
            }
        }
    }

    fn require_agent(&self, id: &AgentId) -> Result<&Agent, Rejection> {
        self.data
            .agents
            .get(id)
            .ok_or_else(|| Rejection::UnknownAgent(id.clone()))
    }

    fn require_framework(&self, id: &FrameworkId) -> Result<&Framework, Rejection> {
        self.data
            .frameworks
            .get(id)
            .ok_or_else(|| Rejection::UnknownFramework(id.clone()))
    }

    fn register_agent(&mut self, info: &AgentInfo, now_ms: TimestampMs) -> CommandResult {
        if self.is_gone(&info.id) {
            return Err(Rejection::AgentGone(info.id.clone()));
        }
        let mut info = info.clone();
        if let Some(existing) = self.data.agents.get(&info.id) {
            info.principal = bound_principal(
                &format!("agent {}", info.id),
                existing.info.principal.as_deref(),
                info.principal.take(),
            )?;
            if existing.info.address != info.address {
                return Err(Rejection::AgentAddressMismatch {
                    id: info.id.clone(),
                    registered: existing.info.address.clone(),
                    claimed: info.address.clone(),
                });
            }
            match (existing.info.registration, info.registration) {
                (Some(last), Some(got)) if got < last => {
                    return Err(Rejection::StaleRegistration {
                        id: info.id.clone(),
                        last: last.to_string(),
                        got: got.to_string(),
                    });
                }
                (last, None) => info.registration = last,
                _ => {}
            }
            let resources_changed = existing.info.resources != info.resources;
            let registered_at_ms = existing.registered_at_ms;
            // An operator's decisions outlast the agent's restarts.
            let (deactivated, drain) = (existing.deactivated, existing.drain);
            if resources_changed {
                // Live tasks keep running on the agent: what they use must still be there.
                // Offers are all withdrawn (they were made of the old resources); the
                // allocator offers what is free again.
                let used = self.agent_allocation(&info.id).used;
                if !info.resources.contains(&used) {
                    return Err(Rejection::AgentResourcesBelowUsed {
                        id: info.id.clone(),
                        used: used.to_string(),
                        offered: info.resources.to_string(),
                    });
                }
                self.drop_agent_offers(&info.id);
            }
            self.data.agents.insert(
                info.id.clone(),
                Agent {
                    info: info.clone(),
                    status: AgentStatus::Active,
                    registered_at_ms,
                    deactivated,
                    drain,
                },
            );
        } else {
            self.data.agents.insert(
                info.id.clone(),
                Agent {
                    info: info.clone(),
                    status: AgentStatus::Active,
                    registered_at_ms: now_ms,
                    deactivated: false,
                    drain: None,
                },
            );
        }
        Ok(())
    }

    fn register_framework(&mut self, info: &FrameworkInfo, now_ms: TimestampMs) -> CommandResult {
        validate_framework_role(&info.role).map_err(|e| Rejection::BadRole(e.to_string()))?;
        if self.data.completed_frameworks.contains_key(&info.id) {
            return Err(Rejection::FrameworkCompleted(info.id.clone()));
        }
        let mut info = info.clone();
        if let Some(existing) = self.data.frameworks.get(&info.id) {
            info.principal = bound_principal(
                &format!("framework {}", info.id),
                existing.info.principal.as_deref(),
                info.principal.take(),
            )?;
        }
        let registered_at_ms = match self.data.frameworks.get(&info.id) {
            Some(existing) if existing.info.role != info.role => {
                return Err(Rejection::FrameworkRoleMismatch {
                    id: info.id.clone(),
                    registered: existing.info.role.clone(),
                    claimed: info.role.clone(),
                })
            }
            Some(existing) => existing.registered_at_ms,
            None => now_ms,
        };
        self.data.frameworks.insert(
            info.id.clone(),
            Framework {
                info: info.clone(),
                status: FrameworkStatus::Active,
                registered_at_ms,
            },
        );
        Ok(())
    }

    fn add_offers(&mut self, offers: &[Offer]) -> CommandResult {
        // Validate the whole batch against what each agent has free, counting the batch's
        // own earlier offers, before inserting any.
        let mut batch_free: BTreeMap<&AgentId, Resources> = BTreeMap::new();
        let mut batch_ids: BTreeSet<&OfferId> = BTreeSet::new();
        for offer in offers {
            if self.data.offers.contains_key(&offer.id) || !batch_ids.insert(&offer.id) {
                return Err(Rejection::DuplicateOffer(offer.id.clone()));
            }
            if offer.resources.is_empty() {
                return Err(Rejection::EmptyOffer(offer.id.clone()));
            }
            let framework = self.require_framework(&offer.framework_id)?;
            if framework.status != FrameworkStatus::Active {
                return Err(Rejection::FrameworkNotActive(offer.framework_id.clone()));
            }
            let agent = self.require_agent(&offer.agent_id)?;
            if !agent.in_pool() {
                return Err(Rejection::AgentNotActive(offer.agent_id.clone()));
            }
            let role = &framework.info.role;
            if !agent
                .info
                .resources
                .allocatable_to(role)
                .contains(&offer.resources)
            {
                return Err(Rejection::OfferWrongRole {
                    offer: offer.id.clone(),
                    role: role.clone(),
                });
            }
            let free = batch_free
                .entry(&offer.agent_id)
                .or_insert_with(|| self.agent_free(&offer.agent_id));
            match free.checked_sub(&offer.resources) {
                Some(rest) => *free = rest,
                None => {
                    return Err(Rejection::OfferExceedsAgent {
                        offer: offer.id.clone(),
                        agent: offer.agent_id.clone(),
                        resources: offer.resources.to_string(),
                    })
                }
            }
        }
        for offer in offers {
            self.agent_alloc
                .entry(offer.agent_id.clone())
                .or_default()
                .offered
                .add(&offer.resources);
            self.framework_alloc
                .entry(offer.framework_id.clone())
                .or_default()
                .entry(offer.agent_id.clone())
                .or_default()
                .offered
                .add(&offer.resources);
            self.hold(&offer.framework_id, &offer.agent_id, &offer.resources);
            self.data.offers.insert(offer.id.clone(), offer.clone());
        }
        Ok(())
    }

    fn launch_tasks(
        &mut self,
        framework_id: &FrameworkId,
        offer_ids: &[OfferId],
        tasks: &[TaskSpec],
        now_ms: TimestampMs,
    ) -> CommandResult {
        let framework = self.require_framework(framework_id)?;
        if framework.status != FrameworkStatus::Active {
            return Err(Rejection::FrameworkNotActive(framework_id.clone()));
        }
        let first = offer_ids.first().ok_or(Rejection::NoOffers)?;
        let mut offers = Vec::with_capacity(offer_ids.len());
        let mut seen = BTreeSet::new();
        for id in offer_ids {
            let offer = self
                .data
                .offers
                .get(id)
                .ok_or_else(|| Rejection::UnknownOffer(id.clone()))?;
            if !seen.insert(id) {
                return Err(Rejection::UnknownOffer(id.clone()));
            }
            if &offer.framework_id != framework_id {
                return Err(Rejection::OfferNotOwned {
                    offer: id.clone(),
                    owner: offer.framework_id.clone(),
                });
            }
            if offer.agent_id != self.data.offers[first].agent_id {
                return Err(Rejection::OffersOnDifferentAgents(
                    first.clone(),
                    id.clone(),
                ));
            }
            offers.push(offer);
        }
        let agent_id = offers[0].agent_id.clone();
        let existing = self.data.tasks.get(framework_id);
        let mut new_ids = BTreeSet::new();
        let mut needed = Resources::new();
        for (i, t) in tasks.iter().enumerate() {
            if existing.is_some_and(|m| m.contains_key(&t.id)) || !new_ids.insert(&t.id) {
                return Err(Rejection::DuplicateTask(t.id.clone()));
            }
            if t.resources.is_empty() {
                return Err(Rejection::TaskWithoutResources(t.id.clone()));
            }
            // Ranges add as a set union: two tasks needing the same port would count it
            // once, and both would hold it.
            let shared = needed.shared_ranges(&t.resources);
            if !shared.is_empty() {
                let other = tasks[..i]
                    .iter()
                    .find(|o| !o.resources.shared_ranges(&t.resources).is_empty())
                    .expect("an earlier task of the launch holds the shared ranges");
                return Err(Rejection::TasksShareRanges {
                    first: other.id.clone(),
                    second: t.id.clone(),
                    shared: shared.to_string(),
                });
            }
            needed.add(&t.resources);
        }
        let offered = offered_total(offers.iter().copied());
        if !offered.contains(&needed) {
            return Err(Rejection::TasksExceedOffers {
                needed: needed.to_string(),
                offered: offered.to_string(),
            });
        }
        for id in offer_ids {
            self.remove_offer(id);
        }
        for t in tasks {
            let task = Task {
                id: t.id.clone(),
                framework_id: framework_id.clone(),
                agent_id: agent_id.clone(),
                name: t.name.clone(),
                resources: t.resources.clone(),
                state: TaskState::TaskStaging,
                message: None,
                exit_code: None,
                updated_at_ms: now_ms,
                launch: t.launch.clone(),
                user: t.user.clone(),
                unreachable_from: None,
            };
            self.add_used(&task);
            self.data
                .tasks
                .entry(framework_id.clone())
                .or_default()
                .insert(t.id.clone(), task);
        }
        Ok(())
    }

    fn remove_offer(&mut self, id: &OfferId) {
        if let Some(offer) = self.data.offers.remove(id) {
            if let Some(a) = self.agent_alloc.get_mut(&offer.agent_id) {
                a.offered = a.offered.saturating_sub(&offer.resources);
            }
            self.framework_alloc_sub(&offer.framework_id, &offer.agent_id, |a| {
                a.offered = a.offered.saturating_sub(&offer.resources);
            });
            self.release(&offer.framework_id, &offer.agent_id, &offer.resources);
        }
    }

    fn hold(&mut self, framework: &FrameworkId, agent: &AgentId, resources: &Resources) {
        self.holdings
            .entry(framework.clone())
            .or_default()
            .entry(agent.clone())
            .or_default()
            .add(resources);
    }

    fn release(&mut self, framework: &FrameworkId, agent: &AgentId, resources: &Resources) {
        if let Some(by_agent) = self.holdings.get_mut(framework) {
            if let Some(r) = by_agent.get_mut(agent) {
                *r = r.saturating_sub(resources);
                if r.is_empty() {
                    by_agent.remove(agent);
                }
            }
            if by_agent.is_empty() {
                self.holdings.remove(framework);
            }
        }
    }

    fn drop_agent_offers(&mut self, agent: &AgentId) {
        let ids: Vec<OfferId> = self
            .data
            .offers
            .values()
            .filter(|o| &o.agent_id == agent)
            .map(|o| o.id.clone())
            .collect();
        for id in ids {
            self.remove_offer(&id);
        }
    }

    fn drop_framework_offers(&mut self, framework: &FrameworkId) {
        let ids: Vec<OfferId> = self
            .data
            .offers
            .values()
            .filter(|o| &o.framework_id == framework)
            .map(|o| o.id.clone())
            .collect();
        for id in ids {
            self.remove_offer(&id);
        }
    }

    fn set_live_tasks_on_agent(
        &mut self,
        agent: &AgentId,
        state: TaskState,
        message: &str,
        now_ms: TimestampMs,
    ) {
        let live: Vec<(FrameworkId, TaskId)> = self
            .tasks()
            .filter(|t| &t.agent_id == agent && !t.state.is_terminal() && t.state != state)
            .map(|t| (t.framework_id.clone(), t.id.clone()))
            .collect();
        for (f, t) in live {
            self.set_task_state(&f, &t, state, Some(message.to_string()), None, now_ms);
        }
    }

    /// Sets a task's state, keeping the used-resource indexes in step (a task's resources
    /// count as used exactly while its state is not terminal) and the completed-task index
    /// too; a task that becomes terminal may push its framework over the retention bound,
    /// and the oldest terminal task (possibly this one) is then evicted.
    fn set_task_state(
        &mut self,
        framework: &FrameworkId,
        task: &TaskId,
        state: TaskState,
        message: Option<String>,
        exit_code: Option<i32>,
        now_ms: TimestampMs,
    ) {
        let Some(t) = self
            .data
            .tasks
            .get_mut(framework)
            .and_then(|m| m.get_mut(task))
        else {
            return;
        };
        let was_live = !t.state.is_terminal();
        let old_key = (t.updated_at_ms, t.id.clone());
        t.unreachable_from = match (state, t.state) {
            (TaskState::TaskUnreachable, TaskState::TaskUnreachable) => t.unreachable_from,
            (TaskState::TaskUnreachable, before) => Some(before),
            _ => None,
        };
        t.state = state;
        t.message = message;
        t.exit_code = exit_code;
        t.updated_at_ms = now_ms;
        if was_live && state.is_terminal() {
            let t = t.clone();
            self.remove_used(&t);
            self.note_if_drained(&t.agent_id);
        }
        // Callers only ever end live tasks, but keep the index right for any transition.
        if !was_live {
            self.forget_completed(framework, &old_key);
        }
        if state.is_terminal() {
            self.completed_tasks
                .entry(framework.clone())
                .or_default()
                .insert((now_ms, task.clone()));
            self.enforce_task_bound(framework);
        }
    }

    /// A draining agent with no live task left is drained.
    fn note_if_drained(&mut self, agent: &AgentId) {
        let idle = self
            .agent_alloc
            .get(agent)
            .is_none_or(|a| a.used.is_empty());
        if let Some(Some(d)) = self.data.agents.get_mut(agent).map(|a| a.drain.as_mut()) {
            if idle {
                d.state = DrainState::Drained;
            }
        }
    }

    fn forget_completed(&mut self, framework: &FrameworkId, key: &(TimestampMs, TaskId)) {
        if let Some(keys) = self.completed_tasks.get_mut(framework) {
            keys.remove(key);
            if keys.is_empty() {
                self.completed_tasks.remove(framework);
            }
        }
    }

    /// Both retention bounds, on every framework: after a change of [`Retention`] or when
    /// loading a snapshot.
    fn enforce_retention(&mut self) {
        self.enforce_framework_bound();
        let over: Vec<FrameworkId> = self
            .completed_tasks
            .iter()
            .filter(|(_, keys)| keys.len() > self.data.retention.max_completed_tasks_per_framework)
            .map(|(f, _)| f.clone())
            .collect();
        for f in over {
            self.enforce_task_bound(&f);
        }
    }

    /// Evicts a framework's oldest terminal tasks until it has no more than the bound.
    fn enforce_task_bound(&mut self, framework: &FrameworkId) {
        let max = self.data.retention.max_completed_tasks_per_framework;
        let Some(keys) = self.completed_tasks.get_mut(framework) else {
            return;
        };
        while keys.len() > max {
            let Some((_, task)) = keys.pop_first() else {
                break;
            };
            if let Some(tasks) = self.data.tasks.get_mut(framework) {
                tasks.remove(&task);
                if tasks.is_empty() {
                    self.data.tasks.remove(framework);
                }
            }
        }
        if keys.is_empty() {
            self.completed_tasks.remove(framework);
        }
    }

    /// Evicts the oldest completed frameworks, with all their tasks (terminal, so holding
    /// nothing), until no more than the bound remain.
    fn enforce_framework_bound(&mut self) {
        let max = self.data.retention.max_completed_frameworks;
        while self.completed_order.len() > max {
            let Some((_, id)) = self.completed_order.pop_first() else {
                break;
            };
            self.data.completed_frameworks.remove(&id);
            self.data.tasks.remove(&id);
            self.completed_tasks.remove(&id);
        }
    }

    fn add_used(&mut self, task: &Task) {
        self.agent_alloc
            .entry(task.agent_id.clone())
            .or_default()
            .used
            .add(&task.resources);
        self.framework_alloc
            .entry(task.framework_id.clone())
            .or_default()
            .entry(task.agent_id.clone())
            .or_default()
            .used
            .add(&task.resources);
        self.hold(&task.framework_id, &task.agent_id, &task.resources);
    }

    fn remove_used(&mut self, task: &Task) {
        if let Some(a) = self.agent_alloc.get_mut(&task.agent_id) {
            a.used = a.used.saturating_sub(&task.resources);
        }
        self.framework_alloc_sub(&task.framework_id, &task.agent_id, |a| {
            a.used = a.used.saturating_sub(&task.resources);
        });
        self.release(&task.framework_id, &task.agent_id, &task.resources);
    }

    /// Takes from a framework's allocation on one agent, dropping what becomes empty.
    fn framework_alloc_sub(
        &mut self,
        framework: &FrameworkId,
        agent: &AgentId,
        take: impl FnOnce(&mut Allocation),
    ) {
        let Some(by_agent) = self.framework_alloc.get_mut(framework) else {
            return;
        };
        if let Some(a) = by_agent.get_mut(agent) {
            take(a);
            if a.is_empty() {
                by_agent.remove(agent);
            }
        }
        if by_agent.is_empty() {
            self.framework_alloc.remove(framework);
        }
    }

    fn rebuild_allocations(&mut self) {
        let (agents, frameworks) = self.computed_allocations();
        self.agent_alloc = agents;
        self.framework_alloc = frameworks;
        self.holdings = self.computed_holdings();
        self.completed_tasks = self.computed_completed_tasks();
        self.completed_order = self.computed_completed_order();
        self.drains = self.computed_drains();
    }

    /// The agents with a drain, recomputed from scratch.
    fn computed_drains(&self) -> BTreeSet<AgentId> {
        self.agents()
            .filter(|a| a.drain.is_some())
            .map(|a| a.info.id.clone())
            .collect()
    }

    /// The agents with a drain (draining or drained), in id order.
    pub fn agents_with_drain(&self) -> impl Iterator<Item = &Agent> {
        self.drains.iter().filter_map(|id| self.data.agents.get(id))
    }

    /// The completed-task index recomputed from scratch from the tasks.
    fn computed_completed_tasks(&self) -> CompletedTasks {
        let mut index = CompletedTasks::new();
        for t in self.tasks().filter(|t| t.state.is_terminal()) {
            index
                .entry(t.framework_id.clone())
                .or_default()
                .insert((t.updated_at_ms, t.id.clone()));
        }
        index
    }

    /// The completed-framework order recomputed from scratch.
    fn computed_completed_order(&self) -> BTreeSet<(TimestampMs, FrameworkId)> {
        self.data
            .completed_frameworks
            .iter()
            .map(|(id, c)| (c.removed_at_ms, id.clone()))
            .collect()
    }

    /// Holdings recomputed from scratch from tasks and offers.
    fn computed_holdings(&self) -> Holdings {
        let mut holdings = Holdings::new();
        let live = self.tasks().filter(|t| !t.state.is_terminal());
        let held = live
            .map(|t| (&t.framework_id, &t.agent_id, &t.resources))
            .chain(
                self.data
                    .offers
                    .values()
                    .map(|o| (&o.framework_id, &o.agent_id, &o.resources)),
            );
        for (f, a, r) in held {
            if !r.is_empty() {
                holdings
                    .entry(f.clone())
                    .or_default()
                    .entry(a.clone())
                    .or_default()
                    .add(r);
            }
        }
        holdings
    }

    /// Allocations recomputed from scratch from tasks and offers.
    fn computed_allocations(&self) -> (BTreeMap<AgentId, Allocation>, FrameworkAlloc) {
        let mut agents: BTreeMap<AgentId, Allocation> = BTreeMap::new();
        let mut frameworks = FrameworkAlloc::new();
        for t in self.tasks().filter(|t| !t.state.is_terminal()) {
            agents
                .entry(t.agent_id.clone())
                .or_default()
                .used
                .add(&t.resources);
            frameworks
                .entry(t.framework_id.clone())
                .or_default()
                .entry(t.agent_id.clone())
                .or_default()
                .used
                .add(&t.resources);
        }
        for o in self.data.offers.values() {
            agents
                .entry(o.agent_id.clone())
                .or_default()
                .offered
                .add(&o.resources);
            frameworks
                .entry(o.framework_id.clone())
                .or_default()
                .entry(o.agent_id.clone())
                .or_default()
                .offered
                .add(&o.resources);
        }
        (agents, frameworks)
    }

    /// Checks the registry's invariants; used by tests of this crate and its users.
    /// Returns a description of the first one broken.
    pub fn check_invariants(&self) -> Result<(), String> {
        let (agents, frameworks) = self.computed_allocations();
        if nonempty(&agents) != nonempty(&self.agent_alloc) {
            return Err("agent allocation index differs from tasks and offers".into());
        }
        if nonempty_by_agent(&frameworks) != nonempty_by_agent(&self.framework_alloc) {
            return Err("framework allocation index differs from tasks and offers".into());
        }
        if self.computed_holdings() != self.holdings {
            return Err("holdings index differs from tasks and offers".into());
        }
        for (id, agent) in &self.data.agents {
            let a = agents.get(id).cloned().unwrap_or_default();
            let held = a.used.plus(&a.offered);
            if !agent.info.resources.contains(&held) {
                return Err(format!(
                    "agent {id} holds {held} but has only {}",
                    agent.info.resources
                ));
            }
        }
        for o in self.data.offers.values() {
            if !self.data.agents.contains_key(&o.agent_id) {
                return Err(format!("offer {} on unknown agent", o.id));
            }
            if !self.data.frameworks.contains_key(&o.framework_id) {
                return Err(format!("offer {} to unknown framework", o.id));
            }
            if self.data.agents[&o.agent_id].deactivated {
                return Err(format!(
                    "offer {} on deactivated agent {}",
                    o.id, o.agent_id
                ));
            }
        }
        for (id, agent) in &self.data.agents {
            if self.data.gone_agents.contains_key(id) {
                return Err(format!("agent {id} is registered and marked gone"));
            }
            if let Some(drain) = &agent.drain {
                if !agent.deactivated {
                    return Err(format!("agent {id} drains but is not deactivated"));
                }
                let live = self.live_tasks_on(id);
                if (drain.state == DrainState::Drained) != (live == 0) {
                    return Err(format!(
                        "agent {id} is {:?} with {live} live task(s)",
                        drain.state
                    ));
                }
            }
        }
        self.check_retention_invariants()
    }

    /// Completed frameworks, task ownership, the retention indexes and bounds.
    fn check_retention_invariants(&self) -> Result<(), String> {
        let retention = self.data.retention;
        retention.validate().map_err(|e| e.to_string())?;
        for (id, c) in &self.data.completed_frameworks {
            if &c.framework.info.id != id {
                return Err(format!(
                    "completed framework {id} records id {}",
                    c.framework.info.id
                ));
            }
            if self.data.frameworks.contains_key(id) {
                return Err(format!("framework {id} is both registered and completed"));
            }
        }
        for (f, tasks) in &self.data.tasks {
            let completed = self.data.completed_frameworks.contains_key(f);
            if !completed && !self.data.frameworks.contains_key(f) {
                return Err(format!(
                    "tasks of framework {f}, neither registered nor completed"
                ));
            }
            if tasks.is_empty() {
                return Err(format!("empty task map for framework {f}"));
            }
            for (id, t) in tasks {
                if &t.id != id || &t.framework_id != f {
                    return Err(format!(
                        "task {id} of {f} is filed as {} of {}",
                        t.id, t.framework_id
                    ));
                }
                if completed && !t.state.is_terminal() {
                    return Err(format!(
                        "completed framework {f} has live task {id} ({})",
                        t.state
                    ));
                }
            }
        }
        if self.computed_completed_tasks() != self.completed_tasks {
            return Err("completed-task index differs from the tasks".into());
        }
        if self.computed_completed_order() != self.completed_order {
            return Err("completed-framework order differs from the completed frameworks".into());
        }
        if self.computed_drains() != self.drains {
            return Err("drain index differs from the agents' drains".into());
        }
        for (f, keys) in &self.completed_tasks {
            if keys.len() > retention.max_completed_tasks_per_framework {
                return Err(format!(
                    "framework {f} keeps {} terminal tasks, above the bound {}",
                    keys.len(),
                    retention.max_completed_tasks_per_framework
                ));
            }
        }
        if self.data.completed_frameworks.len() > retention.max_completed_frameworks {
            return Err(format!(
                "{} completed frameworks kept, above the bound {}",
                self.data.completed_frameworks.len(),
                retention.max_completed_frameworks
            ));
        }
        Ok(())
    }
}

/// The principal a registration leaves an agent or framework bound to: the one it is
/// registered with stays (a registration naming none keeps it); a different one is
/// refused, so a principal can never take over another's agent or framework.
fn bound_principal(
    what: &str,
    registered: Option<&str>,
    claimed: Option<String>,
) -> Result<Option<String>, Rejection> {
    match (registered, claimed) {
        (Some(r), Some(c)) if r != c => Err(Rejection::PrincipalMismatch {
            what: what.to_string(),
            registered: r.to_string(),
            claimed: c,
        }),
        (Some(r), _) => Ok(Some(r.to_string())),
        (None, c) => Ok(c),
    }
}

/// A role's DRF weight as an operator may set it.
fn check_weight(role: &str, weight: f64) -> Result<(), Rejection> {
    validate_framework_role(role).map_err(|e| Rejection::BadRole(e.to_string()))?;
    if !(weight.is_finite() && weight > 0.0) {
        return Err(Rejection::BadWeight(weight.to_string()));
    }
    Ok(())
}
