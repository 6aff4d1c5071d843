//! Apache Mesos' v1 operator API (`mesos.v1.master`) and the v0 JSON endpoints Mesos tooling
//! polls (`/master/state`, `/metrics/snapshot`), from Agora's domain values.
//!
//! Inbound there is one call with a payload that changes anything, UPDATE_WEIGHTS: it
//! becomes the gRPC Operator's `SetWeightRequest`s, validated and authorized by the same
//! function. Outbound, the registry as a principal may see it ([`Visible`]), the leader's
//! [`ClusterEvent`]s and [`ClusterCounts`] become Mesos' messages and JSON. The operator API
//! shows tasks' real states (partition-aware) and reservations in the refinement format, as
//! Mesos' operator API does.

use std::collections::BTreeMap;

use agora_mesos_proto::v1 as mesos;
use agora_mesos_proto::v1::master as op;
use agora_proto::v1 as pb;
use agora_registry::{
    Agent, AgentStatus, Allocation, CompletedFramework, Framework, FrameworkStatus, Offer,
    Resources, Task, TaskState,
};
use serde_json::json;
use tonic::Status;

use super::mesos::{
    attribute_to_mesos, master_info, resources_to_mesos, task_state_to_mesos, version_info,
    EventShape,
};
use super::{invalid, limits, resources_json};
use crate::config::Config;
use crate::leader::events::ClusterEvent;
use crate::leader::views::{ClusterCounts, Visible};

/// Facts about this master that its answers carry.
#[derive(Clone, Debug)]
pub struct MasterFacts {
    pub id: u64,
    /// This replica's advertised HOST:PORT.
    pub address: String,
    /// The leader's HOST:PORT, if known.
    pub leader: Option<String>,
    pub elected: bool,
    /// ms since the epoch (elected: 0 if not leading).
    pub started_ms: u64,
    pub elected_ms: u64,
}

fn shape() -> EventShape {
    EventShape {
        partition_aware: true,
        reservation_refinement: true,
        ..Default::default()
    }
}

fn resources(res: &Resources) -> Vec<mesos::Resource> {
    resources_to_mesos(res, &shape())
}

fn time_info(ms: u64) -> mesos::TimeInfo {
    mesos::TimeInfo {
        nanoseconds: (ms as i64).saturating_mul(1_000_000),
    }
}

