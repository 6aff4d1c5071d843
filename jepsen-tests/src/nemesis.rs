//! The nemesis's schedule: which fault, when, for how long, generated from a seed so a
//! failing run can be replayed. Pure: no processes, no clock, no randomness other than the
//! seeded generator here. Targets that depend on the cluster at the moment (who leads) are
//! chosen when a step is applied, from the step's own `pick` number, so a replay picks the
//! same way.

use std::fmt;
use std::str::FromStr;

/// A fault the nemesis can inject and heal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    /// SIGKILL the leader; restart it when the step ends.
    KillLeader,
    /// SIGKILL a random master; restart it.
    KillMaster,
    /// SIGKILL a minority of the masters (the leader may be among them); restart them.
    KillMinority,
    /// SIGSTOP the leader; SIGCONT it.
    PauseLeader,
    /// SIGSTOP a random master; SIGCONT it.
    PauseMaster,
    /// Cut the leader off from every other host.
    PartitionLeader,
    /// Split the hosts into two random halves (masters split as evenly as possible).
    PartitionHalves,
    /// Masters in a ring, each reaching only its neighbours: every one still sees a
    /// majority, but no two see the same one (with 3 masters: one pair cut).
    PartitionRing,
    /// Two halves of the masters joined only through one bridge master.
    PartitionBridge,
    /// SIGKILL a random agent (its executors live on); restart it.
    AgentKill,
    /// Cut a random agent off from every master.
    AgentPartition,
    /// SIGKILL a random framework client; restart it with its framework id.
    FrameworkKill,
    /// Replace a random follower master with a new replica (add, then remove).
    Membership,
    /// Step one master's wall clock 1 s to 5 min forward or back through libfaketime
    /// (its monotonic clock runs on); set it right again. Not in `all`: asked for by name
    /// or `clock`.
    ClockJump,
}

impl Fault {
    /// What `all` selects: every fault of [`Fault::EVERY`] but the last, `clock-jump`.
    pub const ALL: [Fault; 13] = {
        let mut all = [Fault::KillLeader; 13];
        let mut i = 0;
        while i < all.len() {
            all[i] = Fault::EVERY[i];
            i += 1;
        }
        all
    };

    /// Every fault: [`Fault::ALL`] and those only asked for by name or family (they need
    /// more than the harness's own tools: libfaketime for [`Fault::ClockJump`]).
    pub const EVERY: [Fault; 14] = [
        Fault::KillLeader,
        Fault::KillMaster,
        Fault::KillMinority,
        Fault::PauseLeader,
        Fault::PauseMaster,
        Fault::PartitionLeader,
        Fault::PartitionHalves,
        Fault::PartitionRing,
        Fault::PartitionBridge,
        Fault::AgentKill,
        Fault::AgentPartition,
        Fault::FrameworkKill,
        Fault::Membership,
        Fault::ClockJump,
    ];

    /// The name used in the history (`fault` of fault-start / fault-stop events).
    pub fn name(self) -> &'static str {
        match self {
            Fault::KillLeader => "kill-leader",
            Fault::KillMaster => "kill-master",
            Fault::KillMinority => "kill-minority",
            Fault::PauseLeader => "pause-leader",
            Fault::PauseMaster => "pause-master",
            Fault::PartitionLeader => "partition-leader",
            Fault::PartitionHalves => "partition-halves",
            Fault::PartitionRing => "partition-ring",
            Fault::PartitionBridge => "partition-bridge",
            Fault::AgentKill => "agent-kill",
            Fault::AgentPartition => "agent-partition",
            Fault::FrameworkKill => "framework-kill",
            Fault::Membership => "membership",
            Fault::ClockJump => "clock-jump",
        }
    }

    /// The `--nemesis` family it belongs to.
    pub fn family(self) -> Family {
        match self {
            Fault::KillLeader | Fault::KillMaster | Fault::KillMinority => Family::Kill,
            Fault::PauseLeader | Fault::PauseMaster => Family::Pause,
            Fault::PartitionLeader
            | Fault::PartitionHalves
            | Fault::PartitionRing
            | Fault::PartitionBridge => Family::Partition,
            Fault::AgentKill | Fault::AgentPartition => Family::Agent,
            Fault::FrameworkKill => Family::Framework,
            Fault::Membership => Family::Membership,
            Fault::ClockJump => Family::Clock,
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The families `--nemesis` selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    Kill,
    Pause,
    Partition,
    Agent,
    Framework,
    Membership,
    Clock,
}

impl FromStr for Family {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "kill" => Ok(Family::Kill),
            "pause" => Ok(Family::Pause),
            "partition" => Ok(Family::Partition),
            "agent" => Ok(Family::Agent),
            "framework" => Ok(Family::Framework),
            "membership" => Ok(Family::Membership),
            "clock" => Ok(Family::Clock),
            other => Err(format!(
                "unknown nemesis {other:?} (kill, pause, partition, agent, framework, membership, clock, all)"
            )),
        }
    }
}

