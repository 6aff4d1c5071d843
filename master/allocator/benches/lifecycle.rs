//! The allocator's lifecycle, measured both ways at 10,000 agents x 1,000 frameworks.
//!
//! The master's cycle rebuilds the allocator from the registry and allocates. The
//! alternative keeps one allocator alive across cycles, feeds it the changes of one cycle,
//! then allocates. Both start from the same steady state:
//!
//! - 10,000 agents of `cpus:32;mem:262144;disk:1000000`, every 500th unreachable;
//!   1,000 frameworks over 10 roles (`role-0` weight 3, `role-1` weight 2); every 4th holds
//!   tasks on 5 agents, every 10th has refused 3 agents for good, every 50th is suppressed,
//!   every 100th is disconnected;
//! - the previous cycle offered every active agent and those offers are outstanding (held);
//! - since then, one cycle's changes: 200 offers accepted (one task each, the rest given
//!   back), 100 offers declined with a 5 s filter, 100 tasks finished.
//!
//! Cases (each iteration is one cycle; building or cloning the input and dropping the
//! result are not timed):
//! - `rebuild_and_allocate`: the master's cycle: `Allocator::new`, `set_weight`, `add_agent`,
//!   `set_agent_active`, `add_framework`, `set_framework_active`, `suppress`,
//!   `decline_resources` from a plain snapshot (as `rebuild` in master/src/frameworks.rs
//!   does from the registry; the registry's own reads are not included), then `allocate`.
//! - `kept_alive_readd_and_allocate`: one allocator kept alive, fed the cycle's changes with
//!   the API that remains (re-adding the 300-odd frameworks whose holdings changed, with
//!   their soft state), then `allocate`.
//! - `kept_alive_allocate_only`: `allocate` on an allocator already in the new state, i.e.
//!   the kept-alive cycle with its feed for free: the floor of any incremental design.
//!
//! A fourth case fed the kept-alive allocator with the event API it had then (`release`
//! for each of the 400 returns, `decline_resources` for the 150 new filters); that API was
//! deleted with the decision this bench informed, and its figure is in docs/benchmarks.md.
//!
//! Both ways must yield the same offers; the bench asserts it before timing.
//!
//! Run: `cargo bench -p agora-allocator --bench lifecycle`.

use agora_allocator::{Allocator, AllocatorConfig, OfferProposal};
use agora_registry::{AgentId, FrameworkId, Resources};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const AGENTS: usize = 10_000;
const FRAMEWORKS: usize = 1_000;

/// What `rebuild` reads from the registry and the leader's soft state, as plain data.
#[derive(Clone)]
struct Snapshot {
    weights: Vec<(String, f64)>,
    /// id, total, allocated (used + offered), active.
    agents: Vec<(AgentId, Resources, Resources, bool)>,
    frameworks: Vec<SnapFramework>,
    /// framework, agent, refused, until.
    filters: Vec<(FrameworkId, AgentId, Resources, u64)>,
}

#[derive(Clone)]
struct SnapFramework {
    id: FrameworkId,
    role: String,
    holdings: BTreeMap<AgentId, Resources>,
    active: bool,
    suppressed: bool,
}

/// As `rebuild` in master/src/frameworks.rs.
fn rebuild(s: &Snapshot) -> Allocator {
    let mut al = Allocator::new(AllocatorConfig::default());
    for (role, w) in &s.weights {
        al.set_weight(role, *w);
    }
    for (id, total, allocated, active) in &s.agents {
        al.add_agent(id.clone(), total.clone(), allocated.clone());
        if !active {
            al.set_agent_active(id, false);
        }
    }
    for f in &s.frameworks {
        add_framework(&mut al, f);
    }
    for (f, a, refused, until) in &s.filters {
        al.decline_resources(f, a, refused.clone(), *until);
    }
    al
}

fn add_framework(al: &mut Allocator, f: &SnapFramework) {
    al.add_framework(f.id.clone(), f.role.clone(), f.holdings.clone());
    if !f.active {
        al.set_framework_active(&f.id, false);
    }
    if f.suppressed {
        al.suppress(&f.id);
    }
}

