//! The agent's task path with real `agora-executor` processes and real cgroups: the agent's
//! `Tasks` and executor API served on loopback, launches handed in as the session with the
//! leader would, and the session's outbound updates read and acknowledged in the test as
//! the leader does once it has committed them. (Whole-cluster tests, where the leader sends
//! the launch, live with the frameworks' tests.) Each agent has a cgroup root of its own,
//! and a [`Sweep`] removes every process and cgroup a test started, also when it fails.

mod common;

use std::time::Duration;

use common::instance::*;
use common::{alive, assert_cgroup_gone, cgroup_dirs, read_pid, unique_root, Sweep};

use agora_agent::tasks::Tasks;
use agora_proto::v1 as pb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_run_in_cgroups_and_report_every_state_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let root = unique_root();
    let _sweep = Sweep::new(&[&root], &[dir.path()]);
    let (agent, _) = AgentInstance::start(dir.path(), None, &root, RECOVERY_TIMEOUT);
    let tasks = agent.tasks.clone();
    let mut leader = Leader::attach(&tasks);

    launch(
        &tasks,
        task(
            "ok",
            "echo hello; echo oops >&2; test -n \"$AGORA_TASK_ID\"",
            0.5,
            64.0,
        ),
    );
    let u = leader.follow(&tasks, "ok").await;
    assert_eq!(
        states(&u),
        ["TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"]
    );
    assert_eq!(u[2].exit_code, Some(0));
    let sandbox = dir.path().join("sandboxes/fw-1/ok");
    assert_eq!(
        std::fs::read_to_string(sandbox.join("stdout")).unwrap(),
        "hello\n"
    );
    assert_eq!(
        std::fs::read_to_string(sandbox.join("stderr")).unwrap(),
        "oops\n"
    );
    // The executor removed the task's cgroups, in every hierarchy, before it reported.
    assert!(cgroup_dirs(&root, "fw-1.ok").is_empty());

    launch(&tasks, task("three", "exit 3", 0.5, 64.0));
    let u = leader.follow(&tasks, "three").await;
    assert_eq!(states(&u), ["TASK_STARTING", "TASK_RUNNING", "TASK_FAILED"]);
    assert_eq!(u[2].exit_code, Some(3));
    assert!(cgroup_dirs(&root, "fw-1.three").is_empty());

    // 256 MB with a 32 MB limit: TASK_FAILED saying why, and the agent goes on.
    launch(
        &tasks,
        task(
            "hog",
            "exec python3 -c 'x = bytearray(256*1024*1024)'",
            0.5,
            32.0,
        ),
    );
    let u = leader.follow(&tasks, "hog").await;
    assert_eq!(u.last().unwrap().state().as_str_name(), "TASK_FAILED");
    assert!(
        u.last().unwrap().message.contains("memory limit"),
        "{:?}",
        u.last()
    );
    assert!(cgroup_dirs(&root, "fw-1.hog").is_empty());

    // More than the agent has free: never run.
    launch(&tasks, task("big", "touch ran", 4.0, 64.0));
    let u = leader.follow(&tasks, "big").await;
    assert_eq!(states(&u), ["TASK_DROPPED"]);
    assert!(
        u[0].message.contains("insufficient resources"),
        "{}",
        u[0].message
    );
    assert!(!dir.path().join("sandboxes/fw-1/big/ran").exists());

    // Kill: SIGTERM, then SIGKILL after the grace.
    launch(&tasks, task("sleeper", "sleep 30", 0.5, 64.0));
    let first = leader.next_update(Duration::from_secs(10)).await.unwrap();
    assert_eq!(first.state().as_str_name(), "TASK_STARTING");
    // Pipelined: RUNNING goes out without waiting for STARTING's acknowledgement.
    let running = leader.next_update(Duration::from_secs(10)).await.unwrap();
    assert_eq!(running.state().as_str_name(), "TASK_RUNNING");
    assert_eq!(tasks.unacknowledged(), 2);
    // A new session gets the newest in-flight update again, not STARTING: the framework
    // may have heard RUNNING already, and must not hear STARTING after it.
    leader = Leader::attach(&tasks);
    let again = leader.next_update(Duration::from_secs(10)).await.unwrap();
    assert_eq!(again.uuid, running.uuid);
    assert!(leader
        .next_update(Duration::from_millis(300))
        .await
        .is_none());
    // An unknown uuid acknowledges nothing; RUNNING's acknowledges STARTING too.
    tasks.acknowledged(&pb::StatusAck {
        framework_id: first.framework_id.clone(),
        task_id: first.task_id.clone(),
        uuid: "not-an-update".into(),
    });
    assert_eq!(tasks.unacknowledged(), 2);
    tasks.acknowledged(&pb::StatusAck {
        framework_id: running.framework_id,
        task_id: running.task_id,
        uuid: running.uuid,
    });
    assert_eq!(tasks.unacknowledged(), 0);
    tasks.kill(&pb::KillTask {
        framework_id: "fw-1".into(),
        task_id: "sleeper".into(),
        grace_period_ms: 200,
    });
    let u = leader.follow(&tasks, "sleeper").await;
    assert_eq!(states(&u), ["TASK_KILLING", "TASK_KILLED"]);
    assert_eq!(tasks.unacknowledged(), 0);
    assert!(cgroup_dirs(&root, "fw-1.sleeper").is_empty());

    // A framework's own executor (built on ExecutorDriver) runs the task instead.
    let mut custom = task(
        "custom",
        "echo \"$AGORA_CUSTOM_EXECUTOR\" > by.txt; cat /proc/self/cgroup > cg.txt",
        0.5,
        64.0,
    );
    custom.executor = Some(pb::ExecutorInfo {
        command: agora_test_cluster::example("agora-driver", "shell_executor")
            .display()
            .to_string(),
        ..Default::default()
    });
    launch(&tasks, custom);
    let u = leader.follow(&tasks, "custom").await;
    assert_eq!(states(&u), ["TASK_RUNNING", "TASK_FINISHED"], "{u:?}");
    assert!(u[0].message.contains("shell_executor"), "{:?}", u[0]);
    let sandbox = dir.path().join("sandboxes/fw-1/custom");
    assert_eq!(
        std::fs::read_to_string(sandbox.join("by.txt"))
            .unwrap()
            .trim(),
        "shell_executor"
    );
    // It ran inside the task's cgroup, which is removed once its executor has exited.
    let cg = std::fs::read_to_string(sandbox.join("cg.txt")).unwrap();
    assert!(cg.contains(&format!("/{root}/fw-1.custom")), "{cg}");
    assert_cgroup_gone(&root, "fw-1.custom", Duration::from_secs(5));

    // Framework messages reach the executor, and its messages reach the session with the
    // leader; a shutdown ends its task.
    let mut chatty = task("chatty", "sleep 30", 0.5, 64.0);
    chatty.executor = Some(pb::ExecutorInfo {
        command: agora_test_cluster::example("agora-driver", "shell_executor")
            .display()
            .to_string(),
        ..Default::default()
    });
    launch(&tasks, chatty);
    let running = leader.next_update(Duration::from_secs(10)).await.unwrap();
    assert_eq!(running.state().as_str_name(), "TASK_RUNNING");
    tasks.acknowledged(&pb::StatusAck {
        framework_id: running.framework_id,
        task_id: running.task_id,
        uuid: running.uuid,
    });
    tasks.framework_message(pb::FrameworkMessage {
        framework_id: "fw-1".into(),
        agent_id: "test-agent".into(),
        executor_id: "chatty".into(),
        data: b"ping".to_vec(),
    });
    let echoed = loop {
        match tokio::time::timeout(Duration::from_secs(10), leader.rx.recv()).await {
            Ok(Some(pb::AgentMessage {
                kind: Some(pb::agent_message::Kind::ExecutorMessage(m)),
            })) => break m,
            Ok(Some(_)) => continue,
            other => panic!("no executor message: {other:?}"),
        }
    };
    assert_eq!(echoed.data, b"echo:ping");
    assert_eq!(echoed.executor_id, "chatty");
    assert_eq!(echoed.agent_id, "test-agent");
    tasks.shutdown_executor(&pb::ShutdownExecutor {
        framework_id: "fw-1".into(),
        executor_id: "chatty".into(),
        grace_period_ms: 100,
    });
    let u = leader.follow(&tasks, "chatty").await;
    assert_eq!(
        u.last().unwrap().state().as_str_name(),
        "TASK_FAILED",
        "{u:?}"
    );
    assert!(
        u.last().unwrap().exit_code.is_none(),
        "killed by a signal: {u:?}"
    );
    assert_cgroup_gone(&root, "fw-1.chatty", Duration::from_secs(5));
    agent.crash();
}

