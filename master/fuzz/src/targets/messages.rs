//! Target `messages`: every inbound request of the gRPC API, decoded with prost and then
//! validated as the master's transport does it, through `agora_master::convert`.
//!
//! Input: one byte choosing the request type ([`KINDS`], modulo), then the message's
//! protobuf encoding. A session stream (`AgentGateway.Connect`, the agent's side of it) is
//! a [`Frames`] message holding one encoded message per frame. Raft peer messages carry
//! openraft's JSON, decoded as the master does (and the commands of appended entries are
//! applied to a registry, which must keep its invariants whatever they say).
//!
//! A decode error or an INVALID_ARGUMENT naming a field is a fine answer; a panic, another
//! status code, or an accepted request that the layers behind `convert` then refuse as
//! malformed (the registry, the agent's checkpoint) is a finding.

use std::time::Duration;

use agora_master::convert;
use agora_master::store::TypeConfig;
use agora_proto::v1 as pb;
use agora_registry::resources::validate_framework_role;
use agora_registry::{
    AgentId, Command, CommandBatch, FrameworkId, FrameworkInfo, Registry, Resources,
};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use prost::Message;
use tonic::{Code, Status};

use crate::engine::Features;
use crate::mutate::{canonical, mutate_proto, Rng};

/// A stream of messages in one fuzz input: one encoded message per frame.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Frames {
    #[prost(bytes = "vec", repeated, tag = "1")]
    pub items: Vec<Vec<u8>>,
}

/// The request types, by the first byte of the input (modulo their number).
pub const KINDS: [&str; 25] = [
    "scheduler.subscribe",
    "scheduler.accept",
    "scheduler.decline",
    "scheduler.framework_call",
    "scheduler.kill",
    "scheduler.acknowledge",
    "scheduler.reconcile",
    "scheduler.message",
    "scheduler.shutdown",
    "master.register_agent",
    "master.get_state",
    "master.get_status",
    "agent_gateway.connect",
    "operator.set_weight",
    "operator.get_weights",
    "operator.add_learner",
    "operator.change_membership",
    "raft.append_entries",
    "raft.vote",
    "raft.install_snapshot",
    "raft.node_status",
    "executor.subscribe",
    "executor.update",
    "executor.send_message",
    "agent.session",
];

fn kind_index(name: &str) -> u8 {
    KINDS.iter().position(|k| *k == name).expect("a known kind") as u8
}

pub const DICTIONARY: &[&[u8]] = &[
    b"f-1",
    b"a-1",
    b"o-1",
    b"t-1",
    b".",
    b"..",
    b"a/b",
    b"a b",
    b"web",
    b"*",
    b"-bad",
    b"eng/web",
    b"cpus",
    b"mem",
    b"ports",
    b"disk",
    b"h:5051",
    b"h:0",
    b"h:65536",
    b":5051",
    b"root",
    b"-root",
    b"alice",
    b"sleep 1",
    b" ",
    b"\n",
    b"\x1b[31m",
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b",",
    b":",
    b"null",
    b"1e400",
    b"-1",
    b"18446744073709551616",
    b"\"vote\"",
    b"\"entries\"",
    b"\"commands\"",
    b"\"register_agent\"",
    b"\"launch_tasks\"",
    b"\"resources\"",
    b"\"ranges\"",
];

/// Mutates the encoded message behind the kind byte, field by field.
pub fn mutator(
    input: &[u8],
    other: &[u8],
    dict: &[&[u8]],
    rng: &mut Rng,
    max_len: usize,
) -> Option<Vec<u8>> {
    let (&kind, payload) = input.split_first()?;
    let donor = other.get(1..).unwrap_or_default();
    let body = mutate_proto(payload, donor, dict, rng, max_len.saturating_sub(1))?;
    let mut out = Vec::with_capacity(body.len() + 1);
    out.push(kind);
    out.extend(body);
    Some(out)
}

