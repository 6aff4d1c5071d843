//! The nemesis: from 2 s into the run until its end, a quiet spell (0.5-3 s) then a fault
//! held for 1-6 s then healed, again and again. Each fault is drawn from the enabled ones
//! with the run's generator; targets that depend on the moment (who leads) are chosen when
//! the fault starts.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use agora_raft_store::{NodeId, StateMachine};
use tokio::time::Instant;

use crate::cluster::{name, Cluster};
use crate::events::EventLog;
use crate::net::Conditions;
use crate::rng::SimRng;

/// A fault the nemesis injects and heals.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// Crash the leader; restart it when the fault ends.
    KillLeader,
    /// Crash a random replica; restart it.
    KillNode,
    /// Crash a majority or all of them, one after the other within half a second (a power
    /// loss); restart them.
    KillMajority,
    /// Pause the leader (its messages and clients' calls wait); resume it.
    PauseLeader,
    /// Pause a random replica.
    PauseNode,
    /// Cut the leader off from every other replica.
    PartitionLeader,
    /// Split the replicas into two random halves.
    PartitionHalves,
    /// Replicas in a ring, each reaching only its neighbours (with 3: a line, one pair
    /// cut).
    PartitionRing,
    /// Two halves joined only through one bridge replica.
    PartitionBridge,
    /// One replica's messages to the others are lost; theirs reach it.
    PartitionOneWay,
    /// Messages delayed 10-200 ms and 5-30% of them lost.
    SlowNet,
}

impl Fault {
    pub const ALL: [Fault; 11] = [
        Fault::KillLeader,
        Fault::KillNode,
        Fault::KillMajority,
        Fault::PauseLeader,
        Fault::PauseNode,
        Fault::PartitionLeader,
        Fault::PartitionHalves,
        Fault::PartitionRing,
        Fault::PartitionBridge,
        Fault::PartitionOneWay,
        Fault::SlowNet,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::KillLeader => "kill-leader",
            Fault::KillNode => "kill-node",
            Fault::KillMajority => "kill-majority",
            Fault::PauseLeader => "pause-leader",
            Fault::PauseNode => "pause-node",
            Fault::PartitionLeader => "partition-leader",
            Fault::PartitionHalves => "partition-halves",
            Fault::PartitionRing => "partition-ring",
            Fault::PartitionBridge => "partition-bridge",
            Fault::PartitionOneWay => "partition-one-way",
            Fault::SlowNet => "slow-net",
        }
    }

    /// Its family for `--nemesis`: kill, pause, partition, net.
    pub fn family(self) -> &'static str {
        match self {
            Fault::KillLeader | Fault::KillNode | Fault::KillMajority => "kill",
            Fault::PauseLeader | Fault::PauseNode => "pause",
            Fault::PartitionLeader
            | Fault::PartitionHalves
            | Fault::PartitionRing
            | Fault::PartitionBridge
            | Fault::PartitionOneWay => "partition",
            Fault::SlowNet => "net",
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The faults a run may draw: `all`, `none`, or a comma-separated list of names and
/// families (`kill`, `pause`, `partition`, `net`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Faults(pub BTreeSet<Fault>);

impl Default for Faults {
    fn default() -> Self {
        Faults(Fault::ALL.into_iter().collect())
    }
}

/// A `--nemesis` value that names no fault.
#[derive(Debug, thiserror::Error)]
#[error("unknown fault or family {0:?} (all, none, kill, pause, partition, net, or a fault name)")]
pub struct UnknownFault(String);

impl FromStr for Faults {
    type Err = UnknownFault;

    fn from_str(s: &str) -> Result<Faults, UnknownFault> {
        let mut set = BTreeSet::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "all" => set.extend(Fault::ALL),
                "none" => {}
                _ => {
                    let matching: Vec<Fault> = Fault::ALL
                        .into_iter()
                        .filter(|f| f.name() == part || f.family() == part)
                        .collect();
                    if matching.is_empty() {
                        return Err(UnknownFault(part.to_string()));
                    }
                    set.extend(matching);
                }
            }
        }
        Ok(Faults(set))
    }
}

impl fmt::Display for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Faults::default() {
            return f.write_str("all");
        }
        if self.0.is_empty() {
            return f.write_str("none");
        }
        let names: Vec<&str> = self.0.iter().map(|x| x.name()).collect();
        f.write_str(&names.join(","))
    }
}

/// Injects faults into a cluster until a deadline.
pub struct Nemesis<M: StateMachine> {
    pub cluster: Cluster<M>,
    pub faults: Faults,
    pub rng: SimRng,
    pub log: EventLog,
    /// The network's conditions when no fault slows it.
    pub base: Conditions,
}

/// Both directions of every pair across `a` and `b`.
fn across(a: &[NodeId], b: &[NodeId]) -> Vec<(NodeId, NodeId)> {
    let mut pairs = Vec::new();
    for &x in a {
        for &y in b {
            pairs.push((x, y));
            pairs.push((y, x));
        }
    }
    pairs
}

fn names(nodes: &[NodeId]) -> String {
    let names: Vec<String> = nodes.iter().map(|&n| name(n)).collect();
    names.join(",")
}

