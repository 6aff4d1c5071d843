//! The registry's objects (tasks, agents, frameworks, offers) as Mesos' v1 operator
//! messages, and the GET_* queries (agents, frameworks, tasks, executors, state, roles)
//! answered from what a principal may see ([`Visible`]).

use std::collections::BTreeMap;

use agora_mesos_proto::v1 as mesos;
use agora_mesos_proto::v1::master as op;
use agora_proto::v1 as pb;
use agora_registry::{
    Agent, AgentStatus, Allocation, CompletedFramework, Framework, FrameworkStatus, Offer,
    Resources, Task, TaskState,
};

use super::{agent_id, framework_id, resources, secs, time_info};
use crate::convert::mesos::{attribute_to_mesos, task_state_to_mesos};
use crate::leader::views::Visible;

/// The executor a task runs under, if it is the framework's own (from the launch record:
/// the gRPC API's TaskInfo): as the Mesos framework gave it, or for one of the gRPC API
/// built from its command. Agora starts one executor per task; its id is the one the
/// framework named, else the task's.
pub(super) fn custom_executor(t: &Task) -> Option<mesos::ExecutorInfo> {
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
pub(super) fn framework_info(f: &Framework) -> mesos::FrameworkInfo {
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