/// Mesos' recovery: an agent back within the executors' recovery timeout gets every
/// update, including one its executor could not deliver while it was down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_outlives_an_agent_crash_and_its_end_is_reported_once() {
    let timeout = Duration::from_secs(3);
    let dir = tempfile::tempdir().unwrap();
    let root = unique_root();
    let _sweep = Sweep::new(&[&root], &[dir.path()]);
    let (agent, addr) = AgentInstance::start(dir.path(), None, &root, timeout);
    let tasks = agent.tasks.clone();
    let mut leader = Leader::attach(&tasks);
    // Ends when the test says so (its sandbox is its working directory).
    launch(
        &tasks,
        task(
            "long",
            "while [ ! -e go ]; do sleep 0.05; done; echo done",
            0.5,
            64.0,
        ),
    );
    for expected in ["TASK_STARTING", "TASK_RUNNING"] {
        let u = leader.next_update(Duration::from_secs(10)).await.unwrap();
        assert_eq!(u.state().as_str_name(), expected);
        tasks.acknowledged(&pb::StatusAck {
            framework_id: u.framework_id,
            task_id: u.task_id,
            uuid: u.uuid,
        });
    }
    let sandbox = dir.path().join("sandboxes/fw-1/long");
    let executor = read_pid(
        &dir.path()
            .join("meta/frameworks/fw-1/tasks/long/executor.pid"),
    )
    .expect("executor.pid");
    // The agent dies; the task must not. It ends while the agent is down: its executor
    // holds TASK_FINISHED, undelivered.
    agent.crash();
    drop(tasks);
    std::fs::write(sandbox.join("go"), "").unwrap();
    tokio::time::sleep(timeout / 2).await;
    assert!(
        alive(executor),
        "the executor gave up within the recovery timeout"
    );
    // Restart on the same work dir and address within the timeout: recovered from
    // checkpoints, the executor subscribes again, and the task's end arrives exactly once.
    let (agent, _) = AgentInstance::start(dir.path(), Some(addr), &root, timeout);
    let tasks = agent.tasks.clone();
    assert_eq!(tasks.report().len(), 1);
    assert_eq!(tasks.report()[0].state().as_str_name(), "TASK_RUNNING");
    tasks.check_recovered_executors();
    let mut leader = Leader::attach(&tasks);
    let u = leader.follow(&tasks, "long").await;
    assert_eq!(states(&u), ["TASK_FINISHED"], "{u:?}");
    assert_eq!(
        std::fs::read_to_string(sandbox.join("stdout")).unwrap(),
        "done\n"
    );
    // Its executor exits once the update is checkpointed, having removed the cgroup.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while alive(executor) {
        assert!(
            std::time::Instant::now() < deadline,
            "the executor did not exit"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(cgroup_dirs(&root, "fw-1.long").is_empty());
    let log = std::fs::read_to_string(sandbox.join("executor.log")).unwrap();
    assert!(!log.contains("recovery timeout"), "{log}");
    // Nothing more comes for it.
    assert!(leader
        .next_update(Duration::from_millis(2500))
        .await
        .is_none());
    agent.crash();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_whose_agent_died_before_giving_it_to_its_executor_runs_after_the_restart() {
    let timeout = Duration::from_secs(5);
    let dir = tempfile::tempdir().unwrap();
    let root = unique_root();
    let _sweep = Sweep::new(&[&root], &[dir.path()]);
    let (agent, addr) = AgentInstance::start(dir.path(), None, &root, timeout);
    let tasks = agent.tasks.clone();
    let _leader = Leader::attach(&tasks);
    // The agent checkpoints the task and starts its executor, and dies at once: the
    // executor (a process still starting) subscribes only to the restarted agent, and
    // never had the task.
    launch(&tasks, task("late", "echo ran >> runs", 0.5, 64.0));
    agent.crash();
    drop(tasks);
    let (agent, _) = AgentInstance::start(dir.path(), Some(addr), &root, timeout);
    let tasks = agent.tasks.clone();
    assert_eq!(
        tasks.report()[0].state().as_str_name(),
        "TASK_STAGING",
        "the executor reported before the crash: nothing to test"
    );
    tasks.check_recovered_executors();
    let mut leader = Leader::attach(&tasks);
    // It gets the task when it subscribes, and runs it once (the agent used to count a
    // recovered task as given: it stayed TASK_STAGING for good).
    let u = leader.follow(&tasks, "late").await;
    assert_eq!(
        states(&u),
        ["TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"],
        "{u:?}"
    );
    let sandbox = dir.path().join("sandboxes/fw-1/late");
    assert_eq!(
        std::fs::read_to_string(sandbox.join("runs")).unwrap(),
        "ran\n"
    );
    agent.crash();
}

/// The executor token the agent checkpointed for `task`'s executor, as a test can read it
/// (as root; no task can).
fn token_of(work: &std::path::Path, framework: &str, task: &str) -> String {
    std::fs::read_to_string(
        work.join("meta/frameworks")
            .join(framework)
            .join("tasks")
            .join(task)
            .join("executor.token"),
    )
    .unwrap_or_else(|e| panic!("no token for {framework}/{task}: {e}"))
}

/// `msg` as a call carrying `token` as `authorization: Bearer <token>` (none for `None`).
fn call<T>(msg: T, token: Option<&str>) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    if let Some(token) = token {
        req.metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    req
}

fn executor_client(
    addr: std::net::SocketAddr,
) -> agora_proto::v1::executor_client::ExecutorClient<tonic::transport::Channel> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy();
    agora_proto::v1::executor_client::ExecutorClient::new(channel)
}