fn secs(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

fn framework_id(id: &agora_registry::FrameworkId) -> mesos::FrameworkId {
    mesos::FrameworkId {
        value: id.to_string(),
    }
}

fn agent_id(id: &agora_registry::AgentId) -> mesos::AgentId {
    mesos::AgentId {
        value: id.to_string(),
    }
}

/// The executor a task runs under, if it is the framework's own (from the launch record:
/// the gRPC API's TaskInfo): as the Mesos framework gave it, or for one of the gRPC API
/// built from its command. Agora starts one executor per task; its id is the one the
/// framework named, else the task's.
fn custom_executor(t: &Task) -> Option<mesos::ExecutorInfo> {
    use prost::Message;
    let info = pb::TaskInfo::decode(t.launch.as_slice()).ok()?;
    let executor = info.executor?;
    if let Ok(mut given) = mesos::ExecutorInfo::decode(executor.mesos_executor_info.as_slice()) {
        if !executor.mesos_executor_info.is_empty() {
            given.framework_id = Some(framework_id(&t.framework_id));
            given.set_type(mesos::executor_info::Type::Custom);
            return Some(given);
        }
    }
    let id = if executor.executor_id.is_empty() {
        t.id.to_string()
    } else {
        executor.executor_id
    };
    let mut out = mesos::ExecutorInfo {
        executor_id: mesos::ExecutorId { value: id },
        framework_id: Some(framework_id(&t.framework_id)),
        command: Some(mesos::CommandInfo {
            value: Some(executor.command),
            shell: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    };
    out.set_type(mesos::executor_info::Type::Custom);
    Some(out)
}

/// A task's latest status as the master has it.
pub fn task_status(t: &Task) -> mesos::TaskStatus {
    let mut s = mesos::TaskStatus {
        task_id: mesos::TaskId {
            value: t.id.to_string(),
        },
        message: t.message.clone(),
        agent_id: Some(agent_id(&t.agent_id)),
        timestamp: Some(secs(t.updated_at_ms)),
        ..Default::default()
    };
    s.set_state(task_state_to_mesos(t.state, true));
    s
}

pub fn task_to_mesos(t: &Task) -> mesos::Task {
    let mut out = mesos::Task {
        name: t.name.clone(),
        task_id: mesos::TaskId {
            value: t.id.to_string(),
        },
        framework_id: framework_id(&t.framework_id),
        executor_id: custom_executor(t).map(|e| e.executor_id),
        agent_id: agent_id(&t.agent_id),
        resources: resources(&t.resources),
        // A staging task has had no update yet.
        statuses: if t.state == TaskState::TaskStaging {
            vec![]
        } else {
            vec![task_status(t)]
        },
        user: Some(t.user.clone()),
        ..Default::default()
    };
    out.set_state(task_state_to_mesos(t.state, true));
    out
}

fn agent_info(a: &Agent) -> mesos::AgentInfo {
    let port = a
        .info
        .address
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok());
    mesos::AgentInfo {
        hostname: a.info.hostname.clone(),
        port,
        resources: resources(&a.info.resources),
        attributes: a
            .info
            .attributes
            .iter()
            .map(|(k, v)| attribute_to_mesos(k.clone(), v.clone()))
            .collect(),
        id: Some(agent_id(&a.info.id)),
    }
}

pub fn agent_to_mesos(a: &Agent, alloc: &Allocation) -> op::response::get_agents::Agent {
    op::response::get_agents::Agent {
        agent_info: agent_info(a),
        active: a.status == AgentStatus::Active,
        deactivated: Some(false),
        version: env!("CARGO_PKG_VERSION").to_string(),
        pid: Some(format!("slave(1)@{}", a.info.address)),
        registered_time: Some(time_info(a.registered_at_ms)),
        total_resources: resources(&a.info.resources),
        allocated_resources: resources(&alloc.used),
        offered_resources: resources(&alloc.offered),
        ..Default::default()
    }
}

#[allow(deprecated)] // FrameworkInfo.role: the one role of an Agora framework.
fn framework_info(f: &Framework) -> mesos::FrameworkInfo {
    mesos::FrameworkInfo {
        user: f.info.user.clone(),
        name: f.info.name.clone(),
        id: Some(framework_id(&f.info.id)),
        failover_timeout: Some(secs(f.info.failover_timeout_ms)),
        role: Some(f.info.role.clone()),
        roles: vec![f.info.role.clone()],
        principal: f.info.principal.clone(),
        ..Default::default()
    }
}

fn offer_to_mesos(o: &Offer, reg: &agora_registry::Registry) -> mesos::Offer {
    mesos::Offer {
        id: mesos::OfferId {
            value: o.id.to_string(),
        },
        framework_id: framework_id(&o.framework_id),
        agent_id: agent_id(&o.agent_id),
        hostname: reg
            .agent(&o.agent_id)
            .map(|a| a.info.hostname.clone())
            .unwrap_or_default(),
        resources: resources(&o.resources),
        ..Default::default()
    }
}

pub fn framework_to_mesos(
    f: &Framework,
    alloc: &Allocation,
    offers: Vec<mesos::Offer>,
) -> op::response::get_frameworks::Framework {
    let connected = matches!(f.status, FrameworkStatus::Active);
    op::response::get_frameworks::Framework {
        framework_info: framework_info(f),
        active: connected,
        connected,
        recovered: false,
        registered_time: Some(time_info(f.registered_at_ms)),
        unregistered_time: match f.status {
            FrameworkStatus::Disconnected { since_ms } => Some(time_info(since_ms)),
            FrameworkStatus::Active => None,
        },
        offers,
        allocated_resources: resources(&alloc.used),
        offered_resources: resources(&alloc.offered),
        ..Default::default()
    }
}

fn completed_to_mesos(c: &CompletedFramework) -> op::response::get_frameworks::Framework {
    op::response::get_frameworks::Framework {
        framework_info: framework_info(&c.framework),
        active: false,
        connected: false,
        recovered: false,
        registered_time: Some(time_info(c.framework.registered_at_ms)),
        unregistered_time: Some(time_info(c.removed_at_ms)),
        ..Default::default()
    }
}

pub fn get_agents(v: &Visible<'_>) -> op::response::GetAgents {
    op::response::GetAgents {
        agents: v
            .agents()
            .map(|a| agent_to_mesos(a, &v.registry().agent_allocation(&a.info.id)))
            .collect(),
        recovered_agents: vec![],
    }
}

#[allow(deprecated)] // recovered_frameworks: left empty, as Mesos 1.11 does.
pub fn get_frameworks(v: &Visible<'_>) -> op::response::GetFrameworks {
    let mut offers: BTreeMap<_, Vec<mesos::Offer>> = BTreeMap::new();
    for o in v.offers() {
        offers
            .entry(o.framework_id.clone())
            .or_default()
            .push(offer_to_mesos(o, v.registry()));
    }
    op::response::GetFrameworks {
        frameworks: v
            .frameworks()
            .map(|f| {
                framework_to_mesos(
                    f,
                    &v.registry().framework_allocation(&f.info.id),
                    offers.remove(&f.info.id).unwrap_or_default(),
                )
            })
            .collect(),
        completed_frameworks: v.completed_frameworks().map(completed_to_mesos).collect(),
        recovered_frameworks: vec![],
    }
}

pub fn get_tasks(v: &Visible<'_>) -> op::response::GetTasks {
    let mut out = op::response::GetTasks::default();
    for t in v.tasks() {
        let m = task_to_mesos(t);
        if t.state.is_terminal() {
            out.completed_tasks.push(m);
        } else if t.state == TaskState::TaskUnreachable {
            out.unreachable_tasks.push(m);
        } else {
            out.tasks.push(m);
        }
    }
    out
}

#[allow(deprecated)] // orphan_executors: left empty, as Mesos 1.11 does.
pub fn get_executors(v: &Visible<'_>) -> op::response::GetExecutors {
    op::response::GetExecutors {
        executors: v
            .tasks()
            .filter(|t| !t.state.is_terminal())
            .filter_map(|t| {
                custom_executor(t).map(|e| op::response::get_executors::Executor {
                    executor_info: e,
                    agent_id: agent_id(&t.agent_id),
                })
            })
            .collect(),
        orphan_executors: vec![],
    }
}

pub fn get_state(v: &Visible<'_>) -> op::response::GetState {
    op::response::GetState {
        get_tasks: Some(get_tasks(v)),
        get_executors: Some(get_executors(v)),
        get_frameworks: Some(get_frameworks(v)),
        get_agents: Some(get_agents(v)),
    }
}

/// Every role with a weight or a framework: its weight, its frameworks, and what their
/// tasks hold.
pub fn get_roles(v: &Visible<'_>) -> op::response::GetRoles {
    let reg = v.registry();
    let mut roles: BTreeMap<String, (Vec<mesos::FrameworkId>, Resources)> = reg
        .weights()
        .keys()
        .map(|name| (name.clone(), Default::default()))
        .collect();
    for f in v.frameworks() {
        let (frameworks, held) = roles.entry(f.info.role.clone()).or_default();
        frameworks.push(framework_id(&f.info.id));
        held.add(&reg.framework_allocation(&f.info.id).used);
    }
    op::response::GetRoles {
        roles: roles
            .into_iter()
            .map(|(name, (frameworks, held))| mesos::Role {
                weight: reg.weight(&name),
                name,
                frameworks,
                resources: resources(&held),
            })
            .collect(),
    }
}

pub fn get_weights(weights: Vec<(String, f64)>) -> op::response::GetWeights {
    op::response::GetWeights {
        weight_infos: weights
            .into_iter()
            .map(|(role, weight)| mesos::WeightInfo {
                weight,
                role: Some(role),
            })
            .collect(),
    }
}

/// UPDATE_WEIGHTS as the gRPC Operator's requests; a missing member or role is refused
/// naming its Mesos field.
pub fn update_weights_from_mesos(call: &op::Call) -> Result<Vec<pb::SetWeightRequest>, Status> {
    let u = call
        .update_weights
        .as_ref()
        .ok_or_else(|| invalid("update_weights", "missing"))?;
    limits::count(
        "update_weights.weight_infos",
        u.weight_infos.len(),
        MAX_WEIGHTS_PER_CALL,
    )?;
    if u.weight_infos.is_empty() {
        return Err(invalid("update_weights.weight_infos", "empty"));
    }
    u.weight_infos
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let role = w.role.clone().ok_or_else(|| {
                invalid(&format!("update_weights.weight_infos[{i}].role"), "missing")
            })?;
            Ok(pb::SetWeightRequest {
                role,
                weight: w.weight,
            })
        })
        .collect()
}

