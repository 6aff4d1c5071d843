//! Mesos' task and executor model on a real master and real agent processes (real
//! cgroups): command tasks see Mesos' environment and get their `uris` fetched (from a
//! file and from an HTTP server in the test; a failed fetch fails the task naming the URI;
//! archives with `extract` are refused); a framework's own executor speaking Mesos' v1
//! executor HTTP API (`agent/tests/data/mesos_executor.py`, Python's standard library
//! only: no Mesos library, not our driver) gets Mesos' executor environment, subscribes,
//! is launched, reports, sees ACKNOWLEDGED and KILL, and reconnects after an agent restart;
//! a process outside its cgroup cannot report for its task; bad calls get Mesos' codes.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use agora_driver::{Scheduler, SchedulerDriver, SchedulerHandle, TaskState, TaskStatus};
use agora_mesos_proto::v1 as mesos;
use agora_proto::v1 as pb;
use agora_test_cluster::{AgentNode, Cluster};
use common::{unique_root, Sweep};
use prost::Message;

fn resources() -> Vec<pb::Resource> {
    let scalar = |name: &str, x: f64| pb::Resource {
        name: name.into(),
        role: String::new(),
        value: Some(pb::resource::Value::Scalar(x)),
    };
    vec![scalar("cpus", 0.1), scalar("mem", 64.0)]
}

fn command_task(id: &str, command: &str, uris: Vec<pb::FetchUri>) -> pb::TaskInfo {
    pb::TaskInfo {
        task_id: id.into(),
        name: id.into(),
        resources: resources(),
        command: command.into(),
        env: [("FOO".to_string(), "bar baz".to_string())].into(),
        uris,
        ..Default::default()
    }
}

/// A task run by a framework's own Mesos executor (the test's Python script), with
/// `data` in its Mesos TaskInfo.
fn executor_task(
    id: &str,
    executor_id: &str,
    data: &str,
    extra_env: &[(&str, &str)],
) -> pb::TaskInfo {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/mesos_executor.py");
    let mesos_task = mesos::TaskInfo {
        name: id.into(),
        task_id: mesos::TaskId { value: id.into() },
        agent_id: mesos::AgentId {
            value: "set-by-the-agent".into(),
        },
        data: Some(data.as_bytes().to_vec()),
        ..Default::default()
    };
    pb::TaskInfo {
        task_id: id.into(),
        name: id.into(),
        resources: resources(),
        command: format!("# run by executor {executor_id}"),
        executor: Some(pb::ExecutorInfo {
            command: format!("exec python3 {}", script.display()),
            executor_id: executor_id.into(),
            env: extra_env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            mesos_executor_info: Vec::new(),
            resources: Vec::new(),
        }),
        mesos_task_info: mesos_task.encode_to_vec(),
        ..Default::default()
    }
}

fn uri(value: &str, executable: bool, extract: bool) -> pb::FetchUri {
    pb::FetchUri {
        value: value.into(),
        executable,
        extract,
        output_file: String::new(),
    }
}

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

struct Setup {
    cluster: Cluster,
    agent: AgentNode,
    root: String,
}

async fn setup() -> Setup {
    let cluster = Cluster::start_with(1, &["--allocation-interval", "100ms"]);
    cluster.wait_leader(1, Duration::from_secs(10)).await;
    let root = unique_root();
    let mut agent = AgentNode::new(
        &cluster,
        "agent-1",
        &[
            "--resources",
            "cpus:2;mem:1024;disk:100",
            "--isolation",
            "cgroups",
            "--cgroups-root",
            &root,
        ],
    );
    agent.start();
    cluster.wait_active_agents(1, Duration::from_secs(20)).await;
    Setup {
        cluster,
        agent,
        root,
    }
}

struct Framework {
    handle: SchedulerHandle,
    events: std::sync::mpsc::Receiver<TaskStatus>,
    seen: Vec<TaskStatus>,
}

impl Framework {
    fn start(cluster: &Cluster, tasks: Vec<pb::TaskInfo>) -> Framework {
        let (tx, events) = std::sync::mpsc::channel();
        let info = pb::FrameworkInfo {
            name: "mesos-shape".into(),
            roles: vec!["*".into()],
            ..Default::default()
        };
        let driver = SchedulerDriver::new(&cluster.addrs().join(","), info).unwrap();
        let handle = driver.handle();
        tokio::spawn(driver.run(Launcher { tasks, events: tx }));
        Framework {
            handle,
            events,
            seen: Vec::new(),
        }
    }

