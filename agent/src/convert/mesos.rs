//! Mesos' v1 executor API (`agora_mesos_proto`) to and from the executor API's own
//! messages: a Mesos call becomes the `agora.v1` request the gRPC transport takes (so both
//! go through the same [`crate::tasks::Tasks`] calls), and the events the agent sends an
//! executor (`agora.v1.ExecutorEvent`) become Mesos events. Refusals name the Mesos field.

use std::str::FromStr;

use agora_mesos_proto::v1 as mesos;
use agora_mesos_proto::v1::executor as exec;
use agora_proto::v1 as pb;
use agora_registry::TaskState;
use prost::Message;

use crate::checkpoint::TaskRecord;

/// What a Mesos executor's events are built from: its task and where it runs.
pub struct ExecutorContext<'a> {
    pub record: &'a TaskRecord,
    pub agent_id: &'a str,
    pub hostname: &'a str,
    /// Its container (the task's cgroup name).
    pub container_id: String,
}

/// An UPDATE's status as the executor API's update: its task, state (Mesos' names),
/// message, and uuid (16 bytes, as Mesos' executor libraries send, kept as UUID text).
pub fn update_from_mesos(
    framework_id: &str,
    status: &mesos::TaskStatus,
) -> Result<pb::StatusUpdate, String> {
    let state = mesos::TaskState::try_from(status.state)
        .ok()
        .and_then(|s| TaskState::from_str(s.as_str_name()).ok())
        .ok_or_else(|| format!("update.status.state: unknown state {}", status.state))?;
    let uuid = match status.uuid.as_deref() {
        None | Some([]) => return Err("update.status.uuid: missing".into()),
        Some(bytes) => uuid::Uuid::from_slice(bytes)
            .map_err(|_| format!("update.status.uuid: {} bytes, not a UUID's 16", bytes.len()))?
            .to_string(),
    };
    if status.task_id.value.is_empty() {
        return Err("update.status.task_id.value: empty".into());
    }
    Ok(pb::StatusUpdate {
        uuid,
        framework_id: framework_id.to_string(),
        task_id: status.task_id.value.clone(),
        state: super::task_state_to_proto(state),
        message: status.message.clone().unwrap_or_default(),
        exit_code: None,
        timestamp_ms: 0,
        latest_state: 0,
    })
}

/// A MESSAGE call as the message for the framework's scheduler.
pub fn message_from_mesos(
    framework_id: &str,
    executor_id: &str,
    data: Vec<u8>,
) -> pb::FrameworkMessage {
    pb::FrameworkMessage {
        framework_id: framework_id.to_string(),
        agent_id: String::new(),
        executor_id: executor_id.to_string(),
        data,
    }
}

fn event(kind: exec::event::Type) -> exec::Event {
    exec::Event {
        r#type: Some(kind as i32),
        ..Default::default()
    }
}

/// HEARTBEAT.
pub fn heartbeat() -> exec::Event {
    event(exec::event::Type::Heartbeat)
}

/// The executor as its framework gave it (else as the agent knows it).
fn executor_info(ctx: &ExecutorContext<'_>) -> mesos::ExecutorInfo {
    let mut info = mesos::ExecutorInfo::decode(ctx.record.mesos_executor_info.as_slice())
        .unwrap_or_else(|_| mesos::ExecutorInfo {
            command: ctx
                .record
                .executor_command
                .clone()
                .map(|c| mesos::CommandInfo {
                    value: Some(c),
                    ..Default::default()
                }),
            ..Default::default()
        });
    info.executor_id = mesos::ExecutorId {
        value: ctx.record.executor_id().to_string(),
    };
    info.framework_id = Some(mesos::FrameworkId {
        value: ctx.record.framework_id.clone(),
    });
    info
}

/// SUBSCRIBED: the executor, its framework, the agent and its container.
pub fn subscribed(ctx: &ExecutorContext<'_>) -> exec::Event {
    let mut e = event(exec::event::Type::Subscribed);
    e.subscribed = Some(exec::event::Subscribed {
        executor_info: executor_info(ctx),
        framework_info: mesos::FrameworkInfo {
            user: ctx.record.user.clone(),
            name: String::new(),
            id: Some(mesos::FrameworkId {
                value: ctx.record.framework_id.clone(),
            }),
            checkpoint: Some(true),
            ..Default::default()
        },
        agent_info: mesos::AgentInfo {
            hostname: ctx.hostname.to_string(),
            id: Some(mesos::AgentId {
                value: ctx.agent_id.to_string(),
            }),
            ..Default::default()
        },
        container_id: Some(mesos::ContainerId {
            value: ctx.container_id.clone(),
            parent: None,
        }),
    });
    e
}

/// The task as its framework gave it (else as the agent knows it), on this agent.
fn task_info(ctx: &ExecutorContext<'_>, task: &pb::TaskInfo) -> mesos::TaskInfo {
    let mut info = mesos::TaskInfo::decode(task.mesos_task_info.as_slice())
        .ok()
        .filter(|t| !task.mesos_task_info.is_empty() && t.task_id.value == task.task_id)
        .unwrap_or_else(|| mesos::TaskInfo {
            name: task.name.clone(),
            task_id: mesos::TaskId {
                value: task.task_id.clone(),
            },
            command: Some(mesos::CommandInfo {
                value: Some(task.command.clone()),
                ..Default::default()
            }),
            ..Default::default()
        });
    info.agent_id = mesos::AgentId {
        value: ctx.agent_id.to_string(),
    };
    info.executor = Some(executor_info(ctx));
    info
}

