//! Unit tests of the allocator's rules, one rule per test.
//!
//! Most tests describe the registry (and the leader's soft state) as a [`Cluster`], rebuild
//! the allocator from it as the master does each cycle, allocate, and record the offers in
//! the cluster as the master commits them. A change between cycles (an offer declined, a
//! task ended, a framework removed) is a change to the cluster, seen by the next rebuild.

use crate::{Allocator, AllocatorConfig, OfferProposal};
use agora_registry::{AgentId, FrameworkId, Resources};
use std::collections::BTreeMap;

fn r(s: &str) -> Resources {
    Resources::parse(s).unwrap()
}

fn ag(s: &str) -> AgentId {
    AgentId::new(s).unwrap()
}

fn fw(s: &str) -> FrameworkId {
    FrameworkId::new(s).unwrap()
}

fn alloc() -> Allocator {
    Allocator::new(AllocatorConfig::default())
}

fn add_fw(al: &mut Allocator, id: &str, role: &str) {
    al.add_framework(fw(id), role.to_string(), []);
}

fn checked(al: &mut Allocator, now: u64) -> Vec<OfferProposal> {
    let out = al.allocate(now);
    al.check_invariants().unwrap();
    out
}

fn summary(offers: &[OfferProposal]) -> Vec<(String, String, String)> {
    offers
        .iter()
        .map(|o| {
            (
                o.framework_id.to_string(),
                o.agent_id.to_string(),
                o.resources.to_string(),
            )
        })
        .collect()
}

fn s3(a: &str, b: &str, c: &str) -> (String, String, String) {
    (a.to_string(), b.to_string(), c.to_string())
}

#[derive(Default)]
struct Fw {
    role: String,
    inactive: bool,
    suppressed: bool,
}

/// The registry and the leader's soft state, as `rebuild` in the master reads them.
#[derive(Default)]
struct Cluster {
    weights: Vec<(String, f64)>,
    /// total, active.
    agents: BTreeMap<AgentId, (Resources, bool)>,
    frameworks: BTreeMap<FrameworkId, Fw>,
    /// What each framework holds on each agent: its tasks and outstanding offers.
    held: BTreeMap<(FrameworkId, AgentId), Resources>,
    /// Held on an agent by no known framework (tasks of a framework not registered).
    orphaned: BTreeMap<AgentId, Resources>,
    /// (framework, agent, refused, until).
    filters: Vec<(FrameworkId, AgentId, Resources, u64)>,
}

impl Cluster {
    fn agent(&mut self, id: &str, total: &str) -> &mut Self {
        self.agents.insert(ag(id), (r(total), true));
        self
    }

    fn framework(&mut self, id: &str, role: &str) -> &mut Self {
        self.frameworks.insert(
            fw(id),
            Fw {
                role: role.to_string(),
                ..Fw::default()
            },
        );
        self
    }

    /// `f` holds `res` more on `a` (a task launched, an offer made).
    fn hold(&mut self, f: &str, a: &str, res: &str) -> &mut Self {
        self.held.entry((fw(f), ag(a))).or_default().add(&r(res));
        self
    }

    /// `f` holds `res` less on `a` (an offer declined or partly used, a task ended).
    fn release(&mut self, f: &str, a: &str, res: &str) -> &mut Self {
        let key = (fw(f), ag(a));
        let held = self.held.remove(&key).unwrap_or_default();
        let left = held.checked_sub(&r(res)).expect("releases what it holds");
        if !left.is_empty() {
            self.held.insert(key, left);
        }
        self
    }

    /// A decline filter, as the master's soft state keeps them.
    fn decline(&mut self, f: &str, a: &str, refused: &str, until: u64) -> &mut Self {
        self.filters.push((fw(f), ag(a), r(refused), until));
        self
    }

    /// A decline filter refusing everything on the agent.
    fn decline_all(&mut self, f: &str, a: &str, until: u64) -> &mut Self {
        let total = self.agents[&ag(a)].0.clone();
        self.filters.push((fw(f), ag(a), total, until));
        self
    }

    /// As `rebuild` in master/src/frameworks.rs.
    fn rebuild(&self) -> Allocator {
        self.rebuild_with(AllocatorConfig::default())
    }

    fn rebuild_with(&self, config: AllocatorConfig) -> Allocator {
        let mut al = Allocator::new(config);
        for (role, w) in &self.weights {
            al.set_weight(role, *w);
        }
        for (id, (total, active)) in &self.agents {
            let mut allocated = self.orphaned.get(id).cloned().unwrap_or_default();
            for ((_, a), held) in &self.held {
                if a == id {
                    allocated.add(held);
                }
            }
            al.add_agent(id.clone(), total.clone(), allocated);
            if !active {
                al.set_agent_active(id, false);
            }
        }
        for (id, f) in &self.frameworks {
            let holdings: Vec<(AgentId, Resources)> = self
                .held
                .iter()
                .filter(|((ff, _), _)| ff == id)
                .map(|((_, a), res)| (a.clone(), res.clone()))
                .collect();
            al.add_framework(id.clone(), f.role.clone(), holdings);
            if f.inactive {
                al.set_framework_active(id, false);
            }
            if f.suppressed {
                al.suppress(id);
            }
        }
        for (f, a, refused, until) in &self.filters {
            al.decline_resources(f, a, refused.clone(), *until);
        }
        al.check_invariants().unwrap();
        al
    }

