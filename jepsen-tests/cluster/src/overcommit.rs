//! The over-commit check, the one implementation: on every agent, for every scalar
//! resource, what its non-terminal tasks hold plus what is offered out of it must fit in
//! its total. The tasks' share is summed from the `/state` task list, not taken from the
//! master's own `used`, so a master whose bookkeeping is wrong is still caught.
//!
//! Pure: it reads a `/state` document (or its reduction, [`AgentUsage`]) and returns what
//! it found. The fixture's [`overcommitted`] and the fault harness's checker both call it.

use std::collections::BTreeMap;
use std::fmt;

use agora_driver::TaskState;
use serde::{Deserialize, Serialize};

/// Slack for floating-point sums of resources.
pub const RESOURCE_TOLERANCE: f64 = 1e-6;

/// One agent's scalar resources, by resource name, as read from a master's `/state`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentUsage {
    pub id: String,
    /// The agent's scalar resources.
    #[serde(default)]
    pub total: BTreeMap<String, f64>,
    /// The sum of the resources of its non-terminal tasks.
    #[serde(default)]
    pub tasks: BTreeMap<String, f64>,
    /// What is offered out of it.
    #[serde(default)]
    pub offered: BTreeMap<String, f64>,
}

/// A `/state` document reduced to what the check needs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StateUsage {
    /// Every listed agent with an id, in `/state` order.
    pub agents: Vec<AgentUsage>,
    /// Agents that non-terminal tasks name but `/state` does not list, sorted.
    pub unlisted: Vec<String>,
}

/// One resource of one agent whose tasks and offers exceed its total.
#[derive(Clone, Debug, PartialEq)]
pub struct Overcommit {
    pub agent: String,
    pub resource: String,
    pub tasks: f64,
    pub offered: f64,
    pub total: f64,
}

impl fmt::Display for Overcommit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "agent {}: {} tasks {} + offered {} > total {}",
            self.agent, self.resource, self.tasks, self.offered, self.total
        )
    }
}

impl AgentUsage {
    /// The resources where tasks + offered exceed the total (a resource the agent does
    /// not have counts as a total of 0), by resource name.
    pub fn overcommits(&self) -> Vec<Overcommit> {
        let amount = |m: &BTreeMap<String, f64>, name: &str| m.get(name).copied().unwrap_or(0.0);
        let mut names: Vec<&String> = self
            .total
            .keys()
            .chain(self.tasks.keys())
            .chain(self.offered.keys())
            .collect();
        names.sort();
        names.dedup();
        names
            .into_iter()
            .map(|name| Overcommit {
                agent: self.id.clone(),
                resource: name.clone(),
                tasks: amount(&self.tasks, name),
                offered: amount(&self.offered, name),
                total: amount(&self.total, name),
            })
            .filter(|o| o.tasks + o.offered > o.total + RESOURCE_TOLERANCE)
            .collect()
    }
}

impl StateUsage {
    /// Reduces a master's `/state` JSON. `None` when it has no `agents` array (e.g. an
    /// error body). Agents without an id are skipped; a task without a state, or with a
    /// name that is not a task state, counts as non-terminal.
    pub fn from_state(state: &serde_json::Value) -> Option<StateUsage> {
        let agents = state.get("agents")?.as_array()?;
        let mut held: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
        let tasks = state.get("tasks").and_then(|t| t.as_array());
        for task in tasks.into_iter().flatten().filter(|t| !has_ended(t)) {
            let agent = task.get("agent_id").and_then(|a| a.as_str()).unwrap_or("");
            let sum = held.entry(agent.to_string()).or_default();
            for (name, amount) in scalars(task.get("resources")) {
                *sum.entry(name).or_insert(0.0) += amount;
            }
        }
        let agents: Vec<AgentUsage> = agents
            .iter()
            .filter_map(|agent| {
                let id = agent.get("id")?.as_str()?.to_string();
                Some(AgentUsage {
                    total: scalars(agent.get("resources")),
                    offered: scalars(agent.get("offered")),
                    tasks: held.remove(&id).unwrap_or_default(),
                    id,
                })
            })
            .collect();
        Some(StateUsage {
            agents,
            unlisted: held.into_keys().collect(),
        })
    }
}

/// Whether a `/state` task entry is in a terminal state. The `/state` JSON spells states
/// by name; this is the fixture's one place that reads them.
fn has_ended(task: &serde_json::Value) -> bool {
    task.get("state")
        .and_then(|s| s.as_str())
        .and_then(TaskState::from_name)
        .is_some_and(TaskState::is_terminal)
}