/// An executor's update of `framework`/`task` to `state`.
fn forged_update(
    framework: &str,
    executor: &str,
    task: &str,
    state: pb::TaskState,
) -> pb::ExecutorUpdate {
    pb::ExecutorUpdate {
        framework_id: framework.into(),
        executor_id: executor.into(),
        update: Some(pb::StatusUpdate {
            uuid: uuid::Uuid::new_v4().to_string(),
            framework_id: framework.into(),
            task_id: task.into(),
            state: state.into(),
            message: "forged".into(),
            exit_code: Some(0),
            ..Default::default()
        }),
    }
}

impl Leader {
    /// Reads and acknowledges updates until `task` is TASK_RUNNING.
    async fn until_running(&mut self, tasks: &Tasks, task: &str) {
        loop {
            let u = self
                .next_update(Duration::from_secs(20))
                .await
                .unwrap_or_else(|| panic!("{task} not running"));
            tasks.acknowledged(&pb::StatusAck {
                framework_id: u.framework_id.clone(),
                task_id: u.task_id.clone(),
                uuid: u.uuid.clone(),
            });
            if u.task_id == task {
                assert!(
                    !agora_driver::convert::task_state_from_proto(u.state)
                        .unwrap()
                        .is_terminal(),
                    "{task} ended: {u:?}"
                );
                if u.state() == pb::TaskState::TaskRunning {
                    return;
                }
            }
        }
    }
}