pub fn run(data: &[u8], f: &mut Features) {
    let Some((&k, payload)) = data.split_first() else {
        return;
    };
    let kind = KINDS[k as usize % KINDS.len()];
    f.tag(kind);
    let mut c = Check { f, kind };
    match kind {
        "scheduler.subscribe" => c
            .decode::<pb::SubscribeRequest>(payload)
            .map(|r| c.subscribe(r)),
        "scheduler.accept" => c.decode::<pb::AcceptRequest>(payload).map(|r| c.accept(&r)),
        "scheduler.decline" => c
            .decode::<pb::DeclineRequest>(payload)
            .map(|r| c.decline(&r)),
        "scheduler.framework_call" => c.decode::<pb::FrameworkCall>(payload).map(|r| {
            c.ok(convert::framework_id(&r.framework_id, "framework_id"));
        }),
        "scheduler.kill" => c.decode::<pb::KillRequest>(payload).map(|r| c.kill(&r)),
        "scheduler.acknowledge" => c
            .decode::<pb::AcknowledgeRequest>(payload)
            .map(|r| c.acknowledge(&r)),
        "scheduler.reconcile" => c
            .decode::<pb::ReconcileRequest>(payload)
            .map(|r| c.reconcile(&r)),
        "scheduler.message" => c
            .decode::<pb::FrameworkMessage>(payload)
            .map(|r| c.scheduler_message(&r)),
        "scheduler.shutdown" => c
            .decode::<pb::ShutdownRequest>(payload)
            .map(|r| c.shutdown(&r)),
        "master.register_agent" => c
            .decode::<pb::RegisterAgentRequest>(payload)
            .map(|r| c.register_agent(r)),
        "master.get_state" => c.decode::<pb::GetStateRequest>(payload).map(drop),
        "master.get_status" => c.decode::<pb::GetStatusRequest>(payload).map(drop),
        "agent_gateway.connect" => c.decode::<Frames>(payload).map(|r| c.agent_session(r)),
        "operator.set_weight" => c
            .decode::<pb::SetWeightRequest>(payload)
            .map(|r| c.set_weight(&r)),
        "operator.get_weights" => c.decode::<pb::GetWeightsRequest>(payload).map(drop),
        "operator.add_learner" => c.decode::<pb::AddLearnerRequest>(payload).map(|r| {
            let ok = r.id != 0 && agora_master::config::is_host_port(&r.address);
            c.f.tag_n("add_learner", ok as u64);
        }),
        "operator.change_membership" => c
            .decode::<pb::ChangeMembershipRequest>(payload)
            .map(|r| c.f.tag_n("voters", r.voter_ids.len().min(8) as u64)),
        "raft.append_entries" => c.decode::<pb::RaftMessage>(payload).map(|r| c.append(&r)),
        "raft.vote" => c.decode::<pb::RaftMessage>(payload).map(|r| c.vote(&r)),
        "raft.install_snapshot" => c
            .decode::<pb::SnapshotChunk>(payload)
            .map(|r| c.snapshot(&r)),
        "raft.node_status" => c.decode::<pb::NodeStatusRequest>(payload).map(drop),
        "executor.subscribe" => c.decode::<pb::ExecutorSubscribe>(payload).map(drop),
        "executor.update" => c
            .decode::<pb::ExecutorUpdate>(payload)
            .map(|r| c.executor_update(r)),
        "executor.send_message" => c.decode::<pb::FrameworkMessage>(payload).map(drop),
        "agent.session" => c.decode::<Frames>(payload).map(|r| c.master_session(r)),
        _ => unreachable!("every kind is handled"),
    };
}

/// The request `data` holds, decoded (`replay --describe`).
pub fn describe(data: &[u8]) -> String {
    let Some((&k, payload)) = data.split_first() else {
        return "empty input".into();
    };
    let kind = KINDS[k as usize % KINDS.len()];
    fn show<M: Message + Default + std::fmt::Debug>(payload: &[u8]) -> String {
        match M::decode(payload) {
            Ok(m) => format!("{m:#?}"),
            Err(e) => format!("decode error: {e}"),
        }
    }
    let body = match kind {
        "scheduler.subscribe" => show::<pb::SubscribeRequest>(payload),
        "scheduler.accept" => show::<pb::AcceptRequest>(payload),
        "scheduler.decline" => show::<pb::DeclineRequest>(payload),
        "scheduler.framework_call" => show::<pb::FrameworkCall>(payload),
        "scheduler.kill" => show::<pb::KillRequest>(payload),
        "scheduler.acknowledge" => show::<pb::AcknowledgeRequest>(payload),
        "scheduler.reconcile" => show::<pb::ReconcileRequest>(payload),
        "scheduler.message" | "executor.send_message" => show::<pb::FrameworkMessage>(payload),
        "scheduler.shutdown" => show::<pb::ShutdownRequest>(payload),
        "master.register_agent" => show::<pb::RegisterAgentRequest>(payload),
        "agent_gateway.connect" => match Frames::decode(payload) {
            Ok(frames) => frames
                .items
                .iter()
                .map(|f| show::<pb::AgentMessage>(f))
                .collect::<Vec<_>>()
                .join("\n"),
            Err(e) => format!("decode error: {e}"),
        },
        "operator.set_weight" => show::<pb::SetWeightRequest>(payload),
        "operator.add_learner" => show::<pb::AddLearnerRequest>(payload),
        "operator.change_membership" => show::<pb::ChangeMembershipRequest>(payload),
        "raft.append_entries" | "raft.vote" => match pb::RaftMessage::decode(payload) {
            Ok(m) => String::from_utf8_lossy(&m.json).into_owned(),
            Err(e) => format!("decode error: {e}"),
        },
        "raft.install_snapshot" => match pb::SnapshotChunk::decode(payload) {
            Ok(c) => format!(
                "{}\n{}",
                String::from_utf8_lossy(&c.header_json),
                String::from_utf8_lossy(&c.data)
            ),
            Err(e) => format!("decode error: {e}"),
        },
        "executor.subscribe" => show::<pb::ExecutorSubscribe>(payload),
        "executor.update" => show::<pb::ExecutorUpdate>(payload),
        "agent.session" => match Frames::decode(payload) {
            Ok(frames) => frames
                .items
                .iter()
                .map(|f| show::<pb::MasterMessage>(f))
                .collect::<Vec<_>>()
                .join("\n"),
            Err(e) => format!("decode error: {e}"),
        },
        _ => format!("{} bytes", payload.len()),
    };
    format!("{kind}\n{body}")
}

/// An error text without what the input put in it (quoted or bracketed parts, a resource's
/// name), so that one kind of refusal is one feature.
fn gist(text: &str) -> String {
    // The agent's "resource NAME: reason": the reason (which has no ": ").
    if let Some(rest) = text.strip_prefix("resource ") {
        return rest.rsplit(": ").next().unwrap_or_default().to_string();
    }
    // Elsewhere what comes from the input is quoted or indexed: keep what precedes it.
    text.split(['"', '[', '{'])
        .next()
        .unwrap_or_default()
        .chars()
        .take(48)
        .collect()
}