    /// One cycle of the master: rebuild, allocate, commit the offers (now held).
    fn cycle(&mut self, now: u64) -> Vec<OfferProposal> {
        let offers = checked(&mut self.rebuild(), now);
        for o in &offers {
            self.held
                .entry((o.framework_id.clone(), o.agent_id.clone()))
                .or_default()
                .add(&o.resources);
        }
        offers
    }
}

#[test]
fn offers_everything_available_once_and_records_it() {
    let mut al = alloc();
    al.add_agent(
        ag("a1"),
        r("cpus:4;mem:1024;ports:[31000-31009]"),
        r("cpus:1"),
    );
    add_fw(&mut al, "f1", "web");
    let offers = checked(&mut al, 0);
    assert_eq!(
        summary(&offers),
        [s3("f1", "a1", "cpus:3;mem:1024;ports:[31000-31009]")]
    );
    assert!(al.available(&ag("a1")).is_empty());
    assert_eq!(al.allocated(&ag("a1")), al.total(&ag("a1")));
    assert_eq!(al.allocation(&fw("f1")), offers[0].resources);
    // Nothing is left to offer: the rest of the cycle, or a second one, offers nothing.
    assert!(checked(&mut al, 1).is_empty());
}

#[test]
fn reservations_go_only_to_their_role() {
    let mut al = alloc();
    al.add_agent(ag("a1"), r("cpus:2;mem:512;cpus(db):3;mem(db):256"), r(""));
    add_fw(&mut al, "web1", "web");
    add_fw(&mut al, "db1", "db");
    // Both roles start at share 0; "db" sorts first and gets its reservation plus the
    // unreserved part. "web" gets nothing: only db's reservation could be left.
    let offers = checked(&mut al, 0);
    assert_eq!(
        summary(&offers),
        [s3("db1", "a1", "cpus:2;cpus(db):3;mem:512;mem(db):256")]
    );

    // With only a web framework, the reservation for db stays unoffered.
    let mut c = Cluster::default();
    c.agent("a1", "cpus:2;mem:512;cpus(db):3;mem(db):256")
        .framework("web1", "web");
    let offers = c.cycle(0);
    assert_eq!(summary(&offers), [s3("web1", "a1", "cpus:2;mem:512")]);
    assert_eq!(
        c.rebuild().available(&ag("a1")),
        r("cpus(db):3;mem(db):256")
    );
    // A db framework registering later (web's offer still outstanding) gets the
    // reservation, and only that.
    c.framework("db1", "db");
    let offers = c.cycle(1);
    assert_eq!(
        summary(&offers),
        [s3("db1", "a1", "cpus(db):3;mem(db):256")]
    );
}

#[test]
fn reservation_left_after_an_offer_goes_to_its_role_in_the_same_cycle() {
    let mut c = Cluster::default();
    c.agent("a0", "cpus:1;mem:64")
        .agent("a1", "cpus:2;mem:512;cpus(db):3")
        .framework("web1", "web")
        .framework("db1", "db")
        // db's share is higher than web's, so web goes first on a1.
        .hold("db1", "a0", "cpus:1;mem:64");
    assert_eq!(
        summary(&c.cycle(0)),
        [
            s3("web1", "a1", "cpus:2;mem:512"),
            s3("db1", "a1", "cpus(db):3")
        ]
    );
}

#[test]
fn a_holding_never_takes_another_roles_reservation() {
    // Claimed from the agent's available resources ...
    let mut al = alloc();
    al.add_agent(ag("a1"), r("cpus:2;cpus(db):3"), r(""));
    al.add_framework(
        fw("web1"),
        "web".to_string(),
        [(ag("a1"), r("cpus:1;cpus(db):3"))],
    );
    assert_eq!(al.allocation_on(&fw("web1"), &ag("a1")), r("cpus:1"));
    assert_eq!(al.available(&ag("a1")), r("cpus:1;cpus(db):3"));
    al.check_invariants().unwrap();
    // ... or from its allocation: the reservation stays held, by nobody known.
    let mut al = alloc();
    al.add_agent(ag("a1"), r("cpus:2;cpus(db):3"), r("cpus:1;cpus(db):3"));
    al.add_framework(
        fw("web1"),
        "web".to_string(),
        [(ag("a1"), r("cpus:1;cpus(db):3"))],
    );
    assert_eq!(al.allocation_on(&fw("web1"), &ag("a1")), r("cpus:1"));
    assert_eq!(al.unattributed(&ag("a1")), r("cpus(db):3"));
    assert_eq!(al.available(&ag("a1")), r("cpus:1"));
    al.check_invariants().unwrap();
}