/// The state the agent holds for `framework`/`task`.
fn state_of(tasks: &Tasks, framework: &str, task: &str) -> &'static str {
    tasks
        .report()
        .iter()
        .find(|r| r.framework_id == framework && r.task_id == task)
        .map(|r| r.state().as_str_name())
        .unwrap_or("UNKNOWN")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_without_a_valid_state_is_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let root = unique_root();
    let _sweep = Sweep::new(&[&root], &[dir.path()]);
    let (agent, addr) = AgentInstance::start(dir.path(), None, &root, RECOVERY_TIMEOUT);
    let tasks = agent.tasks.clone();
    let mut leader = Leader::attach(&tasks);
    launch(&tasks, task("t1", "sleep 600", 0.1, 32.0));
    leader.until_running(&tasks, "t1").await;
    let token = token_of(dir.path(), "fw-1", "t1");
    let mut client = executor_client(addr);
    for (state, needle) in [(0, "update.state: unset"), (99, "update.state: unknown")] {
        let err = client
            .update(call(
                pb::ExecutorUpdate {
                    framework_id: "fw-1".into(),
                    executor_id: "t1".into(),
                    update: Some(pb::StatusUpdate {
                        uuid: "u1".into(),
                        framework_id: "fw-1".into(),
                        task_id: "t1".into(),
                        state,
                        ..Default::default()
                    }),
                },
                Some(&token),
            ))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
        assert!(err.message().starts_with(needle), "{err:?}");
    }
    assert_eq!(agent.tasks.unacknowledged(), 0);
    assert_eq!(state_of(&tasks, "fw-1", "t1"), "TASK_RUNNING");
    agent.crash();
}

