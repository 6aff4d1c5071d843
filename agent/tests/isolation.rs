//! Real processes in real cgroups (run as root on a host with cgroups): detection, limit
//! files, task outcomes (exit codes, output, environment, OOM kills, kills with a grace
//! period) and cleanup. Every test uses its own parent cgroup name and removes it, even when
//! an assertion fails (a guard tears everything down on drop).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use agora_agent::isolation::{Isolation, IsolationError, IsolationMode, Limits};
use agora_agent::supervisor::{self, RunningTask, TaskOutcome, TaskSpec};

const MIB: u64 = 1024 * 1024;

/// A parent cgroup name no other test (or test run) uses.
fn unique_root(test: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "agora-test-{test}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The detected isolation, torn down on drop: every task cgroup under it is destroyed
/// (killing what is inside), then the parent itself is removed.
struct Root(Isolation);

impl Root {
    fn cgroups(test: &str) -> Root {
        let iso = Isolation::detect(IsolationMode::Cgroups, &unique_root(test))
            .expect("this host must offer cgroups (run as root)");
        Root(iso)
    }
    fn none(test: &str) -> Root {
        Root(Isolation::detect(IsolationMode::None, &unique_root(test)).unwrap())
    }
}

impl std::ops::Deref for Root {
    type Target = Isolation;
    fn deref(&self) -> &Isolation {
        &self.0
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        for key in self.0.task_keys() {
            if let Some(cgroup) = self.0.recover(&key) {
                let _ = cgroup.destroy();
            }
        }
        let _ = self.0.remove_root();
        if !std::thread::panicking() {
            for parent in self.0.parent_paths() {
                assert!(!parent.exists(), "{} left behind", parent.display());
            }
        }
    }
}

/// What the host offers, read independently of the code under test (from /proc/mounts).
fn expected_kind() -> &'static str {
    let mounts = fs::read_to_string("/proc/mounts").unwrap();
    let mut v1_cpu = false;
    let mut v1_memory = false;
    for line in mounts.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            [_, dir, "cgroup2", ..] => {
                let controllers =
                    fs::read_to_string(Path::new(dir).join("cgroup.controllers")).unwrap();
                let words: Vec<&str> = controllers.split_whitespace().collect();
                if words.contains(&"cpu") && words.contains(&"memory") {
                    return "cgroups-v2";
                }
            }
            [_, _, "cgroup", options, ..] => {
                v1_cpu |= options.split(',').any(|o| o == "cpu");
                v1_memory |= options.split(',').any(|o| o == "memory");
            }
            _ => {}
        }
    }
    if v1_cpu && v1_memory {
        "cgroups-v1"
    } else {
        "none"
    }
}

fn read(path: impl AsRef<Path>) -> String {
    let path = path.as_ref();
    fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .trim()
        .to_owned()
}

fn spec(sandbox: &Path, command: &str) -> TaskSpec {
    TaskSpec {
        command: command.to_owned(),
        env: Vec::new(),
        sandbox: sandbox.to_path_buf(),
        limits: Limits {
            cpus: 0.5,
            mem_bytes: 64 * MIB,
            pids_max: None,
        },
        user: None,
        container: None,
        enforce: Default::default(),
        output: Default::default(),
    }
}

/// Whether `pid` is still a live (non-zombie) process. Orphans of killed tasks are
/// reparented to this machine's init, which may never reap them: a zombie is dead.
fn alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit_once(") ")
                .and_then(|(_, rest)| rest.chars().next());
            !matches!(state, Some('Z') | Some('X') | None)
        }
        Err(_) => false,
    }
}

/// A SIGKILL is delivered asynchronously: `pid` must be gone within 2 s.
fn assert_dies(pid: i32, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while alive(pid) {
        assert!(Instant::now() < deadline, "{what} survived");
        std::thread::sleep(Duration::from_millis(10));
    }
}

async fn run(root: &Isolation, key: &str, spec: &TaskSpec) -> TaskOutcome {
    let task = supervisor::start(spec, root, key).await.expect("start");
    wait_within(task, Duration::from_secs(20)).await
}

