//! The leader's soft state: what it decides and keeps only in memory, as Mesos does, and
//! loses with the leadership. Decline filters, suppression, frameworks that have not yet
//! subscribed to this leader, when each launch was committed, and the last update passed
//! on to each task's framework (so one sent again at once is not passed on twice). A plain
//! struct: every method takes `now` (ms) as an argument.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use agora_registry::{AgentId, FrameworkId, Resources, TaskId};

/// Launches remembered at once for the launch-to-running histogram; more are not timed.
const MAX_TIMED_LAUNCHES: usize = 100_000;

/// An update an agent sends again within this long of the first time is not passed on to
/// the framework a second time (an agent re-sends its in-flight update at once when a
/// terminal state is queued behind it, `latest_state`; its own retries come 2 s or more
/// apart, and those still reach the framework, which may have missed the first).
pub const DUPLICATE_WINDOW_MS: u64 = 1_000;

/// Forwarded updates remembered at once, whatever their age (a bound for a burst faster
/// than the window can expire).
const MAX_FORWARDED: usize = 100_000;

/// Resources a framework refused on an agent, until a time.
#[derive(Clone, Debug, PartialEq)]
pub struct DeclineFilter {
    pub until_ms: u64,
    pub resources: Resources,
}

#[derive(Default, Debug)]
pub struct SoftState {
    filters: BTreeMap<(FrameworkId, AgentId), Vec<DeclineFilter>>,
    suppressed: BTreeSet<FrameworkId>,
    /// Registered-as-active frameworks this leader has not seen subscribe, since when.
    unsubscribed_since: BTreeMap<FrameworkId, u64>,
    /// When this leader committed each task's launch, until its TASK_RUNNING is committed.
    launched_at: BTreeMap<(FrameworkId, TaskId), u64>,
    /// Offers this leader has made each framework: the allocator's tie-breaker between
    /// equal shares (fewer first), kept across its per-cycle rebuilds.
    offers_made: BTreeMap<FrameworkId, u64>,
    /// The last update passed on to each task's framework, within the duplicate window:
    /// its uuid, and when.
    forwarded: BTreeMap<(FrameworkId, TaskId), (String, u64)>,
    /// The same keys in the order they were forwarded, to forget each one as its window
    /// ends: the map holds about one window's updates, not one entry per task ever seen.
    forwarded_order: VecDeque<(u64, FrameworkId, TaskId)>,
}

impl SoftState {
    /// `framework` refuses `resources` on `agent` until `until_ms`. A filter already
    /// expired at `now`, or on nothing, is not kept.
    pub fn decline(
        &mut self,
        framework: &FrameworkId,
        agent: &AgentId,
        resources: Resources,
        until_ms: u64,
        now: u64,
    ) {
        if until_ms <= now || resources.is_empty() {
            return;
        }
        self.filters
            .entry((framework.clone(), agent.clone()))
            .or_default()
            .push(DeclineFilter {
                until_ms,
                resources,
            });
    }

    /// Drops the filters expired at `now` and returns those still in force.
    pub fn live_filters(&mut self, now: u64) -> Vec<(FrameworkId, AgentId, DeclineFilter)> {
        self.filters.retain(|_, list| {
            list.retain(|f| f.until_ms > now);
            !list.is_empty()
        });
        self.filters
            .iter()
            .flat_map(|((fw, agent), list)| {
                list.iter()
                    .map(move |f| (fw.clone(), agent.clone(), f.clone()))
            })
            .collect()
    }

    /// The framework wants offers again: no suppression, no filters.
    pub fn revive(&mut self, framework: &FrameworkId) {
        self.suppressed.remove(framework);
        self.filters.retain(|(f, _), _| f != framework);
    }

    pub fn suppress(&mut self, framework: &FrameworkId) {
        self.suppressed.insert(framework.clone());
    }

    pub fn is_suppressed(&self, framework: &FrameworkId) -> bool {
        self.suppressed.contains(framework)
    }

    /// A framework subscribed to this leader.
    pub fn subscribed(&mut self, framework: &FrameworkId) {
        self.unsubscribed_since.remove(framework);
    }