/// The numeric members of a resources object; non-numbers (port ranges) are skipped.
fn scalars(resources: Option<&serde_json::Value>) -> BTreeMap<String, f64> {
    let Some(map) = resources.and_then(|r| r.as_object()) else {
        return BTreeMap::new();
    };
    map.iter()
        .filter_map(|(name, v)| v.as_f64().map(|x| (name.clone(), x)))
        .collect()
}

/// The over-commit check on one `/state` document: one line per overcommitted resource
/// (with the term), per agent holding tasks that `/state` does not list, or for a document
/// without an agent list.
pub fn overcommitted(state: &serde_json::Value) -> Vec<String> {
    let Some(usage) = StateUsage::from_state(state) else {
        return vec!["/state has no agent list".to_string()];
    };
    let term = &state["term"];
    let mut out: Vec<String> = usage
        .agents
        .iter()
        .flat_map(AgentUsage::overcommits)
        .map(|o| format!("{o} (term {term})"))
        .collect();
    out.extend(
        usage
            .unlisted
            .iter()
            .map(|id| format!("tasks on agent {id}, which /state does not list")),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn state() -> serde_json::Value {
        json!({
            "term": 3,
            "agents": [
                {"id": "a1", "resources": {"cpus": 4.0, "mem": 100.0, "ports": "[1-2]"}, "offered": {"cpus": 1.0}},
                {"id": "a2", "resources": {"cpus": 2.0}},
                {"resources": {"cpus": 9.0}}
            ],
            "tasks": [
                {"id": "t1", "agent_id": "a1", "state": "TASK_RUNNING", "resources": {"cpus": 0.5, "mem": 32.0}},
                {"id": "t2", "agent_id": "a1", "state": "TASK_STAGING", "resources": {"cpus": 0.25}},
                {"id": "t3", "agent_id": "a1", "state": "TASK_FINISHED", "resources": {"cpus": 3.0}},
                {"id": "t4", "agent_id": "a1", "state": "TASK_UNREACHABLE", "resources": {"mem": 1.0}},
                {"id": "t5", "agent_id": "a2", "state": "TASK_KILLED", "resources": {"cpus": 2.0}},
                {"id": "t6", "agent_id": "a2", "resources": {"cpus": 0.5}}
            ]
        })
    }

    #[test]
    fn sums_non_terminal_tasks_per_agent() {
        let usage = StateUsage::from_state(&state()).unwrap();
        assert_eq!(usage.agents.len(), 2, "the agent without an id is skipped");
        let a1 = &usage.agents[0];
        assert_eq!(a1.id, "a1");
        // TASK_UNREACHABLE is not terminal; ports (a range) is not a scalar.
        assert_eq!(
            a1.tasks,
            BTreeMap::from([("cpus".into(), 0.75), ("mem".into(), 33.0)])
        );
        assert_eq!(a1.total.len(), 2);
        assert_eq!(a1.offered, BTreeMap::from([("cpus".into(), 1.0)]));
        // A task without a state counts as live.
        assert_eq!(
            usage.agents[1].tasks,
            BTreeMap::from([("cpus".into(), 0.5)])
        );
        assert!(usage.unlisted.is_empty());
        assert!(overcommitted(&state()).is_empty());
    }

    #[test]
    fn exact_capacity_passes_and_one_more_fails() {
        let mut agent = AgentUsage {
            id: "a1".into(),
            total: BTreeMap::from([("cpus".into(), 4.0)]),
            tasks: BTreeMap::from([("cpus".into(), 3.0)]),
            offered: BTreeMap::from([("cpus".into(), 1.0)]),
        };
        assert!(agent.overcommits().is_empty());
        agent.offered.insert("cpus".into(), 1.5);
        agent.tasks.insert("gpus".into(), 1.0);
        let found: Vec<String> = agent.overcommits().iter().map(|o| o.to_string()).collect();
        assert_eq!(
            found,
            [
                "agent a1: cpus tasks 3 + offered 1.5 > total 4",
                "agent a1: gpus tasks 1 + offered 0 > total 0"
            ]
        );
    }

    #[test]
    fn names_overcommits_with_the_term_and_unlisted_agents() {
        let mut s = state();
        s["tasks"]
            .as_array_mut()
            .unwrap()
            .push(json!({"id": "t7", "agent_id": "a2", "state": "TASK_STARTING", "resources": {"cpus": 2.0}}));
        s["tasks"]
            .as_array_mut()
            .unwrap()
            .push(json!({"id": "t8", "agent_id": "gone", "state": "TASK_RUNNING", "resources": {"cpus": 1.0}}));
        assert_eq!(
            overcommitted(&s),
            [
                "agent a2: cpus tasks 2.5 + offered 0 > total 2 (term 3)",
                "tasks on agent gone, which /state does not list"
            ]
        );
        assert_eq!(
            overcommitted(&json!({"error": "x"})),
            ["/state has no agent list"]
        );
    }
}
