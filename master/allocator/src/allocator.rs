//! The allocator's state, the calls that build it from the registry, and the allocation
//! cycle.

use crate::share::{Names, ScalarVec, Share};
use agora_registry::{AgentId, FrameworkId, Resource, Resources, Scalar, Value};
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};

/// Tunables of the allocator.
#[derive(Clone, Debug, PartialEq)]
pub struct AllocatorConfig {
    /// An agent's resources are offered to a role only if at least this many cpus, or at
    /// least [`min_allocatable_mem_mb`](Self::min_allocatable_mem_mb) of memory, are
    /// allocatable to it (Mesos' `MIN_CPUS`). Default 0.01.
    pub min_allocatable_cpus: f64,
    /// See [`min_allocatable_cpus`](Self::min_allocatable_cpus) (Mesos' `MIN_MEM`). Default 32.
    pub min_allocatable_mem_mb: f64,
}

impl Default for AllocatorConfig {
    fn default() -> Self {
        AllocatorConfig {
            min_allocatable_cpus: 0.01,
            min_allocatable_mem_mb: 32.0,
        }
    }
}

/// One offer the master should make: everything on `agent_id` that is allocatable to the
/// framework's role and was available when the cycle reached that agent. The allocator has
/// already recorded it as held by the framework, so the rest of the cycle does not offer it
/// again; once the master commits the offer, the registry holds it, and the next cycle's
/// rebuild reads it back from there (and reads back whatever is returned).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OfferProposal {
    pub framework_id: FrameworkId,
    pub agent_id: AgentId,
    pub resources: Resources,
}

type AgentIdx = usize;
type FwIdx = usize;
type RoleIdx = usize;

/// A vector whose freed slots are reused; indices stay stable while an entry lives.
#[derive(Clone, Debug)]
struct Slab<T> {
    items: Vec<Option<T>>,
    free: Vec<usize>,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            items: Vec::new(),
            free: Vec::new(),
        }
    }
}

impl<T> Slab<T> {
    fn insert(&mut self, value: T) -> usize {
        match self.free.pop() {
            Some(i) => {
                self.items[i] = Some(value);
                i
            }
            None => {
                self.items.push(Some(value));
                self.items.len() - 1
            }
        }
    }

    fn remove(&mut self, i: usize) -> T {
        let value = self.items[i].take().expect("live slab slot");
        self.free.push(i);
        value
    }

    fn get(&self, i: usize) -> &T {
        self.items[i].as_ref().expect("live slab slot")
    }

    fn get_mut(&mut self, i: usize) -> &mut T {
        self.items[i].as_mut().expect("live slab slot")
    }

    fn slots(&self) -> usize {
        self.items.len()
    }
}

#[derive(Clone, Debug)]
struct AgentState {
    id: AgentId,
    total: Resources,
    /// `total` minus everything held (by frameworks or unattributed).
    available: Resources,
    /// Held by no known framework: the part of the `allocated` given to `add_agent` that no
    /// `add_framework` has claimed.
    unattributed: Resources,
    active: bool,
    /// What each framework holds here (never empty entries).
    held: BTreeMap<FwIdx, Resources>,
    /// Decline filters per framework (never empty entries).
    filters: BTreeMap<FwIdx, Vec<Filter>>,
}

/// A decline filter: until `until` (ms), the framework is not offered anything on the
/// agent that `refused` contains, as Mesos' refused offer filters: resources that come free
/// later, which the declined offer did not hold, are still offered.
#[derive(Clone, Debug)]
struct Filter {
    until: u64,
    refused: Resources,
}

impl Filter {
    fn blocks(&self, offer: &Resources) -> bool {
        self.refused.contains(offer)
    }
}

#[derive(Clone, Debug)]
struct FrameworkState {
    id: FrameworkId,
    role: RoleIdx,
    active: bool,
    suppressed: bool,
    /// Scalars held on active agents: the numerator of its dominant share.
    scalars: ScalarVec,
    /// Agents where it holds something (mirror of `AgentState::held`).
    agents: BTreeSet<AgentIdx>,
    /// Agents where it has a filter (mirror of `AgentState::filters`).
    filtered: BTreeSet<AgentIdx>,
    /// Offers it was made so far: among equal shares, fewer offers go first (as Mesos'
    /// sorter counts allocations), so ties do not always favour the same framework.
    offers_made: u64,
}

