//! What the CLI's cluster tests share: a cluster of 3 masters and cgroup agents, and
//! `agora` run against it (to the end, or in the background with its lines).

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agora_test_cluster::*;

pub fn agora(cluster: &Cluster, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_agora"));
    cmd.args(["--masters", &cluster.addrs().join(",")])
        .args(args);
    cmd
}

pub fn run(cluster: &Cluster, args: &[&str]) -> (i32, String) {
    let out = agora(cluster, args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}

pub fn start(agents: usize) -> (Cluster, Vec<AgentNode>) {
    start_with_agent_args(agents, &[])
}

/// Like [`start`], with `args` added to each agent's flags.
pub fn start_with_agent_args(agents: usize, args: &[&str]) -> (Cluster, Vec<AgentNode>) {
    let cluster = Cluster::start_with(3, &["--allocation-interval", "100ms"]);
    let mut nodes = Vec::new();
    for i in 0..agents {
        let mut flags = vec!["--resources", "cpus:2;mem:1024;disk:1000"];
        flags.extend_from_slice(args);
        let mut a = AgentNode::new(&cluster, &format!("agent-{i}"), &flags);
        a.start();
        nodes.push(a);
    }
    (cluster, nodes)
}

pub async fn wait_agents(cluster: &Cluster, n: usize) {
    cluster.wait_active_agents(n, Duration::from_secs(20)).await;
}

/// Starts `agora run` in the background (killed when the test process ends, however it
/// ends); returns the child and a channel of its lines.
pub fn spawn_run(
    cluster: &Cluster,
    args: &[&str],
) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    let mut cmd = agora(cluster, args);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    // Dies with the test process: a test that fails while it waits (its cluster gone)
    // must not leave it retrying the masters forever.
    let mut child = reap::spawn(cmd).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    for pipe in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    (child, rx)
}

pub fn wait_line(rx: &std::sync::mpsc::Receiver<String>, needle: &str, seen: &mut Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(100)) {
            seen.push(l.clone());
            if l.contains(needle) {
                return;
            }
        }
    }
    panic!("no line with {needle:?}; saw {seen:?}");
}

pub fn wait_exit(child: &mut std::process::Child, timeout: Duration) -> i32 {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s.code().unwrap_or(-1);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("agora run did not finish");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
