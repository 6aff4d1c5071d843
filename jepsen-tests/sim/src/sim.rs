//! One run: a seed and a [`SimConfig`] in, a [`Report`] (event log, violations, figures)
//! out.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use agora_master::store::RegistryMachine;
use agora_registry::{Command, CommandBatch};
use jepsen_tests::linearizable::{self, OpKind, Outcome};
use jepsen_tests::register::key;
use openraft::ServerState;
use tokio::time::Instant;

use crate::check::{digest, Checker};
use crate::cluster::{name, Cluster};
use crate::disk::DiskSettings;
use crate::events::EventLog;
use crate::flow::{Flow, FlowConfig, FlowFigures};
use crate::nemesis::{Faults, Nemesis};
use crate::net::Conditions;
use crate::rng::SimRng;
use crate::workload::{History, Workload};

/// A deliberate bug, for the self-check: the checks must catch each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bug {
    /// The disk acknowledges appends and votes at once and writes them every second
    /// ([`DiskSettings::lying`]).
    LyingDisk,
    /// A replica that believes it leads answers reads without `ensure_linearizable`.
    StaleReads,
    /// Reads the master's way are served by whoever openraft's metrics say leads, before
    /// it has applied an entry of its own term (the master before the fix of that race).
    EarlyReads,
    /// The disk hands back a leader's committed vote as saved, so openraft resumes a
    /// restarted leader without an election ([`DiskSettings::restore_leader`]).
    RestoreLeader,
    /// The master records an agent session's updates all at once, a task's own included
    /// (`agora_master::faults::Faults::unordered_updates`: before the fix of "updates out
    /// of order after a resend").
    UnorderedUpdates,
    /// The master passes on updates of a replaced agent session
    /// (`Faults::stale_session_updates`: before the fix of "TASK_STARTING after
    /// TASK_FINISHED").
    StaleSessionUpdates,
}

impl Bug {
    pub const ALL: [Bug; 6] = [
        Bug::LyingDisk,
        Bug::StaleReads,
        Bug::EarlyReads,
        Bug::RestoreLeader,
        Bug::UnorderedUpdates,
        Bug::StaleSessionUpdates,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Bug::LyingDisk => "lying-disk",
            Bug::StaleReads => "stale-reads",
            Bug::EarlyReads => "early-reads",
            Bug::RestoreLeader => "restore-leader",
            Bug::UnorderedUpdates => "unordered-updates",
            Bug::StaleSessionUpdates => "stale-session-updates",
        }
    }
}

impl fmt::Display for Bug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A `--bug` that names none.
#[derive(Debug, thiserror::Error)]
#[error("unknown bug {0:?} (lying-disk, stale-reads, early-reads, restore-leader, unordered-updates, stale-session-updates)")]
pub struct UnknownBug(String);

impl FromStr for Bug {
    type Err = UnknownBug;

    fn from_str(s: &str) -> Result<Bug, UnknownBug> {
        Bug::ALL
            .into_iter()
            .find(|b| b.name() == s)
            .ok_or_else(|| UnknownBug(s.to_string()))
    }
}

/// What a run simulates, besides its seed.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Replicas (3 or 5).
    pub nodes: usize,
    /// Virtual time the workload and the nemesis run; then the final heal and the checks.
    pub duration: Duration,
    /// Register clients.
    pub clients: u64,
    pub faults: Faults,
    pub bug: Option<Bug>,
    /// Log every message, not one summary a second.
    pub verbose: bool,
    /// Entries between snapshots (the master takes 2,000; fewer here, so that replicas
    /// that fall behind are caught up by snapshots in a short run).
    pub snapshot_every: u64,
    /// How long after the final heal a write must commit, and the replicas agree.
    pub recovery_bound: Duration,
    /// Leave the committed index to the next flush, as raft-store does
    /// ([`DiskSettings::lazy_committed`]; the default).
    pub lazy_committed: bool,
    /// Agents and a framework on the master's leader layer ([`crate::flow`]); none: the
    /// register clients alone.
    pub flow: Option<FlowConfig>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            nodes: 3,
            duration: Duration::from_secs(60),
            clients: 4,
            faults: Faults::default(),
            bug: None,
            verbose: false,
            snapshot_every: 200,
            recovery_bound: Duration::from_secs(10),
            lazy_committed: true,
            flow: Some(FlowConfig::default()),
        }
    }
}