struct Check<'a> {
    f: &'a mut Features,
    kind: &'static str,
}

impl Check<'_> {
    fn decode<M: Message + Default>(&mut self, payload: &[u8]) -> Option<M> {
        match M::decode(payload) {
            Ok(m) => {
                self.f.tag("decoded");
                // What decodes encodes and decodes again to the same message (compared
                // encoded, as a NaN double is not equal to itself, with fields sorted, as
                // a map's entries come out in hash order).
                let bytes = m.encode_to_vec();
                let again = M::decode(bytes.as_slice()).expect("re-encoded decodes");
                let bytes_again = again.encode_to_vec();
                assert!(
                    bytes_again == bytes || canonical(&bytes_again) == canonical(&bytes),
                    "{}: re-encoding changed the message",
                    self.kind
                );
                Some(m)
            }
            Err(e) => {
                self.f.tag_text("decode-error", &e.to_string());
                None
            }
        }
    }

    /// A conversion's result: Ok, or INVALID_ARGUMENT naming a field ("field: reason").
    fn ok<T>(&mut self, result: Result<T, Status>) -> Option<T> {
        match result {
            Ok(v) => {
                self.f.tag("valid");
                Some(v)
            }
            Err(s) => {
                assert_eq!(
                    s.code(),
                    Code::InvalidArgument,
                    "{}: a refusal that is not INVALID_ARGUMENT\n{s:?}",
                    self.kind
                );
                let (field, _) = s
                    .message()
                    .split_once(": ")
                    .unwrap_or_else(|| panic!("{}: no field named\n{:?}", self.kind, s.message()));
                assert!(
                    !field.is_empty(),
                    "{}: empty field\n{:?}",
                    self.kind,
                    s.message()
                );
                self.f.tag_text("invalid", &gist(field));
                None
            }
        }
    }

    fn subscribe(&mut self, req: pb::SubscribeRequest) {
        let Some(call) = self.ok(convert::subscribe_from_proto(req)) else {
            return;
        };
        assert!(
            call.failover_timeout_ms <= 365 * 24 * 3600 * 1000,
            "failover timeout over a year\n{} ms",
            call.failover_timeout_ms
        );
        // What the transport accepts, the registry registers.
        let info = FrameworkInfo {
            id: call
                .id
                .clone()
                .unwrap_or_else(|| FrameworkId::new("f-new").expect("valid id")),
            name: call.name.clone(),
            role: call.role.clone(),
            principal: call.principal.clone(),
            failover_timeout_ms: call.failover_timeout_ms,
            user: call.user.clone(),
        };
        let mut reg = Registry::new();
        let result = reg.apply(&Command::RegisterFramework { info, now_ms: 1 });
        assert_eq!(
            result,
            Ok(()),
            "an accepted subscription is refused\n{call:?}"
        );
    }

    fn accept(&mut self, req: &pb::AcceptRequest) {
        self.ok(convert::framework_id(&req.framework_id, "framework_id"));
        for framework_user in ["", "alice"] {
            let Some(call) = self.ok(convert::accept_from_proto(req, framework_user)) else {
                continue;
            };
            assert!(!call.offer_ids.is_empty() && call.offer_ids.len() <= 100);
            assert!(call.tasks.len() <= 1000);
            assert!(call.refuse <= Duration::from_secs(365 * 24 * 3600));
            self.f.tag_n("tasks", call.tasks.len().min(8) as u64);
            for t in &call.tasks {
                assert!(
                    !t.resources.is_empty(),
                    "a task without resources\n{}",
                    t.id
                );
                assert!(t.resources.scalar_total("cpus").millis() >= 10);
                assert!(t.resources.scalar_total("mem").millis() >= 32_000);
                // The wire form converts back to the same resources.
                let wire = convert::resources_to_proto(&t.resources);
                match convert::resources_from_proto(&wire, "r") {
                    Ok(back) => assert_eq!(back, t.resources, "resources round trip"),
                    Err(e) => panic!("resources do not convert back\n{}\n{e:?}", t.resources),
                }
                // The agent gets the task as the master encoded it, with its user.
                let info = pb::TaskInfo::decode(t.launch.as_slice()).expect("launch decodes");
                assert_eq!(info.task_id, t.id.as_str());
                assert_eq!(info.user, t.user);
                // The agent checkpoints a task's resources as text and parses them back
                // when it restarts (agent/src/tasks.rs): they must survive that.
                let text = t.resources.to_string();
                assert_eq!(
                    Resources::parse(&text).as_ref(),
                    Ok(&t.resources),
                    "an accepted task's resources do not parse back\n{text:?}"
                );
            }
        }
    }

    fn decline(&mut self, req: &pb::DeclineRequest) {
        self.ok(convert::framework_id(&req.framework_id, "framework_id"));
        if let Some(refuse) = self.ok(convert::refuse_from_proto(req.filters.as_ref())) {
            assert!(refuse <= Duration::from_secs(365 * 24 * 3600));
        }
        self.ok(convert::limits::count(
            "offer_ids",
            req.offer_ids.len(),
            convert::limits::MAX_OFFERS_PER_CALL,
        ));
        self.ok(convert::offer_ids(&req.offer_ids, "offer_ids", false));
    }

    fn kill(&mut self, req: &pb::KillRequest) {
        self.ok(convert::framework_id(&req.framework_id, "framework_id"));
        self.ok(convert::task_id(&req.task_id, "task_id"));
        if let Some(ms) = self.ok(convert::limits::grace_period_ms(
            "grace_period_ms",
            req.grace_period_ms,
        )) {
            assert!(ms <= 3_600_000);
        }
    }

    fn acknowledge(&mut self, req: &pb::AcknowledgeRequest) {
        self.ok(convert::framework_id(&req.framework_id, "framework_id"));
        self.ok(convert::task_id(&req.task_id, "task_id"));
        self.f.tag_n("uuid", req.uuid.is_empty() as u64);
        if !req.agent_id.is_empty() {
            self.ok(convert::agent_id(&req.agent_id, "agent_id"));
        }
    }

    fn reconcile(&mut self, req: &pb::ReconcileRequest) {
        self.ok(convert::framework_id(&req.framework_id, "framework_id"));
        self.ok(convert::limits::count(
            "task_ids",
            req.task_ids.len(),
            convert::limits::MAX_TASKS_PER_RECONCILE,
        ));
        for (i, t) in req.task_ids.iter().enumerate() {
            self.ok(convert::task_id(t, &format!("task_ids[{i}]")));
        }
    }

    fn scheduler_message(&mut self, m: &pb::FrameworkMessage) {
        self.ok(convert::framework_id(&m.framework_id, "framework_id"));
        self.ok(convert::agent_id(&m.agent_id, "agent_id"));
        self.ok(agora_registry::ids::validate_id(&m.executor_id)
            .map_err(|e| convert::invalid("executor_id", e)));
        self.ok(convert::limits::bytes(
            "data",
            &m.data,
            convert::limits::MAX_MESSAGE_BYTES,
        ));
    }

    fn shutdown(&mut self, req: &pb::ShutdownRequest) {
        self.ok(convert::framework_id(&req.framework_id, "framework_id"));
        self.ok(convert::agent_id(&req.agent_id, "agent_id"));
        self.ok(agora_registry::ids::validate_id(&req.executor_id)
            .map_err(|e| convert::invalid("executor_id", e)));
    }

    fn register_agent(&mut self, req: pb::RegisterAgentRequest) {
        let new_id = || AgentId::new("new-S").expect("valid id");
        if let Some(info) = self.ok(convert::agent_info_from_proto(req.agent, new_id)) {
            // The wire form converts back to the same registration.
            let wire = convert::agent_info_to_proto(&info);
            match convert::agent_info_from_proto(Some(wire), new_id) {
                Ok(back) => assert_eq!(back, info, "agent info round trip"),
                Err(e) => panic!("agent info does not convert back\n{info:?}\n{e:?}"),
            }
            // What the transport accepts, the registry registers.
            let mut reg = Registry::new();
            let result = reg.apply(&Command::RegisterAgent {
                info: info.clone(),
                now_ms: 1,
            });
            assert_eq!(result, Ok(()), "an accepted registration is refused");
            self.f.tag_n(
                "agent-resources",
                info.resources.iter().count().min(8) as u64,
            );
        }
        self.ok(convert::limits::count(
            "tasks",
            req.tasks.len(),
            convert::limits::MAX_REPORTED_TASKS,
        ));
        if let Some(tasks) = self.ok(convert::reported_tasks_from_proto(&req.tasks)) {
            assert_eq!(tasks.len(), req.tasks.len());
        }
    }

    fn agent_session(&mut self, frames: Frames) {
        let mut agent: Option<AgentId> = None;
        for (i, frame) in frames.items.iter().enumerate() {
            let Some(msg) = self.decode::<pb::AgentMessage>(frame) else {
                break; // The stream ends at a transport error.
            };
            let Some(agent) = &agent else {
                // The first message must be hello.
                match msg.kind {
                    Some(pb::agent_message::Kind::Hello(h)) => {
                        agent = self.ok(convert::agent_id(&h.agent_id, "hello.agent_id"));
                        if agent.is_none() {
                            break;
                        }
                    }
                    _ => {
                        self.f.tag("no-hello");
                        break;
                    }
                }
                continue;
            };
            use agora_master::leader::messages::AgentReport;
            match convert::agent_report_from_proto(msg, agent) {
                None => self.f.tag("report:ignored"),
                Some(AgentReport::Pong) => self.f.tag("report:pong"),
                Some(AgentReport::Update(u)) => {
                    self.f
                        .tag_n("report:update", u.latest_state.is_some() as u64);
                }
                Some(AgentReport::ExecutorMessage(m)) => {
                    assert_eq!(&m.agent_id, agent, "message of another agent\nframe {i}");
                    self.f.tag("report:executor-message");
                }
                Some(AgentReport::Invalid { field, reason }) => {
                    assert!(!field.is_empty() && !reason.is_empty());
                    self.f.tag_text("report:invalid", &field);
                }
            }
        }
    }

    fn set_weight(&mut self, req: &pb::SetWeightRequest) {
        let role =
            self.ok(validate_framework_role(&req.role).map_err(|e| convert::invalid("role", e)));
        let weight = self.ok(convert::limits::weight("weight", req.weight));
        if let (Some(()), Some(w)) = (role, weight) {
            let mut reg = Registry::new();
            let result = reg.apply(&Command::SetWeight {
                role: req.role.clone(),
                weight: w,
            });
            assert_eq!(result, Ok(()), "an accepted weight is refused");
        }
    }

    fn vote(&mut self, req: &pb::RaftMessage) {
        match serde_json::from_slice::<VoteRequest<u64>>(&req.json) {
            Ok(v) => {
                self.f.tag("vote");
                let json = serde_json::to_vec(&v).expect("vote serializes");
                let again: VoteRequest<u64> = serde_json::from_slice(&json).expect("vote again");
                assert_eq!(again, v);
            }
            Err(e) => self.f.tag_n("json-error", e.classify() as u64),
        }
    }

    fn append(&mut self, req: &pb::RaftMessage) {
        let rpc: AppendEntriesRequest<TypeConfig> = match serde_json::from_slice(&req.json) {
            Ok(rpc) => rpc,
            Err(e) => {
                self.f.tag_n("json-error", e.classify() as u64);
                return;
            }
        };
        self.f.tag_n("entries", rpc.entries.len().min(8) as u64);
        // A follower applies whatever commands a committed entry holds: never a panic, and
        // the registry keeps its invariants.
        let mut reg = Registry::new();
        for entry in &rpc.entries {
            if let openraft::EntryPayload::Normal(batch) = &entry.payload {
                apply_any(&mut reg, batch, self.f);
            }
        }
    }

    fn snapshot(&mut self, chunk: &pb::SnapshotChunk) {
        match serde_json::from_slice::<InstallSnapshotRequest<TypeConfig>>(&chunk.header_json) {
            Ok(_) => self.f.tag("snapshot-header"),
            Err(e) => self.f.tag_n("json-error", e.classify() as u64),
        }
        // The snapshot is the registry's JSON.
        match serde_json::from_slice::<Registry>(&chunk.data) {
            Ok(reg) => {
                self.f
                    .tag_n("snapshot", reg.check_invariants().is_ok() as u64);
                let json = serde_json::to_vec(&reg).expect("registry serializes");
                let again: Registry = serde_json::from_slice(&json).expect("registry again");
                assert!(again == reg, "snapshot round trip changed the registry");
            }
            Err(e) => self.f.tag_n("snapshot-error", e.classify() as u64),
        }
    }

    /// What an executor reports, as the agent's executor API reads it.
    fn executor_update(&mut self, req: pb::ExecutorUpdate) {
        match agora_agent::convert::update_from_executor(req.framework_id, req.update) {
            Ok(u) => {
                assert!(!u.uuid.is_empty(), "an update without a uuid accepted");
                self.f
                    .tag_n("executor-update", u.state.is_terminal() as u64);
            }
            Err(reason) => {
                assert!(reason.contains(": "), "a refusal naming no field\n{reason}");
                self.f.tag_text("executor-update-refused", &gist(&reason));
            }
        }
    }

    /// What the leader sends an agent on its session, as the agent reads it: each task of
    /// a launch becomes a checkpoint record whose resources it must read back after a
    /// restart.
    fn master_session(&mut self, frames: Frames) {
        for frame in &frames.items {
            let Some(msg) = self.decode::<pb::MasterMessage>(frame) else {
                break;
            };
            let Some(pb::master_message::Kind::Launch(launch)) = msg.kind else {
                self.f.tag_n("master-message", msg.kind.is_some() as u64);
                continue;
            };
            for task in &launch.tasks {
                match agora_agent::convert::task_record(&launch.framework_id, task) {
                    Ok((record, resources)) => {
                        self.f.tag("task-record");
                        assert_eq!(record.task_id, task.task_id);
                        let back = Resources::parse(&record.resources);
                        assert!(
                            back.as_ref() == Ok(&resources),
                            "a checkpointed task's resources do not parse back\n{:?}\n{back:?}",
                            record.resources
                        );
                    }
                    Err(reason) => self.f.tag_text("task-record-refused", &gist(&reason)),
                }
            }
        }
    }
}

