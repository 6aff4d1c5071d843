//! Tests of the Mesos scheduler API conversions: calls in, events out.

use super::*;
use crate::leader::messages::{FrameworkEvent, OfferView, SessionEnd, StatusReason, TaskStatus};
use agora_mesos_proto::v1::scheduler as sched;
use agora_mesos_proto::MesosJson;
use agora_registry::{AgentId, Resources, TaskId, TaskState};
use agora_registry::{FrameworkId, Offer, OfferId};

fn call(json: &str) -> sched::Call {
    sched::Call::from_json(json.as_bytes()).unwrap()
}

#[test]
fn subscribe_is_validated_as_grpc_and_names_mesos_fields() {
    let c = call(
        r#"{"type":"SUBSCRIBE","subscribe":{"framework_info":{"user":"root","name":"fw",
                "failover_timeout":60,"capabilities":[{"type":"PARTITION_AWARE"}]},
                "suppressed_roles":["*"]}}"#,
    );
    let s = subscribe_from_mesos(c.subscribe.as_ref().unwrap()).unwrap();
    assert_eq!(s.call.role, "*");
    assert_eq!(s.call.failover_timeout_ms, 60_000);
    assert!(s.suppressed && s.shape.partition_aware && !s.shape.multi_role);
    let c = call(
        r#"{"type":"SUBSCRIBE","subscribe":{"framework_info":{"user":"u","name":"fw",
                "failover_timeout":-1}}}"#,
    );
    let e = subscribe_from_mesos(c.subscribe.as_ref().unwrap()).unwrap_err();
    assert!(
        e.message()
            .starts_with("subscribe.framework_info.failover_timeout: "),
        "{e:?}"
    );
    let c = call(r#"{"type":"SUBSCRIBE","subscribe":{"framework_info":{"user":"u","name":""}}}"#);
    let e = subscribe_from_mesos(c.subscribe.as_ref().unwrap()).unwrap_err();
    assert!(
        e.message().starts_with("subscribe.framework_info.name: "),
        "{e:?}"
    );
}

#[test]
fn accept_maps_launches_and_refuses_other_operations() {
    let c = call(
        r#"{"type":"ACCEPT","accept":{"offer_ids":[{"value":"o1"}],"operations":[
                {"type":"LAUNCH","launch":{"task_infos":[{"name":"t","task_id":{"value":"t1"},
                 "agent_id":{"value":"a"},"resources":[
                   {"name":"cpus","type":"SCALAR","scalar":{"value":0.5},"role":"*"},
                   {"name":"ports","type":"RANGES","ranges":{"range":[{"begin":31000,"end":31001}]}}],
                 "command":{"value":"echo hi","environment":{"variables":[{"name":"A","value":"1"}]}}}]}}],
                "filters":{"refuse_seconds":1}}}"#,
    );
    let MesosAccept::Launch(l) = accept_from_mesos("f", c.accept.as_ref().unwrap()).unwrap() else {
        panic!("not a launch")
    };
    let t = &l.request.tasks[0];
    assert_eq!((t.task_id.as_str(), t.command.as_str()), ("t1", "echo hi"));
    assert_eq!(t.env["A"], "1");
    assert_eq!(t.resources.len(), 2);
    assert_eq!(t.resources[0].role, "");
    assert_eq!(l.request.filters.unwrap().refuse_seconds, Some(1.0));
    let e = l.name_fields(invalid("tasks[0].resources", "too small"));
    assert_eq!(
        e.message(),
        "accept.operations[0].launch.task_infos[0].resources: too small"
    );

    let c = call(
        r#"{"type":"ACCEPT","accept":{"offer_ids":[{"value":"o1"}],"operations":[
                {"type":"LAUNCH","launch":{"task_infos":[]}},{"type":"RESERVE","reserve":{}}]}}"#,
    );
    let e = accept_from_mesos("f", c.accept.as_ref().unwrap()).unwrap_err();
    assert!(
        e.message()
            .starts_with("accept.operations[1].type: operation RESERVE"),
        "{e:?}"
    );
    let c = call(r#"{"type":"ACCEPT","accept":{"offer_ids":[{"value":"o1"}]}}"#);
    assert!(matches!(
        accept_from_mesos("f", c.accept.as_ref().unwrap()).unwrap(),
        MesosAccept::Decline(_)
    ));
}