#[test]
fn suppressed_inactive_and_filtered_frameworks_get_nothing() {
    let mut c = Cluster::default();
    c.agent("a1", "cpus:1;mem:128");
    for f in ["f1", "f2", "f3"] {
        c.framework(f, "r");
    }
    c.frameworks.get_mut(&fw("f1")).unwrap().suppressed = true;
    c.frameworks.get_mut(&fw("f2")).unwrap().inactive = true;
    c.decline_all("f3", "a1", 1_000);
    assert!(c.cycle(0).is_empty());
    assert!(c.cycle(999).is_empty());

    // Each one on its own is enough: lift the other two and it gets the offer.
    c.frameworks.get_mut(&fw("f2")).unwrap().inactive = false;
    assert_eq!(summary(&c.cycle(999)), [s3("f2", "a1", "cpus:1;mem:128")]);
}

#[test]
fn inactive_agents_are_not_offered_and_leave_the_totals() {
    let mut c = Cluster::default();
    c.agent("a1", "cpus:1;mem:128")
        .agent("a2", "cpus:1;mem:128")
        .framework("f1", "r")
        .hold("f1", "a2", "cpus:1");
    assert_eq!(c.rebuild().dominant_share(&fw("f1")), 0.5);
    c.agents.get_mut(&ag("a1")).unwrap().1 = false;
    // a2 is the only active agent, and f1 holds all its cpus.
    assert_eq!(c.rebuild().dominant_share(&fw("f1")), 1.0);
    assert_eq!(summary(&c.cycle(0)), [s3("f1", "a2", "mem:128")]);
    c.agents.get_mut(&ag("a2")).unwrap().1 = false;
    assert_eq!(c.rebuild().dominant_share(&fw("f1")), 0.0);
    // What it holds on an inactive agent stays recorded as its own.
    assert_eq!(
        c.rebuild().allocation_on(&fw("f1"), &ag("a2")),
        r("cpus:1;mem:128")
    );
    c.agents.get_mut(&ag("a1")).unwrap().1 = true;
    assert_eq!(summary(&c.cycle(1)), [s3("f1", "a1", "cpus:1;mem:128")]);

    // The same through set_agent_active on one allocator, both ways.
    let mut al = c.rebuild();
    al.set_agent_active(&ag("a2"), true);
    al.check_invariants().unwrap();
    assert_eq!(al.dominant_share(&fw("f1")), 1.0);
    al.set_agent_active(&ag("a1"), false);
    al.check_invariants().unwrap();
    assert_eq!(al.dominant_share(&fw("f1")), 1.0);
    al.set_agent_active(&ag("a2"), false);
    al.check_invariants().unwrap();
    assert_eq!(al.dominant_share(&fw("f1")), 0.0);
}

#[test]
fn filters_expire_at_refuse_until() {
    let mut c = Cluster::default();
    c.agent("a1", "cpus:1;mem:128").framework("f1", "r");
    let offers = c.cycle(0);
    assert_eq!(offers.len(), 1);
    // Declined for 5 s from t=1000: the offer is given back and the agent filtered.
    c.release("f1", "a1", "cpus:1;mem:128")
        .decline("f1", "a1", "cpus:1;mem:128", 6_000);
    assert!(c.rebuild().is_filtered(&fw("f1"), &ag("a1"), 5_999));
    assert!(c.cycle(1_000).is_empty());
    assert!(c.cycle(5_999).is_empty());
    assert!(!c.rebuild().is_filtered(&fw("f1"), &ag("a1"), 6_000));
    assert_eq!(summary(&c.cycle(6_000)), [s3("f1", "a1", "cpus:1;mem:128")]);
}

#[test]
fn a_filter_only_covers_its_agent_and_framework() {
    let mut c = Cluster::default();
    c.agent("a1", "cpus:1;mem:128")
        .agent("a2", "cpus:1;mem:128")
        .framework("f1", "r")
        .framework("f2", "r")
        .decline_all("f1", "a1", 10_000);
    // f1 (lowest id, share 0) would get a1 first: it is filtered there, so f2 gets a1,
    // then f1 (now the lower share) gets a2.
    assert_eq!(
        summary(&c.cycle(0)),
        [
            s3("f2", "a1", "cpus:1;mem:128"),
            s3("f1", "a2", "cpus:1;mem:128")
        ]
    );
}

#[test]
fn a_longer_filter_wins() {
    let mut c = Cluster::default();
    c.agent("a1", "cpus:1;mem:128")
        .framework("f1", "r")
        .decline_all("f1", "a1", 10_000)
        .decline_all("f1", "a1", 2_000);
    assert!(c.cycle(5_000).is_empty());
    assert_eq!(c.cycle(10_000).len(), 1);
}

