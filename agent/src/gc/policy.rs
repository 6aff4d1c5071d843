//! What to collect, decided without I/O and without reading a clock (the time, and the
//! work dir's filesystem usage, are passed in): which sandboxes are finished, when each
//! is due, and which go at a given moment.
//!
//! As Mesos: a sandbox is scheduled `gc_delay` after it finished. On top of that, when the
//! disk fills, every finished sandbox older than
//! `max_age = gc_delay * max(0, 1 - gc_disk_headroom - usage)` goes at once, oldest first.
//! Times are milliseconds since the Unix epoch ([`crate::clock::now_ms`]); a clock set back
//! before a sandbox's finish makes it zero milliseconds old, never negative.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Whether a sandbox may be scheduled for removal: its executor has exited, its tasks
/// (the command executor's one task) are terminal, and none of their status updates is
/// still waiting for the master's acknowledgement (the journal still has to deliver it,
/// and the sandbox is the evidence a framework may still look at).
pub fn collectable(tasks_terminal: bool, executor_running: bool, unacknowledged: usize) -> bool {
    tasks_terminal && !executor_running && unacknowledged == 0
}

/// The collection policy (`--gc-delay`, `--gc-disk-headroom`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Policy {
    /// How long a finished sandbox is kept.
    pub delay: Duration,
    /// The fraction of the filesystem to keep free, in [0, 1].
    pub disk_headroom: f64,
}

/// A duration in whole milliseconds, saturating.
fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Policy {
    /// `gc_delay` in milliseconds.
    pub fn delay_ms(&self) -> u64 {
        ms(self.delay)
    }

    /// Mesos' `age(usage)`: with the work dir's filesystem `usage` full (a fraction),
    /// finished sandboxes at least this old (milliseconds) go:
    /// `gc_delay * max(0, 1 - gc_disk_headroom - usage)`. Never more than `gc_delay`; an
    /// unknown (NaN) usage is no pressure at all.
    pub fn max_age_ms(&self, usage: f64) -> u64 {
        if usage.is_nan() {
            return self.delay_ms();
        }
        let factor = (1.0 - self.disk_headroom - usage).clamp(0.0, 1.0);
        if factor.is_nan() {
            return self.delay_ms();
        }
        // `as` saturates; the product is at most `delay_ms`.
        ((self.delay_ms() as f64 * factor) as u64).min(self.delay_ms())
    }

    /// When a sandbox finished at `finished_at_ms` is due.
    pub fn due_at_ms(&self, finished_at_ms: u64) -> u64 {
        finished_at_ms.saturating_add(self.delay_ms())
    }
}

/// A finished sandbox, scheduled for removal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sandbox {
    pub path: PathBuf,
    pub framework_id: String,
    /// The executor's id (the command executor's: its one task's id).
    pub executor_id: String,
    /// When it finished (ms since the Unix epoch).
    pub finished_at_ms: u64,
}

/// Why a sandbox goes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Reason {
    /// `gc_delay` has passed since it finished.
    Delay,
    /// The disk is `usage` full: sandboxes older than `max_age_ms` go early.
    DiskPressure { usage: f64, max_age_ms: u64 },
}

/// The scheduled sandboxes, one per path.
#[derive(Clone, Debug, Default)]
pub struct Schedule {
    entries: BTreeMap<PathBuf, Sandbox>,
}

impl Schedule {
    /// Schedules `sandbox`. A sandbox already scheduled keeps the earlier finish time.
    /// Returns whether it was not scheduled yet.
    pub fn insert(&mut self, sandbox: Sandbox) -> bool {
        match self.entries.get_mut(&sandbox.path) {
            Some(known) => {
                known.finished_at_ms = known.finished_at_ms.min(sandbox.finished_at_ms);
                false
            }
            None => {
                self.entries.insert(sandbox.path.clone(), sandbox);
                true
            }
        }
    }

