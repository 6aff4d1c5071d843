//! `agora-sim`: deterministic simulations of the master quorum (see the library's docs).
//!
//! `agora-sim --seeds 300` runs seeds 1..=300 (`--first-seed` moves the start) on every
//! core, prints one line per failing seed with the command that replays it, and exits 1 if
//! any failed. `agora-sim --seed S --log FILE` runs one seed and writes its event log;
//! `--repeat K` runs it K times and checks the logs are identical.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use agora_master::quorum::ServingChecks;
use agora_sim::disk::DiskSettings;
use agora_sim::{Bug, Faults, Report, SimConfig};
use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "agora-sim",
    about = "Deterministic simulation of Agora's master quorum: one seed, one run, byte for byte"
)]
struct Args {
    /// Run this one seed.
    #[arg(long, conflicts_with_all = ["seeds", "first_seed"])]
    seed: Option<u64>,
    /// Run this many seeds, from --first-seed.
    #[arg(long, default_value_t = 1)]
    seeds: u64,
    #[arg(long, default_value_t = 1)]
    first_seed: u64,
    /// Replicas (3 or 5).
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Virtual time of the workload and the nemesis, e.g. 60s.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Register clients.
    #[arg(long, default_value_t = 4)]
    clients: u64,
    /// Simulated agents beside one framework, on the master's leader layer (0: no task
    /// flow, the register clients alone).
    #[arg(long, default_value_t = 3)]
    agents: usize,
    /// Faults the nemesis draws from: all, none, or names and families (kill, pause,
    /// partition, net), comma-separated.
    #[arg(long, default_value = "all")]
    nemesis: Faults,
    /// A deliberate bug (lying-disk, stale-reads, early-reads, restore-leader,
    /// unordered-updates, stale-session-updates): the run must then fail.
    #[arg(long)]
    bug: Option<Bug>,
    /// Make the committed index durable before openraft applies the entries it commits
    /// (else it reaches the disk with the next flush, as in raft-store).
    #[arg(long)]
    eager_committed: bool,
    /// Entries between snapshots.
    #[arg(long, default_value_t = 200)]
    snapshot_every: u64,
    /// Write the event log of --seed here.
    #[arg(long, requires = "seed")]
    log: Option<PathBuf>,
    /// Log every message sent, delivered and lost (else one summary a second).
    #[arg(long)]
    verbose: bool,
    /// Run a scripted failover race instead of random faults: `new-leader-reads` (with
    /// `--bug early-reads`, the master's read path before its fix) or
    /// `restarted-leader-reads` (with `--bug restore-leader`, raft-store before its fix).
    /// `resent-updates` (with `--bug unordered-updates`, the master's session reader before
    /// its fix) runs the random simulation under that scenario's conditions, for one seed
    /// or many.
    #[arg(long)]
    scenario: Option<String>,
    /// Run --seed this many times and check that the event logs are identical.
    #[arg(long, default_value_t = 1, requires = "seed")]
    repeat: u32,
    /// Worker threads for --seeds (default: the cores available).
    #[arg(long)]
    jobs: Option<usize>,
    /// Print tracing output (openraft's and the master's) on stderr, with this filter
    /// (e.g. `info`, `openraft=debug`); never into the event log.
    #[arg(long)]
    trace: Option<String>,
}

fn main() {
    let args = Args::parse();
    if let Some(s) = args.scenario.as_deref().filter(|s| {
        ![
            "new-leader-reads",
            "restarted-leader-reads",
            "resent-updates",
        ]
        .contains(s)
    }) {
        eprintln!("--scenario {s}: the scenarios are new-leader-reads, restarted-leader-reads and resent-updates");
        std::process::exit(2);
    }
    let scripted = args
        .scenario
        .as_deref()
        .is_some_and(|s| s != "resent-updates");
    if scripted && args.seed.is_none() {
        eprintln!("--scenario: new-leader-reads and restarted-leader-reads take one --seed");
        std::process::exit(2);
    }
    if let Some(filter) = &args.trace {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .init();
        agora_sim::sim::print_panics(true);
    }
    if !(1..=9).contains(&args.nodes) {
        eprintln!("--nodes {}: between 1 and 9", args.nodes);
        std::process::exit(2);
    }
    let config = SimConfig {
        nodes: args.nodes,
        duration: args.duration,
        clients: args.clients,
        faults: args.nemesis.clone(),
        bug: args.bug,
        verbose: args.verbose,
        snapshot_every: args.snapshot_every,
        lazy_committed: !args.eager_committed,
        flow: (args.agents > 0).then(|| agora_sim::flow::FlowConfig {
            agents: args.agents,
            ..Default::default()
        }),
        ..SimConfig::default()
    };
    let config = if args.scenario.as_deref() == Some("resent-updates") {
        agora_sim::scenario::resent_updates_config(args.bug)
    } else {
        config
    };
    let ok = match args.seed {
        Some(seed) => one(seed, &config, &args),
        None => many(&config, &args),
    };
    std::process::exit(if ok { 0 } else { 1 });
}

