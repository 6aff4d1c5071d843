//! `jepsen-tests`: the fault-injection harness's command line.
//!
//! ```text
//! cargo run --release -p jepsen-tests -- --masters 3 --agents 3 --time-limit 120 \
//!     --nemesis kill,pause,partition,agent --seed 42
//! cargo run --release -p jepsen-tests -- --self-test
//! ```
//!
//! Exit status: 0 when every checker passed (or, with `--self-test`, when every deliberate
//! bug was caught by its checker), 1 otherwise, 2 for bad arguments or a machine that
//! cannot run it (not root, no `ip`/`iptables`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use jepsen_tests::harness::{self, HarnessError, Options};
use jepsen_tests::nemesis::{self, Fault, Step};

#[derive(Parser, Debug)]
#[command(
    name = "jepsen-tests",
    about = "Runs an Agora cluster in network namespaces, breaks it on a seeded schedule, and checks that nothing was lost or double-allocated"
)]
struct Args {
    /// Master replicas (1, 3 or 5).
    #[arg(long, default_value_t = 3)]
    masters: usize,
    #[arg(long, default_value_t = 3)]
    agents: usize,
    /// Framework clients (roles a (weight 2), b (weight 1), * in turn).
    #[arg(long, default_value_t = 3)]
    frameworks: usize,
    /// Seconds of faults; then everything heals and the cluster must recover.
    #[arg(long, default_value_t = 120)]
    time_limit: u64,
    /// Faults: families (kill, pause, partition, agent, framework, membership, clock), single
    /// faults (kill-leader, pause-master, partition-ring, clock-jump, ...), all (every
    /// fault but clock-jump, which needs libfaketime), or none.
    #[arg(long, default_value = "kill,pause,partition,agent")]
    nemesis: String,
    /// Schedule seed (default: from the clock; printed, to replay the run).
    #[arg(long)]
    seed: Option<u64>,
    /// Where run directories go.
    #[arg(long, default_value = "target/jepsen")]
    out: PathBuf,
    /// Where agora-master, agora-agent, jepsen-workload and agora-master-faulty are
    /// (default: next to this program).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Run a deliberately broken master (self-test switch): comma-separated fault names.
    #[arg(long)]
    fault: Option<String>,
    /// Show that every checker can fail: one short run per deliberate bug.
    #[arg(long)]
    self_test: bool,
    /// Seconds the cluster runs after the final heal (recovery is checked in them).
    #[arg(long, default_value_t = 10)]
    settle: u64,
    /// Run the workload's tasks in containers from an image the harness builds and serves
    /// from a registry of its own (needs docker-registry, umoci, skopeo, crun).
    #[arg(long)]
    image_tasks: bool,
    /// Register clients (linearizability workload: role weights written and read through
    /// random masters); 0 turns it off.
    #[arg(long, default_value_t = 4)]
    register_clients: usize,
    /// Names of the run's namespaces, links and processes start with this (1-6 lowercase
    /// letters or digits): two runs with different prefixes and subnets run side by side.
    #[arg(long, default_value = "agj")]
    prefix: String,
    /// The run's network is 10.213.SUBNET.0/24.
    #[arg(long, default_value_t = 77)]
    subnet: u8,
}

