//! Finished sandboxes are collected, with a real master, a real agent process, its
//! executors and their tasks: a finished task's sandbox goes `--gc-delay` after it
//! finished (or sooner under disk pressure) while a running task's stays, and an agent
//! restarted over finished sandboxes schedules them again, from their checkpointed finish
//! time, or from their directory's modification time when there is none. (That nothing is
//! scheduled before every update of a task is acknowledged is in `tasks.rs`, where the test
//! plays the leader and can hold an acknowledgement back.)

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use agora_driver::{Scheduler, SchedulerDriver, SchedulerHandle, TaskState, TaskStatus};
use agora_proto::v1 as pb;
use agora_test_cluster::{AgentNode, Cluster};

/// The tests here run one at a time: each has a cluster, and the machine two cores.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn task(id: &str, command: &str) -> pb::TaskInfo {
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
        user: String::new(),
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

/// A one-master cluster and an agent with `args`, registered and active.
async fn cluster_with_agent(args: &[&str]) -> (Cluster, AgentNode) {
    let cluster = Cluster::start_with(1, &["--allocation-interval", "100ms"]);
    cluster.wait_leader(1, Duration::from_secs(10)).await;
    let mut all = vec!["--resources", "cpus:2;mem:512;disk:100"];
    all.extend_from_slice(args);
    let mut agent = AgentNode::new(&cluster, "agent-1", &all);
    agent.start();
    cluster.wait_active_agents(1, Duration::from_secs(20)).await;
    (cluster, agent)
}

/// A framework's driver, running until dropped (its tasks run as long).
struct Framework {
    id: String,
    scheduler: SchedulerHandle,
    run: tokio::task::JoinHandle<Result<(), agora_driver::DriverError>>,
}

impl Drop for Framework {
    fn drop(&mut self) {
        self.scheduler.stop();
        self.run.abort();
    }
}