async fn wait_within(task: RunningTask, limit: Duration) -> TaskOutcome {
    tokio::time::timeout(limit, task.wait())
        .await
        .expect("task did not end in time")
}

fn assert_gone(paths: &[PathBuf]) {
    for path in paths {
        assert!(!path.exists(), "{} still exists", path.display());
    }
}

/// Moves into cgroups are made cheap host-wide: a cgroup mount with `favordynmods` exists
/// afterwards (the agent's own, or one the host had), and asking again finds it.
#[test]
fn favordynmods_is_turned_on_once_and_found_after() {
    use agora_agent::isolation::FavorDynmods;
    let root = Root::cgroups("favor");
    let first = root
        .favor_dynamic_moves()
        .expect("Linux 6.0 or later takes favordynmods")
        .expect("cgroups isolation");
    let mount = match &first {
        FavorDynmods::TurnedOn(at) | FavorDynmods::AlreadyOn(at) => at.clone(),
    };
    let mounts = read("/proc/self/mounts");
    assert!(
        mounts
            .lines()
            .any(|l| l.contains(&format!(" {} ", mount.display())) && l.contains("favordynmods")),
        "{mounts}"
    );
    assert_eq!(
        root.favor_dynamic_moves().unwrap(),
        Some(FavorDynmods::AlreadyOn(mount))
    );
    assert_eq!(
        Root::none("favor-none").favor_dynamic_moves().unwrap(),
        None
    );
}

#[test]
fn detect_finds_the_hosts_cgroups() {
    let expected = expected_kind();
    assert_ne!(expected, "none", "this host has no usable cgroups");
    let root = Root::cgroups("detect");
    assert_eq!(root.kind(), expected);
    // This host is v1 (cpu and memory hierarchies plus a controller-less cgroup2 mount).
    if Path::new("/sys/fs/cgroup/unified/cgroup.controllers").exists()
        && read("/sys/fs/cgroup/unified/cgroup.controllers").is_empty()
    {
        assert_eq!(root.kind(), "cgroups-v1");
    }
    let parents = root.parent_paths().to_vec();
    assert!(!parents.is_empty());
    for parent in &parents {
        assert!(parent.is_dir(), "{}", parent.display());
        assert!(parent.ends_with(root.root_name()));
    }
    // Detecting again with the same name reuses the parent.
    let again = Isolation::detect(IsolationMode::Cgroups, root.root_name()).unwrap();
    assert_eq!(again.parent_paths(), root.parent_paths());
    drop(root);
    assert_gone(&parents);
}

#[test]
fn limit_files_hold_the_right_values() {
    let root = Root::cgroups("limits");
    let cgroup = root
        .create(
            "t-limits",
            &Limits {
                cpus: 0.5,
                mem_bytes: 64 * MIB,
                pids_max: None,
            },
        )
        .unwrap();
    let small = root
        .create(
            "t-small",
            &Limits {
                cpus: 0.001,
                mem_bytes: 8 * MIB,
                pids_max: None,
            },
        )
        .unwrap();
    let find = |cg: &agora_agent::isolation::TaskCgroup, file: &str| -> PathBuf {
        cg.paths()
            .iter()
            .map(|d| d.join(file))
            .find(|p| p.exists())
            .unwrap_or_else(|| panic!("no {file} in {:?}", cg.paths()))
    };
    match root.kind() {
        "cgroups-v1" => {
            assert_eq!(read(find(&cgroup, "cpu.shares")), "512");
            assert_eq!(read(find(&cgroup, "cpu.cfs_period_us")), "100000");
            assert_eq!(read(find(&cgroup, "cpu.cfs_quota_us")), "50000");
            assert_eq!(read(find(&cgroup, "memory.limit_in_bytes")), "67108864");
            let memsw = cgroup
                .paths()
                .iter()
                .map(|d| d.join("memory.memsw.limit_in_bytes"))
                .find(|p| p.exists());
            if let Some(memsw) = memsw {
                let value = read(memsw);
                // Either set (swap accounting on) or untouched (write refused).
                assert!(
                    value == "67108864" || value == "9223372036854771712",
                    "{value}"
                );
            }
            assert_eq!(read(find(&small, "cpu.shares")), "2");
            assert_eq!(read(find(&small, "cpu.cfs_quota_us")), "1000");
            assert_eq!(read(find(&small, "memory.limit_in_bytes")), "8388608");
        }
        "cgroups-v2" => {
            assert_eq!(read(find(&cgroup, "cpu.max")), "50000 100000");
            assert_eq!(read(find(&cgroup, "cpu.weight")), "20");
            assert_eq!(read(find(&cgroup, "memory.max")), "67108864");
            assert_eq!(read(find(&small, "cpu.max")), "1000 100000");
            assert_eq!(read(find(&small, "cpu.weight")), "1");
        }
        other => panic!("unexpected isolation {other}"),
    }
    assert_eq!(
        root.task_keys(),
        vec!["t-limits".to_owned(), "t-small".to_owned()]
    );
    let paths = cgroup.paths().to_vec();
    cgroup.destroy().unwrap();
    small.destroy().unwrap();
    assert_gone(&paths);
    assert!(root.task_keys().is_empty());
}

