//! The fixture cleans up what it starts: children die with the test process (even one
//! SIGKILLed, even when the thread that started them has ended), an agent's drop ends its
//! executors and tasks (which left its session on purpose) and removes its cgroup root.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agora_test_cluster::reap;
use agora_test_cluster::{binary, AgentNode, Cluster};

const HELPER_ENV: &str = "AGORA_REAP_HELPER";

fn wait_dead(pids: &[i32], within: Duration) -> Duration {
    let start = Instant::now();
    while pids.iter().any(|&p| reap::alive(p)) {
        assert!(
            start.elapsed() < within,
            "still alive after {within:?}: {:?}",
            pids.iter().filter(|&&p| reap::alive(p)).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    start.elapsed()
}

/// Run by `children_die_with_the_test_process` in a child test process: starts a
/// `sleep` from a thread that ends at once, prints its pid, and waits to be killed.
#[test]
fn helper_process() {
    if std::env::var_os(HELPER_ENV).is_none() {
        return;
    }
    // The helper is SIGKILLed with its child alive: that child is what the test watches.
    #[allow(clippy::zombie_processes)]
    let pid = std::thread::spawn(|| {
        let mut cmd = Command::new("sleep");
        cmd.arg("1000").stdin(Stdio::null());
        let child = reap::spawn(cmd).unwrap();
        child.id()
    })
    .join()
    .unwrap();
    // The forking thread of the test is gone; the child must still be alive.
    std::thread::sleep(Duration::from_millis(200));
    // libtest may print "test helper_process ... " on the same line first.
    println!("\nREAP-CHILD {pid} alive {}", reap::alive(pid as i32));
    std::thread::sleep(Duration::from_secs(1000));
}

#[test]
fn children_die_with_the_test_process() {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "helper_process",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(HELPER_ENV, "1")
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    let mut helper = reap::spawn(cmd).unwrap();
    let stdout = helper.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let found = BufReader::new(stdout).lines().find_map(|l| {
            let l = l.ok()?;
            l.find("REAP-CHILD ").map(|at| l[at..].to_string())
        });
        let _ = tx.send(found);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .ok()
        .flatten()
        .expect("helper printed its child");
    let mut words = line.split_whitespace();
    let pid: i32 = words.nth(1).unwrap().parse().unwrap();
    assert_eq!(
        words.nth(1),
        Some("true"),
        "the child died with the thread that forked it: {line}"
    );
    helper.kill().unwrap();
    helper.wait().unwrap();
    let took = wait_dead(&[pid], Duration::from_secs(2));
    eprintln!("child gone {took:?} after its test process was SIGKILLed");
}

#[test]
fn kill_owned_reaches_processes_that_left_the_group() {
    let owner = format!("agora-test-{}-owned", std::process::id());
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        "setsid sleep 1000 </dev/null >/dev/null 2>&1 & echo $!",
    ])
    .env(reap::OWNER_ENV, &owner)
    .stdout(Stdio::piped());
    let out = reap::spawn(cmd).unwrap().wait_with_output().unwrap();
    let pid: i32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert!(reap::alive(pid));
    assert_eq!(reap::owned_pids(|o| o == owner), vec![pid]);
    let killed = reap::kill_owned(|o| o == owner);
    assert_eq!(killed, vec![pid]);
    wait_dead(&[pid], Duration::from_secs(2));
    assert!(reap::owned_pids(|o| o == owner).is_empty());
}

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn remove_cgroup_root_kills_its_processes_and_removes_it() {
    if !is_root() {
        eprintln!("skipped: needs root to make cgroups");
        return;
    }
    let root = format!("agora-test-{}-cg", std::process::id());
    let mut made = Vec::new();
    for h in reap::hierarchies() {
        let task = h.join(&root).join("task");
        if std::fs::create_dir_all(&task).is_ok() {
            made.push(task);
        }
    }
    if made.is_empty() {
        eprintln!("skipped: no writable cgroup hierarchy");
        return;
    }
    let mut cmd = Command::new("sleep");
    cmd.arg("1000");
    let mut child = reap::spawn(cmd).unwrap();
    let pid = child.id() as i32;
    let joined = made
        .iter()
        .filter(|t| std::fs::write(t.join("cgroup.procs"), pid.to_string()).is_ok())
        .count();
    assert!(joined > 0, "could not join any of {made:?}");
    assert_eq!(reap::cgroup_roots(&root), vec![root.clone()]);
    reap::remove_cgroup_root(&root).unwrap();
    let _ = child.wait();
    assert!(!reap::alive(pid));
    for t in &made {
        assert!(
            !t.parent().unwrap().exists(),
            "{} left",
            t.parent().unwrap().display()
        );
    }
    assert!(reap::cgroup_roots(&root).is_empty());
    assert!(reap::remove_cgroup_root("..").is_err());
    assert!(reap::remove_cgroup_root("a/b").is_err());
}

/// A real agent runs a real task (`agora run -- sleep 1000`); dropping the agent node ends
/// the agent, the executor (in its own session) and the task, and removes the agent's
/// cgroup root.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_an_agent_ends_its_executors_tasks_and_cgroups() {
    let cluster = Cluster::start_with(1, &["--allocation-interval", "100ms"]);
    cluster.wait_leader(1, Duration::from_secs(10)).await;
    let mut agent = AgentNode::new(&cluster, "agent", &["--resources", "cpus:1;mem:256"]);
    assert!(agent.cgroups_root.starts_with("agora-test-"));
    agent.start();
    cluster.wait_active_agents(1, Duration::from_secs(20)).await;
    let mut run = Command::new(binary("agora"));
    run.args(["--masters", &cluster.addrs().join(","), "run", "--"])
        .args(["sh", "-c", "sleep 1000"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut run = reap::spawn(run).unwrap();
    let agent_pid = agent.pid().unwrap() as i32;
    let start = Instant::now();
    // The agent, the executor, the task's shell and its sleep.
    let pids = loop {
        let pids: Vec<i32> = agent
            .owned_pids()
            .into_iter()
            .filter(|&p| p != agent_pid)
            .collect();
        if pids.len() >= 2 {
            break pids;
        }
        if start.elapsed() > Duration::from_secs(30) {
            agent.dump_log();
            panic!("no executor and task started: {pids:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let has_cgroup = is_root() && !reap::cgroup_roots(&agent.cgroups_root).is_empty();
    let root = agent.cgroups_root.clone();
    let dropped = Instant::now();
    drop(agent);
    let took = dropped.elapsed();
    for &p in &pids {
        assert!(!reap::alive(p), "process {p} outlived its agent node");
    }
    assert!(!reap::alive(agent_pid));
    assert!(
        reap::cgroup_roots(&root).is_empty(),
        "cgroup root {root} left"
    );
    eprintln!(
        "agent, executor and task ({} processes) gone {took:?} after the drop; cgroup root {}",
        pids.len() + 1,
        if has_cgroup {
            "removed"
        } else {
            "never made (no isolation)"
        }
    );
    let _ = run.kill();
    let _ = run.wait();
}
