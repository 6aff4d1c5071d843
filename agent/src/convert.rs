//! The agent's one conversion layer between domain values and generated proto types:
//! resources, the registration, task states, status updates and task reports for the
//! leader, checkpointed tasks, and the messages of the agent's session and of the executor
//! API. Nothing else in the crate builds a proto message or names a task state as text.

use std::collections::HashMap;
use std::time::Duration;

use agora_proto::v1 as pb;
use agora_registry::resources::Ranges;
use agora_registry::{Resource, Resources, Scalar, TaskState, Value};

pub mod mesos;

use crate::checkpoint::{TaskRecord, Update};
use crate::config::Registration;

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

/// The registration an agent sends (with its id once it has one).
pub fn agent_info(registration: &Registration, agent_id: Option<&str>) -> pb::AgentInfo {
    pb::AgentInfo {
        id: agent_id.unwrap_or_default().to_string(),
        hostname: registration.hostname.clone(),
        address: registration.address.clone(),
        resources: resources_to_proto(&registration.resources),
        attributes: registration
            .attributes
            .iter()
            .map(|(k, v)| pb::Attribute {
                key: k.clone(),
                value: v.clone(),
            })
            .collect(),
    }
}

/// Resources of a task to launch; refuses negative, NaN and infinite amounts and bad
/// names or roles, naming the problem.
pub fn resources_from_proto(items: &[pb::Resource]) -> Result<Resources, String> {
    let mut out = Vec::with_capacity(items.len());
    for r in items {
        let value = match &r.value {
            Some(pb::resource::Value::Scalar(x)) => Value::Scalar(
                Scalar::from_f64(*x).map_err(|e| format!("resource {}: {e}", r.name))?,
            ),
            Some(pb::resource::Value::Ranges(rs)) => Value::Ranges(
                Ranges::new(rs.range.iter().map(|r| (r.begin, r.end)))
                    .map_err(|e| format!("resource {}: {e}", r.name))?,
            ),
            None => return Err(format!("resource {}: no amount", r.name)),
        };
        out.push(Resource {
            name: r.name.clone(),
            role: (!r.role.is_empty() && r.role != "*").then(|| r.role.clone()),
            value,
        });
    }
    Resources::from_checked(out).map_err(|e| e.to_string())
}

/// A task state for the wire.
pub fn task_state_to_proto(state: TaskState) -> i32 {
    agora_driver::convert::task_state_to_proto(state).into()
}

/// A task state from the wire; an unset or unknown value is refused, naming `field`
/// (`update.state: unset`).
pub fn task_state_from_proto(field: &str, value: i32) -> Result<TaskState, String> {
    agora_driver::convert::task_state_from_proto(value).map_err(|e| format!("{field}: {e}"))
}

/// An update for the leader, carrying `latest`, the task's newest state, when that is not
/// the update's own.
pub fn status_update_to_proto(u: &Update, latest: TaskState) -> pb::StatusUpdate {
    pb::StatusUpdate {
        uuid: u.uuid.clone(),
        framework_id: u.framework_id.clone(),
        task_id: u.task_id.clone(),
        state: task_state_to_proto(u.state),
        message: u.message.clone(),
        exit_code: u.exit_code,
        timestamp_ms: u.timestamp_ms,
        latest_state: if latest == u.state {
            pb::TaskState::Unspecified.into()
        } else {
            task_state_to_proto(latest)
        },
    }
}

/// [`status_update_to_proto`] as a message on the session.
pub fn update_message(u: &Update, latest: TaskState) -> pb::AgentMessage {
    pb::AgentMessage {
        kind: Some(pb::agent_message::Kind::Update(status_update_to_proto(
            u, latest,
        ))),
    }
}

/// An executor's status update for a task of `framework_id`, validated: it must be
/// present, have a uuid and a state. (Its `latest_state` is the agent's to decide.)
pub fn update_from_executor(
    framework_id: String,
    update: Option<pb::StatusUpdate>,
) -> Result<Update, String> {
    let u = update.ok_or("update: missing")?;
    if u.uuid.is_empty() {
        return Err("update.uuid: empty".into());
    }
    let state = task_state_from_proto("update.state", u.state)?;
    Ok(Update {
        uuid: u.uuid,
        framework_id,
        task_id: u.task_id,
        state,
        message: u.message,
        exit_code: u.exit_code,
        timestamp_ms: u.timestamp_ms,
    })
}

/// One task with its last state, for (re-)registration.
pub fn task_report(framework_id: &str, task_id: &str, state: TaskState) -> pb::TaskReport {
    pb::TaskReport {
        framework_id: framework_id.to_string(),
        task_id: task_id.to_string(),
        state: task_state_to_proto(state),
    }
}

