//! Mesos' JSON mapping, checked against the literal examples of Apache Mesos' documentation
//! (docs/scheduler-http-api.md, docs/executor-http-api.md and docs/operator-http-api.md of
//! Mesos 1.11, Apache License 2.0). Where an example is not valid JSON or does not match
//! Mesos' own .proto (the docs have a few slips), the test says so and checks what a Mesos
//! master would do with it.

use agora_mesos_proto::v1::{self, executor, master, scheduler};
use agora_mesos_proto::MesosJson;

fn parse<M: MesosJson>(json: &str) -> M {
    M::from_json(json.as_bytes()).unwrap_or_else(|e| panic!("{e}"))
}

/// Parses, writes back, parses again: the JSON we write must read as the same message.
fn reparse<M: MesosJson + PartialEq + std::fmt::Debug>(message: &M) {
    let json = message.to_json().unwrap();
    let again: M = parse(&json);
    assert_eq!(&again, message, "{json}");
}

// ------------------------------------------------------------------------------------------
// Scheduler API calls.
// ------------------------------------------------------------------------------------------

#[test]
fn scheduler_subscribe() {
    // The example carries `offer_constraints`, which Agora does not model: it is ignored.
    let call: scheduler::Call = parse(
        r#"{
   "type"		: "SUBSCRIBE",
   "subscribe"	: {
      "framework_info"	: {
        "user" :  "foo",
        "name" :  "Example HTTP Framework",
        "roles": ["test1", "test2"],
        "capabilities" : [{"type": "MULTI_ROLE"}]
      },
      "suppressed_roles" : ["test2"],
      "offer_constraints" : {
        "role_constraints": {
          "test1": {
            "groups": [{
              "attribute_constraints": [{
                "selector": {"attribute_name": "foo"},
                "predicate": {"exists": {}}
              }]
            }]
          }
        }
      }
   }
}"#,
    );
    assert_eq!(call.r#type(), scheduler::call::Type::Subscribe);
    assert!(call.framework_id.is_none());
    let subscribe = call.subscribe.as_ref().unwrap();
    let info = &subscribe.framework_info;
    assert_eq!(info.user, "foo");
    assert_eq!(info.name, "Example HTTP Framework");
    assert_eq!(info.roles, ["test1", "test2"]);
    assert!(info.id.is_none());
    assert_eq!(info.capabilities.len(), 1);
    assert_eq!(
        info.capabilities[0].r#type(),
        v1::framework_info::capability::Type::MultiRole
    );
    assert_eq!(subscribe.suppressed_roles, ["test2"]);
    // Unset proto2 fields read as absent, with Mesos' defaults through the accessors.
    assert_eq!(info.failover_timeout, None);
    assert_eq!(info.failover_timeout(), 0.0);
    assert!(!info.checkpoint());
    reparse(&call);
}

#[test]
fn scheduler_subscribe_resubscribing_with_an_id() {
    let call: scheduler::Call = parse(
        r#"{"type":"SUBSCRIBE","framework_id":{"value":"12220-3440-12532-2345"},
            "subscribe":{"framework_info":{"user":"foo","name":"n",
            "id":{"value":"12220-3440-12532-2345"},"failover_timeout":604800,"checkpoint":true}}}"#,
    );
    let info = &call.subscribe.as_ref().unwrap().framework_info;
    assert_eq!(info.id.as_ref().unwrap().value, "12220-3440-12532-2345");
    assert_eq!(info.failover_timeout, Some(604800.0));
    assert_eq!(info.checkpoint, Some(true));
    assert_eq!(
        call.framework_id.as_ref().unwrap().value,
        "12220-3440-12532-2345"
    );
}

#[test]
fn scheduler_teardown() {
    let call: scheduler::Call = parse(
        r#"{
  "framework_id"	: {"value" : "12220-3440-12532-2345"},
  "type"			: "TEARDOWN"
}"#,
    );
    assert_eq!(call.r#type(), scheduler::call::Type::Teardown);
    assert_eq!(call.framework_id.unwrap().value, "12220-3440-12532-2345");
}

