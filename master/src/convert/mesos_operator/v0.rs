//! The v0 JSON endpoints Mesos tooling polls: `/master/state` (`/state.json`) in the shape
//! Mesos' state.json has (tasks, agents, frameworks), and `/metrics/snapshot`.

use std::collections::BTreeMap;

use agora_registry::{
    Agent, AgentStatus, Allocation, Framework, FrameworkStatus, Resources, Task, TaskState,
};
use serde_json::json;

use super::master::flags;
use super::state::custom_executor;
use super::{secs, MasterFacts};
use crate::config::Config;
use crate::convert::mesos::{task_state_to_mesos, version_info};
use crate::convert::resources_json;
use crate::leader::views::Visible;

/// `/metrics/snapshot`: the metrics as one JSON object.
pub fn metrics_json(metrics: Vec<(String, f64)>) -> serde_json::Value {
    serde_json::Value::Object(
        metrics
            .into_iter()
            .map(|(name, value)| (name, json!(value)))
            .collect(),
    )
}

pub(super) fn task_json(t: &Task) -> serde_json::Value {
    let state = task_state_to_mesos(t.state, true).as_str_name();
    let statuses: Vec<serde_json::Value> = if t.state == TaskState::TaskStaging {
        vec![]
    } else {
        vec![json!({"state": state, "timestamp": secs(t.updated_at_ms)})]
    };
    json!({
        "id": t.id,
        "name": t.name,
        "framework_id": t.framework_id,
        "executor_id": custom_executor(t).map(|e| e.executor_id.value).unwrap_or_default(),
        "slave_id": t.agent_id,
        "state": state,
        "resources": resources_json(&t.resources),
        "statuses": statuses,
        "user": t.user,
        "message": t.message,
    })
}

fn attributes_json(a: &Agent) -> serde_json::Value {
    serde_json::Value::Object(
        a.info
            .attributes
            .iter()
            .map(|(k, v)| {
                let value = match v.parse::<f64>() {
                    Ok(x) if x.is_finite() => json!(x),
                    _ => json!(v),
                };
                (k.clone(), value)
            })
            .collect(),
    )
}

fn framework_json(
    f: &Framework,
    alloc: Option<&Allocation>,
    removed_ms: Option<u64>,
    tasks: (Vec<serde_json::Value>, Vec<serde_json::Value>),
    offers: Vec<serde_json::Value>,
) -> serde_json::Value {
    let active = removed_ms.is_none() && f.status == FrameworkStatus::Active;
    let alloc = alloc.cloned().unwrap_or_default();
    let unregistered = match (removed_ms, f.status) {
        (Some(ms), _) | (None, FrameworkStatus::Disconnected { since_ms: ms }) => secs(ms),
        (None, FrameworkStatus::Active) => 0.0,
    };
    json!({
        "id": f.info.id,
        "name": f.info.name,
        "user": f.info.user,
        "role": f.info.role,
        "roles": [f.info.role],
        "principal": f.info.principal,
        "failover_timeout": secs(f.info.failover_timeout_ms),
        "checkpoint": true,
        "hostname": "",
        "webui_url": "",
        "capabilities": [],
        "active": active,
        "connected": active,
        "recovered": false,
        "registered_time": secs(f.registered_at_ms),
        "unregistered_time": unregistered,
        "used_resources": resources_json(&alloc.used),
        "offered_resources": resources_json(&alloc.offered),
        "resources": resources_json(&alloc.used.plus(&alloc.offered)),
        "tasks": tasks.0,
        "completed_tasks": tasks.1,
        "unreachable_tasks": [],
        "offers": offers,
        "executors": [],
        "completed_executors": [],
    })
}