/// Applies a batch from a peer: each command either applies or changes nothing, and the
/// invariants hold.
fn apply_any(reg: &mut Registry, batch: &CommandBatch, f: &mut Features) {
    for command in &batch.commands {
        let before = reg.clone();
        let result = reg.apply(command);
        f.tag_n(command.kind(), result.is_ok() as u64);
        if result.is_err() {
            assert!(
                *reg == before,
                "a rejected command changed the registry\n{command:?}"
            );
        }
        // Commands a leader never sends (a peer is trusted) may break the invariants; they
        // must not panic. Report the state as a feature.
        f.tag_n("invariants", reg.check_invariants().is_ok() as u64);
    }
}

// ----- seeds -----

fn scalar(name: &str, x: f64) -> pb::Resource {
    pb::Resource {
        name: name.into(),
        role: String::new(),
        value: Some(pb::resource::Value::Scalar(x)),
    }
}

fn ports(b: u64, e: u64) -> pb::Resource {
    pb::Resource {
        name: "ports".into(),
        role: String::new(),
        value: Some(pb::resource::Value::Ranges(pb::Ranges {
            range: vec![pb::Range { begin: b, end: e }],
        })),
    }
}

fn seed(kind: &str, name: &str, m: &impl Message) -> (String, Vec<u8>) {
    let mut bytes = vec![kind_index(kind)];
    bytes.extend(m.encode_to_vec());
    (format!("{}-{name}", kind.replace('.', "-")), bytes)
}

