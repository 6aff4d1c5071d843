//! Conversions of the calls and session messages of frameworks and agents.

use std::time::Duration;

use agora_proto::v1 as pb;
use agora_registry::{AgentId, FrameworkId, OfferId, TaskId, TaskSpec};
use prost::Message;
use tonic::Status;

use super::{
    invalid, resources_from_proto, resources_to_proto, task_state_from_proto, task_state_to_proto,
};
use crate::leader::messages::{
    AgentCommand, AgentReport, AgentUpdate, FrameworkEvent, FrameworkMessage, OfferView, TaskStatus,
};
use crate::leader::{AcceptCall, ReportedTask, SubscribeCall, DEFAULT_REFUSE};

fn parse_id<T>(
    text: &str,
    field: &str,
    parse: impl FnOnce(String) -> Result<T, agora_registry::IdError>,
) -> Result<T, Status> {
    parse(text.to_string()).map_err(|e| invalid(field, e))
}

pub fn framework_id(text: &str, field: &str) -> Result<FrameworkId, Status> {
    parse_id(text, field, FrameworkId::new)
}

pub fn agent_id(text: &str, field: &str) -> Result<AgentId, Status> {
    parse_id(text, field, AgentId::new)
}

pub fn task_id(text: &str, field: &str) -> Result<TaskId, Status> {
    parse_id(text, field, TaskId::new)
}

/// Offer ids, each valid and none twice (`field[i]` names a bad one).
pub fn offer_ids(ids: &[String], field: &str, distinct: bool) -> Result<Vec<OfferId>, Status> {
    let parsed = ids
        .iter()
        .enumerate()
        .map(|(i, o)| parse_id(o, &format!("{field}[{i}]"), OfferId::new))
        .collect::<Result<Vec<_>, _>>()?;
    if distinct {
        for (i, o) in parsed.iter().enumerate() {
            if parsed[..i].contains(o) {
                return Err(invalid(
                    &format!("{field}[{i}]"),
                    format!("{o} is listed twice"),
                ));
            }
        }
    }
    Ok(parsed)
}

/// How long to refuse declined resources (`filters.refuse_seconds`, default 5 s).
pub fn refuse_from_proto(filters: Option<&pb::Filters>) -> Result<Duration, Status> {
    let secs = filters
        .and_then(|f| f.refuse_seconds)
        .unwrap_or(DEFAULT_REFUSE.as_secs_f64());
    if !secs.is_finite() || secs < 0.0 {
        return Err(invalid(
            "filters.refuse_seconds",
            format!("{secs} is not a finite, non-negative number"),
        ));
    }
    if secs > super::limits::MAX_REFUSE.as_secs_f64() {
        return Err(invalid(
            "filters.refuse_seconds",
            format!(
                "{secs} s, at most {} s (a year)",
                super::limits::MAX_REFUSE.as_secs()
            ),
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A subscription request.
pub fn subscribe_from_proto(req: pb::SubscribeRequest) -> Result<SubscribeCall, Status> {
    let info = req
        .framework
        .ok_or_else(|| invalid("framework", "missing"))?;
    super::name(&info.name, "framework.name")?;
    if info.roles.len() != 1 {
        return Err(invalid("framework.roles", "give exactly one role"));
    }
    let role = info.roles[0].clone();
    agora_registry::resources::validate_framework_role(&role)
        .map_err(|e| invalid("framework.roles[0]", e))?;
    let failover = info.failover_timeout_seconds;
    let max_failover = super::limits::MAX_FAILOVER_TIMEOUT.as_secs_f64();
    if !failover.is_finite() || !(0.0..=max_failover).contains(&failover) {
        return Err(invalid(
            "framework.failover_timeout_seconds",
            format!("{failover} is not a number of seconds in [0, {max_failover}] (a year)"),
        ));
    }
    if !info.principal.is_empty() {
        super::name(&info.principal, "framework.principal")?;
    }
    if !info.user.is_empty() {
        user_name(&info.user, "framework.user")?;
    }
    let id = if info.id.is_empty() {
        None
    } else {
        Some(framework_id(&info.id, "framework.id")?)
    };
    Ok(SubscribeCall {
        id,
        name: info.name,
        role,
        principal: (!info.principal.is_empty()).then_some(info.principal),
        failover_timeout_ms: (failover * 1000.0) as u64,
        user: info.user,
    })
}

/// The user a task runs as when neither it nor its framework names one.
pub const DEFAULT_TASK_USER: &str = "root";

/// A Unix user name: 1 to 32 of `[A-Za-z0-9._-]`, not starting with `-`.
pub fn user_name(name: &str, field: &str) -> Result<(), Status> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("{name:?} is not a user name (1-32 of letters, digits, '.', '_', '-')"),
        ))
    }
}

