//! The protobuf encoding (`Content-Type: application/x-protobuf`): round trips of calls and
//! events, and the field numbers and enum values on the wire, checked against Mesos 1.11's.

use agora_mesos_proto::v1::{self, executor, master, scheduler};
use agora_mesos_proto::{recordio, MesosJson};
use prost::Message;

fn round_trip<M: Message + Default + PartialEq + std::fmt::Debug>(message: &M) {
    let bytes = message.encode_to_vec();
    let decoded = M::decode(bytes.as_slice()).unwrap();
    assert_eq!(&decoded, message);
}

/// The field numbers present at the top level of an encoded message, in order.
fn tags(mut bytes: &[u8]) -> Vec<u32> {
    fn varint(bytes: &mut &[u8]) -> u64 {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = bytes[0];
            *bytes = &bytes[1..];
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                break;
            }
        }
        value
    }
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let key = varint(&mut bytes);
        out.push((key >> 3) as u32);
        match key & 7 {
            0 => {
                varint(&mut bytes);
            }
            1 => bytes = &bytes[8..],
            2 => {
                let len = varint(&mut bytes) as usize;
                bytes = &bytes[len..];
            }
            5 => bytes = &bytes[4..],
            other => panic!("wire type {other}"),
        }
    }
    out
}

fn sorted(mut v: Vec<u32>) -> Vec<u32> {
    v.sort_unstable();
    v.dedup();
    v
}

fn framework_id() -> v1::FrameworkId {
    v1::FrameworkId {
        value: "fw-1".into(),
    }
}

fn agent_id() -> v1::AgentId {
    v1::AgentId {
        value: "agent-1".into(),
    }
}

fn task_id(name: &str) -> v1::TaskId {
    v1::TaskId { value: name.into() }
}

fn scalar(name: &str, value: f64) -> v1::Resource {
    v1::Resource {
        name: name.into(),
        r#type: v1::value::Type::Scalar as i32,
        scalar: Some(v1::value::Scalar { value }),
        allocation_info: Some(v1::resource::AllocationInfo {
            role: Some("web".into()),
        }),
        ..Default::default()
    }
}

fn ports() -> v1::Resource {
    v1::Resource {
        name: "ports".into(),
        r#type: v1::value::Type::Ranges as i32,
        ranges: Some(v1::value::Ranges {
            range: vec![v1::value::Range {
                begin: 31000,
                end: u64::MAX,
            }],
        }),
        reservations: vec![v1::resource::ReservationInfo {
            r#type: Some(v1::resource::reservation_info::Type::Dynamic as i32),
            role: Some("web".into()),
            principal: Some("ops".into()),
            labels: Some(labels()),
        }],
        ..Default::default()
    }
}

fn labels() -> v1::Labels {
    v1::Labels {
        labels: vec![v1::Label {
            key: "k".into(),
            value: Some("v".into()),
        }],
    }
}

fn command() -> v1::CommandInfo {
    v1::CommandInfo {
        uris: vec![v1::command_info::Uri {
            value: "http://example.invalid/app.tgz".into(),
            executable: Some(false),
            extract: Some(true),
            cache: Some(true),
            output_file: Some("app.tgz".into()),
        }],
        environment: Some(v1::Environment {
            variables: vec![v1::environment::Variable {
                name: "PORT".into(),
                r#type: Some(v1::environment::variable::Type::Value as i32),
                value: Some("31000".into()),
            }],
        }),
        shell: Some(false),
        value: Some("/bin/app".into()),
        arguments: vec!["app".into(), "--serve".into()],
        user: Some("nobody".into()),
    }
}

fn task_info() -> v1::TaskInfo {
    v1::TaskInfo {
        name: "web".into(),
        task_id: task_id("web-1"),
        agent_id: agent_id(),
        resources: vec![scalar("cpus", 0.5), scalar("mem", 128.0), ports()],
        executor: None,
        command: Some(command()),
        kill_policy: Some(v1::KillPolicy {
            grace_period: Some(v1::DurationInfo {
                nanoseconds: 3_000_000_000,
            }),
        }),
        data: Some(vec![0, 1, 2, 255]),
        labels: Some(labels()),
        container: None,
    }
}

