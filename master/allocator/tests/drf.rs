//! DRF convergence: frameworks modelled inside the test take one fixed-size task from each
//! offer and release the rest, cycle after cycle, until the cluster is full (a framework
//! that cannot fit a task on an agent releases the offer and declines that agent for good,
//! since tasks never end here and an agent's free space only shrinks). Then the dominant
//! shares must be as DRF promises.
//!
//! As in the master, each cycle rebuilds the allocator from the state the previous cycles
//! left: the tasks each framework runs on each agent, and the decline filters.

use agora_allocator::{Allocator, AllocatorConfig};
use agora_registry::{AgentId, FrameworkId, Resources};
use std::collections::BTreeMap;

fn r(s: &str) -> Resources {
    Resources::parse(s).unwrap()
}

struct Outcome {
    tasks: BTreeMap<String, usize>,
    shares: BTreeMap<String, f64>,
    role_shares: BTreeMap<String, f64>,
    /// Each agent's available resources at the end.
    room: Vec<Resources>,
    cycles: u64,
}

/// `frameworks`: (id, role, task size). Runs until a cycle makes no offer.
fn simulate(
    agents: usize,
    agent_size: &str,
    frameworks: &[(&str, &str, &str)],
    weights: &[(&str, f64)],
    shuffled: bool,
) -> Outcome {
    let agent_ids: Vec<AgentId> = (0..agents)
        .map(|i| AgentId::new(format!("a{i:02}")).unwrap())
        .collect();
    let mut task_of = BTreeMap::new();
    for (id, _, task) in frameworks {
        task_of.insert(FrameworkId::new(*id).unwrap(), r(task));
    }
    // The registry (what the tasks hold) and the soft state (filters), across cycles.
    let mut running: BTreeMap<(FrameworkId, AgentId), Resources> = BTreeMap::new();
    let mut filters: Vec<(FrameworkId, AgentId)> = Vec::new();
    // As the master's rebuild.
    let rebuild = |running: &BTreeMap<(FrameworkId, AgentId), Resources>,
                   filters: &[(FrameworkId, AgentId)]| {
        let mut al = Allocator::new(AllocatorConfig::default());
        for (role, w) in weights {
            al.set_weight(role, *w);
        }
        for a in &agent_ids {
            let mut used = Resources::new();
            for ((_, aa), held) in running {
                if aa == a {
                    used.add(held);
                }
            }
            al.add_agent(a.clone(), r(agent_size), used);
        }
        for (id, role, _) in frameworks {
            let id = FrameworkId::new(*id).unwrap();
            let holdings: Vec<(AgentId, Resources)> = running
                .iter()
                .filter(|((f, _), _)| f == &id)
                .map(|((_, a), held)| (a.clone(), held.clone()))
                .collect();
            al.add_framework(id, role.to_string(), holdings);
        }
        // Declined for good: refusing the agent's whole size refuses anything on it.
        for (f, a) in filters {
            al.decline_resources(f, a, r(agent_size), u64::MAX);
        }
        al.check_invariants().unwrap();
        al
    };
    let mut tasks: BTreeMap<String, usize> = BTreeMap::new();
    let mut now = 0;
    loop {
        let mut al = rebuild(&running, &filters);
        let offers = if shuffled {
            al.allocate_shuffled(now, now)
        } else {
            al.allocate(now)
        };
        al.check_invariants().unwrap();
        if offers.is_empty() {
            break;
        }
        for o in offers {
            let task = &task_of[&o.framework_id];
            if o.resources.contains(task) {
                // One task launched; the rest of the offer is given back.
                *tasks.entry(o.framework_id.to_string()).or_default() += 1;
                running
                    .entry((o.framework_id.clone(), o.agent_id.clone()))
                    .or_default()
                    .add(task);
            } else {
                filters.push((o.framework_id, o.agent_id));
            }
        }
        now += 1;
        assert!(now < 10_000, "no convergence");
    }
    let al = rebuild(&running, &filters);
    let shares = frameworks
        .iter()
        .map(|(id, _, _)| {
            let share = al.dominant_share(&FrameworkId::new(*id).unwrap());
            (id.to_string(), share)
        })
        .collect();
    let role_shares = frameworks
        .iter()
        .map(|(_, role, _)| (role.to_string(), al.role_share(role)))
        .collect();
    let room = al.agent_ids().map(|a| al.available(a)).collect();
    Outcome {
        tasks,
        shares,
        role_shares,
        room,
        cycles: now,
    }
}