/// An accept's offers, tasks and filters (the caller is checked before). Each task runs
/// as its own user, else `framework_user`, else [`DEFAULT_TASK_USER`]; the resolved user
/// is written into the task description the agent gets.
pub fn accept_from_proto(
    req: &pb::AcceptRequest,
    framework_user: &str,
) -> Result<AcceptCall, Status> {
    use super::limits;
    if req.offer_ids.is_empty() {
        return Err(invalid("offer_ids", "empty"));
    }
    limits::count(
        "offer_ids",
        req.offer_ids.len(),
        limits::MAX_OFFERS_PER_CALL,
    )?;
    limits::count("tasks", req.tasks.len(), limits::MAX_TASKS_PER_ACCEPT)?;
    let offer_ids = offer_ids(&req.offer_ids, "offer_ids", true)?;
    let refuse = refuse_from_proto(req.filters.as_ref())?;
    let mut tasks: Vec<TaskSpec> = Vec::with_capacity(req.tasks.len());
    for (i, t) in req.tasks.iter().enumerate() {
        let id = task_id(&t.task_id, &format!("tasks[{i}].task_id"))?;
        if tasks.iter().any(|s| s.id == id) {
            return Err(invalid(
                &format!("tasks[{i}].task_id"),
                format!("{id} is listed twice"),
            ));
        }
        if let Some(c) = &t.container {
            let task_ports: Vec<(u64, u64)> = t
                .resources
                .iter()
                .filter(|r| r.name == "ports")
                .flat_map(|r| match &r.value {
                    Some(pb::resource::Value::Ranges(rs)) => {
                        rs.range.iter().map(|x| (x.begin, x.end)).collect()
                    }
                    _ => Vec::new(),
                })
                .collect();
            container(c, &task_ports, &format!("tasks[{i}].container"))?;
            if t.executor.is_some() {
                return Err(invalid(
                    &format!("tasks[{i}].container"),
                    "a container runs under the built-in command executor: not with tasks[].executor",
                ));
            }
        } else if t.command.trim().is_empty() {
            return Err(invalid(&format!("tasks[{i}].command"), "empty"));
        }
        limits::bytes(
            &format!("tasks[{i}].command"),
            t.command.as_bytes(),
            limits::MAX_COMMAND_BYTES,
        )?;
        if let Some(e) = &t.executor {
            limits::bytes(
                &format!("tasks[{i}].executor.command"),
                e.command.as_bytes(),
                limits::MAX_COMMAND_BYTES,
            )?;
            limits::count(
                &format!("tasks[{i}].executor.env"),
                e.env.len(),
                limits::MAX_ENV_VARS,
            )?;
        }
        limits::count(&format!("tasks[{i}].uris"), t.uris.len(), limits::MAX_URIS)?;
        for (j, u) in t.uris.iter().enumerate() {
            limits::bytes(
                &format!("tasks[{i}].uris[{j}].value"),
                u.value.as_bytes(),
                limits::MAX_URI_BYTES,
            )?;
        }
        limits::count(
            &format!("tasks[{i}].env"),
            t.env.len(),
            limits::MAX_ENV_VARS,
        )?;
        for (k, v) in &t.env {
            if k.len() + v.len() > limits::MAX_ENV_VAR_BYTES {
                return Err(invalid(
                    &format!("tasks[{i}].env[{k:.40}]"),
                    format!(
                        "{} bytes, at most {}",
                        k.len() + v.len(),
                        limits::MAX_ENV_VAR_BYTES
                    ),
                ));
            }
        }
        let mut resources = resources_from_proto(&t.resources, &format!("tasks[{i}].resources"))?;
        for (name, min, unit) in [
            ("cpus", limits::MIN_TASK_CPUS, ""),
            ("mem", limits::MIN_TASK_MEM_MB, " MB"),
        ] {
            let has = resources.scalar_total(name).as_f64();
            if has < min {
                return Err(invalid(
                    &format!("tasks[{i}].resources"),
                    format!("{has}{unit} {name}, at least {min}{unit} (the smallest task)"),
                ));
            }
        }
        if !t.name.is_empty() {
            super::name(&t.name, &format!("tasks[{i}].name"))?;
        }
        // The executor's own resources are the task's too, for every account.
        if let Some(e) = t.executor.as_ref().filter(|e| !e.resources.is_empty()) {
            let own =
                resources_from_proto(&e.resources, &format!("tasks[{i}].executor.resources"))?;
            resources = resources.plus(&own);
        }
        // A container with no user named runs as its image's user (else nobody), never
        // as root by default.
        let default_user = if t.container.is_some() {
            ""
        } else {
            DEFAULT_TASK_USER
        };
        let user = [t.user.as_str(), framework_user, default_user]
            .into_iter()
            .find(|u| !u.is_empty())
            .unwrap_or(default_user)
            .to_string();
        if !user.is_empty() {
            user_name(&user, &format!("tasks[{i}].user"))?;
        }
        let mut described = t.clone();
        match &mut described.container {
            // The task's own user, else the image's, else the framework's: the agent
            // decides with the image in hand.
            Some(c) => {
                described.user = t.user.clone();
                c.framework_user = framework_user.to_string();
            }
            None => described.user = user.clone(),
        }
        tasks.push(TaskSpec {
            id,
            name: if t.name.is_empty() {
                t.task_id.clone()
            } else {
                t.name.clone()
            },
            resources,
            // The agent gets the framework's own description of the task, with its user.
            launch: described.encode_to_vec(),
            user,
        });
    }
    Ok(AcceptCall {
        offer_ids,
        tasks,
        refuse,
    })
}

