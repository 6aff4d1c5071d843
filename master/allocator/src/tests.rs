//! Unit tests of the allocator's rules, one rule per test.

use crate::{Allocator, AllocatorConfig, OfferProposal};
use agora_registry::{AgentId, FrameworkId, Resources};

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
    // Nothing is left to offer: the next cycle is empty.
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
    let mut al = alloc();
    al.add_agent(ag("a1"), r("cpus:2;mem:512;cpus(db):3;mem(db):256"), r(""));
    add_fw(&mut al, "web1", "web");
    let offers = checked(&mut al, 0);
    assert_eq!(summary(&offers), [s3("web1", "a1", "cpus:2;mem:512")]);
    assert_eq!(al.available(&ag("a1")), r("cpus(db):3;mem(db):256"));
    // A db framework arriving later gets the reservation, and only that.
    add_fw(&mut al, "db1", "db");
    let offers = checked(&mut al, 1);
    assert_eq!(
        summary(&offers),
        [s3("db1", "a1", "cpus(db):3;mem(db):256")]
    );
}

#[test]
fn reservation_left_after_an_offer_goes_to_its_role_in_the_same_cycle() {
    let mut al = alloc();
    al.add_agent(ag("a1"), r("cpus:2;mem:512;cpus(db):3"), r(""));
    add_fw(&mut al, "web1", "web");
    add_fw(&mut al, "db1", "db");
    // Make db's share higher than web's so web goes first on the agent.
    al.add_agent(ag("a0"), r("cpus:1;mem:64"), r(""));
    al.allocate_to(&fw("db1"), &ag("a0"), &r("cpus:1;mem:64"));
    let offers = checked(&mut al, 0);
    assert_eq!(
        summary(&offers),
        [
            s3("web1", "a1", "cpus:2;mem:512"),
            s3("db1", "a1", "cpus(db):3")
        ]
    );
}

#[test]
fn allocate_to_never_takes_another_roles_reservation() {
    let mut al = alloc();
    al.add_agent(ag("a1"), r("cpus:2;cpus(db):3"), r(""));
    add_fw(&mut al, "web1", "web");
    al.allocate_to(&fw("web1"), &ag("a1"), &r("cpus:1;cpus(db):3"));
    assert_eq!(al.allocation_on(&fw("web1"), &ag("a1")), r("cpus:1"));
    assert_eq!(al.available(&ag("a1")), r("cpus:1;cpus(db):3"));
    al.check_invariants().unwrap();
}

#[test]
fn suppressed_inactive_and_filtered_frameworks_get_nothing() {
    let mut al = alloc();
    al.add_agent(ag("a1"), r("cpus:1;mem:128"), r(""));
    for f in ["f1", "f2", "f3"] {
        add_fw(&mut al, f, "r");
    }
    al.suppress(&fw("f1"));
    al.set_framework_active(&fw("f2"), false);
    al.decline(&fw("f3"), &ag("a1"), 1_000);
    assert!(checked(&mut al, 0).is_empty());
    assert!(checked(&mut al, 999).is_empty());

    // Each one on its own is enough: lift the other two and it gets the offer.
    al.set_framework_active(&fw("f2"), true);
    assert_eq!(
        summary(&checked(&mut al, 999)),
        [s3("f2", "a1", "cpus:1;mem:128")]
    );
}

#[test]
fn inactive_agents_are_not_offered_and_leave_the_totals() {
    let mut al = alloc();
    al.add_agent(ag("a1"), r("cpus:1;mem:128"), r(""));
    al.add_agent(ag("a2"), r("cpus:1;mem:128"), r(""));
    add_fw(&mut al, "f1", "r");
    al.allocate_to(&fw("f1"), &ag("a2"), &r("cpus:1"));
    assert_eq!(al.dominant_share(&fw("f1")), 0.5);
    al.set_agent_active(&ag("a1"), false);
    al.check_invariants().unwrap();
    // a2 is the only active agent, and f1 holds all its cpus.
    assert_eq!(al.dominant_share(&fw("f1")), 1.0);
    assert_eq!(summary(&checked(&mut al, 0)), [s3("f1", "a2", "mem:128")]);
    al.set_agent_active(&ag("a2"), false);
    assert_eq!(al.dominant_share(&fw("f1")), 0.0);
    al.set_agent_active(&ag("a1"), true);
    assert_eq!(
        summary(&checked(&mut al, 1)),
        [s3("f1", "a1", "cpus:1;mem:128")]
    );
}