#[derive(Clone, Debug)]
struct RoleState {
    name: String,
    weight: f64,
    /// Sum of its frameworks' `scalars`.
    scalars: ScalarVec,
    frameworks: BTreeSet<FwIdx>,
}

impl RoleState {
    fn share(&self, totals: &ScalarVec) -> f64 {
        self.scalars.dominant(totals) / self.weight
    }
}

/// Minimum allocatable size in thousandths.
#[derive(Clone, Copy, Debug)]
struct Minimum {
    cpus: u64,
    mem: u64,
}

/// A pure, deterministic hierarchical DRF allocator, built from the registry for one cycle.
/// See the crate docs.
///
/// Calls naming an agent or framework that was not added are ignored; queries about
/// unknown ids return zero or empty values.
#[derive(Clone, Debug)]
pub struct Allocator {
    config: AllocatorConfig,
    min: Minimum,
    names: Names,
    /// Sum of active agents' totals, per scalar name.
    totals: ScalarVec,
    agents: Slab<AgentState>,
    agent_ids: BTreeMap<AgentId, AgentIdx>,
    frameworks: Slab<FrameworkState>,
    framework_ids: BTreeMap<FrameworkId, FwIdx>,
    /// Roles are never forgotten (they are few); a role exists once named by a framework or
    /// a weight.
    roles: Vec<RoleState>,
    role_ids: BTreeMap<String, RoleIdx>,
}

fn millis_or(value: f64, default: u64) -> u64 {
    Scalar::from_f64(value).map_or(default, Scalar::millis)
}

fn allocatable(r: &Resource, role: &str) -> bool {
    r.role.as_deref().is_none_or(|rr| rr == role)
}

/// `a ∩ b`: per key the smaller scalar, or the common ranges. Always contained in `a`.
fn common(a: &Resources, b: &Resources) -> Resources {
    a.checked_sub(&a.saturating_sub(b))
        .expect("a minus part of a is contained in a")
}

/// Whether what `available` holds for `role` is worth offering: non-empty, and at least the
/// minimum cpus or the minimum memory (as Mesos).
fn meets_min(available: &Resources, role: &str, min: Minimum) -> bool {
    let (mut any, mut cpus, mut mem) = (false, 0u64, 0u64);
    for r in available.iter().filter(|r| allocatable(r, role)) {
        any = true;
        if let Value::Scalar(s) = &r.value {
            match r.name.as_str() {
                "cpus" => cpus += s.millis(),
                "mem" => mem += s.millis(),
                _ => {}
            }
        }
    }
    any && (cpus >= min.cpus || mem >= min.mem)
}

/// Moves everything in `available` that is allocatable to `role` out into the result.
fn take_allocatable(available: &mut Resources, role: &str) -> Resources {
    if available.iter().all(|r| allocatable(r, role)) {
        return std::mem::take(available);
    }
    let items: Vec<Resource> = std::mem::take(available).into();
    let (offer, rest): (Vec<Resource>, Vec<Resource>) =
        items.into_iter().partition(|r| allocatable(r, role));
    *available = Resources::from(rest);
    Resources::from(offer)
}

/// Adds `gained` (not empty) to what framework `f` holds on agent `a`, and to its shares
/// if the agent is active.
fn hold(
    names: &mut Names,
    agent: &mut AgentState,
    a: AgentIdx,
    fw: &mut FrameworkState,
    f: FwIdx,
    roles: &mut [RoleState],
    gained: Resources,
) {
    if agent.active {
        fw.scalars.apply(names, &gained, true);
        roles[fw.role].scalars.apply(names, &gained, true);
    }
    match agent.held.entry(f) {
        Entry::Vacant(e) => {
            e.insert(gained);
        }
        Entry::Occupied(mut e) => e.get_mut().add(&gained),
    }
    fw.agents.insert(a);
}