/// Parses `--nemesis`: a comma-separated list of families (`kill`, `pause`, `partition`,
/// `agent`, `framework`, `membership`, `clock`), single faults (`kill-leader`, ...), `all`
/// (every fault of [`Fault::ALL`]) or `none`. Returns the faults selected, in
/// [`Fault::EVERY`] order.
pub fn parse_nemesis(list: &str) -> Result<Vec<Fault>, String> {
    let mut chosen = std::collections::BTreeSet::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part {
            "all" => chosen.extend(Fault::ALL),
            "none" => {}
            name => {
                if let Some(f) = Fault::EVERY.into_iter().find(|f| f.name() == name) {
                    chosen.insert(f);
                } else {
                    let family: Family = name.parse().map_err(|_| {
                        format!(
                            "unknown nemesis {name:?} (families: kill, pause, partition, agent, framework, membership, clock; a single fault such as kill-leader; all; none)"
                        )
                    })?;
                    chosen.extend(Fault::EVERY.into_iter().filter(|f| f.family() == family));
                }
            }
        }
    }
    Ok(Fault::EVERY
        .into_iter()
        .filter(|f| chosen.contains(f))
        .collect())
}

/// One fault window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// When the fault starts, ms since the run started.
    pub at_ms: u64,
    pub fault: Fault,
    /// How long it lasts before it is healed.
    pub duration_ms: u64,
    /// Chooses the targets when the step is applied (`pick % candidates`).
    pub pick: u64,
}

impl Step {
    pub fn end_ms(&self) -> u64 {
        self.at_ms + self.duration_ms
    }
}

/// How a schedule is laid out.
#[derive(Clone, Debug)]
pub struct Plan {
    pub seed: u64,
    /// The faults to draw from.
    pub faults: Vec<Fault>,
    /// Faults may run from `warmup_ms` until `time_limit_ms` (the final heal).
    pub warmup_ms: u64,
    pub time_limit_ms: u64,
    /// Quiet time between faults, and fault length: uniform in these ranges.
    pub gap_ms: (u64, u64),
    pub duration_ms: (u64, u64),
    /// Membership changes at most this often (each costs a replica's catch-up).
    pub max_membership: usize,
}

/// SplitMix64: small, fast and identical everywhere, so a seed means the same schedule on
/// every machine and every version of this crate.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi` (`lo` when `hi <= lo`).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.next_u64() % (hi - lo + 1)
    }
}

/// The faults of `plan`, one at a time, in order; none overlaps another or runs past the
/// time limit.
pub fn schedule(plan: &Plan) -> Vec<Step> {
    let faults = &plan.faults;
    let mut rng = Rng::new(plan.seed);
    let mut steps = Vec::new();
    if faults.is_empty() {
        return steps;
    }
    let mut memberships = 0;
    let mut t = plan.warmup_ms;
    loop {
        t += rng.range(plan.gap_ms.0, plan.gap_ms.1);
        let duration = rng.range(plan.duration_ms.0, plan.duration_ms.1);
        let mut fault = faults[(rng.next_u64() % faults.len() as u64) as usize];
        let pick = rng.next_u64();
        if t + duration > plan.time_limit_ms {
            break;
        }
        if fault == Fault::Membership {
            if memberships >= plan.max_membership {
                match faults.iter().find(|f| **f != Fault::Membership) {
                    Some(f) => fault = *f,
                    None => {
                        t += duration;
                        continue;
                    }
                }
            } else {
                memberships += 1;
            }
        }
        steps.push(Step {
            at_ms: t,
            fault,
            duration_ms: duration,
            pick,
        });
        t += duration;
    }
    steps
}

/// Index pairs to cut among `n` masters (indices `0..n`) for a ring or bridge topology.
/// Ring: every master keeps a majority of neighbours, but no two share the same majority.
/// Bridge: master `n/2` reaches everyone, the two sides only it.
pub fn ring_cuts(n: usize) -> Vec<(usize, usize)> {
    let mut cuts = Vec::new();
    if n < 3 {
        return cuts;
    }
    if n == 3 {
        return vec![(0, 1)];
    }
    // Each master keeps the ones within `reach` ring steps: itself plus 2*reach others,
    // just a majority.
    let majority = n / 2 + 1;
    let reach = (majority - 1).div_ceil(2);
    for i in 0..n {
        for j in i + 1..n {
            let d = (j - i).min(n - (j - i));
            if d > reach {
                cuts.push((i, j));
            }
        }
    }
    cuts
}