fn summary(r: &Report) -> String {
    let f = &r.figures;
    format!(
        "{} writes acknowledged, {} unknown, {} reads, {} launches acknowledged, {} tasks finished, last term {} ({} shared by two leaders), last index {}, recovery {}",
        f.writes_acked,
        f.writes_unknown,
        f.reads,
        f.tasks.launches_acked,
        f.tasks.tasks_finished,
        f.max_term,
        f.shared_terms,
        f.final_index,
        f.recovery_ms
            .map_or("none".to_string(), |ms| format!("{ms} ms"))
    )
}

/// The command that replays `seed`.
fn replay(config: &SimConfig, args: &Args, seed: u64) -> String {
    match args.scenario.as_deref() {
        Some(s) => {
            let bug = config
                .bug
                .map(|b| format!(" --bug {b}"))
                .unwrap_or_default();
            format!("agora-sim --seed {seed} --scenario {s}{bug} --log /tmp/sim-{seed}.log")
        }
        None => config.replay_command(seed),
    }
}

/// One run of `seed`: the random one `config` describes, or `--scenario`.
fn run_one(seed: u64, config: &SimConfig, args: &Args) -> Report {
    match args.scenario.as_deref().filter(|s| *s != "resent-updates") {
        Some("restarted-leader-reads") => agora_sim::scenario::restarted_leader_reads(
            seed,
            DiskSettings {
                restore_leader: config.bug == Some(Bug::RestoreLeader),
                ..DiskSettings::default()
            },
        ),
        Some(_) => {
            let checks = if config.bug == Some(Bug::EarlyReads) {
                ServingChecks::NONE
            } else {
                ServingChecks::ALL
            };
            agora_sim::scenario::new_leader_reads(seed, checks)
        }
        None => agora_sim::run(seed, config),
    }
}

fn one(seed: u64, config: &SimConfig, args: &Args) -> bool {
    let started = Instant::now();
    let report = run_one(seed, config, args);
    let took = started.elapsed();
    if let Some(path) = &args.log {
        if let Err(e) = std::fs::write(path, &report.log) {
            eprintln!("cannot write {}: {e}", path.display());
            return false;
        }
    }
    let mut ok = report.passed();
    println!(
        "seed {seed}: {} in {:.2} s: {}",
        if ok { "passed" } else { "FAILED" },
        took.as_secs_f64(),
        summary(&report)
    );
    for v in &report.violations {
        println!("  {v}");
    }
    for i in 1..args.repeat {
        let again = run_one(seed, config, args);
        if again.log != report.log {
            let line = report
                .log
                .lines()
                .zip(again.log.lines())
                .position(|(a, b)| a != b)
                .map_or_else(|| "at the end".to_string(), |n| format!("line {}", n + 1));
            println!("seed {seed}: run {} differs from run 1 ({line})", i + 1);
            ok = false;
        }
    }
    if args.repeat > 1 && ok {
        println!(
            "seed {seed}: {} runs, identical event logs ({} bytes)",
            args.repeat,
            report.log.len()
        );
    }
    ok
}

fn many(config: &SimConfig, args: &Args) -> bool {
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let first = args.first_seed;
    let last = first + args.seeds;
    let next = AtomicU64::new(first);
    let started = Instant::now();
    let (tx, rx) = mpsc::channel::<Report>();
    let mut failed = Vec::new();
    std::thread::scope(|s| {
        for _ in 0..jobs.min(args.seeds as usize) {
            let tx = tx.clone();
            let next = &next;
            s.spawn(move || loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= last {
                    return;
                }
                if tx.send(agora_sim::run(seed, config)).is_err() {
                    return;
                }
            });
        }
        drop(tx);
        for report in rx {
            if !report.passed() {
                let more = match report.violations.len() {
                    1 => String::new(),
                    n => format!(" (and {} more)", n - 1),
                };
                println!(
                    "seed {} FAILED: {}{more}\n  replay: {}",
                    report.seed,
                    report.violations[0],
                    replay(config, args, report.seed)
                );
                let _ = std::io::stdout().flush();
                failed.push(report.seed);
            }
        }
    });
    let took = started.elapsed().as_secs_f64();
    failed.sort_unstable();
    println!(
        "{} seeds ({first}..={}), {} failed{}, {:.1} s on {jobs} threads ({:.2} seeds/s)",
        args.seeds,
        last - 1,
        failed.len(),
        if failed.is_empty() {
            String::new()
        } else {
            format!(" ({failed:?})")
        },
        took,
        args.seeds as f64 / took
    );
    failed.is_empty()
}