#[test]
fn filters_expire_at_refuse_until() {
    let mut al = alloc();
    al.add_agent(ag("a1"), r("cpus:1;mem:128"), r(""));
    add_fw(&mut al, "f1", "r");
    let offers = checked(&mut al, 0);
    assert_eq!(offers.len(), 1);
    // Declined for 5 s from t=1000: release the offer and filter the agent.
    al.release(&fw("f1"), &ag("a1"), &offers[0].resources);
    al.decline(&fw("f1"), &ag("a1"), 6_000);
    assert!(al.is_filtered(&fw("f1"), &ag("a1"), 5_999));
    assert!(checked(&mut al, 1_000).is_empty());
    assert!(checked(&mut al, 5_999).is_empty());
    assert!(!al.is_filtered(&fw("f1"), &ag("a1"), 6_000));
    assert_eq!(
        summary(&checked(&mut al, 6_000)),
        [s3("f1", "a1", "cpus:1;mem:128")]
    );
}

#[test]
fn a_filter_only_covers_its_agent_and_framework() {
    let mut al = alloc();
    al.add_agent(ag("a1"), r("cpus:1;mem:128"), r(""));
    al.add_agent(ag("a2"), r("cpus:1;mem:128"), r(""));
    add_fw(&mut al, "f1", "r");
    add_fw(&mut al, "f2", "r");
    al.decline(&fw("f1"), &ag("a1"), 10_000);
    // f1 (lowest id, share 0) would get a1 first: it is filtered there, so f2 gets a1,
    // then f1 (now the lower share) gets a2.
    assert_eq!(
        summary(&checked(&mut al, 0)),
        [
            s3("f2", "a1", "cpus:1;mem:128"),
            s3("f1", "a2", "cpus:1;mem:128")
        ]
    );
}

#[test]
fn a_longer_filter_wins() {
    let mut al = alloc();
    al.add_agent(ag("a1"), r("cpus:1;mem:128"), r(""));
    add_fw(&mut al, "f1", "r");
    al.decline(&fw("f1"), &ag("a1"), 10_000);
    al.decline(&fw("f1"), &ag("a1"), 2_000);
    assert!(checked(&mut al, 5_000).is_empty());
    assert_eq!(checked(&mut al, 10_000).len(), 1);
}

#[test]
fn a_resource_filter_refuses_only_what_it_holds() {
    let mut al = alloc();
    al.add_agent(ag("a1"), r("cpus:4;mem:1024"), r(""));
    add_fw(&mut al, "f1", "r");
    add_fw(&mut al, "f2", "r");
    // f1 used 4 cpus and 1000 mem of an offer and declined the rest for 5 s.
    al.allocate_to(&fw("f1"), &ag("a1"), &r("cpus:4;mem:900"));
    al.decline_resources(&fw("f1"), &ag("a1"), r("mem:124"), 5_000);
    // The rest goes to f2 (it has the lower share anyway) ...
    assert_eq!(summary(&checked(&mut al, 0)), [s3("f2", "a1", "mem:124")]);
    al.release(&fw("f2"), &ag("a1"), &r("mem:124"));
    al.decline(&fw("f2"), &ag("a1"), 5_000);
    // ... and with both filtered, the same rest goes to nobody.
    assert!(checked(&mut al, 1_000).is_empty());
    // A cpu f1 frees is more than f1 refused: offered to f1 (the only one not refusing
    // it: f2 refused everything here).
    al.release(&fw("f1"), &ag("a1"), &r("cpus:1;mem:100"));
    assert_eq!(
        summary(&checked(&mut al, 2_000)),
        [s3("f1", "a1", "cpus:1;mem:224")]
    );
    assert!(al.is_filtered(&fw("f1"), &ag("a1"), 2_000));
    assert!(!al.is_filtered(&fw("f1"), &ag("a1"), 5_000));
}

#[test]
fn revive_clears_filters_and_unsuppresses() {
    let mut al = alloc();
    al.add_agent(ag("a1"), r("cpus:1;mem:128"), r(""));
    al.add_agent(ag("a2"), r("cpus:1;mem:128"), r(""));
    add_fw(&mut al, "f1", "r");
    al.decline(&fw("f1"), &ag("a1"), u64::MAX);
    al.decline(&fw("f1"), &ag("a2"), u64::MAX);
    al.suppress(&fw("f1"));
    assert!(checked(&mut al, 0).is_empty());
    al.revive(&fw("f1"));
    assert!(!al.is_filtered(&fw("f1"), &ag("a1"), 0));
    assert_eq!(checked(&mut al, 1).len(), 2);
}