impl<M: StateMachine> Nemesis<M> {
    /// Runs until `end`; everything it did is healed when it returns.
    pub async fn run(self, end: Instant) {
        let faults: Vec<Fault> = self.faults.0.iter().copied().collect();
        if faults.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        loop {
            tokio::time::sleep(self.rng.millis(500, 3_000)).await;
            let now = Instant::now();
            if now >= end {
                return;
            }
            let fault = *self.rng.pick(&faults);
            let hold = self.rng.millis(1_000, 6_000).min(end - now);
            self.inject(fault, hold).await;
        }
    }

    fn shuffled(&self) -> Vec<NodeId> {
        let mut ids = self.cluster.ids().to_vec();
        for i in (1..ids.len()).rev() {
            ids.swap(i, self.rng.below(i + 1));
        }
        ids
    }

    fn leader_or_random(&self) -> NodeId {
        self.cluster
            .leader()
            .unwrap_or_else(|| *self.rng.pick(self.cluster.ids()))
    }

    /// Injects `fault`, holds it for `hold`, heals it.
    async fn inject(&self, fault: Fault, hold: Duration) {
        let net = self.cluster.net();
        let ids = self.cluster.ids().to_vec();
        let mut crashed = Vec::new();
        let what = match fault {
            Fault::KillLeader | Fault::KillNode => {
                let node = if fault == Fault::KillLeader {
                    self.leader_or_random()
                } else {
                    *self.rng.pick(&ids)
                };
                crashed.push(node);
                name(node)
            }
            Fault::KillMajority => {
                let mut nodes = self.shuffled();
                nodes.truncate(self.rng.range(ids.len() as u64 / 2 + 1, ids.len() as u64) as usize);
                crashed = nodes;
                names(&crashed)
            }
            Fault::PauseLeader | Fault::PauseNode => {
                let node = if fault == Fault::PauseLeader {
                    self.leader_or_random()
                } else {
                    *self.rng.pick(&ids)
                };
                net.pause(node);
                name(node)
            }
            Fault::PartitionLeader => {
                let node = self.leader_or_random();
                let others: Vec<NodeId> = ids.iter().copied().filter(|&n| n != node).collect();
                net.cut(across(&[node], &others));
                format!("{} | {}", name(node), names(&others))
            }
            Fault::PartitionHalves => {
                let nodes = self.shuffled();
                let (a, b) = nodes.split_at(nodes.len() / 2);
                net.cut(across(a, b));
                format!("{} | {}", names(a), names(b))
            }
            Fault::PartitionRing if ids.len() <= 3 => {
                // Three in a ring all neighbour each other: a line instead.
                let nodes = self.shuffled();
                let (a, b) = (nodes[0], nodes[nodes.len() - 1]);
                net.cut(across(&[a], &[b]));
                format!("line {}", names(&nodes))
            }
            Fault::PartitionRing => {
                let nodes = self.shuffled();
                let n = nodes.len();
                let mut pairs = Vec::new();
                for i in 0..n {
                    for j in 0..n {
                        let d = (i + n - j) % n;
                        if i != j && d != 1 && d != n - 1 {
                            pairs.push((nodes[i], nodes[j]));
                        }
                    }
                }
                net.cut(pairs);
                format!("ring {}", names(&nodes))
            }
            Fault::PartitionBridge => {
                let nodes = self.shuffled();
                let (bridge, rest) = nodes.split_first().expect("replicas");
                let (a, b) = rest.split_at(rest.len() / 2);
                net.cut(across(a, b));
                format!(
                    "{} | {} | {} (bridge {})",
                    names(a),
                    name(*bridge),
                    names(b),
                    name(*bridge)
                )
            }
            Fault::PartitionOneWay => {
                let node = *self.rng.pick(&ids);
                let pairs: Vec<(NodeId, NodeId)> = ids
                    .iter()
                    .filter(|&&n| n != node)
                    .map(|&n| (node, n))
                    .collect();
                net.cut(pairs);
                format!("{} -/-> others", name(node))
            }
            Fault::SlowNet => {
                let c = Conditions {
                    delay_ms: (10, self.rng.range(50, 200)),
                    loss: self.rng.range(5, 30) as f64 / 100.0,
                };
                net.set_conditions(c);
                format!(
                    "delay {}-{} ms, loss {:.2}",
                    c.delay_ms.0, c.delay_ms.1, c.loss
                )
            }
        };
        self.log.line(
            "nemesis",
            format_args!("{fault} {what} for {} ms", hold.as_millis()),
        );
        for (i, &node) in crashed.iter().enumerate() {
            if i > 0 {
                tokio::time::sleep(self.rng.millis(0, 500 / crashed.len() as u64)).await;
            }
            self.cluster.crash(node).await;
        }
        tokio::time::sleep(hold).await;
        self.heal(&crashed).await;
        self.log.line("nemesis", format_args!("{fault} healed"));
    }

    /// Restarts `crashed`, resumes paused replicas, heals cuts and the network.
    async fn heal(&self, crashed: &[NodeId]) {
        let net = self.cluster.net();
        net.heal();
        net.resume_all();
        net.set_conditions(self.base);
        for &node in crashed {
            if !self.cluster.is_up(node) {
                self.cluster.start(node).await;
            }
        }
    }
}