/// Volumes a container may have.
pub const MAX_VOLUMES: usize = 32;
/// Port mappings a container may have.
pub const MAX_PORT_MAPPINGS: usize = 100;

/// A task's container: an image reference in Docker's syntax (checked for syntax only:
/// the registry it defaults to is each agent's), bounded arguments.
fn container(c: &pb::ContainerInfo, task_ports: &[(u64, u64)], field: &str) -> Result<(), Status> {
    use super::limits;
    if c.image.trim().is_empty() {
        return Err(invalid(&format!("{field}.image"), "empty"));
    }
    agora_image::ImageRef::parse(&c.image, agora_image::reference::DOCKER_HUB)
        .map_err(|e| invalid(&format!("{field}.image"), e.to_string()))?;
    limits::count(&format!("{field}.args"), c.args.len(), limits::MAX_ENV_VARS)?;
    limits::count(&format!("{field}.volumes"), c.volumes.len(), MAX_VOLUMES)?;
    for (i, v) in c.volumes.iter().enumerate() {
        for (name, path) in [
            ("host_path", &v.host_path),
            ("container_path", &v.container_path),
        ] {
            let f = format!("{field}.volumes[{i}].{name}");
            limits::bytes(&f, path.as_bytes(), limits::MAX_URI_BYTES)?;
            if !path.starts_with('/') || path.split('/').any(|c| c == "..") || path.contains('\0') {
                return Err(invalid(
                    &f,
                    format!("{path:?} is not an absolute path without '..'"),
                ));
            }
        }
    }
    limits::count(
        &format!("{field}.port_mappings"),
        c.port_mappings.len(),
        MAX_PORT_MAPPINGS,
    )?;
    let isolated = c.network == pb::ContainerNetwork::Isolated as i32;
    if !isolated && c.network != pb::ContainerNetwork::Host as i32 {
        return Err(invalid(
            &format!("{field}.network"),
            format!("unknown network {}", c.network),
        ));
    }
    if !isolated && !c.port_mappings.is_empty() {
        return Err(invalid(
            &format!("{field}.port_mappings"),
            "only a container with an isolated network has port mappings",
        ));
    }
    for (i, m) in c.port_mappings.iter().enumerate() {
        let f = format!("{field}.port_mappings[{i}]");
        if !(1..=65535).contains(&m.host_port) || !(1..=65535).contains(&m.container_port) {
            return Err(invalid(&f, "ports are 1 to 65535"));
        }
        if !task_ports
            .iter()
            .any(|(b, e)| (*b..=*e).contains(&u64::from(m.host_port)))
        {
            return Err(invalid(
                &format!("{f}.host_port"),
                format!("{} is not among the task's ports resource", m.host_port),
            ));
        }
        if c.port_mappings[..i]
            .iter()
            .any(|o| o.host_port == m.host_port)
        {
            return Err(invalid(
                &format!("{f}.host_port"),
                format!("{} is mapped twice", m.host_port),
            ));
        }
    }
    let total: usize = c.args.iter().map(String::len).sum();
    if total > limits::MAX_COMMAND_BYTES {
        return Err(invalid(
            &format!("{field}.args"),
            format!("{total} bytes, at most {}", limits::MAX_COMMAND_BYTES),
        ));
    }
    Ok(())
}

