//! Tests of the Mesos operator API conversions and the v0 JSON.

use super::state::custom_executor;
use super::v0::task_json;
use super::*;
use crate::convert::invalid;
use crate::leader::views::ClusterCounts;
use agora_mesos_proto::v1::master as op;
use agora_mesos_proto::MesosJson;
use agora_proto::v1 as pb;
use agora_registry::{Task, TaskState};
use std::collections::BTreeMap;
use tonic::Status;

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

#[test]
fn maintenance_calls_read_as_mesos_writes_them() {
    use crate::leader::Maintenance;
    let c = op::Call::from_json(
        br#"{"type":"DRAIN_AGENT","drain_agent":{"agent_id":{"value":"a1"},
                "max_grace_period":{"seconds":90,"nanos":500000000},"mark_gone":{"value":true}}}"#,
    )
    .unwrap();
    assert_eq!(
        maintenance_from_mesos(&c).unwrap(),
        (
            "a1".to_string(),
            "drain_agent.agent_id.value",
            Maintenance::Drain {
                grace: std::time::Duration::from_millis(90_500),
                mark_gone: true
            }
        )
    );
    let c =
        op::Call::from_json(br#"{"type":"DRAIN_AGENT","drain_agent":{"agent_id":{"value":"a1"}}}"#)
            .unwrap();
    assert_eq!(
        maintenance_from_mesos(&c).unwrap().2,
        Maintenance::Drain {
            grace: std::time::Duration::ZERO,
            mark_gone: false
        }
    );
    let c = op::Call::from_json(
        br#"{"type":"DRAIN_AGENT","drain_agent":{"agent_id":{"value":"a1"},"max_grace_period":{"seconds":-1}}}"#,
    )
    .unwrap();
    assert_eq!(
        maintenance_from_mesos(&c).unwrap_err().message(),
        "drain_agent.max_grace_period: must be a non-negative duration"
    );
    for (json, what) in [
        (
            &br#"{"type":"DEACTIVATE_AGENT","deactivate_agent":{"agent_id":{"value":"a2"}}}"#[..],
            Maintenance::Deactivate,
        ),
        (
            br#"{"type":"REACTIVATE_AGENT","reactivate_agent":{"agent_id":{"value":"a2"}}}"#,
            Maintenance::Reactivate,
        ),
        (
            br#"{"type":"MARK_AGENT_GONE","mark_agent_gone":{"agent_id":{"value":"a2"}}}"#,
            Maintenance::MarkGone,
        ),
    ] {
        let (agent, _, got) = maintenance_from_mesos(&op::Call::from_json(json).unwrap()).unwrap();
        assert_eq!((agent.as_str(), got), ("a2", what));
    }
    let c = op::Call::from_json(br#"{"type":"MARK_AGENT_GONE"}"#).unwrap();
    assert_eq!(
        maintenance_from_mesos(&c).unwrap_err().message(),
        "mark_agent_gone: missing"
    );
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
        unreachable_from: None,
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
