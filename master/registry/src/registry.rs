//! The registry state and its pure, deterministic `apply`.
//!
//! `apply` validates a whole command before it changes anything, so a rejected command
//! leaves the registry exactly as it was, on every replica alike.

use crate::command::{offered_total, Command, CommandBatch, CommandResult, Rejection};
use crate::ids::{AgentId, FrameworkId, OfferId, TaskId};
use crate::model::{
    Agent, AgentInfo, AgentStatus, Framework, FrameworkInfo, FrameworkStatus, Offer, Task,
    TaskSpec, TaskState, TimestampMs,
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
    framework_alloc: BTreeMap<FrameworkId, Allocation>,
    /// Used plus offered, per framework per agent: what the allocator needs for DRF
    /// without walking every task (finished ones included) each cycle.
    holdings: Holdings,
}

type Holdings = BTreeMap<FrameworkId, BTreeMap<AgentId, Resources>>;

/// What a snapshot holds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct RegistryData {
    agents: BTreeMap<AgentId, Agent>,
    frameworks: BTreeMap<FrameworkId, Framework>,
    tasks: BTreeMap<FrameworkId, BTreeMap<TaskId, Task>>,
    offers: BTreeMap<OfferId, Offer>,
    weights: BTreeMap<String, f64>,
}

impl PartialEq for Registry {
    fn eq(&self, other: &Self) -> bool {
        self.data == other.data
    }
}

impl From<RegistryData> for Registry {
    fn from(data: RegistryData) -> Self {
        let mut reg = Registry {
            data,
            ..Default::default()
        };
        reg.rebuild_allocations();
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
        .filter(|(_, a)| !a.used.is_empty() || !a.offered.is_empty())
        .map(|(k, a)| (k.clone(), a.clone()))
        .collect()
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

    pub fn frameworks(&self) -> impl Iterator<Item = &Framework> {
        self.data.frameworks.values()
    }

    pub fn framework(&self, id: &FrameworkId) -> Option<&Framework> {
        self.data.frameworks.get(id)
    }

    pub fn tasks(&self) -> impl Iterator<Item = &Task> {
        self.data.tasks.values().flat_map(|m| m.values())
    }

    pub fn task(&self, framework: &FrameworkId, task: &TaskId) -> Option<&Task> {
        self.data.tasks.get(framework)?.get(task)
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

    /// Used and offered resources of a framework.
    pub fn framework_allocation(&self, id: &FrameworkId) -> Allocation {
        self.framework_alloc.get(id).cloned().unwrap_or_default()
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
                self.data.frameworks.remove(id);
                self.framework_alloc.remove(id);
                self.holdings.remove(id);
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
                validate_framework_role(role).map_err(|e| Rejection::BadRole(e.to_string()))?;
                if !(weight.is_finite() && *weight > 0.0) {
                    return Err(Rejection::BadWeight(weight.to_string()));
                }
                self.data.weights.insert(role.clone(), *weight);
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
            let resources_changed = existing.info.resources != info.resources;
            let registered_at_ms = existing.registered_at_ms;
            if resources_changed {
                self.drop_agent_offers(&info.id);
            }
            self.data.agents.insert(
                info.id.clone(),
                Agent {
                    info: info.clone(),
                    status: AgentStatus::Active,
                    registered_at_ms,
                },
            );
        } else {
            self.data.agents.insert(
                info.id.clone(),
                Agent {
                    info: info.clone(),
                    status: AgentStatus::Active,
                    registered_at_ms: now_ms,
                },
            );
        }
        Ok(())
    }

    fn register_framework(&mut self, info: &FrameworkInfo, now_ms: TimestampMs) -> CommandResult {
        validate_framework_role(&info.role).map_err(|e| Rejection::BadRole(e.to_string()))?;
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
            if agent.status != AgentStatus::Active {
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
        for t in tasks {
            if existing.is_some_and(|m| m.contains_key(&t.id)) || !new_ids.insert(&t.id) {
                return Err(Rejection::DuplicateTask(t.id.clone()));
            }
            if t.resources.is_empty() {
                return Err(Rejection::TaskWithoutResources(t.id.clone()));
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
            if let Some(a) = self.framework_alloc.get_mut(&offer.framework_id) {
                a.offered = a.offered.saturating_sub(&offer.resources);
            }
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

    /// Sets a task's state, keeping the used-resource indexes in step: a task's resources
    /// count as used exactly while its state is not terminal.
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
        t.state = state;
        t.message = message;
        t.exit_code = exit_code;
        t.updated_at_ms = now_ms;
        if was_live && state.is_terminal() {
            let t = t.clone();
            self.remove_used(&t);
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
            .used
            .add(&task.resources);
        self.hold(&task.framework_id, &task.agent_id, &task.resources);
    }

    fn remove_used(&mut self, task: &Task) {
        if let Some(a) = self.agent_alloc.get_mut(&task.agent_id) {
            a.used = a.used.saturating_sub(&task.resources);
        }
        if let Some(a) = self.framework_alloc.get_mut(&task.framework_id) {
            a.used = a.used.saturating_sub(&task.resources);
        }
        self.release(&task.framework_id, &task.agent_id, &task.resources);
    }

    fn rebuild_allocations(&mut self) {
        let (agents, frameworks) = self.computed_allocations();
        self.agent_alloc = agents;
        self.framework_alloc = frameworks;
        self.holdings = self.computed_holdings();
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
    #[allow(clippy::type_complexity)]
    fn computed_allocations(
        &self,
    ) -> (
        BTreeMap<AgentId, Allocation>,
        BTreeMap<FrameworkId, Allocation>,
    ) {
        let mut agents: BTreeMap<AgentId, Allocation> = BTreeMap::new();
        let mut frameworks: BTreeMap<FrameworkId, Allocation> = BTreeMap::new();
        for t in self.tasks().filter(|t| !t.state.is_terminal()) {
            agents
                .entry(t.agent_id.clone())
                .or_default()
                .used
                .add(&t.resources);
            frameworks
                .entry(t.framework_id.clone())
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
        if nonempty(&frameworks) != nonempty(&self.framework_alloc) {
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