fn executor_info() -> v1::ExecutorInfo {
    v1::ExecutorInfo {
        r#type: Some(v1::executor_info::Type::Custom as i32),
        executor_id: v1::ExecutorId {
            value: "exec-1".into(),
        },
        framework_id: Some(framework_id()),
        command: Some(command()),
        resources: vec![scalar("cpus", 0.1)],
        name: Some("my executor".into()),
        data: Some(b"opaque".to_vec()),
        ..Default::default()
    }
}

fn framework_info() -> v1::FrameworkInfo {
    #[allow(deprecated)]
    v1::FrameworkInfo {
        user: "root".into(),
        name: "marathon-ish".into(),
        id: Some(framework_id()),
        failover_timeout: Some(604800.0),
        checkpoint: Some(true),
        role: Some("*".into()),
        roles: vec!["web".into(), "batch".into()],
        hostname: Some("sched.local".into()),
        principal: Some("ops".into()),
        webui_url: Some("http://sched.local:8080".into()),
        capabilities: vec![
            v1::framework_info::Capability {
                r#type: Some(v1::framework_info::capability::Type::MultiRole as i32),
            },
            v1::framework_info::Capability {
                r#type: Some(v1::framework_info::capability::Type::PartitionAware as i32),
            },
        ],
        labels: Some(labels()),
    }
}

fn task_status() -> v1::TaskStatus {
    v1::TaskStatus {
        task_id: task_id("web-1"),
        state: v1::TaskState::TaskFailed as i32,
        message: Some("exited 1".into()),
        source: Some(v1::task_status::Source::Executor as i32),
        reason: Some(v1::task_status::Reason::ContainerLimitationMemory as i32),
        data: Some(b"out".to_vec()),
        agent_id: Some(agent_id()),
        executor_id: Some(v1::ExecutorId {
            value: "exec-1".into(),
        }),
        timestamp: Some(1_700_000_000.25),
        uuid: Some(vec![7; 16]),
        healthy: Some(false),
        labels: Some(labels()),
        unreachable_time: Some(v1::TimeInfo { nanoseconds: -1 }),
    }
}

fn offer() -> v1::Offer {
    v1::Offer {
        id: v1::OfferId {
            value: "offer-1".into(),
        },
        framework_id: framework_id(),
        agent_id: agent_id(),
        hostname: "host-1".into(),
        url: Some(v1::Url {
            scheme: "http".into(),
            address: v1::Address {
                hostname: Some("host-1".into()),
                ip: Some("10.0.0.1".into()),
                port: 5051,
            },
            path: Some("/slave(1)".into()),
            query: vec![v1::Parameter {
                key: "a".into(),
                value: "b".into(),
            }],
            fragment: None,
        }),
        resources: vec![scalar("cpus", 4.0), ports()],
        attributes: vec![v1::Attribute {
            name: "rack".into(),
            r#type: v1::value::Type::Text as i32,
            text: Some(v1::value::Text { value: "r1".into() }),
            ..Default::default()
        }],
        executor_ids: vec![v1::ExecutorId {
            value: "exec-1".into(),
        }],
        allocation_info: Some(v1::resource::AllocationInfo {
            role: Some("web".into()),
        }),
    }
}

