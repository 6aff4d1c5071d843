//! The agent's task path with real `agora-executor` processes and real cgroups: the agent's
//! `Tasks` and executor API served on loopback, launches handed in as the session with the
//! leader would, and the session's outbound updates read and acknowledged in the test as
//! the leader does once it has committed them. (Whole-cluster tests, where the leader sends
//! the launch, live with the frameworks' tests.) Each agent has a cgroup root of its own,
//! and a [`Sweep`] removes every process and cgroup a test started, also when it fails.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{alive, assert_cgroup_gone, cgroup_dirs, read_pid, unique_root, Sweep};

use agora_agent::config::AgentConfig;
use agora_agent::tasks::{ExecutorApi, Tasks};
use agora_proto::v1 as pb;
use agora_proto::v1::executor_server::ExecutorServer;
use agora_registry::Resources;
use tokio::sync::mpsc;

/// One agent instance on its own runtime, so the test can kill it (and every connection
/// it holds) as an agent crash would.
struct AgentInstance {
    tasks: Tasks,
    runtime: Option<tokio::runtime::Runtime>,
}

impl AgentInstance {
    /// An agent on `work_dir` with cgroup root `root` whose executors wait
    /// `recovery_timeout` for it.
    fn start(
        work_dir: &std::path::Path,
        addr: Option<std::net::SocketAddr>,
        root: &str,
        recovery_timeout: Duration,
    ) -> (AgentInstance, std::net::SocketAddr) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let bind = addr.unwrap_or_else(|| "127.0.0.1:0".parse().unwrap());
        // The port of a crashed agent may take a moment to be free again.
        let std_listener = (0..50)
            .find_map(|_| {
                std::net::TcpListener::bind(bind).ok().or_else(|| {
                    std::thread::sleep(Duration::from_millis(100));
                    None
                })
            })
            .unwrap_or_else(|| panic!("cannot bind {bind}"));
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let config = Arc::new(AgentConfig {
            masters: vec!["127.0.0.1:1".into()],
            advertise: addr.to_string(),
            hostname: "test".into(),
            work_dir: work_dir.to_path_buf(),
            resources: Resources::parse("cpus:2;mem:512").unwrap(),
            attributes: vec![],
            executor_binary: agora_test_cluster::binary("agora-executor"),
            executor_recovery_timeout: recovery_timeout,
        });
        let isolation = agora_agent::isolation::Isolation::detect(
            agora_agent::isolation::IsolationMode::Cgroups,
            root,
        )
        .unwrap();
        let tasks = Tasks::recover(config, Arc::new(isolation)).unwrap();
        tasks.set_agent_id("test-agent");
        let app = tonic::service::Routes::new(ExecutorServer::new(ExecutorApi {
            tasks: tasks.clone(),
        }))
        .into_axum_router();
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
            let _ = axum::serve(listener, app).await;
        });
        (
            AgentInstance {
                tasks,
                runtime: Some(runtime),
            },
            addr,
        )
    }

    /// Like SIGKILL of the agent: its runtime and every connection go at once.
    fn crash(self) {}
}

impl Drop for AgentInstance {
    /// Also when a test panics (a runtime must not be dropped in async code).
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// How long the executors of most tests wait for a crashed agent.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(60);

/// The leader's side of the session, as the test plays it.
struct Leader {
    rx: mpsc::Receiver<pb::AgentMessage>,
}

impl Leader {
    fn attach(tasks: &Tasks) -> Leader {
        let (tx, rx) = mpsc::channel(1024);
        tasks.session_opened(tx);
        Leader { rx }
    }

    async fn next_update(&mut self, timeout: Duration) -> Option<pb::StatusUpdate> {
        loop {
            match tokio::time::timeout(timeout, self.rx.recv()).await {
                Ok(Some(pb::AgentMessage {
                    kind: Some(pb::agent_message::Kind::Update(u)),
                })) => return Some(u),
                Ok(Some(_)) => continue,
                _ => return None,
            }
        }
    }

    /// Reads and acknowledges updates until `task` reaches a terminal state; returns them.
    async fn follow(&mut self, tasks: &Tasks, task: &str) -> Vec<pb::StatusUpdate> {
        let mut seen = Vec::new();
        loop {
            let u = self
                .next_update(Duration::from_secs(20))
                .await
                .unwrap_or_else(|| panic!("no update for {task}; so far {seen:?}"));
            tasks.acknowledged(&pb::StatusAck {
                framework_id: u.framework_id.clone(),
                task_id: u.task_id.clone(),
                uuid: u.uuid.clone(),
            });
            if u.task_id != task {
                continue;
            }
            let done = agora_driver::convert::task_state_from_proto(u.state)
                .expect("a valid state")
                .is_terminal();
            // A re-sent duplicate of the previous update is not a new state.
            if seen
                .last()
                .is_none_or(|p: &pb::StatusUpdate| p.uuid != u.uuid)
            {
                seen.push(u);
            }
            if done {
                return seen;
            }
        }
    }
}

fn task(id: &str, command: &str, cpus: f64, mem: f64) -> pb::TaskInfo {
    pb::TaskInfo {
        task_id: id.into(),
        name: id.into(),
        resources: vec![
            pb::Resource {
                name: "cpus".into(),
                role: String::new(),
                value: Some(pb::resource::Value::Scalar(cpus)),
            },
            pb::Resource {
                name: "mem".into(),
                role: String::new(),
                value: Some(pb::resource::Value::Scalar(mem)),
            },
        ],
        command: command.into(),
        env: Default::default(),
        executor: None,
    }
}

fn launch(tasks: &Tasks, t: pb::TaskInfo) {
    tasks.launch(pb::LaunchTasks {
        framework_id: "fw-1".into(),
        tasks: vec![t],
    });
}

fn states(updates: &[pb::StatusUpdate]) -> Vec<&'static str> {
    updates.iter().map(|u| u.state().as_str_name()).collect()
}

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
    // Until STARTING is acknowledged, RUNNING is not sent: one update in flight per task.
    assert!(leader
        .next_update(Duration::from_millis(700))
        .await
        .is_none());
    tasks.acknowledged(&pb::StatusAck {
        framework_id: first.framework_id,
        task_id: first.task_id,
        uuid: first.uuid,
    });
    let running = leader.next_update(Duration::from_secs(10)).await.unwrap();
    assert_eq!(running.state().as_str_name(), "TASK_RUNNING");
    tasks.acknowledged(&pb::StatusAck {
        framework_id: running.framework_id,
        task_id: running.task_id,
        uuid: running.uuid,
    });
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
async fn an_update_without_a_valid_state_is_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let root = unique_root();
    let _sweep = Sweep::new(&[&root], &[dir.path()]);
    let (agent, addr) = AgentInstance::start(dir.path(), None, &root, RECOVERY_TIMEOUT);
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy();
    let mut client = agora_proto::v1::executor_client::ExecutorClient::new(channel);
    for (state, needle) in [(0, "update.state: unset"), (99, "update.state: unknown")] {
        let err = client
            .update(pb::ExecutorUpdate {
                framework_id: "fw-1".into(),
                executor_id: "t1".into(),
                update: Some(pb::StatusUpdate {
                    uuid: "u1".into(),
                    framework_id: "fw-1".into(),
                    task_id: "t1".into(),
                    state,
                    ..Default::default()
                }),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
        assert!(err.message().starts_with(needle), "{err:?}");
    }
    assert_eq!(agent.tasks.unacknowledged(), 0);
    agent.crash();
}