    /// Frameworks registered as active (`active`) but not subscribed to this leader
    /// (`subscribed` says who is): each counts as missing from the first time it was seen
    /// missing, and those missing for longer than `grace_ms` at `now` are returned with
    /// that time, for their failover timeout to start from it.
    pub fn missing_subscriptions(
        &mut self,
        active: &[FrameworkId],
        subscribed: impl Fn(&FrameworkId) -> bool,
        now: u64,
        grace_ms: u64,
    ) -> Vec<(FrameworkId, u64)> {
        self.unsubscribed_since
            .retain(|f, _| active.contains(f) && !subscribed(f));
        active
            .iter()
            .filter(|f| !subscribed(f))
            .filter_map(|f| {
                let since = *self.unsubscribed_since.entry(f.clone()).or_insert(now);
                (now.saturating_sub(since) > grace_ms).then(|| (f.clone(), since))
            })
            .collect()
    }

    /// Its disconnection was recorded: no longer missing.
    pub fn disconnection_recorded(&mut self, framework: &FrameworkId) {
        self.unsubscribed_since.remove(framework);
    }

    /// This leader committed these launches at `now`.
    pub fn launched<'a>(
        &mut self,
        framework: &FrameworkId,
        tasks: impl IntoIterator<Item = &'a TaskId>,
        now: u64,
    ) {
        if self.launched_at.len() >= MAX_TIMED_LAUNCHES {
            return;
        }
        for t in tasks {
            self.launched_at.insert((framework.clone(), t.clone()), now);
        }
    }

    /// A task reached TASK_RUNNING (or ended) at `now`: the time since this leader
    /// committed its launch, if it did.
    pub fn running(&mut self, framework: &FrameworkId, task: &TaskId, now: u64) -> Option<u64> {
        self.launched_at
            .remove(&(framework.clone(), task.clone()))
            .map(|at| now.saturating_sub(at))
    }

    /// How many offers this leader has made `framework`.
    pub fn offers_made(&self, framework: &FrameworkId) -> u64 {
        self.offers_made.get(framework).copied().unwrap_or(0)
    }

    /// This leader made `framework` one more offer.
    pub fn offered(&mut self, framework: &FrameworkId) {
        *self.offers_made.entry(framework.clone()).or_default() += 1;
    }

    /// Whether the update `uuid` of `task` goes to its framework at `now`: not when the
    /// same update went less than [`DUPLICATE_WINDOW_MS`] ago. Remembers it when it goes.
    pub fn forward_update(
        &mut self,
        framework: &FrameworkId,
        task: &TaskId,
        uuid: &str,
        now: u64,
    ) -> bool {
        self.expire_forwarded(now);
        let key = (framework.clone(), task.clone());
        if let Some((last, at)) = self.forwarded.get(&key) {
            if last == uuid && now.saturating_sub(*at) < DUPLICATE_WINDOW_MS {
                return false;
            }
        }
        if self.forwarded.len() < MAX_FORWARDED {
            self.forwarded_order
                .push_back((now, framework.clone(), task.clone()));
            self.forwarded.insert(key, (uuid.to_string(), now));
        }
        true
    }

    /// Forgets the forwarded updates whose duplicate window has ended at `now`. A key
    /// forwarded again since is kept: its map entry is newer than its place in the queue.
    fn expire_forwarded(&mut self, now: u64) {
        while let Some((at, _, _)) = self.forwarded_order.front() {
            if now.saturating_sub(*at) < DUPLICATE_WINDOW_MS {
                break;
            }
            let Some((at, framework, task)) = self.forwarded_order.pop_front() else {
                break;
            };
            let key = (framework, task);
            if self
                .forwarded
                .get(&key)
                .is_some_and(|(_, last)| *last == at)
            {
                self.forwarded.remove(&key);
            }
        }
        if self.forwarded.is_empty() {
            // A burst's capacity is not kept for good (the map frees its nodes as it
            // empties).
            self.forwarded_order.shrink_to(1024);
        }
    }

    /// Forwarded updates remembered now (those within their duplicate window, at most).
    #[cfg(test)]
    fn forwarded_remembered(&self) -> usize {
        self.forwarded.len()
    }

    /// A framework is gone: forget everything about it.
    pub fn forget(&mut self, framework: &FrameworkId) {
        self.revive(framework);
        self.unsubscribed_since.remove(framework);
        self.launched_at.retain(|(f, _), _| f != framework);
        self.offers_made.remove(framework);
        self.forwarded.retain(|(f, _), _| f != framework);
        self.forwarded_order.retain(|(_, f, _)| f != framework);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_sent_again_at_once_is_forwarded_once_and_a_retry_again() {
        let mut s = SoftState::default();
        let (f, t) = (fw("f"), TaskId::new("t").unwrap());
        assert!(s.forward_update(&f, &t, "u1", 1_000));
        // The agent's immediate re-send (news of a terminal state behind it): dropped.
        assert!(!s.forward_update(&f, &t, "u1", 1_010));
        // Its retry, 2 s later: the framework may have missed the first, so it goes.
        assert!(s.forward_update(&f, &t, "u1", 3_010));
        // The next update goes at once.
        assert!(s.forward_update(&f, &t, "u2", 3_011));
        assert!(s.forward_update(&f, &TaskId::new("other").unwrap(), "u2", 3_011));
        s.forget(&f);
        assert!(s.forward_update(&f, &t, "u2", 3_012));
    }

    #[test]
    fn forwarded_updates_are_forgotten_when_their_window_ends() {
        let mut s = SoftState::default();
        let f = fw("f");
        for i in 0..1_000u64 {
            let t = TaskId::new(format!("t{i}")).unwrap();
            assert!(s.forward_update(&f, &t, "u", i));
        }
        assert_eq!(s.forwarded_remembered(), 1_000);
        // Half the window later, the first half's windows have ended.
        let t = TaskId::new("late").unwrap();
        assert!(s.forward_update(&f, &t, "u", 1_499));
        assert_eq!(s.forwarded_remembered(), 501);
        // A key forwarded again stays for its new window, not its first one.
        let t0 = TaskId::new("t999").unwrap();
        assert!(s.forward_update(&f, &t0, "u2", 1_500));
        assert!(!s.forward_update(&f, &t0, "u2", 2_100));
        assert!(s.forward_update(&f, &t, "u", 10_000));
        assert_eq!(s.forwarded_remembered(), 1);
    }

    fn fw(s: &str) -> FrameworkId {
        FrameworkId::new(s).unwrap()
    }
    fn agent(s: &str) -> AgentId {
        AgentId::new(s).unwrap()
    }
    fn cpus(n: f64) -> Resources {
        Resources::parse(&format!("cpus:{n}")).unwrap()
    }

    #[test]
    fn decline_filters_expire_at_their_time_and_not_before() {
        let mut s = SoftState::default();
        s.decline(&fw("f"), &agent("a"), cpus(1.0), 5_000, 1_000);
        s.decline(&fw("f"), &agent("a"), cpus(2.0), 9_000, 1_000);
        assert_eq!(s.live_filters(4_999).len(), 2);
        // In force while until > now; gone at until.
        let live = s.live_filters(5_000);
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].2.until_ms, 9_000);
        assert_eq!(s.live_filters(8_999).len(), 1);
        assert!(s.live_filters(9_000).is_empty());
    }

    #[test]
    fn a_filter_already_expired_or_empty_is_not_kept() {
        let mut s = SoftState::default();
        s.decline(&fw("f"), &agent("a"), cpus(1.0), 1_000, 1_000);
        s.decline(&fw("f"), &agent("a"), Resources::new(), 9_000, 1_000);
        assert!(s.live_filters(1_000).is_empty());
    }

    #[test]
    fn revive_clears_filters_and_suppression_of_that_framework_only() {
        let mut s = SoftState::default();
        s.decline(&fw("f"), &agent("a"), cpus(1.0), 9_000, 0);
        s.decline(&fw("g"), &agent("a"), cpus(1.0), 9_000, 0);
        s.suppress(&fw("f"));
        assert!(s.is_suppressed(&fw("f")));
        s.revive(&fw("f"));
        assert!(!s.is_suppressed(&fw("f")));
        let live = s.live_filters(1);
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].0, fw("g"));
    }

    #[test]
    fn a_missing_subscription_counts_from_when_it_was_first_missed() {
        let mut s = SoftState::default();
        let active = [fw("f"), fw("g")];
        let subscribed = |f: &FrameworkId| *f == fw("g");
        assert!(s
            .missing_subscriptions(&active, subscribed, 1_000, 10_000)
            .is_empty());
        assert!(s
            .missing_subscriptions(&active, subscribed, 11_000, 10_000)
            .is_empty());
        assert_eq!(
            s.missing_subscriptions(&active, subscribed, 11_001, 10_000),
            vec![(fw("f"), 1_000)]
        );
        // Subscribing resets it.
        s.subscribed(&fw("f"));
        assert!(s
            .missing_subscriptions(&active, subscribed, 11_002, 10_000)
            .is_empty());
    }

    #[test]
    fn launch_to_running_is_timed_once() {
        let mut s = SoftState::default();
        let t = TaskId::new("t").unwrap();
        s.launched(&fw("f"), [&t], 1_000);
        assert_eq!(s.running(&fw("f"), &t, 1_250), Some(250));
        assert_eq!(s.running(&fw("f"), &t, 1_300), None);
    }
}
