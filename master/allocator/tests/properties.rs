//! Property tests: random sequences of registry changes and allocation cycles. As in the
//! master, the allocator is rebuilt from the registry (and the leader's soft state) after
//! every change, and checked against its safety invariants and a naive reference model.
//! The registry's holdings here are raw and may be inconsistent (more than an agent has,
//! two frameworks claiming the same ports, another role's reservation): the reference
//! computes what a rebuild must make of them.
//!
//! After each change, of the rebuilt allocator:
//! - no agent's allocated exceeds its total, and allocated + available = total;
//! - the frameworks' per-agent allocations plus the agent's unattributed part add up to the
//!   agent's allocated (nothing is held twice), and each matches the model's;
//! - shares and filters match the model's.
//!
//! After each cycle:
//! - every proposal's resources were available at that moment (so no two proposals share
//!   resources), are allocatable to the framework's role, meet the minimum size, and go to
//!   an active, unsuppressed, unfiltered framework on an active agent;
//! - for `allocate`, the proposals are exactly what a naive DRF reference computes;
//! - the cycle is work-conserving: afterwards no eligible framework could use any agent;
//! - what the allocator recorded for its proposals is what a rebuild of the registry with
//!   the offers committed yields (the same checks as after a change).

use agora_allocator::{Allocator, AllocatorConfig, OfferProposal};
use agora_registry::{AgentId, FrameworkId, Resources, Value};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

const AGENTS: usize = 4;
const FRAMEWORKS: usize = 4;
const ROLES: [&str; 3] = ["r0", "r1", "r2"];
const TOTALS: [&str; 5] = [
    "cpus:4;mem:4096",
    "cpus:2;mem:1024;cpus(r0):2;mem(r0):512;ports:[31000-31009]",
    "cpus:0.005;mem:10;cpus(r1):1",
    "cpus:8;mem:256;disk:1000;gpus:1",
    "cpus(r2):4;mem(r2):1024",
];
const AMOUNTS: [&str; 9] = [
    "",
    "cpus:1",
    "mem:512",
    "cpus:0.5;mem:128",
    "cpus(r0):1;mem(r0):100",
    "ports:[31000-31004]",
    "cpus:2;mem:2048;disk:100",
    "cpus(r1):1;mem:5",
    "cpus:0.005;mem:10",
];
const WEIGHTS: [f64; 6] = [0.5, 1.0, 2.0, 3.0, 0.0, -1.0];

fn r(s: &str) -> Resources {
    Resources::parse(s).unwrap()
}

fn agent_id(i: usize) -> AgentId {
    AgentId::new(format!("a{i}")).unwrap()
}

fn fw_id(i: usize) -> FrameworkId {
    FrameworkId::new(format!("f{i}")).unwrap()
}

/// `a ∩ b`.
fn common(a: &Resources, b: &Resources) -> Resources {
    a.checked_sub(&a.saturating_sub(b)).unwrap()
}

#[derive(Clone, Debug)]
enum Event {
    /// The agent (re-)registers with this total and this much held by tasks of no known
    /// framework (possibly more than the total); what was held on it before goes.
    AddAgent(usize, usize, usize),
    RemoveAgent(usize),
    SetAgentActive(usize, bool),
    /// The framework (re-)registers in this role, holding these amounts per agent.
    AddFramework(usize, usize, Vec<(usize, usize)>),
    RemoveFramework(usize),
    SetFrameworkActive(usize, bool),
    SetWeight(usize, usize),
    /// The framework holds this much more on the agent (a task launched outside any
    /// offer); for an unknown framework, a task of no known framework.
    Hold(usize, usize, usize),
    /// The framework holds this much less there (a task ended, part of an offer returned).
    Release(usize, usize, usize),
    /// Give back everything held there (an offer declined or rescinded).
    ReleaseAll(usize, usize),
    /// Decline with a filter of `dt` ms from now, refusing `AMOUNTS[x]` (everything on the
    /// agent for 0). Times move in steps of 500 ms so that a cycle often falls exactly on
    /// a filter's expiry.
    Decline(usize, usize, u64, usize),
    Suppress(usize),
    /// Unsuppress and drop the framework's filters (the master's REVIVE).
    Revive(usize),
    /// Advance time by `dt` and run a cycle.
    Allocate(u64),
    /// Advance time by `dt` and run a shuffled cycle with this seed.
    AllocateShuffled(u64, u64),
    /// Every proposal of a cycle is used for one small task and the rest released, as a
    /// framework would.
    AllocateAndUse(u64, usize),
}