#[test]
fn a_resource_filter_refuses_only_what_it_holds() {
    let mut c = Cluster::default();
    c.agent("a1", "cpus:4;mem:1024")
        .framework("f1", "r")
        .framework("f2", "r")
        // f1 used 4 cpus and 900 mem of an offer and declined the rest for 5 s.
        .hold("f1", "a1", "cpus:4;mem:900")
        .decline("f1", "a1", "mem:124", 5_000);
    // The rest goes to f2 (it has the lower share anyway) ...
    assert_eq!(summary(&c.cycle(0)), [s3("f2", "a1", "mem:124")]);
    // ... which declines everything on the agent ...
    c.release("f2", "a1", "mem:124")
        .decline_all("f2", "a1", 5_000);
    // ... and with both filtered, the same rest goes to nobody.
    assert!(c.cycle(1_000).is_empty());
    // A cpu f1 frees is more than f1 refused: offered to f1 (the only one not refusing
    // it: f2 refused everything here).
    c.release("f1", "a1", "cpus:1;mem:100");
    assert_eq!(summary(&c.cycle(2_000)), [s3("f1", "a1", "cpus:1;mem:224")]);
    let al = c.rebuild();
    assert!(al.is_filtered(&fw("f1"), &ag("a1"), 2_000));
    assert!(!al.is_filtered(&fw("f1"), &ag("a1"), 5_000));
}

#[test]
fn a_revived_framework_is_offered_by_the_next_rebuild() {
    let mut c = Cluster::default();
    c.agent("a1", "cpus:1;mem:128")
        .agent("a2", "cpus:1;mem:128")
        .framework("f1", "r")
        .decline_all("f1", "a1", u64::MAX)
        .decline_all("f1", "a2", u64::MAX);
    c.frameworks.get_mut(&fw("f1")).unwrap().suppressed = true;
    assert!(c.cycle(0).is_empty());
    // REVIVE: the master drops the framework's suppression and filters from its soft
    // state; the next rebuild offers to it everywhere.
    c.frameworks.get_mut(&fw("f1")).unwrap().suppressed = false;
    c.filters.retain(|(f, ..)| f != &fw("f1"));
    assert!(!c.rebuild().is_filtered(&fw("f1"), &ag("a1"), 0));
    assert_eq!(c.cycle(1).len(), 2);
}

#[test]
fn below_the_minimum_is_not_offered() {
    let mut c = Cluster::default();
    c.agent("tiny", "cpus:0.005;mem:10;disk:100")
        .framework("f1", "r");
    assert!(c.cycle(0).is_empty());
    // Either minimum is enough: 0.01 cpus, or 32 MB.
    c.agent("cpu-only", "cpus:0.01;mem:1")
        .agent("mem-only", "cpus:0.001;mem:32");
    assert_eq!(
        summary(&c.cycle(1)),
        [
            s3("f1", "cpu-only", "cpus:0.01;mem:1"),
            s3("f1", "mem-only", "cpus:0.001;mem:32")
        ]
    );
    // What is left after a release below the minimum is not offered either.
    let mut c = Cluster::default();
    c.agent("a1", "cpus:1;mem:1024").framework("f1", "r");
    c.cycle(0);
    c.release("f1", "a1", "cpus:0.005;mem:10");
    assert_eq!(c.rebuild().available(&ag("a1")), r("cpus:0.005;mem:10"));
    assert!(c.cycle(1).is_empty());
    // Reserved resources count only for their role.
    let mut c = Cluster::default();
    c.agent("a1", "cpus:0.005;mem:10;cpus(db):1")
        .framework("web1", "web");
    assert!(c.cycle(0).is_empty());
}

#[test]
fn custom_minimums_apply() {
    let mut c = Cluster::default();
    c.agent("a1", "cpus:0.5;mem:512").framework("f1", "r");
    let mut al = c.rebuild_with(AllocatorConfig {
        min_allocatable_cpus: 1.0,
        min_allocatable_mem_mb: 1024.0,
    });
    assert!(checked(&mut al, 0).is_empty());
    assert_eq!(checked(&mut c.rebuild(), 0).len(), 1);
}

#[test]
fn released_resources_are_offered_again() {
    let mut c = Cluster::default();
    c.agent("a1", "cpus:4;mem:1024").framework("f1", "r");
    assert_eq!(c.cycle(0).len(), 1);
    // The framework launches a 1-cpu, 256 MB task and gives back the rest.
    c.release("f1", "a1", "cpus:3;mem:768");
    let al = c.rebuild();
    assert_eq!(al.allocation(&fw("f1")), r("cpus:1;mem:256"));
    assert_eq!(al.available(&ag("a1")), r("cpus:3;mem:768"));
    assert_eq!(summary(&c.cycle(1)), [s3("f1", "a1", "cpus:3;mem:768")]);
    // The task ends: its resources come back too.
    c.release("f1", "a1", "cpus:1;mem:256");
    assert_eq!(summary(&c.cycle(2)), [s3("f1", "a1", "cpus:1;mem:256")]);
}