impl Allocator {
    /// An empty allocator. Minimums that are negative or not numbers fall back to the
    /// defaults.
    pub fn new(config: AllocatorConfig) -> Self {
        let min = Minimum {
            cpus: millis_or(config.min_allocatable_cpus, 10),
            mem: millis_or(config.min_allocatable_mem_mb, 32_000),
        };
        Allocator {
            config,
            min,
            names: Names::default(),
            totals: ScalarVec::default(),
            agents: Slab::default(),
            agent_ids: BTreeMap::new(),
            frameworks: Slab::default(),
            framework_ids: BTreeMap::new(),
            roles: Vec::new(),
            role_ids: BTreeMap::new(),
        }
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &AllocatorConfig {
        &self.config
    }

    fn intern_role(&mut self, role: &str) -> RoleIdx {
        if let Some(&r) = self.role_ids.get(role) {
            return r;
        }
        self.roles.push(RoleState {
            name: role.to_string(),
            weight: 1.0,
            scalars: ScalarVec::default(),
            frameworks: BTreeSet::new(),
        });
        let r = self.roles.len() - 1;
        self.role_ids.insert(role.to_string(), r);
        r
    }

    // ----- agents -----

    /// Adds an active agent with `total` resources, of which `allocated` (used by tasks
    /// plus offered, per the registry) is already held. That part is *unattributed*: it
    /// counts against the agent but toward no framework's share until
    /// [`add_framework`](Self::add_framework) claims it for the framework holding it.
    /// `allocated` beyond `total` is ignored.
    ///
    /// Adding a known id replaces that agent: it is forgotten first, with what frameworks
    /// held on it and their filters there.
    pub fn add_agent(&mut self, id: AgentId, total: Resources, allocated: Resources) {
        if self.agent_ids.contains_key(&id) {
            self.forget_agent(&id);
        }
        let (unattributed, available) = if allocated.is_empty() {
            (allocated, total.clone())
        } else {
            let unattributed = if total.contains(&allocated) {
                allocated
            } else {
                common(&total, &allocated)
            };
            let available = total
                .checked_sub(&unattributed)
                .expect("the common part is contained in total");
            (unattributed, available)
        };
        self.totals.apply(&mut self.names, &total, true);
        let a = self.agents.insert(AgentState {
            id: id.clone(),
            total,
            available,
            unattributed,
            active: true,
            held: BTreeMap::new(),
            filters: BTreeMap::new(),
        });
        self.agent_ids.insert(id, a);
    }

    /// Forgets an agent (when [`add_agent`](Self::add_agent) replaces it): its resources
    /// leave the cluster totals, and what frameworks held on it leaves their allocations
    /// (and shares). Its filters go too.
    fn forget_agent(&mut self, id: &AgentId) {
        let Some(a) = self.agent_ids.remove(id) else {
            return;
        };
        let agent = self.agents.remove(a);
        for (f, held) in &agent.held {
            let fw = self.frameworks.get_mut(*f);
            fw.agents.remove(&a);
            if agent.active {
                fw.scalars.apply(&mut self.names, held, false);
                self.roles[fw.role]
                    .scalars
                    .apply(&mut self.names, held, false);
            }
        }
        for f in agent.filters.keys() {
            self.frameworks.get_mut(*f).filtered.remove(&a);
        }
        if agent.active {
            self.totals.apply(&mut self.names, &agent.total, false);
        }
    }

    /// Puts an agent in or out of the pool (e.g. unreachable). An inactive agent is never
    /// offered, its resources leave the cluster totals, and what frameworks hold on it stops
    /// counting toward their shares (it stays recorded as theirs).
    pub fn set_agent_active(&mut self, id: &AgentId, active: bool) {
        let Some(&a) = self.agent_ids.get(id) else {
            return;
        };
        let agent = self.agents.get_mut(a);
        if agent.active == active {
            return;
        }
        agent.active = active;
        self.totals.apply(&mut self.names, &agent.total, active);
        for (f, held) in &agent.held {
            let fw = self.frameworks.get_mut(*f);
            fw.scalars.apply(&mut self.names, held, active);
            self.roles[fw.role]
                .scalars
                .apply(&mut self.names, held, active);
        }
    }

    // ----- frameworks -----

    /// Adds an active, unsuppressed framework in `role`, holding `allocated` resources per
    /// agent (its tasks' and outstanding offers' resources, per the registry). Of each pair
    /// only the part allocatable to `role` is recorded, claimed first from the agent's
    /// unattributed allocation (see [`add_agent`](Self::add_agent)), then from its
    /// available resources; whatever is in neither is ignored, so nothing is ever held
    /// twice. Pairs naming unknown agents are ignored, so add agents first.
    ///
    /// Adding a known id replaces that framework: it is forgotten first, and everything it
    /// held returns to its agents' available resources, its filters with it.
    pub fn add_framework(
        &mut self,
        id: FrameworkId,
        role: String,
        allocated: impl IntoIterator<Item = (AgentId, Resources)>,
    ) {
        if self.framework_ids.contains_key(&id) {
            self.forget_framework(&id);
        }
        let r = self.intern_role(&role);
        let f = self.frameworks.insert(FrameworkState {
            id: id.clone(),
            role: r,
            active: true,
            suppressed: false,
            scalars: ScalarVec::default(),
            agents: BTreeSet::new(),
            filtered: BTreeSet::new(),
            offers_made: 0,
        });
        self.framework_ids.insert(id, f);
        self.roles[r].frameworks.insert(f);
        for (agent, resources) in allocated {
            if let Some(&a) = self.agent_ids.get(&agent) {
                self.claim(f, a, resources);
            }
        }
    }

    /// Records `resources` on agent `a` as held by framework `f`: the part allocatable to
    /// its role, taken from the agent's unattributed allocation, then from its available
    /// resources, as far as they go.
    fn claim(&mut self, f: FwIdx, a: AgentIdx, resources: Resources) {
        let fw = self.frameworks.get_mut(f);
        let role = &self.roles[fw.role].name;
        let wanted = if resources.iter().all(|r| allocatable(r, role)) {
            resources
        } else {
            resources.allocatable_to(role)
        };
        let agent = self.agents.get_mut(a);
        // As a rebuild feeds it, the registry's holdings are within the agent's allocation.
        let gained = if agent.unattributed.contains(&wanted) {
            agent.unattributed = agent
                .unattributed
                .checked_sub(&wanted)
                .expect("contained in unattributed");
            wanted
        } else {
            let claimed = common(&agent.unattributed, &wanted);
            let granted = common(&agent.available, &wanted.saturating_sub(&claimed));
            agent.unattributed = agent
                .unattributed
                .checked_sub(&claimed)
                .expect("claimed from unattributed");
            agent.available = agent
                .available
                .checked_sub(&granted)
                .expect("granted from available");
            let mut gained = claimed;
            gained.add(&granted);
            gained
        };
        if !gained.is_empty() {
            hold(&mut self.names, agent, a, fw, f, &mut self.roles, gained);
        }
    }

    /// Forgets a framework (when [`add_framework`](Self::add_framework) replaces it):
    /// everything it held returns to its agents' available resources, and its filters go.
    fn forget_framework(&mut self, id: &FrameworkId) {
        let Some(f) = self.framework_ids.remove(id) else {
            return;
        };
        let fw = self.frameworks.remove(f);
        for a in &fw.agents {
            let agent = self.agents.get_mut(*a);
            let held = agent.held.remove(&f).expect("mirrored holding");
            agent.available.add(&held);
        }
        for a in &fw.filtered {
            self.agents.get_mut(*a).filters.remove(&f);
        }
        let role = &mut self.roles[fw.role];
        role.frameworks.remove(&f);
        role.scalars.apply_vec(&fw.scalars, false);
    }

    /// Marks a framework connected (`true`) or disconnected (`false`). An inactive
    /// framework is offered nothing but keeps what it holds (its tasks run on).
    pub fn set_framework_active(&mut self, id: &FrameworkId, active: bool) {
        if let Some(&f) = self.framework_ids.get(id) {
            self.frameworks.get_mut(f).active = active;
        }
    }

    /// Sets how many offers `framework` was made before (the leader counts them across
    /// cycles; a rebuilt allocator starts at 0). Among frameworks, and roles, of equal
    /// share the one made fewer offers is offered first (a role's count is per unit of its
    /// weight), then the lower id or name.
    pub fn set_offers_made(&mut self, framework: &FrameworkId, offers: u64) {
        if let Some(&f) = self.framework_ids.get(framework) {
            self.frameworks.get_mut(f).offers_made = offers;
        }
    }

    /// Sets a role's DRF weight (default 1): a role of weight 2 is entitled to twice the
    /// dominant share of a role of weight 1. Weights that are not positive finite numbers
    /// are ignored (the registry refuses them too).
    pub fn set_weight(&mut self, role: &str, weight: f64) {
        if weight.is_finite() && weight > 0.0 {
            let r = self.intern_role(role);
            self.roles[r].weight = weight;
        }
    }

    // ----- the leader's soft state -----

    /// Records that `framework` declined `refused` on `agent` (Mesos' filter): while
    /// `now_ms < refuse_until_ms` it is not offered anything there that `refused` contains;
    /// an offer holding more (resources freed since) still goes to it. A filter refusing
    /// the agent's total refuses everything there. Holds nothing: what the framework gave
    /// back is simply absent from its holdings in the rebuild.
    pub fn decline_resources(
        &mut self,
        framework: &FrameworkId,
        agent: &AgentId,
        refused: Resources,
        refuse_until_ms: u64,
    ) {
        let (Some(&f), Some(&a)) = (self.framework_ids.get(framework), self.agent_ids.get(agent))
        else {
            return;
        };
        let until = refuse_until_ms;
        self.agents
            .get_mut(a)
            .filters
            .entry(f)
            .or_default()
            .push(Filter { until, refused });
        self.frameworks.get_mut(f).filtered.insert(a);
    }

    /// Stops offers to `framework` (Mesos' SUPPRESS) in this allocator's cycles. It keeps
    /// what it holds. (REVIVE is the master's: it stops calling this and drops the
    /// framework's filters from the next rebuild.)
    pub fn suppress(&mut self, framework: &FrameworkId) {
        if let Some(&f) = self.framework_ids.get(framework) {
            self.frameworks.get_mut(f).suppressed = true;
        }
    }

    // ----- the allocation cycle -----

    /// Runs one allocation cycle at time `now_ms`, visiting active agents in id order, and
    /// returns the offers to make, already recorded as held by their frameworks.
    ///
    /// For each agent, repeatedly: among roles with a framework that is active, not
    /// suppressed and without a filter here refusing what the role would be offered, and to which the agent's available
    /// resources are allocatable in at least the minimum size, take the role with the
    /// lowest weighted dominant share, then its framework with the lowest dominant share
    /// (ties by fewer offers made, per unit of weight for roles, then role name or framework id), and offer it everything on the agent
    /// allocatable to its role. Shares are updated after every offer. An agent is offered
    /// to one framework per role at most, so several offers per agent only happen when
    /// reservations for other roles remain after an offer. Filters that expired by `now_ms`
    /// are dropped first.
    pub fn allocate(&mut self, now_ms: u64) -> Vec<OfferProposal> {
        let order: Vec<AgentIdx> = self.agent_ids.values().copied().collect();
        self.run_cycle(now_ms, &order)
    }

    /// As [`allocate`](Self::allocate), but visits agents in an order shuffled by a
    /// xorshift generator seeded with `seed` (as Mesos shuffles agents each cycle, so that
    /// the same agents do not always go to the lowest share first). The same state and seed
    /// always yield the same offers.
    pub fn allocate_shuffled(&mut self, now_ms: u64, seed: u64) -> Vec<OfferProposal> {
        let mut order: Vec<AgentIdx> = self.agent_ids.values().copied().collect();
        let mut x = seed ^ 0x9E37_79B9_7F4A_7C15;
        if x == 0 {
            x = 0x9E37_79B9_7F4A_7C15;
        }
        for i in (1..order.len()).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            order.swap(i, (x % (i as u64 + 1)) as usize);
        }
        self.run_cycle(now_ms, &order)
    }