fn event() -> impl Strategy<Value = Event> {
    let a = 0..AGENTS;
    let f = 0..FRAMEWORKS;
    let amt = 0..AMOUNTS.len();
    prop_oneof![
        3 => (a.clone(), 0..TOTALS.len(), amt.clone()).prop_map(|(a, t, x)| Event::AddAgent(a, t, x)),
        1 => a.clone().prop_map(Event::RemoveAgent),
        1 => (a.clone(), any::<bool>()).prop_map(|(a, b)| Event::SetAgentActive(a, b)),
        3 => (f.clone(), 0..ROLES.len(), proptest::collection::vec((a.clone(), amt.clone()), 0..3))
            .prop_map(|(f, role, allocs)| Event::AddFramework(f, role, allocs)),
        1 => f.clone().prop_map(Event::RemoveFramework),
        1 => (f.clone(), any::<bool>()).prop_map(|(f, b)| Event::SetFrameworkActive(f, b)),
        1 => (0..ROLES.len(), 0..WEIGHTS.len()).prop_map(|(r, w)| Event::SetWeight(r, w)),
        2 => (0..FRAMEWORKS + 1, a.clone(), amt.clone()).prop_map(|(f, a, x)| Event::Hold(f, a, x)),
        2 => (0..FRAMEWORKS + 1, a.clone(), amt.clone()).prop_map(|(f, a, x)| Event::Release(f, a, x)),
        2 => (f.clone(), a.clone()).prop_map(|(f, a)| Event::ReleaseAll(f, a)),
        2 => (f.clone(), a.clone(), 0u64..6, prop_oneof![2 => Just(0usize), 1 => amt.clone()])
            .prop_map(|(f, a, dt, x)| Event::Decline(f, a, dt * 500, x)),
        1 => f.clone().prop_map(Event::Suppress),
        1 => f.clone().prop_map(Event::Revive),
        4 => (0u64..4).prop_map(|dt| Event::Allocate(dt * 500)),
        1 => (0u64..4, any::<u64>()).prop_map(|(dt, s)| Event::AllocateShuffled(dt * 500, s)),
        3 => (0u64..4, 1..4usize).prop_map(|(dt, x)| Event::AllocateAndUse(dt * 500, x)),
    ]
}

/// The registry and the leader's soft state, as the master's `rebuild` reads them. Its
/// holdings are raw: whatever the events said, consistent or not.
#[derive(Default, Debug)]
struct Registry {
    /// total, held by no known framework, active.
    agents: BTreeMap<AgentId, (Resources, Resources, bool)>,
    fws: BTreeMap<FrameworkId, MFramework>,
    holdings: BTreeMap<(FrameworkId, AgentId), Resources>,
    filters: BTreeMap<(FrameworkId, AgentId), Vec<(Resources, u64)>>,
    /// Every weight set, in order, bad ones too (which the registry would refuse, and the
    /// allocator must ignore).
    weights: Vec<(String, f64)>,
}

impl Registry {
    fn remove_agent(&mut self, a: &AgentId) {
        self.agents.remove(a);
        self.holdings.retain(|(_, aa), _| aa != a);
        self.filters.retain(|(_, aa), _| aa != a);
    }

    fn remove_framework(&mut self, f: &FrameworkId) {
        self.fws.remove(f);
        self.holdings.retain(|(ff, _), _| ff != f);
        self.filters.retain(|(ff, _), _| ff != f);
    }

    fn hold(&mut self, f: &FrameworkId, a: &AgentId, res: &Resources) {
        if res.is_empty() {
            return;
        }
        if self.fws.contains_key(f) {
            self.holdings
                .entry((f.clone(), a.clone()))
                .or_default()
                .add(res);
        } else if let Some(agent) = self.agents.get_mut(a) {
            agent.1.add(res);
        }
    }