impl SimConfig {
    /// The command line that replays `seed` with this configuration and writes its log.
    pub fn replay_command(&self, seed: u64) -> String {
        let mut cmd = format!("agora-sim --seed {seed}");
        let default = SimConfig::default();
        if self.nodes != default.nodes {
            cmd += &format!(" --nodes {}", self.nodes);
        }
        if self.duration != default.duration {
            cmd += &format!(" --duration {}", humantime::format_duration(self.duration));
        }
        if self.clients != default.clients {
            cmd += &format!(" --clients {}", self.clients);
        }
        if self.faults != default.faults {
            cmd += &format!(" --nemesis {}", self.faults);
        }
        if let Some(bug) = self.bug {
            cmd += &format!(" --bug {bug}");
        }
        if !self.lazy_committed {
            cmd += " --eager-committed";
        }
        match &self.flow {
            None => cmd += " --agents 0",
            Some(f) if f.agents != FlowConfig::default().agents => {
                cmd += &format!(" --agents {}", f.agents)
            }
            Some(_) => {}
        }
        if self.snapshot_every != default.snapshot_every {
            cmd += &format!(" --snapshot-every {}", self.snapshot_every);
        }
        cmd + &format!(" --log /tmp/sim-{seed}.log")
    }

    /// openraft's configuration: the master's (`RaftTiming::openraft_config`, default
    /// timings), with snapshots every [`SimConfig::snapshot_every`] entries.
    pub fn raft_config(&self) -> openraft::Config {
        let mut c = agora_master::config::RaftTiming::default().openraft_config();
        c.snapshot_policy = openraft::SnapshotPolicy::LogsSinceLast(self.snapshot_every);
        c.max_in_snapshot_log_to_keep = self.snapshot_every / 2;
        c.purge_batch_size = (self.snapshot_every / 4).max(1);
        c
    }
}

/// After the final heal, how long the task flow gets to end every launch before it is
/// checked.
const FLOW_SETTLE: Duration = Duration::from_secs(10);

/// Figures of a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Figures {
    pub writes_acked: u64,
    pub writes_unknown: u64,
    pub reads: u64,
    /// Highest term any replica reached.
    pub max_term: u64,
    /// Terms in which two replicas were elected, one after the other (openraft's leader
    /// ids are (term, node id)).
    pub shared_terms: u64,
    /// The last index every replica applied at the end.
    pub final_index: u64,
    /// Virtual milliseconds from the final heal to the first committed write.
    pub recovery_ms: Option<u64>,
    /// The task flow's.
    pub tasks: FlowFigures,
}

/// What a run found.
#[derive(Clone, Debug)]
pub struct Report {
    pub seed: u64,
    pub violations: Vec<String>,
    /// The event log (virtual time, who, what).
    pub log: String,
    pub figures: Figures,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

thread_local! {
    /// Set while this thread runs a simulation: its panics are recorded, not printed.
    static IN_SIM: Cell<bool> = const { Cell::new(false) };
    static PANICS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// Whether panics inside simulations are also printed (as outside them).
static PRINT_PANICS: Mutex<bool> = Mutex::new(false);

/// Prints the panics of simulated tasks on stderr too (they are always violations).
pub fn print_panics(yes: bool) {
    *PRINT_PANICS.lock().unwrap_or_else(|p| p.into_inner()) = yes;
}

fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if IN_SIM.get() {
                PANICS.with(|p| p.borrow_mut().push(info.to_string()));
                if !*PRINT_PANICS.lock().unwrap_or_else(|p| p.into_inner()) {
                    return;
                }
            }
            previous(info)
        }));
    });
}

