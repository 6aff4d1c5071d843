//! `agora run` against a real cluster (3 masters, an agent with cgroups): exit codes, the
//! memory limit, and tasks that outlive an agent crash or a leader crash.

mod common;

use std::time::{Duration, Instant};

use agora_test_cluster::*;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_reports_exit_codes_and_the_memory_limit() {
    let (cluster, _agents) = start(1);
    cluster.wait_leader(1, Duration::from_secs(10)).await;
    wait_agents(&cluster, 1).await;

    let (code, out) = run(&cluster, &["run", "--", "true"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("TASK_RUNNING") && out.contains("TASK_FINISHED"),
        "{out}"
    );

    let (code, out) = run(&cluster, &["run", "--", "sh", "-c", "exit 3"]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("TASK_FAILED"), "{out}");

    let (code, out) = run(
        &cluster,
        &[
            "run",
            "--mem",
            "32",
            "--",
            "python3",
            "-c",
            "x = bytearray(256*1024*1024)",
        ],
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("TASK_FAILED") && out.contains("memory limit"),
        "{out}"
    );
    // The agent lives on.
    let (code, out) = run(&cluster, &["run", "--", "true"]);
    assert_eq!(code, 0, "{out}");

    // A task no agent could ever hold: said at once, naming what is short.
    let (code, out) = run(&cluster, &["run", "--cpus", "100", "--", "true"]);
    assert_eq!(code, 2, "{out}");
    assert_eq!(out.trim().lines().count(), 1, "{out}");
    assert!(
        out.contains("no agent can ever hold this task: it asks for cpus 100"),
        "{out}"
    );
    // One that fits, but not while another holds the agent: --timeout gives up.
    let (mut holder, rx) = spawn_run(&cluster, &["run", "--cpus", "2", "--", "sleep", "6"]);
    let mut seen = Vec::new();
    wait_line(&rx, "TASK_RUNNING", &mut seen);
    let started = Instant::now();
    let (code, out) = run(
        &cluster,
        &["run", "--cpus", "1", "--timeout", "2s", "--", "true"],
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("no offer could hold the task within 2s"),
        "{out}"
    );
    assert!(started.elapsed() < Duration::from_secs(10), "{out}");
    assert_eq!(wait_exit(&mut holder, Duration::from_secs(30)), 0);

    // Bad input: exit 2 with one line.
    let (code, out) = run(&cluster, &["run", "--cpus", "-1", "--", "true"]);
    assert_eq!(code, 2, "{out}");
    assert_eq!(out.trim().lines().count(), 1, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_survives_an_agent_crash_and_finishes_once() {
    let (cluster, mut agents) = start(1);
    cluster.wait_leader(1, Duration::from_secs(10)).await;
    wait_agents(&cluster, 1).await;
    let (mut child, rx) = spawn_run(&cluster, &["run", "--", "sh", "-c", "sleep 3; echo done"]);
    let mut seen = Vec::new();
    wait_line(&rx, "TASK_RUNNING", &mut seen);
    // SIGKILL the agent while the task runs, then restart it on the same work dir.
    agents[0].kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    agents[0].start();
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(30)),
        0,
        "{seen:?}"
    );
    while let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
        seen.push(l);
    }
    let finished = seen.iter().filter(|l| l.contains("TASK_FINISHED")).count();
    assert_eq!(finished, 1, "TASK_FINISHED must be reported once: {seen:?}");
    assert!(
        !seen
            .iter()
            .any(|l| l.contains("TASK_KILLED") || l.contains("TASK_LOST")),
        "{seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_finishes_across_a_leader_crash() {
    let (mut cluster, _agents) = start(1);
    let (leader, term, _) = cluster.wait_leader(1, Duration::from_secs(10)).await;
    wait_agents(&cluster, 1).await;
    let (mut child, rx) = spawn_run(&cluster, &["run", "--", "sh", "-c", "sleep 3"]);
    let mut seen = Vec::new();
    wait_line(&rx, "TASK_RUNNING", &mut seen);
    cluster.node(leader).kill();
    cluster.wait_leader(term + 1, Duration::from_secs(10)).await;
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(30)),
        0,
        "{seen:?}"
    );
    // The registry (on the new leader) has the task finished.
    let state = cluster.http_state().unwrap();
    let tasks = state["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 1, "{state}");
    assert_eq!(tasks[0]["state"], "TASK_FINISHED", "{state}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_agent_goes_unreachable_and_reconciles_when_it_returns() {
    let cluster = Cluster::start_with(
        3,
        &[
            "--allocation-interval",
            "100ms",
            "--agent-ping-timeout",
            "300ms",
            "--max-agent-ping-timeouts",
            "3",
        ],
    );
    let mut agent = AgentNode::new(
        &cluster,
        "agent-0",
        &["--resources", "cpus:2;mem:1024;disk:1000"],
    );
    agent.start();
    cluster.wait_leader(1, Duration::from_secs(10)).await;
    wait_agents(&cluster, 1).await;
    let (mut child, rx) = spawn_run(&cluster, &["run", "--", "sh", "-c", "sleep 4"]);
    let mut seen = Vec::new();
    wait_line(&rx, "TASK_RUNNING", &mut seen);
    let pid = agent.pid().unwrap();
    signal(pid, libc::SIGSTOP);
    // Past 3 x 300 ms without a word, its task goes TASK_UNREACHABLE in the registry and
    // the framework hears it.
    wait_line(&rx, "TASK_UNREACHABLE", &mut seen);
    // ... and a FAILURE event names the lost agent (stdout and stderr interleave freely).
    if !seen.iter().any(|l| l.contains(" lost")) {
        wait_line(&rx, " lost", &mut seen);
    }
    let state = cluster.http_state().unwrap();
    assert_eq!(state["agents"][0]["active"], false, "{state}");
    assert_eq!(state["tasks"][0]["state"], "TASK_UNREACHABLE", "{state}");
    signal(pid, libc::SIGCONT);
    // It registers again, reports its task, and the task ends normally.
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(30)),
        0,
        "{seen:?}"
    );
    let state = cluster.http_state().unwrap();
    assert_eq!(state["agents"][0]["active"], true, "{state}");
    assert_eq!(state["tasks"][0]["state"], "TASK_FINISHED", "{state}");
}

