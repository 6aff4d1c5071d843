//! One fault-injection run: a cluster of real processes, each in its own network namespace
//! ([`crate::net`]), frameworks working on it (`jepsen-workload`), the nemesis breaking it
//! on a seeded schedule ([`crate::nemesis`]), samplers recording every master's `/health`
//! and the leader's `/state`; then the checkers ([`crate::checker`]) and the report
//! ([`crate::report`]) over what was recorded.
//!
//! Nothing a run starts outlives it. Every process starts in its own process group with a
//! parent-death signal ([`agora_test_cluster::reap::spawn`]), so the cluster dies with the
//! harness even when it is SIGKILLed; each carries the owner mark
//! ([`agora_test_cluster::reap::OWNER_ENV`]) `agora-<prefix>-<host>`, which its children
//! inherit, and an agent's cgroup root is that same name. The end of a run (also an early
//! return or a panic: `Drop`) kills every process group, then every process still marked
//! (executors, which leave their agent's session on purpose, and their tasks), then removes
//! the agents' cgroup roots; [`cleanup_stale`] does the same for whatever a SIGKILLed
//! earlier run with the same prefix left, before the next run starts.
//!
//! What it must not do: look inside any process. It starts, signals and partitions them,
//! speaks HTTP and gRPC to them, and reads the files they write (histories, markers,
//! agent ids), as an operator could; to end what a run started, it reads their owner mark
//! and their cgroups, as an operator's `ps` would.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agora_driver::MasterClient;
use agora_proto::v1 as pb;
use agora_proto::v1::operator_client::OperatorClient;
use agora_test_cluster::http_get;
use agora_test_cluster::reap;

use crate::checker::{self, RunData, Verdict};
use crate::clock::unix_ms;
use crate::history::{self, op, Event, EventType, HealthSample, Recorder, StateSample};
use crate::nemesis::{self, Fault, Plan, Rng, Step};
use crate::net::{self, Host, Network};
use crate::{register, report};

const MASTER_PORT: u16 = 5050;
const AGENT_PORT: u16 = 5051;

/// What to run.
#[derive(Clone, Debug)]
pub struct Options {
    pub masters: usize,
    pub agents: usize,
    pub frameworks: usize,
    /// Faults run until this long after the start; then everything is healed.
    pub time_limit: Duration,
    /// The faults the nemesis draws from.
    pub faults: Vec<Fault>,
    pub seed: u64,
    /// Explicit fault steps instead of the seeded schedule (the self-test uses this).
    pub schedule: Option<Vec<Step>>,
    /// The run directory is created under this one.
    pub out: PathBuf,
    /// Directory holding `agora-master`, `agora-agent`, `jepsen-workload` and
    /// `agora-master-faulty`.
    pub bin_dir: PathBuf,
    /// Deliberate master bugs (self-test): runs `agora-master-faulty` with these.
    pub master_faults: Vec<String>,
    /// How long the cluster runs after the final heal before the end (recovery window).
    pub settle: Duration,
    /// Network names: interface prefix and subnet (10.213.SUBNET.0/24).
    pub prefix: String,
    pub subnet: u8,
    /// Resources of each agent.
    pub agent_resources: String,
    /// Run the workload's tasks as image tasks: from a busybox image in a registry the
    /// harness serves on the bridge address, their markers written through a volume.
    pub image_tasks: bool,
    /// Register clients ([`crate::register`]) in the harness's namespace: 0 for none.
    pub register_clients: usize,
}

impl Options {
    pub fn new(bin_dir: PathBuf, out: PathBuf) -> Options {
        Options {
            masters: 3,
            agents: 3,
            frameworks: 3,
            time_limit: Duration::from_secs(120),
            faults: nemesis::parse_nemesis("kill,pause,partition,agent").expect("valid"),
            seed: 1,
            schedule: None,
            out,
            bin_dir,
            master_faults: Vec::new(),
            settle: Duration::from_secs(10),
            prefix: "agj".into(),
            subnet: 77,
            agent_resources: "cpus:2;mem:2048;disk:1000".into(),
            image_tasks: false,
            register_clients: 4,
        }
    }
}

/// What a run found.
#[derive(Debug)]
pub struct Outcome {
    pub run_dir: PathBuf,
    pub verdicts: Vec<Verdict>,
    pub summary: String,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.verdicts.iter().all(|v| v.passed)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error(transparent)]
    Net(#[from] net::NetError),
    #[error(transparent)]
    History(#[from] history::HistoryError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Setup(String),
    #[error("interrupted")]
    Interrupted,
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> HarnessError {
    let context = context.into();
    move |source| HarnessError::Io { context, source }
}

// ---------------------------------------------------------------------------------------
// Processes

/// One cluster process in its host's namespace, restartable with the same arguments.
struct Proc {
    name: String,
    host: Host,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
    paused: bool,
}

impl Proc {
    fn start(&mut self) -> Result<(), HarnessError> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(io(format!("opening {}", self.log.display())))?;
        let err = log.try_clone().map_err(io("log"))?;
        let mut cmd = self.host.command(&self.program);
        cmd.args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env(reap::OWNER_ENV, owner(&self.host))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err);
        let child = reap::spawn(cmd).map_err(io(format!(
            "starting {} ({})",
            self.name,
            self.program.display()
        )))?;
        self.child = Some(child);
        self.paused = false;
        Ok(())
    }

    fn signal(&self, sig: i32) {
        if let Some(c) = &self.child {
            agora_test_cluster::signal(c.id(), sig);
        }
    }

    /// SIGKILL to its process group. An agent's executors (in sessions of their own) run
    /// on, as after a crash.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            if self.paused {
                agora_test_cluster::signal(c.id(), libc::SIGCONT);
            }
            reap::kill_group(c.id());
            let _ = c.kill();
            let _ = c.wait();
        }
        self.paused = false;
    }

    fn pause(&mut self) {
        if self.child.is_some() && !self.paused {
            self.signal(libc::SIGSTOP);
            self.paused = true;
        }
    }

    fn resume(&mut self) {
        if self.paused {
            self.signal(libc::SIGCONT);
            self.paused = false;
        }
    }

    fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The owner mark of every process started on `host` (and of what they start), which is