/// Runs `seed` with `config` on this thread: a current-thread tokio runtime with time
/// paused (it advances when every task waits), openraft's random numbers seeded from
/// `seed`, everything else drawn from one generator seeded with it.
pub fn run(seed: u64, config: &SimConfig) -> Report {
    run_with(seed, || simulate(seed, config))
}

/// Runs the simulation `body` makes for `seed` as [`run`] runs its own: on this thread, on
/// a current-thread tokio runtime with time paused, openraft's random numbers seeded from
/// `seed`; a panic inside is a violation.
pub fn run_with<F, Fut>(seed: u64, body: F) -> Report
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Report>,
{
    install_panic_hook();
    IN_SIM.set(true);
    PANICS.with(|p| p.borrow_mut().clear());
    agora_raft_store::runtime::seed_thread_rng(seed ^ 0x6f70_656e_7261_6674);
    // The master's tasks overtake each other as on its multi-threaded runtime.
    agora_master::interleave::enable(true);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("a current-thread runtime builds");
        rt.block_on(body())
    }));
    IN_SIM.set(false);
    let panics = PANICS.with(|p| std::mem::take(&mut *p.borrow_mut()));
    let mut report = match outcome {
        Ok(report) => report,
        Err(_) => Report {
            seed,
            violations: Vec::new(),
            log: String::new(),
            figures: Figures::default(),
        },
    };
    for p in panics {
        report.violations.push(format!("panic: {p}"));
    }
    report
}

