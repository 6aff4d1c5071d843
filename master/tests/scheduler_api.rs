//! The scheduler API against real masters, with bad input: every refusal is the right gRPC
//! code, names the offending field or problem, and changes nothing (checked in the
//! leader's registry with GetState: no framework registered, no task recorded, the offer
//! still outstanding).

mod common;

use std::time::{Duration, Instant};

use agora_driver::{DriverError, MasterClient};
use agora_proto::v1 as pb;
use agora_proto::v1::scheduler_client::SchedulerClient;
use common::*;
use tonic::Code;

const SECOND: Duration = Duration::from_secs(1);
const TERMINAL: [pb::TaskState; 8] = [
    pb::TaskState::TaskFinished,
    pb::TaskState::TaskFailed,
    pb::TaskState::TaskKilled,
    pb::TaskState::TaskLost,
    pb::TaskState::TaskError,
    pb::TaskState::TaskDropped,
    pb::TaskState::TaskGone,
    pb::TaskState::TaskGoneByOperator,
];

fn framework(name: &str, role: &str, failover: f64) -> pb::FrameworkInfo {
    pb::FrameworkInfo {
        user: String::new(),
        id: String::new(),
        name: name.into(),
        roles: vec![role.into()],
        principal: String::new(),
        failover_timeout_seconds: failover,
        capabilities: vec![],
    }
}

async fn subscribe_raw(
    client: &MasterClient,
    info: pb::FrameworkInfo,
) -> Result<tonic::Streaming<pb::Event>, DriverError> {
    let req = pb::SubscribeRequest {
        framework: Some(info),
    };
    client
        .stream(|ch| {
            let req = req.clone();
            async move { SchedulerClient::new(ch).subscribe(req).await }
        })
        .await
}

/// A live subscription: the framework's id and its event stream.
struct Sub {
    id: String,
    events: tonic::Streaming<pb::Event>,
}

impl Sub {
    async fn new(client: &MasterClient, name: &str) -> Sub {
        let mut events = subscribe_raw(client, framework(name, "*", 60.0))
            .await
            .unwrap_or_else(|e| panic!("subscribing {name}: {e}"));
        let id = next_event(&mut events, 10 * SECOND, |k| match k {
            pb::event::Kind::Subscribed(s) => Some(s.framework_id),
            _ => None,
        })
        .await
        .unwrap_or_else(|| panic!("{name}: no SUBSCRIBED event"));
        Sub { id, events }
    }

    /// The next event `f` picks (others are skipped), if one comes within `timeout`.
    async fn next<T>(
        &mut self,
        timeout: Duration,
        f: impl FnMut(pb::event::Kind) -> Option<T>,
    ) -> Option<T> {
        next_event(&mut self.events, timeout, f).await
    }

    /// The next OFFERS event's offers.
    async fn offers(&mut self) -> Vec<pb::Offer> {
        self.next(10 * SECOND, |k| match k {
            pb::event::Kind::Offers(o) => Some(o.offers),
            _ => None,
        })
        .await
        .expect("no offers within 10 s")
    }

    /// Follows `task` until a terminal update, acknowledging each update that asks for it
    /// (the agent sends a task's next update only then); returns the terminal one.
    async fn follow_to_end(&mut self, client: &MasterClient, task: &str) -> pb::TaskStatus {
        loop {
            let u = self.update(task).await;
            if !u.uuid.is_empty() {
                let req = pb::AcknowledgeRequest {
                    framework_id: self.id.clone(),
                    task_id: u.task_id.clone(),
                    uuid: u.uuid.clone(),
                    ..Default::default()
                };
                client
                    .call(|ch| {
                        let req = req.clone();
                        async move { SchedulerClient::new(ch).acknowledge(req).await }
                    })
                    .await
                    .unwrap();
            }
            if TERMINAL.contains(&u.state()) {
                return u;
            }
        }
    }

    /// The next status update of `task`.
    async fn update(&mut self, task: &str) -> pb::TaskStatus {
        self.next(10 * SECOND, |k| match k {
            pb::event::Kind::Update(u) if u.task_id == task => Some(u),
            _ => None,
        })
        .await
        .unwrap_or_else(|| panic!("no update of task {task} within 10 s"))
    }
}