/// also the cgroup root of an agent there: `agora-<prefix>-<host>`.
fn owner(host: &Host) -> String {
    format!("agora-{}", host.netns)
}

/// The prefix of every owner mark and agent cgroup root of runs with network `prefix`.
fn owner_prefix(prefix: &str) -> String {
    format!("agora-{prefix}-")
}

/// Ends every process marked as started by a run with network `prefix` (executors and
/// tasks included), removes its agents' cgroup roots, then its network
/// ([`net::cleanup_stale`]): what a SIGKILLed earlier run left. Masters, agents and
/// workloads die with the harness (parent-death signal); executors and cgroups do not.
pub fn cleanup_stale(prefix: &str) -> Result<(), HarnessError> {
    let owners = owner_prefix(prefix);
    let killed = reap::kill_owned(|o| o.starts_with(&owners));
    if !killed.is_empty() {
        eprintln!(
            "jepsen: killed {} processes an earlier run left: {killed:?}",
            killed.len()
        );
    }
    let mut errors = Vec::new();
    for root in reap::cgroup_roots(&owners) {
        if let Err(e) = reap::remove_cgroup_root(&root) {
            errors.push(e.to_string());
        }
    }
    net::cleanup_stale(prefix)?;
    if errors.is_empty() {
        Ok(())
    } else {
        Err(HarnessError::Setup(format!(
            "removing stale cgroups: {}",
            errors.join("; ")
        )))
    }
}

struct MasterNode {
    id: u64,
    proc: Proc,
}

impl MasterNode {
    fn addr(&self) -> SocketAddr {
        self.proc.host.addr(MASTER_PORT)
    }
}

// ---------------------------------------------------------------------------------------
// Samplers

/// What the samplers learnt, shared with the nemesis (who leads now?).
#[derive(Default)]
struct Observed {
    health: Vec<HealthSample>,
    states: Vec<StateSample>,
    /// Latest health per node id.
    latest: BTreeMap<u64, HealthSample>,
}

impl Observed {
    /// The node that most recently claimed leadership in the highest term.
    fn leader(&self) -> Option<(u64, u64)> {
        self.latest
            .values()
            .filter(|h| h.role.as_deref() == Some("leader"))
            .filter_map(|h| Some((h.term?, h.node)))
            .max()
            .map(|(term, node)| (node, term))
    }
}

