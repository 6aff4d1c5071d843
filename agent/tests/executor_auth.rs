//! Secure by default, with a real master and real agent processes: executor tokens
//! (a forged `Executor.Update` without a token, or with another framework's executor's
//! token, cannot end a task: it stays TASK_RUNNING at the agent and at the master; tokens
//! survive an agent restart and go with their executor), the work dir's modes, and an
//! agent that is not root (it runs tasks as itself, and refuses other users).

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agora_driver::{Scheduler, SchedulerDriver, SchedulerHandle, TaskState, TaskStatus};
use agora_proto::v1 as pb;
use agora_proto::v1::executor_client::ExecutorClient;
use agora_test_cluster::{binary, free_port, AgentNode, Cluster};
use common::{alive, read_pid, unique_root, Sweep};

fn task(id: &str, command: &str, user: &str) -> pb::TaskInfo {
    let scalar = |name: &str, x: f64| pb::Resource {
        name: name.into(),
        role: String::new(),
        value: Some(pb::resource::Value::Scalar(x)),
    };
    pb::TaskInfo {
        task_id: id.into(),
        name: id.into(),
        resources: vec![scalar("cpus", 0.1), scalar("mem", 32.0)],
        command: command.into(),
        env: Default::default(),
        executor: None,
        user: user.into(),
        ..Default::default()
    }
}

/// Launches its tasks on the first offer and passes on every status it hears.
struct Launcher {
    tasks: Vec<pb::TaskInfo>,
    events: std::sync::mpsc::Sender<TaskStatus>,
}

impl Scheduler for Launcher {
    fn resource_offers(&mut self, h: &SchedulerHandle, offers: Vec<pb::Offer>) {
        for o in offers {
            if self.tasks.is_empty() {
                h.decline(vec![o.id], None);
            } else {
                h.accept(vec![o.id], std::mem::take(&mut self.tasks), None);
            }
        }
    }

    fn status_update(&mut self, _h: &SchedulerHandle, status: TaskStatus) {
        let _ = self.events.send(status);
    }
}

/// A framework running `tasks`; its handle and the statuses it hears.
struct Framework {
    handle: SchedulerHandle,
    events: std::sync::mpsc::Receiver<TaskStatus>,
    run: tokio::task::JoinHandle<Result<(), agora_driver::DriverError>>,
}

impl Framework {
    /// A framework whose tasks run as `user` unless they name their own (empty: the
    /// driver's default, the user running the test).
    fn start(cluster: &Cluster, name: &str, user: &str, tasks: Vec<pb::TaskInfo>) -> Framework {
        let (tx, events) = std::sync::mpsc::channel();
        let info = pb::FrameworkInfo {
            name: name.into(),
            roles: vec!["*".into()],
            user: user.into(),
            ..Default::default()
        };
        let driver = SchedulerDriver::new(&cluster.addrs().join(","), info).unwrap();
        let handle = driver.handle();
        let run = tokio::spawn(driver.run(Launcher { tasks, events: tx }));
        Framework {
            handle,
            events,
            run,
        }
    }

    fn id(&self) -> String {
        self.handle.framework_id().expect("subscribed")
    }

