//! The master's one conversion layer between generated proto types and domain types:
//! requests in, events, commands, offers and task states out (the calls and session
//! messages are in [`sessions`]). Every inbound conversion validates and names the
//! offending field in an INVALID_ARGUMENT status.

use agora_proto::v1 as pb;
use agora_registry::resources::{Ranges, SummaryValue};
use agora_registry::{
    Agent, AgentId, AgentInfo, AgentStatus, Allocation, Framework, FrameworkStatus,
    RegistrationOrder, Resource, Resources, Scalar, Task, TaskState, Value,
};
use tonic::Status;

pub mod limits;
pub mod mesos;
pub mod mesos_operator;
mod sessions;

pub use sessions::*;

/// A name shown to people (see [`agora_registry::validate_name`]), or INVALID_ARGUMENT
/// naming `field`.
pub fn name(value: &str, field: &str) -> Result<(), Status> {
    agora_registry::validate_name(value).map_err(|e| invalid(field, e))
}

/// An agent's HOST:PORT: at most [`limits::MAX_ADDRESS_BYTES`], printable, or
/// INVALID_ARGUMENT naming `field`.
pub fn agent_address(value: &str, field: &str) -> Result<(), Status> {
    limits::bytes(field, value.as_bytes(), limits::MAX_ADDRESS_BYTES)?;
    if value.chars().any(char::is_control) || !crate::config::is_host_port(value) {
        return Err(invalid(field, format!("{value:?} is not HOST:PORT")));
    }
    Ok(())
}

/// INVALID_ARGUMENT naming `field`.
pub fn invalid(field: &str, reason: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("{field}: {reason}"))
}

pub fn resources_from_proto(items: &[pb::Resource], field: &str) -> Result<Resources, Status> {
    // Counted before anything is converted (200,000 items used to be converted one by one).
    limits::count(field, items.len(), agora_registry::resources::MAX_RESOURCES)?;
    let mut out = Vec::with_capacity(items.len());
    for (i, r) in items.iter().enumerate() {
        let f = format!("{field}[{i}]");
        let value = match &r.value {
            Some(pb::resource::Value::Scalar(x)) => {
                Value::Scalar(Scalar::from_f64(*x).map_err(|e| invalid(&format!("{f}.scalar"), e))?)
            }
            Some(pb::resource::Value::Ranges(rs)) => Value::Ranges(
                Ranges::new(rs.range.iter().map(|r| (r.begin, r.end)))
                    .map_err(|e| invalid(&format!("{f}.ranges"), e))?,
            ),
            None => return Err(invalid(&format!("{f}.value"), "missing")),
        };
        out.push(Resource {
            name: r.name.clone(),
            role: (!r.role.is_empty() && r.role != "*").then(|| r.role.clone()),
            value,
        });
    }
    Resources::from_checked(out).map_err(|e| invalid(field, e))
}

pub fn resources_to_proto(res: &Resources) -> Vec<pb::Resource> {
    res.iter()
        .map(|r| pb::Resource {
            name: r.name.clone(),
            role: r.role.clone().unwrap_or_default(),
            value: Some(match &r.value {
                Value::Scalar(s) => pb::resource::Value::Scalar(s.as_f64()),
                Value::Ranges(rs) => pb::resource::Value::Ranges(pb::Ranges {
                    range: rs
                        .pairs()
                        .iter()
                        .map(|&(begin, end)| pb::Range { begin, end })
                        .collect(),
                }),
            }),
        })
        .collect()
}

/// Validates an agent's registration. `assign_id` supplies an id for a first
/// registration (empty `id`).
pub fn agent_info_from_proto(
    info: Option<pb::AgentInfo>,
    assign_id: impl FnOnce() -> AgentId,
) -> Result<AgentInfo, Status> {
    let info = info.ok_or_else(|| invalid("agent", "missing"))?;
    let id = if info.id.is_empty() {
        assign_id()
    } else {
        AgentId::new(info.id).map_err(|e| invalid("agent.id", e))?
    };
    name(&info.hostname, "agent.hostname")?;
    agent_address(&info.address, "agent.address")?;
    let resources = resources_from_proto(&info.resources, "agent.resources")?;
    limits::count(
        "agent.attributes",
        info.attributes.len(),
        limits::MAX_ATTRIBUTES,
    )?;
    let mut attributes = Vec::with_capacity(info.attributes.len());
    for (i, a) in info.attributes.into_iter().enumerate() {
        name(&a.key, &format!("agent.attributes[{i}].key"))?;
        if !a.value.is_empty() {
            name(&a.value, &format!("agent.attributes[{i}].value"))?;
        }
        attributes.push((a.key, a.value));
    }
    Ok(AgentInfo {
        id,
        hostname: info.hostname,
        address: info.address,
        resources,
        attributes,
        // Set from the authenticated caller, never from the request.
        principal: None,
        // Set from the request around it (see [`registration_order`]).
        registration: None,
    })
}