async fn next_event<T>(
    events: &mut tonic::Streaming<pb::Event>,
    timeout: Duration,
    mut f: impl FnMut(pb::event::Kind) -> Option<T>,
) -> Option<T> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, events.message()).await {
            Ok(Ok(Some(pb::Event { kind: Some(k) }))) => {
                if let Some(t) = f(k) {
                    return Some(t);
                }
            }
            Ok(Ok(Some(_))) => continue,
            Ok(Ok(None)) => panic!("event stream ended"),
            Ok(Err(status)) => panic!("event stream failed: {status}"),
            Err(_) => return None,
        }
    }
}

fn scalar(name: &str, v: f64) -> pb::Resource {
    pb::Resource {
        name: name.into(),
        role: String::new(),
        value: Some(pb::resource::Value::Scalar(v)),
    }
}

fn task(id: &str, name: &str, cpus: f64, mem: f64, command: &str) -> pb::TaskInfo {
    pb::TaskInfo {
        user: String::new(),
        task_id: id.into(),
        name: name.into(),
        resources: vec![scalar("cpus", cpus), scalar("mem", mem)],
        command: command.into(),
        env: Default::default(),
        executor: None,
        ..Default::default()
    }
}

async fn accept(
    client: &MasterClient,
    framework_id: &str,
    offer_ids: &[&str],
    tasks: Vec<pb::TaskInfo>,
    filters: Option<pb::Filters>,
) -> Result<pb::CallReply, DriverError> {
    let req = pb::AcceptRequest {
        framework_id: framework_id.into(),
        offer_ids: offer_ids.iter().map(|s| s.to_string()).collect(),
        tasks,
        filters,
    };
    client
        .call(|ch| {
            let req = req.clone();
            async move { SchedulerClient::new(ch).accept(req).await }
        })
        .await
}

async fn decline(
    client: &MasterClient,
    framework_id: &str,
    offer_ids: &[&str],
    refuse_seconds: Option<f64>,
) -> Result<pb::CallReply, DriverError> {
    let req = pb::DeclineRequest {
        framework_id: framework_id.into(),
        offer_ids: offer_ids.iter().map(|s| s.to_string()).collect(),
        filters: Some(pb::Filters { refuse_seconds }),
    };
    client
        .call(|ch| {
            let req = req.clone();
            async move { SchedulerClient::new(ch).decline(req).await }
        })
        .await
}

async fn teardown(client: &MasterClient, framework_id: &str) -> Result<pb::CallReply, DriverError> {
    let req = pb::FrameworkCall {
        framework_id: framework_id.into(),
    };
    client
        .call(|ch| {
            let req = req.clone();
            async move { SchedulerClient::new(ch).teardown(req).await }
        })
        .await
}

/// Asserts a refusal with `code` whose message starts with `prefix` (the field) and
/// contains every one of `needles`.
#[track_caller]
fn assert_refused<T: std::fmt::Debug>(
    what: &str,
    r: Result<T, DriverError>,
    code: Code,
    prefix: &str,
    needles: &[&str],
) {
    let err = r.expect_err(&format!("{what}: accepted"));
    let status = err
        .status()
        .unwrap_or_else(|| panic!("{what}: not a gRPC refusal: {err}"));
    assert_eq!(status.code(), code, "{what}: {status:?}");
    let msg = status.message();
    assert!(
        msg.starts_with(prefix),
        "{what}: message {msg:?} does not name {prefix:?}"
    );
    for n in needles {
        assert!(msg.contains(n), "{what}: message {msg:?} lacks {n:?}");
    }
}

fn scalar_of(resources: &[pb::Resource], name: &str) -> Option<f64> {
    resources
        .iter()
        .find(|r| r.name == name)
        .and_then(|r| match r.value {
            Some(pb::resource::Value::Scalar(v)) => Some(v),
            _ => None,
        })
}

