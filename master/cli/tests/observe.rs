//! Observing a real cluster (3 masters, a cgroup agent, TLS and credentials): the agent's
//! `/state` lists a running task with its sandbox directory, its `/metrics` has the task
//! counts, the launch latency, the task's cgroup memory and sandbox bytes, and `/flags`
//! and `/version` answer; `agora log-level debug --duration 2s` changes every master's
//! level, which goes back by itself; a principal without the `set_log_level` ACL and a bad
//! filter are refused.

mod common;

use std::time::{Duration, Instant};

use agora_test_cluster::pki::{pki, TEAM_A};
use agora_test_cluster::*;
use common::*;

/// The value of the sample `name{labels}` (`labels` as written, e.g. `state="TASK_RUNNING"`).
fn sample(metrics: &str, name: &str, labels: &str) -> Option<f64> {
    let series = if labels.is_empty() {
        name.to_string()
    } else {
        format!("{name}{{{labels}}}")
    };
    metrics.lines().find_map(|l| {
        let (key, value) = l.rsplit_once(' ')?;
        (key == series).then(|| value.parse().ok())?
    })
}

fn agent_get(agent: &AgentNode, path: &str) -> String {
    let (code, body) = https_get(&agent.addr, path).unwrap_or_else(|| panic!("GET {path}"));
    assert_eq!(code, 200, "{path}: {body}");
    body
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Lines a master wrote at debug level.
fn debug_lines(node: &Node) -> usize {
    std::fs::read_to_string(&node.log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(" DEBUG "))
        .count()
}

/// A master's `/logging/level` (plaintext: the fixture's masters allow it beside TLS).
fn level_of(master: &str) -> serde_json::Value {
    let (code, body) = http_get(master, "/logging/level").expect("GET /logging/level");
    assert_eq!(code, 200, "{body}");
    json(&body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_and_masters_show_what_they_run_and_masters_change_their_log_level() {
    let (cluster, nodes) = start(1);
    cluster.wait_leader(1, Duration::from_secs(10)).await;
    wait_agents(&cluster, 1).await;
    let agent = &nodes[0];
    // Active at the leader a moment before the agent has saved its id.
    let deadline = Instant::now() + Duration::from_secs(5);
    let agent_id = loop {
        match agent.agent_id() {
            Some(id) => break id,
            None if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            None => panic!("the agent has no id"),
        }
    };

    // A task that runs, holding some memory in its cgroup.
    let (mut runner, rx) = spawn_run(
        &cluster,
        &[
            "run",
            "--mem",
            "64",
            "--",
            "sh",
            "-c",
            "x=$(seq 1 20000); sleep 60",
        ],
    );
    let mut seen = Vec::new();
    wait_line(&rx, "TASK_RUNNING", &mut seen);

    // /state: Mesos' agent shape, the task under its framework's executor.
    let state = json(&agent_get(agent, "/state"));
    assert_eq!(state["id"], agent_id.as_str(), "{state}");
    assert_eq!(state["resources"]["cpus"], 2.0, "{state}");
    assert_eq!(state["used_resources"]["mem"], 64.0, "{state}");
    assert!(
        state["isolation"]["kind"]
            .as_str()
            .is_some_and(|k| k.starts_with("cgroups")),
        "{state}"
    );
    assert_eq!(state["version"], env!("CARGO_PKG_VERSION"));
    assert!(state["flags"]["work_dir"].is_string(), "{state}");
    let frameworks = state["frameworks"].as_array().expect("frameworks");
    assert_eq!(frameworks.len(), 1, "{state}");
    let framework = frameworks[0]["id"].as_str().unwrap().to_string();
    let executor = &frameworks[0]["executors"][0];
    let task = &executor["tasks"][0];
    let task_id = task["id"].as_str().expect("a task").to_string();
    assert_eq!(task["state"], "TASK_RUNNING", "{state}");
    assert_eq!(task["framework_id"], framework.as_str());
    assert_eq!(task["slave_id"], agent_id.as_str());
    assert_eq!(task["resources"]["mem"], 64.0, "{state}");
    assert_eq!(
        executor["directory"],
        format!("/frameworks/{framework}/executors/{task_id}/runs/latest"),
        "{state}"
    );
    assert!(executor["pid"].as_u64().is_some(), "{state}");
    assert!(
        !state.to_string().contains("seq 1 20000"),
        "no command in /state: {state}"
    );

    // /metrics: counts, the launch's latency, the task's cgroup and sandbox.
    let labels = format!("framework_id=\"{framework}\",task_id=\"{task_id}\"");
    let deadline = Instant::now() + Duration::from_secs(10);
    let metrics = loop {
        let m = agent_get(agent, "/metrics");
        // The task's shell has allocated its numbers once it runs its sleep.
        if sample(&m, "agora_agent_task_memory_bytes", &labels).is_some_and(|b| b > 0.0)
            || Instant::now() > deadline
        {
            break m;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let get = |name: &str, labels: &str| {
        sample(&metrics, name, labels)
            .unwrap_or_else(|| panic!("no {name}{{{labels}}} in\n{metrics}"))
    };
    assert_eq!(get("agora_agent_tasks", "state=\"TASK_RUNNING\""), 1.0);
    assert_eq!(get("agora_agent_tasks", "state=\"TASK_FINISHED\""), 0.0);
    assert_eq!(get("agora_agent_executors_running", ""), 1.0);
    assert_eq!(get("agora_agent_tasks_launched_total", ""), 1.0);
    assert_eq!(get("agora_agent_launch_to_running_seconds_count", ""), 1.0);
    let latency = get("agora_agent_launch_to_running_seconds_sum", "");
    assert!(latency > 0.0 && latency < 20.0, "{latency}");
    assert!(get("agora_agent_task_memory_bytes", &labels) > 0.0);
    assert_eq!(
        get("agora_agent_task_memory_limit_bytes", &labels),
        64.0 * 1024.0 * 1024.0
    );
    assert!(get("agora_agent_task_cpu_seconds_total", &labels) >= 0.0);
    assert!(get("agora_agent_task_sandbox_bytes", &labels) > 0.0);
    assert!(get("agora_agent_sandboxes_bytes", "") > 0.0);
    assert_eq!(get("agora_agent_leader_session_connected", ""), 1.0);
    assert!(get("agora_agent_registrations_total", "") >= 1.0);
    assert!(get("agora_agent_leader_sessions_total", "") >= 1.0);
    assert_eq!(get("agora_agent_resources_used", "resource=\"mem\""), 64.0);
    assert!(get("agora_agent_status_updates_total", "state=\"TASK_RUNNING\"") >= 1.0);
    assert!(get("agora_agent_status_update_retries_total", "") >= 0.0);
    assert!(get("agora_agent_unacknowledged_updates", "") >= 0.0);

    // /flags and /version; the agent's own secrets are not there.
    let flags = json(&agent_get(agent, "/flags"));
    assert_eq!(flags["flags"]["listen"], agent.addr.as_str(), "{flags}");
    assert!(flags["flags"]["tls_key"].is_string(), "{flags}");
    assert!(!flags.to_string().contains("BEGIN"), "{flags}");
    let version = json(&agent_get(agent, "/version"));
    assert_eq!(version["version"], env!("CARGO_PKG_VERSION"));
    assert!(version["git_sha"].is_string());

    // Masters: their flags, and the log level changed for 2 s on every one.
    let masters = cluster.addrs();
    let (code, body) = http_get(&masters[0], "/flags").expect("GET /flags");
    assert_eq!(code, 200, "{body}");
    let flags = json(&body);
    assert_eq!(
        flags["flags"]["log_level"], "info,openraft=error",
        "{flags}"
    );
    assert!(flags["flags"]["credentials"].is_string(), "{flags}");
    let credentials = std::fs::read_to_string(&pki().credentials).unwrap();
    let secret = json(&credentials)["credentials"][0]["secret"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!body.contains(&secret), "a secret in /flags: {body}");

    assert_eq!(debug_lines(&cluster.nodes[0]), 0);
    let (code, out) = run(&cluster, &["log-level", "debug", "--duration", "2s"]);
    assert_eq!(code, 0, "{out}");
    let changed_at = Instant::now();
    for m in &masters {
        assert!(out.contains(m.as_str()), "{out}");
        let level = level_of(m);
        assert_eq!(level["level"], "debug", "{m}: {level}");
        assert_eq!(level["base"], "info,openraft=error", "{m}: {level}");
        assert!(
            level["reverts_in_ms"]
                .as_u64()
                .is_some_and(|ms| ms > 0 && ms <= 2000),
            "{level}"
        );
    }
    // It logs at debug now (its peers' heartbeats, if nothing else).
    let deadline = Instant::now() + Duration::from_secs(2);
    while debug_lines(&cluster.nodes[0]) == 0 {
        assert!(Instant::now() < deadline, "no debug line from master 1");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // One replica alone, through the CLI's view of it.
    let (code, out) = run(&cluster, &["log-level", "--master", &masters[1], "--json"]);
    assert_eq!(code, 0, "{out}");
    let listed = json(&out);
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{out}");
    assert_eq!(listed[0]["level"], "debug", "{out}");
    assert_eq!(listed[0]["id"], 2, "{out}");
    // Back by itself.
    let deadline = changed_at + Duration::from_secs(6);
    for m in &masters {
        loop {
            let level = level_of(m);
            if level["level"] == "info,openraft=error" {
                assert_eq!(level["reverts_in_ms"], 0, "{level}");
                break;
            }
            assert!(Instant::now() < deadline, "{m} still at {level}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // And no more debug lines.
    let before = debug_lines(&cluster.nodes[0]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        debug_lines(&cluster.nodes[0]),
        before,
        "still logging at debug"
    );

    // Refusals: a filter that is none (exit 2, naming the field), a principal the ACLs
    // do not let (exit 1), and the level is unchanged.
    let (code, out) = run(
        &cluster,
        &["log-level", "--master", &masters[0], "not a [filter"],
    );
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("level:"), "{out}");
    let credential = pki().credential(TEAM_A);
    let denied = agora(&cluster, &["log-level", "--master", &masters[0], "trace"])
        .env("AGORA_PRINCIPAL", &credential.principal)
        .env("AGORA_SECRET", credential.secret.expose())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&denied.stderr);
    assert_eq!(denied.status.code(), Some(1), "{text}");
    assert!(text.contains("may not"), "{text}");
    assert_eq!(level_of(&masters[0])["level"], "info,openraft=error");

    let _ = runner.kill();
    let _ = runner.wait();
}