/// A registration's order from its request's `incarnation` and `attempt`; none when both
/// are 0 (a registrant that does not order its registrations).
pub fn registration_order(incarnation: u64, attempt: u64) -> Option<RegistrationOrder> {
    (incarnation != 0 || attempt != 0).then_some(RegistrationOrder {
        incarnation,
        attempt,
    })
}

pub fn agent_info_to_proto(info: &AgentInfo) -> pb::AgentInfo {
    pb::AgentInfo {
        id: info.id.to_string(),
        hostname: info.hostname.clone(),
        address: info.address.clone(),
        resources: resources_to_proto(&info.resources),
        attributes: info
            .attributes
            .iter()
            .map(|(k, v)| pb::Attribute {
                key: k.clone(),
                value: v.clone(),
            })
            .collect(),
    }
}

pub fn agent_to_proto(agent: &Agent, alloc: &Allocation, live_tasks: usize) -> pb::AgentState {
    pb::AgentState {
        info: Some(agent_info_to_proto(&agent.info)),
        active: agent.status == AgentStatus::Active,
        used: resources_to_proto(&alloc.used),
        offered: resources_to_proto(&alloc.offered),
        deactivated: agent.deactivated,
        drain: agent.drain.map(|d| pb::AgentDrain {
            state: drain_state_name(d.state).to_string(),
            started_ms: d.started_ms,
            deadline_ms: d.deadline_ms,
            mark_gone: d.mark_gone,
        }),
        live_tasks: live_tasks.min(u32::MAX as usize) as u32,
    }
}

/// A drain's state as the API spells it.
pub fn drain_state_name(state: agora_registry::DrainState) -> &'static str {
    match state {
        agora_registry::DrainState::Draining => "DRAINING",
        agora_registry::DrainState::Drained => "DRAINED",
    }
}

pub fn framework_to_proto(f: &Framework, alloc: &Allocation) -> pb::FrameworkState {
    pb::FrameworkState {
        id: f.info.id.to_string(),
        name: f.info.name.clone(),
        role: f.info.role.clone(),
        active: f.status == FrameworkStatus::Active,
        used: resources_to_proto(&alloc.used),
        offered: resources_to_proto(&alloc.offered),
    }
}

pub fn task_to_proto(t: &Task) -> pb::Task {
    pb::Task {
        id: t.id.to_string(),
        framework_id: t.framework_id.to_string(),
        agent_id: t.agent_id.to_string(),
        name: t.name.clone(),
        state: task_state_to_proto(t.state) as i32,
        resources: resources_to_proto(&t.resources),
        message: t.message.clone().unwrap_or_default(),
    }
}

/// The wire's task state.
pub fn task_state_to_proto(state: TaskState) -> pb::TaskState {
    match state {
        TaskState::TaskStaging => pb::TaskState::TaskStaging,
        TaskState::TaskStarting => pb::TaskState::TaskStarting,
        TaskState::TaskRunning => pb::TaskState::TaskRunning,
        TaskState::TaskKilling => pb::TaskState::TaskKilling,
        TaskState::TaskFinished => pb::TaskState::TaskFinished,
        TaskState::TaskFailed => pb::TaskState::TaskFailed,
        TaskState::TaskKilled => pb::TaskState::TaskKilled,
        TaskState::TaskError => pb::TaskState::TaskError,
        TaskState::TaskLost => pb::TaskState::TaskLost,
        TaskState::TaskDropped => pb::TaskState::TaskDropped,
        TaskState::TaskUnreachable => pb::TaskState::TaskUnreachable,
        TaskState::TaskGone => pb::TaskState::TaskGone,
        TaskState::TaskGoneByOperator => pb::TaskState::TaskGoneByOperator,
        TaskState::TaskUnknown => pb::TaskState::TaskUnknown,
    }
}