/// What the agent checkpoints of a task of `framework_id` it is asked to launch, and the
/// task's resources (refused as [`resources_from_proto`] refuses them).
pub fn task_record(
    framework_id: &str,
    task: &pb::TaskInfo,
) -> Result<(TaskRecord, Resources), String> {
    let mut resources = resources_from_proto(&task.resources)?;
    // A framework's executor's own resources are its task's too (the master counted them
    // so): its cgroup holds both.
    if let Some(e) = task.executor.as_ref().filter(|e| !e.resources.is_empty()) {
        resources = resources.plus(&resources_from_proto(&e.resources)?);
    }
    let record = TaskRecord {
        framework_id: framework_id.to_string(),
        task_id: task.task_id.clone(),
        name: task.name.clone(),
        resources: resources.to_string(),
        command: task.command.clone(),
        env: task
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        executor_command: task
            .executor
            .as_ref()
            .map(|e| e.command.clone())
            .filter(|c| !c.trim().is_empty()),
        user: task.user.clone(),
        uris: task
            .uris
            .iter()
            .map(|u| crate::fetch::FetchUri {
                value: u.value.clone(),
                executable: u.executable,
                extract: u.extract,
                output_file: u.output_file.clone(),
            })
            .collect(),
        executor_id: task
            .executor
            .as_ref()
            .map(|e| e.executor_id.clone())
            .filter(|id| !id.is_empty()),
        executor_env: task
            .executor
            .as_ref()
            .map(|e| {
                let mut env: Vec<(String, String)> =
                    e.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                env.sort();
                env
            })
            .unwrap_or_default(),
        mesos_task_info: task.mesos_task_info.clone(),
        mesos_executor_info: task
            .executor
            .as_ref()
            .map(|e| e.mesos_executor_info.clone())
            .unwrap_or_default(),
        container: task.container.as_ref().map(container_from_proto),
    };
    Ok((record, resources))
}

/// A checkpointed task as its executor receives it.
pub fn task_info(record: &TaskRecord, resources: &Resources) -> pb::TaskInfo {
    pb::TaskInfo {
        task_id: record.task_id.clone(),
        name: record.name.clone(),
        resources: resources_to_proto(resources),
        command: record.command.clone(),
        env: record.env.iter().cloned().collect::<HashMap<_, _>>(),
        executor: record
            .executor_command
            .clone()
            .map(|command| pb::ExecutorInfo {
                command,
                executor_id: record.executor_id.clone().unwrap_or_default(),
                env: record.executor_env.iter().cloned().collect(),
                mesos_executor_info: record.mesos_executor_info.clone(),
                // Already in the task's resources (its cgroup holds both).
                resources: Vec::new(),
            }),
        user: record.user.clone(),
        uris: fetch_uris_to_proto(&record.uris),
        mesos_task_info: record.mesos_task_info.clone(),
        container: record.container.as_ref().map(|c| pb::ContainerInfo {
            image: c.image.clone(),
            args: c.args.clone(),
            force_pull: c.force_pull,
            framework_user: c.framework_user.clone(),
            volumes: c
                .volumes
                .iter()
                .map(|v| pb::Volume {
                    host_path: v.host_path.display().to_string(),
                    container_path: v.container_path.clone(),
                    read_only: v.read_only,
                })
                .collect(),
            network: if c.isolated_network {
                pb::ContainerNetwork::Isolated as i32
            } else {
                pb::ContainerNetwork::Host as i32
            },
            port_mappings: c
                .port_mappings
                .iter()
                .map(|(h, p)| pb::PortMapping {
                    host_port: u32::from(*h),
                    container_port: u32::from(*p),
                })
                .collect(),
        }),
    }
}

/// A task's container as the agent keeps it.
pub fn container_from_proto(c: &pb::ContainerInfo) -> crate::image::ContainerSpec {
    crate::image::ContainerSpec {
        image: c.image.clone(),
        args: c.args.clone(),
        force_pull: c.force_pull,
        framework_user: c.framework_user.clone(),
        volumes: c
            .volumes
            .iter()
            .map(|v| crate::image::VolumeSpec {
                host_path: v.host_path.clone().into(),
                container_path: v.container_path.clone(),
                read_only: v.read_only,
            })
            .collect(),
        isolated_network: c.network == pb::ContainerNetwork::Isolated as i32,
        // The master checked the range.
        port_mappings: c
            .port_mappings
            .iter()
            .filter_map(|m| {
                Some((
                    u16::try_from(m.host_port).ok()?,
                    u16::try_from(m.container_port).ok()?,
                ))
            })
            .collect(),
    }
}

/// Files to fetch, as the executor receives them.
pub fn fetch_uris_to_proto(uris: &[crate::fetch::FetchUri]) -> Vec<pb::FetchUri> {
    uris.iter()
        .map(|u| pb::FetchUri {
            value: u.value.clone(),
            executable: u.executable,
            extract: u.extract,
            output_file: u.output_file.clone(),
        })
        .collect()
}

