//! Many simulated agents in one process (as the Mesos paper emulated 50,000), for load
//! tests of the master: each registers (committed in the registry), holds a session with
//! the leader, answers its health checks, and follows failovers. A task launched on one
//! ends at once: it reports TASK_STARTING, TASK_RUNNING and TASK_FINISHED in order, all
//! three sent at once (pipelined, as a real agent sends a task's updates), each carrying
//! TASK_FINISHED as its latest state (as a real agent reports a task that exits at once),
//! so the control plane's task throughput can be measured without the cost of processes.
//!
//! Registration, the session and leader following are the real agent's
//! ([`master_link::follow_leader`]); a simulated agent only says what it does with a launch
//! and an acknowledgement. It reports no tasks when it registers again: its tasks ended.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use agora_driver::{MasterClient, RetryPolicy};
use agora_proto::v1 as pb;
use agora_registry::{Resources, TaskState};
use rand::Rng;
use tokio::sync::{mpsc, watch};

use crate::checkpoint::Update;
use crate::clock;
use crate::config::Registration;
use crate::master_link::{self, AgentSide, Backoff, LinkError};
use crate::tasks::all_msgs;

/// Simulated agents per HTTP/2 connection.
const AGENTS_PER_CONNECTION: usize = 100;

/// Between a simulated agent's attempts to find the leader.
const BACKOFF: Backoff = Backoff::Uniform {
    min: Duration::from_millis(100),
    max: Duration::from_millis(1000),
};

/// Counts of the simulation, for reports.
#[derive(Default)]
pub struct SimulationStats {
    pub registered: AtomicUsize,
    pub connected: AtomicUsize,
}

/// Runs `count` simulated agents against `masters` until `shutdown`.
pub async fn run(
    masters: Vec<String>,
    security: agora_security::client::ClientSecurity,
    count: usize,
    resources: Resources,
    shutdown: watch::Receiver<bool>,
) -> Arc<SimulationStats> {
    let stats = Arc::new(SimulationStats::default());
    let mut handles = Vec::new();
    for chunk in 0..count.div_ceil(AGENTS_PER_CONNECTION) {
        let client = Arc::new(
            MasterClient::with_security(
                masters.clone(),
                RetryPolicy {
                    deadline: Duration::from_secs(30),
                    initial_backoff: Duration::from_millis(50),
                    max_backoff: Duration::from_secs(1),
                    call_timeout: Duration::from_secs(10),
                },
                security.clone(),
            )
            .expect("masters were validated"),
        );
        for i in chunk * AGENTS_PER_CONNECTION..((chunk + 1) * AGENTS_PER_CONNECTION).min(count) {
            let registration = Registration {
                hostname: format!("sim-{i:06}"),
                // Distinct addresses on a loopback range nobody listens on.
                address: format!("127.1.{}.{}:5051", i / 250, i % 250 + 1),
                resources: resources.clone(),
                attributes: vec![("simulated".into(), "true".into())],
                // Simulated agents have no sandboxes to grant.
                sandbox_key: Vec::new(),
            };
            handles.push(tokio::spawn(agent_loop(
                client.clone(),
                format!("sim-{i:06}"),
                registration,
                stats.clone(),
                shutdown.clone(),
            )));
        }
    }
    let mut shutdown = shutdown;
    let _ = shutdown.wait_for(|s| *s).await;
    for h in handles {
        h.abort();
    }
    stats
}

async fn agent_loop(
    client: Arc<MasterClient>,
    id: String,
    registration: Registration,
    stats: Arc<SimulationStats>,
    mut shutdown: watch::Receiver<bool>,
) {
    // Spread the first registrations over a second, as machines booting would.
    let jitter = rand::thread_rng().gen_range(0..1000);
    tokio::time::sleep(Duration::from_millis(jitter)).await;
    let mut agent = SimulatedAgent {
        stats,
        registered: false,
        outbox: HashMap::new(),
    };
    // A simulated agent the master refuses keeps trying, as any other failure. It keeps no
    // work dir: each start of its link is an incarnation numbered by the wall clock (later
    // than any earlier run's).
    loop {
        let incarnation = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_millis() as u64);
        let Err(e) = master_link::follow_leader(
            &client,
            &registration,
            Some(id.clone()),
            incarnation,
            &mut agent,
            BACKOFF,
            &mut shutdown,
        )
        .await
        else {
            return;
        };
        tracing::debug!(agent = %id, error = %e, "simulated agent refused");
        let backoff = rand::thread_rng().gen_range(100..1000);
        tokio::time::sleep(Duration::from_millis(backoff)).await;
    }
}

/// One simulated agent: it runs no process; a task launched on it ends at once.
struct SimulatedAgent {
    stats: Arc<SimulationStats>,
    registered: bool,
    /// This session's unacknowledged updates per (framework, task), oldest first; all in
    /// flight.
    outbox: HashMap<(String, String), VecDeque<Update>>,
}

impl AgentSide for SimulatedAgent {
    /// Thousands of simulated agents share a few connections: they learn of a new leader
    /// from their session's end alone.
    fn watches_leader(&self) -> bool {
        false
    }

    /// None: a simulated agent forgets its tasks between sessions.
    fn report(&self) -> Vec<pb::TaskReport> {
        Vec::new()
    }

    fn registered(&mut self, _agent_id: &str, _new_id: bool) -> Result<(), LinkError> {
        if !self.registered {
            self.stats.registered.fetch_add(1, Ordering::Relaxed);
            self.registered = true;
        }
        Ok(())
    }

    fn session_starting(&mut self, _leader: &str) {
        self.stats.connected.fetch_add(1, Ordering::Relaxed);
    }

    fn session_opened(&mut self, _tx: &mpsc::Sender<pb::AgentMessage>) {
        self.outbox.clear();
    }

    fn handle(&mut self, message: pb::master_message::Kind) -> Vec<pb::AgentMessage> {
        let mut out = Vec::new();
        match message {
            pb::master_message::Kind::Launch(l) => {
                for t in l.tasks {
                    let key = (l.framework_id.clone(), t.task_id.clone());
                    if self.outbox.contains_key(&key) {
                        continue; // delivered again
                    }
                    let now = clock::now_ms();
                    let update = |state: TaskState, exit_code: Option<i32>| Update {
                        uuid: uuid::Uuid::new_v4().to_string(),
                        framework_id: l.framework_id.clone(),
                        task_id: t.task_id.clone(),
                        state,
                        message: "simulated".into(),
                        exit_code,
                        timestamp_ms: now,
                    };
                    let q: VecDeque<Update> = [
                        update(TaskState::TaskStarting, None),
                        update(TaskState::TaskRunning, None),
                        update(TaskState::TaskFinished, Some(0)),
                    ]
                    .into();
                    out.extend(all_msgs(&q));
                    self.outbox.insert(key, q);
                }
            }
            pb::master_message::Kind::Ack(a) => {
                let key = (a.framework_id, a.task_id);
                if let Some(q) = self.outbox.get_mut(&key) {
                    // Cumulative, as the real agent's.
                    if let Some(at) = q.iter().position(|u| u.uuid == a.uuid) {
                        q.drain(..=at);
                    }
                    if q.is_empty() {
                        self.outbox.remove(&key);
                    }
                }
            }
            _ => {}
        }
        out
    }

    fn session_ended(&mut self, _leader: &str, _outcome: &Result<(), tonic::Status>) {
        self.stats.connected.fetch_sub(1, Ordering::Relaxed);
    }
}