async fn simulate(seed: u64, config: &SimConfig) -> Report {
    let log = EventLog::new(config.verbose);
    let rng = SimRng::new(seed);
    log.line(
        "sim",
        format_args!(
            "seed {seed}: {} replicas, {} clients, {} s, nemesis {}, bug {}{}",
            config.nodes,
            config.clients,
            config.duration.as_secs(),
            config.faults,
            config.bug.map_or("none", Bug::name),
            if config.lazy_committed {
                ""
            } else {
                ", committed index durable before it is applied"
            }
        ),
    );
    let checker = Checker::new(log.clone());
    let raft_config = Arc::new(
        config
            .raft_config()
            .validate()
            .expect("the simulation's openraft configuration is valid"),
    );
    let disk = DiskSettings {
        lying: config.bug == Some(Bug::LyingDisk),
        lazy_committed: config.lazy_committed,
        restore_leader: config.bug == Some(Bug::RestoreLeader),
        ..DiskSettings::default()
    };
    let cluster: Cluster<RegistryMachine> = Cluster::new(
        config.nodes,
        raft_config,
        disk,
        rng.clone(),
        log.clone(),
        checker.clone(),
    );
    let base = Conditions::default();
    cluster.net().set_conditions(base);
    for &id in cluster.ids() {
        cluster.start(id).await;
    }
    cluster.initialize().await;

    let end = Instant::now() + config.duration;
    let ticker = tokio::spawn(ticker(cluster.clone(), log.clone(), end));
    let nemesis = tokio::spawn(
        Nemesis {
            cluster: cluster.clone(),
            faults: config.faults.clone(),
            rng: rng.clone(),
            log: log.clone(),
            base,
        }
        .run(end),
    );
    let workload = Workload {
        clients: config.clients,
        stale_reads: config.bug == Some(Bug::StaleReads),
        early_reads: config.bug == Some(Bug::EarlyReads),
        cluster: cluster.clone(),
        rng: rng.clone(),
        log: log.clone(),
        history: Arc::default(),
    };
    let flow = config.flow.clone().map(|mut c| {
        match config.bug {
            Some(Bug::UnorderedUpdates) => c.faults.unordered_updates = true,
            Some(Bug::StaleSessionUpdates) => c.faults.stale_session_updates = true,
            _ => {}
        }
        let flow = Flow::new(
            cluster.clone(),
            rng.clone(),
            log.clone(),
            checker.clone(),
            c,
        );
        let tasks = flow.start(end);
        (flow, tasks)
    });
    let clients: Vec<_> = (0..config.clients)
        .map(|c| tokio::spawn(workload.clone().client(c, end)))
        .collect();
    for (c, client) in clients.into_iter().enumerate() {
        if let Err(e) = client.await {
            checker.violation(format!("client c{c} failed: {e}"));
        }
    }
    if let Err(e) = nemesis.await {
        checker.violation(format!("the nemesis failed: {e}"));
    }
    let _ = ticker.await;

    // The final heal.
    let net = cluster.net();
    net.heal();
    net.resume_all();
    net.set_conditions(base);
    for &id in cluster.ids() {
        if !cluster.is_up(id) {
            cluster.start(id).await;
        }
    }
    log.line("sim", "final heal");
    let mut figures = Figures {
        recovery_ms: recover(&cluster, &checker, &log, config.recovery_bound).await,
        ..Figures::default()
    };
    if let Some((flow, tasks)) = flow {
        // Every agent back, and time for what was launched to end and be heard of.
        flow.heal();
        let settled = flow.settle(FLOW_SETTLE).await;
        log.line(
            "sim",
            if settled {
                "task flow settled: every launch ended"
            } else {
                "task flow not settled"
            },
        );
        figures.tasks = flow.check();
        flow.stop(tasks);
    }
    if figures.recovery_ms.is_some() {
        figures.final_index = converge(&cluster, &checker, &log, config.recovery_bound).await;
    }
    let history = std::mem::take(&mut *workload.history.lock().unwrap_or_else(|p| p.into_inner()));
    check_history(&history, &checker, &mut figures);
    figures.max_term = cluster
        .ids()
        .iter()
        .filter_map(|&id| cluster.node(id))
        .map(|(_, raft, _)| raft.metrics().borrow().current_term)
        .max()
        .unwrap_or(0);
    figures.shared_terms = checker.shared_terms();
    let violations = checker.violations();
    log.line(
        "sim",
        format_args!(
            "end: {} writes acknowledged, {} unknown, {} reads, term {}, index {}, {} violations",
            figures.writes_acked,
            figures.writes_unknown,
            figures.reads,
            figures.max_term,
            figures.final_index,
            violations.len()
        ),
    );
    for &id in cluster.ids() {
        if let Some((_, raft, _)) = cluster.node(id) {
            let _ = raft.shutdown().await;
        }
    }
    Report {
        seed,
        violations,
        log: log.text(),
        figures,
    }
}

/// One line a second: each replica's role, term and applied index, and the messages.
async fn ticker(cluster: Cluster<RegistryMachine>, log: EventLog, end: Instant) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut parts = Vec::new();
        for &id in cluster.ids() {
            parts.push(match cluster.node(id) {
                None => format!("{} down", name(id)),
                Some((_, raft, machine)) => {
                    let m = raft.metrics().borrow().clone();
                    let role = match m.state {
                        ServerState::Leader => "L",
                        ServerState::Candidate => "C",
                        ServerState::Follower => "F",
                        ServerState::Learner => "l",
                        ServerState::Shutdown => "-",
                    };
                    let applied = machine.read(|_, i| i.unwrap_or(0));
                    let paused = if cluster.net().is_paused(id) {
                        " paused"
                    } else {
                        ""
                    };
                    format!("{} {role} t{} a{applied}{paused}", name(id), m.current_term)
                }
            });
        }
        let s = cluster.net().take_stats();
        log.line(
            "tick",
            format_args!(
                "{} | msgs {} sent {} delivered {} lost {} refused",
                parts.join(" | "),
                s.sent,
                s.delivered,
                s.lost,
                s.refused
            ),
        );
        if Instant::now() >= end {
            return;
        }
    }
}