struct Samplers {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Samplers {
    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

fn parse_health(t_ms: u64, node: u64, body: Option<(u16, String)>) -> HealthSample {
    let json = body
        .filter(|(code, _)| *code == 200)
        .and_then(|(_, b)| serde_json::from_str::<serde_json::Value>(&b).ok());
    HealthSample {
        t_ms,
        node,
        role: json
            .as_ref()
            .and_then(|j| j["role"].as_str().map(str::to_string)),
        term: json.as_ref().and_then(|j| j["term"].as_u64()),
        leader: json
            .as_ref()
            .and_then(|j| j["leader"].as_str().map(str::to_string)),
    }
}

// ---------------------------------------------------------------------------------------
// The run

struct Run {
    opts: Options,
    dir: PathBuf,
    net: Network,
    start_unix_ms: u64,
    harness: Arc<Recorder>,
    nemesis: Recorder,
    masters: Arc<Mutex<Vec<MasterNode>>>,
    /// Master hosts not in use (membership changes take one, give one back).
    spare_hosts: Vec<Host>,
    next_master_id: u64,
    agents: Vec<Proc>,
    frameworks: Vec<Proc>,
    observed: Arc<Mutex<Observed>>,
    marker_dir: PathBuf,
    /// With `image_tasks`: the registry and the image the tasks run from.
    registry: Option<(agora_test_cluster::registry::Registry, String)>,
    /// Agent id -> its resources, as the harness configured them (the truth the
    /// over-commit checker compares with, whatever the masters believe).
    known_totals: Arc<Mutex<BTreeMap<String, BTreeMap<String, f64>>>>,
}

fn scalar_resources(spec: &str) -> BTreeMap<String, f64> {
    spec.split(';')
        .filter_map(|kv| {
            let (k, v) = kv.split_once(':')?;
            Some((k.trim().to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

impl Drop for Run {
    fn drop(&mut self) {
        self.stop_everything();
    }
}

impl Run {
    /// Kills every process of the run (frameworks, agents, masters: their process
    /// groups), then whatever they started that is still marked as the run's (executors
    /// and tasks), then removes the agents' cgroup roots. Idempotent.
    fn stop_everything(&mut self) {
        for f in &mut self.frameworks {
            f.kill();
        }
        for a in &mut self.agents {
            a.kill();
        }
        for m in self
            .masters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter_mut()
        {
            m.proc.kill();
        }
        let owners = owner_prefix(&self.opts.prefix);
        reap::kill_owned(|o| o.starts_with(&owners));
        for root in reap::cgroup_roots(&owners) {
            if let Err(e) = reap::remove_cgroup_root(&root) {
                eprintln!("jepsen: {e}");
            }
        }
    }

    fn now_ms(&self) -> u64 {
        unix_ms().saturating_sub(self.start_unix_ms)
    }

    fn record_nemesis(&self, e: Event) {
        if let Err(err) = self.nemesis.record(&e) {
            eprintln!("jepsen: nemesis history: {err}");
        }
    }

    fn master_proc(&self, id: u64, host: Host, peers: &str, join: bool) -> Proc {
        let faulty = !self.opts.master_faults.is_empty();
        let program = self.opts.bin_dir.join(if faulty {
            "agora-master-faulty"
        } else {
            "agora-master"
        });
        let mut args: Vec<String> = vec![
            "--id".into(),
            id.to_string(),
            "--listen".into(),
            host.addr(MASTER_PORT).to_string(),
            "--peers".into(),
            peers.into(),
            "--work-dir".into(),
            self.dir
                .join("nodes")
                .join(format!("m{id}"))
                .display()
                .to_string(),
            "--allocation-interval".into(),
            "200ms".into(),
            "--agent-ping-timeout".into(),
            "1s".into(),
            "--max-agent-ping-timeouts".into(),
            "5".into(),
            "--log-level".into(),
            "info,openraft=error".into(),
        ];
        if join {
            args.push("--join".into());
        }
        // TLS (a replica certificate for its namespace's address), credentials, ACLs.
        args.extend(
            agora_test_cluster::pki::pki().master_flags(id, &host.addr(MASTER_PORT).to_string()),
        );
        let mut env = if faulty {
            vec![("AGORA_FAULTS".into(), self.opts.master_faults.join(","))]
        } else {
            Vec::new()
        };
        // Its clocks through libfaketime, offset by what its file says (the clock-jump
        // fault writes it; libfaketime reads it again every second).
        if let (true, Some(lib)) = (
            self.opts.faults.contains(&Fault::ClockJump),
            faketime_library(),
        ) {
            let file = self.clock_file(id);
            if !file.exists() {
                let _ = std::fs::write(&file, "+0\n");
            }
            env.push(("LD_PRELOAD".into(), lib.display().to_string()));
            env.push(("FAKETIME_TIMESTAMP_FILE".into(), file.display().to_string()));
            env.push(("FAKETIME_CACHE_DURATION".into(), "1".into()));
            // Only the wall clock: Linux's monotonic clock is never stepped (NTP slews it),
            // and the leader's lease and Raft's timers count on that (and on rates within
            // 10%, `quorum::holds_lease`). Wall-clock steps are what hosts see (an NTP
            // step, an operator's `date`), and what `now_ms` in registry commands reads.
            env.push(("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()));
        }
        Proc {
            name: format!("m{id}"),
            log: self.dir.join("logs").join(format!("m{id}.log")),
            host,
            program,
            args,
            env,
            child: None,
            paused: false,
        }
    }

    /// Master `id`'s libfaketime offset file.
    fn clock_file(&self, id: u64) -> PathBuf {
        self.dir.join("clock").join(format!("m{id}"))
    }

    /// Sets master `idx`'s clock offset (libfaketime's format: "+5", "-3", "+0").
    fn set_clock(&self, idx: usize, offset: &str) -> Result<(), HarnessError> {
        let id = self.masters.lock().unwrap()[idx].id;
        let file = self.clock_file(id);
        std::fs::write(&file, format!("{offset}\n"))
            .map_err(io(format!("writing {}", file.display())))
    }

    fn masters_list(&self) -> String {
        self.masters
            .lock()
            .unwrap()
            .iter()
            .map(|m| m.addr().to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    fn client(&self) -> Result<MasterClient, HarnessError> {
        MasterClient::from_list(&self.masters_list())
            .map_err(|e| HarnessError::Setup(format!("master client: {e}")))
    }

    fn start_samplers(&self) -> Samplers {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let files = |name: &str| -> Arc<Mutex<File>> {
            Arc::new(Mutex::new(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.dir.join(name))
                    .expect("sample file"),
            ))
        };
        let health_file = files("health.jsonl");
        let state_file = files("state.jsonl");
        // Health: every master (the list changes with membership), every 200 ms.
        {
            let (stop, observed, masters, start) = (
                stop.clone(),
                self.observed.clone(),
                self.masters.clone(),
                self.start_unix_ms,
            );
            threads.push(std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let targets: Vec<(u64, SocketAddr)> = masters
                        .lock()
                        .unwrap()
                        .iter()
                        .map(|m| (m.id, m.addr()))
                        .collect();
                    // One thread per master, so a paused one does not delay the others.
                    let probes: Vec<_> = targets
                        .into_iter()
                        .map(|(id, addr)| {
                            std::thread::spawn(move || {
                                let body = http_get(&addr.to_string(), "/health");
                                let t = unix_ms().saturating_sub(start);
                                parse_health(t, id, body)
                            })
                        })
                        .collect();
                    for p in probes {
                        if let Ok(sample) = p.join() {
                            if let Ok(line) = serde_json::to_string(&sample) {
                                let _ = writeln!(health_file.lock().unwrap(), "{line}");
                            }
                            let mut o = observed.lock().unwrap();
                            o.latest.insert(sample.node, sample.clone());
                            o.health.push(sample);
                        }
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
            }));
        }
        // State: the leader's `/state`, every 250 ms, reduced to per-agent sums.
        {
            let (stop, observed, masters, start, totals) = (
                stop.clone(),
                self.observed.clone(),
                self.masters.clone(),
                self.start_unix_ms,
                self.known_totals.clone(),
            );
            threads.push(std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let leader = observed.lock().unwrap().leader();
                    let addr = leader.and_then(|(id, _)| {
                        masters
                            .lock()
                            .unwrap()
                            .iter()
                            .find(|m| m.id == id)
                            .map(|m| m.addr())
                    });
                    if let Some(addr) = addr {
                        if let Some((200, body)) = http_get(&addr.to_string(), "/state") {
                            let t = unix_ms().saturating_sub(start);
                            if let Some(mut sample) = serde_json::from_str(&body)
                                .ok()
                                .and_then(|s| StateSample::from_state(t, &s))
                            {
                                // The truth is what the agents were given, not what the
                                // master believes they have.
                                let totals = totals.lock().unwrap();
                                for a in &mut sample.agents {
                                    if let Some(known) = totals.get(&a.id) {
                                        for (k, v) in known {
                                            let have = a.total.entry(k.clone()).or_insert(*v);
                                            *have = have.min(*v);
                                        }
                                    }
                                }
                                drop(totals);
                                if let Ok(line) = serde_json::to_string(&sample) {
                                    let _ = writeln!(state_file.lock().unwrap(), "{line}");
                                }
                                observed.lock().unwrap().states.push(sample);
                            }
                        }
                    }
                    std::thread::sleep(Duration::from_millis(250));
                }
            }));
        }
        // Agent registrations: an agent writes its id once the leader acknowledged it.
        {
            let (stop, harness, totals) = (
                stop.clone(),
                self.harness.clone(),
                self.known_totals.clone(),
            );
            let dirs: Vec<(PathBuf, String)> = (1..=self.opts.agents)
                .map(|i| {
                    (
                        self.dir
                            .join("nodes")
                            .join(format!("a{i}"))
                            .join("agent_id"),
                        self.opts.agent_resources.clone(),
                    )
                })
                .collect();
            threads.push(std::thread::spawn(move || {
                let mut seen = std::collections::BTreeSet::new();
                while !stop.load(Ordering::Relaxed) {
                    for (path, resources) in &dirs {
                        let Ok(id) = std::fs::read_to_string(path) else {
                            continue;
                        };
                        let id = id.trim().to_string();
                        if id.is_empty() || !seen.insert(id.clone()) {
                            continue;
                        }
                        totals
                            .lock()
                            .unwrap()
                            .insert(id.clone(), scalar_resources(resources));
                        let e = harness.event(EventType::Ok, op::REGISTER_AGENT).agent(id);
                        let _ = harness.record(&e);
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }));
        }
        Samplers { stop, threads }
    }

    async fn wait_leader(&self, timeout: Duration) -> Result<(u64, u64), HarnessError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.observed.lock().unwrap().leader() {
                return Ok(l);
            }
            if Instant::now() > deadline {
                return Err(HarnessError::Setup(format!(
                    "no leader within {timeout:?} (see {}/logs)",
                    self.dir.display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// An agent's flags for image tasks: the registry (plain HTTP on the bridge address)
    /// and the marker directory as a volume.
    fn image_agent_flags(&self) -> Vec<String> {
        match &self.registry {
            Some((registry, _)) => vec![
                "--insecure-registries".into(),
                registry.addr.clone(),
                "--allowed-host-volumes".into(),
                self.marker_dir.display().to_string(),
            ],
            None => Vec::new(),
        }
    }

    fn workload_proc(&self, i: usize, host: Host) -> Proc {
        let name = format!("fw-{}", (b'a' + i as u8) as char);
        let role = match i % 3 {
            0 => "a",
            1 => "b",
            _ => "*",
        };
        let args: Vec<String> = vec![
            "--masters".into(),
            self.masters_list(),
            "--name".into(),
            name.clone(),
            "--role".into(),
            role.into(),
            "--history".into(),
            self.dir
                .join("history")
                .join(format!("{name}.jsonl"))
                .display()
                .to_string(),
            "--start-unix-ms".into(),
            self.start_unix_ms.to_string(),
            "--marker-dir".into(),
            self.marker_dir.display().to_string(),
            "--max-live".into(),
            "6".into(),
            "--short-ms".into(),
            "200".into(),
            "--long-ms".into(),
            "4000".into(),
            // One framework in three speaks Mesos' v1 scheduler HTTP API (issue 13).
            "--api".into(),
            if i % 3 == 2 { "mesos" } else { "grpc" }.into(),
        ];
        let args = match &self.registry {
            Some((_, image)) => args
                .into_iter()
                .chain(["--image".to_string(), image.clone()])
                .collect(),
            None => args,
        };
        Proc {
            log: self.dir.join("logs").join(format!("{name}.log")),
            name,
            host,
            program: self.opts.bin_dir.join("jepsen-workload"),
            args,
            env: Vec::new(),
            child: None,
            paused: false,
        }
    }

    /// A killed workload comes back as the same framework: its id is in its history.
    fn restart_workload(&mut self, i: usize) -> Result<(), HarnessError> {
        let name = self.frameworks[i].name.clone();
        let path = self.dir.join("history").join(format!("{name}.jsonl"));
        let id = history::read_jsonl::<Event>(&path)?
            .into_iter()
            .rev()
            .find(|e| e.is(EventType::Ok, op::SUBSCRIBE))
            .and_then(|e| e.framework);
        let p = &mut self.frameworks[i];
        p.args.retain(|a| !a.starts_with("--framework-id="));
        if let Some(id) = id {
            p.args.push(format!("--framework-id={id}"));
        }
        p.start()
    }

    fn leader_name(&self) -> Option<(usize, u64)> {
        let (id, term) = self.observed.lock().unwrap().leader()?;
        let masters = self.masters.lock().unwrap();
        let idx = masters.iter().position(|m| m.id == id)?;
        Some((idx, term))
    }

    fn master_names(&self) -> Vec<String> {
        self.masters
            .lock()
            .unwrap()
            .iter()
            .map(|m| m.proc.host.name.clone())
            .collect()
    }

    /// Applies one step's fault; returns what to heal and the targets.
    async fn inject(&mut self, step: &Step) -> Result<Option<Active>, HarnessError> {
        let masters = self.master_names();
        let n = masters.len();
        let leader = self.leader_name();
        let pick = step.pick as usize;
        let active = match step.fault {
            Fault::KillLeader | Fault::PauseLeader | Fault::PartitionLeader => {
                let Some((idx, term)) = leader else {
                    return Ok(None);
                };
                let target = masters[idx].clone();
                let e = self
                    .nemesis
                    .event(EventType::Info, op::FAULT_START)
                    .fault(step.fault.name())
                    .targets([target.clone()])
                    .term(term);
                self.record_nemesis(e);
                let mut ms = self.masters.lock().unwrap();
                match step.fault {
                    Fault::KillLeader => {
                        ms[idx].proc.kill();
                        Active::Killed(vec![target])
                    }
                    Fault::PauseLeader => {
                        ms[idx].proc.pause();
                        Active::Paused(vec![target])
                    }
                    _ => {
                        drop(ms);
                        self.net.isolate(&target)?;
                        Active::Cut(vec![target])
                    }
                }
            }
            Fault::KillMaster | Fault::PauseMaster => {
                let idx = pick % n;
                let target = masters[idx].clone();
                self.start_event(step, std::slice::from_ref(&target));
                let mut ms = self.masters.lock().unwrap();
                if step.fault == Fault::KillMaster {
                    ms[idx].proc.kill();
                    Active::Killed(vec![target])
                } else {
                    ms[idx].proc.pause();
                    Active::Paused(vec![target])
                }
            }
            Fault::KillMinority => {
                let k = (n - 1) / 2;
                let targets: Vec<String> =
                    (0..k).map(|j| masters[(pick + j) % n].clone()).collect();
                self.start_event(step, &targets);
                let mut ms = self.masters.lock().unwrap();
                for m in ms.iter_mut() {
                    if targets.contains(&m.proc.host.name) {
                        m.proc.kill();
                    }
                }
                Active::Killed(targets)
            }
            Fault::PartitionHalves => {
                // Masters split as evenly as possible; every other host lands on a random side.
                let mut rng = Rng::new(step.pick);
                let mut order = masters.clone();
                for i in (1..order.len()).rev() {
                    order.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
                }
                let (a, b) = order.split_at(n / 2);
                let (mut a, mut b) = (a.to_vec(), b.to_vec());
                for h in self.agents.iter().chain(self.frameworks.iter()) {
                    if rng.next_u64().is_multiple_of(2) {
                        a.push(h.host.name.clone());
                    } else {
                        b.push(h.host.name.clone());
                    }
                }
                let mut targets = a.clone();
                targets.push("|".into());
                targets.extend(b.iter().cloned());
                self.start_event(step, &targets);
                self.net.partition(&[a, b])?;
                Active::Cut(targets)
            }
            Fault::PartitionRing | Fault::PartitionBridge => {
                // Rotate which master plays which part.
                let cuts = if step.fault == Fault::PartitionRing {
                    nemesis::ring_cuts(n)
                } else {
                    nemesis::bridge_cuts(n)
                };
                let name = |i: usize| masters[(i + pick) % n].clone();
                let pairs: Vec<(String, String)> =
                    cuts.iter().map(|(a, b)| (name(*a), name(*b))).collect();
                let targets: Vec<String> = pairs.iter().map(|(a, b)| format!("{a}-{b}")).collect();
                self.start_event(step, &targets);
                for (a, b) in &pairs {
                    self.net.cut(a, b)?;
                }
                Active::Cut(targets)
            }
            Fault::AgentKill => {
                let i = pick % self.agents.len();
                let target = self.agents[i].name.clone();
                self.start_event(step, std::slice::from_ref(&target));
                self.agents[i].kill();
                Active::AgentKilled(i)
            }
            Fault::AgentPartition => {
                let i = pick % self.agents.len();
                let agent = self.agents[i].host.name.clone();
                self.start_event(step, std::slice::from_ref(&agent));
                for m in &masters {
                    self.net.cut(&agent, m)?;
                }
                Active::Cut(vec![agent])
            }
            Fault::FrameworkKill => {
                let i = pick % self.frameworks.len();
                let target = self.frameworks[i].name.clone();
                self.start_event(step, std::slice::from_ref(&target));
                self.frameworks[i].kill();
                Active::FrameworkKilled(i)
            }
            Fault::Membership => return self.replace_master(step).await.map(Some),
            Fault::ClockJump => {
                // Half the jumps hit the leader (when one is known), the rest any master;
                // 1 s to 5 min, forward or back, all from the step's pick.
                let idx = match leader {
                    Some((idx, _)) if pick.is_multiple_of(2) => idx,
                    _ => (pick / 2) % n,
                };
                let secs = [1, 5, 30, 120, 300][(pick / 16) % 5];
                let offset = if (pick / 128).is_multiple_of(2) {
                    format!("+{secs}")
                } else {
                    format!("-{secs}")
                };
                let target = masters[idx].clone();
                self.start_event(step, &[target.clone(), format!("{offset}s")]);
                self.set_clock(idx, &offset)?;
                Active::ClockSet(idx, vec![target])
            }
        };
        Ok(Some(active))
    }

    fn start_event(&self, step: &Step, targets: &[String]) {
        let e = self
            .nemesis
            .event(EventType::Info, op::FAULT_START)
            .fault(step.fault.name())
            .targets(targets.iter().cloned());
        self.record_nemesis(e);
    }

    async fn heal(&mut self, step: &Step, active: Active) -> Result<(), HarnessError> {
        let targets = match active {
            Active::Killed(t) => {
                let mut ms = self.masters.lock().unwrap();
                for m in ms.iter_mut().filter(|m| t.contains(&m.proc.host.name)) {
                    m.proc.start()?;
                }
                t
            }
            Active::Paused(t) => {
                let mut ms = self.masters.lock().unwrap();
                for m in ms.iter_mut().filter(|m| t.contains(&m.proc.host.name)) {
                    m.proc.resume();
                }
                t
            }
            Active::Cut(t) => {
                self.net.heal()?;
                t
            }
            Active::AgentKilled(i) => {
                self.agents[i].start()?;
                vec![self.agents[i].name.clone()]
            }
            Active::FrameworkKilled(i) => {
                self.restart_workload(i)?;
                vec![self.frameworks[i].name.clone()]
            }
            Active::ClockSet(idx, t) => {
                self.set_clock(idx, "+0")?;
                t
            }
            Active::Done(t) => t,
        };
        let e = self
            .nemesis
            .event(EventType::Info, op::FAULT_STOP)
            .fault(step.fault.name())
            .targets(targets);
        self.record_nemesis(e);
        Ok(())
    }

    /// Replaces a follower with a new replica on a spare host: start it, add it as a
    /// learner (it catches up), make it a voter in the follower's place, stop the old one.
    async fn replace_master(&mut self, step: &Step) -> Result<Active, HarnessError> {
        let Some(host) = self.spare_hosts.pop() else {
            return Ok(Active::Done(Vec::new()));
        };
        let (old_idx, old_name, old_id, voters) = {
            let ms = self.masters.lock().unwrap();
            let leader = self.observed.lock().unwrap().leader().map(|(id, _)| id);
            let followers: Vec<usize> = (0..ms.len())
                .filter(|&i| Some(ms[i].id) != leader)
                .collect();
            let idx = followers[step.pick as usize % followers.len()];
            (
                idx,
                ms[idx].proc.host.name.clone(),
                ms[idx].id,
                ms.iter().map(|m| m.id).collect::<Vec<u64>>(),
            )
        };
        let new_id = self.next_master_id;
        self.next_master_id += 1;
        let targets = vec![old_name.clone(), host.name.clone()];
        self.start_event(step, &targets);
        let addr = host.addr(MASTER_PORT);
        let mut node = MasterNode {
            id: new_id,
            proc: self.master_proc(new_id, host.clone(), &format!("{new_id}={addr}"), true),
        };
        node.proc.start()?;
        let client = self.client()?;
        let added = client
            .call(|ch| async move {
                OperatorClient::new(ch)
                    .add_learner(pb::AddLearnerRequest {
                        id: new_id,
                        address: addr.to_string(),
                    })
                    .await
            })
            .await;
        let voter_ids: Vec<u64> = voters
            .iter()
            .copied()
            .filter(|v| *v != old_id)
            .chain([new_id])
            .collect();
        let changed = match added {
            Ok(_) => client
                .call(|ch| {
                    let voter_ids = voter_ids.clone();
                    async move {
                        OperatorClient::new(ch)
                            .change_membership(pb::ChangeMembershipRequest {
                                voter_ids,
                                retain: false,
                            })
                            .await
                    }
                })
                .await
                .map(|_| ()),
            Err(e) => Err(e),
        };
        match changed {
            Ok(()) => {
                let mut ms = self.masters.lock().unwrap();
                let mut old = ms.remove(old_idx);
                old.proc.kill();
                self.spare_hosts.push(old.proc.host.clone());
                ms.push(node);
            }
            Err(e) => {
                // Not applied (e.g. no leader during another fault): the newcomer goes.
                let err = self
                    .nemesis
                    .event(EventType::Info, "membership-failed")
                    .error(e.to_string());
                self.record_nemesis(err);
                node.proc.kill();
                self.spare_hosts.push(host);
            }
        }
        Ok(Active::Done(targets))
    }

    /// Heals everything for good: connectivity, paused and dead processes.
    fn heal_all(&mut self) -> Result<(), HarnessError> {
        self.net.heal()?;
        {
            let mut ms = self.masters.lock().unwrap();
            for m in ms.iter_mut() {
                m.proc.resume();
                if !m.proc.is_running() {
                    m.proc.start()?;
                }
            }
        }
        for a in &mut self.agents {
            if !a.is_running() {
                a.start()?;
            }
        }
        for i in 0..self.frameworks.len() {
            if !self.frameworks[i].is_running() {
                self.restart_workload(i)?;
            }
        }
        Ok(())
    }

    /// The leader's `/state`: whichever master answers 200 (followers answer 307; a
    /// master that wrongly claims to lead is not trusted for it).
    fn final_state(&self) -> serde_json::Value {
        for _ in 0..50 {
            let addrs: Vec<SocketAddr> = self
                .masters
                .lock()
                .unwrap()
                .iter()
                .map(|m| m.addr())
                .collect();
            for addr in addrs {
                if let Some((200, body)) = http_get(&addr.to_string(), "/state") {
                    if let Ok(v) = serde_json::from_str(&body) {
                        return v;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        serde_json::Value::Null
    }

    fn markers(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        if let Ok(entries) = std::fs::read_dir(&self.marker_dir) {
            for e in entries.flatten() {
                let lines = std::fs::read_to_string(e.path())
                    .map(|s| s.lines().filter(|l| !l.trim().is_empty()).count())
                    .unwrap_or(0);
                out.insert(e.file_name().to_string_lossy().to_string(), lines);
            }
        }
        out
    }
}

enum Active {
    Killed(Vec<String>),
    Paused(Vec<String>),
    Cut(Vec<String>),
    AgentKilled(usize),
    FrameworkKilled(usize),
    /// A master's clock offset (by index), set back to +0 when healed.
    ClockSet(usize, Vec<String>),
    Done(Vec<String>),
}

/// Where Debian's libfaketime may be.
const FAKETIME_LIBRARIES: [&str; 3] = [
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
];

/// libfaketime's library, if installed.
fn faketime_library() -> Option<PathBuf> {
    FAKETIME_LIBRARIES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// Runs one fault-injection run and checks it. `interrupted` stops it early (the run is
/// then still torn down and reported, and counts as failed).
pub async fn run(opts: Options, interrupted: Arc<AtomicBool>) -> Result<Outcome, HarnessError> {
    net::preflight()?;
    if opts.masters == 0 || opts.agents == 0 || opts.frameworks == 0 {
        return Err(HarnessError::Setup(
            "--masters, --agents and --frameworks must be at least 1".into(),
        ));
    }
    cleanup_stale(&opts.prefix)?;
    let start_unix_ms = unix_ms();
    // Absolute: tasks write their markers from their own sandboxes.
    std::fs::create_dir_all(&opts.out).map_err(io(format!("creating {}", opts.out.display())))?;
    let out = opts
        .out
        .canonicalize()
        .map_err(io(format!("resolving {}", opts.out.display())))?;
    let dir = out.join(format!("{}-seed{}", start_unix_ms / 1000, opts.seed));
    if opts.faults.contains(&Fault::ClockJump) && faketime_library().is_none() {
        return Err(HarnessError::Setup(format!(
            "the clock-jump fault needs libfaketime (Debian: apt-get install libfaketime); looked for {}",
            FAKETIME_LIBRARIES.join(", ")
        )));
    }
    for sub in ["logs", "history", "nodes", "markers", "clock"] {
        std::fs::create_dir_all(dir.join(sub))
            .map_err(io(format!("creating {}", dir.display())))?;
    }
    // Hosts: the masters, one spare master host (membership), agents, frameworks.
    let mut names: Vec<String> = (1..=opts.masters).map(|i| format!("m{i}")).collect();
    names.push("spare1".into());
    names.extend((1..=opts.agents).map(|i| format!("a{i}")));
    names.extend((0..opts.frameworks).map(|i| format!("fw-{}", (b'a' + i as u8) as char)));
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let net = Network::create(&opts.prefix, opts.subnet, &name_refs)?;
    let harness = Arc::new(Recorder::create(
        dir.join("history").join("harness.jsonl"),
        "harness",
        start_unix_ms,
    )?);
    let nemesis_rec = Recorder::create(
        dir.join("history").join("nemesis.jsonl"),
        "nemesis",
        start_unix_ms,
    )?;
    let spare = vec![net.host("spare1").cloned().expect("host exists")];
    // The image tasks' registry, on the bridge address every host reaches (partitions
    // never cut it, as they never cut the harness).
    let registry = if opts.image_tasks {
        // Tasks write their markers as whichever user their container runs as.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.join("markers"), std::fs::Permissions::from_mode(0o1777))
            .map_err(io("opening the marker directory to every user"))?;
        let registry = agora_test_cluster::registry::Registry::start_on(&net.gateway().to_string())
            .map_err(HarnessError::Setup)?;
        let image = registry
            .push(&agora_test_cluster::registry::ImageSpec {
                name: "jepsen/task:v1".into(),
                cmd: vec!["true".into()],
                ..Default::default()
            })
            .map_err(HarnessError::Setup)?;
        Some((registry, image.reference))
    } else {
        None
    };
    let mut run = Run {
        registry,
        marker_dir: dir.join("markers"),
        dir: dir.clone(),
        start_unix_ms,
        harness,
        nemesis: nemesis_rec,
        masters: Arc::new(Mutex::new(Vec::new())),
        spare_hosts: spare,
        next_master_id: opts.masters as u64 + 1,
        agents: Vec::new(),
        frameworks: Vec::new(),
        observed: Arc::new(Mutex::new(Observed::default())),
        known_totals: Arc::new(Mutex::new(BTreeMap::new())),
        net,
        opts,
    };
    let host = |run: &Run, n: &str| run.net.host(n).cloned().expect("host exists");
    let peers = (1..=run.opts.masters)
        .map(|i| format!("{i}={}", host(&run, &format!("m{i}")).addr(MASTER_PORT)))
        .collect::<Vec<_>>()
        .join(",");
    for i in 1..=run.opts.masters {
        let p = run.master_proc(i as u64, host(&run, &format!("m{i}")), &peers, false);
        run.masters.lock().unwrap().push(MasterNode {
            id: i as u64,
            proc: p,
        });
    }
    for m in run.masters.lock().unwrap().iter_mut() {
        m.proc.start()?;
    }
    let samplers = run.start_samplers();
    let result = drive(&mut run, &interrupted).await;
    samplers.stop();
    // Everything stops before the network goes (also on an early return: `Drop`).
    run.stop_everything();
    let (final_state, final_heal_ms, end_ms) = result?;
    let observed = std::mem::take(&mut *run.observed.lock().unwrap());
    let mut histories = Vec::new();
    for e in std::fs::read_dir(dir.join("history"))
        .map_err(io("history dir"))?
        .flatten()
    {
        histories.push(history::read_jsonl::<Event>(e.path())?);
    }
    let data = RunData {
        history: history::merge(histories),
        health: observed.health,
        states: observed.states,
        markers: run.markers(),
        final_state,
        final_heal_ms,
        end_ms,
    };
    let checking = Instant::now();
    let mut verdicts = checker::check_all(&data);
    eprintln!(
        "jepsen: checkers took {} ms",
        checking.elapsed().as_millis()
    );
    if interrupted.load(Ordering::Relaxed) {
        verdicts.push(Verdict {
            name: "completed".into(),
            passed: false,
            summary: "the run was interrupted".into(),
            offending: Vec::new(),
        });
    }
    let stats = report::stats(&data.history);
    let failovers = report::failovers(&data.history, &data.health);
    let title = format!(
        "jepsen run, seed {}: {} masters, {} agents, {} frameworks, {} s, nemesis {:?}{}",
        run.opts.seed,
        run.opts.masters,
        run.opts.agents,
        run.opts.frameworks,
        run.opts.time_limit.as_secs(),
        run.opts.faults.iter().map(|f| f.name()).collect::<Vec<_>>(),
        if run.opts.master_faults.is_empty() {
            String::new()
        } else {
            format!(", BROKEN MASTER: {}", run.opts.master_faults.join(","))
        }
    );
    let summary = report::summary_markdown(&title, &verdicts, &stats, &failovers);
    std::fs::write(dir.join("summary.md"), &summary).map_err(io("summary.md"))?;
    std::fs::write(
        dir.join("plot.svg"),
        report::plot_svg(&data.history, data.end_ms),
    )
    .map_err(io("plot.svg"))?;
    let merged: Vec<Event> = data.history;
    history::write_jsonl(dir.join("history.jsonl"), &merged)?;
    Ok(Outcome {
        run_dir: dir,
        verdicts,
        summary,
    })
}

/// Starts agents and frameworks, runs the schedule, heals, lets the cluster settle, stops
/// the frameworks; returns the final state, the final heal's time and the end time.
async fn drive(
    run: &mut Run,
    interrupted: &AtomicBool,
) -> Result<(serde_json::Value, Option<u64>, u64), HarnessError> {
    let (_, term) = run.wait_leader(Duration::from_secs(20)).await?;
    eprintln!("jepsen: leader elected (term {term}); starting agents");
    let masters = run.masters_list();
    for i in 1..=run.opts.agents {
        let name = format!("a{i}");
        let host = run.net.host(&name).cloned().expect("host");
        let mut p = Proc {
            name: name.clone(),
            program: run.opts.bin_dir.join("agora-agent"),
            args: vec![
                "--masters".into(),
                masters.clone(),
                "--listen".into(),
                host.addr(AGENT_PORT).to_string(),
                "--work-dir".into(),
                run.dir.join("nodes").join(&name).display().to_string(),
                "--resources".into(),
                run.opts.agent_resources.clone(),
                "--executor-recovery-timeout".into(),
                "20s".into(),
                // One cgroup parent per agent: they share this host's hierarchy. It is
                // the agent's owner mark, so the run's end finds both.
                "--cgroups-root".into(),
                owner(&host),
            ]
            .into_iter()
            .chain(run.image_agent_flags())
            .chain(agora_test_cluster::pki::pki().agent_flags(&host.addr(AGENT_PORT).to_string()))
            .collect(),
            env: Vec::new(),
            log: run.dir.join("logs").join(format!("{name}.log")),
            host,
            child: None,
            paused: false,
        };
        p.start()?;
        run.agents.push(p);
    }
    // Roles and weights: a weighs 2, b 1.
    let client = run.client()?;
    for (role, weight) in [("a", 2.0), ("b", 1.0)] {
        client
            .call(|ch| async move {
                OperatorClient::new(ch)
                    .set_weight(pb::SetWeightRequest {
                        role: role.into(),
                        weight,
                    })
                    .await
            })
            .await
            .map_err(|e| HarnessError::Setup(format!("setting weight of {role}: {e}")))?;
    }
    for i in 0..run.opts.frameworks {
        let name = format!("fw-{}", (b'a' + i as u8) as char);
        let host = run.net.host(&name).cloned().expect("host");
        let mut p = run.workload_proc(i, host);
        p.start()?;
        run.frameworks.push(p);
    }
    // Register clients, from the harness's namespace (stopped after the settle period;
    // dropped, on an early return, they are aborted).
    let masters = run.masters.clone();
    let registers = register::start(register::Config {
        clients: run.opts.register_clients,
        seed: run.opts.seed,
        history_dir: run.dir.join("history"),
        start_unix_ms: run.start_unix_ms,
        masters: Arc::new(move || {
            masters
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .map(|m| m.addr().to_string())
                .collect()
        }),
    })
    .map_err(HarnessError::Setup)?;
    let limit_ms = run.opts.time_limit.as_millis() as u64;
    let steps = match &run.opts.schedule {
        Some(s) => s.clone(),
        None => nemesis::schedule(&Plan {
            seed: run.opts.seed,
            faults: run.opts.faults.clone(),
            warmup_ms: run.now_ms() + 5_000,
            time_limit_ms: limit_ms,
            gap_ms: (3_000, 8_000),
            duration_ms: (3_000, 12_000),
            max_membership: 1 + (limit_ms / 600_000) as usize,
        }),
    };
    std::fs::write(
        run.dir.join("schedule.txt"),
        steps
            .iter()
            .map(|s| {
                format!(
                    "{:>8} ms  {:<18} for {} ms (pick {})\n",
                    s.at_ms,
                    s.fault.name(),
                    s.duration_ms,
                    s.pick
                )
            })
            .collect::<String>(),
    )
    .map_err(io("schedule.txt"))?;
    eprintln!(
        "jepsen: {} fault steps until {} s",
        steps.len(),
        limit_ms / 1000
    );
    let mut any_fault = false;
    for step in &steps {
        if !sleep_until(run, step.at_ms, interrupted).await {
            break;
        }
        let Some(active) = run.inject(step).await? else {
            continue;
        };
        any_fault = true;
        eprintln!(
            "jepsen: {:>6.1}s {}",
            run.now_ms() as f64 / 1000.0,
            step.fault.name()
        );
        sleep_until(run, step.end_ms(), interrupted).await;
        run.heal(step, active).await?;
    }
    sleep_until(run, limit_ms, interrupted).await;
    run.heal_all()?;
    let final_heal = run.now_ms();
    if any_fault {
        let e = run.nemesis.event(EventType::Info, op::FINAL_HEAL);
        run.record_nemesis(e);
    }
    eprintln!(
        "jepsen: {:>6.1}s final heal; settling",
        final_heal as f64 / 1000.0
    );
    let settle_until = final_heal + run.opts.settle.as_millis() as u64;
    sleep_until(run, settle_until, interrupted).await;
    registers.stop().await;
    // Frameworks stop launching and wait for their tasks; then the final state.
    for f in &mut run.frameworks {
        f.signal(libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    for f in &mut run.frameworks {
        while f.is_running() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let final_state = run.final_state();
    Ok((final_state, any_fault.then_some(final_heal), run.now_ms()))
}

/// Sleeps until `t_ms` of the run; false if interrupted first.
async fn sleep_until(run: &Run, t_ms: u64, interrupted: &AtomicBool) -> bool {
    loop {
        if interrupted.load(Ordering::Relaxed) {
            return false;
        }
        let now = run.now_ms();
        if now >= t_ms {
            return true;
        }
        tokio::time::sleep(Duration::from_millis((t_ms - now).min(100))).await;
    }
}

/// Where the harness's own binaries are: next to this executable (cargo puts every
/// workspace binary of a profile in one directory).
pub fn default_bin_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("target/release"))
}