fn every_scheduler_call() -> scheduler::Call {
    use scheduler::call;
    scheduler::Call {
        framework_id: Some(framework_id()),
        r#type: Some(call::Type::Accept as i32),
        subscribe: Some(call::Subscribe {
            framework_info: framework_info(),
            suppressed_roles: vec!["batch".into()],
        }),
        accept: Some(call::Accept {
            offer_ids: vec![offer().id],
            operations: vec![
                v1::offer::Operation {
                    r#type: Some(v1::offer::operation::Type::Launch as i32),
                    launch: Some(v1::offer::operation::Launch {
                        task_infos: vec![task_info()],
                    }),
                    ..Default::default()
                },
                v1::offer::Operation {
                    r#type: Some(v1::offer::operation::Type::LaunchGroup as i32),
                    id: Some(v1::OperationId { value: "op".into() }),
                    launch_group: Some(v1::offer::operation::LaunchGroup {
                        executor: executor_info(),
                        task_group: v1::TaskGroupInfo {
                            tasks: vec![task_info(), task_info()],
                        },
                    }),
                    ..Default::default()
                },
                v1::offer::Operation {
                    r#type: Some(v1::offer::operation::Type::Reserve as i32),
                    reserve: Some(v1::offer::operation::Reserve {
                        source: vec![scalar("cpus", 1.0)],
                        resources: vec![ports()],
                    }),
                    ..Default::default()
                },
            ],
            filters: Some(v1::Filters {
                refuse_seconds: Some(30.0),
            }),
        }),
        decline: Some(call::Decline {
            offer_ids: vec![offer().id],
            filters: None,
        }),
        revive: Some(call::Revive {
            roles: vec!["web".into()],
        }),
        kill: Some(call::Kill {
            task_id: task_id("web-1"),
            agent_id: Some(agent_id()),
            kill_policy: None,
        }),
        shutdown: Some(call::Shutdown {
            executor_id: v1::ExecutorId {
                value: "exec-1".into(),
            },
            agent_id: agent_id(),
        }),
        acknowledge: Some(call::Acknowledge {
            agent_id: agent_id(),
            task_id: task_id("web-1"),
            uuid: vec![7; 16],
        }),
        reconcile: Some(call::Reconcile {
            tasks: vec![call::reconcile::Task {
                task_id: task_id("web-1"),
                agent_id: None,
            }],
        }),
        message: Some(call::Message {
            agent_id: agent_id(),
            executor_id: v1::ExecutorId {
                value: "exec-1".into(),
            },
            data: b"hi".to_vec(),
        }),
        request: Some(call::Request {
            requests: vec![v1::Request {
                agent_id: Some(agent_id()),
                resources: vec![scalar("cpus", 1.0)],
            }],
        }),
        suppress: Some(call::Suppress {
            roles: vec!["batch".into()],
        }),
        update_framework: Some(call::UpdateFramework {
            framework_info: framework_info(),
            suppressed_roles: vec![],
        }),
    }
}

fn every_scheduler_event() -> scheduler::Event {
    use scheduler::event;
    scheduler::Event {
        r#type: Some(event::Type::Offers as i32),
        subscribed: Some(event::Subscribed {
            framework_id: framework_id(),
            heartbeat_interval_seconds: Some(15.0),
            master_info: Some(v1::MasterInfo {
                id: "master-1".into(),
                ip: 16_777_343,
                port: 5050,
                pid: Some("master@127.0.0.1:5050".into()),
                hostname: Some("localhost".into()),
                version: Some("1.11.0".into()),
                address: Some(v1::Address {
                    hostname: Some("localhost".into()),
                    ip: Some("127.0.0.1".into()),
                    port: 5050,
                }),
            }),
        }),
        offers: Some(event::Offers {
            offers: vec![offer(), offer()],
        }),
        rescind: Some(event::Rescind {
            offer_id: offer().id,
        }),
        update: Some(event::Update {
            status: task_status(),
        }),
        message: Some(event::Message {
            agent_id: agent_id(),
            executor_id: v1::ExecutorId {
                value: "exec-1".into(),
            },
            data: vec![],
        }),
        failure: Some(event::Failure {
            agent_id: Some(agent_id()),
            executor_id: None,
            status: Some(-9),
        }),
        error: Some(event::Error {
            message: "bye".into(),
        }),
    }
}

#[test]
fn scheduler_call_and_event_round_trip() {
    round_trip(&every_scheduler_call());
    round_trip(&every_scheduler_event());
    round_trip(&scheduler::Call::default());
    round_trip(&scheduler::Event::default());
}