fn framework_state<'a>(s: &'a pb::ClusterState, id: &str) -> &'a pb::FrameworkState {
    s.frameworks
        .iter()
        .find(|f| f.id == id)
        .unwrap_or_else(|| panic!("framework {id} not in the registry: {s:?}"))
}

/// The cpus in `framework`'s outstanding offers, as the leader's registry has them.
async fn offered_cpus(client: &MasterClient, framework: &str) -> f64 {
    let s = state(client).await;
    scalar_of(&framework_state(&s, framework).offered, "cpus").unwrap_or(0.0)
}

async fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(t) = f() {
            return t;
        }
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Cases 1 to 4: bad subscriptions register nothing; calls from a framework that is not
/// subscribed (never, or no longer) or with a malformed id are refused and change nothing.
/// Three masters: the client finds the leader, and refusals are the leader's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_subscriptions_and_calls_without_subscription_change_nothing() {
    let cluster = Cluster::start_with(3, &["--allocation-interval", "100ms"]);
    cluster.wait_leader(1, 10 * SECOND).await;
    let client = cluster.client();

    // 1-3: bad FrameworkInfo.
    let with = |f: &dyn Fn(&mut pb::FrameworkInfo)| {
        let mut info = framework("fw", "*", 60.0);
        f(&mut info);
        info
    };
    let bad: Vec<(&str, pb::FrameworkInfo, &str, &[&str])> = vec![
        (
            "empty name",
            with(&|f| f.name.clear()),
            "framework.name",
            &["empty"],
        ),
        (
            "blank name",
            with(&|f| f.name = "  \t".into()),
            "framework.name",
            &["empty"],
        ),
        (
            "name with a terminal escape",
            with(&|f| f.name = "fw\u{1b}[2J".into()),
            "framework.name",
            &["control character"],
        ),
        (
            "name over 1024 bytes",
            with(&|f| f.name = "n".repeat(1025)),
            "framework.name",
            &["longer than 1024"],
        ),
        (
            "role with a space and !",
            with(&|f| f.roles = vec!["bad role!".into()]),
            "framework.roles",
            &["bad role!", "allowed characters"],
        ),
        (
            "role starting with -",
            with(&|f| f.roles = vec!["-x".into()]),
            "framework.roles",
            &["-x", "starts with '-'"],
        ),
        (
            "role with a .. component",
            with(&|f| f.roles = vec!["a/../b".into()]),
            "framework.roles",
            &["a/../b"],
        ),
        (
            "empty role",
            with(&|f| f.roles = vec![String::new()]),
            "framework.roles",
            &["empty"],
        ),
        (
            "no role",
            with(&|f| f.roles.clear()),
            "framework.roles",
            &["exactly one role"],
        ),
        (
            "two roles",
            with(&|f| f.roles = vec!["a".into(), "b".into()]),
            "framework.roles",
            &["exactly one role"],
        ),
        (
            "NaN failover timeout",
            with(&|f| f.failover_timeout_seconds = f64::NAN),
            "framework.failover_timeout_seconds",
            &["NaN"],
        ),
        (
            "negative failover timeout",
            with(&|f| f.failover_timeout_seconds = -1.0),
            "framework.failover_timeout_seconds",
            &["-1"],
        ),
        (
            "infinite failover timeout",
            with(&|f| f.failover_timeout_seconds = f64::INFINITY),
            "framework.failover_timeout_seconds",
            &["inf"],
        ),
        (
            "malformed framework id",
            with(&|f| f.id = "../etc".into()),
            "framework.id",
            &[],
        ),
    ];
    for (what, info, field, needles) in bad {
        let r = subscribe_raw(&client, info).await.map(|_| ());
        assert_refused(what, r, Code::InvalidArgument, field, needles);
    }
    // A well-formed id the registry does not hold: subscribe without an id first.
    let r = subscribe_raw(
        &client,
        with(&|f| f.id = "0b5e1e7e-never-registered-0000".into()),
    )
    .await
    .map(|_| ());
    assert_refused(
        "unknown framework id",
        r,
        Code::FailedPrecondition,
        "framework.id",
        &["not registered"],
    );
    let s = state(&client).await;
    assert!(
        s.frameworks.is_empty(),
        "a refused subscription registered a framework: {:?}",
        s.frameworks
    );

    // 4: calls before SUBSCRIBE, with a well-formed id that never subscribed, and with
    // malformed ids.
    let never = "f00dfeed-never-subscribed-0000";
    check_calls(&client, never, Code::FailedPrecondition, "subscribe first").await;
    for bad_id in ["", "../etc", "has space", "a/b"] {
        check_calls(&client, bad_id, Code::InvalidArgument, "").await;
    }
    let s = state(&client).await;
    assert!(s.frameworks.is_empty(), "{:?}", s.frameworks);
    assert!(s.tasks.is_empty(), "{:?}", s.tasks);

    // A framework that subscribed, then closed its stream, is registered but no longer
    // subscribed: its calls are refused the same way, and a refused teardown removes nothing.
    let sub = Sub::new(&client, "gone").await;
    let gone = sub.id.clone();
    drop(sub);
    let start = Instant::now();
    loop {
        let r = accept(
            &client,
            &gone,
            &["o-1"],
            vec![task("t", "", 0.1, 8.0, "true")],
            None,
        )
        .await;
        match r {
            Err(e) if e.status().map(|s| s.code()) == Some(Code::FailedPrecondition) => break,
            other => {
                // The master notices the closed stream within moments; until then the
                // call is an ordinary (refused, unknown offer) accept.
                assert!(other.is_ok(), "{other:?}");
                assert!(start.elapsed() < 5 * SECOND, "closed stream never noticed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    check_calls(&client, &gone, Code::FailedPrecondition, "subscribe first").await;
    let s = state(&client).await;
    let f = framework_state(&s, &gone);
    assert_eq!(f.name, "gone");
    assert!(!f.active, "a closed subscription still counts as active");
    assert!(s.tasks.is_empty(), "{:?}", s.tasks);
}

/// Every framework call with `id` is refused with `code`, naming `framework_id`, and
/// (when given) saying `needle`.
async fn check_calls(client: &MasterClient, id: &str, code: Code, needle: &str) {
    let fid = id.to_string();
    let needles: &[&str] = if needle.is_empty() { &[] } else { &[needle] };
    let field = "framework_id";
    let r = accept(
        client,
        id,
        &["o-1"],
        vec![task("t", "", 0.1, 8.0, "true")],
        None,
    )
    .await;
    assert_refused(&format!("accept as {id:?}"), r, code, field, needles);
    let r = decline(client, id, &["o-1"], Some(1.0)).await;
    assert_refused(&format!("decline as {id:?}"), r, code, field, needles);
    let r = client
        .call(|ch| {
            let req = pb::KillRequest {
                framework_id: fid.clone(),
                task_id: "t".into(),
                grace_period_ms: 0,
            };
            async move { SchedulerClient::new(ch).kill(req).await }
        })
        .await;
    assert_refused(&format!("kill as {id:?}"), r, code, field, needles);
    let r = client
        .call(|ch| {
            let req = pb::ReconcileRequest {
                framework_id: fid.clone(),
                task_ids: vec![],
            };
            async move { SchedulerClient::new(ch).reconcile(req).await }
        })
        .await;
    assert_refused(&format!("reconcile as {id:?}"), r, code, field, needles);
    let r = client
        .call(|ch| {
            let req = pb::AcknowledgeRequest {
                framework_id: fid.clone(),
                task_id: "t".into(),
                uuid: "u".into(),
                ..Default::default()
            };
            async move { SchedulerClient::new(ch).acknowledge(req).await }
        })
        .await;
    assert_refused(&format!("acknowledge as {id:?}"), r, code, field, needles);
    let r = client
        .call(|ch| {
            let req = pb::FrameworkCall {
                framework_id: fid.clone(),
            };
            async move { SchedulerClient::new(ch).revive(req).await }
        })
        .await;
    assert_refused(&format!("revive as {id:?}"), r, code, field, needles);
    let r = client
        .call(|ch| {
            let req = pb::FrameworkCall {
                framework_id: fid.clone(),
            };
            async move { SchedulerClient::new(ch).suppress(req).await }
        })
        .await;
    assert_refused(&format!("suppress as {id:?}"), r, code, field, needles);
    let r = teardown(client, id).await;
    assert_refused(&format!("teardown as {id:?}"), r, code, field, needles);
}

/// Cases 5 to 8 on one master and one agent (2 cpus): another framework's offer, duplicate
/// task ids (in one accept, and of a task launched earlier), a launch bigger than the
/// offer, and declines with bad refuse_seconds. None records a task. A request refused
/// before any work (INVALID_ARGUMENT) leaves the offer outstanding; a launch the registry
/// refuses is refused in the accept's reply (FAILED_PRECONDITION) and the offer's
/// resources return to the pool, to be offered again at once (issue 12).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_accepts_and_declines_are_refused_and_lose_nothing() {
    let cluster = Cluster::start_with(1, &["--allocation-interval", "100ms"]);
    cluster.wait_leader(1, 10 * SECOND).await;
    let mut agent = AgentNode::new(
        &cluster,
        "agent-1",
        &[
            "--resources",
            "cpus:2;mem:1024;disk:1000",
            "--isolation",
            "none",
        ],
    );
    agent.start();
    let client = cluster.client();
    wait_for("the agent to register", 20 * SECOND, || agent.agent_id()).await;

    // Framework A gets the whole agent in one offer; B, subscribed after, gets nothing.
    let mut a = Sub::new(&client, "a").await;
    let offers = a.offers().await;
    assert_eq!(offers.len(), 1, "{offers:?}");
    let offer_a = offers[0].id.clone();
    assert_eq!(scalar_of(&offers[0].resources, "cpus"), Some(2.0));
    let mut b = Sub::new(&client, "b").await;
    assert_eq!(offered_cpus(&client, &a.id).await, 2.0);
    assert_eq!(offered_cpus(&client, &b.id).await, 0.0);

    // 5: B accepts A's offer under its own id: refused, naming the owner, and its task is
    // dropped; A's offer stays A's.
    let err = accept(
        &client,
        &b.id,
        &[&offer_a],
        vec![task("steal", "", 0.5, 64.0, "true")],
        None,
    )
    .await
    .expect_err("a launch on another framework's offer is refused");
    let status = err.status().expect("a refusal");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(
        status.message().contains("no task launched")
            && status
                .message()
                .contains(&format!("belongs to framework {}", a.id)),
        "{status:?}"
    );
    let u = b.update("steal").await;
    assert_eq!(u.state(), pb::TaskState::TaskDropped, "{u:?}");
    assert!(
        u.message.contains(&offer_a)
            && u.message
                .contains(&format!("belongs to framework {}", a.id)),
        "{u:?}"
    );
    // B declining A's offer is ignored (only B's own offers are declined).
    decline(&client, &b.id, &[&offer_a], Some(60.0))
        .await
        .unwrap();
    let s = state(&client).await;
    assert!(s.tasks.is_empty(), "{:?}", s.tasks);
    assert_eq!(
        scalar_of(&framework_state(&s, &a.id).offered, "cpus"),
        Some(2.0)
    );
    assert_eq!(scalar_of(&framework_state(&s, &b.id).offered, "cpus"), None);
    // B leaves, so that what A leaves unused is offered to A again.
    teardown(&client, &b.id).await.unwrap();
    drop(b);

    // 7: a launch needing more than the offer holds: refused in the reply, the task
    // dropped, and the offer's resources offered again at once under a new offer.
    let err = accept(
        &client,
        &a.id,
        &[&offer_a],
        vec![task("too-big", "", 100.0, 64.0, "true")],
        None,
    )
    .await
    .expect_err("a launch bigger than the offer is refused");
    assert_eq!(
        err.status().map(|s| s.code()),
        Some(Code::FailedPrecondition),
        "{err:?}"
    );
    let u = a.update("too-big").await;
    assert_eq!(u.state(), pb::TaskState::TaskDropped, "{u:?}");
    assert!(
        u.message.contains("need") && u.message.contains("cpus:100"),
        "the reason should name the resources: {u:?}"
    );
    let s = state(&client).await;
    assert!(s.tasks.is_empty(), "{:?}", s.tasks);
    let offers = a.offers().await;
    assert_eq!(offers.len(), 1, "{offers:?}");
    assert_ne!(offers[0].id, offer_a, "the refused offer is withdrawn");
    assert_eq!(scalar_of(&offers[0].resources, "cpus"), Some(2.0));
    let offer_a = offers[0].id.clone();
    assert_eq!(offered_cpus(&client, &a.id).await, 2.0);

    // 6a: the same task id twice in one accept.
    let r = accept(
        &client,
        &a.id,
        &[&offer_a],
        vec![
            task("twin", "", 0.5, 64.0, "true"),
            task("twin", "", 0.5, 64.0, "true"),
        ],
        None,
    )
    .await;
    assert_refused(
        "duplicate task ids in one accept",
        r,
        Code::InvalidArgument,
        "tasks[1].task_id",
        &["twin", "twice"],
    );
    let s = state(&client).await;
    assert!(s.tasks.is_empty(), "{:?}", s.tasks);
    assert_eq!(offered_cpus(&client, &a.id).await, 2.0);

    // 8: declines with a bad refuse_seconds are refused before anything is declined.
    for (what, secs, needle) in [
        ("negative", -1.0, "-1"),
        ("NaN", f64::NAN, "NaN"),
        ("infinite", f64::INFINITY, "inf"),
    ] {
        let r = decline(&client, &a.id, &[&offer_a], Some(secs)).await;
        assert_refused(
            &format!("decline with {what} refuse_seconds"),
            r,
            Code::InvalidArgument,
            "filters.refuse_seconds",
            &[needle],
        );
        // The same check guards the filters of an accept.
        let r = accept(
            &client,
            &a.id,
            &[&offer_a],
            vec![task("filtered", "", 0.5, 64.0, "true")],
            Some(pb::Filters {
                refuse_seconds: Some(secs),
            }),
        )
        .await;
        assert_refused(
            &format!("accept with {what} refuse_seconds"),
            r,
            Code::InvalidArgument,
            "filters.refuse_seconds",
            &[needle],
        );
    }
    let s = state(&client).await;
    assert!(s.tasks.is_empty(), "{:?}", s.tasks);
    assert_eq!(offered_cpus(&client, &a.id).await, 2.0);

    // The offer really is still outstanding: A launches on it (refusing nothing of the
    // rest, which is offered again at once).
    accept(
        &client,
        &a.id,
        &[&offer_a],
        vec![task("original", "original", 0.5, 64.0, "sleep 30")],
        Some(pb::Filters {
            refuse_seconds: Some(0.0),
        }),
    )
    .await
    .unwrap();
    let s = state(&client).await;
    assert_eq!(s.tasks.len(), 1, "{:?}", s.tasks);
    let original = s.tasks[0].clone();
    assert_eq!(original.id, "original");
    assert_eq!(original.name, "original");
    assert_ne!(original.state(), pb::TaskState::TaskDropped);

    // 6b: a task id the framework already used, in a later accept on the remaining offer.
    let offers = a.offers().await;
    let offer_rest = offers[0].id.clone();
    assert_eq!(scalar_of(&offers[0].resources, "cpus"), Some(1.5));

    // 6a': the same accept delivered again (a driver retrying after the leader died before
    // replying): its offer is used up, but the task exists, so the answer is the task's
    // state, not a TASK_DROPPED for a task that runs.
    accept(
        &client,
        &a.id,
        &[&offer_a],
        vec![task("original", "original", 0.5, 64.0, "sleep 30")],
        None,
    )
    .await
    .unwrap();
    let answer = loop {
        let u = a.update("original").await;
        if u.uuid.is_empty() {
            break u;
        }
        // The task's own updates, acknowledged so the agent goes on sending them.
        let req = pb::AcknowledgeRequest {
            framework_id: a.id.clone(),
            task_id: u.task_id.clone(),
            uuid: u.uuid.clone(),
            ..Default::default()
        };
        client
            .call(|ch| {
                let req = req.clone();
                async move { SchedulerClient::new(ch).acknowledge(req).await }
            })
            .await
            .unwrap();
    };
    assert_ne!(answer.state(), pb::TaskState::TaskDropped, "{answer:?}");

    let err = accept(
        &client,
        &a.id,
        &[&offer_rest],
        vec![task("original", "impostor", 0.25, 32.0, "true")],
        None,
    )
    .await
    .expect_err("a task id in use is refused");
    assert_eq!(
        err.status().map(|s| s.code()),
        Some(Code::FailedPrecondition),
        "{err:?}"
    );
    let u = a
        .next(10 * SECOND, |k| match k {
            pb::event::Kind::Update(u) if u.state() == pb::TaskState::TaskDropped => Some(u),
            _ => None,
        })
        .await
        .expect("the duplicate launch was not dropped");
    assert_eq!(u.task_id, "original");
    assert!(u.message.contains("already exists"), "{u:?}");
    let s = state(&client).await;
    assert_eq!(s.tasks.len(), 1, "{:?}", s.tasks);
    let t = &s.tasks[0];
    assert_eq!(
        (
            t.id.as_str(),
            t.name.as_str(),
            scalar_of(&t.resources, "cpus")
        ),
        ("original", "original", Some(0.5))
    );
    assert_ne!(t.state(), pb::TaskState::TaskDropped, "{t:?}");
    // The refused accept's offer came back as a new one.
    let offers = a.offers().await;
    assert_ne!(offers[0].id, offer_rest);
    assert_eq!(scalar_of(&offers[0].resources, "cpus"), Some(1.5));

    // Kill the task and follow it to its end (acknowledging each update, so the agent
    // sends the next): once TASK_KILLED is here the agent has checkpointed it, so the
    // executor, which outlives the agent by design, exits instead of being left behind.
    client
        .call(|ch| {
            let req = pb::KillRequest {
                framework_id: a.id.clone(),
                task_id: "original".into(),
                grace_period_ms: 100,
            };
            async move { SchedulerClient::new(ch).kill(req).await }
        })
        .await
        .unwrap();
    let last = a.follow_to_end(&client, "original").await;
    assert_eq!(last.state(), pb::TaskState::TaskKilled, "{last:?}");
    teardown(&client, &a.id).await.unwrap();
}

/// A huge but finite refuse_seconds (1e300; anything from about 1.8e16 s once overflowed
/// the filter's deadline) must either be honoured (clamped: the offer is declined and not made again soon) or refused with
/// InvalidArgument naming `filters.refuse_seconds`, the offer still outstanding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_refuse_seconds_is_clamped_or_refused() {
    let cluster = Cluster::start_with(1, &["--allocation-interval", "100ms"]);
    cluster.wait_leader(1, 10 * SECOND).await;
    let mut agent = AgentNode::new(
        &cluster,
        "agent-1",
        &[
            "--resources",
            "cpus:2;mem:1024;disk:1000",
            "--isolation",
            "none",
        ],
    );
    agent.start();
    let client = cluster.client();
    wait_for("the agent to register", 20 * SECOND, || agent.agent_id()).await;
    let mut a = Sub::new(&client, "a").await;
    let offer = a.offers().await[0].id.clone();
    // Gives up within seconds, not after the default 10 s of retries.
    let impatient = cluster.impatient_client();

    let r = accept(
        &impatient,
        &a.id,
        &["no-such-offer"],
        vec![task("t", "", 0.5, 64.0, "true")],
        Some(pb::Filters {
            refuse_seconds: Some(1e300),
        }),
    )
    .await;
    if let Err(e) = r {
        assert_refused(
            "accept with refuse_seconds 1e300",
            Err::<(), _>(e),
            Code::InvalidArgument,
            "filters.refuse_seconds",
            &[],
        );
    }

    match decline(&impatient, &a.id, &[&offer], Some(1e300)).await {
        Ok(_) => {
            // Declined for (practically) ever: nothing outstanding, no new offer.
            assert_eq!(offered_cpus(&client, &a.id).await, 0.0);
            let again = a
                .next(SECOND, |k| match k {
                    pb::event::Kind::Offers(o) => Some(o),
                    _ => None,
                })
                .await;
            assert!(again.is_none(), "offered again at once: {again:?}");
        }
        Err(e) => {
            assert_refused(
                "decline with refuse_seconds 1e300",
                Err::<(), _>(e),
                Code::InvalidArgument,
                "filters.refuse_seconds",
                &[],
            );
            assert_eq!(offered_cpus(&client, &a.id).await, 2.0);
        }
    }
}

/// One session of a raw agent (the test plays the agent): its messages in, the master's
/// out.
struct RawSession {
    tx: tokio::sync::mpsc::Sender<pb::AgentMessage>,
    inbound: tonic::Streaming<pb::MasterMessage>,
}

async fn raw_session(cluster: &Cluster, agent_id: &str, address: &str) -> RawSession {
    use agora_proto::v1::agent_gateway_client::AgentGatewayClient;
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tx.send(pb::AgentMessage {
        kind: Some(pb::agent_message::Kind::Hello(pb::AgentHello {
            agent_id: agent_id.into(),
            address: address.into(),
            sandbox_key: vec![],
        })),
    })
    .await
    .unwrap();
    let ch = cluster.client().channel_to(&cluster.nodes[0].addr).unwrap();
    let inbound = AgentGatewayClient::new(ch)
        .connect(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("session opened")
        .into_inner();
    RawSession { tx, inbound }
}

fn starting(framework_id: &str, task_id: &str, uuid: &str) -> pb::AgentMessage {
    pb::AgentMessage {
        kind: Some(pb::agent_message::Kind::Update(pb::StatusUpdate {
            uuid: uuid.into(),
            framework_id: framework_id.into(),
            task_id: task_id.into(),
            state: pb::TaskState::TaskStarting as i32,
            ..Default::default()
        })),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_on_a_replaced_agent_session_is_not_passed_on() {
    let cluster = Cluster::start_with(1, &["--allocation-interval", "100ms"]);
    cluster.wait_leader(1, 10 * SECOND).await;
    let client = cluster.client();
    let mut info = agent_info(1);
    info.resources.push(scalar("mem", 1024.0));
    client
        .call(|ch| {
            let agent = Some(info.clone());
            async move {
                agora_proto::v1::master_client::MasterClient::new(ch)
                    .register_agent(pb::RegisterAgentRequest {
                        agent,
                        tasks: vec![],
                        incarnation: 0,
                        attempt: 0,
                    })
                    .await
            }
        })
        .await
        .unwrap();
    let mut old = raw_session(&cluster, &info.id, &info.address).await;

    // A task launched on the agent (over its first session).
    let mut fw = Sub::new(&client, "fw").await;
    let offers = fw.offers().await;
    accept(
        &client,
        &fw.id,
        &[offers[0].id.as_str()],
        vec![task("t1", "t1", 0.1, 32.0, "true")],
        None,
    )
    .await
    .unwrap();
    let launched = tokio::time::timeout(10 * SECOND, async {
        while let Some(m) = old.inbound.message().await.unwrap() {
            if let Some(pb::master_message::Kind::Launch(l)) = m.kind {
                return l;
            }
        }
        panic!("session ended before the launch");
    })
    .await
    .expect("no launch within 10 s");
    assert_eq!(launched.tasks[0].task_id, "t1");

    // The agent connects again (its old connection lingering, as one cut by a partition
    // does), and a copy of an update arrives late on the old one: not passed on.
    let new = raw_session(&cluster, &info.id, &info.address).await;
    old.tx.send(starting(&fw.id, "t1", "u-1")).await.unwrap();
    let stale = fw
        .next(2 * SECOND, |k| match k {
            pb::event::Kind::Update(u) if u.task_id == "t1" => Some(u),
            _ => None,
        })
        .await;
    assert!(
        stale.is_none(),
        "an update on the replaced session reached the framework: {stale:?}"
    );
    // The same update on the current session is.
    new.tx.send(starting(&fw.id, "t1", "u-1")).await.unwrap();
    let u = fw.update("t1").await;
    assert_eq!(u.state(), pb::TaskState::TaskStarting);
    assert_eq!(u.uuid, "u-1");
}