/// Files to fetch, from the task an executor received.
pub fn fetch_uris_from_proto(uris: &[pb::FetchUri]) -> Vec<crate::fetch::FetchUri> {
    uris.iter()
        .map(|u| crate::fetch::FetchUri {
            value: u.value.clone(),
            executable: u.executable,
            extract: u.extract,
            output_file: u.output_file.clone(),
        })
        .collect()
}

fn executor_event(kind: pb::executor_event::Kind) -> pb::ExecutorEvent {
    pb::ExecutorEvent { kind: Some(kind) }
}

/// Executor API: the executor is subscribed to agent `agent_id`.
pub fn subscribed_event(agent_id: String) -> pb::ExecutorEvent {
    executor_event(pb::executor_event::Kind::Subscribed(
        pb::ExecutorSubscribed { agent_id },
    ))
}

/// Executor API: run this checkpointed task.
pub fn launch_event(record: &TaskRecord, resources: &Resources) -> pb::ExecutorEvent {
    executor_event(pb::executor_event::Kind::Launch(task_info(
        record, resources,
    )))
}

/// Executor API: kill a task, with `grace` between SIGTERM and SIGKILL.
pub fn kill_event(framework_id: &str, task_id: &str, grace: Duration) -> pb::ExecutorEvent {
    executor_event(pb::executor_event::Kind::Kill(pb::KillTask {
        framework_id: framework_id.to_string(),
        task_id: task_id.to_string(),
        grace_period_ms: grace.as_millis() as u64,
    }))
}

/// Executor API: kill every task within `grace` and exit.
pub fn shutdown_event(grace: Duration) -> pb::ExecutorEvent {
    executor_event(pb::executor_event::Kind::Shutdown(pb::ExecutorShutdown {
        grace_period_ms: grace.as_millis() as u64,
    }))
}

/// Executor API: the master recorded this update.
pub fn acknowledged_event(ack: pb::StatusAck) -> pb::ExecutorEvent {
    executor_event(pb::executor_event::Kind::Acknowledged(ack))
}

/// Executor API: a message from the framework's scheduler.
pub fn message_event(m: pb::FrameworkMessage) -> pb::ExecutorEvent {
    executor_event(pb::executor_event::Kind::Message(m))
}

/// Session: the first message, who is connecting.
pub fn hello(agent_id: &str, registration: &Registration) -> pb::AgentMessage {
    pb::AgentMessage {
        kind: Some(pb::agent_message::Kind::Hello(pb::AgentHello {
            agent_id: agent_id.to_string(),
            address: registration.address.clone(),
            sandbox_key: registration.sandbox_key.clone(),
        })),
    }
}

/// Session: the answer to the leader's ping `seq`.
pub fn pong(seq: u64) -> pb::AgentMessage {
    pb::AgentMessage {
        kind: Some(pb::agent_message::Kind::Pong(pb::Pong { seq })),
    }
}

/// Session: an executor's message for its framework's scheduler.
pub fn executor_message(m: pb::FrameworkMessage) -> pb::AgentMessage {
    pb::AgentMessage {
        kind: Some(pb::agent_message::Kind::ExecutorMessage(m)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(state: TaskState) -> Update {
        Update {
            uuid: "u1".into(),
            framework_id: "f1".into(),
            task_id: "t1".into(),
            state,
            message: String::new(),
            exit_code: None,
            timestamp_ms: 1,
        }
    }

    #[test]
    fn latest_state_is_set_only_when_it_is_later() {
        let u = update(TaskState::TaskStarting);
        let same = status_update_to_proto(&u, TaskState::TaskStarting);
        assert_eq!(same.state(), pb::TaskState::TaskStarting);
        assert_eq!(same.latest_state(), pb::TaskState::Unspecified);
        let later = status_update_to_proto(&u, TaskState::TaskFinished);
        assert_eq!(later.latest_state(), pb::TaskState::TaskFinished);
    }

    #[test]
    fn an_executor_update_without_a_valid_state_is_refused_naming_the_field() {
        let wire = |state: i32| pb::StatusUpdate {
            uuid: "u1".into(),
            task_id: "t1".into(),
            state,
            ..Default::default()
        };
        assert_eq!(
            update_from_executor("f1".into(), Some(wire(0))).unwrap_err(),
            "update.state: unset"
        );
        let unknown = update_from_executor("f1".into(), Some(wire(99))).unwrap_err();
        assert!(unknown.starts_with("update.state: "), "{unknown}");
        assert_eq!(
            update_from_executor("f1".into(), None).unwrap_err(),
            "update: missing"
        );
        let ok = update_from_executor("f1".into(), Some(wire(pb::TaskState::TaskRunning.into())))
            .unwrap();
        assert_eq!(ok.state, TaskState::TaskRunning);
        assert_eq!(ok.framework_id, "f1");
    }
}