/// Most roles one UPDATE_WEIGHTS may set.
pub const MAX_WEIGHTS_PER_CALL: usize = 1_000;

/// A refusal of UPDATE_WEIGHTS' requests, naming the Mesos field (`weights[2].weight` is
/// `update_weights.weight_infos[2].weight`; a lone `role` is the first's).
pub fn update_weights_fields(status: Status) -> Status {
    let message = status.message();
    let renamed = if let Some(rest) = message.strip_prefix("weights[") {
        format!("update_weights.weight_infos[{rest}")
    } else if message.starts_with("role:") || message.starts_with("weight:") {
        format!("update_weights.weight_infos[0].{message}")
    } else {
        return status;
    };
    Status::new(status.code(), renamed)
}

/// Mesos' names for this master's flags.
pub fn flags(config: &Config) -> Vec<(String, String)> {
    let secs = |d: std::time::Duration| format!("{}secs", d.as_secs_f64());
    let path = |p: &Option<std::path::PathBuf>| p.as_ref().map(|p| p.display().to_string());
    let mut out = vec![
        ("id".to_string(), config.id.to_string()),
        ("advertise".into(), config.advertise.clone()),
        (
            "peers".into(),
            config
                .peers
                .iter()
                .map(|(id, a)| format!("{id}={a}"))
                .collect::<Vec<_>>()
                .join(","),
        ),
        ("work_dir".into(), config.work_dir.display().to_string()),
        (
            "allocation_interval".into(),
            secs(config.allocation_interval),
        ),
        (
            "offer_timeout".into(),
            config.offer_timeout.map(secs).unwrap_or_default(),
        ),
        ("agent_ping_timeout".into(), secs(config.agent_ping_timeout)),
        (
            "max_agent_ping_timeouts".into(),
            config.max_agent_ping_timeouts.to_string(),
        ),
        (
            "max_completed_tasks_per_framework".into(),
            config
                .retention
                .max_completed_tasks_per_framework
                .to_string(),
        ),
        (
            "max_completed_frameworks".into(),
            config.retention.max_completed_frameworks.to_string(),
        ),
        ("join".into(), config.join.to_string()),
        (
            "authenticate_http_readonly".into(),
            config.security.authenticate_http_readonly.to_string(),
        ),
        ("insecure".into(), config.security.insecure.to_string()),
        ("tls".into(), config.security.tls.is_some().to_string()),
    ];
    for (name, value) in [
        ("credentials", path(&config.security.credentials)),
        ("acls", path(&config.security.acls)),
    ] {
        if let Some(v) = value {
            out.push((name.into(), v));
        }
    }
    out
}