/// After the final heal: a write must commit within `bound`. Returns how long it took.
async fn recover(
    cluster: &Cluster<RegistryMachine>,
    checker: &Checker,
    log: &EventLog,
    bound: Duration,
) -> Option<u64> {
    let start = Instant::now();
    let mut attempt = 0u64;
    while start.elapsed() < bound {
        for &id in cluster.ids() {
            let Some((_, raft, _)) = cluster.node(id) else {
                continue;
            };
            attempt += 1;
            let command = Command::SetWeight {
                role: "recovery".into(),
                weight: (attempt % 1000 + 1) as f64,
            };
            let write = raft.client_write(CommandBatch::one(command));
            if let Ok(Ok(resp)) = tokio::time::timeout(Duration::from_secs(1), write).await {
                let ms = start.elapsed().as_millis() as u64;
                log.line(
                    "sim",
                    format_args!(
                        "recovered: a write committed via {} at {} after {ms} ms",
                        name(id),
                        resp.log_id
                    ),
                );
                return Some(ms);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    checker.violation(format!(
        "recovery: no write committed within {} s of the final heal",
        bound.as_secs()
    ));
    None
}

/// Waits (up to `bound`) until every replica has applied the whole log; then their states
/// must be equal. Returns the last index.
async fn converge(
    cluster: &Cluster<RegistryMachine>,
    checker: &Checker,
    log: &EventLog,
    bound: Duration,
) -> u64 {
    let start = Instant::now();
    loop {
        let mut applied = Vec::new();
        let mut last_log = 0;
        for &id in cluster.ids() {
            if let Some((_, raft, machine)) = cluster.node(id) {
                last_log = last_log.max(raft.metrics().borrow().last_log_index.unwrap_or(0));
                applied.push((id, machine.read(|m, i| (i.unwrap_or(0), digest(m)))));
            }
        }
        let all_up = applied.len() == cluster.ids().len();
        let caught_up = applied.iter().all(|(_, (i, _))| *i == last_log);
        if all_up && caught_up {
            let (first, (_, d)) = applied[0];
            for (id, (_, other)) in &applied[1..] {
                if *other != d {
                    checker.violation(format!(
                        "agreement: at index {last_log} the state of {} differs from {}'s",
                        name(*id),
                        name(first)
                    ));
                }
            }
            log.line(
                "sim",
                format_args!("converged: every replica applied {last_log}"),
            );
            return last_log;
        }
        if start.elapsed() >= bound {
            let state: Vec<String> = applied
                .iter()
                .map(|(id, (i, _))| format!("{} applied {i}", name(*id)))
                .collect();
            checker.violation(format!(
                "recovery: the replicas did not catch up with index {last_log} within {} s: {}",
                bound.as_secs(),
                state.join(", ")
            ));
            return 0;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Durability of acknowledged writes and linearizability of each register.
fn check_history(history: &History, checker: &Checker, figures: &mut Figures) {
    for a in &history.acked {
        match checker.applied_at(a.log_id.index) {
            Some(l) if l == a.log_id => {}
            other => checker.violation(format!(
                "durability: write {} {} acknowledged at {} is not in the log (index {} holds {})",
                key(a.key),
                a.value,
                a.log_id,
                a.log_id.index,
                other.map_or("nothing".to_string(), |l| l.to_string())
            )),
        }
    }
    for (register, ops) in &history.ops {
        for op in ops {
            match (op.kind, op.complete_ms) {
                (OpKind::Write, Some(_)) => figures.writes_acked += 1,
                (OpKind::Write, None) => figures.writes_unknown += 1,
                (OpKind::Read, _) => figures.reads += 1,
            }
        }
        let c = linearizable::check(ops, 0, linearizable::DEFAULT_BUDGET);
        match c.outcome {
            Outcome::Linearizable => {}
            Outcome::NotLinearizable(v) => checker.violation(format!(
                "linearizable: {}: {}",
                key(*register),
                v.explanation
            )),
            Outcome::Undecided { reason } => checker.violation(format!(
                "linearizable: {}: undecided: {reason}",
                key(*register)
            )),
        }
    }
}