    fn expire_filters(&mut self, now_ms: u64) {
        for (f, slot) in self.frameworks.items.iter_mut().enumerate() {
            let Some(fw) = slot else { continue };
            if fw.filtered.is_empty() {
                continue;
            }
            let agents = &mut self.agents;
            fw.filtered.retain(|&a| {
                let filters = &mut agents.get_mut(a).filters;
                let Some(list) = filters.get_mut(&f) else {
                    return false;
                };
                list.retain(|flt| now_ms < flt.until);
                if list.is_empty() {
                    filters.remove(&f);
                    false
                } else {
                    true
                }
            });
        }
    }

    fn run_cycle(&mut self, now_ms: u64, order: &[AgentIdx]) -> Vec<OfferProposal> {
        self.expire_filters(now_ms);
        let Allocator {
            min,
            names,
            totals,
            agents,
            agent_ids: _,
            frameworks,
            framework_ids,
            roles,
            role_ids,
            config: _,
        } = self;
        let min = *min;

        // Per-cycle sort keys: (share, (offers made, rank by id), index). Totals are fixed
        // within a cycle, so a key only changes when its framework or role is offered
        // something.
        let mut fw_tie = vec![(Share(0.0), 0u32); frameworks.slots()];
        let mut fw_key = vec![0.0f64; frameworks.slots()];
        let mut queues: Vec<BTreeSet<(Share, Tie, FwIdx)>> = vec![BTreeSet::new(); roles.len()];
        // A role's offers count per unit of weight: a role of weight 2 is made about twice
        // the offers of one of weight 1, and that is no reason to pass it over in a tie.
        let mut role_offers = vec![0u64; roles.len()];
        let mut role_tie = vec![(Share(0.0), 0u32); roles.len()];
        for (rank, &r) in role_ids.values().enumerate() {
            role_tie[r].1 = rank as u32;
        }
        for (rank, &f) in framework_ids.values().enumerate() {
            let fw = frameworks.get(f);
            fw_tie[f] = (Share(fw.offers_made as f64), rank as u32);
            role_offers[fw.role] = role_offers[fw.role].saturating_add(fw.offers_made);
            if fw.active && !fw.suppressed {
                fw_key[f] = fw.scalars.dominant(totals);
                queues[fw.role].insert((Share(fw_key[f]), fw_tie[f], f));
            }
        }
        let mut role_key = vec![0.0f64; roles.len()];
        let mut role_order: BTreeSet<(Share, Tie, RoleIdx)> = BTreeSet::new();
        for (r, role) in roles.iter().enumerate() {
            role_tie[r].0 = Share(role_offers[r] as f64 / role.weight);
            if !queues[r].is_empty() {
                role_key[r] = role.share(totals);
                role_order.insert((Share(role_key[r]), role_tie[r], r));
            }
        }

        let mut out = Vec::new();
        if role_order.is_empty() {
            return out;
        }
        for &a in order {
            loop {
                let agent = agents.get_mut(a);
                if !agent.active || agent.available.is_empty() {
                    break;
                }
                let Some((r, f)) = pick(agent, &role_order, &queues, roles, frameworks, min) else {
                    break;
                };
                let offer = take_allocatable(&mut agent.available, &roles[r].name);
                let fw = frameworks.get_mut(f);
                queues[r].remove(&(Share(fw_key[f]), fw_tie[f], f));
                role_order.remove(&(Share(role_key[r]), role_tie[r], r));
                hold(names, agent, a, fw, f, roles, offer.clone());
                fw.offers_made = fw.offers_made.saturating_add(1);
                fw_tie[f].0 = Share(fw.offers_made as f64);
                role_offers[r] = role_offers[r].saturating_add(1);
                role_tie[r].0 = Share(role_offers[r] as f64 / roles[r].weight);
                fw_key[f] = fw.scalars.dominant(totals);
                role_key[r] = roles[r].share(totals);
                queues[r].insert((Share(fw_key[f]), fw_tie[f], f));
                role_order.insert((Share(role_key[r]), role_tie[r], r));
                out.push(OfferProposal {
                    framework_id: fw.id.clone(),
                    agent_id: agent.id.clone(),
                    resources: offer,
                });
            }
        }
        out
    }