pub fn get_flags(config: &Config) -> op::response::GetFlags {
    op::response::GetFlags {
        flags: flags(config)
            .into_iter()
            .map(|(name, value)| mesos::Flag {
                name,
                value: Some(value),
            })
            .collect(),
    }
}

/// Mesos' master metrics, by Mesos' names. Counts of tasks by state are of the tasks the
/// registry keeps (retention bounds the finished ones), not counters since start. The
/// cluster's figures are the leader's: a follower reports only `master/elected` (0) and its
/// uptime.
pub fn metrics(
    facts: &MasterFacts,
    now_ms: u64,
    counts: Option<&ClusterCounts>,
) -> Vec<(String, f64)> {
    let mut out = vec![
        (
            "master/elected".to_string(),
            if facts.elected { 1.0 } else { 0.0 },
        ),
        (
            "master/uptime_secs".to_string(),
            secs(now_ms.saturating_sub(facts.started_ms)),
        ),
    ];
    let Some(c) = counts else {
        return out;
    };
    let mut put = |name: &str, value: f64| out.push((format!("master/{name}"), value));
    put("slaves_active", c.agents_active as f64);
    put("slaves_inactive", 0.0);
    put("slaves_connected", c.agents_connected as f64);
    put(
        "slaves_disconnected",
        c.agents_active.saturating_sub(c.agents_connected) as f64,
    );
    put("slaves_unreachable", c.agents_unreachable as f64);
    put("frameworks_active", c.frameworks_active as f64);
    put("frameworks_inactive", c.frameworks_disconnected as f64);
    put("frameworks_connected", c.frameworks_active as f64);
    put("frameworks_disconnected", c.frameworks_disconnected as f64);
    put("outstanding_offers", c.outstanding_offers as f64);
    for state in TaskState::ALL {
        if state == TaskState::TaskUnknown {
            continue;
        }
        let name = state.name().to_ascii_lowercase();
        put(
            &name.replacen("task_", "tasks_", 1),
            c.tasks_in(state) as f64,
        );
    }
    for resource in ["cpus", "mem", "disk", "gpus"] {
        let total = c.total.scalar_total(resource).as_f64();
        let used = c.used.scalar_total(resource).as_f64();
        put(&format!("{resource}_total"), total);
        put(&format!("{resource}_used"), used);
        put(
            &format!("{resource}_percent"),
            if total > 0.0 { used / total } else { 0.0 },
        );
    }
    out
}