    fn id(&self) -> String {
        self.handle.framework_id().expect("subscribed")
    }

    /// Waits for `task` to reach `state`.
    async fn wait_for(&mut self, task: &str, state: TaskState, dump: &dyn Fn()) -> TaskStatus {
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            if let Some(s) = self
                .seen
                .iter()
                .find(|s| s.task_id == task && s.state == state)
            {
                return s.clone();
            }
            match self.events.try_recv() {
                Ok(s) => self.seen.push(s),
                Err(_) => {
                    if Instant::now() > deadline {
                        dump();
                        panic!("{task} not {state:?} within 40 s; seen {:?}", self.seen);
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }

    fn drain(&mut self) {
        while let Ok(s) = self.events.try_recv() {
            self.seen.push(s);
        }
    }
}

/// A tiny HTTP server: `/files/page.txt` is 200, everything else 404.
fn http_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut first = String::new();
            let _ = reader.read_line(&mut first);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
            }
            let body = "hello over http\n";
            let answer = if first.starts_with("GET /files/page.txt ") {
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else {
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into()
            };
            let _ = conn.write_all(answer.as_bytes());
        }
    });
    port
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Waits until `path` holds `needle`.
fn wait_file(path: &Path, needle: &str, dump: &dyn Fn()) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = read(path);
        if text.contains(needle) {
            return text;
        }
        if Instant::now() > deadline {
            dump();
            panic!("{} never held {needle:?}:\n{text}", path.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One HTTP/1.1 POST to `/api/v1/executor` from this process (outside every executor's
/// cgroup): the status code and body.
fn post(
    endpoint: &str,
    content_type: &str,
    accept: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String) {
    post_bytes(endpoint, content_type, accept, token, body.as_bytes())
}

fn post_bytes(
    endpoint: &str,
    content_type: &str,
    accept: &str,
    token: Option<&str>,
    body: &[u8],
) -> (u16, String) {
    let mut s = TcpStream::connect(endpoint).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "POST /api/v1/executor HTTP/1.1\r\nHost: {endpoint}\r\nContent-Type: {content_type}\r\nAccept: {accept}\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).to_string();
    let code = answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (code, body.to_string())
}

fn env_value(env: &str, name: &str) -> Option<String> {
    env.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}=")).map(str::to_string))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_tasks_see_mesos_environment_and_get_their_uris_fetched() {
    let Setup {
        cluster,
        agent,
        root,
    } = setup().await;
    let _sweep = Sweep::new(&[&root], &[&agent.work_dir]);
    let dump = || {
        agent.dump_log();
        cluster.dump_logs();
    };
    let files = tempfile::tempdir().unwrap();
    let tool = files.path().join("tool.sh");
    std::fs::write(&tool, "#!/bin/sh\necho tool ran with \"$1\"\n").unwrap();
    // Read as the task's user: nobody may read `public`, not `secret` (both root's).
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(files.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let public = files.path().join("public.txt");
    std::fs::write(&public, "for everyone\n").unwrap();
    std::fs::set_permissions(&public, std::fs::Permissions::from_mode(0o644)).unwrap();
    let secret = files.path().join("secret.txt");
    std::fs::write(&secret, "root only\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let as_nobody = |id: &str, file: &Path| pb::TaskInfo {
        user: "nobody".into(),
        ..command_task(
            id,
            "cat *.txt > seen",
            vec![uri(&format!("file://{}", file.display()), false, false)],
        )
    };
    let archive = files.path().join("bundle.tar.gz");
    std::fs::write(&archive, "not really").unwrap();
    let port = http_server();
    let page = format!("http://127.0.0.1:{port}/files/page.txt");
    let missing = format!("http://127.0.0.1:{port}/missing.txt");
    let tasks = vec![
        command_task(
            "env",
            // argv as the master builds it from a Mesos CommandInfo with shell=false.
            "env > env.txt; exec './tool.sh' 'it'\\''s' > tool.out",
            vec![
                uri(&format!("file://{}", tool.display()), true, true),
                uri(&page, false, true),
            ],
        ),
        command_task("missing", "true", vec![uri(&missing, false, false)]),
        as_nobody("public", &public),
        as_nobody("secret", &secret),
        command_task(
            "archive",
            "true",
            vec![uri(archive.to_str().unwrap(), false, true)],
        ),
    ];
    let mut framework = Framework::start(&cluster, tasks);
    framework
        .wait_for("env", TaskState::TaskFinished, &dump)
        .await;
    let failed = framework
        .wait_for("missing", TaskState::TaskFailed, &dump)
        .await;
    assert!(
        failed.message.contains(&missing) && failed.message.contains("404"),
        "{failed:?}"
    );
    let refused = framework
        .wait_for("archive", TaskState::TaskFailed, &dump)
        .await;
    assert!(
        refused.message.contains(archive.to_str().unwrap())
            && refused.message.contains("does not extract archives"),
        "{refused:?}"
    );
    framework
        .wait_for("public", TaskState::TaskFinished, &dump)
        .await;
    let denied = framework
        .wait_for("secret", TaskState::TaskFailed, &dump)
        .await;
    assert!(
        denied.message.contains(secret.to_str().unwrap())
            && denied.message.contains("Permission denied"),
        "{denied:?}"
    );
    // None of them ever ran.
    framework.drain();
    for t in ["missing", "archive", "secret"] {
        assert!(
            !framework
                .seen
                .iter()
                .any(|s| s.task_id == t && s.state == TaskState::TaskRunning),
            "{t} ran: {:?}",
            framework.seen
        );
    }

    let fw = framework.id();
    let agent_id = agent.agent_id().unwrap();
    let sandbox = agent.work_dir.join("sandboxes").join(&fw).join("env");
    let env = read(&sandbox.join("env.txt"));
    let sandbox_text = sandbox.display().to_string();
    for (name, value) in [
        ("MESOS_SANDBOX", sandbox_text.as_str()),
        ("MESOS_DIRECTORY", sandbox_text.as_str()),
        ("MESOS_TASK_ID", "env"),
        ("MESOS_EXECUTOR_ID", "env"),
        ("MESOS_FRAMEWORK_ID", fw.as_str()),
        ("MESOS_AGENT_ID", agent_id.as_str()),
        ("MESOS_SLAVE_ID", agent_id.as_str()),
        ("MESOS_CHECKPOINT", "1"),
        ("FOO", "bar baz"),
    ] {
        assert_eq!(
            env_value(&env, name).as_deref(),
            Some(value),
            "{name} in\n{env}"
        );
    }
    // The built-in executor's token never reaches the task.
    assert!(!env.contains("TOKEN"), "{env}");
    assert_eq!(read(&sandbox.join("tool.out")), "tool ran with it's\n");
    assert_eq!(read(&sandbox.join("page.txt")), "hello over http\n");
    let mode = std::fs::metadata(sandbox.join("tool.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
    let public_sandbox = agent.work_dir.join("sandboxes").join(&fw).join("public");
    assert_eq!(read(&public_sandbox.join("seen")), "for everyone\n");
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(public_sandbox.join("public.txt"))
        .unwrap()
        .uid();
    assert_eq!(owner, 65534, "fetched as the task's user");
    framework.handle.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesos_executors_subscribe_report_are_acknowledged_killed_and_reconnect_after_a_restart() {
    let Setup {
        cluster,
        mut agent,
        root,
    } = setup().await;
    let _sweep = Sweep::new(&[&root], &[&agent.work_dir]);
    let work = agent.work_dir.clone();
    let log_path = work.parent().unwrap().join("agent-1.log");
    let dump = move || {
        eprintln!("----- agent log -----\n{}", read(&log_path));
    };
    // The executor's own files are fetched before it starts; one it cannot fetch fails
    // its task, naming the URI, and it never starts.
    let files = tempfile::tempdir().unwrap();
    let payload = files.path().join("payload.txt");
    std::fs::write(&payload, "for the executor\n").unwrap();
    let mut done = executor_task("done", "ex-done", "finish", &[("EXTRA", "1")]);
    done.uris = vec![uri(&format!("file://{}", payload.display()), false, true)];
    let mut unfetched = executor_task("unfetched", "ex-unfetched", "finish", &[]);
    unfetched.uris = vec![uri("/nonexistent/agora/payload", false, false)];
    let tasks = vec![
        done,
        unfetched,
        executor_task("held", "ex-held", "wait-kill", &[]),
        executor_task(
            "tokened",
            "ex-tokened",
            "finish",
            &[("MESOS_TEST_USE_TOKEN", "1")],
        ),
    ];
    let mut framework = Framework::start(&cluster, tasks);
    framework
        .wait_for("done", TaskState::TaskFinished, &dump)
        .await;
    framework
        .wait_for("tokened", TaskState::TaskFinished, &dump)
        .await;
    framework
        .wait_for("held", TaskState::TaskRunning, &dump)
        .await;
    let failed = framework
        .wait_for("unfetched", TaskState::TaskFailed, &dump)
        .await;
    assert!(
        failed.message.contains("/nonexistent/agora/payload"),
        "{failed:?}"
    );
    let fw = framework.id();
    let agent_id = agent.agent_id().unwrap();
    let sandbox = |t: &str| -> PathBuf { work.join("sandboxes").join(&fw).join(t) };

    // The whole exchange, as the executor saw it.
    let events = wait_file(&sandbox("done").join("events.log"), "EXIT", &dump);
    for line in [
        "SUBSCRIBE 200 stream=".to_string(),
        format!("SUBSCRIBED executor=ex-done framework={fw} agent={agent_id} container="),
        format!("LAUNCH done data=finish agent={agent_id}"),
        "UPDATE TASK_RUNNING 202".into(),
        "UPDATE TASK_FINISHED 202".into(),
        "ACKNOWLEDGED done TASK_RUNNING".into(),
        "ACKNOWLEDGED done TASK_FINISHED".into(),
    ] {
        assert!(events.contains(&line), "{line:?} missing from\n{events}");
    }
    assert!(events.contains("chunked=chunked"), "{events}");
    wait_file(&sandbox("tokened").join("events.log"), "EXIT", &dump);
    assert_eq!(
        read(&sandbox("done").join("payload.txt")),
        "for the executor\n"
    );
    assert!(!sandbox("unfetched").join("events.log").exists());

    // Mesos' executor environment.
    let env = read(&sandbox("done").join("executor_env.txt"));
    let endpoint = env_value(&env, "MESOS_AGENT_ENDPOINT").unwrap();
    assert!(endpoint.starts_with("127.0.0.1:"), "{endpoint}");
    let port_file = work.join("meta/executor_http_port");
    assert_eq!(read(&port_file), endpoint.trim_start_matches("127.0.0.1:"));
    let sandbox_text = sandbox("done").display().to_string();
    for (name, value) in [
        ("MESOS_FRAMEWORK_ID", fw.as_str()),
        ("MESOS_EXECUTOR_ID", "ex-done"),
        ("MESOS_DIRECTORY", sandbox_text.as_str()),
        ("MESOS_SANDBOX", sandbox_text.as_str()),
        ("MESOS_CHECKPOINT", "1"),
        ("MESOS_HTTP_COMMAND_EXECUTOR", "0"),
        ("MESOS_SUBSCRIPTION_BACKOFF_MAX", "2secs"),
        ("MESOS_RECOVERY_TIMEOUT", "30secs"),
        ("EXTRA", "1"),
    ] {
        assert_eq!(
            env_value(&env, name).as_deref(),
            Some(value),
            "{name} in\n{env}"
        );
    }
    assert!(env_value(&env, "MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD").is_some());
    let held_env = read(&sandbox("held").join("executor_env.txt"));
    let held_token = env_value(&held_env, "MESOS_EXECUTOR_AUTHENTICATION_TOKEN").unwrap();
    assert_eq!(held_token.len(), 64);

    // Forged updates: from this process (outside the executor's cgroup), without a
    // token, with an unknown one, or with the held executor's token naming another.
    let forged = |executor: &str| {
        format!(
            r#"{{"type":"UPDATE","framework_id":{{"value":"{fw}"}},"executor_id":{{"value":"{executor}"}},
            "update":{{"status":{{"task_id":{{"value":"held"}},"state":"TASK_FINISHED",
            "uuid":"AAAAAAAAAAAAAAAAAAAAAA=="}}}}}}"#
        )
    };
    let json = "application/json";
    let (code, _) = post(&endpoint, json, json, None, &forged("ex-held"));
    assert_eq!(code, 401);
    let (code, _) = post(
        &endpoint,
        json,
        json,
        Some(&"0".repeat(64)),
        &forged("ex-held"),
    );
    assert_eq!(code, 401);
    let (code, body) = post(&endpoint, json, json, Some(&held_token), &forged("ex-done"));
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("executor_id"), "{body}");
    // Mesos' other refusals.
    let (code, _) = post(&endpoint, "text/plain", json, Some(&held_token), "{}");
    assert_eq!(code, 415);
    let (code, _) = post(&endpoint, json, "text/html", Some(&held_token), "{}");
    assert_eq!(code, 406);
    let (code, body) = post(
        &endpoint,
        json,
        json,
        Some(&held_token),
        r#"{"type":"UPDATE","framework_id":{"value":5},"executor_id":{"value":"ex-held"}}"#,
    );
    assert_eq!(code, 400);
    assert!(body.contains("framework_id"), "{body}");
    let (code, body) = post(
        &endpoint,
        json,
        json,
        Some(&held_token),
        &format!(
            r#"{{"type":"UPDATE","framework_id":{{"value":"{fw}"}},"executor_id":{{"value":"ex-held"}}}}"#
        ),
    );
    assert_eq!(code, 400);
    assert!(body.contains("update"), "{body}");
    // Protobuf bodies too: a HEARTBEAT is accepted, an UPDATE whose uuid is not a UUID's
    // 16 bytes is refused naming the field.
    let proto_call = |kind: mesos::executor::call::Type, update: Option<mesos::TaskStatus>| {
        mesos::executor::Call {
            executor_id: mesos::ExecutorId {
                value: "ex-held".into(),
            },
            framework_id: mesos::FrameworkId { value: fw.clone() },
            r#type: Some(kind as i32),
            update: update.map(|status| mesos::executor::call::Update { status }),
            ..Default::default()
        }
        .encode_to_vec()
    };
    let protobuf = "application/x-protobuf";
    let (code, body) = post_bytes(
        &endpoint,
        protobuf,
        protobuf,
        Some(&held_token),
        &proto_call(mesos::executor::call::Type::Heartbeat, None),
    );
    assert_eq!(code, 202, "{body}");
    let bad_uuid = mesos::TaskStatus {
        task_id: mesos::TaskId {
            value: "held".into(),
        },
        state: mesos::TaskState::TaskFinished as i32,
        uuid: Some(vec![1, 2, 3]),
        ..Default::default()
    };
    let (code, body) = post_bytes(
        &endpoint,
        protobuf,
        protobuf,
        Some(&held_token),
        &proto_call(mesos::executor::call::Type::Update, Some(bad_uuid)),
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("update.status.uuid"), "{body}");
    let (code, _) = post_bytes(
        &endpoint,
        protobuf,
        protobuf,
        Some(&held_token),
        b"\xff\xff\xff",
    );
    assert_eq!(code, 400);
    // The task runs on, at the master too.
    tokio::time::sleep(Duration::from_secs(1)).await;
    framework.drain();
    assert!(
        !framework
            .seen
            .iter()
            .any(|s| s.task_id == "held" && s.state.is_terminal()),
        "{:?}",
        framework.seen
    );
    let state = agora_test_cluster::state(&cluster.client()).await;
    let held = state.tasks.iter().find(|t| t.id == "held").unwrap();
    assert_eq!(held.state(), pb::TaskState::TaskRunning);

    // An agent restart: the executor's stream ends; it subscribes again on the same port
    // (checkpointed) and still gets its KILL.
    agent.kill();
    wait_file(&sandbox("held").join("events.log"), "STREAM ENDED", &dump);
    agent.start();
    cluster.wait_active_agents(1, Duration::from_secs(20)).await;
    assert_eq!(read(&port_file), endpoint.trim_start_matches("127.0.0.1:"));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = read(&sandbox("held").join("events.log"));
        if text.matches("SUBSCRIBE 200").count() >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "never subscribed again:\n{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    framework.handle.kill("held", None).await.unwrap().unwrap();
    let killed = framework
        .wait_for("held", TaskState::TaskKilled, &dump)
        .await;
    assert_eq!(killed.message, "killed by the framework");
    let events = wait_file(&sandbox("held").join("events.log"), "EXIT", &dump);
    assert!(events.contains("KILL held"), "{events}");
    // Launched once only: the re-subscription named it.
    assert_eq!(events.matches("LAUNCH held").count(), 1, "{events}");
    framework.handle.stop();
}