#[test]
fn bad_keys_and_limits_are_rejected_without_leaving_anything() {
    let root = Root::cgroups("badkeys");
    let limits = Limits {
        cpus: 1.0,
        mem_bytes: 16 * MIB,
        pids_max: None,
    };
    for key in ["", ".", "..", "a/b", "../escape", "a b", "tâche", "x\ny"] {
        match root.create(key, &limits) {
            Err(IsolationError::InvalidName { .. }) => {}
            other => panic!("{key:?}: {other:?}"),
        }
        assert!(root.recover(key).is_none());
    }
    for bad in [
        Limits {
            cpus: 0.0,
            ..limits
        },
        Limits {
            cpus: f64::NAN,
            ..limits
        },
        Limits {
            mem_bytes: 0,
            ..limits
        },
    ] {
        assert!(matches!(
            root.create("t", &bad),
            Err(IsolationError::InvalidLimits(_))
        ));
    }
    assert!(root.task_keys().is_empty());
    assert!(Isolation::detect(IsolationMode::Cgroups, "../etc").is_err());
}

#[test]
fn create_twice_fails_and_recover_finds_the_cgroup() {
    let root = Root::cgroups("recover");
    let limits = Limits {
        cpus: 1.0,
        mem_bytes: 16 * MIB,
        pids_max: None,
    };
    let cgroup = root.create("t1", &limits).unwrap();
    match root.create("t1", &limits) {
        Err(IsolationError::AlreadyExists { .. }) => {}
        other => panic!("{other:?}"),
    }
    assert!(root.recover("t2").is_none());
    let recovered = root.recover("t1").expect("recover");
    assert_eq!(recovered.paths(), cgroup.paths());
    recovered.destroy().unwrap();
    assert!(root.recover("t1").is_none());
    // Destroying an already destroyed cgroup is fine.
    cgroup.destroy().unwrap();
}

#[test]
fn added_pid_is_listed_and_destroy_kills_it_and_removes_the_cgroup() {
    let root = Root::cgroups("pids");
    let cgroup = root
        .create(
            "t-pids",
            &Limits {
                cpus: 1.0,
                mem_bytes: 64 * MIB,
                pids_max: None,
            },
        )
        .unwrap();
    let mut child = StdCommand::new("sleep").arg("30").spawn().unwrap();
    let pid = child.id() as i32;
    let added = cgroup.add_pid(pid);
    if added.is_err() {
        let _ = child.kill();
    }
    added.unwrap();
    assert_eq!(cgroup.pids(), vec![pid]);
    for path in cgroup.paths() {
        assert_eq!(read(path.join("cgroup.procs")), pid.to_string());
    }
    // Charged before it moved (v1 does not move charges), so possibly 0, but readable.
    assert!(cgroup.memory_usage().is_some());
    assert!(!cgroup.oom_killed());
    assert!(matches!(
        cgroup.add_pid(0),
        Err(IsolationError::InvalidPid(0))
    ));
    let paths = cgroup.paths().to_vec();
    let started = Instant::now();
    cgroup.destroy().unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_gone(&paths);
    let status = child.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(9));
}