pub fn get_metrics(metrics: Vec<(String, f64)>) -> op::response::GetMetrics {
    op::response::GetMetrics {
        metrics: metrics
            .into_iter()
            .map(|(name, value)| mesos::Metric {
                name,
                value: Some(value),
            })
            .collect(),
    }
}

/// `/metrics/snapshot`: the metrics as one JSON object.
pub fn metrics_json(metrics: Vec<(String, f64)>) -> serde_json::Value {
    serde_json::Value::Object(
        metrics
            .into_iter()
            .map(|(name, value)| (name, json!(value)))
            .collect(),
    )
}

pub fn get_master(facts: &MasterFacts) -> op::response::GetMaster {
    op::response::GetMaster {
        master_info: Some(master_info(facts.id, &facts.address)),
        start_time: Some(secs(facts.started_ms)),
        elected_time: (facts.elected_ms > 0).then(|| secs(facts.elected_ms)),
    }
}

fn response(kind: op::response::Type) -> op::Response {
    let mut r = op::Response::default();
    r.set_type(kind);
    r
}

/// A synchronous answer of `kind` with `fill` setting its member.
pub fn answer(kind: op::response::Type, fill: impl FnOnce(&mut op::Response)) -> op::Response {
    let mut r = response(kind);
    fill(&mut r);
    r
}

fn event(kind: op::event::Type) -> op::Event {
    let mut e = op::Event::default();
    e.set_type(kind);
    e
}

/// The first event of an operator's stream.
pub fn subscribed(state: op::response::GetState, heartbeat: std::time::Duration) -> op::Event {
    op::Event {
        subscribed: Some(op::event::Subscribed {
            get_state: Some(state),
            heartbeat_interval_seconds: Some(heartbeat.as_secs_f64()),
        }),
        ..event(op::event::Type::Subscribed)
    }
}

pub fn heartbeat() -> op::Event {
    event(op::event::Type::Heartbeat)
}