#[test]
fn overlapping_holdings_are_never_held_twice() {
    // Fed inconsistent holdings (two frameworks claiming the same ports, more cpus than
    // there are), the later claim gets only what is left, and nothing goes negative.
    let mut al = alloc();
    al.add_agent(ag("a1"), r("cpus:4;mem:1024;ports:[1-10]"), r(""));
    al.add_framework(
        fw("f1"),
        "r".to_string(),
        [(ag("a1"), r("cpus:1;ports:[1-5]"))],
    );
    al.add_framework(
        fw("f2"),
        "r".to_string(),
        [(ag("a1"), r("cpus:4;mem:100;ports:[4-8]"))],
    );
    assert_eq!(al.allocation(&fw("f1")), r("cpus:1;ports:[1-5]"));
    assert_eq!(al.allocation(&fw("f2")), r("cpus:3;mem:100;ports:[6-8]"));
    assert_eq!(al.available(&ag("a1")), r("mem:924;ports:[9-10]"));
    al.check_invariants().unwrap();
    // The same when the agent's allocation (used + offered) names the sum of both.
    let mut al = alloc();
    al.add_agent(
        ag("a1"),
        r("cpus:4;mem:1024;ports:[1-10]"),
        r("cpus:5;mem:100;ports:[1-8]"),
    );
    assert_eq!(al.unattributed(&ag("a1")), r("cpus:4;mem:100;ports:[1-8]"));
    al.add_framework(
        fw("f1"),
        "r".to_string(),
        [(ag("a1"), r("cpus:1;ports:[1-5]"))],
    );
    al.add_framework(
        fw("f2"),
        "r".to_string(),
        [(ag("a1"), r("cpus:4;mem:100;ports:[4-8]"))],
    );
    assert_eq!(al.allocation(&fw("f1")), r("cpus:1;ports:[1-5]"));
    assert_eq!(al.allocation(&fw("f2")), r("cpus:3;mem:100;ports:[6-8]"));
    assert!(al.unattributed(&ag("a1")).is_empty());
    assert_eq!(al.available(&ag("a1")), r("mem:924;ports:[9-10]"));
    al.check_invariants().unwrap();
}

#[test]
fn a_holding_is_clamped_to_what_is_free() {
    let mut al = alloc();
    al.add_agent(ag("a1"), r("cpus:2;mem:100"), r(""));
    al.add_framework(fw("f1"), "r".to_string(), [(ag("a1"), r("cpus:1.5"))]);
    al.add_framework(fw("f2"), "r".to_string(), [(ag("a1"), r("cpus:1;mem:200"))]);
    assert_eq!(al.allocation(&fw("f2")), r("cpus:0.5;mem:100"));
    assert!(al.available(&ag("a1")).is_empty());
    al.check_invariants().unwrap();
    // Pairs of one framework on one agent add up, and are clamped together.
    let mut al = alloc();
    al.add_agent(ag("a1"), r("cpus:2;mem:100"), r("cpus:1"));
    al.add_framework(
        fw("f1"),
        "r".to_string(),
        [(ag("a1"), r("cpus:1.5")), (ag("a1"), r("cpus:1;mem:20"))],
    );
    assert_eq!(al.allocation(&fw("f1")), r("cpus:2;mem:20"));
    assert!(al.unattributed(&ag("a1")).is_empty());
    assert_eq!(al.available(&ag("a1")), r("mem:80"));
    al.check_invariants().unwrap();
}

#[test]
fn unattributed_allocation_is_claimed_on_rebuild() {
    let mut al = alloc();
    // As the registry says: 3 cpus and 512 MB are in use on a1; f1's tasks hold 2 cpus
    // and 512 MB of that, and a framework not registered (any more) holds the last cpu.
    al.add_agent(ag("a1"), r("cpus:4;mem:1024"), r("cpus:3;mem:512"));
    assert_eq!(al.unattributed(&ag("a1")), r("cpus:3;mem:512"));
    assert_eq!(al.available(&ag("a1")), r("cpus:1;mem:512"));
    al.add_framework(
        fw("f1"),
        "r".to_string(),
        [
            (ag("a1"), r("cpus:2;mem:512")),
            (ag("unknown"), r("cpus:1")),
        ],
    );
    assert_eq!(al.allocation(&fw("f1")), r("cpus:2;mem:512"));
    assert_eq!(al.unattributed(&ag("a1")), r("cpus:1"));
    assert_eq!(al.available(&ag("a1")), r("cpus:1;mem:512"));
    assert_eq!(al.dominant_share(&fw("f1")), 0.5);
    // `allocated` beyond the total is ignored.
    al.add_agent(ag("a2"), r("cpus:1"), r("cpus:5;mem:3"));
    assert_eq!(al.unattributed(&ag("a2")), r("cpus:1"));
    al.check_invariants().unwrap();
    // The unknown framework's task ends: the next rebuild finds its cpu free.
    let mut c = Cluster::default();
    c.agent("a1", "cpus:4;mem:1024")
        .framework("f1", "r")
        .hold("f1", "a1", "cpus:2;mem:512");
    c.orphaned.insert(ag("a1"), r("cpus:1"));
    assert_eq!(c.rebuild().unattributed(&ag("a1")), r("cpus:1"));
    c.orphaned.clear();
    let al = c.rebuild();
    assert!(al.unattributed(&ag("a1")).is_empty());
    assert_eq!(al.available(&ag("a1")), r("cpus:2;mem:512"));
}

