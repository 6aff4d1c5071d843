//! Scripted runs: a failover race set up on purpose, step by step, instead of waited for
//! among random faults. Each is deterministic for its seed (message delays and fsync times
//! still come from it) and checked as a random run is.
//!
//! [`new_leader_reads`]: **a new leader that serves reads before it has applied the
//! previous term's entries.** The race the fault-injection harness found in issue 5: a
//! reconciliation answered "unknown task" for a task that was launched. The leader
//! acknowledges a write whose entry both followers hold, but neither has heard that it was
//! committed (the leader's messages to them are cut the moment they hold it); the leader
//! dies; one follower is elected. Until it commits an entry of its own term it does not
//! know the write was committed and has not applied it. Readers poll both followers every
//! millisecond through the master's read path (`agora_master::quorum::view_of`) with the
//! given checks, and every read they are served must see the write.
//!
//! [`restarted_leader_reads`]: **a leader restarted before anyone else is elected.** The
//! leader acknowledges a write and crashes before its committed index reaches its disk
//! (raft-store persists it with the next flush); it is restarted at once. openraft 0.9
//! resumes a replica whose saved vote is a committed vote for itself as leader, in the same
//! term, without an election, and takes the committed index it reads back as the floor of
//! its linearizable reads. Readers poll every replica every millisecond through the read
//! index (`get_read_log_id`, then the replica's machine once it has applied that far), and
//! every read they are served must see the write. raft-store's `read_vote` hands the vote
//! back uncommitted, so the restarted replica must win a new term first; the disk's
//! [`DiskSettings::restore_leader`] is the code before that fix.
//!
//! [`resent_updates`]: **status updates out of order after a resend.** The race the
//! harness found in issue 5: a framework was told STARTING, RUNNING, STARTING. An agent
//! sends a task's oldest unacknowledged update again when it has gone unacknowledged for
//! its retry interval, and the next one once it is acknowledged; when the framework's
//! acknowledgement comes back just as the resend goes out, the resent copy and the update
//! behind it are at the leader together. The master handled them concurrently, and the
//! copy's write could reach the log after the later update's (the master's tasks
//! interleave as on its multi-threaded runtime, `agora_master::interleave`). No faults:
//! the framework acknowledges each update 150-250 ms after it gets it, around the agents'
//! 200 ms retry interval, so resends race acknowledgements throughout. With
//! [`Bug::UnorderedUpdates`] (the session reader before the fix) the framework hears a
//! task's updates out of order.

use std::sync::Arc;
use std::time::Duration;

use crate::flow::FlowConfig;
use crate::nemesis::Faults;
use crate::sim::Bug;

use agora_master::config::RaftTiming;
use agora_master::quorum::{view_of, ServingChecks};
use agora_master::store::RegistryMachine;
use agora_raft_store::NodeId;
use agora_registry::{Command, CommandBatch};
use jepsen_tests::linearizable::{self, Op, OpKind, Outcome};
use jepsen_tests::register::{key, value_of, weight_of};
use tokio::time::Instant;

use crate::check::Checker;
use crate::cluster::{name, Cluster};
use crate::disk::DiskSettings;
use crate::events::EventLog;
use crate::net::Conditions;
use crate::rng::SimRng;
use crate::sim::{run_with, Figures, Report, SimConfig};

/// The run of [`resent_updates`] (module docs), with the master's `bug` if any.
pub fn resent_updates(seed: u64, bug: Option<Bug>) -> Report {
    let config = resent_updates_config(bug);
    crate::sim::run(seed, &config)
}

/// What [`resent_updates`] runs.
pub fn resent_updates_config(bug: Option<Bug>) -> SimConfig {
    SimConfig {
        duration: Duration::from_secs(8),
        clients: 0,
        faults: Faults(Default::default()),
        bug,
        flow: Some(FlowConfig {
            agents: 3,
            cut_agents: false,
            ack_delay: (150, 250),
            ..FlowConfig::default()
        }),
        ..SimConfig::default()
    }
}

/// Reads served after the write, then the run ends.
const READS: usize = 20;

/// The race of the module docs, with the reads served under `checks`
/// (`ServingChecks::ALL` is the master's; none is the code before the fix).
pub fn new_leader_reads(seed: u64, checks: ServingChecks) -> Report {
    run_with(seed, || new_leader_reads_run(seed, checks))
}

async fn new_leader_reads_run(seed: u64, checks: ServingChecks) -> Report {
    let what = format!(
        "new-leader-reads, checks: lease {}, own term applied {}",
        checks.lease, checks.own_term_applied
    );
    let (cluster, checker, log) = setup(seed, &what, DiskSettings::default()).await;
    let mut ops = Vec::new();
    if let Err(e) = race(&cluster, &log, checks, &mut ops).await {
        checker.violation(format!("scenario: {e}"));
    }
    finish(seed, cluster, checker, log, &ops).await
}