/// A framework with its own executor: messages go both ways through the master and the
/// agent, and a shutdown ends the executor's task.
struct Chatty {
    executor: String,
    launched: bool,
    events: std::sync::mpsc::Sender<String>,
}

impl agora_driver::Scheduler for Chatty {
    fn resource_offers(
        &mut self,
        h: &agora_driver::SchedulerHandle,
        offers: Vec<agora_proto::v1::Offer>,
    ) {
        use agora_proto::v1 as pb;
        for o in offers {
            if self.launched {
                h.decline(vec![o.id], None);
                continue;
            }
            self.launched = true;
            let task = pb::TaskInfo {
                user: String::new(),
                task_id: "chatty".into(),
                name: "chatty".into(),
                resources: vec![
                    pb::Resource {
                        name: "cpus".into(),
                        role: String::new(),
                        value: Some(pb::resource::Value::Scalar(0.1)),
                    },
                    pb::Resource {
                        name: "mem".into(),
                        role: String::new(),
                        value: Some(pb::resource::Value::Scalar(32.0)),
                    },
                ],
                command: "sleep 30".into(),
                env: Default::default(),
                executor: Some(pb::ExecutorInfo {
                    command: self.executor.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            };
            h.accept(vec![o.id], vec![task], None);
        }
    }

    fn status_update(
        &mut self,
        h: &agora_driver::SchedulerHandle,
        status: agora_driver::TaskStatus,
    ) {
        use agora_driver::TaskState;
        if status.state == TaskState::TaskRunning {
            h.send_framework_message(&status.agent_id, "chatty", b"ping".to_vec());
        }
        let _ = self.events.send(format!(
            "{} {} {}",
            status.state, status.agent_id, status.message
        ));
        if status.state == TaskState::TaskFailed || status.state == TaskState::TaskKilled {
            h.stop();
        }
    }

    fn framework_message(
        &mut self,
        h: &agora_driver::SchedulerHandle,
        agent_id: &str,
        executor_id: &str,
        data: Vec<u8>,
    ) {
        let _ = self.events.send(format!(
            "MESSAGE {} {executor_id}",
            String::from_utf8_lossy(&data)
        ));
        h.shutdown_executor(agent_id, executor_id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framework_messages_reach_a_custom_executor_and_back() {
    let (cluster, _agents) = start(1);
    cluster.wait_leader(1, Duration::from_secs(10)).await;
    wait_agents(&cluster, 1).await;
    let executor = example("agora-driver", "shell_executor")
        .display()
        .to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    let framework = agora_proto::v1::FrameworkInfo {
        name: "chatty".into(),
        roles: vec!["*".into()],
        ..Default::default()
    };
    let driver = agora_driver::SchedulerDriver::new(&cluster.addrs().join(","), framework).unwrap();
    tokio::time::timeout(
        Duration::from_secs(30),
        driver.run(Chatty {
            executor,
            launched: false,
            events: tx,
        }),
    )
    .await
    .expect("the framework finished")
    .unwrap();
    let events: Vec<String> = rx.try_iter().collect();
    assert!(
        events.iter().any(|e| e.starts_with("TASK_RUNNING")),
        "{events:?}"
    );
    assert!(
        events.iter().any(|e| e == "MESSAGE echo:ping chatty"),
        "{events:?}"
    );
    assert!(
        events.last().unwrap().starts_with("TASK_FAILED"),
        "shutdown ends the task: {events:?}"
    );
}