#[test]
fn a_removed_framework_holds_nothing() {
    let mut c = Cluster::default();
    c.agent("a1", "cpus:4;mem:1024")
        .agent("a2", "cpus:4;mem:1024")
        .framework("f1", "r")
        .framework("f2", "r")
        .hold("f1", "a1", "cpus:1")
        .hold("f1", "a2", "cpus:2;mem:10")
        .hold("f2", "a2", "cpus:1")
        .decline_all("f1", "a1", u64::MAX);
    let before = c.rebuild();
    assert_eq!(before.role_share("r"), 4.0 / 8.0);
    // Removed from the registry (its tasks and offers with it) and from the soft state.
    c.frameworks.remove(&fw("f1"));
    c.held.retain(|(f, _), _| f != &fw("f1"));
    c.filters.retain(|(f, ..)| f != &fw("f1"));
    let al = c.rebuild();
    assert_eq!(al.available(&ag("a1")), r("cpus:4;mem:1024"));
    assert_eq!(al.available(&ag("a2")), r("cpus:3;mem:1024"));
    assert_eq!(al.allocation(&fw("f1")), r(""));
    assert_eq!(al.dominant_share(&fw("f1")), 0.0);
    assert_eq!(al.role_of(&fw("f1")), None);
    assert_eq!(al.role_share("r"), al.dominant_share(&fw("f2")));
    assert_eq!(al.role_share("r"), 1.0 / 8.0);
    // The id can come back, with a clean slate (no filter on a1).
    c.framework("f1", "r");
    let offers = c.cycle(0);
    assert_eq!(offers[0].framework_id, fw("f1"));
    assert_eq!(offers[0].agent_id, ag("a1"));
}

#[test]
fn re_adding_a_framework_replaces_it() {
    let mut c = Cluster::default();
    c.agent("a1", "cpus:4;mem:1024")
        .agent("a2", "cpus:4;mem:1024")
        .framework("f1", "r")
        .framework("f2", "r")
        .hold("f1", "a1", "cpus:1")
        .hold("f1", "a2", "cpus:2;mem:10")
        .hold("f2", "a2", "cpus:1")
        .decline_all("f1", "a1", u64::MAX);
    let mut al = c.rebuild();
    al.suppress(&fw("f1"));
    assert!(al.role_share("r") > 0.0);
    // Re-added holding nothing, in the same role: everything it held returns to its
    // agents, its filters and suppression go.
    add_fw(&mut al, "f1", "r");
    al.check_invariants().unwrap();
    assert_eq!(al.available(&ag("a1")), r("cpus:4;mem:1024"));
    assert_eq!(al.available(&ag("a2")), r("cpus:3;mem:1024"));
    assert_eq!(al.allocation(&fw("f1")), r(""));
    assert_eq!(al.dominant_share(&fw("f1")), 0.0);
    assert_eq!(al.role_share("r"), al.dominant_share(&fw("f2")));
    assert_eq!(al.role_share("r"), 1.0 / 8.0);
    assert!(!al.is_filtered(&fw("f1"), &ag("a1"), 0));
    let offers = checked(&mut al, 0);
    assert_eq!(offers[0].framework_id, fw("f1"));
    assert_eq!(offers[0].agent_id, ag("a1"));
    // Re-added in another role with other holdings.
    let mut al = c.rebuild();
    al.add_framework(fw("f1"), "s".to_string(), [(ag("a1"), r("cpus:1"))]);
    al.check_invariants().unwrap();
    assert_eq!(al.role_of(&fw("f1")), Some("s"));
    assert_eq!(al.allocation(&fw("f1")), r("cpus:1"));
    assert_eq!(al.role_share("r"), 1.0 / 8.0);
    assert_eq!(al.role_share("s"), 1.0 / 8.0);
    assert_eq!(checked(&mut al, 0).len(), 2);
}

#[test]
fn a_removed_agent_leaves_the_totals_and_the_holdings() {
    let mut c = Cluster::default();
    c.agent("a1", "cpus:4;mem:1024")
        .agent("a2", "cpus:4;mem:1024")
        .framework("f1", "r")
        .hold("f1", "a1", "cpus:4")
        .hold("f1", "a2", "cpus:1")
        .decline_all("f1", "a1", u64::MAX);
    assert_eq!(c.rebuild().dominant_share(&fw("f1")), 5.0 / 8.0);
    // Removed from the registry (its tasks with it).
    c.agents.remove(&ag("a1"));
    c.held.retain(|(_, a), _| a != &ag("a1"));
    let al = c.rebuild();
    assert_eq!(al.allocation(&fw("f1")), r("cpus:1"));
    assert_eq!(al.dominant_share(&fw("f1")), 1.0 / 4.0);
    assert_eq!(al.role_share("r"), 1.0 / 4.0);
    assert!(al.available(&ag("a1")).is_empty());
    // A filter naming it is ignored.
    assert!(!al.is_filtered(&fw("f1"), &ag("a1"), 0));
    assert_eq!(al.agent_ids().count(), 1);
}