    // ----- queries -----

    /// A framework's dominant share: the largest, over scalar resource names, of what it
    /// holds on active agents divided by the active agents' total (ranges such as ports
    /// never count). 0 for an unknown framework.
    pub fn dominant_share(&self, framework: &FrameworkId) -> f64 {
        self.framework_ids.get(framework).map_or(0.0, |&f| {
            self.frameworks.get(f).scalars.dominant(&self.totals)
        })
    }

    /// A role's weighted share: the dominant share of everything its frameworks hold on
    /// active agents, divided by the role's weight. 0 for an unknown role.
    pub fn role_share(&self, role: &str) -> f64 {
        self.role_ids
            .get(role)
            .map_or(0.0, |&r| self.roles[r].share(&self.totals))
    }

    /// A role's weight (1 unless set).
    pub fn weight(&self, role: &str) -> f64 {
        self.role_ids
            .get(role)
            .map_or(1.0, |&r| self.roles[r].weight)
    }

    /// What an agent has that nobody holds (empty for an unknown agent).
    pub fn available(&self, agent: &AgentId) -> Resources {
        self.agent(agent)
            .map(|a| a.available.clone())
            .unwrap_or_default()
    }

    /// An agent's total resources (empty for an unknown agent).
    pub fn total(&self, agent: &AgentId) -> Resources {
        self.agent(agent)
            .map(|a| a.total.clone())
            .unwrap_or_default()
    }