/// Starts three replicas on disks with `disk` and initializes them.
async fn setup(
    seed: u64,
    what: &str,
    disk: DiskSettings,
) -> (Cluster<RegistryMachine>, Checker, EventLog) {
    let log = EventLog::new(true);
    log.line("sim", format_args!("seed {seed}: scenario {what}"));
    let rng = SimRng::new(seed);
    let checker = Checker::new(log.clone());
    let config = Arc::new(
        SimConfig::default()
            .raft_config()
            .validate()
            .expect("the simulation's openraft configuration is valid"),
    );
    let cluster: Cluster<RegistryMachine> =
        Cluster::new(3, config, disk, rng, log.clone(), checker.clone());
    cluster.net().set_conditions(Conditions::default());
    for &id in cluster.ids() {
        cluster.start(id).await;
    }
    cluster.initialize().await;
    (cluster, checker, log)
}

/// Checks register 0's history, stops the replicas, and reports.
async fn finish(
    seed: u64,
    cluster: Cluster<RegistryMachine>,
    checker: Checker,
    log: EventLog,
    ops: &[Op],
) -> Report {
    let c = linearizable::check(ops, 0, linearizable::DEFAULT_BUDGET);
    match c.outcome {
        Outcome::Linearizable => {}
        Outcome::NotLinearizable(v) => {
            checker.violation(format!("linearizable: {}: {}", key(0), v.explanation))
        }
        Outcome::Undecided { reason } => {
            checker.violation(format!("linearizable: {}: undecided: {reason}", key(0)))
        }
    }
    for &id in cluster.ids() {
        if let Some((_, raft, _)) = cluster.node(id) {
            let _ = raft.shutdown().await;
        }
    }
    let reads = ops.iter().filter(|o| o.kind == OpKind::Read).count() as u64;
    let violations = checker.violations();
    log.line(
        "sim",
        format_args!("end: {reads} reads, {} violations", violations.len()),
    );
    Report {
        seed,
        violations,
        log: log.text(),
        figures: Figures {
            writes_acked: 1,
            reads,
            ..Figures::default()
        },
    }
}