fn agent(i: usize) -> AgentId {
    AgentId::new(format!("agent-{i:06}")).unwrap()
}

fn framework(j: usize) -> FrameworkId {
    FrameworkId::new(format!("framework-{j:05}")).unwrap()
}

/// Fills in every agent's `allocated` from the frameworks' holdings.
fn settle(s: &mut Snapshot) {
    let mut allocated: BTreeMap<AgentId, Resources> = BTreeMap::new();
    for f in &s.frameworks {
        for (a, r) in &f.holdings {
            allocated.entry(a.clone()).or_default().add(r);
        }
    }
    for (id, _, alloc, _) in &mut s.agents {
        *alloc = allocated.remove(id).unwrap_or_default();
    }
}

/// The registry before the previous cycle.
fn base() -> Snapshot {
    let total = Resources::parse("cpus:32;mem:262144;disk:1000000").unwrap();
    let slice = Resources::parse("cpus:4;mem:16384;disk:10000").unwrap();
    let agents = (0..AGENTS)
        .map(|i| (agent(i), total.clone(), Resources::new(), i % 500 != 499))
        .collect();
    let mut filters = Vec::new();
    let frameworks = (0..FRAMEWORKS)
        .map(|j| {
            let mut holdings = BTreeMap::new();
            if j % 4 == 0 {
                for k in 0..5 {
                    let a = agent((j * 7919 + k * 104_729) % AGENTS);
                    holdings.entry(a).or_insert_with(Resources::new).add(&slice);
                }
            }
            if j % 10 == 3 {
                for k in 0..3 {
                    filters.push((
                        framework(j),
                        agent((j * 31 + k) % AGENTS),
                        total.clone(),
                        u64::MAX,
                    ));
                }
            }
            SnapFramework {
                id: framework(j),
                role: format!("role-{}", j % 10),
                holdings,
                active: j % 100 != 42,
                suppressed: j % 50 == 7,
            }
        })
        .collect();
    let mut s = Snapshot {
        weights: vec![("role-0".into(), 3.0), ("role-1".into(), 2.0)],
        agents,
        frameworks,
        filters,
    };
    settle(&mut s);
    s
}

/// One cycle's changes to the registry, as the kept-alive allocator would be told them.
struct Changes {
    /// (framework, agent, resources) given back: declined offers, the unused part of
    /// accepted offers, finished tasks.
    released: Vec<(FrameworkId, AgentId, Resources)>,
    /// New decline filters: (framework, agent, refused, until).
    filters: Vec<(FrameworkId, AgentId, Resources, u64)>,
}

/// The registry after `offers` were made and one cycle's changes happened since, and those
/// changes.
fn after(before: &Snapshot, offers: &[OfferProposal], now: u64) -> (Snapshot, Changes) {
    let task = Resources::parse("cpus:1;mem:4096;disk:1000").unwrap();
    let slice = Resources::parse("cpus:4;mem:16384;disk:10000").unwrap();
    let mut s = before.clone();
    let index: BTreeMap<FrameworkId, usize> = s
        .frameworks
        .iter()
        .enumerate()
        .map(|(i, f)| (f.id.clone(), i))
        .collect();
    for o in offers {
        s.frameworks[index[&o.framework_id]]
            .holdings
            .entry(o.agent_id.clone())
            .or_default()
            .add(&o.resources);
    }
    let mut changes = Changes {
        released: Vec::new(),
        filters: Vec::new(),
    };
    let mut release = |s: &mut Snapshot, f: &FrameworkId, a: &AgentId, r: &Resources| {
        let held = s.frameworks[index[f]].holdings.get_mut(a).unwrap();
        *held = held.checked_sub(r).expect("releases what is held");
        if held.is_empty() {
            s.frameworks[index[f]].holdings.remove(a);
        }
        changes.released.push((f.clone(), a.clone(), r.clone()));
    };
    // Spread over the cluster: every 25th offer is accepted (one task, the rest back),
    // the one after it declined with a 5 s filter.
    for (n, o) in offers
        .iter()
        .enumerate()
        .filter(|(n, _)| n % 25 < 2)
        .take(300)
    {
        if n % 25 == 0 {
            let rest = o.resources.checked_sub(&task).unwrap();
            release(&mut s, &o.framework_id, &o.agent_id, &rest);
        } else {
            release(&mut s, &o.framework_id, &o.agent_id, &o.resources);
            let filter = (
                o.framework_id.clone(),
                o.agent_id.clone(),
                o.resources.clone(),
                now + 5_000,
            );
            s.filters.push(filter.clone());
            changes.filters.push(filter);
        }
    }
    // 100 tasks (slices of the frameworks holding some) end.
    let holders: Vec<(FrameworkId, AgentId)> = before
        .frameworks
        .iter()
        .flat_map(|f| f.holdings.keys().map(move |a| (f.id.clone(), a.clone())))
        .step_by(12)
        .take(100)
        .collect();
    for (f, a) in &holders {
        release(&mut s, f, a, &slice);
    }
    settle(&mut s);
    (s, changes)
}

