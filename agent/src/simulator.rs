//! Many simulated agents in one process (as the Mesos paper emulated 50,000), for load
//! tests of the master: each registers (committed in the registry), holds a session with
//! the leader, answers its health checks, and follows failovers. A task launched on one
//! ends at once: it reports TASK_STARTING, TASK_RUNNING and TASK_FINISHED in order, each
//! sent after the previous one is acknowledged, the first already carrying TASK_FINISHED as
//! its latest state (as a real agent reports a task that exits at once), so the control
//! plane's task throughput can be measured without the cost of processes.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use agora_driver::{MasterClient, RetryPolicy};
use agora_proto::v1 as pb;
use agora_proto::v1::agent_gateway_client::AgentGatewayClient;
use agora_proto::v1::master_client::MasterClient as MasterRpc;
use agora_registry::Resources;
use rand::Rng;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

/// Simulated agents per HTTP/2 connection.
const AGENTS_PER_CONNECTION: usize = 100;

/// Counts of the simulation, for reports.
#[derive(Default)]
pub struct SimulationStats {
    pub registered: AtomicUsize,
    pub connected: AtomicUsize,
}

/// Runs `count` simulated agents against `masters` until `shutdown`.
pub async fn run(
    masters: Vec<String>,
    count: usize,
    resources: Resources,
    shutdown: watch::Receiver<bool>,
) -> Arc<SimulationStats> {
    let stats = Arc::new(SimulationStats::default());
    let mut handles = Vec::new();
    for chunk in 0..count.div_ceil(AGENTS_PER_CONNECTION) {
        let client = Arc::new(
            MasterClient::with_policy(
                masters.clone(),
                RetryPolicy {
                    deadline: Duration::from_secs(30),
                    initial_backoff: Duration::from_millis(50),
                    max_backoff: Duration::from_secs(1),
                    call_timeout: Duration::from_secs(10),
                },
            )
            .expect("masters were validated"),
        );
        for i in chunk * AGENTS_PER_CONNECTION..((chunk + 1) * AGENTS_PER_CONNECTION).min(count) {
            let info = pb::AgentInfo {
                id: format!("sim-{i:06}"),
                hostname: format!("sim-{i:06}"),
                // Distinct addresses on a loopback range nobody listens on.
                address: format!("127.1.{}.{}:5051", i / 250, i % 250 + 1),
                resources: crate::convert::resources_to_proto(&resources),
                attributes: vec![pb::Attribute {
                    key: "simulated".into(),
                    value: "true".into(),
                }],
            };
            handles.push(tokio::spawn(agent_loop(
                client.clone(),
                info,
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
    info: pb::AgentInfo,
    stats: Arc<SimulationStats>,
    mut shutdown: watch::Receiver<bool>,
) {
    // Spread the first registrations over a second, as machines booting would.
    let jitter = rand::thread_rng().gen_range(0..1000);
    tokio::time::sleep(Duration::from_millis(jitter)).await;
    let mut first = true;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let registered = client
            .call(|ch| {
                let agent = Some(info.clone());
                async move {
                    MasterRpc::new(ch)
                        .register_agent(pb::RegisterAgentRequest {
                            agent,
                            tasks: vec![],
                        })
                        .await
                }
            })
            .await;
        if registered.is_ok() {
            if first {
                stats.registered.fetch_add(1, Ordering::Relaxed);
                first = false;
            }
            if let Some(leader) = client.leader() {
                stats.connected.fetch_add(1, Ordering::Relaxed);
                let _ = session(&client, &info, &leader, &mut shutdown).await;
                stats.connected.fetch_sub(1, Ordering::Relaxed);
            }
        }
        let backoff = rand::thread_rng().gen_range(100..1000);
        tokio::time::sleep(Duration::from_millis(backoff)).await;
    }
}

async fn session(
    client: &MasterClient,
    info: &pb::AgentInfo,
    leader: &str,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), tonic::Status> {
    let channel = client
        .session_channel(leader)
        .map_err(|e| tonic::Status::invalid_argument(e.to_string()))?;
    let (tx, rx) = mpsc::channel::<pb::AgentMessage>(1024);
    let _ = tx
        .send(pb::AgentMessage {
            kind: Some(pb::agent_message::Kind::Hello(pb::AgentHello {
                agent_id: info.id.clone(),
                address: info.address.clone(),
            })),
        })
        .await;
    let mut inbound = AgentGatewayClient::new(channel)
        .connect(ReceiverStream::new(rx))
        .await?
        .into_inner();
    // Unacknowledged updates per (framework, task), oldest first; the head is in flight.
    let mut outbox: HashMap<(String, String), VecDeque<pb::StatusUpdate>> = HashMap::new();
    let head = |q: &VecDeque<pb::StatusUpdate>| {
        q.front().map(|u| {
            let mut u = u.clone();
            let latest = q.back().map(|l| l.state.clone()).unwrap_or_default();
            if latest != u.state {
                u.latest_state = latest;
            }
            pb::AgentMessage {
                kind: Some(pb::agent_message::Kind::Update(u)),
            }
        })
    };
    loop {
        let msg = tokio::select! {
            m = inbound.message() => m?,
            _ = shutdown.wait_for(|s| *s) => return Ok(()),
        };
        let Some(msg) = msg else { return Ok(()) };
        match msg.kind {
            Some(pb::master_message::Kind::Ping(p)) => {
                let _ = tx
                    .send(pb::AgentMessage {
                        kind: Some(pb::agent_message::Kind::Pong(pb::Pong { seq: p.seq })),
                    })
                    .await;
            }
            Some(pb::master_message::Kind::Launch(l)) => {
                for t in l.tasks {
                    let key = (l.framework_id.clone(), t.task_id.clone());
                    if outbox.contains_key(&key) {
                        continue; // delivered again
                    }
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_millis() as u64)
                        .unwrap_or(0);
                    let update = |state: &str, exit_code: Option<i32>| pb::StatusUpdate {
                        uuid: uuid::Uuid::new_v4().to_string(),
                        framework_id: l.framework_id.clone(),
                        task_id: t.task_id.clone(),
                        state: state.into(),
                        message: "simulated".into(),
                        exit_code,
                        timestamp_ms: now,
                        latest_state: String::new(),
                    };
                    let q: VecDeque<pb::StatusUpdate> = [
                        update("TASK_STARTING", None),
                        update("TASK_RUNNING", None),
                        update("TASK_FINISHED", Some(0)),
                    ]
                    .into();
                    if let Some(m) = head(&q) {
                        let _ = tx.send(m).await;
                    }
                    outbox.insert(key, q);
                }
            }
            Some(pb::master_message::Kind::Ack(a)) => {
                let key = (a.framework_id, a.task_id);
                let Some(q) = outbox.get_mut(&key) else {
                    continue;
                };
                if q.front().is_some_and(|u| u.uuid == a.uuid) {
                    q.pop_front();
                }
                match head(q) {
                    Some(m) => {
                        let _ = tx.send(m).await;
                    }
                    None => {
                        outbox.remove(&key);
                    }
                }
            }
            _ => {}
        }
    }
}
