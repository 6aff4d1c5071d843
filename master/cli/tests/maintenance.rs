//! Operators' maintenance of agents against a real cluster (3 masters, a cgroup agent):
//! a drain kills the agent's tasks after its grace period (TASK_KILLED to the framework)
//! and is carried on by a new leader after the old one is SIGKILLed mid-drain; a drained
//! or deactivated agent gets no offers until reactivated; a gone agent is stopped and can
//! never register again.

mod common;

use std::time::{Duration, Instant};

use agora_test_cluster::*;
use common::*;

fn agents(cluster: &Cluster) -> Vec<serde_json::Value> {
    let (code, out) = run(cluster, &["agents", "--json"]);
    assert_eq!(code, 0, "{out}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn agent<'a>(list: &'a [serde_json::Value], id: &str) -> Option<&'a serde_json::Value> {
    list.iter().find(|a| a["id"] == id)
}

/// Waits until the agent's JSON satisfies `done`.
fn wait_agent(
    cluster: &Cluster,
    id: &str,
    what: &str,
    done: impl Fn(Option<&serde_json::Value>) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list = agents(cluster);
        if done(agent(&list, id)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "agent {id} never {what}: {list:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_survives_a_leader_crash_and_gone_agents_never_return() {
    let (mut cluster, mut nodes) = start(1);
    let (leader, term, _) = cluster.wait_leader(1, Duration::from_secs(10)).await;
    wait_agents(&cluster, 1).await;
    let id = nodes[0].agent_id().expect("the agent registered");

    // A running task, then a drain with a grace period.
    let (mut runner, rx) = spawn_run(&cluster, &["run", "--", "sleep", "120"]);
    let mut seen = Vec::new();
    wait_line(&rx, "TASK_RUNNING", &mut seen);
    let (code, out) = run(&cluster, &["agents", "drain", &id, "--grace", "4s"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("draining"), "{out}");
    let list = agents(&cluster);
    let a = agent(&list, &id).unwrap();
    assert_eq!(a["drain"]["state"], "DRAINING", "{a}");
    assert_eq!(a["live_tasks"], 1, "{a}");
    let (code, table) = run(&cluster, &["agents"]);
    assert_eq!(code, 0);
    assert!(table.contains("draining (1 tasks, killed in"), "{table}");

    // The leader dies mid-drain; the next one kills the task when the grace is over.
    let killed_at = Instant::now();
    cluster.node(leader).kill();
    cluster.wait_leader(term + 1, Duration::from_secs(15)).await;
    wait_line(&rx, "TASK_KILLED", &mut seen);
    assert!(
        killed_at.elapsed() >= Duration::from_secs(2),
        "killed before the grace period was over"
    );
    assert_ne!(wait_exit(&mut runner, Duration::from_secs(20)), 0);
    wait_agent(&cluster, &id, "drained", |a| {
        a.is_some_and(|a| a["drain"]["state"] == "DRAINED" && a["live_tasks"] == 0)
    });

    // A drained agent gets no offers: a task waits in vain.
    let (code, out) = run(&cluster, &["run", "--timeout", "3s", "--", "true"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("no offer could hold the task"), "{out}");
    // Reactivated, it takes tasks again; deactivated, it does not.
    let (code, out) = run(&cluster, &["agents", "reactivate", &id]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = run(&cluster, &["run", "--", "true"]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = run(&cluster, &["agents", "deactivate", &id]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(agent(&agents(&cluster), &id).unwrap()["deactivated"], true);
    let (code, out) = run(&cluster, &["run", "--timeout", "3s", "--", "true"]);
    assert_eq!(code, 1, "{out}");

    // Gone: out of the registry, the agent stops (exit 2) and never registers again.
    let (code, out) = run(&cluster, &["agents", "gone", &id]);
    assert_eq!(code, 0, "{out}");
    assert!(agent(&agents(&cluster), &id).is_none());
    let deadline = Instant::now() + Duration::from_secs(30);
    let code = loop {
        if let Some(c) = nodes[0].exit_code() {
            break c;
        }
        assert!(Instant::now() < deadline, "a gone agent kept running");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(code, 2);
    nodes[0].start();
    let deadline = Instant::now() + Duration::from_secs(30);
    let code = loop {
        if let Some(c) = nodes[0].exit_code() {
            break c;
        }
        assert!(
            Instant::now() < deadline,
            "a gone agent started again and kept running"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(code, 2);
    assert!(agent(&agents(&cluster), &id).is_none());
    // Unknown and gone agents are refused with one line.
    let (code, out) = run(&cluster, &["agents", "drain", &id]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("marked gone"), "{out}");
    let (code, out) = run(&cluster, &["agents", "deactivate", "no-such-agent"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("not registered"), "{out}");
}