fn usage(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("jepsen-tests: {msg}");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let text = e.to_string();
            return usage(
                text.lines()
                    .next()
                    .unwrap_or("bad arguments")
                    .trim_start_matches("error: "),
            );
        }
    };
    let faults = match nemesis::parse_nemesis(&args.nemesis) {
        Ok(f) => f,
        Err(e) => return usage(format!("--nemesis: {e}")),
    };
    if ![1, 3, 5].contains(&args.masters) {
        return usage("--masters: 1, 3 or 5");
    }
    if args.agents == 0 || args.frameworks == 0 || args.frameworks > 26 {
        return usage("--agents must be at least 1 and --frameworks 1 to 26");
    }
    let bin_dir = args
        .bin_dir
        .clone()
        .unwrap_or_else(harness::default_bin_dir);
    for bin in ["agora-master", "agora-agent", "jepsen-workload"] {
        if !bin_dir.join(bin).exists() {
            return usage(format!(
                "{} not found in {}: build the workspace's binaries first (cargo build --release --bins)",
                bin,
                bin_dir.display()
            ));
        }
    }
    let seed = args.seed.unwrap_or_else(|| {
        // Any seed will do; the run prints the one it drew.
        jepsen_tests::clock::unix_ms() % 1_000_000
    });
    let mut opts = Options::new(bin_dir, args.out.clone());
    opts.masters = args.masters;
    opts.agents = args.agents;
    opts.frameworks = args.frameworks;
    opts.time_limit = Duration::from_secs(args.time_limit);
    opts.faults = faults;
    opts.seed = seed;
    opts.settle = Duration::from_secs(args.settle);
    opts.image_tasks = args.image_tasks;
    opts.register_clients = args.register_clients;
    opts.prefix = args.prefix.clone();
    opts.subnet = args.subnet;
    if let Some(f) = &args.fault {
        opts.master_faults = f.split(',').map(|s| s.trim().to_string()).collect();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return usage(format!("cannot start the runtime: {e}")),
    };
    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let interrupted = interrupted.clone();
        runtime.spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            // SIGTERM and SIGHUP (a closed terminal) stop the run like Ctrl-C.
            let mut term = signal(SignalKind::terminate()).ok();
            let mut hup = signal(SignalKind::hangup()).ok();
            async fn next(s: Option<&mut tokio::signal::unix::Signal>) {
                match s {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {},
                _ = next(term.as_mut()) => {},
                _ = next(hup.as_mut()) => {},
            }
            eprintln!("jepsen-tests: interrupted; healing and tearing down");
            interrupted.store(true, Ordering::Relaxed);
        });
    }
    if args.self_test {
        return runtime.block_on(self_test(opts, interrupted));
    }
    eprintln!(
        "jepsen-tests: seed {seed}, {} masters, {} agents, {} frameworks, {} s, nemesis {}",
        opts.masters, opts.agents, opts.frameworks, args.time_limit, args.nemesis
    );
    match runtime.block_on(harness::run(opts, interrupted)) {
        Ok(outcome) => {
            println!("{}", outcome.summary);
            println!("run directory: {}", outcome.run_dir.display());
            if outcome.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e @ HarnessError::Net(_)) => usage(e),
        Err(e) => {
            eprintln!("jepsen-tests: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One deliberate bug, the checker that must catch it, and the faults that expose it.
struct Case {
    fault: &'static str,
    checker: &'static str,
    time_limit: u64,
    steps: Vec<Step>,
}

fn step(at_ms: u64, fault: Fault, duration_ms: u64) -> Step {
    Step {
        at_ms,
        fault,
        duration_ms,
        pick: 0,
    }
}

/// Runs the cluster once per deliberate bug (`agora-master-faulty`) and requires the
/// matching checker to fail each time.
async fn self_test(base: Options, interrupted: Arc<AtomicBool>) -> ExitCode {
    let cases = vec![
        Case {
            fault: "inflate-resources",
            checker: "no_overcommit",
            time_limit: 15,
            steps: Vec::new(),
        },
        Case {
            fault: "launch-twice",
            checker: "at_most_once",
            time_limit: 15,
            steps: Vec::new(),
        },
        Case {
            fault: "drop-launches",
            checker: "no_lost_tasks",
            time_limit: 15,
            steps: Vec::new(),
        },
        Case {
            fault: "forget-frameworks",
            checker: "durability",
            time_limit: 20,
            steps: vec![step(12_000, Fault::KillLeader, 3_000)],
        },
        Case {
            fault: "stale-leader",
            checker: "one_leader_per_term",
            time_limit: 20,
            steps: vec![step(12_000, Fault::PauseLeader, 4_000)],
        },
        Case {
            fault: "slow-failover",
            checker: "recovery",
            time_limit: 20,
            steps: vec![step(19_500, Fault::KillLeader, 0)],
        },
        // The leader cut off for 14 s: the others elect a new one and commit writes while
        // the old one, reached by the register clients (whom no partition cuts), keeps
        // answering reads from its own registry.
        Case {
            fault: "stale-reads",
            checker: "linearizable",
            time_limit: 21,
            steps: vec![step(6_000, Fault::PartitionLeader, 14_000)],
        },
    ];
    let mut table = String::from(
        "| deliberate bug | checker that must fail | result | checkers failed | run |\n|---|---|---|---|---|\n",
    );
    let mut all_caught = true;
    for case in cases {
        if interrupted.load(Ordering::Relaxed) {
            all_caught = false;
            break;
        }
        let mut opts = base.clone();
        opts.master_faults = vec![case.fault.to_string()];
        opts.time_limit = Duration::from_secs(case.time_limit);
        opts.schedule = Some(case.steps.clone());
        opts.settle = Duration::from_secs(8);
        eprintln!(
            "jepsen-tests: self-test: {} (must fail {})",
            case.fault, case.checker
        );
        let (result, failed, dir) = match harness::run(opts, interrupted.clone()).await {
            Ok(o) => {
                let failed: Vec<String> = o
                    .verdicts
                    .iter()
                    .filter(|v| !v.passed)
                    .map(|v| v.name.clone())
                    .collect();
                let caught = failed.iter().any(|f| f == case.checker);
                if !caught {
                    all_caught = false;
                }
                (
                    if caught { "caught" } else { "MISSED" },
                    failed.join(", "),
                    o.run_dir.display().to_string(),
                )
            }
            Err(e) => {
                all_caught = false;
                ("ERROR", e.to_string(), String::new())
            }
        };
        table.push_str(&format!(
            "| {} | {} | {result} | {failed} | {dir} |\n",
            case.fault, case.checker
        ));
    }
    println!("{table}");
    if all_caught {
        println!("self-test passed: every deliberate bug was caught by its checker");
        ExitCode::SUCCESS
    } else {
        println!("self-test FAILED: a deliberate bug went unnoticed (or a run failed)");
        ExitCode::FAILURE
    }
}