#[test]
fn destroy_removes_nested_cgroups_and_kills_their_processes() {
    let root = Root::cgroups("nested");
    let cgroup = root
        .create(
            "t-nested",
            &Limits {
                cpus: 1.0,
                mem_bytes: 64 * MIB,
                pids_max: None,
            },
        )
        .unwrap();
    // What a task (or a custom executor) may make of its own cgroup.
    let deeper: Vec<PathBuf> = cgroup
        .paths()
        .iter()
        .map(|p| p.join("sub").join("deeper"))
        .collect();
    for dir in &deeper {
        fs::create_dir_all(dir).unwrap();
    }
    let mut child = StdCommand::new("sleep").arg("30").spawn().unwrap();
    let pid = child.id() as i32;
    for dir in &deeper {
        if let Err(e) = fs::write(dir.join("cgroup.procs"), pid.to_string()) {
            let _ = child.kill();
            panic!("{}: {e}", dir.display());
        }
    }
    assert_eq!(cgroup.pids(), vec![pid], "nested processes count");
    let paths = cgroup.paths().to_vec();
    cgroup.destroy().unwrap();
    assert_gone(&paths);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(child.wait().unwrap().signal(), Some(9));
}

#[test]
fn remove_stale_removes_all_but_what_it_is_told_to_keep() {
    let root = Root::cgroups("stale");
    let limits = Limits {
        cpus: 1.0,
        mem_bytes: 16 * MIB,
        pids_max: None,
    };
    let kept = root.create("fw.kept", &limits).unwrap();
    let gone = root.create("fw.gone", &limits).unwrap();
    let odd: Vec<PathBuf> = root
        .parent_paths()
        .iter()
        .map(|p| p.join("not a key").join("nested"))
        .collect();
    for dir in &odd {
        fs::create_dir_all(dir).unwrap();
    }
    let mut removed: Vec<PathBuf> = root
        .remove_stale(|key| key == "fw.kept" || key == "not a key")
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    removed.sort();
    let mut expected: Vec<PathBuf> = gone.paths().to_vec();
    expected.extend(odd.iter().map(|p| p.parent().unwrap().to_path_buf()));
    expected.sort();
    assert_eq!(removed, expected);
    assert_gone(&expected);
    for p in kept.paths() {
        assert!(p.is_dir(), "{} removed", p.display());
    }
    assert_eq!(root.task_keys(), vec!["fw.kept".to_owned()]);
}

#[tokio::test]
async fn exit_codes_output_env_and_sandbox() {
    let root = Root::cgroups("exits");
    let dir = tempfile::tempdir().unwrap();
    let sandbox = dir.path().join("sandbox");

    let outcome = run(&root, "t-true", &spec(&sandbox, "true")).await;
    assert_eq!(outcome, TaskOutcome::Exited { code: 0 });
    assert!(outcome.is_success());

    let outcome = run(&root, "t-exit3", &spec(&sandbox, "exit 3")).await;
    assert_eq!(outcome, TaskOutcome::Exited { code: 3 });
    assert!(!outcome.is_success());
    assert_eq!(outcome.message(), "exited with status 3");

    let mut with_env = spec(
        &sandbox,
        "echo \"out $GREETING $SECOND\"; echo \"err $PWD\" >&2; cat /proc/self/cgroup",
    );
    with_env.env = vec![
        ("GREETING".to_owned(), "hello world".to_owned()),
        ("SECOND".to_owned(), "2".to_owned()),
    ];
    let task = supervisor::start(&with_env, &root, "t-env").await.unwrap();
    let pid = task.pid();
    assert!(pid > 1);
    let hierarchies = task.cgroup().unwrap().paths().len();
    assert_eq!(read(sandbox.join(".task.pid")), pid.to_string());
    let outcome = wait_within(task, Duration::from_secs(20)).await;
    assert_eq!(outcome, TaskOutcome::Exited { code: 0 });

    let stdout = fs::read_to_string(sandbox.join("stdout")).unwrap();
    assert!(stdout.starts_with("out hello world 2\n"), "{stdout:?}");
    // The task ran inside its cgroup from its first instruction (joined in pre_exec).
    let name = format!("/{}/t-env", root.root_name());
    let in_cgroup: Vec<&str> = stdout.lines().filter(|l| l.ends_with(&name)).collect();
    assert_eq!(in_cgroup.len(), hierarchies, "{stdout}");
    let stderr = fs::read_to_string(sandbox.join("stderr")).unwrap();
    let sandbox_real = fs::canonicalize(&sandbox).unwrap();
    assert_eq!(stderr, format!("err {}\n", sandbox_real.display()));

    // Output is appended, not truncated.
    run(&root, "t-append", &spec(&sandbox, "echo again")).await;
    let stdout = fs::read_to_string(sandbox.join("stdout")).unwrap();
    assert!(stdout.starts_with("out hello world 2\n"), "{stdout:?}");
    assert!(stdout.ends_with("again\n"), "{stdout:?}");

    // Every task cgroup was removed when its task ended.
    assert!(root.task_keys().is_empty(), "{:?}", root.task_keys());
}