/// Executor tokens, with real executors: a call without its executor's token is refused
/// (UNAUTHENTICATED, whatever was wrong), one with another executor's token is refused
/// naming the field (PERMISSION_DENIED), and the task a forged update names keeps running.
/// The executors' own calls (subscribe, updates, messages) still work; a token goes when
/// its executor exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executor_calls_need_the_executors_own_token() {
    let dir = tempfile::tempdir().unwrap();
    let root = unique_root();
    let _sweep = Sweep::new(&[&root], &[dir.path()]);
    let (agent, addr) = AgentInstance::start(dir.path(), None, &root, RECOVERY_TIMEOUT);
    let tasks = agent.tasks.clone();
    let mut leader = Leader::attach(&tasks);
    // "a" of framework fw-1 is the attacker's; "b" of fw-2 the victim.
    launch(&tasks, task("a", "sleep 600", 0.1, 32.0));
    leader.until_running(&tasks, "a").await;
    tasks.launch(pb::LaunchTasks {
        framework_id: "fw-2".into(),
        tasks: vec![task("b", "sleep 600", 0.1, 32.0)],
    });
    leader.until_running(&tasks, "b").await;
    let a_token = token_of(dir.path(), "fw-1", "a");
    let b_token = token_of(dir.path(), "fw-2", "b");
    assert_eq!(a_token.len(), 64);
    assert_ne!(a_token, b_token);
    let b_pid = read_pid(&dir.path().join("sandboxes/fw-2/b/.task.pid")).expect(".task.pid");
    let mut client = executor_client(addr);
    let finish_b = || forged_update("fw-2", "b", "b", pb::TaskState::TaskFinished);

    // No token, a made-up one, a malformed header: UNAUTHENTICATED, saying no more.
    let made_up = "0".repeat(64);
    for token in [None, Some(made_up.as_str()), Some(&a_token[..63])] {
        let err = client.update(call(finish_b(), token)).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");
        assert_eq!(err.message(), "executor token required");
    }
    let mut basic = call(finish_b(), None);
    basic
        .metadata_mut()
        .insert("authorization", format!("Basic {b_token}").parse().unwrap());
    let err = client.update(basic).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");

    // Another executor's valid token: PERMISSION_DENIED naming the field.
    let denied = |err: tonic::Status, field: &str| {
        assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
        assert!(err.message().starts_with(field), "{field}: {err:?}");
        assert!(!err.message().contains(&a_token), "{err:?}");
    };
    denied(
        client
            .update(call(finish_b(), Some(&a_token)))
            .await
            .unwrap_err(),
        "framework_id",
    );
    denied(
        client
            .update(call(
                forged_update("fw-1", "b", "b", pb::TaskState::TaskFinished),
                Some(&a_token),
            ))
            .await
            .unwrap_err(),
        "executor_id",
    );
    // Its own ids, another task in the update.
    denied(
        client
            .update(call(
                forged_update("fw-1", "a", "b", pb::TaskState::TaskFinished),
                Some(&a_token),
            ))
            .await
            .unwrap_err(),
        "update.task_id",
    );
    let mut cross = forged_update("fw-1", "a", "a", pb::TaskState::TaskFinished);
    cross.update.as_mut().unwrap().framework_id = "fw-2".into();
    denied(
        client
            .update(call(cross, Some(&a_token)))
            .await
            .unwrap_err(),
        "update.framework_id",
    );
    // Taking over b's event stream (its kills) or speaking for it: refused the same way.
    let subscribe_b = || pb::ExecutorSubscribe {
        framework_id: "fw-2".into(),
        executor_id: "b".into(),
        task_ids: vec!["b".into()],
    };
    let err = client
        .subscribe(call(subscribe_b(), None))
        .await
        .err()
        .unwrap();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");
    denied(
        client
            .subscribe(call(subscribe_b(), Some(&a_token)))
            .await
            .err()
            .unwrap(),
        "framework_id",
    );
    let message_b = || pb::FrameworkMessage {
        framework_id: "fw-2".into(),
        agent_id: String::new(),
        executor_id: "b".into(),
        data: b"forged".to_vec(),
    };
    let err = client
        .send_message(call(message_b(), None))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");
    denied(
        client
            .send_message(call(message_b(), Some(&a_token)))
            .await
            .unwrap_err(),
        "framework_id",
    );
    // The token itself is good for its own executor.
    client
        .send_message(call(
            pb::FrameworkMessage {
                framework_id: "fw-1".into(),
                agent_id: String::new(),
                executor_id: "a".into(),
                data: b"hello".to_vec(),
            },
            Some(&a_token),
        ))
        .await
        .unwrap();

    // b runs on, and the agent neither recorded nor sent anything for it.
    assert_eq!(state_of(&tasks, "fw-2", "b"), "TASK_RUNNING");
    assert!(alive(b_pid), "the victim's task was killed");
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(500), leader.rx.recv()).await
    {
        if let Some(pb::agent_message::Kind::Update(u)) = &m.kind {
            panic!("an update reached the leader: {u:?}");
        }
    }
    let journal = agora_agent::checkpoint::Checkpoints::new(dir.path())
        .journal("fw-2", "b")
        .unwrap();
    assert!(
        journal.updates.iter().all(|u| u.message != "forged"),
        "{journal:?}"
    );

    // b's own executor still reports and is still killed through its stream.
    tasks.kill(&pb::KillTask {
        framework_id: "fw-2".into(),
        task_id: "b".into(),
        grace_period_ms: 100,
    });
    let u = leader.follow(&tasks, "b").await;
    assert_eq!(states(&u), ["TASK_KILLING", "TASK_KILLED"], "{u:?}");
    // Once its executor has exited, its token is gone: in memory and on disk.
    let b_token_file = dir
        .path()
        .join("meta/frameworks/fw-2/tasks/b/executor.token");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while b_token_file.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "b's token outlived its executor"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let err = client
        .update(call(
            forged_update("fw-2", "b", "b", pb::TaskState::TaskRunning),
            Some(&b_token),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");
    tasks.kill(&pb::KillTask {
        framework_id: "fw-1".into(),
        task_id: "a".into(),
        grace_period_ms: 100,
    });
    let u = leader.follow(&tasks, "a").await;
    assert_eq!(
        u.last().unwrap().state().as_str_name(),
        "TASK_KILLED",
        "{u:?}"
    );
    agent.crash();
}

/// Runs `task` to its end; returns its updates.
async fn run_to_end(leader: &mut Leader, tasks: &Tasks, t: pb::TaskInfo) -> Vec<pb::StatusUpdate> {
    let id = t.task_id.clone();
    launch(tasks, t);
    leader.follow(tasks, &id).await
}

/// Tries to reach what a task must not (other tasks' sandboxes and environment, the
/// agent's work dir, checkpoints and id, init) and prints `REACHED <what>` or `refused
/// <what>` for each, then writes a file of its own.
fn probe(work: &std::path::Path, root_pid: i32) -> String {
    let w = work.display();
    format!(
        r#"id -u; echo "HOME=$HOME USER=$USER LOGNAME=$LOGNAME"
try() {{ what=$1; shift; if "$@" >/dev/null 2>&1; then echo "REACHED $what"; else echo "refused $what"; fi; }}
try root-sandbox cat {w}/sandboxes/fw-1/root-task/secret.txt
try daemon-sandbox cat {w}/sandboxes/fw-1/daemon-task/secret.txt
try root-sandbox-listing ls {w}/sandboxes/fw-1/root-task
try root-stdout cat {w}/sandboxes/fw-1/root-task/stdout
try root-environ cat /proc/{root_pid}/environ
try root-signal kill -0 {root_pid}
try init-signal kill -0 1
try work-dir-listing ls {w}
try sandboxes-listing ls {w}/sandboxes
try framework-listing ls {w}/sandboxes/fw-1
try meta-listing ls {w}/meta
try checkpoint cat {w}/meta/frameworks/fw-1/tasks/root-task/task.json
try journal cat {w}/meta/frameworks/fw-1/tasks/root-task/updates.jsonl
try token cat {w}/meta/frameworks/fw-1/tasks/root-task/executor.token
try agent-id cat {w}/agent_id
if env | grep -q AGORA_EXECUTOR_TOKEN; then echo "REACHED own-token"; else echo "refused own-token"; fi
echo mine > own.txt && echo "wrote own"
"#
    )
}

/// What a probe reached.
fn reached(stdout: &str) -> Vec<&str> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("REACHED "))
        .collect()
}