#[test]
fn scheduler_accept_with_launch() {
    // `limits` (TaskInfo field 15) is not modelled and is ignored.
    let call: scheduler::Call = parse(
        r#"{
  "framework_id": {"value": "12220-3440-12532-2345"},
  "type": "ACCEPT",
  "accept": {
    "offer_ids": [
      {"value": "12220-3440-12532-O12"}
    ],
    "operations": [
      {
        "type": "LAUNCH",
        "launch": {
          "task_infos": [
            {
              "name": "My Task",
              "task_id": {"value": "12220-3440-12532-my-task"},
              "agent_id": {"value": "12220-3440-12532-S1233"},
              "executor": {
                "command": {
                  "shell": true,
                  "value": "sleep 1000"
                },
                "executor_id": {"value": "12214-23523-my-executor"}
              },
              "resources": [
                {
                  "allocation_info": {"role": "engineering"},
                  "name": "cpus",
                  "role": "*",
                  "type": "SCALAR",
                  "scalar": {"value": 1.0}
				        }, {
                  "allocation_info": {"role": "engineering"},
                  "name": "mem",
                  "role": "*",
                  "type": "SCALAR",
                  "scalar": {"value": 128.0}
				        }
              ],
              "limits": {
                "cpus": "Infinity",
                "mem": 512.0
              }
            }
          ]
        }
      }
    ],
    "filters": {"refuse_seconds": 5.0}
  }
}"#,
    );
    assert_eq!(call.r#type(), scheduler::call::Type::Accept);
    let accept = call.accept.as_ref().unwrap();
    assert_eq!(accept.offer_ids[0].value, "12220-3440-12532-O12");
    assert_eq!(accept.filters.as_ref().unwrap().refuse_seconds, Some(5.0));
    let operation = &accept.operations[0];
    assert_eq!(operation.r#type(), v1::offer::operation::Type::Launch);
    let task = &operation.launch.as_ref().unwrap().task_infos[0];
    assert_eq!(task.name, "My Task");
    assert_eq!(task.task_id.value, "12220-3440-12532-my-task");
    assert_eq!(task.agent_id.value, "12220-3440-12532-S1233");
    let executor = task.executor.as_ref().unwrap();
    assert_eq!(executor.executor_id.value, "12214-23523-my-executor");
    let command = executor.command.as_ref().unwrap();
    assert_eq!(command.shell, Some(true));
    assert_eq!(command.value(), "sleep 1000");
    assert_eq!(task.resources.len(), 2);
    let cpus = &task.resources[0];
    assert_eq!(cpus.name, "cpus");
    assert_eq!(cpus.r#type(), v1::value::Type::Scalar);
    assert_eq!(cpus.scalar.as_ref().unwrap().value, 1.0);
    assert_eq!(cpus.allocation_info.as_ref().unwrap().role(), "engineering");
    #[allow(deprecated)]
    let role = cpus.role();
    assert_eq!(role, "*");
    assert_eq!(task.resources[1].scalar.as_ref().unwrap().value, 128.0);
    reparse(&call);
}

#[test]
fn scheduler_decline() {
    let call: scheduler::Call = parse(
        r#"{
  "framework_id"	: {"value" : "12220-3440-12532-2345"},
  "type"			: "DECLINE",
  "decline"			: {
    "offer_ids"	: [
                   {"value" : "12220-3440-12532-O12"},
                   {"value" : "12220-3440-12532-O13"}
                  ],
    "filters"	: {"refuse_seconds" : 5.0}
  }
}"#,
    );
    assert_eq!(call.r#type(), scheduler::call::Type::Decline);
    let decline = call.decline.as_ref().unwrap();
    let ids: Vec<&str> = decline
        .offer_ids
        .iter()
        .map(|id| id.value.as_str())
        .collect();
    assert_eq!(ids, ["12220-3440-12532-O12", "12220-3440-12532-O13"]);
    assert_eq!(decline.filters.as_ref().unwrap().refuse_seconds(), 5.0);
    reparse(&call);
}

#[test]
fn scheduler_revive() {
    // The docs' example has a placeholder where a value belongs, filled in here, and names the
    // field `role`; Mesos' field is `roles`, so `role` is ignored and all roles are revived.
    let call: scheduler::Call = parse(
        r#"{
  "framework_id" : {"value" : "12220-3440-12532-2345"},
  "type"         : "REVIVE",
  "revive"       : {"role": "test1"}
}"#,
    );
    assert_eq!(call.r#type(), scheduler::call::Type::Revive);
    assert!(call.revive.as_ref().unwrap().roles.is_empty());

    let call: scheduler::Call =
        parse(r#"{"framework_id":{"value":"f"},"type":"REVIVE","revive":{"roles":["test1"]}}"#);
    assert_eq!(call.revive.unwrap().roles, ["test1"]);
}

#[test]
fn scheduler_suppress() {
    // The docs' placeholder `<an-array-of-strings>`, filled in.
    let call: scheduler::Call = parse(
        r#"{
  "framework_id" : {"value" : "12220-3440-12532-2345"},
  "type"         : "SUPPRESS",
  "suppress"     : {"roles": ["test1", "test2"]}
}"#,
    );
    assert_eq!(call.r#type(), scheduler::call::Type::Suppress);
    assert_eq!(call.suppress.unwrap().roles, ["test1", "test2"]);
}

#[test]
fn scheduler_kill() {
    let call: scheduler::Call = parse(
        r#"{
  "framework_id"	: {"value" : "12220-3440-12532-2345"},
  "type"			: "KILL",
  "kill"			: {
    "task_id"	:  {"value" : "12220-3440-12532-my-task"},
    "agent_id"	:  {"value" : "12220-3440-12532-S1233"}
  }
}"#,
    );
    assert_eq!(call.r#type(), scheduler::call::Type::Kill);
    let kill = call.kill.as_ref().unwrap();
    assert_eq!(kill.task_id.value, "12220-3440-12532-my-task");
    assert_eq!(
        kill.agent_id.as_ref().unwrap().value,
        "12220-3440-12532-S1233"
    );
    assert!(kill.kill_policy.is_none());
    reparse(&call);
}

#[test]
fn scheduler_kill_with_a_kill_policy_has_64_bit_numbers() {
    let call: scheduler::Call = parse(
        r#"{"framework_id":{"value":"f"},"type":"KILL","kill":{"task_id":{"value":"t"},
            "kill_policy":{"grace_period":{"nanoseconds":"5000000000"}}}}"#,
    );
    let policy = call.kill.as_ref().unwrap().kill_policy.as_ref().unwrap();
    assert_eq!(
        policy.grace_period.as_ref().unwrap().nanoseconds,
        5_000_000_000
    );
    // Written back as a number, as Mesos does, though read from a string.
    let json = call.to_json().unwrap();
    assert!(json.contains(r#""nanoseconds":5000000000"#), "{json}");
}

#[test]
fn scheduler_shutdown() {
    let call: scheduler::Call = parse(
        r#"{
  "framework_id"	: {"value" : "12220-3440-12532-2345"},
  "type"			: "SHUTDOWN",
  "shutdown"		: {
    "executor_id"	:  {"value" : "123450-2340-1232-my-executor"},
    "agent_id"		:  {"value" : "12220-3440-12532-S1233"}
  }
}"#,
    );
    assert_eq!(call.r#type(), scheduler::call::Type::Shutdown);
    let shutdown = call.shutdown.as_ref().unwrap();
    assert_eq!(shutdown.executor_id.value, "123450-2340-1232-my-executor");
    assert_eq!(shutdown.agent_id.value, "12220-3440-12532-S1233");
    reparse(&call);
}

#[test]
fn scheduler_acknowledge() {
    // The uuid is unpadded base64 with non-zero trailing bits; Mesos reads it, so do we.
    let call: scheduler::Call = parse(
        r#"{
  "framework_id"	: {"value" : "12220-3440-12532-2345"},
  "type"			: "ACKNOWLEDGE",
  "acknowledge"		: {
    "agent_id"	:  {"value" : "12220-3440-12532-S1233"},
    "task_id"	:  {"value" : "12220-3440-12532-my-task"},
    "uuid"		:  "jhadf73jhakdlfha723adf"
  }
}"#,
    );
    assert_eq!(call.r#type(), scheduler::call::Type::Acknowledge);
    let ack = call.acknowledge.as_ref().unwrap();
    assert_eq!(ack.agent_id.value, "12220-3440-12532-S1233");
    assert_eq!(ack.task_id.value, "12220-3440-12532-my-task");
    assert_eq!(ack.uuid.len(), 16);
    assert_eq!(&ack.uuid[..3], &[0x8e, 0x16, 0x9d]);
    reparse(&call);
}

#[test]
fn scheduler_reconcile() {
    let call: scheduler::Call = parse(
        r#"{
  "framework_id"	: {"value" : "12220-3440-12532-2345"},
  "type"			: "RECONCILE",
  "reconcile"		: {
    "tasks"		: [
                   { "task_id"  : {"value" : "312325"},
                     "agent_id" : {"value" : "123535"}
                   }
                  ]
  }
}"#,
    );
    assert_eq!(call.r#type(), scheduler::call::Type::Reconcile);
    let tasks = &call.reconcile.as_ref().unwrap().tasks;
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].task_id.value, "312325");
    assert_eq!(tasks[0].agent_id.as_ref().unwrap().value, "123535");
    reparse(&call);

    // An empty list asks for every task.
    let call: scheduler::Call =
        parse(r#"{"framework_id":{"value":"f"},"type":"RECONCILE","reconcile":{}}"#);
    assert!(call.reconcile.unwrap().tasks.is_empty());
}

#[test]
fn scheduler_message() {
    let call: scheduler::Call = parse(
        r#"{
  "framework_id"	: {"value" : "12220-3440-12532-2345"},
  "type"			: "MESSAGE",
  "message"			: {
    "agent_id"       : {"value" : "12220-3440-12532-S1233"},
    "executor_id"    : {"value" : "my-framework-executor"},
    "data"           : "adaf838jahd748jnaldf"
  }
}"#,
    );
    assert_eq!(call.r#type(), scheduler::call::Type::Message);
    let message = call.message.as_ref().unwrap();
    assert_eq!(message.agent_id.value, "12220-3440-12532-S1233");
    assert_eq!(message.executor_id.value, "my-framework-executor");
    assert_eq!(message.data.len(), 15);
    // Bytes are written back as standard padded base64 of the same bytes.
    let json = call.to_json().unwrap();
    assert!(json.contains(r#""data":"adaf838jahd748jnaldf""#), "{json}");
    reparse(&call);
}

#[test]
fn scheduler_request() {
    // The docs' example puts `requests` at the top level (Mesos' field is `request.requests`)
    // and gives `resources` as an object: the top-level key is unknown and ignored.
    let call: scheduler::Call = parse(
        r#"{
  "framework_id"	: {"value" : "12220-3440-12532-2345"},
  "type"			: "REQUEST",
  "requests"		: [
      {
         "agent_id"       : {"value" : "12220-3440-12532-S1233"},
         "resources"      : {}
      }
  ]
}"#,
    );
    assert_eq!(call.r#type(), scheduler::call::Type::Request);
    assert!(call.request.is_none());

    // As Mesos' scheduler.proto has it.
    let call: scheduler::Call = parse(
        r#"{"framework_id":{"value":"12220-3440-12532-2345"},"type":"REQUEST",
            "request":{"requests":[{"agent_id":{"value":"12220-3440-12532-S1233"},
            "resources":[{"name":"cpus","type":"SCALAR","scalar":{"value":2}}]}]}}"#,
    );
    let request = &call.request.as_ref().unwrap().requests[0];
    assert_eq!(
        request.agent_id.as_ref().unwrap().value,
        "12220-3440-12532-S1233"
    );
    assert_eq!(request.resources[0].scalar.as_ref().unwrap().value, 2.0);
    reparse(&call);
}

// ------------------------------------------------------------------------------------------
// Scheduler API events.
// ------------------------------------------------------------------------------------------

#[test]
fn scheduler_event_subscribed() {
    let event: scheduler::Event = parse(
        r#"{
 "type"			: "SUBSCRIBED",
 "subscribed"	: {
     "framework_id"               : {"value":"12220-3440-12532-2345"},
     "heartbeat_interval_seconds" : 15
  }
}"#,
    );
    assert_eq!(event.r#type(), scheduler::event::Type::Subscribed);
    let subscribed = event.subscribed.as_ref().unwrap();
    assert_eq!(subscribed.framework_id.value, "12220-3440-12532-2345");
    assert_eq!(subscribed.heartbeat_interval_seconds, Some(15.0));
    assert!(subscribed.master_info.is_none());
    assert_eq!(
        event.to_json().unwrap(),
        r#"{"type":"SUBSCRIBED","subscribed":{"framework_id":{"value":"12220-3440-12532-2345"},"heartbeat_interval_seconds":15.0}}"#
    );
}

/// The `offers` of the docs' OFFERS example, verbatim.
const DOC_OFFERS: &str = r#"[
    {
      "allocation_info": { "role": "engineering" },
      "id"             : {"value": "12214-23523-O235235"},
      "framework_id"   : {"value": "12124-235325-32425"},
      "agent_id"       : {"value": "12325-23523-S23523"},
      "hostname"       : "agent.host",
      "resources"      : [
                          {
                           "allocation_info": { "role": "engineering" },
                           "name"   : "cpus",
                           "type"   : "SCALAR",
                           "scalar" : {"value" : 2},
                           "role"   : "*"
                          }
                         ],
      "attributes"     : [
                          {
                           "name"   : "os",
                           "type"   : "TEXT",
                           "text"   : {"value" : "ubuntu16.04"}
                          }
                         ],
      "executor_ids"   : [
                          {"value" : "12214-23523-my-executor"}
                         ]
    }
  ]"#;

#[test]
fn scheduler_event_offers() {
    // The docs' example puts the list of offers directly under `offers`; in Mesos' Event,
    // `offers` is the message `Offers`, whose field `offers` holds the list (that is what a
    // Mesos master sends). The literal example is therefore a type error at `offers`...
    let literal = format!(r#"{{"type": "OFFERS", "offers": {DOC_OFFERS}}}"#);
    let err = scheduler::Event::from_json(literal.as_bytes()).unwrap_err();
    assert_eq!(err.path(), "offers");

    // ...and the same offers in Mesos' actual shape parse.
    let event: scheduler::Event = parse(&format!(
        r#"{{"type": "OFFERS", "offers": {{"offers": {DOC_OFFERS}}}}}"#
    ));
    assert_eq!(event.r#type(), scheduler::event::Type::Offers);
    let offers = &event.offers.as_ref().unwrap().offers;
    assert_eq!(offers.len(), 1);
    let offer = &offers[0];
    assert_eq!(offer.id.value, "12214-23523-O235235");
    assert_eq!(offer.framework_id.value, "12124-235325-32425");
    assert_eq!(offer.agent_id.value, "12325-23523-S23523");
    assert_eq!(offer.hostname, "agent.host");
    assert_eq!(
        offer.allocation_info.as_ref().unwrap().role(),
        "engineering"
    );
    assert_eq!(offer.resources[0].name, "cpus");
    assert_eq!(offer.resources[0].scalar.as_ref().unwrap().value, 2.0);
    let os = &offer.attributes[0];
    assert_eq!(os.name, "os");
    assert_eq!(os.r#type(), v1::value::Type::Text);
    assert_eq!(os.text.as_ref().unwrap().value, "ubuntu16.04");
    assert_eq!(offer.executor_ids[0].value, "12214-23523-my-executor");
    reparse(&event);
}

#[test]
fn scheduler_event_update() {
    // `bytes` is not a TaskStatus field (Mesos' is `data`): ignored.
    let event: scheduler::Event = parse(
        r#"{
  "type"	: "UPDATE",
  "update"	: {
    "status"	: {
        "task_id"	: { "value" : "12344-my-task"},
        "state"		: "TASK_RUNNING",
        "source"	: "SOURCE_EXECUTOR",
        "uuid"		: "adfadfadbhgvjayd23r2uahj",
        "bytes"		: "uhdjfhuagdj63d7hadkf"
      }
  }
}"#,
    );
    assert_eq!(event.r#type(), scheduler::event::Type::Update);
    let status = &event.update.as_ref().unwrap().status;
    assert_eq!(status.task_id.value, "12344-my-task");
    assert_eq!(status.state(), v1::TaskState::TaskRunning);
    assert_eq!(status.source(), v1::task_status::Source::Executor);
    assert_eq!(status.uuid.as_ref().unwrap().len(), 18);
    assert!(status.data.is_none());
    assert!(status.reason.is_none());
    reparse(&event);
}

#[test]
fn scheduler_event_rescind_message_failure_heartbeat() {
    let event: scheduler::Event = parse(
        r#"{
  "type"	: "RESCIND",
  "rescind"	: {
    "offer_id"	: { "value" : "12214-23523-O235235"}
  }
}"#,
    );
    assert_eq!(event.rescind.unwrap().offer_id.value, "12214-23523-O235235");

    let event: scheduler::Event = parse(
        r#"{
  "type"	: "MESSAGE",
  "message"	: {
    "agent_id"		: { "value" : "12214-23523-S235235"},
    "executor_id"	: { "value" : "12214-23523-my-executor"},
    "data"			: "adfadf3t2wa3353dfadf"
  }
}"#,
    );
    let message = event.message.unwrap();
    assert_eq!(message.executor_id.value, "12214-23523-my-executor");
    assert_eq!(message.data.len(), 15);

    let event: scheduler::Event = parse(
        r#"{
  "type"	: "FAILURE",
  "failure"	: {
    "agent_id"		: { "value" : "12214-23523-S235235"},
    "executor_id"	: { "value" : "12214-23523-my-executor"},
    "status"		: 1
  }
}"#,
    );
    assert_eq!(event.r#type(), scheduler::event::Type::Failure);
    assert_eq!(event.failure.unwrap().status, Some(1));

    let event: scheduler::Event = parse(r#"{"type": "HEARTBEAT"}"#);
    assert_eq!(event.r#type(), scheduler::event::Type::Heartbeat);
    assert_eq!(event.to_json().unwrap(), r#"{"type":"HEARTBEAT"}"#);
}

#[test]
fn scheduler_event_error() {
    // The docs' ERROR example puts the text at `message`, which in Mesos' Event is the MESSAGE
    // event's payload; the error text belongs in `error.message`.
    let err = scheduler::Event::from_json(
        br#"{
  "type"	: "ERROR",
  "message"	: "Framework is not authorized"
}"#,
    )
    .unwrap_err();
    assert_eq!(err.path(), "message");
    let event: scheduler::Event =
        parse(r#"{"type":"ERROR","error":{"message":"Framework is not authorized"}}"#);
    assert_eq!(event.error.unwrap().message, "Framework is not authorized");
}

// ------------------------------------------------------------------------------------------
// Executor API.
// ------------------------------------------------------------------------------------------

#[test]
fn executor_subscribe() {
    // `framework_id` inside an unacknowledged update is not a field of Call.Update: ignored.
    let call: executor::Call = parse(
        r#"{
  "type": "SUBSCRIBE",
  "executor_id": {
    "value": "387aa966-8fc5-4428-a794-5a868a60d3eb"
  },
  "framework_id": {
    "value": "49154f1b-8cf6-4421-bf13-8bd11dccd1f1"
  },
  "subscribe": {
    "unacknowledged_tasks": [
      {
        "name": "dummy-task",
        "task_id": {
          "value": "d40f3f3e-bbe3-44af-a230-4cb1eae72f67"
        },
        "agent_id": {
          "value": "f1c9cdc5-195e-41a7-a0d7-adaa9af07f81"
        },
        "command": {
          "value": "ls",
          "arguments": [
            "-l",
            "\/tmp"
          ]
        }
      }
    ],
    "unacknowledged_updates": [
      {
        "framework_id": {
          "value": "49154f1b-8cf6-4421-bf13-8bd11dccd1f1"
        },
        "status": {
          "source": "SOURCE_EXECUTOR",
          "task_id": {
            "value": "d40f3f3e-bbe3-44af-a230-4cb1eae72f67"
          },
        "state": "TASK_RUNNING",
        "uuid": "ZDQwZjNmM2UtYmJlMy00NGFmLWEyMzAtNGNiMWVhZTcyZjY3Cg=="
        }
      }
    ]
  }
}"#,
    );
    assert_eq!(call.r#type(), executor::call::Type::Subscribe);
    assert_eq!(
        call.executor_id.value,
        "387aa966-8fc5-4428-a794-5a868a60d3eb"
    );
    assert_eq!(
        call.framework_id.value,
        "49154f1b-8cf6-4421-bf13-8bd11dccd1f1"
    );
    let subscribe = call.subscribe.as_ref().unwrap();
    let task = &subscribe.unacknowledged_tasks[0];
    assert_eq!(task.name, "dummy-task");
    let command = task.command.as_ref().unwrap();
    assert_eq!(command.value(), "ls");
    assert_eq!(command.arguments, ["-l", "/tmp"]);
    // Unset, so the accessor gives Mesos' default: run through the shell.
    assert!(command.shell());
    let status = &subscribe.unacknowledged_updates[0].status;
    assert_eq!(status.state(), v1::TaskState::TaskRunning);
    assert_eq!(
        status.uuid.as_deref(),
        Some(&b"d40f3f3e-bbe3-44af-a230-4cb1eae72f67\n"[..])
    );
    reparse(&call);
}

#[test]
fn executor_event_subscribed() {
    // The docs' example gives `agent_info` a `host`; Mesos' AgentInfo requires `hostname`, so
    // a Mesos agent would never send this, and reading it fails naming the field.
    let doc = r#"{
  "type": "SUBSCRIBED",
  "subscribed": {
    "executor_info": {
      "executor_id": {
        "value": "387aa966-8fc5-4428-a794-5a868a60d3eb"
      },
      "command": {
        "value": "\/path\/to\/executor"
      },
      "framework_id": {
        "value": "49154f1b-8cf6-4421-bf13-8bd11dccd1f1"
      }
    },
    "framework_info": {
      "user": "foo",
      "name": "my_framework"
    },
    "agent_id": {
      "value": "f1c9cdc5-195e-41a7-a0d7-adaa9af07f81"
    },
    "agent_info": {
      "host": "agenthost",
      "port": 5051
    }
  }
}"#;
    let err = executor::Event::from_json(doc.as_bytes()).unwrap_err();
    assert_eq!(err.path(), "subscribed.agent_info");
    assert!(err.detail().contains("missing field `hostname`"), "{err}");

    let event: executor::Event = parse(&doc.replace(r#""host":"#, r#""hostname":"#));
    assert_eq!(event.r#type(), executor::event::Type::Subscribed);
    let subscribed = event.subscribed.as_ref().unwrap();
    assert_eq!(
        subscribed.executor_info.executor_id.value,
        "387aa966-8fc5-4428-a794-5a868a60d3eb"
    );
    assert_eq!(
        subscribed.executor_info.command.as_ref().unwrap().value(),
        "/path/to/executor"
    );
    assert_eq!(subscribed.framework_info.name, "my_framework");
    assert_eq!(subscribed.agent_info.hostname, "agenthost");
    assert_eq!(subscribed.agent_info.port, Some(5051));
    reparse(&event);
}

#[test]
fn executor_update_and_message_calls() {
    let call: executor::Call = parse(
        r#"{
  "executor_id": {
    "value": "387aa966-8fc5-4428-a794-5a868a60d3eb"
  },
  "framework_id": {
    "value": "9aaa9d0d-e00d-444f-bfbd-23dd197939a0-0000"
  },
  "type": "UPDATE",
  "update": {
    "status": {
      "executor_id": {
        "value": "387aa966-8fc5-4428-a794-5a868a60d3eb"
      },
      "source": "SOURCE_EXECUTOR",
      "state": "TASK_RUNNING",
      "task_id": {
        "value": "66724cec-2609-4fa0-8d93-c5fb2099d0f8"
      },
      "uuid": "ZDQwZjNmM2UtYmJlMy00NGFmLWEyMzAtNGNiMWVhZTcyZjY3Cg=="
    }
  }
}"#,
    );
    assert_eq!(call.r#type(), executor::call::Type::Update);
    let status = &call.update.as_ref().unwrap().status;
    assert_eq!(status.task_id.value, "66724cec-2609-4fa0-8d93-c5fb2099d0f8");
    assert_eq!(
        status.executor_id.as_ref().unwrap().value,
        "387aa966-8fc5-4428-a794-5a868a60d3eb"
    );
    reparse(&call);

    let call: executor::Call = parse(
        r#"{
  "executor_id": {
    "value": "387aa966-8fc5-4428-a794-5a868a60d3eb"
  },
  "framework_id": {
    "value": "9aaa9d0d-e00d-444f-bfbd-23dd197939a0-0000"
  },
  "type": "MESSAGE",
  "message": {
    "data": "t+Wonz5fRFKMzCnEptlv5A=="
  }
}"#,
    );
    assert_eq!(call.r#type(), executor::call::Type::Message);
    assert_eq!(call.message.as_ref().unwrap().data.len(), 16);
    let json = call.to_json().unwrap();
    assert!(
        json.contains(r#""data":"t+Wonz5fRFKMzCnEptlv5A==""#),
        "{json}"
    );
}

#[test]
fn executor_events() {
    // LAUNCH: `framework_info` is not a field of Event.Launch: ignored.
    let event: executor::Event = parse(
        r#"{
  "type": "LAUNCH",
  "launch": {
    "framework_info": {
      "id": {
        "value": "49154f1b-8cf6-4421-bf13-8bd11dccd1f1"
      },
      "user": "foo",
      "name": "my_framework"
    },
    "task": {
      "name": "dummy-task",
      "task_id": {
        "value": "d40f3f3e-bbe3-44af-a230-4cb1eae72f67"
      },
      "agent_id": {
        "value": "f1c9cdc5-195e-41a7-a0d7-adaa9af07f81"
      },
      "command": {
        "value": "sleep",
        "arguments": [
          "100"
        ]
      }
    }
  }
}"#,
    );
    assert_eq!(event.r#type(), executor::event::Type::Launch);
    let task = &event.launch.as_ref().unwrap().task;
    assert_eq!(task.task_id.value, "d40f3f3e-bbe3-44af-a230-4cb1eae72f67");
    assert_eq!(task.command.as_ref().unwrap().arguments, ["100"]);

    let event: executor::Event = parse(
        r#"{
  "type": "LAUNCH_GROUP",
  "launch_group": {
    "task_group" : {
      "tasks" : [
        {
          "name": "dummy-task",
          "task_id": {
            "value": "d40f3f3e-bbe3-44af-a230-4cb1eae72f67"
          },
          "agent_id": {
            "value": "f1c9cdc5-195e-41a7-a0d7-adaa9af07f81"
          },
          "command": {
            "value": "sleep",
            "arguments": [
              "100"
            ]
          }
        }
      ]
    }
  }
}"#,
    );
    assert_eq!(event.r#type(), executor::event::Type::LaunchGroup);
    assert_eq!(
        event.launch_group.unwrap().task_group.tasks[0].name,
        "dummy-task"
    );

    let event: executor::Event = parse(
        r#"{
  "type" : "KILL",
  "kill" : {
    "task_id" : {"value" : "d40f3f3e-bbe3-44af-a230-4cb1eae72f67"}
  }
}"#,
    );
    assert_eq!(
        event.kill.unwrap().task_id.value,
        "d40f3f3e-bbe3-44af-a230-4cb1eae72f67"
    );

    let event: executor::Event = parse(
        r#"{
  "type" : "ACKNOWLEDGED",
  "acknowledged" : {
    "task_id" : {"value" : "d40f3f3e-bbe3-44af-a230-4cb1eae72f67"},
    "uuid" : "ZDQwZjNmM2UtYmJlMy00NGFmLWEyMzAtNGNiMWVhZTcyZjY3Cg=="
  }
}"#,
    );
    assert_eq!(event.r#type(), executor::event::Type::Acknowledged);
    assert_eq!(
        event.acknowledged.unwrap().uuid,
        b"d40f3f3e-bbe3-44af-a230-4cb1eae72f67\n"
    );

    let event: executor::Event = parse(
        r#"{
  "type" : "MESSAGE",
  "message" : {
    "data" : "c2FtcGxlIGRhdGE="
  }
}"#,
    );
    assert_eq!(event.message.unwrap().data, b"sample data");

    let event: executor::Event = parse(
        r#"{
  "type" : "SHUTDOWN"
}"#,
    );
    assert_eq!(event.r#type(), executor::event::Type::Shutdown);

    let event: executor::Event = parse(
        r#"{
  "type" : "ERROR",
  "error" : {
    "message" : "Unrecoverable error"
  }
}"#,
    );
    assert_eq!(event.error.unwrap().message, "Unrecoverable error");
}

// ------------------------------------------------------------------------------------------
// Operator API.
// ------------------------------------------------------------------------------------------

#[test]
fn operator_calls_without_payload() {
    for (json, expected) in [
        (r#"{"type": "GET_HEALTH"}"#, master::call::Type::GetHealth),
        (r#"{"type": "GET_VERSION"}"#, master::call::Type::GetVersion),
        (r#"{"type": "GET_STATE"}"#, master::call::Type::GetState),
        (r#"{"type": "GET_ROLES"}"#, master::call::Type::GetRoles),
        (r#"{"type": "GET_WEIGHTS"}"#, master::call::Type::GetWeights),
        (r#"{"type": "GET_MASTER"}"#, master::call::Type::GetMaster),
        (r#"{"type": "SUBSCRIBE"}"#, master::call::Type::Subscribe),
        // Recognised by name even where the payload is not modelled.
        (r#"{"type": "GET_QUOTA"}"#, master::call::Type::GetQuota),
        (
            r#"{"type": "DRAIN_AGENT", "drain_agent": {"agent_id": {"value": "a"}}}"#,
            master::call::Type::DrainAgent,
        ),
    ] {
        let call: master::Call = parse(json);
        assert_eq!(call.r#type(), expected, "{json}");
    }
}

#[test]
fn operator_update_weights() {
    let call: master::Call = parse(
        r#"{
  "type": "UPDATE_WEIGHTS",
  "update_weights": {
    "weight_infos": [
      {
        "role": "role",
        "weight": 4.0
      }
    ]
  }
}"#,
    );
    assert_eq!(call.r#type(), master::call::Type::UpdateWeights);
    let info = &call.update_weights.as_ref().unwrap().weight_infos[0];
    assert_eq!(info.role(), "role");
    assert_eq!(info.weight, 4.0);
    reparse(&call);
}

#[test]
fn operator_responses() {
    let response: master::Response = parse(
        r#"{
  "type": "GET_HEALTH",
  "get_health": {
    "healthy": true
  }
}"#,
    );
    assert!(response.get_health.unwrap().healthy);

    let response: master::Response = parse(
        r#"{
  "type": "GET_VERSION",
  "get_version": {
    "version_info": {
      "version": "1.0.0",
      "build_date": "2016-06-24 23:18:37",
      "build_time": 1466810317,
      "build_user": "root"
    }
  }
}"#,
    );
    let version = response.get_version.unwrap().version_info;
    assert_eq!(version.version, "1.0.0");
    assert_eq!(version.build_time, Some(1466810317.0));

    let response: master::Response = parse(
        r#"{
  "type": "GET_MASTER",
  "get_master": {
    "master_info": {
      "address": {
        "hostname": "myhost",
        "ip": "127.0.1.1",
        "port": 34626
      },
      "hostname": "myhost",
      "id": "310ffdac-0b73-408d-acf0-2adcd21cb4b7",
      "ip": 16842879,
      "pid": "master@127.0.1.1:34626",
      "port": 34626,
      "version": "1.1.0"
    }
  }
}"#,
    );
    assert_eq!(response.r#type(), master::response::Type::GetMaster);
    let info = response
        .get_master
        .as_ref()
        .unwrap()
        .master_info
        .as_ref()
        .unwrap();
    assert_eq!(info.id, "310ffdac-0b73-408d-acf0-2adcd21cb4b7");
    assert_eq!(info.ip, 16842879);
    assert_eq!(info.port, 34626);
    assert_eq!(info.address.as_ref().unwrap().ip(), "127.0.1.1");
    reparse(&response);

    let response: master::Response = parse(
        r#"{
  "type": "GET_ROLES",
  "get_roles": {
    "roles": [
      {
        "name": "*",
        "weight": 1.0
      },
      {
        "frameworks": [
          {
            "value": "74bddcbc-4a02-4d64-b291-aed52032055f-0000"
          }
        ],
        "name": "role1",
        "resources": [
          {
            "name": "cpus",
            "role": "role1",
            "scalar": {
              "value": 0.5
            },
            "type": "SCALAR"
          },
          {
            "name": "mem",
            "role": "role1",
            "scalar": {
              "value": 512.0
            },
            "type": "SCALAR"
          },
          {
            "name": "ports",
            "ranges": {
              "range": [
                {
                  "begin": 31000,
                  "end": 31001
                }
              ]
            },
            "role": "role1",
            "type": "RANGES"
          },
          {
            "name": "disk",
            "role": "role1",
            "scalar": {
              "value": 1024.0
            },
            "type": "SCALAR"
          }
        ],
        "weight": 2.5
      }
    ]
  }
}"#,
    );
    let roles = &response.get_roles.as_ref().unwrap().roles;
    assert_eq!(roles[0].name, "*");
    assert_eq!(roles[1].name, "role1");
    assert_eq!(roles[1].weight, 2.5);
    assert_eq!(
        roles[1].frameworks[0].value,
        "74bddcbc-4a02-4d64-b291-aed52032055f-0000"
    );
    let ports = &roles[1].resources[2];
    assert_eq!(ports.r#type(), v1::value::Type::Ranges);
    let range = &ports.ranges.as_ref().unwrap().range[0];
    assert_eq!((range.begin, range.end), (31000, 31001));
    // 64-bit integers are written as numbers.
    let json = response.to_json().unwrap();
    assert!(
        json.contains(r#""range":[{"begin":31000,"end":31001}]"#),
        "{json}"
    );
    reparse(&response);
}

#[test]
fn operator_events() {
    let event: master::Event = parse(
        r#"{
  "type": "FRAMEWORK_ADDED",

  "framework_added": {
    "framework": {
      "active": true,
      "allocated_resources": [],
      "connected": true,
      "framework_info": {
        "capabilities": [
          {
            "type": "RESERVATION_REFINEMENT"
          }
        ],
        "checkpoint": true,
        "failover_timeout": 0,
        "id": {
          "value": "a9ba2984-99c4-4183-8cd1-f7313426e21c-0147"
        },
        "name": "inverse-offer-example-framework",
        "role": "*",
        "user": "root"
      },
      "inverse_offers": [],
      "recovered": false,
      "registered_time": {
        "nanoseconds": 1501191957829317120
      },
      "reregistered_time": {
        "nanoseconds": 1501191957829317120
      }
    }
  }
}"#,
    );
    assert_eq!(event.r#type(), master::event::Type::FrameworkAdded);
    let framework = &event.framework_added.as_ref().unwrap().framework;
    assert!(framework.active && framework.connected && !framework.recovered);
    assert_eq!(
        framework.registered_time.as_ref().unwrap().nanoseconds,
        1_501_191_957_829_317_120
    );
    let json = event.to_json().unwrap();
    assert!(
        json.contains(r#""nanoseconds":1501191957829317120"#),
        "{json}"
    );
    reparse(&event);

    // The docs' AGENT_ADDED example has a trailing comma after `"resources": []`, which is
    // not JSON; removed here.
    let event: master::Event = parse(
        r#"{
  "type": "AGENT_ADDED",

  "agent_added": {
    "agent": {
      "active": true,
      "agent_info": {
        "hostname": "172.31.2.24",
        "id": {
          "value": "c3946a13-75b4-4d3c-9d0e-fc10038dca85-S3"
        },
        "port": 5051,
        "resources": []
      },
      "allocated_resources": [],
      "capabilities": [
        {
          "type": "MULTI_ROLE"
        },
        {
          "type": "HIERARCHICAL_ROLE"
        },
        {
          "type": "RESERVATION_REFINEMENT"
        }
      ],
      "offered_resources": [],
      "pid": "slave(1)@172.31.2.24:5051",
      "registered_time": {
        "nanoseconds": 1500993262264135000
      },
      "reregistered_time": {
        "nanoseconds": 1500993263019321000
      },
      "total_resources": [],
      "version": "1.4.0"
    }
  }
}"#,
    );
    let agent = &event.agent_added.as_ref().unwrap().agent;
    assert_eq!(agent.agent_info.hostname, "172.31.2.24");
    assert_eq!(agent.version, "1.4.0");
    assert_eq!(
        agent.capabilities[2].r#type(),
        v1::agent_info::capability::Type::ReservationRefinement
    );

    let event: master::Event = parse(
        r#"{
  "type": "AGENT_REMOVED",

  "agent_removed": {
    "agent_id": {
      "value": "c3946a13-75b4-4d3c-9d0e-fc10038dca85-S3"
    }
  }
}"#,
    );
    assert_eq!(
        event.agent_removed.unwrap().agent_id.value,
        "c3946a13-75b4-4d3c-9d0e-fc10038dca85-S3"
    );

    let event: master::Event = parse(r#"{"type": "HEARTBEAT"}"#);
    assert_eq!(event.r#type(), master::event::Type::Heartbeat);
}

// ------------------------------------------------------------------------------------------
// Unknown fields, wrong types, errors.
// ------------------------------------------------------------------------------------------

#[test]
fn unknown_fields_are_ignored_at_every_level() {
    let call: scheduler::Call = parse(
        r#"{"type":"SUBSCRIBE","future_top_level":{"a":[1,2,{"b":null}]},
            "subscribe":{"framework_info":{"user":"u","name":"n","offer_filters":{"x":{}},
            "capabilities":[{"type":"MULTI_ROLE","extra":true}]},"unknown":"x"}}"#,
    );
    let info = &call.subscribe.as_ref().unwrap().framework_info;
    assert_eq!((info.user.as_str(), info.name.as_str()), ("u", "n"));
    assert_eq!(info.capabilities.len(), 1);
}

#[test]
fn a_wrongly_typed_field_is_an_error_naming_it() {
    let err = scheduler::Call::from_json(
        br#"{"type":"SUBSCRIBE","subscribe":{"framework_info":{"user":5,"name":"n"}}}"#,
    )
    .unwrap_err();
    assert_eq!(err.path(), "subscribe.framework_info.user");
    assert_eq!(err.message_type(), "mesos.v1.scheduler.Call");
    assert!(!err.is_syntax());
    let text = err.to_string();
    assert!(
        text.starts_with(
            "mesos.v1.scheduler.Call: at `subscribe.framework_info.user`: \
             invalid type: integer `5`, expected a string"
        ),
        "{text}"
    );

    // Inside a list, with the index.
    let err = scheduler::Call::from_json(
        br#"{"type":"ACCEPT","accept":{"offer_ids":[{"value":"o1"},{"value":["o2"]}]}}"#,
    )
    .unwrap_err();
    assert_eq!(err.path(), "accept.offer_ids[1].value");

    // A number where a message belongs.
    let err = scheduler::Call::from_json(br#"{"type":"KILL","kill":{"task_id":7}}"#).unwrap_err();
    assert_eq!(err.path(), "kill.task_id");

    // A string that is no number where a double belongs.
    let err = scheduler::Call::from_json(
        br#"{"type":"DECLINE","decline":{"filters":{"refuse_seconds":"soon"}}}"#,
    )
    .unwrap_err();
    assert_eq!(err.path(), "decline.filters.refuse_seconds");

    // Bad base64.
    let err = scheduler::Call::from_json(
        br##"{"type":"ACKNOWLEDGE","acknowledge":{"agent_id":{"value":"a"},
              "task_id":{"value":"t"},"uuid":"#!"}}"##,
    )
    .unwrap_err();
    assert_eq!(err.path(), "acknowledge.uuid");
    assert!(err.detail().contains("base64"), "{err}");
}

#[test]
fn an_unknown_enum_name_is_an_error_naming_the_field() {
    let err = scheduler::Call::from_json(br#"{"type":"SUBSCRIBE_PLEASE"}"#).unwrap_err();
    assert_eq!(err.path(), "type");
    assert!(err.detail().contains("SUBSCRIBE_PLEASE"), "{err}");
    // Enum numbers are accepted too.
    let call: scheduler::Call = parse(r#"{"type":6}"#);
    assert_eq!(call.r#type(), scheduler::call::Type::Kill);
}

#[test]
fn a_missing_required_field_is_an_error_naming_it() {
    let err = scheduler::Call::from_json(
        br#"{"type":"SUBSCRIBE","subscribe":{"framework_info":{"name":"n"}}}"#,
    )
    .unwrap_err();
    assert_eq!(err.path(), "subscribe.framework_info");
    assert!(err.detail().contains("missing field `user`"), "{err}");
    // Named as in the .proto, not in lowerCamelCase.
    let err = executor::Call::from_json(br#"{"executor_id":{"value":"e"}}"#).unwrap_err();
    assert!(
        err.detail().contains("missing field `framework_id`"),
        "{err}"
    );
}

#[test]
fn malformed_json_is_an_error() {
    for input in [&b"{"[..], b"", b"{\"type\":}", b"{} {}", b"null", b"[]"] {
        let err = scheduler::Call::from_json(input).unwrap_err();
        assert!(!err.to_string().is_empty());
    }
    assert!(scheduler::Call::from_json(b"{\"type\":")
        .unwrap_err()
        .is_syntax());
    assert!(scheduler::Call::from_json(b"{} x").unwrap_err().is_syntax());
}

#[test]
fn lower_camel_case_names_are_accepted_on_input() {
    let call: scheduler::Call = parse(
        r#"{"type":"SUBSCRIBE","frameworkId":{"value":"f"},
            "subscribe":{"frameworkInfo":{"user":"u","name":"n","webuiUrl":"http://x"}}}"#,
    );
    assert_eq!(call.framework_id.unwrap().value, "f");
    let info = call.subscribe.unwrap().framework_info;
    assert_eq!(info.webui_url(), "http://x");
}

#[test]
fn written_json_uses_proto_names_enum_names_and_leaves_unset_fields_out() {
    let status = v1::TaskStatus {
        task_id: v1::TaskId { value: "t".into() },
        state: v1::TaskState::TaskGoneByOperator as i32,
        reason: Some(v1::task_status::Reason::AgentRemovedByOperator as i32),
        uuid: Some(vec![0xff, 0x00, 0x10]),
        timestamp: Some(1.5),
        ..Default::default()
    };
    assert_eq!(
        status.to_json().unwrap(),
        r#"{"task_id":{"value":"t"},"state":"TASK_GONE_BY_OPERATOR","reason":"REASON_AGENT_REMOVED_BY_OPERATOR","timestamp":1.5,"uuid":"/wAQ"}"#
    );
}

#[test]
fn writing_an_enum_number_with_no_name_is_an_error_naming_the_message() {
    let call = scheduler::Call {
        r#type: Some(99),
        ..Default::default()
    };
    let err = call.to_json().unwrap_err();
    assert_eq!(err.path(), ".");
    assert!(err.detail().contains("99"), "{err}");

    let event = scheduler::Event {
        r#type: Some(scheduler::event::Type::Update as i32),
        update: Some(scheduler::event::Update {
            status: v1::TaskStatus {
                state: 42,
                ..Default::default()
            },
        }),
        ..Default::default()
    };
    let err = event.to_json().unwrap_err();
    assert_eq!(err.path(), "update.status");
    assert!(err.detail().contains("42"), "{err}");
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn status() -> impl Strategy<Value = v1::TaskStatus> {
        (
            ".*",
            prop::sample::select(vec![
                v1::TaskState::TaskStaging,
                v1::TaskState::TaskRunning,
                v1::TaskState::TaskKilling,
                v1::TaskState::TaskGoneByOperator,
                v1::TaskState::TaskUnknown,
            ]),
            prop::option::of(".*"),
            prop::option::of(prop::collection::vec(any::<u8>(), 0..64)),
            prop::option::of(prop::collection::vec(any::<u8>(), 16)),
            prop::option::of(-1e12f64..1e12),
            prop::option::of(any::<i64>()),
            prop::option::of(any::<bool>()),
        )
            .prop_map(
                |(id, state, message, data, uuid, timestamp, nanos, healthy)| v1::TaskStatus {
                    task_id: v1::TaskId { value: id },
                    state: state as i32,
                    message,
                    data,
                    uuid,
                    timestamp,
                    unreachable_time: nanos.map(|nanoseconds| v1::TimeInfo { nanoseconds }),
                    healthy,
                    ..Default::default()
                },
            )
    }

    proptest! {
        /// Any status (any text, bytes, 64-bit integers) survives JSON and protobuf alike.
        #[test]
        fn status_updates_survive_json_and_protobuf(status in status(), begin in any::<u64>()) {
            let event = scheduler::Event {
                r#type: Some(scheduler::event::Type::Update as i32),
                update: Some(scheduler::event::Update { status }),
                ..Default::default()
            };
            let json = event.to_json().unwrap();
            prop_assert_eq!(&scheduler::Event::from_json(json.as_bytes()).unwrap(), &event);
            let range = v1::value::Range { begin, end: begin };
            let json = range.to_json().unwrap();
            prop_assert_eq!(json, format!(r#"{{"begin":{begin},"end":{begin}}}"#));
        }
    }
}