#[test]
fn re_adding_an_agent_replaces_it() {
    let mut c = Cluster::default();
    c.agent("a1", "cpus:4;mem:1024")
        .agent("a2", "cpus:4;mem:1024")
        .framework("f1", "r")
        .hold("f1", "a1", "cpus:4")
        .hold("f1", "a2", "cpus:1")
        .decline_all("f1", "a1", u64::MAX);
    let mut al = c.rebuild();
    assert_eq!(al.dominant_share(&fw("f1")), 5.0 / 8.0);
    // Re-added with nothing held: what frameworks held there and their filters go.
    al.add_agent(ag("a1"), r("cpus:4;mem:1024"), r(""));
    al.check_invariants().unwrap();
    assert_eq!(al.allocation(&fw("f1")), r("cpus:1"));
    assert_eq!(al.dominant_share(&fw("f1")), 1.0 / 8.0);
    assert!(!al.is_filtered(&fw("f1"), &ag("a1"), 0));
    assert_eq!(
        summary(&checked(&mut al, 0)),
        [
            s3("f1", "a1", "cpus:4;mem:1024"),
            s3("f1", "a2", "cpus:3;mem:1024")
        ]
    );
    // Re-added inactive, then with another total.
    let mut al = c.rebuild();
    al.set_agent_active(&ag("a1"), false);
    al.add_agent(ag("a1"), r("cpus:8;mem:1024"), r("cpus:2"));
    al.check_invariants().unwrap();
    assert_eq!(al.total(&ag("a1")), r("cpus:8;mem:1024"));
    assert_eq!(al.unattributed(&ag("a1")), r("cpus:2"));
    assert_eq!(al.dominant_share(&fw("f1")), 1.0 / 12.0);
}

#[test]
fn lowest_dominant_share_goes_first() {
    let mut c = Cluster::default();
    c.agent("big", "cpus:10;mem:10000")
        .agent("x", "cpus:1;mem:1000")
        .framework("a", "r")
        .framework("b", "r")
        // a holds 30% of memory; b holds 20% of cpus: b's dominant share is lower.
        .hold("a", "big", "cpus:1;mem:3300")
        .hold("b", "big", "cpus:2.2;mem:100");
    let al = c.rebuild();
    assert_eq!(al.dominant_share(&fw("a")), 0.3);
    assert_eq!(al.dominant_share(&fw("b")), 0.2);
    let offers = c.cycle(0);
    assert_eq!(offers[0].framework_id, fw("b"));
    assert_eq!(offers[0].agent_id, ag("big"));
    // b now holds 0.2 + 6.8/11 of cpus; a goes next on x.
    assert_eq!(offers[1].framework_id, fw("a"));
}

#[test]
fn equal_shares_go_to_the_framework_and_role_made_fewer_offers() {
    let mut c = Cluster::default();
    c.agent("x", "cpus:2;mem:100")
        .framework("a", "ra")
        .framework("b", "rb");
    // Equal shares (0): by name "a"/"ra" would always win; counts decide first.
    let mut al = c.rebuild();
    al.set_offers_made(&fw("a"), 3);
    al.set_offers_made(&fw("b"), 2);
    let offers = checked(&mut al, 0);
    assert_eq!(offers.len(), 1);
    assert_eq!(offers[0].framework_id, fw("b"));
    // Equal counts fall back to the name.
    let mut al = c.rebuild();
    al.set_offers_made(&fw("a"), 2);
    al.set_offers_made(&fw("b"), 2);
    assert_eq!(checked(&mut al, 0)[0].framework_id, fw("a"));
    // Within one role too.
    let mut c = Cluster::default();
    c.agent("x", "cpus:2;mem:100")
        .framework("a", "r")
        .framework("b", "r");
    let mut al = c.rebuild();
    al.set_offers_made(&fw("a"), 1);
    assert_eq!(checked(&mut al, 0)[0].framework_id, fw("b"));
}

#[test]
fn lowest_role_share_goes_first_then_lowest_framework_in_it() {
    let mut c = Cluster::default();
    for i in 0..4 {
        c.agent(&format!("a{i}"), "cpus:1;mem:100");
    }
    // Role "busy" holds a lot through one framework; its other framework holds nothing,
    // yet role "idle"'s framework comes first because roles are ordered first.
    c.framework("busy-big", "busy")
        .framework("busy-small", "busy")
        .framework("idle-1", "idle")
        .hold("busy-big", "a0", "cpus:1;mem:100");
    let offers = c.cycle(0);
    assert_eq!(
        summary(&offers)
            .into_iter()
            .map(|(f, a, _)| (f, a))
            .collect::<Vec<_>>(),
        [
            ("idle-1".to_string(), "a1".to_string()),
            // busy: 1/4, idle: 1/4 (tie by role name: "busy" < "idle"); in busy, the
            // framework holding nothing goes first.
            ("busy-small".to_string(), "a2".to_string()),
            ("idle-1".to_string(), "a3".to_string()),
        ]
    );
}

