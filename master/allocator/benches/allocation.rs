//! One full allocation cycle at cluster scale.
//!
//! Setup: agents of `cpus:32;mem:262144;disk:1000000`; frameworks spread over 10 roles
//! (one weighted 2); every 4th framework already holds a slice of 5 agents, every 10th
//! has declined 3 agents, every 50th is suppressed. Each iteration runs `allocate` on a
//! fresh clone of that state (cloning and dropping the state are not timed), so every
//! iteration is a full cycle that offers every agent.
//!
//! Run: `cargo bench -p agora-allocator` (target: under 20 ms at 10,000 x 1,000).

use agora_allocator::{Allocator, AllocatorConfig};
use agora_registry::{AgentId, FrameworkId, Resources};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use std::time::Duration;

fn cluster(agents: usize, frameworks: usize) -> Allocator {
    let mut al = Allocator::new(AllocatorConfig::default());
    let total = Resources::parse("cpus:32;mem:262144;disk:1000000").unwrap();
    let slice = Resources::parse("cpus:4;mem:16384;disk:10000").unwrap();
    let agent = |i: usize| AgentId::new(format!("agent-{i:06}")).unwrap();
    for i in 0..agents {
        al.add_agent(agent(i), total.clone(), Resources::new());
    }
    for j in 0..frameworks {
        let id = FrameworkId::new(format!("framework-{j:05}")).unwrap();
        let holdings: Vec<(AgentId, Resources)> = if j % 4 == 0 {
            (0..5)
                .map(|k| (agent((j * 7919 + k * 104_729) % agents), slice.clone()))
                .collect()
        } else {
            Vec::new()
        };
        al.add_framework(id.clone(), format!("role-{}", j % 10), holdings);
        if j % 10 == 3 {
            for k in 0..3 {
                // Refusing the agent's total refuses anything on it.
                al.decline_resources(&id, &agent((j * 31 + k) % agents), total.clone(), u64::MAX);
            }
        }
        if j % 50 == 7 {
            al.suppress(&id);
        }
    }
    al.set_weight("role-0", 2.0);
    al
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("allocate");
    group.sample_size(10).warm_up_time(Duration::from_secs(1));
    for (agents, frameworks, secs) in [(10_000, 1_000, 5), (50_000, 6_000, 10)] {
        group.measurement_time(Duration::from_secs(secs));
        let base = cluster(agents, frameworks);
        // Every agent has room, so a cycle offers each of them once.
        assert_eq!(base.clone().allocate(1).len(), agents);
        group.bench_function(format!("{agents}_agents_x_{frameworks}_frameworks"), |b| {
            b.iter_batched_ref(|| base.clone(), |al| al.allocate(1), BatchSize::LargeInput)
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