    fn release(&mut self, f: &FrameworkId, a: &AgentId, res: &Resources) {
        if self.fws.contains_key(f) {
            let key = (f.clone(), a.clone());
            if let Some(held) = self.holdings.get_mut(&key) {
                *held = held.saturating_sub(res);
                if held.is_empty() {
                    self.holdings.remove(&key);
                }
            }
        } else if let Some(agent) = self.agents.get_mut(a) {
            agent.1 = agent.1.saturating_sub(res);
        }
    }

    /// As `rebuild` in master/src/frameworks.rs: weights, agents with what is held on them
    /// (used + offered), frameworks with their holdings, then the soft state.
    fn rebuild(&self) -> Allocator {
        let mut al = Allocator::new(AllocatorConfig::default());
        for (role, w) in &self.weights {
            al.set_weight(role, *w);
        }
        for (a, (total, orphan, active)) in &self.agents {
            let mut allocated = orphan.clone();
            for ((_, aa), held) in &self.holdings {
                if aa == a {
                    allocated.add(held);
                }
            }
            al.add_agent(a.clone(), total.clone(), allocated);
            if !active {
                al.set_agent_active(a, false);
            }
        }
        for (f, fw) in &self.fws {
            let holdings: Vec<(AgentId, Resources)> = self
                .holdings
                .iter()
                .filter(|((ff, _), _)| ff == f)
                .map(|((_, a), r)| (a.clone(), r.clone()))
                .collect();
            al.add_framework(f.clone(), fw.role.clone(), holdings);
            al.set_offers_made(f, fw.offers_made);
            if !fw.active {
                al.set_framework_active(f, false);
            }
            if fw.suppressed {
                al.suppress(f);
            }
        }
        for ((f, a), list) in &self.filters {
            for (refused, until) in list {
                al.decline_resources(f, a, refused.clone(), *until);
            }
        }
        al
    }

    /// The naive reference of a rebuild: per agent, what is held (capped at the total) is
    /// unattributed; then frameworks in id order, and each one's agents in id order, claim
    /// what is allocatable to their role, from the unattributed part first, then from what
    /// is available, as far as either goes.
    fn expected(&self) -> Model {
        let mut agents = BTreeMap::new();
        let mut avail = BTreeMap::new();
        for (a, (total, orphan, active)) in &self.agents {
            let mut allocated = orphan.clone();
            for ((_, aa), held) in &self.holdings {
                if aa == a {
                    allocated.add(held);
                }
            }
            let unattributed = common(total, &allocated);
            avail.insert(a.clone(), total.checked_sub(&unattributed).unwrap());
            agents.insert(
                a.clone(),
                MAgent {
                    total: total.clone(),
                    unattributed,
                    active: *active,
                },
            );
        }
        let mut held = BTreeMap::new();
        for (f, fw) in &self.fws {
            for ((ff, a), raw) in &self.holdings {
                if ff != f || !agents.contains_key(a) {
                    continue;
                }
                let wanted = raw.allocatable_to(&fw.role);
                let agent = agents.get_mut(a).unwrap();
                let claimed = common(&agent.unattributed, &wanted);
                agent.unattributed = agent.unattributed.checked_sub(&claimed).unwrap();
                let free = avail.get_mut(a).unwrap();
                let granted = common(free, &wanted.saturating_sub(&claimed));
                *free = free.checked_sub(&granted).unwrap();
                let got = claimed.plus(&granted);
                if !got.is_empty() {
                    held.insert((f.clone(), a.clone()), got);
                }
            }
        }
        let filters = self
            .filters
            .iter()
            .filter(|((f, a), _)| self.fws.contains_key(f) && self.agents.contains_key(a))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Model {
            agents,
            fws: self.fws.clone(),
            held,
            filters,
            weights: self
                .weights
                .iter()
                .filter(|(_, w)| *w > 0.0)
                .map(|(role, w)| (role.clone(), *w))
                .collect(),
        }
    }
}

#[derive(Clone, Debug)]
struct MAgent {
    total: Resources,
    unattributed: Resources,
    active: bool,
}