#[test]
fn executor_call_and_event_round_trip() {
    use executor::{call, event};
    let call = executor::Call {
        executor_id: v1::ExecutorId {
            value: "exec-1".into(),
        },
        framework_id: framework_id(),
        r#type: Some(call::Type::Subscribe as i32),
        subscribe: Some(call::Subscribe {
            unacknowledged_tasks: vec![task_info()],
            unacknowledged_updates: vec![call::Update {
                status: task_status(),
            }],
        }),
        update: Some(call::Update {
            status: task_status(),
        }),
        message: Some(call::Message {
            data: b"to the scheduler".to_vec(),
        }),
    };
    round_trip(&call);
    let event = executor::Event {
        r#type: Some(event::Type::Subscribed as i32),
        subscribed: Some(event::Subscribed {
            executor_info: executor_info(),
            framework_info: framework_info(),
            agent_info: v1::AgentInfo {
                hostname: "host-1".into(),
                port: Some(5051),
                resources: vec![scalar("cpus", 8.0), ports()],
                attributes: offer().attributes,
                id: Some(agent_id()),
            },
            container_id: Some(v1::ContainerId {
                value: "child".into(),
                parent: Some(Box::new(v1::ContainerId {
                    value: "parent".into(),
                    parent: None,
                })),
            }),
        }),
        acknowledged: Some(event::Acknowledged {
            task_id: task_id("web-1"),
            uuid: vec![1; 16],
        }),
        launch: Some(event::Launch { task: task_info() }),
        launch_group: Some(event::LaunchGroup {
            task_group: v1::TaskGroupInfo {
                tasks: vec![task_info()],
            },
        }),
        kill: Some(event::Kill {
            task_id: task_id("web-1"),
            kill_policy: None,
        }),
        message: Some(event::Message {
            data: b"from the scheduler".to_vec(),
        }),
        error: Some(event::Error {
            message: "no".into(),
        }),
    };
    round_trip(&event);
}

