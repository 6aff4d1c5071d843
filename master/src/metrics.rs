//! Prometheus metrics an operator graphs: Raft role, term and log progress, registry sizes,
//! command outcomes and commit latency.

use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts, Registry};

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub commands: IntCounterVec,
    /// Status updates from agents, by what became of them.
    pub status_updates: IntCounterVec,
    pub write_seconds: Histogram,
    pub batch_size: Histogram,
    pub agent_sessions: IntGauge,
    /// Open `Master.WatchLeader` streams on this replica.
    pub leader_watchers: IntGauge,
    pub tasks_launched: prometheus::IntCounter,
    pub offers_made: prometheus::IntCounter,
    /// Offers withdrawn because their framework's stream could not take them.
    pub offers_undelivered: prometheus::IntCounter,
    pub allocation_seconds: Histogram,
    pub launch_to_running: Histogram,
    pub term: IntGauge,
    pub is_leader: IntGauge,
    pub last_log_index: IntGauge,
    pub last_applied: IntGauge,
    pub agents: IntGauge,
    pub frameworks: IntGauge,
    pub live_tasks: IntGauge,
    pub tasks_kept: IntGauge,
    /// Time to render `/state` (on the blocking pool, never on the runtime).
    pub state_render_seconds: Histogram,
    /// `/state` requests answered from a render shared with others.
    pub state_shared: prometheus::IntCounter,
    pub snapshot_builds: IntGauge,
    pub snapshot_build_seconds: prometheus::Gauge,
    pub snapshot_bytes: IntGauge,
    pub snapshot_tasks: IntGauge,
    /// The heap: bytes in use, and bytes taken from the system (read when scraped).
    pub heap_in_use: IntGauge,
    pub heap_held: IntGauge,
    /// This replica's snapshot builds (set once its store is open).
    pub snapshot_stats: Option<std::sync::Arc<agora_raft_store::SnapshotStats>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
                .expect("valid metric");
            registry
                .register(Box::new(h.clone()))
                .expect("unique metric");
            h
        };
        let commands = IntCounterVec::new(
            Opts::new(
                "agora_registry_commands_total",
                "Registry commands proposed, by kind and outcome",
            ),
            &["kind", "outcome"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(commands.clone()))
            .expect("unique metric");
        let status_updates = IntCounterVec::new(
            Opts::new(
                "agora_status_updates_total",
                "Status updates from agents: recorded (a log entry), known (recorded already, \
                 passed on without one), resent (the same update again within a second, not \
                 passed on twice)",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(status_updates.clone()))
            .expect("unique metric");
        let write_seconds = histogram(
            "agora_raft_commit_seconds",
            "Time from proposing a log entry to its commit and apply",
            vec![
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ],
        );
        let batch_size = histogram(
            "agora_raft_batch_commands",
            "Commands per proposed log entry",
            vec![
                1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
            ],
        );
        let counter = |name: &str, help: &str| {
            let c = prometheus::IntCounter::new(name, help).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let allocation_seconds = histogram(
            "agora_allocation_cycle_seconds",
            "Time of one allocation cycle (rebuild and allocate)",
            vec![
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0,
            ],
        );
        let launch_to_running = histogram(
            "agora_task_launch_to_running_seconds",
            "From committing a task's launch to committing its TASK_RUNNING",
            vec![
                0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5,
            ],
        );
        let state_render_seconds = histogram(
            "agora_state_render_seconds",
            "Time to render one /state document (shared by the requests waiting for it)",
            vec![
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0, 2.5,
            ],
        );
        let snapshot_build_seconds = prometheus::Gauge::new(
            "agora_snapshot_build_seconds_total",
            "Time spent building Raft snapshots (copy and serialize, off the runtime)",
        )
        .expect("valid metric");
        registry
            .register(Box::new(snapshot_build_seconds.clone()))
            .expect("unique metric");
        Metrics {
            state_render_seconds,
            state_shared: counter(
                "agora_state_shared_total",
                "/state requests answered by a render another request also got",
            ),
            snapshot_builds: gauge(
                "agora_snapshot_builds_total",
                "Raft snapshots built by this replica since it started",
            ),
            snapshot_build_seconds,
            snapshot_bytes: gauge(
                "agora_snapshot_bytes",
                "Size of the state in the last snapshot this replica built",
            ),
            snapshot_tasks: gauge(
                "agora_snapshot_tasks",
                "Tasks in the last snapshot this replica built (finished ones kept included)",
            ),
            snapshot_stats: None,
            heap_in_use: gauge(
                "agora_heap_in_use_bytes",
                "Heap memory in use by this replica (glibc mallinfo2)",
            ),
            heap_held: gauge(
                "agora_heap_held_bytes",
                "Heap memory this replica holds from the system, in use or free (glibc mallinfo2)",
            ),
            tasks_kept: gauge(
                "agora_registry_tasks",
                "Tasks in the registry, finished ones kept for history included",
            ),
            launch_to_running,
            tasks_launched: counter(
                "agora_tasks_launched_total",
                "Tasks launched (accepted and committed)",
            ),
            offers_made: counter("agora_offers_total", "Offers made by the allocator"),
            offers_undelivered: counter(
                "agora_offers_undelivered_total",
                "Offers withdrawn at once because their framework's stream was full or gone",
            ),
            allocation_seconds,
            commands,
            status_updates,
            write_seconds,
            batch_size,
            agent_sessions: gauge(
                "agora_agent_sessions",
                "Agents with a live session to this replica",
            ),
            leader_watchers: gauge(
                "agora_leader_watchers",
                "Open WatchLeader streams on this replica (agents and frameworks watching for a new leader)",
            ),
            term: gauge("agora_raft_term", "Current Raft term of this replica"),
            is_leader: gauge("agora_raft_is_leader", "1 if this replica is the leader"),
            last_log_index: gauge(
                "agora_raft_last_log_index",
                "Last log index on this replica",
            ),
            last_applied: gauge(
                "agora_raft_last_applied_index",
                "Last applied log index on this replica",
            ),
            agents: gauge("agora_registry_agents", "Registered agents"),
            frameworks: gauge("agora_registry_frameworks", "Registered frameworks"),
            live_tasks: gauge("agora_registry_live_tasks", "Tasks not in a terminal state"),
            registry,
        }
    }
}

impl Metrics {
    /// The Prometheus text exposition of every metric, as it stands.
    pub fn encode(&self) -> String {
        use prometheus::Encoder;
        let heap = crate::memory::heap_usage();
        self.heap_in_use.set(heap.in_use as i64);
        self.heap_held.set(heap.held as i64);
        let mut buf = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding never fails");
        String::from_utf8(buf).expect("prometheus text is UTF-8")
    }
}