/// A leader that serves (under every check: it has committed its term's first entry).
async fn serving_leader(cluster: &Cluster<RegistryMachine>) -> Result<NodeId, String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(l) = cluster
            .leader()
            .filter(|&l| serves(cluster, l, ServingChecks::ALL))
        {
            return Ok(l);
        }
        if Instant::now() >= deadline {
            return Err("no leader within 10 s of the start".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The race of [`restarted_leader_reads`] on disks with `disk` (its
/// [`DiskSettings::restore_leader`] on: the code before the fix).
pub fn restarted_leader_reads(seed: u64, disk: DiskSettings) -> Report {
    run_with(seed, || async move {
        let what = format!(
            "restarted-leader-reads, vote read back {}",
            if disk.restore_leader {
                "as saved (committed)"
            } else {
                "uncommitted"
            }
        );
        // Flushes take 2-4 ms, so that the committed index is still on its way to the
        // disk when the leader crashes (a crash keeps a random prefix of what is pending).
        let disk = DiskSettings {
            fsync_ms: (2, 4),
            ..disk
        };
        let (cluster, checker, log) = setup(seed, &what, disk).await;
        let mut ops = Vec::new();
        if let Err(e) = restart_race(&cluster, &log, &mut ops).await {
            checker.violation(format!("scenario: {e}"));
        }
        finish(seed, cluster, checker, log, &ops).await
    })
}

async fn restart_race(
    cluster: &Cluster<RegistryMachine>,
    log: &EventLog,
    ops: &mut Vec<Op>,
) -> Result<(), String> {
    let leader = serving_leader(cluster).await?;
    let (_, raft, _) = cluster.node(leader).ok_or("the leader stopped")?;
    let value = 1;
    let invoke_ms = log.now_ms();
    log.line(
        "c0",
        format_args!("write {} {value} via {}", key(0), name(leader)),
    );
    let resp = tokio::time::timeout(
        Duration::from_secs(5),
        raft.client_write(CommandBatch::one(Command::SetWeight {
            role: key(0),
            weight: weight_of(value),
        })),
    )
    .await
    .map_err(|_| "the write was not acknowledged within 5 s".to_string())?
    .map_err(|e| format!("the write failed: {e}"))?;
    acknowledged(log, ops, leader, value, invoke_ms, resp.log_id);
    // The moment it is acknowledged, the leader crashes (its committed index not yet on
    // its disk) and is started again.
    cluster.crash(leader).await;
    cluster.start(leader).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while ops.len() <= READS {
        if Instant::now() >= deadline {
            return Err(format!(
                "{} reads served within 5 s of the leader's restart",
                ops.len() - 1
            ));
        }
        // A millisecond first: a read invoked in the millisecond the write was
        // acknowledged counts as concurrent with it.
        tokio::time::sleep(Duration::from_millis(1)).await;
        for &n in cluster.ids() {
            let Some((generation, raft, machine)) = cluster.node(n) else {
                continue;
            };
            let invoke_ms = log.now_ms();
            let read = async {
                let (read_log_id, _) = raft.get_read_log_id().await.ok()?;
                machine
                    .applied(read_log_id.map_or(0, |l| l.index))
                    .await
                    .ok()?;
                Some(read_log_id)
            };
            let Ok(Some(read_log_id)) = tokio::time::timeout(Duration::from_secs(1), read).await
            else {
                continue;
            };
            if cluster.node(n).map(|(g, _, _)| g) != Some(generation) {
                continue;
            }
            let (value, applied) = machine.read(|m, i| {
                (
                    m.0.weights().get(&key(0)).map_or(0, |w| value_of(*w)),
                    i.unwrap_or(0),
                )
            });
            let now = log.now_ms();
            log.line(
                "r0",
                format_args!(
                    "read {} {value} from {} (read index {}, applied {applied})",
                    key(0),
                    name(n),
                    read_log_id.map_or(0, |l| l.index)
                ),
            );
            ops.push(Op {
                kind: OpKind::Read,
                value,
                invoke_ms,
                complete_ms: Some(now),
                client: format!("r0 via {}", name(n)),
            });
        }
    }
    Ok(())
}

/// Records client c0's write of `value` through `leader`, acknowledged now at `log_id`.
fn acknowledged(
    log: &EventLog,
    ops: &mut Vec<Op>,
    leader: NodeId,
    value: u64,
    invoke_ms: u64,
    log_id: openraft::LogId<NodeId>,
) {
    log.line(
        "c0",
        format_args!("write {} {value} ok at {log_id}", key(0)),
    );
    ops.push(Op {
        kind: OpKind::Write,
        value,
        invoke_ms,
        complete_ms: Some(log.now_ms()),
        client: format!("c0 via {}", name(leader)),
    });
}

/// Whether `node` serves reads under `checks`, as the master decides it.
fn serves(cluster: &Cluster<RegistryMachine>, node: NodeId, checks: ServingChecks) -> bool {
    let (Some((_, raft, _)), Some(contacts)) = (cluster.node(node), cluster.contacts(node)) else {
        return false;
    };
    let m = raft.metrics();
    let view = view_of(
        &m.borrow(),
        node,
        &contacts,
        RaftTiming::default().lease(),
        checks,
    );
    view.is_leader
}

async fn race(
    cluster: &Cluster<RegistryMachine>,
    log: &EventLog,
    checks: ServingChecks,
    ops: &mut Vec<Op>,
) -> Result<(), String> {
    let leader = serving_leader(cluster).await?;
    let followers: Vec<NodeId> = cluster
        .ids()
        .iter()
        .copied()
        .filter(|&n| n != leader)
        .collect();
    let (_, raft, _) = cluster.node(leader).ok_or("the leader stopped")?;
    let before = raft.metrics().borrow().last_log_index.unwrap_or(0);
    let value = 1;
    let invoke_ms = log.now_ms();
    log.line(
        "c0",
        format_args!("write {} {value} via {}", key(0), name(leader)),
    );
    let command = CommandBatch::one(Command::SetWeight {
        role: key(0),
        weight: weight_of(value),
    });
    let write = tokio::spawn(async move { raft.client_write(command).await });
    // The moment both followers hold the entry, the leader's messages to them are cut:
    // their acceptances still reach it (it commits and acknowledges), its commit index
    // never reaches them.
    for &f in &followers {
        let (_, fr, _) = cluster.node(f).ok_or("a follower stopped")?;
        let mut rx = fr.metrics();
        rx.wait_for(|m| m.last_log_index.unwrap_or(0) > before)
            .await
            .map_err(|_| format!("{} stopped", name(f)))?;
    }
    cluster
        .net()
        .cut(followers.iter().map(|&f| (leader, f)).collect::<Vec<_>>());
    log.line(
        "sim",
        format_args!(
            "both followers hold index {}: {}'s messages to them cut",
            before + 1,
            name(leader)
        ),
    );
    let resp = tokio::time::timeout(Duration::from_secs(5), write)
        .await
        .map_err(|_| "the write was not acknowledged within 5 s".to_string())?
        .map_err(|e| format!("the write's task failed: {e}"))?
        .map_err(|e| format!("the write failed: {e}"))?;
    acknowledged(log, ops, leader, value, invoke_ms, resp.log_id);
    cluster.crash(leader).await;
    // Readers poll the followers every millisecond; each read a replica serves is recorded.
    let deadline = Instant::now() + Duration::from_secs(5);
    while ops.len() <= READS {
        if Instant::now() >= deadline {
            return Err(format!(
                "{} reads served within 5 s of the leader's crash",
                ops.len() - 1
            ));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
        for &f in &followers {
            if !serves(cluster, f, checks) {
                continue;
            }
            let Some((_, _, machine)) = cluster.node(f) else {
                continue;
            };
            let (read, applied) = machine.read(|m, i| {
                (
                    m.0.weights().get(&key(0)).map_or(0, |w| value_of(*w)),
                    i.unwrap_or(0),
                )
            });
            let now = log.now_ms();
            log.line(
                "r0",
                format_args!(
                    "read {} {read} from {} (applied {applied})",
                    key(0),
                    name(f)
                ),
            );
            ops.push(Op {
                kind: OpKind::Read,
                value: read,
                invoke_ms: now,
                complete_ms: Some(now),
                client: format!("r0 via {}", name(f)),
            });
        }
    }
    Ok(())
}