#[test]
fn below_the_minimum_is_not_offered() {
    let mut al = alloc();
    al.add_agent(ag("tiny"), r("cpus:0.005;mem:10;disk:100"), r(""));
    add_fw(&mut al, "f1", "r");
    assert!(checked(&mut al, 0).is_empty());
    // Either minimum is enough: 0.01 cpus, or 32 MB.
    al.add_agent(ag("cpu-only"), r("cpus:0.01;mem:1"), r(""));
    al.add_agent(ag("mem-only"), r("cpus:0.001;mem:32"), r(""));
    let offers = checked(&mut al, 1);
    assert_eq!(
        summary(&offers),
        [
            s3("f1", "cpu-only", "cpus:0.01;mem:1"),
            s3("f1", "mem-only", "cpus:0.001;mem:32")
        ]
    );
    // What is left after a release below the minimum is not offered either.
    let mut al = alloc();
    al.add_agent(ag("a1"), r("cpus:1;mem:1024"), r(""));
    add_fw(&mut al, "f1", "r");
    checked(&mut al, 0);
    al.release(&fw("f1"), &ag("a1"), &r("cpus:0.005;mem:10"));
    assert_eq!(al.available(&ag("a1")), r("cpus:0.005;mem:10"));
    assert!(checked(&mut al, 1).is_empty());
    // Reserved resources count only for their role.
    let mut al = alloc();
    al.add_agent(ag("a1"), r("cpus:0.005;mem:10;cpus(db):1"), r(""));
    add_fw(&mut al, "web1", "web");
    assert!(checked(&mut al, 0).is_empty());
}

#[test]
fn custom_minimums_apply() {
    let mut al = Allocator::new(AllocatorConfig {
        min_allocatable_cpus: 1.0,
        min_allocatable_mem_mb: 1024.0,
    });
    al.add_agent(ag("a1"), r("cpus:0.5;mem:512"), r(""));
    add_fw(&mut al, "f1", "r");
    assert!(checked(&mut al, 0).is_empty());
}

#[test]
fn released_resources_are_offered_again() {
    let mut al = alloc();
    al.add_agent(ag("a1"), r("cpus:4;mem:1024"), r(""));
    add_fw(&mut al, "f1", "r");
    let offers = checked(&mut al, 0);
    assert_eq!(offers.len(), 1);
    // The framework launches a 1-cpu, 256 MB task and gives back the rest.
    al.release(&fw("f1"), &ag("a1"), &r("cpus:3;mem:768"));
    assert_eq!(al.allocation(&fw("f1")), r("cpus:1;mem:256"));
    assert_eq!(al.available(&ag("a1")), r("cpus:3;mem:768"));
    assert_eq!(
        summary(&checked(&mut al, 1)),
        [s3("f1", "a1", "cpus:3;mem:768")]
    );
    // The task ends: its resources come back too.
    al.release(&fw("f1"), &ag("a1"), &r("cpus:1;mem:256"));
    assert_eq!(
        summary(&checked(&mut al, 2)),
        [s3("f1", "a1", "cpus:1;mem:256")]
    );
}

#[test]
fn release_never_goes_negative() {
    let mut al = alloc();
    al.add_agent(ag("a1"), r("cpus:4;mem:1024;ports:[1-10]"), r(""));
    add_fw(&mut al, "f1", "r");
    add_fw(&mut al, "f2", "r");
    al.allocate_to(&fw("f1"), &ag("a1"), &r("cpus:1;ports:[1-5]"));
    // Releasing more than held releases what is held, and nothing of anyone else's.
    al.release(&fw("f1"), &ag("a1"), &r("cpus:3;mem:100;ports:[4-8]"));
    assert_eq!(al.allocation(&fw("f1")), r("ports:[1-3]"));
    assert_eq!(al.available(&ag("a1")), r("cpus:4;mem:1024;ports:[4-10]"));
    al.release(&fw("f2"), &ag("a1"), &r("cpus:4"));
    assert_eq!(al.available(&ag("a1")), r("cpus:4;mem:1024;ports:[4-10]"));
    al.check_invariants().unwrap();
}