/// See [`ring_cuts`].
pub fn bridge_cuts(n: usize) -> Vec<(usize, usize)> {
    let bridge = n / 2;
    let mut cuts = Vec::new();
    for i in 0..bridge {
        for j in bridge + 1..n {
            cuts.push((i, j));
        }
    }
    cuts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(seed: u64, faults: Vec<Fault>) -> Plan {
        Plan {
            seed,
            faults,
            warmup_ms: 5_000,
            time_limit_ms: 120_000,
            gap_ms: (2_000, 6_000),
            duration_ms: (3_000, 10_000),
            max_membership: 1,
        }
    }

    #[test]
    fn a_seed_always_gives_the_same_schedule_and_another_seed_another() {
        let all = parse_nemesis("all").unwrap();
        let a = schedule(&plan(7, all.clone()));
        assert_eq!(a, schedule(&plan(7, all.clone())));
        assert_ne!(a, schedule(&plan(8, all)));
        assert!(a.len() >= 5, "{a:?}");
    }

    #[test]
    fn steps_never_overlap_start_after_warmup_or_outlive_the_limit() {
        for seed in 0..200 {
            let p = plan(seed, parse_nemesis("all").unwrap());
            let steps = schedule(&p);
            let mut last_end = p.warmup_ms;
            for s in &steps {
                assert!(s.at_ms >= last_end, "seed {seed}: {steps:?}");
                assert!(s.end_ms() <= p.time_limit_ms, "seed {seed}: {s:?}");
                assert!(p.faults.contains(&s.fault));
                last_end = s.end_ms();
            }
            let memberships = steps
                .iter()
                .filter(|s| s.fault == Fault::Membership)
                .count();
            assert!(memberships <= p.max_membership, "seed {seed}");
        }
    }

    #[test]
    fn only_the_chosen_families_appear_and_every_fault_of_them_eventually_does() {
        let faults = parse_nemesis("kill,agent").unwrap();
        assert_eq!(faults.len(), 5);
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..50 {
            for s in schedule(&plan(seed, faults.clone())) {
                assert!(matches!(s.fault.family(), Family::Kill | Family::Agent));
                seen.insert(s.fault);
            }
        }
        assert_eq!(seen.len(), 5, "{seen:?}");
    }

    #[test]
    fn no_families_no_faults_and_bad_names_are_refused() {
        assert!(schedule(&plan(1, Vec::new())).is_empty());
        assert!(parse_nemesis("none").unwrap().is_empty());
        let e = parse_nemesis("kill,flood").unwrap_err();
        assert!(e.contains("flood"), "{e}");
        assert_eq!(
            parse_nemesis("kill-leader,pause-leader").unwrap(),
            vec![Fault::KillLeader, Fault::PauseLeader]
        );
        assert_eq!(parse_nemesis("all").unwrap(), Fault::ALL.to_vec());
        assert!(!parse_nemesis("all").unwrap().contains(&Fault::ClockJump));
        assert_eq!(parse_nemesis("clock").unwrap(), vec![Fault::ClockJump]);
        let mut every = parse_nemesis("all,clock-jump").unwrap();
        assert_eq!(every.pop(), Some(Fault::ClockJump));
        assert_eq!(every, Fault::ALL.to_vec());
    }

    #[test]
    fn ring_and_bridge_leave_every_master_a_majority_but_no_common_view() {
        for n in [3usize, 5, 7] {
            for cuts in [ring_cuts(n), bridge_cuts(n)] {
                assert!(!cuts.is_empty());
                // Each master still reaches a majority (itself included)...
                let reach = |i: usize| {
                    1 + (0..n)
                        .filter(|&j| j != i)
                        .filter(|&j| !cuts.contains(&(i.min(j), i.max(j))))
                        .count()
                };
                let majority = n / 2 + 1;
                let with_majority = (0..n).filter(|&i| reach(i) >= majority).count();
                assert!(with_majority >= 1, "n={n} {cuts:?}");
                // ...but the graph is not complete.
                assert!(cuts.iter().all(|(a, b)| a < b && *b < n));
            }
            // In a ring every master keeps a majority.
            let cuts = ring_cuts(n);
            for i in 0..n {
                let reach = 1
                    + (0..n)
                        .filter(|&j| j != i && !cuts.contains(&(i.min(j), i.max(j))))
                        .count();
                assert!(reach > n / 2, "n={n} master {i} reaches {reach}");
            }
        }
    }

    #[test]
    fn splitmix_is_the_published_sequence() {
        // First outputs of SplitMix64 seeded with 0 (as in the reference implementation).
        let mut r = Rng::new(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }
}