/// The image a task runs from (empty: none, or a description that does not decode).
pub fn task_image(launch: &[u8]) -> String {
    pb::TaskInfo::decode(launch)
        .ok()
        .and_then(|t| t.container)
        .map(|c| c.image)
        .unwrap_or_default()
}

/// The tasks an agent reports when it registers.
pub fn reported_tasks_from_proto(tasks: &[pb::TaskReport]) -> Result<Vec<ReportedTask>, Status> {
    tasks
        .iter()
        .enumerate()
        .map(|(i, t)| {
            Ok(ReportedTask {
                framework_id: framework_id(&t.framework_id, &format!("tasks[{i}].framework_id"))?,
                task_id: task_id(&t.task_id, &format!("tasks[{i}].task_id"))?,
                state: task_state_from_proto(t.state, &format!("tasks[{i}].state"))?,
            })
        })
        .collect()
}

fn update_from_proto(u: pb::StatusUpdate) -> Result<AgentUpdate, Status> {
    let latest_state = match u.latest_state {
        0 => None,
        n => Some(task_state_from_proto(n, "update.latest_state")?),
    };
    Ok(AgentUpdate {
        framework_id: framework_id(&u.framework_id, "update.framework_id")?,
        task_id: task_id(&u.task_id, "update.task_id")?,
        state: task_state_from_proto(u.state, "update.state")?,
        latest_state,
        uuid: u.uuid,
        message: super::limits::truncate(u.message, super::limits::MAX_STATUS_MESSAGE_BYTES),
        exit_code: u.exit_code,
        timestamp_ms: u.timestamp_ms,
    })
}

/// What an agent says on its session (`agent` is the session's). None for what is
/// ignored: a second hello, an empty message, an executor message naming no valid
/// framework (best effort, as in Mesos).
pub fn agent_report_from_proto(msg: pb::AgentMessage, agent: &AgentId) -> Option<AgentReport> {
    Some(match msg.kind? {
        pb::agent_message::Kind::Pong(_) => AgentReport::Pong,
        pb::agent_message::Kind::Update(u) => match update_from_proto(u) {
            Ok(u) => AgentReport::Update(u),
            Err(status) => {
                let (field, reason) = status
                    .message()
                    .split_once(": ")
                    .map(|(f, r)| (f.to_string(), r.to_string()))
                    .unwrap_or_else(|| ("update".into(), status.message().to_string()));
                AgentReport::Invalid { field, reason }
            }
        },
        pb::agent_message::Kind::ExecutorMessage(m) => {
            AgentReport::ExecutorMessage(FrameworkMessage {
                framework_id: FrameworkId::new(m.framework_id).ok()?,
                agent_id: agent.clone(),
                executor_id: m.executor_id,
                data: m.data,
            })
        }
        pb::agent_message::Kind::Hello(_) => return None,
    })
}