/// Runs `tasks` for a new framework until each has reached the state `want` names for it.
async fn run_until(
    cluster: &Cluster,
    agent: &AgentNode,
    tasks: Vec<pb::TaskInfo>,
    want: &[(&str, TaskState)],
) -> Framework {
    let (tx, rx) = std::sync::mpsc::channel();
    let framework = pb::FrameworkInfo {
        name: "gc".into(),
        roles: vec!["*".into()],
        ..Default::default()
    };
    let driver = SchedulerDriver::new(&cluster.addrs().join(","), framework).unwrap();
    let scheduler = driver.handle();
    let run = tokio::spawn(driver.run(Launcher { tasks, events: tx }));
    let mut reached = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while reached.len() < want.len() {
        match rx.try_recv() {
            Ok(s) => {
                if want.contains(&(s.task_id.as_str(), s.state)) {
                    reached.insert(s.task_id);
                } else {
                    assert!(!s.state.is_terminal(), "{s:?}");
                }
            }
            Err(_) => {
                if Instant::now() > deadline {
                    agent.dump_log();
                    panic!("not reached: {want:?}; only {reached:?}");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    Framework {
        id: scheduler.framework_id().expect("subscribed"),
        scheduler,
        run,
    }
}

/// Waits up to `within` for `path` to be gone; returns how long it took.
async fn wait_gone(agent: &AgentNode, path: &Path, within: Duration) -> Duration {
    let start = Instant::now();
    while path.exists() {
        if start.elapsed() > within {
            agent.dump_log();
            panic!("{} still there after {within:?}", path.display());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

/// Waits up to `within` for `path` to exist.
async fn wait_exists(agent: &AgentNode, path: &Path, within: Duration) {
    let start = Instant::now();
    while !path.exists() {
        if start.elapsed() > within {
            agent.dump_log();
            panic!("{} not there after {within:?}", path.display());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The agent's log lines saying `what` about the sandbox at `path`.
fn logged(agent: &AgentNode, what: &str, path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(&agent.log).unwrap_or_default();
    let needle = format!("path={}", path.display());
    text.lines()
        .filter(|l| l.contains(what) && l.contains(&needle))
        .map(str::to_string)
        .collect()
}

/// The agent's line saying it removed the finished sandbox at `path`: the line is written
/// just after the directory goes, so it waits up to 5 s for it. Panics unless exactly one.
async fn logged_removal(agent: &AgentNode, path: &Path) -> String {
    let start = Instant::now();
    loop {
        let said = logged(agent, "removed a finished sandbox", path);
        if said.len() > 1 || (said.len() == 1 && start.elapsed() > Duration::from_millis(300)) {
            assert_eq!(said.len(), 1, "{said:?}");
            return said.into_iter().next().unwrap();
        }
        if start.elapsed() > Duration::from_secs(5) {
            agent.dump_log();
            panic!("no removal of {} logged within 5 s", path.display());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn sandbox(agent: &AgentNode, fw: &str, task: &str) -> PathBuf {
    agent.work_dir.join("sandboxes").join(fw).join(task)
}

fn checkpoint(agent: &AgentNode, fw: &str, task: &str) -> PathBuf {
    agent
        .work_dir
        .join("meta/frameworks")
        .join(fw)
        .join("tasks")
        .join(task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_tasks_sandbox_is_removed_within_seconds_and_a_running_tasks_stays() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (cluster, agent) =
        cluster_with_agent(&["--gc-delay", "1secs", "--disk-watch-interval", "500ms"]).await;
    let framework = run_until(
        &cluster,
        &agent,
        vec![
            task("short", "echo done > out"),
            task("long", "echo started > out; sleep 600"),
        ],
        &[
            ("short", TaskState::TaskFinished),
            ("long", TaskState::TaskRunning),
        ],
    )
    .await;
    let fw = framework.id.clone();
    let short = sandbox(&agent, &fw, "short");
    let long = sandbox(&agent, &fw, "long");
    let took = wait_gone(&agent, &short, Duration::from_secs(10)).await;
    eprintln!("the finished task's sandbox was removed {took:?} after TASK_FINISHED");
    assert!(took < Duration::from_secs(5), "{took:?}");
    let said = logged_removal(&agent, &short).await;
    // By the delay, or earlier by the disk check (at 500 ms intervals, with a 1 s delay,
    // anything older than 1 s * (0.9 - usage) goes).
    eprintln!("{said}");
    assert!(
        said.contains("INFO") && said.contains("task=short") && said.contains("bytes="),
        "{said}"
    );
    // Its checkpoint stays (a re-delivered launch of it must not run it again).
    assert!(checkpoint(&agent, &fw, "short").join("task.json").is_file());
    // The running task's sandbox stays, well past the delay and several disk checks.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        std::fs::read_to_string(long.join("out")).unwrap(),
        "started\n"
    );
    assert!(logged(&agent, "removed", &long).is_empty());
    drop(framework);
    drop(agent);
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_restarted_over_finished_sandboxes_schedules_them_again() {
    let _one = ONE_AT_A_TIME.lock().await;
    // An hour's delay, no headroom: nothing goes while the test watches (unless the disk
    // is full).
    let (cluster, mut agent) = cluster_with_agent(&[
        "--gc-delay",
        "1h",
        "--gc-disk-headroom",
        "0",
        "--disk-watch-interval",
        "200ms",
    ])
    .await;
    let framework = run_until(
        &cluster,
        &agent,
        vec![task("a", "echo a > out"), task("b", "echo b > out")],
        &[
            ("a", TaskState::TaskFinished),
            ("b", TaskState::TaskFinished),
        ],
    )
    .await;
    let fw = framework.id.clone();
    let (a, b) = (sandbox(&agent, &fw, "a"), sandbox(&agent, &fw, "b"));
    // Scheduled once finished: when is checkpointed.
    for t in ["a", "b"] {
        wait_exists(
            &agent,
            &checkpoint(&agent, &fw, t).join("sandbox.finished"),
            Duration::from_secs(10),
        )
        .await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(a.join("out").is_file() && b.join("out").is_file());

    // Restarted with b as if it had finished two hours ago without its finish time
    // checkpointed: its directory's modification time stands in, and it is past due.
    agent.kill();
    std::fs::remove_file(checkpoint(&agent, &fw, "b").join("sandbox.finished")).unwrap();
    std::fs::File::open(&b)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(2 * 3600))
        .unwrap();
    agent.start();
    let took = wait_gone(&agent, &b, Duration::from_secs(10)).await;
    eprintln!("a sandbox past due was removed {took:?} after the agent restarted");
    logged_removal(&agent, &b).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(a.join("out").is_file(), "a went before its time");

    // Restarted with all the disk as headroom: every finished sandbox goes at the first
    // disk check, whatever its age.
    agent.kill();
    agent.args.extend(["--gc-disk-headroom".into(), "1".into()]);
    agent.start();
    let took = wait_gone(&agent, &a, Duration::from_secs(10)).await;
    eprintln!("a sandbox under disk pressure was removed {took:?} after the agent restarted");
    let said = logged_removal(&agent, &a).await;
    assert!(said.contains("disk pressure"), "{said}");
    drop(framework);
    drop(agent);
    drop(cluster);
}