struct Setup {
    /// The registry now (what the master's rebuild reads).
    now: Snapshot,
    /// The kept-alive allocator as the previous cycle left it.
    kept: Allocator,
    /// The frameworks whose holdings or filters changed this cycle, as they are now, and
    /// the filters to re-apply for them.
    readd: Vec<SnapFramework>,
    readd_filters: Vec<(FrameworkId, AgentId, Resources, u64)>,
    changes: Changes,
}

fn setup() -> Setup {
    let before = base();
    let mut kept = rebuild(&before);
    let offers = kept.allocate(1);
    assert_eq!(
        offers.len(),
        AGENTS - AGENTS / 500,
        "every active agent offered"
    );
    let (now, changes) = after(&before, &offers, 1_000);
    let touched: BTreeSet<&FrameworkId> = changes
        .released
        .iter()
        .map(|(f, _, _)| f)
        .chain(changes.filters.iter().map(|(f, _, _, _)| f))
        .collect();
    let readd: Vec<SnapFramework> = now
        .frameworks
        .iter()
        .filter(|f| touched.contains(&f.id))
        .cloned()
        .collect();
    let readd_filters = now
        .filters
        .iter()
        .filter(|(f, _, _, _)| touched.contains(f))
        .cloned()
        .collect();
    Setup {
        now,
        kept,
        readd,
        readd_filters,
        changes,
    }
}

/// Feeds the kept-alive allocator by re-adding each changed framework as it is now (the
/// allocator replaces a known id), with its soft state.
fn feed_by_readd(al: &mut Allocator, s: &Setup) {
    for f in &s.readd {
        add_framework(al, f);
    }
    for (f, a, refused, until) in &s.readd_filters {
        al.decline_resources(f, a, refused.clone(), *until);
    }
}

fn bench(c: &mut Criterion) {
    let s = setup();
    let now = 2_000;
    let want = rebuild(&s.now).allocate(now);
    eprintln!(
        "steady state: {} changes ({} frameworks re-added), {} offers this cycle",
        s.changes.released.len() + s.changes.filters.len(),
        s.readd.len(),
        want.len()
    );
    let mut fed = s.kept.clone();
    feed_by_readd(&mut fed, &s);
    fed.check_invariants().unwrap();
    assert_eq!(
        fed.clone().allocate(now),
        want,
        "re-add feed drifted from the rebuild"
    );

    let mut group = c.benchmark_group("lifecycle_10000_agents_x_1000_frameworks");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    group.bench_function("rebuild_and_allocate", |b| {
        b.iter_with_large_drop(|| {
            let mut al = rebuild(&s.now);
            let offers = al.allocate(now);
            (al, offers)
        })
    });
    group.bench_function("kept_alive_readd_and_allocate", |b| {
        b.iter_batched_ref(
            || s.kept.clone(),
            |al| {
                feed_by_readd(al, &s);
                al.allocate(now)
            },
            BatchSize::LargeInput,
        )
    });
    group.bench_function("kept_alive_allocate_only", |b| {
        b.iter_batched_ref(|| fed.clone(), |al| al.allocate(now), BatchSize::LargeInput)
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