#[test]
fn allocate_to_is_clamped_to_what_is_free() {
    let mut al = alloc();
    al.add_agent(ag("a1"), r("cpus:2;mem:100"), r(""));
    add_fw(&mut al, "f1", "r");
    add_fw(&mut al, "f2", "r");
    al.allocate_to(&fw("f1"), &ag("a1"), &r("cpus:1.5"));
    al.allocate_to(&fw("f2"), &ag("a1"), &r("cpus:1;mem:200"));
    assert_eq!(al.allocation(&fw("f2")), r("cpus:0.5;mem:100"));
    assert!(al.available(&ag("a1")).is_empty());
    al.check_invariants().unwrap();
}

#[test]
fn unattributed_allocation_is_claimed_on_rebuild() {
    let mut al = alloc();
    // As after a failover: the registry says 3 cpus are in use on a1, by f1's tasks.
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
    // A task of a framework that is not (yet) known ends: its unattributed part is freed.
    al.release(&fw("gone"), &ag("a1"), &r("cpus:1"));
    assert!(al.unattributed(&ag("a1")).is_empty());
    assert_eq!(al.available(&ag("a1")), r("cpus:2;mem:512"));
    // `allocated` beyond the total is ignored.
    al.add_agent(ag("a2"), r("cpus:1"), r("cpus:5;mem:3"));
    assert_eq!(al.unattributed(&ag("a2")), r("cpus:1"));
    al.check_invariants().unwrap();
}

#[test]
fn remove_framework_returns_its_resources() {
    let mut al = alloc();
    al.add_agent(ag("a1"), r("cpus:4;mem:1024"), r(""));
    al.add_agent(ag("a2"), r("cpus:4;mem:1024"), r(""));
    add_fw(&mut al, "f1", "r");
    add_fw(&mut al, "f2", "r");
    al.allocate_to(&fw("f1"), &ag("a1"), &r("cpus:1"));
    al.allocate_to(&fw("f1"), &ag("a2"), &r("cpus:2;mem:10"));
    al.allocate_to(&fw("f2"), &ag("a2"), &r("cpus:1"));
    al.decline(&fw("f1"), &ag("a1"), u64::MAX);
    assert!(al.role_share("r") > 0.0);
    al.remove_framework(&fw("f1"));
    al.check_invariants().unwrap();
    assert_eq!(al.available(&ag("a1")), r("cpus:4;mem:1024"));
    assert_eq!(al.available(&ag("a2")), r("cpus:3;mem:1024"));
    assert_eq!(al.allocation(&fw("f1")), r(""));
    assert_eq!(al.dominant_share(&fw("f1")), 0.0);
    assert_eq!(al.role_share("r"), al.dominant_share(&fw("f2")));
    assert_eq!(al.role_share("r"), 1.0 / 8.0);
    // The id can come back, with a clean slate (no filter on a1).
    add_fw(&mut al, "f1", "r");
    let offers = checked(&mut al, 0);
    assert_eq!(offers[0].framework_id, fw("f1"));
    assert_eq!(offers[0].agent_id, ag("a1"));
}

#[test]
fn remove_agent_drops_its_allocations() {
    let mut al = alloc();
    al.add_agent(ag("a1"), r("cpus:4;mem:1024"), r(""));
    al.add_agent(ag("a2"), r("cpus:4;mem:1024"), r(""));
    add_fw(&mut al, "f1", "r");
    al.allocate_to(&fw("f1"), &ag("a1"), &r("cpus:4"));
    al.allocate_to(&fw("f1"), &ag("a2"), &r("cpus:1"));
    al.decline(&fw("f1"), &ag("a1"), u64::MAX);
    assert_eq!(al.dominant_share(&fw("f1")), 5.0 / 8.0);
    al.remove_agent(&ag("a1"));
    al.check_invariants().unwrap();
    assert_eq!(al.allocation(&fw("f1")), r("cpus:1"));
    assert_eq!(al.dominant_share(&fw("f1")), 1.0 / 4.0);
    assert_eq!(al.role_share("r"), 1.0 / 4.0);
    assert!(al.available(&ag("a1")).is_empty());
    // Releasing on a removed agent is a no-op, and re-adding it starts clean.
    al.release(&fw("f1"), &ag("a1"), &r("cpus:4"));
    al.add_agent(ag("a1"), r("cpus:4;mem:1024"), r(""));
    assert!(!al.is_filtered(&fw("f1"), &ag("a1"), 0));
    al.check_invariants().unwrap();
    assert_eq!(
        summary(&checked(&mut al, 0)),
        [
            s3("f1", "a1", "cpus:4;mem:1024"),
            s3("f1", "a2", "cpus:3;mem:1024")
        ]
    );
}