#[test]
fn uris_and_custom_executors_reach_the_launch_record() {
    let c = call(
        r#"{"type":"ACCEPT","accept":{"offer_ids":[{"value":"o1"}],"operations":[
                {"type":"LAUNCH","launch":{"task_infos":[{"name":"t","task_id":{"value":"t1"},
                 "agent_id":{"value":"a"},"command":{"value":"./run.sh",
                 "uris":[{"value":"http://h:1/run.sh","executable":true},
                         {"value":"/tmp/x.tgz","extract":false,"output_file":"y.tgz"}]}},
                 {"name":"e","task_id":{"value":"t2"},"agent_id":{"value":"a"},"data":"aGk=",
                  "executor":{"executor_id":{"value":"ex"},"command":{"value":"python3 exec.py",
                   "environment":{"variables":[{"name":"E","value":"1"}]},
                   "uris":[{"value":"file:///tmp/exec.py"}]}}}]}}]}}"#,
    );
    let MesosAccept::Launch(l) = accept_from_mesos("f", c.accept.as_ref().unwrap()).unwrap() else {
        panic!("not a launch")
    };
    let t = &l.request.tasks[0];
    assert_eq!(t.uris.len(), 2);
    assert!(t.uris[0].executable && t.uris[0].extract, "{:?}", t.uris[0]);
    assert!(!t.uris[1].extract);
    assert_eq!(t.uris[1].output_file, "y.tgz");
    assert!(t.executor.is_none() && t.mesos_task_info.is_empty());
    let t = &l.request.tasks[1];
    let e = t.executor.as_ref().unwrap();
    assert_eq!(
        (e.command.as_str(), e.executor_id.as_str()),
        ("python3 exec.py", "ex")
    );
    assert_eq!(e.env["E"], "1");
    assert_eq!(t.uris[0].value, "file:///tmp/exec.py");
    use prost::Message;
    let back = mesos::TaskInfo::decode(t.mesos_task_info.as_slice()).unwrap();
    assert_eq!(back.data.as_deref(), Some(&b"hi"[..]));
    let back = mesos::ExecutorInfo::decode(e.mesos_executor_info.as_slice()).unwrap();
    assert_eq!(back.executor_id.value, "ex");

    let c = call(
        r#"{"type":"ACCEPT","accept":{"offer_ids":[{"value":"o1"}],"operations":[
                {"type":"LAUNCH","launch":{"task_infos":[{"name":"t","task_id":{"value":"t1"},
                 "agent_id":{"value":"a"},"command":{"value":"x",
                 "uris":[{"value":"hdfs://nn/x"}]}}]}}]}}"#,
    );
    let e = accept_from_mesos("f", c.accept.as_ref().unwrap()).unwrap_err();
    assert!(
        e.message()
            .starts_with("accept.operations[0].launch.task_infos[0].command.uris[0].value"),
        "{e:?}"
    );
}

#[test]
fn argv_commands_are_quoted() {
    let c = call(
        r#"{"type":"ACCEPT","accept":{"offer_ids":[{"value":"o1"}],"operations":[
                {"type":"LAUNCH","launch":{"task_infos":[{"name":"t","task_id":{"value":"t1"},
                 "agent_id":{"value":"a"},"command":{"shell":false,"value":"/bin/echo",
                 "arguments":["echo","it's"]}}]}}]}}"#,
    );
    let MesosAccept::Launch(l) = accept_from_mesos("f", c.accept.as_ref().unwrap()).unwrap() else {
        panic!("not a launch")
    };
    assert_eq!(l.request.tasks[0].command, r"exec '/bin/echo' 'it'\''s'");
}