#[derive(Clone, Debug)]
struct MFramework {
    role: String,
    active: bool,
    suppressed: bool,
    /// Offers made in earlier cycles (the master's count, the tie-breaker of equal shares).
    offers_made: u64,
}

/// A naive reference of the allocator's state: plain maps, shares recomputed from scratch
/// every time.
#[derive(Clone, Default, Debug)]
struct Model {
    agents: BTreeMap<AgentId, MAgent>,
    fws: BTreeMap<FrameworkId, MFramework>,
    held: BTreeMap<(FrameworkId, AgentId), Resources>,
    filters: BTreeMap<(FrameworkId, AgentId), Vec<(Resources, u64)>>,
    weights: BTreeMap<String, f64>,
}

impl Model {
    /// total - unattributed - everything held; fails the test if that would go negative.
    fn available(&self, a: &AgentId) -> Resources {
        let agent = &self.agents[a];
        let mut avail = agent
            .total
            .checked_sub(&agent.unattributed)
            .expect("unattributed within total");
        for ((_, aa), held) in &self.held {
            if aa == a {
                avail = avail
                    .checked_sub(held)
                    .unwrap_or_else(|| panic!("agent {a} over-allocated"));
            }
        }
        avail
    }

    fn hold(&mut self, f: &FrameworkId, a: &AgentId, res: &Resources) {
        if !res.is_empty() {
            self.held
                .entry((f.clone(), a.clone()))
                .or_default()
                .add(res);
        }
    }

    fn totals(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for agent in self.agents.values().filter(|a| a.active) {
            for res in agent.total.iter() {
                if let Value::Scalar(s) = &res.value {
                    *out.entry(res.name.clone()).or_insert(0) += s.millis();
                }
            }
        }
        out
    }

    fn dominant(&self, held: &Resources, totals: &BTreeMap<String, u64>) -> f64 {
        totals
            .iter()
            .filter(|(_, &t)| t > 0)
            .map(|(name, &t)| held.scalar_total(name).millis() as f64 / t as f64)
            .fold(0.0, f64::max)
    }

    /// What `pred` frameworks hold on active agents.
    fn held_by(&self, pred: impl Fn(&FrameworkId) -> bool) -> Resources {
        let mut sum = Resources::new();
        for ((f, a), held) in &self.held {
            if pred(f) && self.agents[a].active {
                sum.add(held);
            }
        }
        sum
    }

    fn fw_share(&self, f: &FrameworkId, totals: &BTreeMap<String, u64>) -> f64 {
        self.dominant(&self.held_by(|ff| ff == f), totals)
    }

    fn role_share(&self, role: &str, totals: &BTreeMap<String, u64>) -> f64 {
        let held = self.held_by(|f| self.fws[f].role == role);
        self.dominant(&held, totals) / self.weights.get(role).copied().unwrap_or(1.0)
    }

    /// Whether any filter of `f` on `a` is in force at `now`.
    fn filtered(&self, f: &FrameworkId, a: &AgentId, now: u64) -> bool {
        self.filters
            .get(&(f.clone(), a.clone()))
            .is_some_and(|list| list.iter().any(|(_, until)| now < *until))
    }

    /// Whether a filter of `f` on `a` in force at `now` refuses `offer`.
    fn refuses(&self, f: &FrameworkId, a: &AgentId, now: u64, offer: &Resources) -> bool {
        self.filters
            .get(&(f.clone(), a.clone()))
            .is_some_and(|list| {
                list.iter()
                    .any(|(refused, until)| now < *until && refused.contains(offer))
            })
    }

    /// Whether `f` may be offered `a` now, and what it would get.
    fn candidate(&self, f: &FrameworkId, a: &AgentId, now: u64) -> Option<Resources> {
        let fw = &self.fws[f];
        let agent = &self.agents[a];
        if !fw.active || fw.suppressed || !agent.active {
            return None;
        }
        let offer = self.available(a).allocatable_to(&fw.role);
        let big = offer.scalar_total("cpus").millis() >= 10
            || offer.scalar_total("mem").millis() >= 32_000;
        (!offer.is_empty() && big && !self.refuses(f, a, now, &offer)).then_some(offer)
    }

    fn expire(&mut self, now: u64) {
        self.filters.retain(|_, list| {
            list.retain(|(_, until)| now < *until);
            !list.is_empty()
        });
    }