#[tokio::test]
async fn task_sees_its_pids_in_its_cgroup_while_running() {
    let root = Root::cgroups("running");
    let dir = tempfile::tempdir().unwrap();
    let mut task = supervisor::start(&spec(dir.path(), "sleep 30"), &root, "t-run")
        .await
        .unwrap();
    let cgroup = task.cgroup().expect("cgroup").clone();
    let pids = cgroup.pids();
    assert!(pids.contains(&task.pid()), "{pids:?} lacks {}", task.pid());
    // It joined before exec, so what it mapped since is charged to it.
    let usage = cgroup.memory_usage().expect("memory usage");
    assert!(usage > 0 && usage <= 64 * MIB, "{usage}");
    assert!(!cgroup.oom_killed());
    // A second task with the same key is refused while the first runs.
    let dup = supervisor::start(&spec(dir.path(), "true"), &root, "t-run").await;
    assert!(dup.is_err());
    task.kill(Duration::from_millis(100)).await;
    assert_eq!(task.wait().await, TaskOutcome::Killed);
    assert_gone(cgroup.paths());
}

#[tokio::test]
async fn memory_hog_is_oom_killed_and_its_cgroup_removed() {
    let root = Root::cgroups("oom");
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        cpus: 1.0,
        mem_bytes: 32 * MIB,
        pids_max: None,
    };
    // The shell survives and exits 137 after tail is killed: still an OOM kill.
    let pipeline = TaskSpec {
        limits,
        ..spec(dir.path(), "head -c 300M /dev/zero | tail")
    };
    // The task's own process is SIGKILLed by the OOM killer: OomKilled, not Signaled(9).
    let direct = TaskSpec {
        limits,
        ..spec(
            dir.path(),
            "exec python3 -c 'x = bytearray(256 * 1024 * 1024)'",
        )
    };
    let have_python = StdCommand::new("python3")
        .arg("-c")
        .arg("pass")
        .status()
        .is_ok_and(|s| s.success());
    let direct = if have_python {
        direct
    } else {
        TaskSpec {
            limits,
            ..spec(dir.path(), "exec tail /dev/zero")
        }
    };
    for (key, task_spec) in [("t-oom-pipe", pipeline), ("t-oom-direct", direct)] {
        let task = supervisor::start(&task_spec, &root, key).await.unwrap();
        let paths = task.cgroup().unwrap().paths().to_vec();
        let outcome = wait_within(task, Duration::from_secs(30)).await;
        assert_eq!(
            outcome,
            TaskOutcome::OomKilled {
                mem_limit_bytes: 32 * MIB
            },
            "{key}"
        );
        assert_eq!(outcome.message(), "memory limit exceeded (32 MiB)");
        assert!(!outcome.is_success());
        assert_gone(&paths);
    }
}