#[test]
fn operator_call_response_event_round_trip() {
    use master::{call, event, response};
    let call = master::Call {
        r#type: Some(call::Type::UpdateWeights as i32),
        update_weights: Some(call::UpdateWeights {
            weight_infos: vec![v1::WeightInfo {
                weight: 2.5,
                role: Some("web".into()),
            }],
        }),
        read_file: Some(call::ReadFile {
            path: "/master/log".into(),
            offset: 1 << 40,
            length: Some(4096),
        }),
        teardown: Some(call::Teardown {
            framework_id: framework_id(),
        }),
        ..Default::default()
    };
    round_trip(&call);

    let task = v1::Task {
        name: "web".into(),
        task_id: task_id("web-1"),
        framework_id: framework_id(),
        executor_id: None,
        agent_id: agent_id(),
        state: v1::TaskState::TaskRunning as i32,
        resources: vec![scalar("cpus", 0.5)],
        statuses: vec![task_status()],
        status_update_state: Some(v1::TaskState::TaskRunning as i32),
        status_update_uuid: Some(vec![7; 16]),
        labels: Some(labels()),
        kill_policy: None,
        user: Some("nobody".into()),
    };
    let framework = response::get_frameworks::Framework {
        framework_info: framework_info(),
        active: true,
        connected: true,
        recovered: false,
        registered_time: Some(v1::TimeInfo {
            nanoseconds: 1_501_191_957_829_317_120,
        }),
        offers: vec![offer()],
        allocated_resources: vec![scalar("cpus", 0.5)],
        ..Default::default()
    };
    let agent = response::get_agents::Agent {
        agent_info: v1::AgentInfo {
            hostname: "host-1".into(),
            ..Default::default()
        },
        active: true,
        version: "1.11.0".into(),
        capabilities: vec![v1::agent_info::Capability {
            r#type: Some(v1::agent_info::capability::Type::MultiRole as i32),
        }],
        ..Default::default()
    };
    let state = response::GetState {
        get_tasks: Some(response::GetTasks {
            tasks: vec![task.clone()],
            completed_tasks: vec![task.clone()],
            ..Default::default()
        }),
        get_executors: Some(response::GetExecutors {
            executors: vec![response::get_executors::Executor {
                executor_info: executor_info(),
                agent_id: agent_id(),
            }],
            ..Default::default()
        }),
        get_frameworks: Some(response::GetFrameworks {
            frameworks: vec![framework.clone()],
            ..Default::default()
        }),
        get_agents: Some(response::GetAgents {
            agents: vec![agent.clone()],
            recovered_agents: vec![],
        }),
    };
    let response = master::Response {
        r#type: Some(response::Type::GetState as i32),
        get_health: Some(response::GetHealth { healthy: true }),
        get_version: Some(response::GetVersion {
            version_info: v1::VersionInfo {
                version: "1.11.0".into(),
                ..Default::default()
            },
        }),
        get_metrics: Some(response::GetMetrics {
            metrics: vec![v1::Metric {
                name: "master/uptime_secs".into(),
                value: Some(12.0),
            }],
        }),
        get_state: Some(state.clone()),
        get_roles: Some(response::GetRoles {
            roles: vec![v1::Role {
                name: "web".into(),
                weight: 1.0,
                frameworks: vec![framework_id()],
                resources: vec![scalar("cpus", 0.5)],
            }],
        }),
        get_master: Some(response::GetMaster {
            master_info: None,
            start_time: Some(1.0),
            elected_time: Some(2.0),
        }),
        ..Default::default()
    };
    round_trip(&response);

    let event = master::Event {
        r#type: Some(event::Type::Subscribed as i32),
        subscribed: Some(event::Subscribed {
            get_state: Some(state),
            heartbeat_interval_seconds: Some(15.0),
        }),
        task_added: Some(event::TaskAdded { task: task.clone() }),
        task_updated: Some(event::TaskUpdated {
            framework_id: framework_id(),
            status: task_status(),
            state: v1::TaskState::TaskFailed as i32,
        }),
        agent_added: Some(event::AgentAdded { agent }),
        agent_removed: Some(event::AgentRemoved {
            agent_id: agent_id(),
        }),
        framework_added: Some(event::FrameworkAdded {
            framework: framework.clone(),
        }),
        framework_updated: Some(event::FrameworkUpdated { framework }),
        framework_removed: Some(event::FrameworkRemoved {
            framework_info: framework_info(),
        }),
    };
    round_trip(&event);
}