/// A task state from the wire; unset or unknown numbers are refused, naming `field`.
pub fn task_state_from_proto(value: i32, field: &str) -> Result<TaskState, Status> {
    let state = pb::TaskState::try_from(value)
        .map_err(|_| invalid(field, format!("{value} is not a task state")))?;
    Ok(match state {
        pb::TaskState::Unspecified => return Err(invalid(field, "unset")),
        pb::TaskState::TaskStaging => TaskState::TaskStaging,
        pb::TaskState::TaskStarting => TaskState::TaskStarting,
        pb::TaskState::TaskRunning => TaskState::TaskRunning,
        pb::TaskState::TaskKilling => TaskState::TaskKilling,
        pb::TaskState::TaskFinished => TaskState::TaskFinished,
        pb::TaskState::TaskFailed => TaskState::TaskFailed,
        pb::TaskState::TaskKilled => TaskState::TaskKilled,
        pb::TaskState::TaskError => TaskState::TaskError,
        pb::TaskState::TaskLost => TaskState::TaskLost,
        pb::TaskState::TaskDropped => TaskState::TaskDropped,
        pb::TaskState::TaskUnreachable => TaskState::TaskUnreachable,
        pb::TaskState::TaskGone => TaskState::TaskGone,
        pb::TaskState::TaskGoneByOperator => TaskState::TaskGoneByOperator,
        pb::TaskState::TaskUnknown => TaskState::TaskUnknown,
    })
}

pub fn member_to_proto(m: crate::quorum::Member) -> pb::Member {
    pb::Member {
        id: m.id,
        address: m.address,
        voter: m.voter,
    }
}

/// Resources as the JSON object of `/state`: `{"cpus":4.0,"mem":8192.0,"ports":"[31000-32000]"}`.
pub fn resources_json(res: &Resources) -> serde_json::Value {
    let map = res
        .summary()
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                SummaryValue::Number(n) => serde_json::json!(n),
                SummaryValue::Ranges(r) => serde_json::json!(r.to_string()),
            };
            (k, v)
        })
        .collect();
    serde_json::Value::Object(map)
}

