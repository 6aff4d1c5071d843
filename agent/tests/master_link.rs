//! A real `agora-agent` against a real 3-master quorum: registration, following the
//! leader across SIGKILL, health checks marking a paused agent unreachable, and restart
//! with the same id.

use std::time::{Duration, Instant};

use agora_test_cluster::*;

const SECOND: Duration = Duration::from_secs(1);

/// The agent as the leader's /state shows it.
fn agent_in_state(cluster: &Cluster, id: &str) -> Option<serde_json::Value> {
    let state = cluster.http_state()?;
    state["agents"]
        .as_array()?
        .iter()
        .find(|a| a["id"] == id)
        .cloned()
}

async fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> (T, Duration) {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return (v, start.elapsed());
        }
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_registers_follows_the_leader_and_recovers() {
    // Fast health checks: unreachable after 3 x 300 ms without a word.
    let mut cluster = Cluster::start_with(
        3,
        &[
            "--agent-ping-timeout",
            "300ms",
            "--max-agent-ping-timeouts",
            "3",
        ],
    );
    let (leader, term, _) = cluster.wait_leader(1, 10 * SECOND).await;
    let mut agent = AgentNode::new(
        &cluster,
        "agent-1",
        &[
            "--resources",
            "cpus:2;mem:1024;disk:100",
            "--attributes",
            "rack:r1",
            "--isolation",
            "none",
        ],
    );
    agent.start();

    // Registered, with the given resources and ports detected by default.
    let (id, _) = wait_for("agent id", 10 * SECOND, || agent.agent_id()).await;
    let (a, _) = wait_for("agent in /state", 10 * SECOND, || {
        agent_in_state(&cluster, &id)
    })
    .await;
    assert_eq!(a["active"], true);
    assert_eq!(a["resources"]["cpus"], 2.0);
    assert_eq!(a["resources"]["mem"], 1024.0);
    assert_eq!(a["resources"]["ports"], "[31000-32000]");
    assert_eq!(a["attributes"]["rack"], "r1");
    assert_eq!(a["address"], agent.addr.as_str());

    // SIGSTOP the leader (cut off, its connections open but silent): the others elect a
    // new one, and the agent moves to it on their word (Master.WatchLeader), not when its
    // session's keepalive fails.
    let leader_addr = cluster.node(leader).addr.clone();
    wait_for("session with the first leader", 5 * SECOND, || {
        agent
            .health()
            .filter(|h| h["leader"] == leader_addr.as_str())
    })
    .await;
    let paused = cluster.node(leader).pid().unwrap();
    signal(paused, libc::SIGSTOP);
    let (moved_to, moved_in) = wait_for("session with another master", 10 * SECOND, || {
        agent
            .health()
            .and_then(|h| h["leader"].as_str().map(str::to_string))
            .filter(|l| *l != leader_addr)
    })
    .await;
    eprintln!("the agent moved to {moved_to} {moved_in:?} after the leader was paused");
    let log = std::fs::read_to_string(&agent.log).unwrap_or_default();
    if !log.contains("a new leader was elected; moving to it") {
        agent.dump_log();
        panic!("the agent did not move on a leader notice");
    }
    signal(paused, libc::SIGCONT);
    let (leader, term, _) = cluster.wait_leader(term + 1, 10 * SECOND).await;

    // SIGKILL the leader: the agent follows the new leader within 2 s of its election.
    let leader_addr = cluster.node(leader).addr.clone();
    wait_for("session with the leader", 5 * SECOND, || {
        agent
            .health()
            .filter(|h| h["leader"] == leader_addr.as_str())
    })
    .await;
    cluster.node(leader).kill();
    let (new_leader, _, _) = cluster.wait_leader(term + 1, 5 * SECOND).await;
    let new_addr = cluster.node(new_leader).addr.clone();
    let (_, followed_in) = wait_for("session with the new leader", 5 * SECOND, || {
        agent.health().filter(|h| h["leader"] == new_addr.as_str())
    })
    .await;
    assert!(
        followed_in < 2 * SECOND,
        "agent took {followed_in:?} to follow the new leader"
    );
    assert_eq!(
        agent.agent_id().as_deref(),
        Some(id.as_str()),
        "agent id changed"
    );

    // Pause the agent past its health checks: the leader marks it unreachable. (How long
    // that takes is not checked here: the pause starts at an unknown point after the
    // agent's last answer, which a loaded CI host delays by hundreds of milliseconds; the
    // budget itself is tested on the leader's clock in `leader::health`'s
    // `an_agent_silent_past_its_ping_budget_is_overdue`.)
    let pid = agent.pid().unwrap();
    signal(pid, libc::SIGSTOP);
    let (_, took) = wait_for("agent unreachable", 10 * SECOND, || {
        agent_in_state(&cluster, &id).filter(|a| a["active"] == false)
    })
    .await;
    eprintln!("paused agent marked unreachable {took:?} after the pause");
    // Resumed, it registers again with the same id and is active again.
    signal(pid, libc::SIGCONT);
    let back = tokio::time::timeout(
        10 * SECOND,
        wait_for("agent active again", 10 * SECOND, || {
            agent_in_state(&cluster, &id).filter(|a| a["active"] == true)
        }),
    )
    .await;
    if back.is_err() {
        agent.dump_log();
        cluster.dump_logs();
        panic!("agent not active again after SIGCONT");
    }

    // SIGKILL and restart: the same id, from the work dir.
    agent.kill();
    agent.start();
    wait_for("restarted agent's session", 10 * SECOND, || {
        agent
            .health()
            .filter(|h| h["agent_id"] == id.as_str() && !h["leader"].is_null())
    })
    .await;
    let state = cluster.http_state().unwrap();
    assert_eq!(
        state["agents"].as_array().unwrap().len(),
        1,
        "restart created a second agent"
    );
}

#[test]
fn bad_agent_flags_exit_2_naming_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let wd = dir.path().to_str().unwrap();
    for (args, needle) in [
        (
            vec![
                "--masters",
                "127.0.0.1:1",
                "--work-dir",
                wd,
                "--resources",
                "cpus:4;mem:lots",
            ],
            "mem:lots",
        ),
        (
            vec![
                "--masters",
                "127.0.0.1:1",
                "--work-dir",
                wd,
                "--resources",
                "cpus:-2",
            ],
            "negative",
        ),
        (
            vec![
                "--masters",
                "127.0.0.1:1",
                "--work-dir",
                wd,
                "--attributes",
                "rack",
            ],
            "rack",
        ),
        (vec!["--masters", "nohost", "--work-dir", wd], "nohost"),
        (
            vec![
                "--masters",
                "127.0.0.1:1",
                "--work-dir",
                wd,
                "--isolation",
                "docker",
            ],
            "docker",
        ),
        (
            vec![
                "--masters",
                "127.0.0.1:1",
                "--work-dir",
                wd,
                "--gc-disk-headroom",
                "1.5",
            ],
            "'1.5' for '--gc-disk-headroom",
        ),
        (
            vec![
                "--masters",
                "127.0.0.1:1",
                "--work-dir",
                wd,
                "--gc-delay",
                "soon",
            ],
            "'soon' for '--gc-delay",
        ),
        (
            vec![
                "--masters",
                "127.0.0.1:1",
                "--work-dir",
                wd,
                "--disk-watch-interval",
                "0s",
            ],
            "'0s' for '--disk-watch-interval",
        ),
    ] {
        let out = std::process::Command::new(binary("agora-agent"))
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}