    /// Unschedules the sandbox at `path`.
    pub fn remove(&mut self, path: &Path) -> Option<Sandbox> {
        self.entries.remove(path)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every scheduled sandbox, by path.
    pub fn iter(&self) -> impl Iterator<Item = &Sandbox> {
        self.entries.values()
    }

    /// When the next sandbox is due under `policy`, if any is scheduled.
    pub fn next_due_ms(&self, policy: &Policy) -> Option<u64> {
        self.iter()
            .map(|s| policy.due_at_ms(s.finished_at_ms))
            .min()
    }
}

/// The sandboxes to remove at `now_ms`, oldest first (by finish time, then path), each with
/// why: those `gc_delay` old, and, when the filesystem's `usage` was measured at this
/// moment, also those older than [`Policy::max_age_ms`]`(usage)`.
pub fn decide(
    schedule: &Schedule,
    policy: &Policy,
    now_ms: u64,
    usage: Option<f64>,
) -> Vec<(Sandbox, Reason)> {
    let delay = policy.delay_ms();
    let max_age = usage.map(|u| (u, policy.max_age_ms(u)));
    let mut out: Vec<(Sandbox, Reason)> = schedule
        .iter()
        .filter_map(|s| {
            let age = now_ms.saturating_sub(s.finished_at_ms);
            if age >= delay {
                Some((s.clone(), Reason::Delay))
            } else {
                match max_age {
                    Some((usage, max_age_ms)) if age >= max_age_ms => {
                        Some((s.clone(), Reason::DiskPressure { usage, max_age_ms }))
                    }
                    _ => None,
                }
            }
        })
        .collect();
    out.sort_by(|a, b| (a.0.finished_at_ms, &a.0.path).cmp(&(b.0.finished_at_ms, &b.0.path)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HOUR: u64 = 3_600_000;

    fn sandbox(name: &str, finished_at_ms: u64) -> Sandbox {
        Sandbox {
            path: PathBuf::from(format!("/w/sandboxes/fw/{name}")),
            framework_id: "fw".into(),
            executor_id: name.into(),
            finished_at_ms,
        }
    }

    fn policy(delay_ms: u64, disk_headroom: f64) -> Policy {
        Policy {
            delay: Duration::from_millis(delay_ms),
            disk_headroom,
        }
    }

    fn names(v: &[(Sandbox, Reason)]) -> Vec<&str> {
        v.iter().map(|(s, _)| s.executor_id.as_str()).collect()
    }

    #[test]
    fn only_a_finished_sandbox_with_every_update_acknowledged_is_collectable() {
        assert!(collectable(true, false, 0));
        assert!(!collectable(false, false, 0), "a live task");
        assert!(!collectable(true, true, 0), "an executor still running");
        assert!(!collectable(true, false, 1), "an update still to deliver");
    }

    #[test]
    fn max_age_is_mesos_formula() {
        let p = policy(10 * HOUR, 0.1);
        assert_eq!(p.max_age_ms(0.0), 9 * HOUR);
        assert_eq!(p.max_age_ms(0.4), 5 * HOUR);
        assert_eq!(p.max_age_ms(0.9), 0);
        assert_eq!(p.max_age_ms(0.95), 0);
        assert_eq!(p.max_age_ms(f64::NAN), 10 * HOUR);
        assert_eq!(policy(10 * HOUR, 0.0).max_age_ms(0.0), 10 * HOUR);
        assert_eq!(policy(10 * HOUR, 1.0).max_age_ms(0.0), 0);
        // A delay too long for milliseconds saturates instead of overflowing.
        let huge = Policy {
            delay: Duration::MAX,
            disk_headroom: 0.0,
        };
        assert_eq!(huge.max_age_ms(0.0), u64::MAX);
        assert_eq!(huge.due_at_ms(5), u64::MAX);
    }

    #[test]
    fn a_sandbox_goes_gc_delay_after_it_finished() {
        let p = policy(HOUR, 0.1);
        let mut s = Schedule::default();
        s.insert(sandbox("a", 1000));
        s.insert(sandbox("b", 2000));
        assert_eq!(s.next_due_ms(&p), Some(1000 + HOUR));
        assert!(decide(&s, &p, 1000 + HOUR - 1, None).is_empty());
        let now = decide(&s, &p, 1000 + HOUR, None);
        assert_eq!(names(&now), ["a"]);
        assert_eq!(now[0].1, Reason::Delay);
        assert_eq!(names(&decide(&s, &p, 5000 + HOUR, None)), ["a", "b"]);
        // A clock set back never makes anything older.
        assert!(decide(&s, &p, 0, Some(0.0)).is_empty());
    }

    #[test]
    fn a_full_disk_prunes_younger_sandboxes_oldest_first() {
        let p = policy(10 * HOUR, 0.1);
        let mut s = Schedule::default();
        s.insert(sandbox("new", 9 * HOUR));
        s.insert(sandbox("old", HOUR));
        s.insert(sandbox("mid", 5 * HOUR));
        let now = 10 * HOUR;
        // At 40% used, sandboxes at least 5 h old go: old (9 h) and mid (5 h).
        let pruned = decide(&s, &p, now, Some(0.4));
        assert_eq!(names(&pruned), ["old", "mid"]);
        assert_eq!(
            pruned[1].1,
            Reason::DiskPressure {
                usage: 0.4,
                max_age_ms: 5 * HOUR
            }
        );
        // Without a measurement at this moment, only the due ones.
        assert!(decide(&s, &p, now, None).is_empty());
        // At 90% used and above, every one of them.
        assert_eq!(
            names(&decide(&s, &p, now, Some(0.9))),
            ["old", "mid", "new"]
        );
    }

    #[test]
    fn a_sandbox_scheduled_twice_keeps_its_earlier_finish() {
        let mut s = Schedule::default();
        assert!(s.insert(sandbox("a", 50)));
        assert!(!s.insert(sandbox("a", 70)));
        assert!(!s.insert(sandbox("a", 20)));
        assert_eq!(s.len(), 1);
        assert_eq!(s.iter().next().unwrap().finished_at_ms, 20);
        assert_eq!(
            s.remove(Path::new("/w/sandboxes/fw/a"))
                .unwrap()
                .executor_id,
            "a"
        );
        assert!(s.is_empty());
        assert_eq!(s.next_due_ms(&policy(1, 0.1)), None);
    }

    fn schedule_strategy() -> impl Strategy<Value = Schedule> {
        prop::collection::vec((0u64..1_000, 0u64..20_000), 0..40).prop_map(|v| {
            let mut s = Schedule::default();
            for (name, at) in v {
                s.insert(sandbox(&format!("t{name}"), at));
            }
            s
        })
    }

    proptest! {
        /// What goes is exactly what is old enough: `gc_delay` without a measurement,
        /// `max_age(usage)` with one; oldest first; never anything younger.
        #[test]
        fn decide_takes_exactly_what_is_old_enough(
            schedule in schedule_strategy(),
            delay_ms in 0u64..20_000,
            headroom in 0.0f64..=1.0,
            usage in prop::option::of(0.0f64..=1.0),
            now in 0u64..40_000,
        ) {
            let p = policy(delay_ms, headroom);
            let threshold = usage.map_or(delay_ms, |u| p.max_age_ms(u));
            prop_assert!(threshold <= delay_ms);
            let taken = decide(&schedule, &p, now, usage);
            for (s, reason) in &taken {
                let age = now.saturating_sub(s.finished_at_ms);
                prop_assert!(age >= threshold);
                prop_assert_eq!(*reason == Reason::Delay, age >= delay_ms);
            }
            let taken_paths: std::collections::BTreeSet<&PathBuf> =
                taken.iter().map(|(s, _)| &s.path).collect();
            prop_assert_eq!(taken_paths.len(), taken.len());
            for s in schedule.iter() {
                let old_enough = now.saturating_sub(s.finished_at_ms) >= threshold;
                prop_assert_eq!(taken_paths.contains(&s.path), old_enough);
            }
            prop_assert!(taken
                .windows(2)
                .all(|w| w[0].0.finished_at_ms <= w[1].0.finished_at_ms));
        }

        /// A fuller disk never keeps what a less full one removes; more headroom never
        /// keeps more; removing what was decided leaves nothing to decide at that moment.
        #[test]
        fn pressure_is_monotonic_and_decisions_settle(
            schedule in schedule_strategy(),
            delay_ms in 0u64..20_000,
            headroom in 0.0f64..=1.0,
            more_headroom in 0.0f64..=1.0,
            low in 0.0f64..=1.0,
            high in 0.0f64..=1.0,
            now in 0u64..40_000,
        ) {
            let (low, high) = if low <= high { (low, high) } else { (high, low) };
            let p = policy(delay_ms, headroom);
            let paths = |v: Vec<(Sandbox, Reason)>| -> std::collections::BTreeSet<PathBuf> {
                v.into_iter().map(|(s, _)| s.path).collect()
            };
            let at_low = paths(decide(&schedule, &p, now, Some(low)));
            let at_high = paths(decide(&schedule, &p, now, Some(high)));
            let unmeasured = paths(decide(&schedule, &p, now, None));
            prop_assert!(at_low.is_subset(&at_high));
            prop_assert!(unmeasured.is_subset(&at_low));
            let roomier = policy(delay_ms, headroom.max(more_headroom));
            prop_assert!(at_low.is_subset(&paths(decide(&schedule, &roomier, now, Some(low)))));
            let mut rest = schedule.clone();
            for path in &at_high {
                prop_assert!(rest.remove(path).is_some());
            }
            prop_assert!(decide(&rest, &p, now, Some(high)).is_empty());
            // Whatever is left is due no earlier than now + 1 ms.
            if let Some(due) = rest.next_due_ms(&p) {
                prop_assert!(due > now);
            }
        }
    }
}