fn frames(items: &[&dyn Fn() -> Vec<u8>]) -> Frames {
    Frames {
        items: items.iter().map(|f| f()).collect(),
    }
}

fn task(id: &str) -> pb::TaskInfo {
    pb::TaskInfo {
        task_id: id.into(),
        name: format!("{id} sleeps"),
        resources: vec![
            scalar("cpus", 0.1),
            scalar("mem", 32.0),
            ports(31000, 31000),
        ],
        command: "sleep 1".into(),
        env: [("GREETING".to_string(), "hello".to_string())].into(),
        executor: None,
        user: String::new(),
        ..Default::default()
    }
}

fn agent_info() -> pb::AgentInfo {
    pb::AgentInfo {
        id: "a-1".into(),
        hostname: "node-1.example".into(),
        address: "10.0.0.1:5051".into(),
        resources: vec![
            scalar("cpus", 4.0),
            scalar("mem", 8192.0),
            pb::Resource {
                name: "cpus".into(),
                role: "web".into(),
                value: Some(pb::resource::Value::Scalar(2.0)),
            },
            ports(31000, 32000),
        ],
        attributes: vec![pb::Attribute {
            key: "rack".into(),
            value: "r1".into(),
        }],
    }
}

fn registry_json() -> Vec<u8> {
    let mut reg = Registry::new();
    let res = |s: &str| Resources::parse(s).expect("valid");
    let _ = reg.apply(&Command::RegisterAgent {
        info: agora_registry::AgentInfo {
            id: AgentId::new("a-1").expect("valid"),
            hostname: "h".into(),
            address: "h:5051".into(),
            resources: res("cpus:4;mem:1024;ports:[31000-31009]"),
            attributes: vec![],
            principal: None,
            registration: None,
        },
        now_ms: 1,
    });
    let _ = reg.apply(&Command::RegisterFramework {
        info: FrameworkInfo {
            id: FrameworkId::new("f-1").expect("valid"),
            name: "batch".into(),
            role: "*".into(),
            principal: None,
            failover_timeout_ms: 1000,
            user: String::new(),
        },
        now_ms: 2,
    });
    serde_json::to_vec(&reg).expect("registry serializes")
}