/// Tasks run as their user: a task running as `nobody` cannot read another task's sandbox
/// (of root, or of another user), another task's environment, the agent's work dir
/// listing, checkpoints, tokens or id, and cannot signal init or a root task; it writes its
/// own sandbox and output, with HOME its sandbox and USER/LOGNAME set. The same probe as
/// root reaches all of it, so the test would fail if the agent ran tasks as root.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_running_as_nobody_reaches_nothing_of_other_tasks_or_of_the_agent() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let root = unique_root();
    let _sweep = Sweep::new(&[&root], &[dir.path()]);
    let work = dir.path();
    // An agent id as an earlier version left it, readable by all: made private at start.
    std::fs::write(work.join("agent_id"), "agent-1").unwrap();
    std::fs::set_permissions(
        work.join("agent_id"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let (agent, _) = AgentInstance::start(work, None, &root, RECOVERY_TIMEOUT);
    let tasks = agent.tasks.clone();
    let mut leader = Leader::attach(&tasks);
    let mode = |p: &str| std::fs::metadata(work.join(p)).unwrap().mode() & 0o7777;
    assert_eq!(mode(""), 0o711);
    assert_eq!(mode("meta"), 0o700);
    assert_eq!(mode("sandboxes"), 0o711);
    assert_eq!(mode("agent_id"), 0o600);

    // Two tasks holding secrets: one as root (the agent's own user), one as daemon.
    for (id, user) in [("root-task", ""), ("daemon-task", "daemon")] {
        let mut t = task(
            id,
            "echo secret > secret.txt; echo secret-out; exec sleep 600",
            0.1,
            32.0,
        );
        t.env.insert("SECRET_ENV".into(), "secret".into());
        t.user = user.into();
        launch(&tasks, t);
        leader.until_running(&tasks, id).await;
    }
    let sandbox = |t: &str| work.join("sandboxes/fw-1").join(t);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !["root-task", "daemon-task"]
        .iter()
        .all(|t| sandbox(t).join("secret.txt").exists() && sandbox(t).join(".task.pid").exists())
    {
        assert!(std::time::Instant::now() < deadline, "no secrets written");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let root_pid = read_pid(&sandbox("root-task").join(".task.pid")).unwrap();
    assert!(alive(root_pid));
    let daemon = std::fs::metadata(sandbox("daemon-task").join("secret.txt")).unwrap();
    assert_eq!(daemon.uid(), 1, "daemon-task did not run as daemon");
    assert_eq!(mode("sandboxes/fw-1/daemon-task"), 0o700);

    // The probe as nobody.
    let mut t = task("probe", &probe(work, root_pid), 0.1, 32.0);
    t.user = "nobody".into();
    let u = run_to_end(&mut leader, &tasks, t).await;
    assert_eq!(
        states(&u),
        ["TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"],
        "{u:?}"
    );
    let out = std::fs::read_to_string(sandbox("probe").join("stdout")).unwrap();
    let err = std::fs::read_to_string(sandbox("probe").join("stderr")).unwrap();
    assert_eq!(out.lines().next(), Some("65534"), "{out}\n{err}");
    assert!(
        out.contains(&format!(
            "HOME={} USER=nobody LOGNAME=nobody",
            sandbox("probe").display()
        )),
        "{out}"
    );
    assert_eq!(reached(&out), Vec::<&str>::new(), "{out}");
    assert!(out.contains("wrote own"), "{out}\n{err}");
    assert_eq!(out.matches("refused ").count(), 16, "{out}");
    // Its sandbox, output and what it wrote are its own, private to it.
    for f in ["", "stdout", "stderr", "executor.log", "own.txt"] {
        let m = std::fs::metadata(sandbox("probe").join(f)).unwrap();
        assert_eq!((m.uid(), m.gid()), (65534, 65534), "{f}");
    }
    assert_eq!(mode("sandboxes/fw-1/probe"), 0o700);

    // The same probe as root reaches what it tries (its own token excepted: the executor
    // keeps it to itself), so the refusals above are the user's doing.
    let u = run_to_end(
        &mut leader,
        &tasks,
        task("control", &probe(work, root_pid), 0.1, 32.0),
    )
    .await;
    assert_eq!(
        states(&u),
        ["TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"],
        "{u:?}"
    );
    let out = std::fs::read_to_string(sandbox("control").join("stdout")).unwrap();
    assert_eq!(out.lines().next(), Some("0"), "{out}");
    assert_eq!(
        reached(&out),
        [
            "root-sandbox",
            "daemon-sandbox",
            "root-sandbox-listing",
            "root-stdout",
            "root-environ",
            "root-signal",
            "init-signal",
            "work-dir-listing",
            "sandboxes-listing",
            "framework-listing",
            "meta-listing",
            "checkpoint",
            "journal",
            "token",
            "agent-id",
        ],
        "{out}"
    );

    // Still running, untouched.
    assert!(alive(root_pid));
    for t in ["root-task", "daemon-task"] {
        assert_eq!(state_of(&tasks, "fw-1", t), "TASK_RUNNING");
        tasks.kill(&pb::KillTask {
            framework_id: "fw-1".into(),
            task_id: t.into(),
            grace_period_ms: 100,
        });
        let u = leader.follow(&tasks, t).await;
        assert_eq!(
            u.last().unwrap().state().as_str_name(),
            "TASK_KILLED",
            "{u:?}"
        );
    }
    agent.crash();
}

/// A framework's own executor runs as the task's user too (switched after it joined the
/// task's cgroup), authenticates with its token, and runs its task; an unknown user fails
/// the task saying so, and the agent goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_executors_run_as_the_user_and_unknown_users_fail_the_task() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let root = unique_root();
    let _sweep = Sweep::new(&[&root], &[dir.path()]);
    let (agent, _) = AgentInstance::start(dir.path(), None, &root, RECOVERY_TIMEOUT);
    let tasks = agent.tasks.clone();
    let mut leader = Leader::attach(&tasks);
    let sandbox = |t: &str| dir.path().join("sandboxes/fw-1").join(t);

    let mut ghost = task("ghost", "touch ran", 0.1, 32.0);
    ghost.user = "no-such-user-agora".into();
    let u = run_to_end(&mut leader, &tasks, ghost).await;
    assert_eq!(states(&u), ["TASK_FAILED"], "{u:?}");
    assert_eq!(u[0].message, r#"unknown user "no-such-user-agora""#);
    assert!(!sandbox("ghost").join("ran").exists());

    let mut custom = task(
        "custom",
        "id -u > uid.txt; echo \"$HOME\" > home.txt; cat /proc/self/cgroup > cg.txt; \
         if env | grep -q AGORA_EXECUTOR_TOKEN; then echo yes > token.txt; fi",
        0.1,
        32.0,
    );
    custom.user = "nobody".into();
    custom.executor = Some(pb::ExecutorInfo {
        command: agora_test_cluster::example("agora-driver", "shell_executor")
            .display()
            .to_string(),
        ..Default::default()
    });
    let u = run_to_end(&mut leader, &tasks, custom).await;
    assert_eq!(states(&u), ["TASK_RUNNING", "TASK_FINISHED"], "{u:?}");
    let read = |f: &str| std::fs::read_to_string(sandbox("custom").join(f)).unwrap();
    assert_eq!(read("uid.txt").trim(), "65534");
    assert_eq!(
        read("home.txt").trim(),
        sandbox("custom").display().to_string()
    );
    assert!(
        read("cg.txt").contains(&format!("/{root}/fw-1.custom")),
        "{}",
        read("cg.txt")
    );
    // The framework's executor got its token (it is how it talked to the agent).
    assert_eq!(read("token.txt").trim(), "yes");
    assert_eq!(
        std::fs::metadata(sandbox("custom").join("uid.txt"))
            .unwrap()
            .uid(),
        65534
    );

    // A framework's executor that forks past the pids limit is killed, and its task
    // fails saying so.
    let mut bomb = task("bomb", "true", 0.1, 128.0);
    bomb.executor = Some(pb::ExecutorInfo {
        command: "bomb() { bomb | bomb & }; bomb; sleep 60".into(),
        ..Default::default()
    });
    let u = run_to_end(&mut leader, &tasks, bomb).await;
    assert_eq!(states(&u), ["TASK_FAILED"], "{u:?}");
    assert!(
        u[0].message.contains("process limit reached (256"),
        "{}",
        u[0].message
    );
    assert_cgroup_gone(&root, "fw-1.custom", Duration::from_secs(5));

    // And the agent goes on.
    let u = run_to_end(&mut leader, &tasks, task("after", "true", 0.1, 32.0)).await;
    assert_eq!(
        states(&u),
        ["TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"]
    );
    agent.crash();
}

/// A sandbox is scheduled for collection only once it is finished: its executor has
/// exited and every update of its task is acknowledged (here the test, as the leader, holds
/// TASK_FINISHED back after the executor has exited); a running task's never is. The
/// schedule is then collected as the agent's loop would, with a zero delay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandbox_is_scheduled_for_collection_only_once_its_executor_exited_and_its_updates_are_acknowledged(
) {
    let dir = tempfile::tempdir().unwrap();
    let root = unique_root();
    let _sweep = Sweep::new(&[&root], &[dir.path()]);
    let (agent, _) = AgentInstance::start(dir.path(), None, &root, RECOVERY_TIMEOUT);
    let tasks = agent.tasks.clone();
    let mut leader = Leader::attach(&tasks);
    let collector = tasks.collector();
    let sandbox = |t: &str| dir.path().join("sandboxes/fw-1").join(t);

    launch(&tasks, task("long", "sleep 600", 0.2, 32.0));
    loop {
        let u = leader
            .next_update(Duration::from_secs(20))
            .await
            .expect("an update of long");
        let running = u.state().as_str_name() == "TASK_RUNNING";
        tasks.acknowledged(&pb::StatusAck {
            framework_id: u.framework_id,
            task_id: u.task_id,
            uuid: u.uuid,
        });
        if running {
            break;
        }
    }
    launch(&tasks, task("quick", "echo hi", 0.2, 32.0));
    let mut finished = None;
    while finished.is_none() {
        let u = leader
            .next_update(Duration::from_secs(20))
            .await
            .expect("an update of quick");
        if u.state().as_str_name() == "TASK_FINISHED" {
            finished = Some(u);
        } else {
            tasks.acknowledged(&pb::StatusAck {
                framework_id: u.framework_id,
                task_id: u.task_id,
                uuid: u.uuid,
            });
        }
    }
    let finished = finished.unwrap();
    // Its executor exits once TASK_FINISHED is checkpointed, acknowledged or not.
    let executor = read_pid(
        &dir.path()
            .join("meta/frameworks/fw-1/tasks/quick/executor.pid"),
    )
    .expect("executor.pid");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while alive(executor) {
        assert!(
            std::time::Instant::now() < deadline,
            "the executor did not exit"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        collector.scheduled().is_empty(),
        "scheduled with TASK_FINISHED undelivered: {:?}",
        collector.scheduled()
    );
    let before = agora_agent::clock::now_ms();
    tasks.acknowledged(&pb::StatusAck {
        framework_id: finished.framework_id,
        task_id: finished.task_id,
        uuid: finished.uuid,
    });
    let scheduled = collector.scheduled();
    assert_eq!(scheduled.len(), 1, "{scheduled:?}");
    assert_eq!(scheduled[0].path, sandbox("quick"));
    assert_eq!(
        (
            scheduled[0].framework_id.as_str(),
            scheduled[0].executor_id.as_str()
        ),
        ("fw-1", "quick")
    );
    assert!(scheduled[0].finished_at_ms >= before);
    let checkpointed = std::fs::read_to_string(
        dir.path()
            .join("meta/frameworks/fw-1/tasks/quick/sandbox.finished"),
    )
    .unwrap();
    assert_eq!(
        checkpointed.trim().parse::<u64>().unwrap(),
        scheduled[0].finished_at_ms
    );

    let now_policy = agora_agent::gc::policy::Policy {
        delay: Duration::ZERO,
        disk_headroom: 0.1,
    };
    let removed = collector.collect(&now_policy, agora_agent::clock::now_ms(), Some(1.0));
    assert_eq!(removed.len(), 1);
    assert!(!sandbox("quick").exists());
    assert!(sandbox("long").join("stdout").is_file());
    assert!(collector.scheduled().is_empty());
    agent.crash();
}