    /// A role's offers made per unit of weight.
    fn role_offers(&self, role: &str) -> f64 {
        self.fws
            .values()
            .filter(|f| f.role == role)
            .map(|f| f.offers_made)
            .sum::<u64>() as f64
            / self.weights.get(role).copied().unwrap_or(1.0)
    }

    /// The naive reference cycle: agents in id order; on each, repeatedly the candidate
    /// with the least (role share, role's offers made, role, framework share, framework's
    /// offers made, framework id).
    fn reference_cycle(&mut self, now: u64) -> Vec<OfferProposal> {
        self.expire(now);
        let mut out = Vec::new();
        let agents: Vec<AgentId> = self.agents.keys().cloned().collect();
        for a in agents {
            loop {
                let totals = self.totals();
                let best = self
                    .fws
                    .keys()
                    .filter_map(|f| self.candidate(f, &a, now).map(|o| (f.clone(), o)))
                    .min_by(|(f1, _), (f2, _)| {
                        let (r1, r2) = (&self.fws[f1].role, &self.fws[f2].role);
                        self.role_share(r1, &totals)
                            .total_cmp(&self.role_share(r2, &totals))
                            .then_with(|| self.role_offers(r1).total_cmp(&self.role_offers(r2)))
                            .then_with(|| r1.cmp(r2))
                            .then_with(|| {
                                self.fw_share(f1, &totals)
                                    .total_cmp(&self.fw_share(f2, &totals))
                            })
                            .then_with(|| self.fws[f1].offers_made.cmp(&self.fws[f2].offers_made))
                            .then_with(|| f1.cmp(f2))
                    });
                let Some((f, offer)) = best else { break };
                self.hold(&f, &a, &offer);
                if let Some(fw) = self.fws.get_mut(&f) {
                    fw.offers_made += 1;
                }
                out.push(OfferProposal {
                    framework_id: f,
                    agent_id: a.clone(),
                    resources: offer,
                });
            }
        }
        out
    }

    /// Checks proposals made by the allocator against the safety rules, applying them to
    /// the model in order.
    fn check_and_apply(&mut self, proposals: &[OfferProposal], now: u64) -> Result<(), String> {
        self.expire(now);
        let mut seen = BTreeSet::new();
        for p in proposals {
            let (f, a) = (&p.framework_id, &p.agent_id);
            if !seen.insert((f.clone(), a.clone())) {
                return Err(format!("{f} offered {a} twice in one cycle"));
            }
            let fw = self.fws.get(f).ok_or("offer to unknown framework")?;
            let agent = self.agents.get(a).ok_or("offer of unknown agent")?;
            if !fw.active || fw.suppressed || !agent.active || self.refuses(f, a, now, &p.resources)
            {
                return Err(format!("{f} not eligible for {a}: {fw:?} {agent:?}"));
            }
            if p.resources != p.resources.allocatable_to(&fw.role) {
                return Err(format!("{} not allocatable to {}", p.resources, fw.role));
            }
            if !self.available(a).contains(&p.resources) {
                return Err(format!("{} was not available on {a}", p.resources));
            }
            if self.candidate(f, a, now).as_ref() != Some(&p.resources) {
                return Err(format!(
                    "{} is not all of what {a} had for {f}",
                    p.resources
                ));
            }
            self.hold(f, a, &p.resources);
        }
        // Work conservation: nothing usable is left for anyone eligible.
        for a in self.agents.keys() {
            for f in self.fws.keys() {
                if let Some(offer) = self.candidate(f, a, now) {
                    return Err(format!("{f} could still be offered {offer} on {a}"));
                }
            }
        }
        Ok(())
    }