    /// Everything held on an agent, by frameworks and unattributed: `total - available`.
    pub fn allocated(&self, agent: &AgentId) -> Resources {
        self.agent(agent)
            .map(|a| {
                let mut sum = a.unattributed.clone();
                for held in a.held.values() {
                    sum.add(held);
                }
                sum
            })
            .unwrap_or_default()
    }

    /// The part of an agent's allocation held by no known framework (see
    /// [`add_agent`](Self::add_agent)).
    pub fn unattributed(&self, agent: &AgentId) -> Resources {
        self.agent(agent)
            .map(|a| a.unattributed.clone())
            .unwrap_or_default()
    }

    /// What `framework` holds on `agent`.
    pub fn allocation_on(&self, framework: &FrameworkId, agent: &AgentId) -> Resources {
        match (self.framework_ids.get(framework), self.agent(agent)) {
            (Some(f), Some(a)) => a.held.get(f).cloned().unwrap_or_default(),
            _ => Resources::new(),
        }
    }

    /// Everything `framework` holds, on all agents (active or not).
    pub fn allocation(&self, framework: &FrameworkId) -> Resources {
        let mut sum = Resources::new();
        if let Some(&f) = self.framework_ids.get(framework) {
            for &a in &self.frameworks.get(f).agents {
                sum.add(&self.agents.get(a).held[&f]);
            }
        }
        sum
    }