#[tokio::test]
async fn kill_stops_a_sleeping_task_quickly() {
    let root = Root::cgroups("kill");
    let dir = tempfile::tempdir().unwrap();
    let mut task = supervisor::start(&spec(dir.path(), "sleep 30"), &root, "t-sleep")
        .await
        .unwrap();
    let paths = task.cgroup().unwrap().paths().to_vec();
    let started = Instant::now();
    task.kill(Duration::from_millis(200)).await;
    let outcome = wait_within(task, Duration::from_secs(5)).await;
    let elapsed = started.elapsed();
    assert_eq!(outcome, TaskOutcome::Killed);
    assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");
    assert_gone(&paths);
}

#[tokio::test]
async fn task_ignoring_sigterm_is_sigkilled_after_the_grace() {
    let root = Root::cgroups("trap");
    let dir = tempfile::tempdir().unwrap();
    let command = "trap '' TERM; sleep 30 & echo $! > child.pid; wait";
    let mut task = supervisor::start(&spec(dir.path(), command), &root, "t-trap")
        .await
        .unwrap();
    let paths = task.cgroup().unwrap().paths().to_vec();
    let shell = task.pid();
    // Let the shell install its trap and start the child.
    let deadline = Instant::now() + Duration::from_secs(5);
    while read_pid(&dir.path().join("child.pid")).is_none() {
        assert!(Instant::now() < deadline, "child.pid never written");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let child = read_pid(&dir.path().join("child.pid")).unwrap();
    assert!(alive(child));

    let grace = Duration::from_millis(200);
    let started = Instant::now();
    task.kill(grace).await;
    let outcome = wait_within(task, Duration::from_secs(5)).await;
    let elapsed = started.elapsed();
    assert_eq!(outcome, TaskOutcome::Killed);
    assert!(elapsed >= grace, "SIGTERM was not ignored? {elapsed:?}");
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    assert_dies(shell, "the task's shell");
    assert_dies(child, "the task's child");
    assert_gone(&paths);
}

fn read_pid(path: &Path) -> Option<i32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[tokio::test]
async fn kill_handle_kills_a_task_being_waited_for() {
    let root = Root::cgroups("handle");
    let dir = tempfile::tempdir().unwrap();
    let task = supervisor::start(&spec(dir.path(), "sleep 30"), &root, "t-handle")
        .await
        .unwrap();
    let handle = task.kill_handle();
    let paths = task.cgroup().unwrap().paths().to_vec();
    let waiter = tokio::spawn(task.wait());
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    handle.kill(Duration::from_millis(200));
    let outcome = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("wait did not end")
        .unwrap();
    assert_eq!(outcome, TaskOutcome::Killed);
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_gone(&paths);
    // Killing a finished task is a no-op.
    handle.kill(Duration::ZERO);
}

#[tokio::test]
async fn signal_from_elsewhere_is_reported_as_signaled() {
    let root = Root::cgroups("signal");
    let dir = tempfile::tempdir().unwrap();
    let outcome = run(&root, "t-sig", &spec(dir.path(), "kill -TERM $$; sleep 5")).await;
    assert_eq!(outcome, TaskOutcome::Signaled { signal: 15 });
    assert_eq!(outcome.message(), "killed by signal 15");
}

#[tokio::test]
async fn dropping_an_unfinished_task_kills_it_and_removes_its_cgroup() {
    let root = Root::cgroups("drop");
    let dir = tempfile::tempdir().unwrap();
    let task = supervisor::start(&spec(dir.path(), "sleep 30"), &root, "t-drop")
        .await
        .unwrap();
    let paths = task.cgroup().unwrap().paths().to_vec();
    let pid = task.pid();
    drop(task);
    let deadline = Instant::now() + Duration::from_secs(3);
    while paths.iter().any(|p| p.exists()) {
        assert!(Instant::now() < deadline, "cgroup not removed after drop");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_dies(pid, "the dropped task");
}

#[tokio::test]
async fn no_isolation_runs_tasks_and_cleans_up_the_process_group() {
    let root = Root::none("none");
    assert_eq!(root.kind(), "none");
    assert!(root.parent_paths().is_empty());
    let dir = tempfile::tempdir().unwrap();

    assert_eq!(
        run(&root, "t-true", &spec(dir.path(), "true")).await,
        TaskOutcome::Exited { code: 0 }
    );
    assert_eq!(
        run(&root, "t-exit", &spec(dir.path(), "exit 3")).await,
        TaskOutcome::Exited { code: 3 }
    );
    let mut with_env = spec(
        dir.path(),
        "echo \"$ONLY_HERE\"; sleep 30 & echo $! > bg.pid",
    );
    with_env.env = vec![("ONLY_HERE".to_owned(), "value".to_owned())];
    let task = supervisor::start(&with_env, &root, "t-env").await.unwrap();
    assert!(task.cgroup().is_some_and(|c| c.paths().is_empty()));
    assert_eq!(
        wait_within(task, Duration::from_secs(10)).await,
        TaskOutcome::Exited { code: 0 }
    );
    assert_eq!(read(dir.path().join("stdout")), "value");
    // The background job of the finished task was killed with its process group.
    let bg = read_pid(&dir.path().join("bg.pid")).expect("bg.pid");
    let deadline = Instant::now() + Duration::from_secs(2);
    while alive(bg) {
        if Instant::now() > deadline {
            // SAFETY: test cleanup of the sleep this test started (pid read from bg.pid).
            unsafe { libc::kill(bg, libc::SIGKILL) };
            panic!("background job {bg} survived");
        }
        std::thread::sleep(Duration::from_millis(10));
    }

    let mut task = supervisor::start(&spec(dir.path(), "sleep 30"), &root, "t-kill")
        .await
        .unwrap();
    task.kill(Duration::from_millis(200)).await;
    assert_eq!(task.wait().await, TaskOutcome::Killed);

    // Without a cgroup, only the process-group SIGKILL ends a task ignoring SIGTERM.
    let grace = Duration::from_millis(200);
    let command = "trap '' TERM; sleep 30 & echo $! > trap.pid; wait";
    let mut task = supervisor::start(&spec(dir.path(), command), &root, "t-trap")
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while read_pid(&dir.path().join("trap.pid")).is_none() {
        assert!(Instant::now() < deadline, "trap.pid never written");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let child = read_pid(&dir.path().join("trap.pid")).unwrap();
    let started = Instant::now();
    let killed = tokio::time::timeout(Duration::from_secs(3), task.kill(grace)).await;
    if killed.is_err() {
        // SAFETY: test cleanup of the processes this test started.
        unsafe { libc::kill(-task.pid(), libc::SIGKILL) };
        panic!("task ignoring SIGTERM was not SIGKILLed");
    }
    assert!(started.elapsed() >= grace);
    assert_eq!(task.wait().await, TaskOutcome::Killed);
    assert_dies(child, "the task's child");
}

#[tokio::test]
async fn output_rotates_at_its_size_keeping_the_newest_files() {
    let root = Root::cgroups("rotate");
    let dir = tempfile::tempdir().unwrap();
    // 20 lines of 100 bytes to stdout, 1 line to stderr; files of 500 bytes, 2 kept.
    let task_spec = TaskSpec {
        output: supervisor::OutputRotation {
            max_bytes: 500,
            keep: 2,
        },
        ..spec(
            dir.path(),
            "for i in $(seq 10 29); do printf '%099d\\n' $i; done; echo err >&2",
        )
    };
    let task = supervisor::start(&task_spec, &root, "t-rotate")
        .await
        .unwrap();
    assert!(task.wait().await.is_success());
    let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap_or_default();
    // The newest 500 bytes in stdout, the 1,000 before in .1 and .2; older ones dropped.
    let line = |i: u32| format!("{i:099}\n");
    assert_eq!(read("stdout"), (25..30).map(line).collect::<String>());
    assert_eq!(read("stdout.1"), (20..25).map(line).collect::<String>());
    assert_eq!(read("stdout.2"), (15..20).map(line).collect::<String>());
    assert!(!dir.path().join("stdout.3").exists());
    assert_eq!(read("stderr"), "err\n");
}