#[test]
fn weights_2_to_1_give_the_heavier_role_more() {
    let mut al = alloc();
    for i in 0..9 {
        al.add_agent(ag(&format!("a{i}")), r("cpus:1;mem:100"), r(""));
    }
    add_fw(&mut al, "h", "heavy");
    add_fw(&mut al, "l", "light");
    al.set_weight("heavy", 2.0);
    assert_eq!(al.weight("heavy"), 2.0);
    assert_eq!(al.weight("light"), 1.0);
    let offers = checked(&mut al, 0);
    let heavy = offers.iter().filter(|o| o.framework_id == fw("h")).count();
    assert_eq!((heavy, offers.len() - heavy), (6, 3));
    assert_eq!(al.role_share("heavy"), 6.0 / 9.0 / 2.0);
    assert_eq!(al.role_share("light"), 3.0 / 9.0);
    // Bad weights are ignored.
    al.set_weight("heavy", 0.0);
    al.set_weight("heavy", f64::NAN);
    al.set_weight("heavy", -1.0);
    assert_eq!(al.weight("heavy"), 2.0);
}

#[test]
fn ranges_do_not_count_toward_shares() {
    let mut c = Cluster::default();
    c.agent("a1", "cpus:4;mem:1024;ports:[1-100]")
        .framework("f1", "r")
        .hold("f1", "a1", "ports:[1-100];cpus:1");
    assert_eq!(c.rebuild().dominant_share(&fw("f1")), 0.25);
}

#[test]
fn unknown_ids_are_ignored() {
    let mut al = alloc();
    al.add_agent(ag("a1"), r("cpus:1;mem:128"), r(""));
    add_fw(&mut al, "f1", "r");
    let (f, a) = (fw("nobody"), ag("nowhere"));
    al.set_agent_active(&a, false);
    al.set_framework_active(&f, false);
    al.add_framework(fw("f2"), "r".to_string(), [(a.clone(), r("cpus:1"))]);
    al.decline_resources(&f, &ag("a1"), r("cpus:1;mem:128"), 10);
    al.decline_resources(&fw("f1"), &a, r("cpus:1;mem:128"), 10);
    al.suppress(&f);
    assert_eq!(al.dominant_share(&f), 0.0);
    assert_eq!(al.allocation(&fw("f2")), r(""));
    assert_eq!(al.role_share("none"), 0.0);
    assert!(al.available(&a).is_empty());
    assert!(al.total(&a).is_empty());
    assert!(al.allocated(&a).is_empty());
    assert!(al.unattributed(&a).is_empty());
    assert!(al.allocation_on(&f, &ag("a1")).is_empty());
    assert!(!al.is_filtered(&f, &ag("a1"), 0));
    assert!(!al.is_filtered(&fw("f1"), &a, 0));
    assert_eq!(al.available(&ag("a1")), r("cpus:1;mem:128"));
    assert_eq!(al.role_of(&f), None);
    al.check_invariants().unwrap();
    assert_eq!(checked(&mut al, 0).len(), 1);
}

#[test]
fn same_registry_same_offers_and_shuffle_is_seeded() {
    let build = || {
        let mut c = Cluster::default();
        for i in 0..50 {
            c.agent(&format!("a{i:02}"), "cpus:2;mem:512");
        }
        for j in 0..7 {
            c.framework(&format!("f{j}"), &format!("r{}", j % 3));
        }
        c.rebuild()
    };
    assert_eq!(build().allocate(0), build().allocate(0));
    let one = build().allocate_shuffled(0, 42);
    assert_eq!(one, build().allocate_shuffled(0, 42));
    let other = build().allocate_shuffled(0, 43);
    assert_ne!(one, other);
    assert_ne!(one, build().allocate(0));
    // A shuffled cycle still offers every agent once.
    let mut agents: Vec<_> = one.iter().map(|o| o.agent_id.clone()).collect();
    agents.sort();
    agents.dedup();
    assert_eq!(agents.len(), 50);
}

#[test]
fn a_cycle_records_what_the_next_rebuild_reads() {
    // The allocator's own bookkeeping of a cycle's offers equals a rebuild of the registry
    // with those offers committed: the rest of a cycle sees what the next one will.
    let mut c = Cluster::default();
    c.agent("a1", "cpus:4;mem:1024;cpus(db):2;ports:[1-10]")
        .agent("a2", "cpus:2;mem:512")
        .agent("a3", "cpus:8;mem:64")
        .framework("f1", "web")
        .framework("f2", "db")
        .framework("f3", "web")
        .hold("f1", "a3", "cpus:1;mem:32")
        .decline("f3", "a2", "cpus:2;mem:512", 10);
    c.orphaned.insert(ag("a2"), r("cpus:0.5"));
    let mut al = c.rebuild();
    let offers = checked(&mut al, 0);
    assert_eq!(c.cycle(0), offers);
    let again = c.rebuild();
    for a in ["a1", "a2", "a3"] {
        assert_eq!(al.available(&ag(a)), again.available(&ag(a)));
        assert_eq!(al.unattributed(&ag(a)), again.unattributed(&ag(a)));
        for f in ["f1", "f2", "f3"] {
            assert_eq!(
                al.allocation_on(&fw(f), &ag(a)),
                again.allocation_on(&fw(f), &ag(a))
            );
        }
    }
    for f in ["f1", "f2", "f3"] {
        assert_eq!(al.dominant_share(&fw(f)), again.dominant_share(&fw(f)));
    }
}