#[test]
fn uuids_round_trip_as_16_bytes() {
    let u = uuid::Uuid::new_v4().to_string();
    let bytes = uuid_to_mesos(&u);
    assert_eq!(bytes.len(), 16);
    assert_eq!(uuid_from_mesos(&bytes, "uuid").unwrap(), u);
    assert_eq!(uuid_from_mesos(b"u1", "uuid").unwrap(), "u1");
    assert!(uuid_from_mesos(b"", "uuid").is_err());
}

#[test]
fn events_carry_what_mesos_frameworks_read() {
    let shape = EventShape {
        role: "web".into(),
        multi_role: true,
        master: Some(master_info(2, "127.0.0.1:5050")),
        ..Default::default()
    };
    let m = shape.master.as_ref().unwrap();
    assert_eq!((m.ip, m.port), (0x0100_007f, 5050));
    let offer = OfferView {
        offer: Offer {
            id: OfferId::new("o1").unwrap(),
            framework_id: FrameworkId::new("f").unwrap(),
            agent_id: AgentId::new("a").unwrap(),
            resources: Resources::parse("cpus:2;cpus(web):1;ports:[31000-31005]").unwrap(),
            created_at_ms: 0,
        },
        hostname: "h".into(),
        attributes: vec![("rack".into(), "3".into()), ("os".into(), "linux".into())],
    };
    let e = framework_event_to_mesos(FrameworkEvent::Offers(vec![offer]), &shape);
    let json = e.to_json().unwrap();
    assert!(
        json.starts_with(r#"{"type":"OFFERS","offers":{"offers":[{"id":{"value":"o1"}"#),
        "{json}"
    );
    assert!(json.contains(r#""name":"ports","type":"RANGES""#), "{json}");
    assert!(json.contains(r#""role":"web""#), "{json}");
    assert!(
        json.contains(r#""allocation_info":{"role":"web"}"#),
        "{json}"
    );
    assert!(
        json.contains(r#"{"name":"rack","type":"SCALAR","scalar":{"value":3.0}}"#),
        "{json}"
    );

    let u = uuid::Uuid::new_v4().to_string();
    let status = TaskStatus {
        task_id: TaskId::new("t").unwrap(),
        state: TaskState::TaskDropped,
        message: "m".into(),
        agent_id: None,
        uuid: Some(u),
        exit_code: None,
        timestamp_ms: 1_500,
        reason: Some(StatusReason::InvalidOffers),
    };
    let e = framework_event_to_mesos(FrameworkEvent::Update(status.clone()), &shape);
    let s = &e.update.as_ref().unwrap().status;
    assert_eq!(s.state(), mesos::TaskState::TaskLost);
    assert_eq!(
        s.reason(),
        mesos::task_status::Reason::InvalidOffers,
        "the master's reason crosses"
    );
    assert_eq!(s.timestamp, Some(1.5));
    assert_eq!(s.uuid.as_ref().unwrap().len(), 16);
    let aware = EventShape {
        partition_aware: true,
        ..shape
    };
    let e = framework_event_to_mesos(FrameworkEvent::Update(status), &aware);
    assert_eq!(
        e.update.unwrap().status.state(),
        mesos::TaskState::TaskDropped
    );

    let e = framework_event_to_mesos(FrameworkEvent::Heartbeat, &aware);
    assert_eq!(e.to_json().unwrap(), r#"{"type":"HEARTBEAT"}"#);
    assert!(session_end_to_mesos(&SessionEnd::NotLeader(None)).is_none());
    let e = session_end_to_mesos(&SessionEnd::Replaced).unwrap();
    assert_eq!(e.r#type(), sched::event::Type::Error);
}

#[test]
fn task_killing_only_for_frameworks_that_ask_for_it() {
    let killing = |uuid: Option<&str>| TaskStatus {
        task_id: TaskId::new("t").unwrap(),
        state: TaskState::TaskKilling,
        message: String::new(),
        agent_id: Some(AgentId::new("a").unwrap()),
        uuid: uuid.map(str::to_string),
        exit_code: None,
        timestamp_ms: 1,
        reason: None,
    };
    let plain = EventShape::default();
    let capable = EventShape {
        task_killing_state: true,
        ..EventShape::default()
    };
    let u = uuid::Uuid::new_v4().to_string();
    let update = FrameworkEvent::Update(killing(Some(&u)));
    // The agent's update is acknowledged for a framework that may not see it...
    let (task, uuid, agent) = hidden_update(&update, &plain).unwrap();
    assert_eq!((task.as_str(), uuid.as_str()), ("t", u.as_str()));
    assert_eq!(agent.unwrap().as_str(), "a");
    // ...and sent to one that asked for it.
    assert!(hidden_update(&update, &capable).is_none());
    let e = framework_event_to_mesos(update, &capable);
    assert_eq!(
        e.update.unwrap().status.state(),
        mesos::TaskState::TaskKilling
    );
    // The master's own answer (reconciliation) says TASK_RUNNING instead.
    let answer = FrameworkEvent::Update(killing(None));
    assert!(hidden_update(&answer, &plain).is_none());
    let e = framework_event_to_mesos(answer, &plain);
    assert_eq!(
        e.update.unwrap().status.state(),
        mesos::TaskState::TaskRunning
    );
}

#[test]
fn a_mesos_container_with_a_docker_image_volumes_and_port_mappings_maps_onto_agoras() {
    let launch = |container: &str| {
        let c = call(&format!(
            r#"{{"type":"ACCEPT","accept":{{"offer_ids":[{{"value":"o1"}}],"operations":[
                {{"type":"LAUNCH","launch":{{"task_infos":[{{"name":"t","task_id":{{"value":"t1"}},
                 "agent_id":{{"value":"a"}},"command":{{"shell":false,"arguments":["-p","80"]}},
                 "container":{container}}}]}}}}]}}}}"#
        ));
        accept_from_mesos("f", c.accept.as_ref().unwrap())
    };
    let ok = launch(
        r#"{"type":"MESOS","mesos":{"image":{"type":"DOCKER","docker":{"name":"nginx:1.25"},
            "cached":false}},
            "volumes":[{"mode":"RO","container_path":"/data","host_path":"/srv/data"}],
            "network_infos":[{"name":"mesos-bridge","port_mappings":[
                {"host_port":31000,"container_port":80,"protocol":"tcp"}]}]}"#,
    );
    let Ok(MesosAccept::Launch(l)) = ok else {
        panic!("not a launch: {:?}", ok.err())
    };
    let t = &l.request.tasks[0];
    let c = t.container.as_ref().unwrap();
    assert_eq!(c.image, "nginx:1.25");
    assert!(c.force_pull);
    assert_eq!(t.command, "", "the image's entrypoint runs");
    assert_eq!(c.args, vec!["-p", "80"]);
    assert_eq!(c.volumes[0].host_path, "/srv/data");
    assert!(c.volumes[0].read_only);
    assert_eq!(
        c.network,
        agora_proto::v1::ContainerNetwork::Isolated as i32
    );
    assert_eq!(
        (
            c.port_mappings[0].host_port,
            c.port_mappings[0].container_port
        ),
        (31000, 80)
    );
    for (container, field) in [
        (
            r#"{"type":"DOCKER"}"#,
            "accept.operations[0].launch.task_infos[0].container.type",
        ),
        (
            r#"{"type":"MESOS"}"#,
            "accept.operations[0].launch.task_infos[0].container.mesos.image",
        ),
        (
            r#"{"type":"MESOS","mesos":{"image":{"type":"DOCKER","docker":{"name":"x"}}},
                "network_infos":[{"port_mappings":[{"host_port":1,"container_port":2,
                "protocol":"udp"}]}]}"#,
            "accept.operations[0].launch.task_infos[0].container.network_infos[0].port_mappings[0].protocol",
        ),
    ] {
        let Err(e) = launch(container) else {
            panic!("accepted: {container}")
        };
        assert!(e.message().starts_with(field), "{}", e.message());
    }
}