/// `/master/state`: the cluster as `v`'s principal may see it, in the shape of Mesos'
/// state.json (frameworks with their tasks and completed tasks, slaves, leader, ...).
pub fn state_json(v: &Visible<'_>, facts: &MasterFacts, config: &Config) -> serde_json::Value {
    let reg = v.registry();
    let mut tasks: BTreeMap<agora_registry::FrameworkId, (Vec<_>, Vec<_>)> = BTreeMap::new();
    for t in v.tasks() {
        let e = tasks.entry(t.framework_id.clone()).or_default();
        if t.state.is_terminal() {
            e.1.push(task_json(t));
        } else {
            e.0.push(task_json(t));
        }
    }
    let mut offers: BTreeMap<agora_registry::FrameworkId, Vec<serde_json::Value>> = BTreeMap::new();
    for o in v.offers() {
        offers
            .entry(o.framework_id.clone())
            .or_default()
            .push(json!({
                "id": o.id,
                "framework_id": o.framework_id,
                "slave_id": o.agent_id,
                "resources": resources_json(&o.resources),
            }));
    }
    let frameworks: Vec<_> = v
        .frameworks()
        .map(|f| {
            framework_json(
                f,
                Some(&reg.framework_allocation(&f.info.id)),
                None,
                tasks.remove(&f.info.id).unwrap_or_default(),
                offers.remove(&f.info.id).unwrap_or_default(),
            )
        })
        .collect();
    let completed: Vec<_> = v
        .completed_frameworks()
        .map(|c| {
            framework_json(
                &c.framework,
                None,
                Some(c.removed_at_ms),
                tasks.remove(&c.framework.info.id).unwrap_or_default(),
                vec![],
            )
        })
        .collect();
    let (mut activated, mut deactivated, mut unreachable) = (0u64, 0u64, 0u64);
    let slaves: Vec<_> = v
        .agents()
        .map(|a| {
            let alloc = reg.agent_allocation(&a.info.id);
            let active = a.status == AgentStatus::Active;
            if active {
                activated += 1;
            } else {
                deactivated += 1;
                unreachable += 1;
            }
            let mut unreserved = Resources::default();
            let mut reserved_by_role: BTreeMap<String, Resources> = BTreeMap::new();
            for r in a.info.resources.iter() {
                let one = Resources::from(vec![r.clone()]);
                match &r.role {
                    Some(role) => reserved_by_role.entry(role.clone()).or_default().add(&one),
                    None => unreserved.add(&one),
                }
            }
            let port = a
                .info
                .address
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u32>().ok())
                .unwrap_or(0);
            json!({
                "id": a.info.id,
                "pid": format!("slave(1)@{}", a.info.address),
                "hostname": a.info.hostname,
                "port": port,
                "registered_time": secs(a.registered_at_ms),
                "resources": resources_json(&a.info.resources),
                "used_resources": resources_json(&alloc.used),
                "offered_resources": resources_json(&alloc.offered),
                "reserved_resources": reserved_by_role
                    .iter()
                    .map(|(role, r)| (role.clone(), resources_json(r)))
                    .collect::<serde_json::Map<_, _>>(),
                "unreserved_resources": resources_json(&unreserved),
                "attributes": attributes_json(a),
                "active": active,
                "deactivated": false,
                "version": env!("CARGO_PKG_VERSION"),
                "capabilities": ["MULTI_ROLE", "HIERARCHICAL_ROLE", "RESERVATION_REFINEMENT"],
            })
        })
        .collect();
    let leader = facts.leader.clone().unwrap_or_default();
    let (leader_host, leader_port) = leader.rsplit_once(':').unwrap_or((&leader, "0"));
    let version = version_info();
    let flags: serde_json::Map<_, _> = flags(config)
        .into_iter()
        .map(|(k, v)| (k, json!(v)))
        .collect();
    let (host, port) = facts
        .address
        .rsplit_once(':')
        .unwrap_or((&facts.address, "0"));
    json!({
        "version": version.version,
        "git_sha": version.git_sha,
        "build_date": "",
        "build_time": version.build_time,
        "build_user": version.build_user,
        "start_time": secs(facts.started_ms),
        "elected_time": secs(facts.elected_ms),
        "id": format!("agora-master-{}", facts.id),
        "pid": format!("master@{}", facts.address),
        "hostname": host,
        "port": port.parse::<u32>().unwrap_or(0),
        "activated_slaves": activated,
        "deactivated_slaves": deactivated,
        "unreachable_slaves": unreachable,
        "leader": format!("master@{leader}"),
        "leader_info": {
            "id": "",
            "pid": format!("master@{leader}"),
            "hostname": leader_host,
            "port": leader_port.parse::<u32>().unwrap_or(0),
        },
        "log_dir": "",
        "flags": flags,
        "slaves": slaves,
        "recovered_slaves": [],
        "frameworks": frameworks,
        "completed_frameworks": completed,
        "orphan_tasks": [],
        "unregistered_frameworks": [],
    })
}