/// An event of the executor API as Mesos' event (`None`: nothing to send; SUBSCRIBED is
/// built from the context by [`subscribed`]).
pub fn event_to_mesos(ctx: &ExecutorContext<'_>, ev: pb::ExecutorEvent) -> Option<exec::Event> {
    use pb::executor_event::Kind;
    Some(match ev.kind? {
        Kind::Subscribed(_) => subscribed(ctx),
        Kind::Launch(task) => {
            let mut e = event(exec::event::Type::Launch);
            e.launch = Some(exec::event::Launch {
                task: task_info(ctx, &task),
            });
            e
        }
        Kind::Kill(k) => {
            let mut e = event(exec::event::Type::Kill);
            e.kill = Some(exec::event::Kill {
                task_id: mesos::TaskId { value: k.task_id },
                kill_policy: Some(mesos::KillPolicy {
                    grace_period: Some(mesos::DurationInfo {
                        nanoseconds: i64::try_from(k.grace_period_ms)
                            .unwrap_or(i64::MAX / 1_000_000)
                            .saturating_mul(1_000_000),
                    }),
                }),
            });
            e
        }
        Kind::Shutdown(_) => event(exec::event::Type::Shutdown),
        Kind::Acknowledged(a) => {
            let mut e = event(exec::event::Type::Acknowledged);
            let uuid = match uuid::Uuid::parse_str(&a.uuid) {
                Ok(u) => u.as_bytes().to_vec(),
                Err(_) => a.uuid.into_bytes(),
            };
            e.acknowledged = Some(exec::event::Acknowledged {
                task_id: mesos::TaskId { value: a.task_id },
                uuid,
            });
            e
        }
        Kind::Message(m) => {
            let mut e = event(exec::event::Type::Message);
            e.message = Some(exec::event::Message { data: m.data });
            e
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> TaskRecord {
        TaskRecord {
            framework_id: "fw".into(),
            task_id: "t1".into(),
            executor_command: Some("python3 e.py".into()),
            executor_id: Some("ex".into()),
            user: "u".into(),
            ..Default::default()
        }
    }

    #[test]
    fn updates_keep_their_16_byte_uuid_and_refuse_others_naming_the_field() {
        let u = uuid::Uuid::new_v4();
        let mut status = mesos::TaskStatus {
            task_id: mesos::TaskId { value: "t1".into() },
            state: mesos::TaskState::TaskRunning as i32,
            uuid: Some(u.as_bytes().to_vec()),
            message: Some("up".into()),
            ..Default::default()
        };
        let p = update_from_mesos("fw", &status).unwrap();
        assert_eq!(p.uuid, u.to_string());
        assert_eq!(p.task_id, "t1");
        assert_eq!(
            p.state,
            super::super::task_state_to_proto(TaskState::TaskRunning)
        );
        status.uuid = Some(vec![1, 2, 3]);
        let e = update_from_mesos("fw", &status).unwrap_err();
        assert!(e.starts_with("update.status.uuid:"), "{e}");
        status.uuid = None;
        assert!(update_from_mesos("fw", &status)
            .unwrap_err()
            .starts_with("update.status.uuid"));
        status.uuid = Some(u.as_bytes().to_vec());
        status.state = 999;
        assert!(update_from_mesos("fw", &status)
            .unwrap_err()
            .starts_with("update.status.state"));
    }

    #[test]
    fn events_take_mesos_shape_with_the_frameworks_ids() {
        let r = record();
        let ctx = ExecutorContext {
            record: &r,
            agent_id: "a1",
            hostname: "h",
            container_id: "fw.t1".into(),
        };
        let s = subscribed(&ctx).subscribed.unwrap();
        assert_eq!(s.executor_info.executor_id.value, "ex");
        assert_eq!(s.framework_info.id.unwrap().value, "fw");
        assert_eq!(s.agent_info.id.unwrap().value, "a1");
        let ack = event_to_mesos(
            &ctx,
            pb::ExecutorEvent {
                kind: Some(pb::executor_event::Kind::Acknowledged(pb::StatusAck {
                    framework_id: "fw".into(),
                    task_id: "t1".into(),
                    uuid: "9b2e5b4e-3c1f-4f57-9f53-6f3d1f3f9b1a".into(),
                })),
            },
        )
        .unwrap();
        assert_eq!(ack.acknowledged.unwrap().uuid.len(), 16);
        let launch = event_to_mesos(
            &ctx,
            pb::ExecutorEvent {
                kind: Some(pb::executor_event::Kind::Launch(pb::TaskInfo {
                    task_id: "t1".into(),
                    name: "n".into(),
                    command: "echo".into(),
                    ..Default::default()
                })),
            },
        )
        .unwrap()
        .launch
        .unwrap();
        assert_eq!(launch.task.task_id.value, "t1");
        assert_eq!(launch.task.agent_id.value, "a1");
        assert_eq!(launch.task.executor.unwrap().executor_id.value, "ex");
    }
}