    /// Waits for `task` to reach `state` (any other terminal state fails the test).
    async fn wait_for(&self, task: &str, state: TaskState, log: &dyn Fn()) -> TaskStatus {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.events.try_recv() {
                Ok(s) if s.task_id == task && s.state == state => return s,
                Ok(s) if s.task_id == task && s.state.is_terminal() => {
                    log();
                    panic!("{task} ended: {s:?}")
                }
                Ok(_) => {}
                Err(_) => {
                    if Instant::now() > deadline {
                        log();
                        panic!("{task} not {state:?} within 30 s");
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }
}

/// A task's state in the leader's registry.
async fn master_state(cluster: &Cluster, framework: &str, task: &str) -> pb::TaskState {
    let state = agora_test_cluster::state(&cluster.client()).await;
    state
        .tasks
        .iter()
        .find(|t| t.framework_id == framework && t.id == task)
        .map(|t| t.state())
        .unwrap_or(pb::TaskState::Unspecified)
}

fn call<T>(msg: T, token: Option<&str>) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    if let Some(token) = token {
        req.metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    req
}

/// A client of an agent's executor API, speaking TLS (the agent's certificate checked
/// against the test CA) and presenting no credential of its own.
fn client(addr: &str) -> ExecutorClient<tonic::transport::Channel> {
    let channel = agora_test_cluster::pki::pki()
        .client_security(None)
        .endpoint(addr)
        .unwrap()
        .connect_timeout(Duration::from_secs(1))
        .connect_lazy();
    ExecutorClient::new(channel)
}

fn finish(framework: &str, executor: &str, task: &str) -> pb::ExecutorUpdate {
    pb::ExecutorUpdate {
        framework_id: framework.into(),
        executor_id: executor.into(),
        update: Some(pb::StatusUpdate {
            uuid: uuid::Uuid::new_v4().to_string(),
            framework_id: framework.into(),
            task_id: task.into(),
            state: pb::TaskState::TaskFinished.into(),
            message: "forged".into(),
            exit_code: Some(0),
            ..Default::default()
        }),
    }
}

fn message(framework: &str, executor: &str) -> pb::FrameworkMessage {
    pb::FrameworkMessage {
        framework_id: framework.into(),
        agent_id: String::new(),
        executor_id: executor.into(),
        data: b"hello".to_vec(),
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .mode()
        & 0o7777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_executor_update_cannot_end_another_frameworks_task() {
    let cluster = Cluster::start_with(1, &["--allocation-interval", "100ms"]);
    cluster.wait_leader(1, Duration::from_secs(10)).await;
    let root = unique_root();
    let mut agent = AgentNode::new(
        &cluster,
        "agent-1",
        &[
            "--resources",
            "cpus:2;mem:512;disk:100",
            "--isolation",
            "cgroups",
            "--cgroups-root",
            &root,
        ],
    );
    let _sweep = Sweep::new(&[&root], &[&agent.work_dir]);
    agent.start();
    cluster.wait_active_agents(1, Duration::from_secs(20)).await;
    let agent_log_path = agent.log.clone();
    let log = || {
        agent_log(&agent_log_path);
        cluster.dump_logs();
    };

    // Mallory's task and Alice's.
    let mallory = Framework::start(&cluster, "mallory", "", vec![task("m", "sleep 600", "")]);
    mallory.wait_for("m", TaskState::TaskRunning, &log).await;
    let alice = Framework::start(
        &cluster,
        "alice",
        "",
        vec![task("a", "env > env.txt; exec sleep 600", "")],
    );
    alice.wait_for("a", TaskState::TaskRunning, &log).await;
    let (m_fw, a_fw) = (mallory.id(), alice.id());
    let work = agent.work_dir.clone();
    let meta = |fw: &str, t: &str| work.join("meta/frameworks").join(fw).join("tasks").join(t);
    let m_token = std::fs::read_to_string(meta(&m_fw, "m").join("executor.token")).unwrap();
    let a_pid = read_pid(&work.join("sandboxes").join(&a_fw).join("a/.task.pid")).unwrap();

    // Neither the executor's token nor the agent's own settings (the fixture gives every
    // process it starts AGORA_CONFIG, with the admin's secret) reach a task.
    let agent_env = std::fs::read(format!("/proc/{}/environ", agent.pid().unwrap())).unwrap();
    assert!(
        String::from_utf8_lossy(&agent_env).contains("AGORA_CONFIG="),
        "the agent has no AGORA_CONFIG: the check below would prove nothing"
    );
    let env_file = work.join("sandboxes").join(&a_fw).join("a/env.txt");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::metadata(&env_file).map_or(true, |m| m.len() == 0) {
        assert!(Instant::now() < deadline, "no env.txt");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let task_env = std::fs::read_to_string(&env_file).unwrap();
    assert!(task_env.contains("AGORA_TASK_ID=a"), "{task_env}");
    for secret in ["AGORA_EXECUTOR_TOKEN=", "AGORA_CONFIG=", "AGORA_TLS_KEY="] {
        assert!(!task_env.contains(secret), "{secret} reached the task");
    }

    // The agent's state is its own.
    assert_eq!(mode(&work), 0o711);
    assert_eq!(mode(&work.join("meta")), 0o700);
    assert_eq!(mode(&work.join("agent_id")), 0o600);
    assert_eq!(mode(&meta(&m_fw, "m").join("executor.token")), 0o600);
    assert_eq!(mode(&work.join("sandboxes")), 0o711);
    assert_eq!(mode(&work.join("sandboxes").join(&a_fw)), 0o711);
    assert_eq!(mode(&work.join("sandboxes").join(&a_fw).join("a")), 0o700);

    let mut agent_api = client(&agent.addr);
    // No token: UNAUTHENTICATED.
    let err = agent_api
        .update(call(finish(&a_fw, "a", "a"), None))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");
    assert_eq!(err.message(), "executor token required");
    // Mallory's executor's valid token, for Alice's task: PERMISSION_DENIED.
    let err = agent_api
        .update(call(finish(&a_fw, "a", "a"), Some(&m_token)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    assert!(err.message().starts_with("framework_id"), "{err:?}");
    let err = agent_api
        .update(call(finish(&m_fw, "m", "a"), Some(&m_token)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    assert!(err.message().starts_with("update.task_id"), "{err:?}");
    // The token is good for Mallory's own executor.
    agent_api
        .send_message(call(message(&m_fw, "m"), Some(&m_token)))
        .await
        .unwrap();

    // Alice's task runs on, at the agent and at the master, and she heard nothing.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(alive(a_pid), "Alice's task was killed");
    assert_eq!(
        master_state(&cluster, &a_fw, "a").await,
        pb::TaskState::TaskRunning
    );
    let heard: Vec<TaskStatus> = alice.events.try_iter().collect();
    assert!(heard.is_empty(), "{heard:?}");

    // A restarted agent still accepts its running executors (their tokens are
    // checkpointed), and still refuses the forgery.
    agent.kill();
    agent.start();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match client(&agent.addr)
            .send_message(call(message(&m_fw, "m"), Some(&m_token)))
            .await
        {
            Ok(_) => break,
            Err(e) if e.code() == tonic::Code::Unavailable || e.code() == tonic::Code::Unknown => {
                if Instant::now() > deadline {
                    log();
                    panic!("the restarted agent does not answer: {e:?}");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => {
                log();
                panic!("the restarted agent refused a running executor's token: {e:?}");
            }
        }
    }
    let mut agent_api = client(&agent.addr);
    let err = agent_api
        .update(call(finish(&a_fw, "a", "a"), Some(&m_token)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    cluster.wait_active_agents(1, Duration::from_secs(20)).await;

    // Mallory's executor, subscribed again with its token, is still told to kill its task;
    // once it has exited, its token is gone.
    mallory.handle.kill("m", Some(Duration::from_millis(100)));
    mallory.wait_for("m", TaskState::TaskKilled, &log).await;
    let token_file = meta(&m_fw, "m").join("executor.token");
    let deadline = Instant::now() + Duration::from_secs(10);
    while token_file.exists() {
        assert!(Instant::now() < deadline, "the token outlived its executor");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let err = agent_api
        .send_message(call(message(&m_fw, "m"), Some(&m_token)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");

    assert!(alive(a_pid), "Alice's task was killed");
    assert_eq!(
        master_state(&cluster, &a_fw, "a").await,
        pb::TaskState::TaskRunning
    );
    let heard: Vec<TaskStatus> = alice.events.try_iter().collect();
    assert!(
        heard.iter().all(|s| s.state == TaskState::TaskRunning),
        "{heard:?}"
    );
    for f in [&mallory, &alice] {
        f.handle.stop();
    }
    for f in [mallory, alice] {
        let _ = tokio::time::timeout(Duration::from_secs(5), f.run).await;
    }
}

fn agent_log(path: &Path) {
    if let Ok(text) = std::fs::read_to_string(path) {
        eprintln!("----- agent log -----\n{text}");
    }
}

/// An agent that is not root (here: `nobody`, without cgroups) runs tasks as itself (named
/// by the task, or by its framework), and fails a task naming any other user (or an
/// unknown one) saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_is_not_root_runs_tasks_only_as_itself() {
    use std::os::unix::process::CommandExt;
    let cluster = Cluster::start_with(1, &["--allocation-interval", "100ms"]);
    cluster.wait_leader(1, Duration::from_secs(10)).await;
    // Its work dir is nobody's, under the cluster's directory (which nobody must traverse).
    let base = cluster.dir.path();
    std::fs::set_permissions(base, std::os::unix::fs::PermissionsExt::from_mode(0o711)).unwrap();
    let work = base.join("agent-nobody");
    let nobodys = |path: &Path| std::os::unix::fs::chown(path, Some(65534), Some(65534)).unwrap();
    std::fs::create_dir(&work).unwrap();
    nobodys(&work);
    let _sweep = Sweep::new(&[], &[&work]);
    // Its certificate, key and CA, readable by it.
    let addr = format!("127.0.0.1:{}", free_port());
    let issued = agora_test_cluster::pki::pki().issue(agora_test_cluster::pki::AGENT, "127.0.0.1");
    let tls = base.join("agent-nobody-tls");
    std::fs::create_dir(&tls).unwrap();
    nobodys(&tls);
    for (from, to) in [
        (&issued.cert, "cert.pem"),
        (&issued.key, "key.pem"),
        (&issued.ca, "ca.pem"),
    ] {
        std::fs::copy(from, tls.join(to)).unwrap();
        nobodys(&tls.join(to));
    }
    let log_path = base.join("agent-nobody.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut cmd = Command::new(binary("agora-agent"));
    cmd.args(["--masters", &cluster.addrs().join(","), "--listen", &addr])
        .arg("--work-dir")
        .arg(&work)
        .arg("--tls-cert")
        .arg(tls.join("cert.pem"))
        .arg("--tls-key")
        .arg(tls.join("key.pem"))
        .arg("--tls-ca")
        .arg(tls.join("ca.pem"))
        .args([
            "--resources",
            "cpus:2;mem:512;disk:100",
            "--isolation",
            "none",
        ])
        .args(["--executor-recovery-timeout", "30s"])
        .uid(65534)
        .gid(65534)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    let mut agent = agora_test_cluster::reap::spawn(cmd).unwrap();
    cluster.wait_active_agents(1, Duration::from_secs(20)).await;
    let dump = || {
        agent_log(&log_path);
        cluster.dump_logs();
    };

    let probe = "id -u > uid.txt; echo \"$HOME $USER\" > env.txt";
    let tasks = vec![
        task("own", probe, ""),
        task("named", probe, "nobody"),
        task("other", "touch ran", "root"),
        task("ghost", "touch ran", "no-such-user-agora"),
    ];
    // Its tasks run as nobody unless they say otherwise (the master fills an empty
    // TaskInfo.user with the framework's user).
    let framework = Framework::start(&cluster, "users", "nobody", tasks);
    let mut ended = std::collections::BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while ended.len() < 4 {
        match framework.events.try_recv() {
            Ok(s) if s.state.is_terminal() => {
                ended.insert(s.task_id.clone(), s);
            }
            Ok(_) => {}
            Err(_) => {
                if Instant::now() > deadline {
                    dump();
                    panic!("not every task ended: {ended:?}");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    let fw = framework.id();
    let sandbox = |t: &str| work.join("sandboxes").join(&fw).join(t);
    for t in ["own", "named"] {
        assert_eq!(ended[t].state, TaskState::TaskFinished, "{:?}", ended[t]);
        let uid = std::fs::read_to_string(sandbox(t).join("uid.txt")).unwrap();
        assert_eq!(uid.trim(), "65534", "{t}");
    }
    let env = std::fs::read_to_string(sandbox("named").join("env.txt")).unwrap();
    assert_eq!(
        env.trim(),
        format!("{} nobody", sandbox("named").display()),
        "{env}"
    );
    assert_eq!(ended["other"].state, TaskState::TaskFailed);
    assert!(
        ended["other"].message.contains(r#"as user "root""#)
            && ended["other"].message.contains("not as root"),
        "{:?}",
        ended["other"]
    );
    assert_eq!(ended["ghost"].state, TaskState::TaskFailed);
    assert_eq!(
        ended["ghost"].message,
        r#"unknown user "no-such-user-agora""#
    );
    assert!(!sandbox("other").join("ran").exists());
    assert!(!sandbox("ghost").join("ran").exists());
    // Its own state is private to it.
    assert_eq!(mode(&work), 0o711);
    assert_eq!(mode(&work.join("meta")), 0o700);
    assert_eq!(mode(&work.join("agent_id")), 0o600);
    assert_eq!(
        std::fs::metadata(work.join("agent_id")).unwrap().uid(),
        65534
    );

    framework.handle.stop();
    let _ = tokio::time::timeout(Duration::from_secs(5), framework.run).await;
    let _ = agent.kill();
    let _ = agent.wait();
}