/// One of the leader's cluster events as an operator event.
pub fn cluster_event_to_mesos(e: &ClusterEvent) -> op::Event {
    use op::event::Type;
    match e {
        ClusterEvent::TaskAdded(t) => op::Event {
            task_added: Some(op::event::TaskAdded {
                task: task_to_mesos(t),
            }),
            ..event(Type::TaskAdded)
        },
        ClusterEvent::TaskUpdated(t) => {
            let mut updated = op::event::TaskUpdated {
                framework_id: framework_id(&t.framework_id),
                status: task_status(t),
                ..Default::default()
            };
            updated.set_state(task_state_to_mesos(t.state, true));
            op::Event {
                task_updated: Some(updated),
                ..event(Type::TaskUpdated)
            }
        }
        ClusterEvent::AgentAdded(a) => op::Event {
            agent_added: Some(op::event::AgentAdded {
                agent: agent_to_mesos(a, &Allocation::default()),
            }),
            ..event(Type::AgentAdded)
        },
        ClusterEvent::AgentRemoved(id) => op::Event {
            agent_removed: Some(op::event::AgentRemoved {
                agent_id: agent_id(id),
            }),
            ..event(Type::AgentRemoved)
        },
        ClusterEvent::FrameworkAdded(f) => op::Event {
            framework_added: Some(op::event::FrameworkAdded {
                framework: framework_to_mesos(f, &Allocation::default(), vec![]),
            }),
            ..event(Type::FrameworkAdded)
        },
        ClusterEvent::FrameworkUpdated(f) => op::Event {
            framework_updated: Some(op::event::FrameworkUpdated {
                framework: framework_to_mesos(f, &Allocation::default(), vec![]),
            }),
            ..event(Type::FrameworkUpdated)
        },
        ClusterEvent::FrameworkRemoved(c) => op::Event {
            framework_removed: Some(op::event::FrameworkRemoved {
                framework_info: framework_info(&c.framework),
            }),
            ..event(Type::FrameworkRemoved)
        },
    }
}

// ---------------------------------------------------------------------------------------
// v0: `/master/state` (`/state.json`), in the shape Mesos' state.json has.
// ---------------------------------------------------------------------------------------