    /// Whether `framework` is filtered on `agent` at `now_ms` (declined with a filter that
    /// has not expired).
    pub fn is_filtered(&self, framework: &FrameworkId, agent: &AgentId, now_ms: u64) -> bool {
        match (self.framework_ids.get(framework), self.agent(agent)) {
            (Some(f), Some(a)) => a
                .filters
                .get(f)
                .is_some_and(|list| list.iter().any(|flt| now_ms < flt.until)),
            _ => false,
        }
    }

    /// Known agents, in id order.
    pub fn agent_ids(&self) -> impl Iterator<Item = &AgentId> {
        self.agent_ids.keys()
    }

    /// Known frameworks, in id order.
    pub fn framework_ids(&self) -> impl Iterator<Item = &FrameworkId> {
        self.framework_ids.keys()
    }

    /// A framework's role, if known.
    pub fn role_of(&self, framework: &FrameworkId) -> Option<&str> {
        self.framework_ids
            .get(framework)
            .map(|&f| self.roles[self.frameworks.get(f).role].name.as_str())
    }

    fn agent(&self, id: &AgentId) -> Option<&AgentState> {
        self.agent_ids.get(id).map(|&a| self.agents.get(a))
    }

    /// Checks the internal bookkeeping, in time linear in the state's size; for tests and
    /// debug assertions. Every agent's total equals its available plus unattributed plus
    /// every framework's holding there; every holding is allocatable to its framework's
    /// role; the mirrored indexes agree; shares and totals match a recomputation.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut names = self.names.clone();
        let mut totals = ScalarVec::default();
        let mut fw_scalars: BTreeMap<FwIdx, ScalarVec> = BTreeMap::new();
        for (id, &a) in &self.agent_ids {
            let agent = self.agents.get(a);
            if &agent.id != id {
                return Err(format!("agent index {a} is {} not {id}", agent.id));
            }
            let mut sum = agent.available.plus(&agent.unattributed);
            for (&f, held) in &agent.held {
                let fw = self.frameworks.get(f);
                if held.is_empty() || !fw.agents.contains(&a) {
                    return Err(format!(
                        "holding of {} on {id} not mirrored or empty",
                        fw.id
                    ));
                }
                if held != &held.allocatable_to(&self.roles[fw.role].name) {
                    return Err(format!(
                        "{} holds {held} on {id}, not all for its role",
                        fw.id
                    ));
                }
                sum.add(held);
                if agent.active {
                    fw_scalars
                        .entry(f)
                        .or_default()
                        .apply(&mut names, held, true);
                }
            }
            if sum != agent.total {
                return Err(format!(
                    "agent {id}: available + held = {sum}, total = {}",
                    agent.total
                ));
            }
            for &f in agent.filters.keys() {
                if !self.frameworks.get(f).filtered.contains(&a) {
                    return Err(format!("filter on {id} not mirrored"));
                }
            }
            if agent.active {
                totals.apply(&mut names, &agent.total, true);
            }
        }
        if !same(&totals, &self.totals) {
            return Err(format!("totals {:?} != {:?}", self.totals, totals));
        }
        let mut role_scalars = vec![ScalarVec::default(); self.roles.len()];
        for (id, &f) in &self.framework_ids {
            let fw = self.frameworks.get(f);
            if &fw.id != id || !self.roles[fw.role].frameworks.contains(&f) {
                return Err(format!("framework {id} mis-indexed"));
            }
            for &a in &fw.agents {
                if !self.agents.get(a).held.contains_key(&f) {
                    return Err(format!("{id} lists an agent where it holds nothing"));
                }
            }
            for &a in &fw.filtered {
                if !self.agents.get(a).filters.contains_key(&f) {
                    return Err(format!("{id} lists a filter that is gone"));
                }
            }
            let expect = fw_scalars.remove(&f).unwrap_or_default();
            if !same(&expect, &fw.scalars) {
                return Err(format!("{id} scalars {:?} != {:?}", fw.scalars, expect));
            }
            role_scalars[fw.role].apply_vec(&fw.scalars, true);
        }
        for (role, expect) in self.roles.iter().zip(&role_scalars) {
            if !same(expect, &role.scalars) {
                return Err(format!("role {} scalars mismatch", role.name));
            }
        }
        Ok(())
    }
}