/// Inputs that broke a law when they were found (see README.md); the committed corpus
/// keeps them as `regression-<name>`.
pub fn regressions() -> Vec<(String, Vec<u8>)> {
    let over = vec![
        scalar("cpus", 1e12),
        scalar("cpus", 1.0),
        scalar("mem", 32.0),
    ];
    vec![
        (
            // Accepted, but the agent cannot read back the task's resources it checkpoints.
            "accept-merged-cpus-over-max".into(),
            seed(
                "scheduler.accept",
                "",
                &pb::AcceptRequest {
                    framework_id: "f-1".into(),
                    offer_ids: vec!["o-1".into()],
                    tasks: vec![pb::TaskInfo {
                        resources: over.clone(),
                        ..task("t-1")
                    }],
                    filters: None,
                },
            )
            .1,
        ),
        (
            // The agent checkpoints a task it cannot read back after a restart.
            "agent-launch-merged-cpus-over-max".into(),
            seed(
                "agent.session",
                "",
                &Frames {
                    items: vec![pb::MasterMessage {
                        kind: Some(pb::master_message::Kind::Launch(pb::LaunchTasks {
                            framework_id: "f-1".into(),
                            tasks: vec![pb::TaskInfo {
                                resources: over.clone(),
                                ..task("t-1")
                            }],
                        })),
                    }
                    .encode_to_vec()],
                },
            )
            .1,
        ),
        (
            // Accepted, but its own wire form is refused.
            "register-agent-merged-cpus-over-max".into(),
            seed(
                "master.register_agent",
                "",
                &pb::RegisterAgentRequest {
                    incarnation: 0,
                    attempt: 0,
                    agent: Some(pb::AgentInfo {
                        resources: over,
                        ..agent_info()
                    }),
                    tasks: vec![],
                },
            )
            .1,
        ),
    ]
}