/// A sandbox grant for its client.
pub fn sandbox_access_to_proto(a: crate::leader::SandboxAccess) -> pb::SandboxAccessReply {
    pb::SandboxAccessReply {
        agent_id: a.agent_id.to_string(),
        agent_address: a.agent_address,
        path: a.path,
        token: a.token,
        expires_ms: a.expires_ms,
        framework_id: a.framework_id.to_string(),
        state: task_state_to_proto(a.state) as i32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar(name: &str, x: f64) -> pb::Resource {
        pb::Resource {
            name: name.into(),
            role: String::new(),
            value: Some(pb::resource::Value::Scalar(x)),
        }
    }

    fn accept_of(task: pb::TaskInfo) -> Result<crate::leader::AcceptCall, Status> {
        accept_from_proto(
            &pb::AcceptRequest {
                offer_ids: vec!["o-1-O1".into()],
                tasks: vec![task],
                ..Default::default()
            },
            "alice",
        )
    }

    fn task() -> pb::TaskInfo {
        pb::TaskInfo {
            task_id: "t".into(),
            command: "true".into(),
            resources: vec![scalar("cpus", 0.5), scalar("mem", 64.0)],
            ..Default::default()
        }
    }

    #[test]
    fn an_executors_own_resources_are_counted_with_its_tasks() {
        let mut t = task();
        t.executor = Some(pb::ExecutorInfo {
            command: "./exec".into(),
            resources: vec![scalar("cpus", 0.25), scalar("mem", 32.0)],
            ..Default::default()
        });
        let call = accept_of(t.clone()).unwrap();
        let r = &call.tasks[0].resources;
        assert_eq!(r.scalar_total("cpus").as_f64(), 0.75);
        assert_eq!(r.scalar_total("mem").as_f64(), 96.0);
        t.executor.as_mut().unwrap().resources = vec![scalar("mem", -1.0)];
        let e = accept_of(t).unwrap_err();
        assert!(
            e.message().starts_with("tasks[0].executor.resources"),
            "{}",
            e.message()
        );
    }

    #[test]
    fn a_container_is_checked_field_by_field() {
        let with = |c: pb::ContainerInfo| {
            let mut t = task();
            t.container = Some(c);
            accept_of(t)
        };
        let image = |i: &str| pb::ContainerInfo {
            image: i.into(),
            ..Default::default()
        };
        // No command: the image's own.
        let ok = with(image("busybox")).unwrap();
        assert_eq!(ok.tasks[0].user, "alice");
        let launched =
            <pb::TaskInfo as prost::Message>::decode(ok.tasks[0].launch.as_slice()).unwrap();
        assert_eq!(launched.user, "", "the task's own user only");
        assert_eq!(launched.container.unwrap().framework_user, "alice");
        for (c, field) in [
            (image(""), "tasks[0].container.image"),
            (image("Busybox"), "tasks[0].container.image"),
            (
                pb::ContainerInfo {
                    volumes: vec![pb::Volume {
                        host_path: "/srv/../etc".into(),
                        container_path: "/x".into(),
                        read_only: false,
                    }],
                    ..image("busybox")
                },
                "tasks[0].container.volumes[0].host_path",
            ),
            (
                pb::ContainerInfo {
                    port_mappings: vec![pb::PortMapping {
                        host_port: 31000,
                        container_port: 80,
                    }],
                    ..image("busybox")
                },
                "tasks[0].container.port_mappings",
            ),
            (
                pb::ContainerInfo {
                    network: pb::ContainerNetwork::Isolated as i32,
                    port_mappings: vec![pb::PortMapping {
                        host_port: 31000,
                        container_port: 80,
                    }],
                    ..image("busybox")
                },
                "tasks[0].container.port_mappings[0].host_port",
            ),
        ] {
            let e = with(c).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument);
            assert!(e.message().starts_with(field), "{}", e.message());
        }
        let mut t = task();
        t.container = Some(image("busybox"));
        t.executor = Some(pb::ExecutorInfo {
            command: "./exec".into(),
            ..Default::default()
        });
        assert!(accept_of(t).is_err());
    }

    #[test]
    fn bad_resources_name_the_field() {
        for (bad, field) in [
            (scalar("cpus", -1.0), "agent.resources[0].scalar"),
            (scalar("cpus", f64::NAN), "agent.resources[0].scalar"),
            (scalar("cpus", f64::INFINITY), "agent.resources[0].scalar"),
            (scalar("c pus", 1.0), "agent.resources"),
        ] {
            let err = resources_from_proto(&[bad], "agent.resources").unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument);
            assert!(err.message().starts_with(field), "{}", err.message());
        }
        let missing = pb::Resource {
            name: "x".into(),
            role: String::new(),
            value: None,
        };
        assert!(resources_from_proto(&[missing], "r")
            .unwrap_err()
            .message()
            .starts_with("r[0].value"));
    }

    #[test]
    fn agent_info_validation() {
        let ok = pb::AgentInfo {
            id: String::new(),
            hostname: "h".into(),
            address: "h:5051".into(),
            resources: vec![scalar("cpus", 2.0)],
            attributes: vec![],
        };
        let info =
            agent_info_from_proto(Some(ok.clone()), || AgentId::new("new").unwrap()).unwrap();
        assert_eq!(info.id.as_str(), "new");
        let back = agent_info_to_proto(&info);
        assert_eq!(back.resources, ok.resources);
        for (mutate, field) in [
            (
                Box::new(|a: &mut pb::AgentInfo| a.address = "nope".into())
                    as Box<dyn Fn(&mut pb::AgentInfo)>,
                "agent.address",
            ),
            (
                Box::new(|a: &mut pb::AgentInfo| a.address = format!("{}:1", "h".repeat(300))),
                "agent.address",
            ),
            (
                Box::new(|a: &mut pb::AgentInfo| a.address = "h\n:5051".into()),
                "agent.address",
            ),
            (
                Box::new(|a: &mut pb::AgentInfo| a.hostname = " ".into()),
                "agent.hostname",
            ),
            (
                Box::new(|a: &mut pb::AgentInfo| a.id = "a/b".into()),
                "agent.id",
            ),
        ] {
            let mut a = ok.clone();
            mutate(&mut a);
            let err = agent_info_from_proto(Some(a), || AgentId::new("x").unwrap()).unwrap_err();
            assert!(err.message().starts_with(field), "{}", err.message());
        }
        assert!(agent_info_from_proto(None, || AgentId::new("x").unwrap())
            .unwrap_err()
            .message()
            .starts_with("agent"));
    }
}