/// Equal as vectors, treating missing entries as zero.
fn same(a: &ScalarVec, b: &ScalarVec) -> bool {
    let mut d = a.clone();
    d.apply_vec(b, false);
    let mut e = b.clone();
    e.apply_vec(a, false);
    d.is_zero() && e.is_zero()
}

/// Breaks ties between equal shares: (offers made, per unit of weight for a role; rank by
/// name or id).
type Tie = (Share, u32);

/// The (role, framework) to offer `agent` to next, or `None` if nobody eligible can use it.
fn pick(
    agent: &AgentState,
    role_order: &BTreeSet<(Share, Tie, RoleIdx)>,
    queues: &[BTreeSet<(Share, Tie, FwIdx)>],
    roles: &[RoleState],
    frameworks: &Slab<FrameworkState>,
    min: Minimum,
) -> Option<(RoleIdx, FwIdx)> {
    for &(_, _, r) in role_order {
        if !meets_min(&agent.available, &roles[r].name, min) {
            continue;
        }
        let queue = &queues[r];
        if agent.filters.is_empty() {
            return queue.first().map(|&(_, _, f)| (r, f));
        }
        // What the role would be offered here, and the queued frameworks whose filters
        // refuse it (filters are few per agent; queues can be long).
        let mut candidate = agent.available.clone();
        let candidate = take_allocatable(&mut candidate, &roles[r].name);
        let blocked: BTreeSet<FwIdx> = agent
            .filters
            .iter()
            .filter(|(&f, list)| {
                let fw = frameworks.get(f);
                fw.role == r
                    && fw.active
                    && !fw.suppressed
                    && list.iter().any(|flt| flt.blocks(&candidate))
            })
            .map(|(&f, _)| f)
            .collect();
        if blocked.len() >= queue.len() {
            continue;
        }
        if let Some(&(_, _, f)) = queue.iter().find(|(_, _, f)| !blocked.contains(f)) {
            return Some((r, f));
        }
    }
    None
}