pub fn task_status_to_proto(s: TaskStatus) -> pb::TaskStatus {
    pb::TaskStatus {
        task_id: s.task_id.to_string(),
        state: task_state_to_proto(s.state) as i32,
        message: s.message,
        agent_id: s.agent_id.map(|a| a.to_string()).unwrap_or_default(),
        uuid: s.uuid.unwrap_or_default(),
        exit_code: s.exit_code,
        timestamp_ms: s.timestamp_ms,
    }
}

pub fn offer_to_proto(o: OfferView) -> pb::Offer {
    pb::Offer {
        id: o.offer.id.to_string(),
        framework_id: o.offer.framework_id.to_string(),
        agent_id: o.offer.agent_id.to_string(),
        hostname: o.hostname,
        resources: resources_to_proto(&o.offer.resources),
        attributes: o
            .attributes
            .into_iter()
            .map(|(key, value)| pb::Attribute { key, value })
            .collect(),
    }
}

fn framework_message_to_proto(m: FrameworkMessage) -> pb::FrameworkMessage {
    pb::FrameworkMessage {
        framework_id: m.framework_id.to_string(),
        agent_id: m.agent_id.to_string(),
        executor_id: m.executor_id,
        data: m.data,
    }
}

pub fn framework_event_to_proto(event: FrameworkEvent) -> pb::Event {
    use pb::event::Kind;
    let kind = match event {
        FrameworkEvent::Subscribed {
            framework_id,
            heartbeat_interval,
            term,
        } => Kind::Subscribed(pb::Subscribed {
            framework_id: framework_id.to_string(),
            heartbeat_interval_seconds: heartbeat_interval.as_secs_f64(),
            term,
        }),
        FrameworkEvent::Offers(offers) => Kind::Offers(pb::Offers {
            offers: offers.into_iter().map(offer_to_proto).collect(),
        }),
        FrameworkEvent::Rescind(offer_id) => Kind::Rescind(pb::Rescind {
            offer_id: offer_id.to_string(),
        }),
        FrameworkEvent::Update(status) => Kind::Update(task_status_to_proto(status)),
        FrameworkEvent::Message(m) => Kind::Message(framework_message_to_proto(m)),
        FrameworkEvent::Failure(agent) => Kind::Failure(pb::Failure {
            agent_id: agent.to_string(),
        }),
        FrameworkEvent::Heartbeat => Kind::Heartbeat(pb::Heartbeat {}),
    };
    pb::Event { kind: Some(kind) }
}

pub fn agent_command_to_proto(command: AgentCommand) -> pb::MasterMessage {
    use pb::master_message::Kind;
    let kind = match command {
        AgentCommand::Launch {
            framework_id,
            tasks,
        } => Kind::Launch(pb::LaunchTasks {
            framework_id: framework_id.to_string(),
            // Each launch record is the framework's TaskInfo as this layer encoded it.
            tasks: tasks
                .iter()
                .filter_map(|t| match pb::TaskInfo::decode(t.launch.as_slice()) {
                    Ok(info) => Some(info),
                    Err(e) => {
                        tracing::error!(task = %t.id, error = %e, "launch record unreadable; not sent");
                        None
                    }
                })
                .collect(),
        }),
        AgentCommand::Kill {
            framework_id,
            task_id,
            grace_period_ms,
        } => Kind::Kill(pb::KillTask {
            framework_id: framework_id.to_string(),
            task_id: task_id.to_string(),
            grace_period_ms,
        }),
        AgentCommand::Ack {
            framework_id,
            task_id,
            uuid,
        } => Kind::Ack(pb::StatusAck {
            framework_id: framework_id.to_string(),
            task_id: task_id.to_string(),
            uuid,
        }),
        AgentCommand::Ping { seq } => Kind::Ping(pb::Ping { seq }),
        AgentCommand::FrameworkMessage(m) => Kind::FrameworkMessage(framework_message_to_proto(m)),
        AgentCommand::ShutdownExecutor {
            framework_id,
            executor_id,
            grace_period_ms,
        } => Kind::ShutdownExecutor(pb::ShutdownExecutor {
            framework_id: framework_id.to_string(),
            executor_id,
            grace_period_ms,
        }),
    };
    pb::MasterMessage { kind: Some(kind) }
}