/// JSON and protobuf carry the same message: protobuf -> JSON -> protobuf changes nothing.
#[test]
fn json_and_protobuf_agree() {
    let call = every_scheduler_call();
    let json = call.to_json().unwrap();
    let back = scheduler::Call::from_json(json.as_bytes()).unwrap();
    assert_eq!(back, call);
    assert_eq!(back.encode_to_vec(), call.encode_to_vec());

    let event = every_scheduler_event();
    let json = event.to_json().unwrap();
    assert_eq!(scheduler::Event::from_json(json.as_bytes()).unwrap(), event);
    // u64::MAX survives as a JSON number.
    assert!(json.contains(r#""end":18446744073709551615"#), "{json}");
}

/// A SUBSCRIBED event, a heartbeat and an update framed in RecordIO, as the master streams
/// them, decode to the same events, in both encodings.
#[test]
fn events_in_recordio() {
    let events = [
        every_scheduler_event(),
        scheduler::Event {
            r#type: Some(scheduler::event::Type::Heartbeat as i32),
            ..Default::default()
        },
    ];
    let mut json_stream = Vec::new();
    let mut proto_stream = Vec::new();
    for event in &events {
        recordio::encode_into(&event.to_json_vec().unwrap(), &mut json_stream);
        recordio::encode_into(&event.encode_to_vec(), &mut proto_stream);
    }
    assert!(json_stream.ends_with(b"20\n{\"type\":\"HEARTBEAT\"}"));

    let mut decoder = recordio::Decoder::default();
    let records: Vec<Vec<u8>> = json_stream
        .chunks(7)
        .flat_map(|chunk| decoder.decode(chunk).unwrap())
        .collect();
    let decoded: Vec<scheduler::Event> = records
        .iter()
        .map(|r| scheduler::Event::from_json(r).unwrap())
        .collect();
    assert_eq!(decoded, events);

    let mut decoder = recordio::Decoder::default();
    let decoded: Vec<scheduler::Event> = decoder
        .decode(&proto_stream)
        .unwrap()
        .iter()
        .map(|r| scheduler::Event::decode(r.as_slice()).unwrap())
        .collect();
    assert_eq!(decoded, events);
    decoder.finish().unwrap();
}

// ------------------------------------------------------------------------------------------
// The wire interface: field numbers and enum values as in Mesos 1.11.
// ------------------------------------------------------------------------------------------

#[test]
fn scheduler_field_numbers() {
    let call = every_scheduler_call();
    assert_eq!(
        sorted(tags(&call.encode_to_vec())),
        [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 15, 16, 19]
    );
    let event = every_scheduler_event();
    assert_eq!(
        sorted(tags(&event.encode_to_vec())),
        [1, 2, 3, 4, 5, 6, 7, 8]
    );
    let c = call.subscribe.as_ref().unwrap();
    assert_eq!(sorted(tags(&c.encode_to_vec())), [1, 2]);
    let c = call.accept.as_ref().unwrap();
    assert_eq!(sorted(tags(&c.encode_to_vec())), [1, 2, 3]);
    let c = call.kill.as_ref().unwrap();
    assert_eq!(sorted(tags(&c.encode_to_vec())), [1, 2]);
    let c = call.acknowledge.as_ref().unwrap();
    assert_eq!(sorted(tags(&c.encode_to_vec())), [1, 2, 3]);
    let e = event.subscribed.as_ref().unwrap();
    assert_eq!(sorted(tags(&e.encode_to_vec())), [1, 2, 3]);
    let e = event.failure.as_ref().unwrap();
    assert_eq!(sorted(tags(&e.encode_to_vec())), [1, 3]);
}

#[test]
fn common_type_field_numbers() {
    assert_eq!(
        sorted(tags(&framework_info().encode_to_vec())),
        [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
    );
    assert_eq!(
        sorted(tags(&task_status().encode_to_vec())),
        [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14]
    );
    assert_eq!(
        sorted(tags(&task_info().encode_to_vec())),
        [1, 2, 3, 4, 6, 7, 10, 12]
    );
    assert_eq!(
        sorted(tags(&executor_info().encode_to_vec())),
        [1, 4, 5, 7, 8, 9, 15]
    );
    assert_eq!(
        sorted(tags(&offer().encode_to_vec())),
        [1, 2, 3, 4, 5, 6, 7, 8, 10]
    );
    assert_eq!(sorted(tags(&command().encode_to_vec())), [1, 2, 3, 5, 6, 7]);
    assert_eq!(
        sorted(tags(&command().uris[0].encode_to_vec())),
        [1, 2, 3, 4, 5]
    );
    assert_eq!(sorted(tags(&ports().encode_to_vec())), [1, 2, 4, 13]);
    assert_eq!(
        sorted(tags(&ports().reservations[0].encode_to_vec())),
        [1, 2, 3, 4]
    );
    assert_eq!(
        sorted(tags(&scalar("cpus", 1.0).encode_to_vec())),
        [1, 2, 3, 11]
    );
    let set = v1::Attribute {
        name: "zones".into(),
        r#type: v1::value::Type::Set as i32,
        set: Some(v1::value::Set {
            item: vec!["a".into()],
        }),
        ..Default::default()
    };
    assert_eq!(sorted(tags(&set.encode_to_vec())), [1, 2, 6]);
    let master_info = every_scheduler_event()
        .subscribed
        .unwrap()
        .master_info
        .unwrap();
    assert_eq!(
        sorted(tags(&master_info.encode_to_vec())),
        [1, 2, 3, 4, 5, 6, 7]
    );
}

#[test]
fn enum_values() {
    use v1::TaskState as S;
    let states = [
        (S::TaskStaging, 6),
        (S::TaskStarting, 0),
        (S::TaskRunning, 1),
        (S::TaskKilling, 8),
        (S::TaskFinished, 2),
        (S::TaskFailed, 3),
        (S::TaskKilled, 4),
        (S::TaskError, 7),
        (S::TaskLost, 5),
        (S::TaskDropped, 9),
        (S::TaskUnreachable, 10),
        (S::TaskGone, 11),
        (S::TaskGoneByOperator, 12),
        (S::TaskUnknown, 13),
    ];
    for (state, number) in states {
        assert_eq!(state as i32, number, "{state:?}");
    }
    use v1::task_status::Reason as R;
    assert_eq!(R::CommandExecutorFailed as i32, 0);
    assert_eq!(R::ContainerLimitationMemory as i32, 8);
    assert_eq!(R::AgentDraining as i32, 34);
    assert_eq!(R::MaxCompletionTimeReached as i32, 33);
    assert_eq!(R::TaskUnknown as i32, 16);
    assert_eq!(R::Reconciliation as i32, 9);
    use scheduler::call::Type as C;
    assert_eq!(
        [
            C::Subscribe,
            C::Teardown,
            C::Accept,
            C::Decline,
            C::Revive,
            C::Kill,
            C::Shutdown
        ]
        .map(|t| t as i32),
        [1, 2, 3, 4, 5, 6, 7]
    );
    assert_eq!(
        [
            C::Acknowledge,
            C::Reconcile,
            C::Message,
            C::Request,
            C::Suppress,
            C::UpdateFramework
        ]
        .map(|t| t as i32),
        [8, 9, 10, 11, 12, 17]
    );
    use master::call::Type as M;
    assert_eq!(
        [
            M::GetHealth,
            M::GetState,
            M::GetTasks,
            M::GetRoles,
            M::Subscribe,
            M::GetOperations
        ]
        .map(|t| t as i32),
        [1, 9, 13, 14, 18, 33]
    );
    assert_eq!(
        [
            M::DrainAgent,
            M::DeactivateAgent,
            M::ReactivateAgent,
            M::MarkAgentGone
        ]
        .map(|t| t as i32),
        [37, 38, 39, 32]
    );
    use master::response::Type as P;
    assert_eq!(
        [P::GetState, P::GetTasks, P::GetMaster, P::GetOperations].map(|t| t as i32),
        [8, 12, 15, 19]
    );
    use v1::offer::operation::Type as O;
    assert_eq!(
        [
            O::Launch,
            O::LaunchGroup,
            O::Reserve,
            O::Unreserve,
            O::Create,
            O::Destroy
        ]
        .map(|t| t as i32),
        [1, 6, 2, 3, 4, 5]
    );
}

/// Proto2 defaults come from Mesos' definitions through the accessors.
#[test]
fn proto2_defaults() {
    let info = v1::FrameworkInfo::default();
    #[allow(deprecated)]
    let role = info.role();
    assert_eq!(role, "*");
    assert_eq!(info.failover_timeout(), 0.0);
    assert!(!info.checkpoint());
    assert!(v1::CommandInfo::default().shell());
    assert!(v1::command_info::Uri::default().extract());
    assert_eq!(v1::Filters::default().refuse_seconds(), 5.0);
    assert_eq!(v1::AgentInfo::default().port(), 5051);
    assert_eq!(v1::MasterInfo::default().port, 5050);
    assert_eq!(
        v1::environment::Variable::default().r#type(),
        v1::environment::variable::Type::Value
    );
    // The first value listed is proto2's default for an unset optional enum.
    assert_eq!(
        v1::Task::default().status_update_state(),
        v1::TaskState::TaskStaging
    );
}