fn task_json(t: &Task) -> serde_json::Value {
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

#[cfg(test)]
mod tests {
    use super::*;
    use agora_mesos_proto::MesosJson;

    fn facts(elected: bool) -> MasterFacts {
        MasterFacts {
            id: 1,
            address: "127.0.0.1:5050".into(),
            leader: Some("127.0.0.1:5050".into()),
            elected,
            started_ms: 1_000,
            elected_ms: 2_000,
        }
    }

    #[test]
    fn metrics_have_mesos_names() {
        let mut counts = ClusterCounts {
            agents_active: 2,
            agents_connected: 1,
            frameworks_active: 1,
            total: Resources::parse("cpus:4;mem:1024").unwrap(),
            used: Resources::parse("cpus:1;mem:256").unwrap(),
            ..Default::default()
        };
        counts.tasks.insert(TaskState::TaskRunning, 3);
        counts.tasks.insert(TaskState::TaskGoneByOperator, 1);
        let m: BTreeMap<String, f64> = metrics(&facts(true), 11_000, Some(&counts))
            .into_iter()
            .collect();
        for (name, value) in [
            ("master/elected", 1.0),
            ("master/uptime_secs", 10.0),
            ("master/slaves_active", 2.0),
            ("master/slaves_connected", 1.0),
            ("master/slaves_disconnected", 1.0),
            ("master/tasks_running", 3.0),
            ("master/tasks_gone_by_operator", 1.0),
            ("master/tasks_finished", 0.0),
            ("master/cpus_total", 4.0),
            ("master/cpus_used", 1.0),
            ("master/cpus_percent", 0.25),
            ("master/mem_percent", 0.25),
            ("master/gpus_percent", 0.0),
        ] {
            assert_eq!(m.get(name), Some(&value), "{name}: {m:?}");
        }
        assert!(!m.contains_key("master/tasks_unknown"));
        // A follower says only that it is not elected, and its uptime.
        let m = metrics(&facts(false), 11_000, None);
        assert_eq!(
            m,
            vec![
                ("master/elected".to_string(), 0.0),
                ("master/uptime_secs".to_string(), 10.0)
            ]
        );
    }

    #[test]
    fn update_weights_names_mesos_fields() {
        let c = op::Call::from_json(
            br#"{"type":"UPDATE_WEIGHTS","update_weights":{"weight_infos":[
                {"weight":2,"role":"a"},{"weight":3}]}}"#,
        )
        .unwrap();
        let e = update_weights_from_mesos(&c).unwrap_err();
        assert_eq!(e.message(), "update_weights.weight_infos[1].role: missing");
        let c = op::Call::from_json(br#"{"type":"UPDATE_WEIGHTS"}"#).unwrap();
        assert_eq!(
            update_weights_from_mesos(&c).unwrap_err().message(),
            "update_weights: missing"
        );
        let renamed = update_weights_fields(invalid("weights[1].weight", "-1 is not"));
        assert_eq!(
            renamed.message(),
            "update_weights.weight_infos[1].weight: -1 is not"
        );
        let renamed = update_weights_fields(invalid("role", "bad"));
        assert_eq!(
            renamed.message(),
            "update_weights.weight_infos[0].role: bad"
        );
        let other = update_weights_fields(Status::permission_denied("principal x may not"));
        assert_eq!(other.message(), "principal x may not");
    }

    fn task(state: TaskState, launch: Vec<u8>) -> Task {
        Task {
            id: agora_registry::TaskId::new("t1").unwrap(),
            framework_id: agora_registry::FrameworkId::new("f1").unwrap(),
            agent_id: agora_registry::AgentId::new("a1").unwrap(),
            name: "t".into(),
            resources: Resources::parse("cpus:0.5;mem:64;ports:[31000-31001]").unwrap(),
            state,
            message: Some("m".into()),
            exit_code: None,
            updated_at_ms: 1_500,
            launch,
            user: "u".into(),
        }
    }

    #[test]
    fn tasks_show_their_latest_status_and_own_executor() {
        use prost::Message;
        let staging = task_to_mesos(&task(TaskState::TaskStaging, vec![]));
        assert_eq!(staging.state(), mesos::TaskState::TaskStaging);
        assert!(staging.statuses.is_empty() && staging.executor_id.is_none());
        assert_eq!(staging.resources.len(), 3);
        // The operator sees the real state, not TASK_LOST.
        let gone = task_to_mesos(&task(TaskState::TaskGone, vec![]));
        assert_eq!(gone.state(), mesos::TaskState::TaskGone);
        assert_eq!(gone.statuses[0].timestamp, Some(1.5));
        assert_eq!(gone.statuses[0].message.as_deref(), Some("m"));

        let launch = pb::TaskInfo {
            task_id: "t1".into(),
            executor: Some(pb::ExecutorInfo {
                command: "./my-executor".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
        .encode_to_vec();
        let own = task(TaskState::TaskRunning, launch);
        assert_eq!(task_to_mesos(&own).executor_id.unwrap().value, "t1");
        let e = custom_executor(&own).unwrap();
        assert_eq!(e.r#type(), mesos::executor_info::Type::Custom);
        assert_eq!(e.command.unwrap().value.as_deref(), Some("./my-executor"));
        let json = task_json(&own);
        assert_eq!(json["executor_id"], "t1");
        assert_eq!(json["resources"]["ports"], "[31000-31001]");
        assert_eq!(json["statuses"][0]["state"], "TASK_RUNNING");

        // A Mesos framework's executor: as it gave it, with its own id.
        let given = mesos::ExecutorInfo {
            executor_id: mesos::ExecutorId {
                value: "my-exec".into(),
            },
            name: Some("mine".into()),
            ..Default::default()
        };
        let launch = pb::TaskInfo {
            task_id: "t1".into(),
            executor: Some(pb::ExecutorInfo {
                command: "./my-executor".into(),
                executor_id: "my-exec".into(),
                mesos_executor_info: given.encode_to_vec(),
                ..Default::default()
            }),
            ..Default::default()
        }
        .encode_to_vec();
        let mesos_own = task(TaskState::TaskRunning, launch);
        let e = custom_executor(&mesos_own).unwrap();
        assert_eq!(e.executor_id.value, "my-exec");
        assert_eq!(e.name.as_deref(), Some("mine"));
        assert!(e.framework_id.is_some());
        assert_eq!(task_json(&mesos_own)["executor_id"], "my-exec");
    }
}