#[test]
fn lowest_dominant_share_goes_first() {
    let mut al = alloc();
    al.add_agent(ag("big"), r("cpus:10;mem:10000"), r(""));
    al.add_agent(ag("x"), r("cpus:1;mem:1000"), r(""));
    add_fw(&mut al, "a", "r");
    add_fw(&mut al, "b", "r");
    // a holds 30% of memory; b holds 20% of cpus: b's dominant share is lower.
    al.allocate_to(&fw("a"), &ag("big"), &r("cpus:1;mem:3300"));
    al.allocate_to(&fw("b"), &ag("big"), &r("cpus:2.2;mem:100"));
    assert_eq!(al.dominant_share(&fw("a")), 0.3);
    assert_eq!(al.dominant_share(&fw("b")), 0.2);
    let offers = checked(&mut al, 0);
    assert_eq!(offers[0].framework_id, fw("b"));
    assert_eq!(offers[0].agent_id, ag("big"));
    // b now holds 0.2 + 6.8/11 of cpus; a goes next on x.
    assert_eq!(offers[1].framework_id, fw("a"));
}

#[test]
fn lowest_role_share_goes_first_then_lowest_framework_in_it() {
    let mut al = alloc();
    for i in 0..4 {
        al.add_agent(ag(&format!("a{i}")), r("cpus:1;mem:100"), r(""));
    }
    // Role "busy" holds a lot through one framework; its other framework holds nothing,
    // yet role "idle"'s framework comes first because roles are ordered first.
    add_fw(&mut al, "busy-big", "busy");
    add_fw(&mut al, "busy-small", "busy");
    add_fw(&mut al, "idle-1", "idle");
    al.allocate_to(&fw("busy-big"), &ag("a0"), &r("cpus:1;mem:100"));
    let offers = checked(&mut al, 0);
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
    let mut al = alloc();
    al.add_agent(ag("a1"), r("cpus:4;mem:1024;ports:[1-100]"), r(""));
    add_fw(&mut al, "f1", "r");
    al.allocate_to(&fw("f1"), &ag("a1"), &r("ports:[1-100];cpus:1"));
    assert_eq!(al.dominant_share(&fw("f1")), 0.25);
}

#[test]
fn unknown_ids_are_ignored() {
    let mut al = alloc();
    al.add_agent(ag("a1"), r("cpus:1;mem:128"), r(""));
    let (f, a) = (fw("nobody"), ag("nowhere"));
    al.remove_agent(&a);
    al.set_agent_active(&a, false);
    al.remove_framework(&f);
    al.set_framework_active(&f, false);
    al.allocate_to(&f, &ag("a1"), &r("cpus:1"));
    al.release(&f, &a, &r("cpus:1"));
    al.decline(&f, &ag("a1"), 10);
    al.suppress(&f);
    al.revive(&f);
    assert_eq!(al.dominant_share(&f), 0.0);
    assert_eq!(al.role_share("none"), 0.0);
    assert!(al.available(&a).is_empty());
    assert_eq!(al.available(&ag("a1")), r("cpus:1;mem:128"));
    assert_eq!(al.role_of(&f), None);
    al.check_invariants().unwrap();
}

#[test]
fn re_adding_a_framework_replaces_it() {
    let mut al = alloc();
    al.add_agent(ag("a1"), r("cpus:4;mem:1024"), r(""));
    add_fw(&mut al, "f1", "r");
    al.allocate_to(&fw("f1"), &ag("a1"), &r("cpus:4"));
    al.suppress(&fw("f1"));
    al.add_framework(fw("f1"), "s".to_string(), [(ag("a1"), r("cpus:1"))]);
    assert_eq!(al.role_of(&fw("f1")), Some("s"));
    assert_eq!(al.allocation(&fw("f1")), r("cpus:1"));
    assert_eq!(al.role_share("r"), 0.0);
    assert_eq!(al.role_share("s"), 0.25);
    assert_eq!(checked(&mut al, 0).len(), 1);
}

#[test]
fn same_events_same_offers_and_shuffle_is_seeded() {
    let build = || {
        let mut al = alloc();
        for i in 0..50 {
            al.add_agent(ag(&format!("a{i:02}")), r("cpus:2;mem:512"), r(""));
        }
        for j in 0..7 {
            add_fw(&mut al, &format!("f{j}"), &format!("r{}", j % 3));
        }
        al
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
