//! Deliberate bugs, for the fault-injection harness's self-test: it runs a master with one
//! of these on and shows that its checkers catch it (a harness that cannot fail proves
//! nothing). Only jepsen-tests' `agora-master-faulty` binary turns them on; `agora-master`
//! has no flag or variable that reads them, so [`Faults::default`] (all off) is all it
//! ever runs with.

/// Which deliberate bugs are on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// Registers each agent with twice the resources it advertises, so the allocator
    /// offers and launches more than the agent has (caught by the over-commit checker).
    pub inflate_resources: bool,
    /// Sends every launch to a second agent as well, so the task runs twice (caught by the
    /// at-most-once checker).
    pub launch_twice: bool,
    /// Commits every fourth accept's launch but never sends it to the agent: the task
    /// stays TASK_STAGING for good (caught by the lost-task checker).
    pub drop_launches: bool,
    /// On becoming leader, removes every registered framework: acknowledged registrations
    /// are lost across a failover (caught by the durability checker).
    pub forget_frameworks: bool,
    /// Keeps answering role "leader" on `/health` after stepping down, with the new term
    /// (caught by the one-leader-per-term checker).
    pub stale_leader: bool,
    /// A new leader waits 8 s before its first allocation cycle (caught by the recovery
    /// checker).
    pub slow_failover: bool,
    /// A leader that lost its lease still passes [`crate::leader::Leader::require_leader`]:
    /// cut off from its majority, it keeps answering reads (`GetWeights`, `GetState`)
    /// from its own registry while the others elect a new leader and commit writes it
    /// never sees; its own writes are proposed but never commit (caught by the
    /// linearizable checker).
    pub stale_reads: bool,
    /// An agent session's status updates are recorded all at once, a task's own included,
    /// as before the fix of "updates out of order after a resend": a resent copy of an
    /// update can be passed on after the update behind it (caught by the simulator's
    /// update-order check).
    pub unordered_updates: bool,
    /// Updates of a replaced or ended agent session are still passed on, as before the
    /// fix of "TASK_STARTING after TASK_FINISHED": a copy written slowly on the old
    /// session reaches the framework after what the agent sent again on its new one.
    pub stale_session_updates: bool,
}

impl Faults {
    /// Every fault's name, as [`Faults::parse`] takes it.
    pub const NAMES: [&'static str; 9] = [
        "inflate-resources",
        "launch-twice",
        "drop-launches",
        "forget-frameworks",
        "stale-leader",
        "slow-failover",
        "stale-reads",
        "unordered-updates",
        "stale-session-updates",
    ];

    /// Parses a comma-separated list of names (empty: none).
    pub fn parse(list: &str) -> Result<Faults, String> {
        let mut f = Faults::default();
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name {
                "inflate-resources" => f.inflate_resources = true,
                "launch-twice" => f.launch_twice = true,
                "drop-launches" => f.drop_launches = true,
                "forget-frameworks" => f.forget_frameworks = true,
                "stale-leader" => f.stale_leader = true,
                "slow-failover" => f.slow_failover = true,
                "stale-reads" => f.stale_reads = true,
                "unordered-updates" => f.unordered_updates = true,
                "stale-session-updates" => f.stale_session_updates = true,
                other => {
                    return Err(format!(
                        "unknown fault {other:?} (one of {})",
                        Faults::NAMES.join(", ")
                    ))
                }
            }
        }
        Ok(f)
    }

    pub fn any(&self) -> bool {
        *self != Faults::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_to_its_own_fault_and_unknown_names_are_refused() {
        let mut seen = Vec::new();
        for name in Faults::NAMES {
            let f = Faults::parse(name).unwrap();
            assert!(f.any(), "{name}");
            assert!(!seen.contains(&f), "{name} duplicates another");
            seen.push(f);
        }
        assert!(!Faults::parse("").unwrap().any());
        let all = Faults::parse(&Faults::NAMES.join(",")).unwrap();
        assert!(all.inflate_resources && all.slow_failover && all.stale_reads);
        assert!(Faults::parse("launch-twice,bogus")
            .unwrap_err()
            .contains("bogus"));
    }
}
