//! Cluster benchmarks with real release processes on loopback:
//! 1. 5,000 simulated agents (`agora-agent --simulate`) registering and heartbeating
//!    against a 3-master quorum: time to register all, and the leader's CPU.
//! 2. Task launch latency: a framework launches `true` tasks one at a time on a real agent
//!    (cgroups); from the accept call to TASK_RUNNING at the framework, plus the master's
//!    own launch-commit-to-RUNNING-commit histogram.
//!
//! 3. End-to-end throughput: the `batch` example runs 2,000 `true` tasks on 10 real agents.
//!
//! 4. `/state` under load (AGORA_BENCH_ONLY=state-load): 50 clients read `/state` as fast
//!    as they can for 60 s against a registry of 10,000+ tasks while `batch` launches tasks
//!    on simulated agents; tasks/s against the same window without readers, leader changes,
//!    and `/health` latency.
//! 5. A million tasks (AGORA_BENCH_ONLY=million): `batch` runs 1,000,000 tasks on simulated
//!    agents; the leader's RSS and snapshot size at 100k and at 1M tasks.
//!
//! 6. Mesos' HTTP API against gRPC (AGORA_BENCH_ONLY=mesos): the third on simulated agents,
//!    run by `batch` (gRPC), then by `mesos_batch` (the same framework on Mesos' v1
//!    scheduler HTTP API, `agora-mesos-driver`) in JSON and in protobuf, over HTTP/2 and
//!    over HTTP/1.1 (AGORA_BENCH_CLIENTS=grpc,json-h2,protobuf-h2,json-h1,protobuf-h1 picks
//!    some).
//!
//! 7. Image tasks (AGORA_BENCH_ONLY=containers): warm and cold launches from a registry on
//!    loopback, against command tasks, and a cold pull of a 50 MB image.
//!
//! 8. Failover to the first offer (AGORA_BENCH_ONLY=failover-offers): SIGKILL and SIGTERM
//!    of the leader -> a new leader -> the first offer a subscribed framework gets from it.
//!
//! The second alone: AGORA_BENCH_ONLY=latency.
//!
//! Run: `cargo bench -p agora-cli --bench cluster` (AGORA_BENCH_QUICK=1 for a short run,
//! AGORA_BENCH_ONLY=throughput for the third alone, AGORA_BENCH_ONLY=throughput-simulated for
//! its simulated-agent half, AGORA_BENCH_ONLY=security for the third with TLS and
//! authentication on and then off).

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agora_driver::{Scheduler, SchedulerDriver, SchedulerHandle, TaskState, TaskStatus};
use agora_proto::v1 as pb;
use agora_test_cluster::*;

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat; `rest` starts at field 3.
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn simulation(report: &mut String, quick: bool) {
    let n = if quick { 1000 } else { 5000 };
    let cluster = Cluster::start(3);
    let (leader, _, _) = cluster.wait_leader(1, Duration::from_secs(10)).await;
    let leader_pid = cluster.nodes[(leader - 1) as usize].pid().unwrap();
    let work = cluster.dir.path().join("sim");
    let started = Instant::now();
    let mut sim = Command::new(binary("agora-agent"))
        .args([
            "--simulate",
            &n.to_string(),
            "--masters",
            &cluster.addrs().join(","),
            "--listen",
            "127.0.0.1:0",
            "--work-dir",
        ])
        .arg(&work)
        .args([
            "--resources",
            "cpus:8;mem:16384;disk:100000",
            "--log-level",
            "warn",
        ])
        .args(pki::pki().agent_flags("127.0.0.1:0"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let registered_in = loop {
        let active = cluster
            .http_state()
            .and_then(|s| {
                s["agents"]
                    .as_array()
                    .map(|a| a.iter().filter(|x| x["active"] == true).count())
            })
            .unwrap_or(0);
        if active >= n {
            break started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "only {active} of {n} agents registered"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Steady state: sessions held, pings every 15 s (the default), allocation every 1 s.
    let window = Duration::from_secs(if quick { 10 } else { 30 });
    let t0 = cpu_ticks(leader_pid);
    tokio::time::sleep(window).await;
    let ticks = cpu_ticks(leader_pid) - t0;
    let cores = ticks as f64 / 100.0 / window.as_secs_f64();
    let connected = cluster
        .nodes
        .iter()
        .find(|x| x.id == leader)
        .and_then(|x| http_get(&x.addr, "/metrics"))
        .and_then(|(_, body)| {
            body.lines()
                .find(|l| l.starts_with("agora_agent_sessions "))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .unwrap_or_default();
    let _ = sim.kill();
    let _ = sim.wait();
    report.push_str(&format!(
        "### {n} simulated agents against a 3-master quorum\n\n| agents | all registered after | sessions on the leader | leader CPU (steady state, {}s window) |\n|---|---|---|---|\n| {n} | {:.1} s | {connected} | {:.3} cores |\n\n",
        window.as_secs(),
        registered_in.as_secs_f64(),
        cores
    ));
}

struct Launcher {
    total: usize,
    launched: usize,
    /// What each task runs: a shell line, or (with `container`) the image's own command.
    command: String,
    container: Option<pb::ContainerInfo>,
    in_flight: Option<(String, Instant)>,
    latencies: Arc<Mutex<Vec<Duration>>>,
}

impl Scheduler for Launcher {
    fn resource_offers(&mut self, h: &SchedulerHandle, offers: Vec<pb::Offer>) {
        let mut decline = Vec::new();
        for o in offers {
            if self.in_flight.is_some() || self.launched >= self.total {
                decline.push(o.id);
                continue;
            }
            let id = format!("bench-{}", self.launched);
            self.launched += 1;
            let task = pb::TaskInfo {
                user: String::new(),
                task_id: id.clone(),
                name: id.clone(),
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
                command: self.command.clone(),
                env: Default::default(),
                executor: None,
                container: self.container.clone(),
                ..Default::default()
            };
            self.in_flight = Some((id, Instant::now()));
            h.accept(vec![o.id], vec![task], Some(0.0));
        }
        if !decline.is_empty() {
            h.decline(decline, Some(0.0));
        }
    }

    fn status_update(&mut self, h: &SchedulerHandle, status: TaskStatus) {
        if status.state == TaskState::TaskRunning {
            if let Some((id, t)) = &self.in_flight {
                if *id == status.task_id {
                    self.latencies.lock().unwrap().push(t.elapsed());
                }
            }
        }
        if status.state == TaskState::TaskFinished
            && self
                .in_flight
                .as_ref()
                .is_some_and(|(id, _)| *id == status.task_id)
        {
            self.in_flight = None;
            if self.launched >= self.total {
                h.stop();
            }
        }
    }
}

async fn launch_latency(report: &mut String, quick: bool) {
    let n = if quick { 20 } else { 200 };
    let cluster = Cluster::start_with(3, &["--allocation-interval", "50ms"]);
    cluster.wait_leader(1, Duration::from_secs(10)).await;
    let mut agent = AgentNode::new(
        &cluster,
        "agent",
        &[
            "--resources",
            "cpus:2;mem:2048;disk:1000",
            "--log-level",
            "warn",
        ],
    );
    agent.start();
    let start = Instant::now();
    while cluster
        .http_state()
        .and_then(|s| s["agents"].as_array().map(|a| a.len()))
        .unwrap_or(0)
        < 1
    {
        assert!(start.elapsed() < Duration::from_secs(20));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let l = launch_latencies(&cluster, "bench", n, "true", None).await;
    let metrics = cluster
        .nodes
        .iter()
        .filter_map(|x| http_get(&x.addr, "/metrics"))
        .map(|(_, b)| b)
        .find(|b| b.contains("agora_raft_is_leader 1"))
        .unwrap_or_default();
    let get = |name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
            })
            .unwrap_or(0.0)
    };
    let (sum, count) = (
        get("agora_task_launch_to_running_seconds_sum"),
        get("agora_task_launch_to_running_seconds_count"),
    );
    report.push_str(&format!(
        "### Task launch latency ({n} tasks `true`, one at a time, real agent with cgroups)\n\n| measured at | p50 | p99 | mean |\n|---|---|---|---|\n| framework: accept call -> TASK_RUNNING received | {:.1} ms | {:.1} ms | {:.1} ms |\n| master: launch committed -> TASK_RUNNING committed ({count} tasks) | | | {:.1} ms |\n\n",
        percentile(&l, 0.5).as_secs_f64() * 1000.0,
        percentile(&l, 0.99).as_secs_f64() * 1000.0,
        l.iter().map(|d| d.as_secs_f64()).sum::<f64>() / l.len().max(1) as f64 * 1000.0,
        if count > 0.0 { sum / count * 1000.0 } else { 0.0 },
    ));
}

/// Accept -> TASK_RUNNING of `n` tasks launched one at a time through a framework of its
/// own, each running `command` or (with `container`) its image's command; sorted.
async fn launch_latencies(
    cluster: &Cluster,
    name: &str,
    n: usize,
    command: &str,
    container: Option<pb::ContainerInfo>,
) -> Vec<Duration> {
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let framework = pb::FrameworkInfo {
        name: name.into(),
        roles: vec!["*".into()],
        ..Default::default()
    };
    let driver = SchedulerDriver::with_client(cluster.client(), framework);
    tokio::time::timeout(
        Duration::from_secs(600),
        driver.run(Launcher {
            total: n,
            launched: 0,
            command: command.into(),
            container,
            in_flight: None,
            latencies: latencies.clone(),
        }),
    )
    .await
    .expect("launches finished")
    .unwrap();
    let mut l = latencies.lock().unwrap().clone();
    l.sort();
    l
}

/// Image tasks (AGORA_BENCH_ONLY=containers): a registry on loopback, a busybox image and
/// one with a 50 MB layer; the first launch of the small image (cold: pulled), then warm
/// launches one at a time (layers in the store), against command tasks on the same agent;
/// and a cold pull of the 50 MB image.
async fn containers(report: &mut String, quick: bool) {
    use agora_test_cluster::registry::{ImageSpec, Registry};
    let n = if quick { 10 } else { 100 };
    let registry = Registry::start().unwrap();
    let small = registry
        .push(&ImageSpec {
            name: "bench/busybox:v1".into(),
            cmd: vec!["true".into()],
            ..Default::default()
        })
        .unwrap();
    let big = registry
        .push(&ImageSpec {
            name: "bench/big:v1".into(),
            cmd: vec!["true".into()],
            padding_bytes: 50 * 1024 * 1024,
            ..Default::default()
        })
        .unwrap();
    let cluster = Cluster::start_with(3, &["--allocation-interval", "50ms"]);
    cluster.wait_leader(1, Duration::from_secs(10)).await;
    let mut agent = AgentNode::new(
        &cluster,
        "agent",
        &[
            "--resources",
            "cpus:2;mem:2048;disk:1000",
            "--log-level",
            "warn",
        ],
    );
    agent.start();
    cluster.wait_active_agents(1, Duration::from_secs(20)).await;
    let image = |reference: &str| {
        Some(pb::ContainerInfo {
            image: reference.to_string(),
            ..Default::default()
        })
    };
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let cold_small = launch_latencies(&cluster, "cold", 1, "", image(&small.reference)).await;
    let warm = launch_latencies(&cluster, "warm", n, "", image(&small.reference)).await;
    let plain = launch_latencies(&cluster, "plain", n, "true", None).await;
    let cold_big = launch_latencies(&cluster, "big", 1, "", image(&big.reference)).await;
    let row = |what: &str, l: &[Duration]| {
        format!(
            "| {what} | {} | {:.1} ms | {:.1} ms |\n",
            l.len(),
            ms(percentile(l, 0.5)),
            ms(percentile(l, 0.99))
        )
    };
    report.push_str(&format!(
        "### Image tasks: accept -> TASK_RUNNING (real agent, crun, registry on loopback)\n\n| task | launches | p50 | p99 |\n|---|---|---|---|\n{}{}{}{}\n",
        row("busybox image, cold (manifest, config and the busybox layer pulled)", &cold_small),
        row("busybox image, warm (layers in the store, no registry request)", &warm),
        row("command task `true` (no image), same agent", &plain),
        row("image with a 50 MB layer, cold (pulled, digest checked, unpacked)", &cold_big),
    ));
}

/// End-to-end throughput: the `batch` example runs `n` `true` tasks (0.5 cpu each) on 10
/// real agents (cgroups) under a 3-master quorum; tasks launched and finished per second,
/// from subscription to the last TASK_FINISHED.
/// `secure`: TLS, credentials and ACLs on (the default), or every process `--insecure`.
/// The framework a throughput run uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Client {
    /// `batch`, on the gRPC API.
    Grpc,
    /// `mesos_batch`, on Mesos' scheduler HTTP API, in this encoding, over HTTP/2 (true)
    /// or HTTP/1.1.
    Mesos(&'static str, bool),
}

async fn throughput(report: &mut String, quick: bool, simulated: bool, secure: bool) {
    throughput_of(report, quick, simulated, secure, Client::Grpc).await;
}

async fn throughput_of(
    report: &mut String,
    quick: bool,
    simulated: bool,
    secure: bool,
    client: Client,
) -> f64 {
    let n = match (quick, simulated) {
        (true, _) => 300,
        (false, false) => 2000,
        (false, true) => 20000,
    };
    let agents = 10;
    let cluster = if secure {
        Cluster::start_with(3, &["--allocation-interval", "50ms"])
    } else {
        Cluster::start_insecure(3, &["--allocation-interval", "50ms"])
    };
    cluster.wait_leader(1, Duration::from_secs(10)).await;
    let mut nodes = Vec::new();
    if simulated {
        let mut a = AgentNode::new(
            &cluster,
            "simulated",
            &[
                "--simulate",
                &agents.to_string(),
                "--resources",
                "cpus:8;mem:8192;disk:1000",
                "--log-level",
                "warn",
            ],
        );
        a.start();
        nodes.push(a);
    }
    for i in 0..if simulated { 0 } else { agents } {
        let mut a = AgentNode::new(
            &cluster,
            &format!("agent-{i}"),
            &[
                "--resources",
                "cpus:8;mem:8192;disk:1000",
                "--log-level",
                "warn",
            ],
        );
        a.start();
        nodes.push(a);
    }
    cluster
        .wait_active_agents(agents, Duration::from_secs(30))
        .await;
    let pids: Vec<u32> = cluster
        .nodes
        .iter()
        .filter_map(|m| m.pid())
        .chain(nodes.iter().filter_map(|a| a.pid()))
        .collect();
    let ticks_before: Vec<u64> = pids.iter().map(|p| cpu_ticks(*p)).collect();
    let mut cmd = match client {
        Client::Grpc => Command::new(example("agora-driver", "batch")),
        Client::Mesos(encoding, http2) => {
            let mut c = Command::new(example("agora-mesos-driver", "mesos_batch"));
            c.args(["--encoding", encoding]);
            if !http2 {
                c.arg("--http1");
            }
            c
        }
    };
    // An insecure cluster's client must not find the fixture's (TLS) configuration.
    let no_config = tempfile::tempdir().unwrap();
    if !secure {
        cmd.env_remove("AGORA_CONFIG")
            .env("XDG_CONFIG_HOME", no_config.path());
    }
    let started = Instant::now();
    let out = cmd
        .args([
            "--masters",
            &cluster.addrs().join(","),
            "--name",
            "throughput",
            "--tasks",
            &n.to_string(),
            "--cpus",
            "0.5",
            "--mem",
            "32",
        ])
        .output()
        .unwrap();
    let wall = started.elapsed();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = text
        .lines()
        .find(|l| l.contains("tasks finished in"))
        .unwrap_or("")
        .to_string();
    let ticks: Vec<u64> = pids
        .iter()
        .zip(&ticks_before)
        .map(|(p, b)| cpu_ticks(*p).saturating_sub(*b))
        .collect();
    let hz = 100.0;
    let masters: f64 = ticks[..3].iter().sum::<u64>() as f64 / hz;
    // What the leader did for it: log entries by kind, offers, and what became of the
    // agents' status updates (resent copies cost the master work too).
    let (leader, term, _) = cluster.wait_leader(1, Duration::from_secs(10)).await;
    let m = leader_metrics(&cluster.addrs()[leader as usize - 1]);
    let count = |name: &str| metric(&m, name);
    let leader_work = format!(
        "leader {leader} (term {term}), its CPU {:.1} s: {:.0} offers, {:.0} launch and {:.0} update log commands; agents' updates {:.0} recorded, {:.0} known, {:.0} resent",
        ticks[leader as usize - 1] as f64 / hz,
        count("agora_offers_total"),
        count(r#"agora_registry_commands_total{kind="launch_tasks",outcome="committed"}"#),
        count(r#"agora_registry_commands_total{kind="update_task",outcome="committed"}"#),
        count(r#"agora_status_updates_total{outcome="recorded"}"#),
        count(r#"agora_status_updates_total{outcome="known"}"#),
        count(r#"agora_status_updates_total{outcome="resent"}"#),
    );
    let agent_cpu: f64 = ticks[3..].iter().sum::<u64>() as f64 / hz;
    let what = if simulated {
        "simulated agents (one `agora-agent --simulate 10` process; each task ends at once)"
    } else {
        "real agents with cgroups, a process per task"
    };
    let security = if secure {
        "TLS + credentials + ACLs"
    } else {
        "--insecure"
    };
    let framework = match client {
        Client::Grpc => "`batch` example, gRPC".to_string(),
        Client::Mesos(encoding, http2) => {
            let http = if http2 { "HTTP/2" } else { "HTTP/1.1" };
            format!("`mesos_batch` example, Mesos' scheduler HTTP API in {encoding} over {http}")
        }
    };
    report.push_str(&format!(
        "### End-to-end throughput, {security} ({n} tasks `true`, 0.5 cpu each, 3 masters, {agents} {what}, {framework})\n\n| tasks | wall (process start to exit) | tasks/s | batch's own report | CPU s: masters / agents |\n|---|---|---|---|---|\n| {n} | {:.2} s | {:.0} | {line} | {masters:.1} / {agent_cpu:.1} |\n\n{leader_work}\n\n",
        wall.as_secs_f64(),
        n as f64 / wall.as_secs_f64(),
    ));
    n as f64 / wall.as_secs_f64()
}

/// A counter or gauge from a Prometheus text page.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// The leader's `/metrics`.
fn leader_metrics(addr: &str) -> String {
    https_get(addr, "/metrics").map(|r| r.1).unwrap_or_default()
}

/// Resident memory of a process, in MB.
fn rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// `batch` running `tasks` 0.5-cpu, 32 MB tasks on `cluster`.
fn batch_command(cluster: &Cluster, name: &str, tasks: usize) -> Command {
    let mut cmd = Command::new(example("agora-driver", "batch"));
    cmd.args([
        "--masters",
        &cluster.addrs().join(","),
        "--name",
        name,
        "--tasks",
        &tasks.to_string(),
        "--cpus",
        "0.5",
        "--mem",
        "32",
    ]);
    cmd
}

/// `n` simulated agents of `resources` (one `agora-agent --simulate n`), all active.
async fn simulated_agents(cluster: &Cluster, n: usize, resources: &str) -> AgentNode {
    let mut sim = AgentNode::new(
        cluster,
        "simulated",
        &[
            "--simulate",
            &n.to_string(),
            "--resources",
            resources,
            "--log-level",
            "warn",
        ],
    );
    sim.start();
    cluster.wait_active_agents(n, Duration::from_secs(30)).await;
    sim
}

/// `batch` launching tasks on `cluster` until killed (0.5 cpu, tasks end at once on
/// simulated agents).
fn endless_batch(cluster: &Cluster, name: &str, tasks: usize) -> std::process::Child {
    batch_command(cluster, name, tasks)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Tasks launched per second by the leader over `window`, and the terms seen.
async fn launch_rate(addr: &str, window: Duration) -> f64 {
    let before = metric(&leader_metrics(addr), "agora_tasks_launched_total");
    let started = Instant::now();
    tokio::time::sleep(window).await;
    let after = metric(&leader_metrics(addr), "agora_tasks_launched_total");
    (after - before) / started.elapsed().as_secs_f64()
}

/// Issue 12's read flood: 50 clients reading `/state` as fast as they can against 10,000+
/// tasks while a framework launches tasks.
async fn state_load(report: &mut String, quick: bool) {
    let window = Duration::from_secs(if quick { 15 } else { 60 });
    let preload = if quick { 2000 } else { 10_000 };
    let cluster = Cluster::start_with(
        3,
        &[
            "--allocation-interval",
            "50ms",
            "--max-completed-tasks-per-framework",
            "10000",
        ],
    );
    let (leader, term0, _) = cluster.wait_leader(1, Duration::from_secs(10)).await;
    let addr = cluster.addrs()[leader as usize - 1].clone();
    let _sim = simulated_agents(&cluster, 10, "cpus:8;mem:8192;disk:1000").await;
    // The registry's 10,000 finished tasks.
    let out = batch_command(&cluster, "preload", preload)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let state_bytes = https_get(&addr, "/state").map(|r| r.1.len()).unwrap_or(0);

    // Every term change any replica reports, with when it was seen.
    let bench_start = Instant::now();
    let watching = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let term_watch = {
        let (addrs, watching) = (cluster.addrs(), watching.clone());
        std::thread::spawn(move || {
            let mut last = vec![0u64; addrs.len()];
            let mut changes = Vec::new();
            while watching.load(std::sync::atomic::Ordering::Relaxed) {
                for (i, a) in addrs.iter().enumerate() {
                    let term = https_get(a, "/health")
                        .and_then(|(_, b)| serde_json::from_str::<serde_json::Value>(&b).ok())
                        .and_then(|v| v["term"].as_u64());
                    if let Some(t) = term {
                        if t != last[i] {
                            changes.push(format!(
                                "{:.1}s: replica {} term {t}",
                                bench_start.elapsed().as_secs_f64(),
                                i + 1
                            ));
                            last[i] = t;
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            changes
        })
    };
    let mut load = endless_batch(&cluster, "load", 10_000_000);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let quiet_from = bench_start.elapsed().as_secs_f64();
    let quiet = launch_rate(&addr, window).await;
    let readers_from = bench_start.elapsed().as_secs_f64();

    let reading = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let reads = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let failed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let readers: Vec<_> = (0..50)
        .map(|_| {
            let (addr, reading, reads, failed) =
                (addr.clone(), reading.clone(), reads.clone(), failed.clone());
            std::thread::spawn(move || {
                let client = HttpsReader::new(&addr).expect("a TLS client");
                let mut buf = Vec::new();
                while reading.load(std::sync::atomic::Ordering::Relaxed) {
                    match client.get(&addr, "/state", &mut buf) {
                        Some((200, start)) if buf.len() > start && buf.ends_with(b"}") => {
                            reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                        }
                        _ => failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    let probing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let prober = {
        let (addr, probing) = (addr.clone(), probing.clone());
        std::thread::spawn(move || {
            let mut latencies = Vec::new();
            let mut failures = 0u32;
            while probing.load(std::sync::atomic::Ordering::Relaxed) {
                let t = Instant::now();
                match https_get(&addr, "/health") {
                    Some((200, _)) => latencies.push(t.elapsed()),
                    _ => failures += 1,
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            latencies.sort();
            (latencies, failures)
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let loaded = launch_rate(&addr, window).await;
    reading.store(false, std::sync::atomic::Ordering::Relaxed);
    probing.store(false, std::sync::atomic::Ordering::Relaxed);
    for r in readers {
        let _ = r.join();
    }
    let (health, health_failures) = prober.join().unwrap();
    let _ = load.kill();
    let _ = load.wait();
    let readers_to = bench_start.elapsed().as_secs_f64();
    watching.store(false, std::sync::atomic::Ordering::Relaxed);
    let terms = term_watch.join().unwrap();
    let (leader_after, term_after, _) = cluster.wait_leader(1, Duration::from_secs(10)).await;
    let m = leader_metrics(&addr);
    let renders = metric(&m, "agora_state_render_seconds_count");
    let shared = metric(&m, "agora_state_shared_total");
    let reads = reads.load(std::sync::atomic::Ordering::Relaxed);
    let failed = failed.load(std::sync::atomic::Ordering::Relaxed);
    report.push_str(&format!(
        "### `/state` under load (3 masters, 10 simulated agents, `batch` launching 0.5-cpu tasks; {preload} finished tasks preloaded, `/state` {:.1} MB; {}-s windows)\n\n| | tasks launched/s | `/state` reads (ok / failed) | `/health` p50 / p99 / max (failed) | leader changes |\n|---|---|---|---|---|\n| no readers | {quiet:.0} | - | - | - |\n| 50 readers | {loaded:.0} ({:.0}% of no readers) | {reads} / {failed} ({:.1}/s; {renders:.0} renders, {shared:.0} answers shared) | {:.1} / {:.1} / {:.1} ms ({health_failures}) | {} (leader {leader} term {term0} -> leader {leader_after} term {term_after}) |\n\n",
        state_bytes as f64 / 1e6,
        window.as_secs(),
        100.0 * loaded / quiet.max(1.0),
        reads as f64 / window.as_secs_f64(),
        percentile(&health, 0.5).as_secs_f64() * 1e3,
        percentile(&health, 0.99).as_secs_f64() * 1e3,
        health.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        if leader_after == leader && term_after == term0 { 0 } else { 1 },
    ));
    report.push_str(&format!(
        "Terms seen (no readers from {quiet_from:.1} s, 50 readers from {readers_from:.1} s to {readers_to:.1} s): {}\n\n",
        terms.join("; ")
    ));
}

/// A million tasks on simulated agents: the leader's RSS and snapshot size at 100k and at
/// 1M finished tasks stay flat (retention keeps 1,000 per framework).
async fn million(report: &mut String, quick: bool) {
    let total: u64 = if quick { 200_000 } else { 1_000_000 };
    let cluster = Cluster::start_with(3, &["--allocation-interval", "20ms"]);
    let (leader, term0, _) = cluster.wait_leader(1, Duration::from_secs(10)).await;
    let addr = cluster.addrs()[leader as usize - 1].clone();
    let pid = cluster.nodes[leader as usize - 1].pid().unwrap();
    let _sim = simulated_agents(&cluster, 20, "cpus:16;mem:16384;disk:1000").await;
    let started = Instant::now();
    let mut batch = endless_batch(&cluster, "million", total as usize);
    let mut rows = String::new();
    let mut marks = vec![total / 10, total / 4, total / 2, total];
    marks.reverse();
    let mut next = marks.pop();
    // The leader's RSS every half second before each mark: a point reading says more of
    // when the allocator last returned memory than of what the leader holds.
    let mut rss = Vec::new();
    // The heap in use and held from the system (MB), sampled with the RSS: a rise in use is
    // something kept, a rise only in held is free memory glibc keeps.
    let mut heap: Vec<(f64, f64)> = Vec::new();
    // The last snapshot's size, sampled alike: one snapshot holds the tasks live when it
    // was built, which a single reading catches at a peak or a trough.
    let mut snapshot: Vec<(f64, f64)> = Vec::new();
    const WINDOW: usize = 20;
    while let Some(mark) = next {
        let m = leader_metrics(&addr);
        let launched = metric(&m, "agora_tasks_launched_total") as u64;
        rss.push(rss_mb(pid));
        heap.push((
            metric(&m, "agora_heap_in_use_bytes") / 1e6,
            metric(&m, "agora_heap_held_bytes") / 1e6,
        ));
        snapshot.push((
            metric(&m, "agora_snapshot_bytes") / 1e6,
            metric(&m, "agora_snapshot_tasks"),
        ));
        if launched >= mark {
            // Let a snapshot past this point be built (every 2,000 entries).
            tokio::time::sleep(Duration::from_secs(2)).await;
            rss.push(rss_mb(pid));
            let m = leader_metrics(&addr);
            // The last 10 s before the mark: the first row's window would otherwise hold
            // the start, when nothing has been allocated yet.
            let from = rss.len().saturating_sub(WINDOW);
            rss.drain(..from);
            let from = heap.len().saturating_sub(WINDOW);
            heap.drain(..from);
            let from = snapshot.len().saturating_sub(WINDOW);
            snapshot.drain(..from);
            let n = snapshot.len().max(1) as f64;
            let snapshot_mean = snapshot.iter().map(|s| s.0).sum::<f64>() / n;
            let snapshot_tasks = snapshot.iter().map(|s| s.1).sum::<f64>() / n;
            // Bytes per task held: the snapshot holds the kept finished tasks and those in
            // flight, whose number follows the launch rate of the moment, not the history.
            let per_task = snapshot
                .iter()
                .map(|s| s.0 * 1e6 / s.1.max(1.0))
                .sum::<f64>()
                / n;
            snapshot.clear();
            let mean = rss.iter().sum::<f64>() / rss.len() as f64;
            let max = rss.iter().cloned().fold(0.0, f64::max);
            rss.clear();
            let in_use = heap.iter().map(|h| h.0).sum::<f64>() / heap.len().max(1) as f64;
            let held = heap.iter().map(|h| h.1).sum::<f64>() / heap.len().max(1) as f64;
            heap.clear();
            rows.push_str(&format!(
                "| {launched} | {:.0} s | {mean:.1} / {max:.1} MB | {in_use:.1} / {held:.1} MB | {snapshot_mean:.2} MB, {snapshot_tasks:.0} tasks, {per_task:.0} B/task ({} snapshots, {:.1} s building) | {} |\n",
                started.elapsed().as_secs_f64(),
                metric(&m, "agora_snapshot_builds_total"),
                metric(&m, "agora_snapshot_build_seconds_total"),
                metric(&m, "agora_registry_tasks"),
            ));
            next = marks.pop();
        }
        if let Ok(Some(status)) = batch.try_wait() {
            assert!(
                status.success() || next.is_none(),
                "batch ended early: {status}"
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let _ = batch.kill();
    let _ = batch.wait();
    let (leader_after, term_after, _) = cluster.wait_leader(1, Duration::from_secs(10)).await;
    report.push_str(&format!(
        "### {total} tasks on simulated agents (3 masters, 20 simulated agents, `batch`, 0.5-cpu tasks that end at once; retention 1,000 per framework)\n\n| tasks launched | elapsed | leader RSS over the 10 s before, mean / max | leader heap in use / held, mean | snapshot, mean: size, tasks, bytes per task | tasks in the registry |\n|---|---|---|---|---|---|\n{rows}\nLeader {leader} term {term0} -> leader {leader_after} term {term_after}.\n\n"
    ));
}

/// Records when each offer arrives (with its id, which carries the offering leader's term)
/// and declines it for 0.1 s, so the agents are offered again at the next cycle.
struct OfferClock {
    offers: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl Scheduler for OfferClock {
    fn resource_offers(&mut self, h: &SchedulerHandle, offers: Vec<pb::Offer>) {
        let now = Instant::now();
        let ids: Vec<String> = offers.into_iter().map(|o| o.id).collect();
        self.offers
            .lock()
            .unwrap()
            .extend(ids.iter().map(|id| (now, id.clone())));
        drop(h.decline(ids, Some(0.1)));
    }
    fn status_update(&mut self, _h: &SchedulerHandle, _s: TaskStatus) {}
}

/// The term of the leader that made an offer: its id is `<random>-<term>-O<seq>`.
fn offer_term(id: &str) -> u64 {
    id.split('-')
        .nth(1)
        .and_then(|t| t.parse().ok())
        .unwrap_or(0)
}

/// Failover to the first offer (AGORA_BENCH_ONLY=failover-offers): a framework subscribed
/// to a 3-master quorum (default flags) with 10 simulated agents declines every offer for
/// 0.1 s. The leader is sent SIGKILL (then, in as many trials, SIGTERM); measured from the
/// signal: a new leader in a higher term (statuses polled every 5 ms), and the first offer
/// the framework receives from it.
async fn failover_offers(report: &mut String, quick: bool) {
    let trials = if quick { 5 } else { 20 };
    let mut cluster = Cluster::start_with(3, &[]);
    cluster.wait_leader(1, Duration::from_secs(10)).await;
    let _agents = simulated_agents(&cluster, 10, "cpus:8;mem:16384;disk:100000").await;
    let offers = Arc::new(Mutex::new(Vec::new()));
    let framework = pb::FrameworkInfo {
        name: "failover-offers".into(),
        roles: vec!["*".into()],
        ..Default::default()
    };
    let driver = SchedulerDriver::with_client(cluster.client(), framework);
    let run = tokio::spawn(driver.run(OfferClock {
        offers: offers.clone(),
    }));
    let waiting = Instant::now();
    while offers.lock().unwrap().is_empty() {
        assert!(
            waiting.elapsed() < Duration::from_secs(30),
            "no offer at all"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    report.push_str(&format!(
        "### Failover: signal to the leader -> new leader -> first offer from it ({trials} trials each, 10 simulated agents, one framework)

| signal | new leader p50 | p99 | first offer p50 | p99 |
|---|---|---|---|---|
"
    ));
    for (name, sig) in [("SIGKILL", libc::SIGKILL), ("SIGTERM", libc::SIGTERM)] {
        let (mut elected, mut offered) = (Vec::new(), Vec::new());
        for _ in 0..trials {
            let (leader, term, _) = cluster.wait_leader(1, Duration::from_secs(20)).await;
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let others: Vec<u64> = [1, 2, 3].into_iter().filter(|i| *i != leader).collect();
            let signalled = Instant::now();
            if sig == libc::SIGKILL {
                cluster.node(leader).kill();
            } else {
                signal(cluster.node(leader).pid().expect("running"), sig);
            }
            let (mut e, mut o) = (None, None);
            while (e.is_none() || o.is_none()) && signalled.elapsed() < Duration::from_secs(20) {
                if e.is_none() {
                    for id in &others {
                        if let Some(s) = cluster.node(*id).status().await {
                            if s.role == "leader" && s.term > term {
                                e = Some(signalled.elapsed());
                            }
                        }
                    }
                }
                if o.is_none() {
                    o = offers
                        .lock()
                        .unwrap()
                        .iter()
                        .find(|(at, id)| *at >= signalled && offer_term(id) > term)
                        .map(|(at, _)| *at - signalled);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let (e, o) = (e.expect("a new leader"), o.expect("an offer from it"));
            eprintln!("{name}: new leader {e:?}, first offer {o:?}");
            elected.push(e);
            offered.push(o);
            let stopped = Instant::now();
            while cluster.node(leader).is_running() && cluster.node(leader).exit_code().is_none() {
                assert!(stopped.elapsed() < Duration::from_secs(10), "still running");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            cluster.node(leader).start();
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        elected.sort();
        offered.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        report.push_str(&format!(
            "| {name} | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms |\n",
            ms(percentile(&elected, 0.5)),
            ms(percentile(&elected, 0.99)),
            ms(percentile(&offered, 0.5)),
            ms(percentile(&offered, 0.99)),
        ));
    }
    report.push('\n');
    run.abort();
}

fn main() {
    let quick = std::env::var("AGORA_BENCH_QUICK").is_ok();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut report = String::new();
    let only = std::env::var("AGORA_BENCH_ONLY").unwrap_or_default();
    rt.block_on(async {
        if only == "state-load" {
            state_load(&mut report, quick).await;
            return;
        }
        if only == "containers" {
            containers(&mut report, quick).await;
            return;
        }
        if only == "latency" {
            launch_latency(&mut report, quick).await;
            return;
        }
        if only == "failover-offers" {
            failover_offers(&mut report, quick).await;
            return;
        }
        if only == "million" {
            million(&mut report, quick).await;
            return;
        }
        if only == "mesos" {
            let all = [
                ("grpc", Client::Grpc),
                ("json-h2", Client::Mesos("json", true)),
                ("protobuf-h2", Client::Mesos("protobuf", true)),
                ("json-h1", Client::Mesos("json", false)),
                ("protobuf-h1", Client::Mesos("protobuf", false)),
            ];
            // AGORA_BENCH_CLIENTS=grpc,json-h1 (say) runs some of them, AGORA_BENCH_ROUNDS
            // (default 3) times each, one client after the other in every round.
            let chosen = std::env::var("AGORA_BENCH_CLIENTS").unwrap_or_default();
            let chosen: Vec<&str> = chosen.split(',').filter(|c| !c.is_empty()).collect();
            let clients: Vec<(&str, Client)> = all
                .into_iter()
                .filter(|(name, _)| chosen.is_empty() || chosen.contains(name))
                .collect();
            let rounds: usize = std::env::var("AGORA_BENCH_ROUNDS")
                .ok()
                .and_then(|r| r.parse().ok())
                .unwrap_or(if quick { 1 } else { 3 });
            let mut rates: Vec<Vec<f64>> = vec![Vec::new(); clients.len()];
            for _ in 0..rounds {
                for (i, (_, client)) in clients.iter().enumerate() {
                    let rate = throughput_of(&mut report, quick, true, true, *client).await;
                    rates[i].push(rate);
                }
            }
            let median = |v: &[f64]| {
                let mut v = v.to_vec();
                v.sort_by(f64::total_cmp);
                v[v.len() / 2]
            };
            let grpc = clients
                .iter()
                .position(|(name, _)| *name == "grpc")
                .map(|i| median(&rates[i]));
            report.push_str(&format!(
                "### Summary over {rounds} rounds (tasks/s; median and each round)\n\n| client | median | rounds | vs gRPC's median |\n|---|---|---|---|\n"
            ));
            for (i, (name, _)) in clients.iter().enumerate() {
                let m = median(&rates[i]);
                let each: Vec<String> = rates[i].iter().map(|r| format!("{r:.0}")).collect();
                let vs = grpc.map_or("-".to_string(), |g| format!("{:.0}%", 100.0 * m / g));
                report.push_str(&format!(
                    "| {name} | {m:.0} | {} | {vs} |\n",
                    each.join(", ")
                ));
            }
            report.push('\n');
            return;
        }
        if only == "throughput-simulated" {
            throughput(&mut report, quick, true, true).await;
            return;
        }
        if only == "security" {
            for simulated in [true, false] {
                throughput(&mut report, quick, simulated, true).await;
                throughput(&mut report, quick, simulated, false).await;
            }
            return;
        }
        if only == "throughput" {
            throughput(&mut report, quick, true, true).await;
            throughput(&mut report, quick, false, true).await;
            return;
        }
        throughput(&mut report, quick, true, true).await;
        throughput(&mut report, quick, true, false).await;
        throughput(&mut report, quick, false, true).await;
        throughput(&mut report, quick, false, false).await;
        launch_latency(&mut report, quick).await;
        simulation(&mut report, quick).await;
    });
    println!("{report}");
    let out =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-cluster.md");
    let _ = std::fs::write(&out, &report);
}