    fn check(&self, al: &Allocator, now: u64) -> Result<(), String> {
        al.check_invariants()?;
        let totals = self.totals();
        for (a, agent) in &self.agents {
            let total = al.total(a);
            let allocated = al.allocated(a);
            let available = al.available(a);
            if total != agent.total {
                return Err(format!("{a} total {total} != {}", agent.total));
            }
            if !total.contains(&allocated) {
                return Err(format!("{a} allocated {allocated} exceeds total {total}"));
            }
            if allocated.plus(&available) != total {
                return Err(format!("{a}: {allocated} + {available} != {total}"));
            }
            let mut sum = al.unattributed(a);
            for f in al.framework_ids() {
                sum.add(&al.allocation_on(f, a));
            }
            if sum != allocated {
                return Err(format!("{a}: frameworks hold {sum}, allocated {allocated}"));
            }
            if available != self.available(a) {
                return Err(format!("{a} available {available} != model"));
            }
            if al.unattributed(a) != agent.unattributed {
                return Err(format!("{a} unattributed differs from model"));
            }
        }
        let ids: Vec<&FrameworkId> = al.framework_ids().collect();
        if ids != self.fws.keys().collect::<Vec<_>>() {
            return Err("framework ids differ".into());
        }
        if !al.agent_ids().eq(self.agents.keys()) {
            return Err("agent ids differ".into());
        }
        for (f, fw) in &self.fws {
            for a in self.agents.keys() {
                let held = self
                    .held
                    .get(&(f.clone(), a.clone()))
                    .cloned()
                    .unwrap_or_default();
                if al.allocation_on(f, a) != held {
                    return Err(format!("{f} on {a}: {} != {held}", al.allocation_on(f, a)));
                }
                for t in [now, now + 499, now + 500, now + 2_500] {
                    if al.is_filtered(f, a, t) != self.filtered(f, a, t) {
                        return Err(format!("{f} on {a}: filter at {t} differs"));
                    }
                }
            }
            if al.dominant_share(f) != self.fw_share(f, &totals) {
                return Err(format!("{f} share differs"));
            }
            if al.role_share(&fw.role) != self.role_share(&fw.role, &totals) {
                return Err(format!("role {} share differs", fw.role));
            }
        }
        if !al.framework_ids().all(|f| self.fws.contains_key(f)) {
            return Err("unknown framework in the allocator".into());
        }
        Ok(())
    }
}

/// One cycle of the master on the registry: rebuild, allocate, check the proposals, commit
/// them (now held in the registry), and check that the allocator recorded what a rebuild
/// of that registry yields.
fn cycle(
    reg: &mut Registry,
    now: u64,
    seed: Option<u64>,
    ctx: &str,
) -> Result<Vec<OfferProposal>, TestCaseError> {
    let fail = |e: String| TestCaseError::fail(format!("{ctx}: {e}"));
    // The master drops expired filters from its soft state before a rebuild.
    reg.filters.retain(|_, list| {
        list.retain(|(_, until)| now < *until);
        !list.is_empty()
    });
    let mut al = reg.rebuild();
    let mut model = reg.expected();
    model.check(&al, now).map_err(fail)?;
    let got = match seed {
        None => {
            let got = al.allocate(now);
            let want = model.clone().reference_cycle(now);
            prop_assert_eq!(&got, &want, "{}", ctx);
            got
        }
        Some(seed) => al.allocate_shuffled(now, seed),
    };
    model.check_and_apply(&got, now).map_err(fail)?;
    model.check(&al, now).map_err(fail)?;
    for p in &got {
        reg.hold(&p.framework_id, &p.agent_id, &p.resources);
        if let Some(fw) = reg.fws.get_mut(&p.framework_id) {
            fw.offers_made += 1;
        }
    }
    reg.expected().check(&al, now).map_err(fail)?;
    Ok(got)
}