pub fn seeds() -> Vec<(String, Vec<u8>)> {
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Vote};
    let framework = |id: &str, role: &str| pb::FrameworkInfo {
        id: id.into(),
        name: "batch".into(),
        roles: vec![role.into()],
        principal: "team-a".into(),
        failover_timeout_seconds: 60.0,
        capabilities: vec!["PARTITION_AWARE".into()],
        user: "alice".into(),
    };
    let update = |state: pb::TaskState, latest: pb::TaskState| pb::StatusUpdate {
        uuid: "5f0c6c1e-4e2e-4c5b-9d1b-3f1f2b9a6e01".into(),
        framework_id: "f-1".into(),
        task_id: "t-1".into(),
        state: state.into(),
        message: "exited".into(),
        exit_code: Some(0),
        timestamp_ms: 1_700_000_000_000,
        latest_state: latest.into(),
    };
    let msg = |kind: pb::agent_message::Kind| pb::AgentMessage { kind: Some(kind) };
    let vote = Vote::new(2, 1);
    let log_id = |index| LogId::new(CommittedLeaderId::new(2, 1), index);
    let batch = CommandBatch {
        commands: vec![
            Command::RegisterFramework {
                info: FrameworkInfo {
                    id: FrameworkId::new("f-1").expect("valid"),
                    name: "batch".into(),
                    role: "web".into(),
                    principal: None,
                    failover_timeout_ms: 1000,
                    user: String::new(),
                },
                now_ms: 5,
            },
            Command::SetWeight {
                role: "web".into(),
                weight: 2.0,
            },
        ],
    };
    let append: AppendEntriesRequest<TypeConfig> = AppendEntriesRequest {
        vote,
        prev_log_id: Some(log_id(3)),
        entries: vec![
            Entry {
                log_id: log_id(4),
                payload: EntryPayload::Blank,
            },
            Entry {
                log_id: log_id(5),
                payload: EntryPayload::Normal(batch),
            },
        ],
        leader_commit: Some(log_id(3)),
    };
    let vote_req = VoteRequest::new(vote, Some(log_id(5)));
    let snapshot_header = serde_json::json!({
        "vote": vote,
        "meta": {
            "last_log_id": log_id(5),
            "last_membership": {"log_id": null, "membership": {"configs": [], "nodes": {}}},
            "snapshot_id": "2-1-5-1"
        },
        "offset": 0,
        "data": [],
        "done": true
    });

    let mut out = vec![
        seed(
            "scheduler.subscribe",
            "first",
            &pb::SubscribeRequest {
                framework: Some(framework("", "web")),
            },
        ),
        seed(
            "scheduler.subscribe",
            "again",
            &pb::SubscribeRequest {
                framework: Some(framework("f-1", "*")),
            },
        ),
        seed(
            "scheduler.accept",
            "one-task",
            &pb::AcceptRequest {
                framework_id: "f-1".into(),
                offer_ids: vec!["o-1".into()],
                tasks: vec![task("t-1")],
                filters: Some(pb::Filters {
                    refuse_seconds: Some(5.0),
                }),
            },
        ),
        seed(
            "scheduler.accept",
            "executor",
            &pb::AcceptRequest {
                framework_id: "f-1".into(),
                offer_ids: vec!["o-1".into(), "o-2".into()],
                tasks: vec![
                    pb::TaskInfo {
                        executor: Some(pb::ExecutorInfo {
                            command: "./my-executor".into(),
                            ..Default::default()
                        }),
                        user: "bob".into(),
                        ..task("t-2")
                    },
                    task("t-3"),
                ],
                filters: None,
            },
        ),
        seed(
            "scheduler.decline",
            "refuse",
            &pb::DeclineRequest {
                framework_id: "f-1".into(),
                offer_ids: vec!["o-1".into(), "o-2".into()],
                filters: Some(pb::Filters {
                    refuse_seconds: Some(0.0),
                }),
            },
        ),
        seed(
            "scheduler.framework_call",
            "revive",
            &pb::FrameworkCall {
                framework_id: "f-1".into(),
            },
        ),
        seed(
            "scheduler.kill",
            "grace",
            &pb::KillRequest {
                framework_id: "f-1".into(),
                task_id: "t-1".into(),
                grace_period_ms: 3_000,
            },
        ),
        seed(
            "scheduler.acknowledge",
            "ack",
            &pb::AcknowledgeRequest {
                framework_id: "f-1".into(),
                task_id: "t-1".into(),
                uuid: "5f0c6c1e-4e2e-4c5b-9d1b-3f1f2b9a6e01".into(),
                agent_id: "a-1".into(),
            },
        ),
        seed(
            "scheduler.reconcile",
            "explicit",
            &pb::ReconcileRequest {
                framework_id: "f-1".into(),
                task_ids: vec!["t-1".into(), "t-2".into()],
            },
        ),
        seed(
            "scheduler.reconcile",
            "implicit",
            &pb::ReconcileRequest {
                framework_id: "f-1".into(),
                task_ids: vec![],
            },
        ),
        seed(
            "scheduler.message",
            "data",
            &pb::FrameworkMessage {
                framework_id: "f-1".into(),
                agent_id: "a-1".into(),
                executor_id: "t-1".into(),
                data: b"hello executor".to_vec(),
            },
        ),
        seed(
            "scheduler.shutdown",
            "executor",
            &pb::ShutdownRequest {
                framework_id: "f-1".into(),
                agent_id: "a-1".into(),
                executor_id: "t-1".into(),
            },
        ),
        seed(
            "master.register_agent",
            "first",
            &pb::RegisterAgentRequest {
                incarnation: 0,
                attempt: 0,
                agent: Some(pb::AgentInfo {
                    id: String::new(),
                    ..agent_info()
                }),
                tasks: vec![],
            },
        ),
        seed(
            "master.register_agent",
            "again",
            &pb::RegisterAgentRequest {
                incarnation: 0,
                attempt: 0,
                agent: Some(agent_info()),
                tasks: vec![pb::TaskReport {
                    framework_id: "f-1".into(),
                    task_id: "t-1".into(),
                    state: pb::TaskState::TaskRunning.into(),
                }],
            },
        ),
        seed("master.get_state", "empty", &pb::GetStateRequest {}),
        seed("master.get_status", "empty", &pb::GetStatusRequest {}),
        seed(
            "agent_gateway.connect",
            "session",
            &frames(&[
                &|| {
                    msg(pb::agent_message::Kind::Hello(pb::AgentHello {
                        agent_id: "a-1".into(),
                        address: "10.0.0.1:5051".into(),
                        sandbox_key: vec![7; 32],
                    }))
                    .encode_to_vec()
                },
                &|| msg(pb::agent_message::Kind::Pong(pb::Pong { seq: 7 })).encode_to_vec(),
                &|| {
                    msg(pb::agent_message::Kind::Update(update(
                        pb::TaskState::TaskRunning,
                        pb::TaskState::TaskFinished,
                    )))
                    .encode_to_vec()
                },
                &|| {
                    msg(pb::agent_message::Kind::Update(update(
                        pb::TaskState::TaskFinished,
                        pb::TaskState::Unspecified,
                    )))
                    .encode_to_vec()
                },
                &|| {
                    msg(pb::agent_message::Kind::ExecutorMessage(
                        pb::FrameworkMessage {
                            framework_id: "f-1".into(),
                            agent_id: String::new(),
                            executor_id: "t-1".into(),
                            data: b"to the scheduler".to_vec(),
                        },
                    ))
                    .encode_to_vec()
                },
            ]),
        ),
        seed(
            "operator.set_weight",
            "web",
            &pb::SetWeightRequest {
                role: "web".into(),
                weight: 2.5,
            },
        ),
        seed("operator.get_weights", "empty", &pb::GetWeightsRequest {}),
        seed(
            "operator.add_learner",
            "m4",
            &pb::AddLearnerRequest {
                id: 4,
                address: "m4:5050".into(),
            },
        ),
        seed(
            "operator.change_membership",
            "three",
            &pb::ChangeMembershipRequest {
                voter_ids: vec![1, 2, 4],
                retain: true,
            },
        ),
        seed(
            "raft.append_entries",
            "entries",
            &pb::RaftMessage {
                json: serde_json::to_vec(&append).expect("serializes"),
            },
        ),
        seed(
            "raft.vote",
            "vote",
            &pb::RaftMessage {
                json: serde_json::to_vec(&vote_req).expect("serializes"),
            },
        ),
        seed(
            "raft.install_snapshot",
            "registry",
            &pb::SnapshotChunk {
                header_json: serde_json::to_vec(&snapshot_header).expect("serializes"),
                data: registry_json(),
            },
        ),
        seed(
            "raft.node_status",
            "expected",
            &pb::NodeStatusRequest { expected_id: 1 },
        ),
        seed(
            "executor.subscribe",
            "again",
            &pb::ExecutorSubscribe {
                framework_id: "f-1".into(),
                executor_id: "t-1".into(),
                task_ids: vec!["t-1".into()],
            },
        ),
        seed(
            "executor.update",
            "running",
            &pb::ExecutorUpdate {
                framework_id: "f-1".into(),
                executor_id: "t-1".into(),
                update: Some(update(
                    pb::TaskState::TaskRunning,
                    pb::TaskState::Unspecified,
                )),
            },
        ),
        seed(
            "executor.send_message",
            "data",
            &pb::FrameworkMessage {
                framework_id: "f-1".into(),
                agent_id: String::new(),
                executor_id: "t-1".into(),
                data: b"to the scheduler".to_vec(),
            },
        ),
        seed(
            "agent.session",
            "commands",
            &frames(&[
                &|| {
                    pb::MasterMessage {
                        kind: Some(pb::master_message::Kind::Ping(pb::Ping { seq: 1 })),
                    }
                    .encode_to_vec()
                },
                &|| {
                    pb::MasterMessage {
                        kind: Some(pb::master_message::Kind::Launch(pb::LaunchTasks {
                            framework_id: "f-1".into(),
                            tasks: vec![
                                task("t-1"),
                                pb::TaskInfo {
                                    user: "alice".into(),
                                    ..task("t-2")
                                },
                            ],
                        })),
                    }
                    .encode_to_vec()
                },
                &|| {
                    pb::MasterMessage {
                        kind: Some(pb::master_message::Kind::Kill(pb::KillTask {
                            framework_id: "f-1".into(),
                            task_id: "t-1".into(),
                            grace_period_ms: 1000,
                        })),
                    }
                    .encode_to_vec()
                },
                &|| {
                    pb::MasterMessage {
                        kind: Some(pb::master_message::Kind::Ack(pb::StatusAck {
                            framework_id: "f-1".into(),
                            task_id: "t-1".into(),
                            uuid: "5f0c6c1e-4e2e-4c5b-9d1b-3f1f2b9a6e01".into(),
                        })),
                    }
                    .encode_to_vec()
                },
                &|| {
                    pb::MasterMessage {
                        kind: Some(pb::master_message::Kind::ShutdownExecutor(
                            pb::ShutdownExecutor {
                                framework_id: "f-1".into(),
                                executor_id: "t-1".into(),
                                grace_period_ms: 0,
                            },
                        )),
                    }
                    .encode_to_vec()
                },
            ]),
        ),
    ];
    // Edge values the limits are about.
    out.push(seed(
        "scheduler.accept",
        "smallest-task",
        &pb::AcceptRequest {
            framework_id: "f-1".into(),
            offer_ids: vec!["o-1".into()],
            tasks: vec![pb::TaskInfo {
                resources: vec![scalar("cpus", 0.01), scalar("mem", 32.0)],
                ..task("t-9")
            }],
            filters: Some(pb::Filters {
                refuse_seconds: Some(31_536_000.0),
            }),
        },
    ));
    out.push(seed(
        "scheduler.kill",
        "longest-grace",
        &pb::KillRequest {
            framework_id: "f-1".into(),
            task_id: "t-1".into(),
            grace_period_ms: 3_600_000,
        },
    ));
    out
}