/// 8 agents of (1 cpu, 1024 MB). The cpu-heavy framework's task is (0.25 cpu, 64 MB): a
/// cpu share of 1/32 per task; the mem-heavy one's is (0.0625 cpu, 256 MB): a mem share of
/// 1/32 per task. Equal weights: final dominant shares within one task's share (1/32).
#[test]
fn two_frameworks_with_different_dominant_resources_converge_to_equal_shares() {
    // In two roles of weight 1 (role level decides), and both in one role (framework level
    // decides); agents visited in id order and shuffled.
    for (role_a, role_b) in [("batch", "cache"), ("shared", "shared")] {
        for shuffled in [false, true] {
            let out = simulate(
                8,
                "cpus:1;mem:1024",
                &[
                    ("cpu-heavy", role_a, "cpus:0.25;mem:64"),
                    ("mem-heavy", role_b, "cpus:0.0625;mem:256"),
                ],
                &[],
                shuffled,
            );
            check_equal_shares(&out, role_a == role_b, shuffled);
        }
    }
}

fn check_equal_shares(out: &Outcome, one_role: bool, shuffled: bool) {
    let (a, b) = (out.shares["cpu-heavy"], out.shares["mem-heavy"]);
    eprintln!(
        "one_role={one_role} shuffled={shuffled}: tasks {:?}, shares {a:.4} / {b:.4} after {} cycles",
        out.tasks, out.cycles
    );
    assert!((a - b).abs() <= 1.0 / 32.0 + 1e-9, "{a} vs {b}");
    // The cluster is really in use, not trivially fair at zero.
    assert!(a >= 0.5 && b >= 0.5, "{a} {b}");
    // Dominant shares are what the task counts say.
    assert_eq!(a, out.tasks["cpu-heavy"] as f64 / 32.0);
    assert_eq!(b, out.tasks["mem-heavy"] as f64 / 32.0);
}

/// Three frameworks in one role with different task shapes, 16 agents of (4 cpus, 4096 MB).
/// Progressive filling: shares grow equally until a framework cannot place any more
/// tasks; the others go on. So at the end a framework may be more than one task's share
/// below another only if its task fits on no agent.
#[test]
fn frameworks_within_a_role_fill_progressively() {
    let fws = [
        ("f1", "web", "cpus:0.5;mem:256"),
        ("f2", "web", "cpus:0.25;mem:512"),
        ("f3", "web", "cpus:1;mem:128"),
    ];
    // Each task's dominant share of the 64 cpus / 65536 MB cluster.
    let step = [1.0 / 128.0, 1.0 / 128.0, 1.0 / 64.0];
    for shuffled in [false, true] {
        let out = simulate(16, "cpus:4;mem:4096", &fws, &[], shuffled);
        eprintln!(
            "shuffled={shuffled}: tasks {:?}, shares {:?}",
            out.tasks, out.shares
        );
        let fits_somewhere = |task: &str| out.room.iter().any(|free| free.contains(&r(task)));
        for (fi, _, ti) in &fws {
            for (j, (fj, _, _)) in fws.iter().enumerate() {
                if out.shares[*fi] + step[j] + 1e-9 < out.shares[*fj] {
                    assert!(
                        !fits_somewhere(ti),
                        "{fi} ({}) is behind {fj} ({}) though it could still run a task",
                        out.shares[*fi],
                        out.shares[*fj]
                    );
                }
            }
            // Nobody could still run a task: the cluster is full for everyone.
            assert!(!fits_somewhere(ti), "{fi} could still run a task");
            assert!(out.shares[*fi] > 0.3, "{fi} starved: {:?}", out.shares);
        }
    }
}

/// Roles weighted 2:1, one framework each, identical tasks (0.125 cpu, 128 MB: a share of
/// 1/64 per task on 8 agents of (1 cpu, 1024 MB)). The heavier role ends with twice the
/// share. Tolerance: the weighted shares (share / weight) differ by at most one task's
/// weighted share, 1/64, which on these 64 task slots puts the ratio of the role shares
/// within 2 ± 0.15.
#[test]
fn weights_2_to_1_converge_to_a_share_ratio_of_2() {
    for shuffled in [false, true] {
        let out = simulate(
            8,
            "cpus:1;mem:1024",
            &[
                ("h", "heavy", "cpus:0.125;mem:128"),
                ("l", "light", "cpus:0.125;mem:128"),
            ],
            &[("heavy", 2.0)],
            shuffled,
        );
        let (h, l) = (out.shares["h"], out.shares["l"]);
        let ratio = h / l;
        eprintln!(
            "shuffled={shuffled}: tasks {:?}, shares {h:.4} / {l:.4}, ratio {ratio:.3}",
            out.tasks
        );
        assert_eq!(out.tasks["h"] + out.tasks["l"], 64, "the cluster is full");
        assert!((h / 2.0 - l).abs() <= 1.0 / 64.0 + 1e-9, "{h} vs {l}");
        assert!((ratio - 2.0).abs() <= 0.15, "ratio {ratio}");
        assert_eq!(out.role_shares["heavy"], h / 2.0);
        assert_eq!(out.role_shares["light"], l);
    }
}