fn run(events: Vec<Event>) -> Result<(), TestCaseError> {
    let mut reg = Registry::default();
    let mut now = 0u64;
    for (step, ev) in events.into_iter().enumerate() {
        let ctx = format!("step {step}: {ev:?}");
        match ev {
            Event::AddAgent(a, t, x) => {
                let id = agent_id(a);
                reg.remove_agent(&id);
                reg.agents.insert(id, (r(TOTALS[t]), r(AMOUNTS[x]), true));
            }
            Event::RemoveAgent(a) => reg.remove_agent(&agent_id(a)),
            Event::SetAgentActive(a, b) => {
                if let Some(agent) = reg.agents.get_mut(&agent_id(a)) {
                    agent.2 = b;
                }
            }
            Event::AddFramework(f, role, allocs) => {
                let id = fw_id(f);
                reg.remove_framework(&id);
                reg.fws.insert(
                    id.clone(),
                    MFramework {
                        role: ROLES[role].to_string(),
                        active: true,
                        suppressed: false,
                        offers_made: 0,
                    },
                );
                for (a, x) in allocs {
                    reg.hold(&id, &agent_id(a), &r(AMOUNTS[x]));
                }
            }
            Event::RemoveFramework(f) => reg.remove_framework(&fw_id(f)),
            Event::SetFrameworkActive(f, b) => {
                if let Some(fw) = reg.fws.get_mut(&fw_id(f)) {
                    fw.active = b;
                }
            }
            Event::SetWeight(role, w) => {
                reg.weights.push((ROLES[role].to_string(), WEIGHTS[w]));
            }
            Event::Hold(f, a, x) => reg.hold(&fw_id(f), &agent_id(a), &r(AMOUNTS[x])),
            Event::Release(f, a, x) => reg.release(&fw_id(f), &agent_id(a), &r(AMOUNTS[x])),
            Event::ReleaseAll(f, a) => {
                reg.holdings.remove(&(fw_id(f), agent_id(a)));
            }
            Event::Decline(f, a, dt, x) => {
                let (f, a) = (fw_id(f), agent_id(a));
                if let (true, Some(agent)) = (reg.fws.contains_key(&f), reg.agents.get(&a)) {
                    let refused = if x == 0 {
                        agent.0.clone()
                    } else {
                        r(AMOUNTS[x])
                    };
                    reg.filters
                        .entry((f, a))
                        .or_default()
                        .push((refused, now + dt));
                }
            }
            Event::Suppress(f) => {
                if let Some(fw) = reg.fws.get_mut(&fw_id(f)) {
                    fw.suppressed = true;
                }
            }
            Event::Revive(f) => {
                if let Some(fw) = reg.fws.get_mut(&fw_id(f)) {
                    fw.suppressed = false;
                }
                reg.filters.retain(|(ff, _), _| ff != &fw_id(f));
            }
            Event::Allocate(dt) => {
                now += dt;
                cycle(&mut reg, now, None, &ctx)?;
            }
            Event::AllocateShuffled(dt, seed) => {
                now += dt;
                cycle(&mut reg, now, Some(seed), &ctx)?;
            }
            Event::AllocateAndUse(dt, x) => {
                now += dt;
                let got = cycle(&mut reg, now, None, &ctx)?;
                // Each framework keeps a task-sized slice and releases the rest.
                for p in &got {
                    let task = common(&p.resources, &r(AMOUNTS[x]));
                    let rest = p.resources.checked_sub(&task).unwrap();
                    reg.release(&p.framework_id, &p.agent_id, &rest);
                }
            }
        }
        reg.expected()
            .check(&reg.rebuild(), now)
            .map_err(|e| TestCaseError::fail(format!("{ctx}: {e}")))?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_changes_keep_allocations_safe_and_fair(
        events in proptest::collection::vec(event(), 1..80)
    ) {
        run(events)?;
    }
}

/// A fixed scenario through the same checker, so a regression in the checker itself (not
/// only in the allocator) shows up deterministically.
#[test]
fn scripted_scenario_passes_the_checker() {
    use Event::*;
    run(vec![
        AddAgent(0, 1, 0),
        AddAgent(1, 0, 3),
        AddAgent(2, 2, 0),
        AddFramework(0, 0, vec![(1, 3)]),
        AddFramework(1, 1, vec![]),
        AddFramework(2, 2, vec![(0, 4)]),
        SetWeight(1, 2),
        Allocate(0),
        ReleaseAll(0, 0),
        Decline(0, 0, 1_000, 0),
        Release(1, 1, 1),
        Allocate(10),
        AllocateAndUse(2_000, 1),
        Decline(1, 1, 1_000, 3),
        SetAgentActive(1, false),
        Allocate(1),
        Hold(0, 2, 7),
        Hold(2, 0, 6),
        RemoveFramework(1),
        AllocateShuffled(5, 7),
        RemoveAgent(0),
        Release(3, 1, 3),
        Allocate(1),
    ])
    .unwrap();
}
