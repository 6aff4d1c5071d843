//! Nothing outlives its owner, with real processes and real cgroups (run as root): the
//! executors of an agent killed for good (SIGKILL, never restarted) kill their tasks,
//! remove their cgroups and exit within the recovery timeout plus 1 s, whatever they were
//! waiting for; an agent started over stale cgroups removes them, saying each in its log,
//! and keeps those of the tasks it recovers. (An agent back within the timeout gets every
//! update: `tasks.rs`, `a_task_outlives_an_agent_crash_and_its_end_is_reported_once`.)

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agora_agent::checkpoint::{Checkpoints, TaskRecord, Update};
use agora_driver::{Scheduler, SchedulerDriver, SchedulerHandle, TaskState, TaskStatus};
use agora_proto::v1 as pb;
use agora_test_cluster::{binary, example, free_port, AgentNode, Cluster};
use common::{alive, cgroup_dirs, read_pid, unique_root, Sweep};

fn task(id: &str, command: &str, executor: Option<&Path>) -> pb::TaskInfo {
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
        executor: executor.map(|e| pb::ExecutorInfo {
            command: e.display().to_string(),
            ..Default::default()
        }),
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

/// The pids in the cgroup `<root>/<key>`, in any hierarchy.
fn cgroup_pids(root: &str, key: &str) -> Vec<i32> {
    let mut pids: Vec<i32> = cgroup_dirs(root, key)
        .iter()
        .filter_map(|d| std::fs::read_to_string(d.join("cgroup.procs")).ok())
        .flat_map(|t| {
            t.lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executors_of_an_agent_killed_for_good_kill_their_tasks_and_exit_within_the_recovery_timeout(
) {
    let timeout = Duration::from_secs(2);
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
            "--executor-recovery-timeout",
            "2s",
        ],
    );
    let _sweep = Sweep::new(&[&root], &[&agent.work_dir]);
    agent.start();
    cluster.wait_active_agents(1, Duration::from_secs(20)).await;

    // "ends" finishes once the agent is gone, so its executor holds an undelivered
    // TASK_FINISHED; "runs" and "custom" (a framework's own executor) still run at the
    // timeout and must be killed.
    let shell_executor = example("agora-driver", "shell_executor");
    let tasks = vec![
        task("ends", "while [ ! -e go ]; do sleep 0.05; done", None),
        task("runs", "sleep 600", None),
        task("custom", "sleep 600", Some(&shell_executor)),
    ];
    let (tx, rx) = std::sync::mpsc::channel();
    let framework = pb::FrameworkInfo {
        name: "lifetime".into(),
        roles: vec!["*".into()],
        ..Default::default()
    };
    let driver = SchedulerDriver::new(&cluster.addrs().join(","), framework).unwrap();
    let scheduler = driver.handle();
    let framework_run = tokio::spawn(driver.run(Launcher { tasks, events: tx }));
    let mut running = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while running.len() < 3 {
        match rx.try_recv() {
            Ok(s) if s.state == TaskState::TaskRunning => {
                running.insert(s.task_id);
            }
            Ok(s) => assert!(!s.state.is_terminal(), "{s:?}"),
            Err(_) => {
                if Instant::now() > deadline {
                    agent.dump_log();
                    panic!("tasks not running: only {running:?}");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    let fw = scheduler.framework_id().expect("subscribed");
    let work = agent.work_dir.clone();
    let sandbox = |t: &str| work.join("sandboxes").join(&fw).join(t);
    let key = |t: &str| format!("{fw}.{t}");
    let names = ["ends", "runs", "custom"];
    let executors: BTreeMap<&str, i32> = names
        .iter()
        .map(|t| {
            let pid_file = work.join(format!("meta/frameworks/{fw}/tasks/{t}/executor.pid"));
            (*t, read_pid(&pid_file).expect("executor.pid"))
        })
        .collect();
    // The task processes: the built-in executor's shells, and everything in the custom
    // executor's cgroup (the executor itself, its task's shell).
    let runs_task = read_pid(&sandbox("runs").join(".task.pid")).expect(".task.pid");
    let custom_procs = cgroup_pids(&root, &key("custom"));
    assert!(custom_procs.len() >= 2, "{custom_procs:?}");
    for t in names {
        assert!(!cgroup_dirs(&root, &key(t)).is_empty(), "{t} has no cgroup");
    }

    // SIGKILL, never restarted.
    let killed_at = Instant::now();
    agent.kill();
    scheduler.stop();
    framework_run.abort();
    std::fs::write(sandbox("ends").join("go"), "").unwrap();

    let mut exited: BTreeMap<&str, Duration> = BTreeMap::new();
    while exited.len() < executors.len() {
        for (t, pid) in &executors {
            if !exited.contains_key(t) && !alive(*pid) {
                exited.insert(t, killed_at.elapsed());
            }
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(10),
            "executors still alive 10 s after their agent died: {:?}",
            executors
                .iter()
                .filter(|(t, _)| !exited.contains_key(*t))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!("recovery timeout {timeout:?}; executors exited after their agent died: {exited:?}");
    for (t, took) in &exited {
        assert!(*took >= timeout, "{t} gave up before the timeout: {took:?}");
        assert!(
            *took < timeout + Duration::from_secs(1),
            "{t} exited {took:?} after its agent died"
        );
        let log = std::fs::read_to_string(sandbox(t).join("executor.log")).unwrap();
        assert!(log.contains("recovery timeout"), "{t}: {log}");
    }
    // Their tasks are gone too, and so are the tasks' cgroups, in every hierarchy.
    assert!(!alive(runs_task), "the task of `runs` survived");
    for pid in custom_procs {
        assert!(
            !alive(pid),
            "{pid} of the custom executor's cgroup survived"
        );
    }
    for t in names {
        assert!(
            cgroup_dirs(&root, &key(t)).is_empty(),
            "{t}: {:?}",
            cgroup_dirs(&root, &key(t))
        );
    }
}

/// The hierarchies holding the agent's cgroups: cgroups v1 `cpu` and `memory`, as read
/// from /proc/mounts (this host has no v2 with both controllers).
fn agent_hierarchies() -> Vec<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let mut found = Vec::new();
    for controller in ["cpu", "memory"] {
        let mount = mounts.lines().find_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            (f.len() > 3 && f[2] == "cgroup" && f[3].split(',').any(|o| o == controller))
                .then(|| PathBuf::from(f[1]))
        });
        let mount = mount.unwrap_or_else(|| panic!("no cgroups v1 {controller} hierarchy"));
        if !found.contains(&mount) {
            found.push(mount);
        }
    }
    found
}

/// `sleep 600` in its own process group, moved into `cgroups`.
fn sleeper_in(cgroups: &[PathBuf]) -> Child {
    use std::os::unix::process::CommandExt;
    let child = Command::new("sleep")
        .arg("600")
        .process_group(0)
        .spawn()
        .unwrap();
    for cg in cgroups {
        std::fs::write(cg.join("cgroup.procs"), child.id().to_string()).unwrap();
    }
    child
}

fn checkpoint(work: &Path, task: &str, state: TaskState) {
    let checkpoints = Checkpoints::new(work);
    checkpoints
        .save_task(&TaskRecord {
            framework_id: "fw-1".into(),
            task_id: task.into(),
            name: task.into(),
            resources: "cpus:0.1;mem:32".into(),
            command: "sleep 600".into(),
            env: vec![],
            executor_command: None,
            user: String::new(),
            ..Default::default()
        })
        .unwrap();
    checkpoints
        .record_update(&Update {
            uuid: format!("{task}-1"),
            framework_id: "fw-1".into(),
            task_id: task.into(),
            state,
            message: String::new(),
            exit_code: None,
            timestamp_ms: 1,
        })
        .unwrap();
}

#[test]
fn an_agent_started_over_stale_cgroups_removes_them_and_keeps_those_of_live_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let root = unique_root();
    let _sweep = Sweep::new(&[&root], &[dir.path()]);
    let work = dir.path().join("work");
    let hierarchies = agent_hierarchies();
    let under = |path: &str| -> Vec<PathBuf> {
        hierarchies
            .iter()
            .map(|h| h.join(&root).join(path))
            .collect()
    };
    for path in [
        "fw-1.live",
        "fw-1.done",
        "fw-9.unknown",
        "stale-1/nested/deeper",
        "stale-1/other",
    ] {
        for dir in under(path) {
            std::fs::create_dir_all(dir).unwrap();
        }
    }
    // A live task the agent recovers: checkpointed running, its executor (a stand-in)
    // alive in its cgroup. A finished task whose cgroup was left behind, with a process
    // still inside, and a process in a nested stale cgroup.
    checkpoint(&work, "live", TaskState::TaskRunning);
    checkpoint(&work, "done", TaskState::TaskFinished);
    let mut live = sleeper_in(&under("fw-1.live"));
    let live_pid = live.id() as i32;
    std::fs::write(
        work.join("meta/frameworks/fw-1/tasks/live/executor.pid"),
        live.id().to_string(),
    )
    .unwrap();
    let mut leftover = sleeper_in(&under("fw-1.done"));
    let mut nested = sleeper_in(&under("stale-1/nested/deeper"));

    let log_path = dir.path().join("agent.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut agent = Command::new(binary("agora-agent"))
        .args(["--masters", "127.0.0.1:1", "--listen"])
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--work-dir")
        .arg(&work)
        .args(["--resources", "cpus:2;mem:512;disk:100"])
        .args(["--isolation", "cgroups", "--cgroups-root", &root])
        // It never reaches a master: no TLS needed.
        .arg("--insecure")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let stale: Vec<PathBuf> = ["fw-1.done", "fw-9.unknown", "stale-1"]
        .iter()
        .flat_map(|p| under(p))
        .collect();
    let started = Instant::now();
    while stale.iter().any(|p| p.exists()) {
        if started.elapsed() > Duration::from_secs(10) {
            let _ = agent.kill();
            let _ = agent.wait();
            panic!(
                "stale cgroups not removed: {:?}\n{}",
                stale.iter().filter(|p| p.exists()).collect::<Vec<_>>(),
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = started.elapsed();
    // Let it finish its start (and log) before reading the log.
    std::thread::sleep(Duration::from_millis(300));
    let text = std::fs::read_to_string(&log_path).unwrap();
    let _ = agent.kill();
    let _ = agent.wait();
    eprintln!("stale cgroups removed {took:?} after the agent started");
    for path in &stale {
        let said = text
            .lines()
            .any(|l| l.contains("INFO") && l.contains(&format!("path={}", path.display())));
        assert!(said, "removal of {} not logged:\n{text}", path.display());
    }
    // The processes inside were killed; the recovered live task's cgroup and process stay.
    for child in [&mut leftover, &mut nested] {
        let status = child.wait().unwrap();
        assert!(!status.success());
    }
    for cg in under("fw-1.live") {
        assert!(cg.is_dir(), "{} removed", cg.display());
    }
    assert!(alive(live_pid), "the live task's process was killed");
    let _ = live.kill();
    let _ = live.wait();
}
